#include "khosim/hw/dma_engine.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "khosim/linux/intel_iommu_regs.h"

namespace khosim::hw {
namespace {

// The largest MSI-X table (Table Size is 11 bits).
constexpr int32_t kMaxMsixVectors = 2048;

}  // namespace

const char* DmaEventKindName(DmaEvent::Kind kind) {
  switch (kind) {
    case DmaEvent::Kind::kFault:
      return "fault";
    case DmaEvent::Kind::kStrayWrite:
      return "stray_write";
    case DmaEvent::Kind::kStopped:
      return "stopped";
  }
  return "?";
}

DmaEngine::DmaEngine(PciFunction& function, PciHardware& pci, IommuUnit* iommu,
                     PhysicalMemory& memory)
    : function_(function),
      pci_(pci),
      iommu_(iommu),
      memory_(memory),
      seen_resets_(function.reset_count()) {}

void DmaEngine::Submit(const DmaDescriptor& d) {
  SyncWithHardware();
  const bool bad = d.len == 0 || (d.op == DmaOp::kCounter && (d.len % 8 | d.dst % 8) != 0) ||
                   (d.repeat && d.op != DmaOp::kCounter) || d.irq_vector < -1 ||
                   d.irq_vector >= kMaxMsixVectors;
  if (bad) {
    ++rejected_;
    return;
  }
  queue_.push_back(Job{.d = d});
  halted_ = false;
}

void DmaEngine::Abort() {
  queue_.clear();
  halted_ = false;
}

DmaEngine::State DmaEngine::state() const {
  if (halted_) return State::kHalted;
  return queue_.empty() ? State::kIdle : State::kRunning;
}

uint64_t DmaEngine::next_counter() const {
  if (queue_.empty() || queue_.front().d.op != DmaOp::kCounter) return 0;
  return queue_.front().d.pattern + queue_.front().seq;
}

void DmaEngine::SyncWithHardware() {
  // A function reset (FLR, bus reset, power-on) drops everything queued.
  if (function_.reset_count() != seen_resets_) {
    seen_resets_ = function_.reset_count();
    queue_.clear();
    halted_ = false;
    stop_reported_ = false;
  }
}

bool DmaEngine::Translate(uint64_t iova, bool write, DmaMemoryOracle* oracle,
                          const DmaEventSink& sink, Translation* t) {
  const uint8_t bus = pci_.BusOf(function_);
  if (iommu_ == nullptr) {
    *t = Translation{.ok = true, .pa = PhysAddr(iova), .span = ~uint64_t{0}};
  } else {
    *t = iommu_->Translate(bus, function_.devfn(), iova, write, oracle);
  }
  bool unsupported = false;
  if (t->ok && !memory_.IsRam(PhysAddr(t->pa.value() & VTD_PAGE_MASK), VTD_PAGE_SIZE)) {
    // Nothing answers: the root complex completes it as an unsupported
    // request, which the engine treats as it treats a fault.
    unsupported = true;
    t->ok = false;
    t->fault = IommuFault{.bus = bus,
                          .devfn = function_.devfn(),
                          .iova = iova,
                          .write = write,
                          .table = PhysAddr(t->pa.value() & VTD_PAGE_MASK)};
  }
  if (t->ok) return true;
  ++faults_;
  halted_ = true;
  if (sink) {
    std::string reason = unsupported
                             ? "unsupported request: no memory at " + t->fault.table.ToString()
                             : IommuFaultReasonName(t->fault.reason);
    if (!t->fault.detail.empty()) reason += ": " + t->fault.detail;
    sink(DmaEvent{.kind = DmaEvent::Kind::kFault,
                  .device = function_.name(),
                  .bus = bus,
                  .devfn = function_.devfn(),
                  .iova = iova,
                  .pa = t->fault.table,
                  .reason = std::move(reason)});
  }
  return false;
}

void DmaEngine::Write(uint64_t iova, PhysAddr pa, const uint8_t* bytes, uint64_t len,
                      DmaMemoryOracle* oracle, const DmaEventSink& sink) {
  const PhysAddr page(pa.value() & VTD_PAGE_MASK);
  DmaCheck check;
  if (oracle != nullptr) check = oracle->CheckAccess(function_, iova, page, true);
  if (check.verdict != DmaVerdict::kOk) {
    ++stray_writes_;
    if (sink) {
      sink(DmaEvent{.kind = DmaEvent::Kind::kStrayWrite,
                    .device = function_.name(),
                    .bus = pci_.BusOf(function_),
                    .devfn = function_.devfn(),
                    .iova = iova,
                    .pa = pa,
                    .reason = check.owner.empty() ? DmaVerdictName(check.verdict) : check.owner});
    }
  }
  if (check.accessible) std::memcpy(memory_.Virt(pa), bytes, len);
  bytes_written_ += len;
}

bool DmaEngine::Step(Job& job, uint64_t budget, uint64_t* written, DmaMemoryOracle* oracle,
                     const DmaEventSink& sink) {
  const DmaDescriptor& d = job.d;
  const uint64_t dst = d.dst + job.done;
  uint64_t chunk =
      std::min({budget, d.len - job.done, VTD_PAGE_SIZE - (dst & (VTD_PAGE_SIZE - 1))});
  std::array<uint8_t, VTD_PAGE_SIZE> buf;
  if (d.op == DmaOp::kCopy) {
    const uint64_t src = d.src + job.done;
    chunk = std::min(chunk, VTD_PAGE_SIZE - (src & (VTD_PAGE_SIZE - 1)));
    Translation from;
    if (!Translate(src, false, oracle, sink, &from)) return false;
    const PhysAddr page(from.pa.value() & VTD_PAGE_MASK);
    if (oracle == nullptr || oracle->CheckAccess(function_, src, page, false).accessible) {
      std::memcpy(buf.data(), memory_.Virt(from.pa), chunk);
    } else {
      std::memset(buf.data(), 0xff, chunk);  // what an unreachable read returns
    }
    bytes_read_ += chunk;
  } else if (d.op == DmaOp::kFill) {
    for (uint64_t i = 0; i < chunk; ++i) {
      buf[i] = static_cast<uint8_t>(d.pattern >> (8 * ((dst + i - d.dst) % 8)));
    }
  } else {
    chunk = std::max<uint64_t>(chunk - chunk % 8, 8);  // dst and len are 8-aligned
    for (uint64_t i = 0; i < chunk; i += 8) {
      const uint64_t value = d.pattern + job.seq + i / 8;
      std::memcpy(buf.data() + i, &value, 8);
    }
  }
  Translation to;
  if (!Translate(dst, true, oracle, sink, &to)) return false;
  Write(dst, to.pa, buf.data(), chunk, oracle, sink);
  job.done += chunk;
  if (d.op == DmaOp::kCounter) job.seq += chunk / 8;
  *written += chunk;
  return true;
}

uint64_t DmaEngine::Run(uint64_t budget, DmaMemoryOracle* oracle, const DmaEventSink& sink) {
  SyncWithHardware();
  if (queue_.empty() || halted_) return 0;
  if (!function_.bus_master()) {
    if (!stop_reported_ && sink) {
      sink(DmaEvent{.kind = DmaEvent::Kind::kStopped,
                    .device = function_.name(),
                    .bus = pci_.BusOf(function_),
                    .devfn = function_.devfn(),
                    .reason = "bus mastering off"});
    }
    stop_reported_ = true;
    return 0;
  }
  stop_reported_ = false;
  uint64_t written = 0;
  while (written < budget && !queue_.empty()) {
    Job& job = queue_.front();
    if (!Step(job, budget - written, &written, oracle, sink)) {
      queue_.pop_front();  // aborted with an error
      break;
    }
    if (job.done < job.d.len) continue;
    const int32_t vector = job.d.irq_vector;
    if (job.d.repeat) {
      job.done = 0;
    } else {
      ++completed_;
      queue_.pop_front();
    }
    if (vector < 0) continue;
    // The handler may submit, abort, reset the function or stop mastering.
    function_.RaiseMsix(static_cast<uint16_t>(vector));
    SyncWithHardware();
    if (!function_.bus_master()) break;
  }
  return written;
}

}  // namespace khosim::hw

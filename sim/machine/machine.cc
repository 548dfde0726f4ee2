// Machine: cold boot and the kexec boundary.
//
// Kexec sequence (kernel A -> kernel B):
//   1. A enters kRebooting and runs its reboot hooks; an error cancels the
//      kexec (A back to kRunning) and is returned. Then A shuts its devices
//      down (device_shutdown): the point of no return.
//   2. A places B's image (kexec_file_load's segment placement) and builds
//      the handover record.
//   3. A is destroyed: every C++ object of that boot is gone.
//   4. The "hardware" copies B's image into place (the relocation step of
//      machine_kexec), overwriting whatever was there.
//   5. B boots from {cmdline, handover record, image location} and the
//      hardware as A left it (PCI config spaces, IOMMU registers and DMA
//      engines are never reset here).
// DMA engines advance after A's reboot hooks, after A's device shutdown,
// and after each of B's boot steps: a device left running writes through
// the whole kexec, checked against whichever kernel runs. Its MSI-X
// messages go to whichever kernel runs too: B has no irqs for the vectors
// A left unmasked, so they are spurious there until a driver of B takes
// the vectors over.
#include "khosim/machine/machine.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "khosim/base/errno_status.h"
#include "khosim/base/panic.h"
#include "khosim/drivers/irq.h"

namespace khosim {
namespace {

// The byte a freshly loaded kernel image is filled with.
constexpr uint8_t kImageByte = 0x4b;

}  // namespace

absl::StatusOr<hw::MemoryLayout> Machine::LayoutFor(const MachineConfig& config) {
  hw::MemoryLayout layout =
      config.ranges.empty()
          ? hw::MemoryLayout::Uniform(config.ram, config.nodes, config.page_size, config.hole)
          : hw::MemoryLayout::FromRanges(config.ranges, config.page_size);
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  if (absl::Status s = config.pci.Validate(); !s.ok()) return s;
  if (!layout.IsRam(config.cold_boot_image_base, config.kernel_image_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the cold-boot kernel image at ", config.cold_boot_image_base.ToString(), " (",
                     config.kernel_image_size, " bytes) is not inside RAM"));
  }
  return layout;
}

absl::StatusOr<std::unique_ptr<Machine>> Machine::Create(MachineConfig config) {
  absl::StatusOr<hw::MemoryLayout> layout = LayoutFor(config);
  if (!layout.ok()) return layout.status();
  absl::StatusOr<std::unique_ptr<hw::PhysicalMemory>> memory =
      hw::PhysicalMemory::Create(*std::move(layout));
  if (!memory.ok()) return memory.status();
  return std::unique_ptr<Machine>(new Machine(std::move(config), *std::move(memory)));
}

Machine::Machine(MachineConfig config)
    : Machine(config, [&config]() -> std::unique_ptr<hw::PhysicalMemory> {
        absl::StatusOr<hw::MemoryLayout> layout = LayoutFor(config);
        absl::StatusOr<std::unique_ptr<hw::PhysicalMemory>> memory =
            layout.ok() ? hw::PhysicalMemory::Create(*std::move(layout))
                        : absl::StatusOr<std::unique_ptr<hw::PhysicalMemory>>(layout.status());
        if (!memory.ok()) {
          std::fprintf(stderr, "khosim: invalid machine configuration: %s\n",
                       memory.status().ToString().c_str());
          std::abort();
        }
        return *std::move(memory);
      }()) {}

Machine::Machine(MachineConfig config, std::unique_ptr<hw::PhysicalMemory> memory)
    : config_(std::move(config)),
      memory_(std::move(memory)),
      // LayoutFor validated the topology: Create cannot fail here.
      pci_(*hw::PciHardware::Create(config_.pci)),
      rng_(config_.seed),
      faults_([this] { return rng_(); }) {
  if (config_.iommu && !config_.pci.empty()) {
    iommu_ = std::make_unique<hw::IommuHardware>(*memory_, config_.pci);
  }
  pci_->SetMsixSink([this](const hw::MsixMessage& message) { DeliverMsix(message); });
  // Every endpoint designed with an engine gets one (VFs have none).
  std::vector<const hw::PciFunctionSpec*> specs;
  std::function<void(const hw::PciFunctionSpec&)> collect = [&](const hw::PciFunctionSpec& f) {
    if (f.kind == hw::PciKind::kEndpoint && f.dma_engine) specs.push_back(&f);
    for (const hw::PciFunctionSpec& child : f.children) collect(child);
  };
  for (const hw::PciSegmentSpec& segment : config_.pci.segments) {
    for (const hw::PciFunctionSpec& f : segment.functions) collect(f);
  }
  for (const hw::PciFunctionSpec* spec : specs) {
    hw::PciFunction* f = pci_->Find(spec->name);
    engines_.push_back(std::make_unique<hw::DmaEngine>(
        *f, *pci_, iommu_ != nullptr ? iommu_->Unit(f->domain()) : nullptr, *memory_));
  }
}

hw::DmaEngine* Machine::dma_engine(absl::string_view function) {
  for (auto& engine : engines_) {
    if (engine->function().name() == function) return engine.get();
  }
  return nullptr;
}

void Machine::RunDevices(absl::string_view point) {
  if (engines_.empty()) return;
  const bool live = kernel_ != nullptr && kernel_->phase() != BootPhase::kDead;
  const uint64_t generation = live ? kernel_->generation() : 0;
  hw::DmaMemoryOracle* oracle = live ? kernel_->dma_oracle() : nullptr;
  const hw::DmaEventSink sink = [&](const hw::DmaEvent& event) {
    if (dma_events_.size() >= kMaxDmaEvents) {
      ++dma_events_dropped_;
      return;
    }
    trace_.Record(generation, "dma", hw::DmaEventKindName(event.kind),
                  {{"device", event.device},
                   {"iova", absl::StrCat(absl::Hex(event.iova, absl::kZeroPad16))},
                   {"pa", event.pa.ToString()},
                   {"reason", event.reason},
                   {"point", std::string(point)}});
    dma_events_.push_back(DmaRecord{event, generation, std::string(point)});
  };
  uint64_t moved = 0;
  for (auto& engine : engines_) moved += engine->Run(config_.dma_quantum, oracle, sink);
  dma_bytes_ += moved;
  if (moved != 0) dma_progress_.push_back({generation, std::string(point), moved});
}

void Machine::DeliverMsix(const hw::MsixMessage& message) {
  const bool live = kernel_ != nullptr && kernel_->phase() != BootPhase::kDead;
  const uint64_t generation = live ? kernel_->generation() : 0;
  if (message.kind == hw::MsixMessage::Kind::kLost) {
    trace_.Record(generation, "irq", "msix_lost",
                  {{"device", message.function->name()},
                   {"vector", absl::StrCat(message.vector)},
                   {"reason", message.reason}});
    return;
  }
  if (!live || kernel_->pci() == nullptr) {
    ++msix_no_kernel_;
    trace_.Record(generation, "irq", "no_kernel",
                  {{"device", message.function->name()}, {"vector", absl::StrCat(message.vector)}});
    return;
  }
  ScopedKernelContext scope(&kernel_->ctx());
  kernel_->pci()->irqs().HandleMsix(*message.function, message.vector);
}

Machine::~Machine() {
  if (CurrentKernelContext() != nullptr && kernel_ != nullptr &&
      CurrentKernelContext() == &kernel_->ctx()) {
    SetCurrentKernelContext(nullptr);
  }
  kernel_.reset();
}

Kernel& Machine::kernel() {
  if (kernel_ == nullptr) {
    std::fprintf(stderr, "khosim: Machine::kernel() before Boot()\n");
    std::abort();
  }
  return *kernel_;
}

void Machine::Activate() {
  SetCurrentKernelContext(kernel_ == nullptr ? nullptr : &kernel_->ctx());
}

KernelConfig Machine::KernelConfigFor(PhysAddr image_base) const {
  KernelConfig config;
  config.mm.free_memory_policy = config_.scrub;
  config.mm.image_base = image_base;
  config.mm.image_size = config_.kernel_image_size;
  config.mm.early_alloc_bytes_per_node = config_.early_alloc_bytes_per_node;
  config.mm.low_early_alloc_bytes = config_.low_early_alloc_bytes;
  config.kho = config_.kho;
  config.luo = config_.luo;
  return config;
}

absl::Status Machine::AddModule(KernelModule module) {
  std::string name = module.name;
  if (absl::Status s = modules_.Add(std::move(module)); !s.ok()) return s;
  added_modules_.push_back(std::move(name));
  return absl::OkStatus();
}

KernelBuild Machine::DefaultBuild() const {
  if (config_.build.has_value()) return *config_.build;
  KernelBuild build = modules_.DefaultBuild();
  build.modules.insert(build.modules.end(), added_modules_.begin(), added_modules_.end());
  return build;
}

void Machine::StartKernel(BootParams params, const KernelBuild& build) {
  const PhysAddr image_base = params.image_base;
  KernelConfig config = KernelConfigFor(image_base);
  config.build = build;
  for (const KernelModule* module : modules_.Resolve(build)) config.modules.push_back(*module);
  kernel_ = std::make_unique<Kernel>(*this, *memory_,
                                     KernelHardware{.pci = pci_.get(), .iommu = iommu_.get()},
                                     next_generation_++, std::move(params), std::move(config));
  SetCurrentKernelContext(&kernel_->ctx());
  kernel_->Boot();  // a KernelPanic leaves the dead kernel for inspection
}

void Machine::Boot() {
  if (kernel_ != nullptr) {
    SetCurrentKernelContext(nullptr);
    kernel_.reset();
  }
  memory_->ResetAccess();
  pci_->PowerOn();
  if (iommu_ != nullptr) iommu_->PowerOn();
  trace_.Record(next_generation_, "machine", "cold_boot", {});
  StartKernel(
      BootParams{config_.cmdline, {}, config_.cold_boot_image_base, config_.kernel_image_size},
      DefaultBuild());
}

absl::Status Machine::Kexec(KexecOptions options) {
  if (kernel_ == nullptr || kernel_->phase() != BootPhase::kRunning) {
    return absl::FailedPreconditionError("kexec needs a running kernel");
  }
  Kernel& a = *kernel_;
  SetCurrentKernelContext(&a.ctx());
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  KexecTimes times;
  auto step = Clock::now();
  trace_.Record(a.generation(), "kexec", "start",
                {{"preserve_context", options.preserve_context ? "1" : "0"}});
  // kexec_file_load: place the segments once per kernel; a cancelled kexec
  // leaves the image loaded, as it would stay loaded in a real kernel.
  if (loaded_generation_ != a.generation()) {
    abi::KhoData handover = {};
    PhysAddr image_base;
    int err = a.MakeHandover(&handover);
    if (err == 0) {
      err = a.mm().PlaceKexecSegment(config_.kernel_image_size, 2 * kMiB, &image_base);
    }
    if (err != 0) {
      trace_.Record(a.generation(), "kexec", "load_failed", {{"ret", absl::StrCat(err)}});
      return KernelErrorToStatus(err, "kexec load");
    }
    loaded_generation_ = a.generation();
    loaded_handover_ = handover;
    loaded_image_base_ = image_base;
    times.load_s = seconds_since(step);
  }
  step = Clock::now();
  a.ctx().SetPhase(BootPhase::kRebooting);
  const int hooks = a.RunRebootHooks(RebootInfo{.preserve_context = options.preserve_context});
  times.reboot_hooks_s = seconds_since(step);
  RunDevices("kexec:reboot_hooks");
  if (hooks != 0) {
    a.ctx().CancelReboot();
    trace_.Record(a.generation(), "kexec", "cancelled", {{"ret", absl::StrCat(hooks)}});
    return KernelErrorToStatus(hooks, "reboot hooks cancelled the kexec");
  }
  a.ShutdownDevices(RebootInfo{.preserve_context = options.preserve_context});
  RunDevices("kexec:shutdown");
  step = Clock::now();
  const abi::KhoData handover = loaded_handover_;
  const PhysAddr image_base = loaded_image_base_;
  trace_.Record(a.generation(), "kexec", "handover",
                {{"fdt_addr", absl::StrCat(handover.fdt_addr)},
                 {"scratch_addr", absl::StrCat(handover.scratch_addr)},
                 {"image_base", image_base.ToString()}});
  a.ctx().SetPhase(BootPhase::kDead);
  SetCurrentKernelContext(nullptr);
  kernel_.reset();

  // machine_kexec: the new kernel starts with its own mappings of all RAM,
  // and its image lands in memory over whatever was there.
  memory_->ResetAccess();
  std::memset(memory_->Virt(image_base), kImageByte, config_.kernel_image_size);
  last_handover_ = handover;
  ++kexec_count_;
  times.teardown_s = seconds_since(step);
  step = Clock::now();
  StartKernel(BootParams{options.cmdline.value_or(config_.cmdline),
                         kho::HandoverSetupData(handover), image_base, config_.kernel_image_size},
              options.build.has_value() ? *options.build : DefaultBuild());
  times.boot_s = seconds_since(step);
  last_kexec_times_ = times;
  return absl::OkStatus();
}

bool Machine::ShouldFail(absl::string_view point) {
  const bool fail = faults_.Hit(point);
  if (fail) {
    trace_.Record(kernel_ != nullptr ? kernel_->generation() : 0, "fault", point, {});
  }
  return fail;
}

void Machine::Trace(uint64_t generation, absl::string_view category, absl::string_view name,
                    TraceArgs args) {
  trace_.Record(generation, category, name, std::move(args));
}

uint64_t Machine::RandomBelow(uint64_t bound) {
  // Rejection sampling keeps the result uniform and independent of the
  // standard library's distribution implementation.
  const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % bound);
  uint64_t v;
  do {
    v = rng_();
  } while (v >= limit);
  return v % bound;
}

}  // namespace khosim

#include "khosim/hw/iommu.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "khosim/linux/intel_iommu_regs.h"

namespace khosim::hw {
namespace {

// 4096 domains, 39- and 48-bit widths, 2 MiB and 1 GiB leaves.
constexpr uint64_t kCap = (uint64_t{0x3} << 34) | (uint64_t{47} << 16) | (uint64_t{0x6} << 8) | 4;
// IOTLB registers at 0x100, pass-through supported, coherent walks.
constexpr uint64_t kEcap = (uint64_t{0x10} << 8) | (1U << 6) | 1;
constexpr uint32_t kIotlbReg = ecap_iotlb_offset(kEcap) + DMAR_IOTLB_REG_OFFSET;
constexpr uint64_t kLeafAll = ~uint64_t{0};

uint16_t SourceId(uint8_t bus, uint8_t devfn) { return static_cast<uint16_t>(bus << 8 | devfn); }

unsigned LevelsOf(unsigned aw) { return aw + 2; }  // AGAW_39 -> 3 ... AGAW_57 -> 5

}  // namespace

const char* DmaVerdictName(DmaVerdict verdict) {
  switch (verdict) {
    case DmaVerdict::kOk:
      return "ok";
    case DmaVerdict::kNotRam:
      return "not RAM";
    case DmaVerdict::kFree:
      return "free memory";
    case DmaVerdict::kOtherOwner:
      return "owned for something else";
  }
  return "?";
}

const char* IommuFaultReasonName(IommuFaultReason reason) {
  switch (reason) {
    case IommuFaultReason::kRootNotPresent:
      return "root entry not present";
    case IommuFaultReason::kContextNotPresent:
      return "context entry not present";
    case IommuFaultReason::kContextInvalid:
      return "context entry invalid";
    case IommuFaultReason::kAddressTooWide:
      return "address beyond the domain's width";
    case IommuFaultReason::kPteNotPresent:
      return "no mapping";
    case IommuFaultReason::kWriteNotAllowed:
      return "write to a read-only mapping";
    case IommuFaultReason::kReadNotAllowed:
      return "read of a write-only mapping";
    case IommuFaultReason::kTablePageInvalid:
      return "table page is not a page-table page";
  }
  return "?";
}

IommuUnit::IommuUnit(PhysicalMemory& memory, uint16_t segment, uint64_t mmio_base)
    : memory_(memory), segment_(segment), mmio_base_(mmio_base) {}

void IommuUnit::PowerOn() {
  gsts_ = 0;
  fsts_ = 0;
  rtaddr_ = 0;
  root_table_ = PhysAddr();
  ccmd_ = 0;
  iotlb_reg_ = 0;
  faults_.clear();
  InvalidateIotlb(true, 0);
}

uint64_t IommuUnit::ReadReg(uint32_t offset) const {
  switch (offset) {
    case DMAR_VER_REG:
      return 0x10;
    case DMAR_CAP_REG:
      return kCap;
    case DMAR_ECAP_REG:
      return kEcap;
    case DMAR_GSTS_REG:
      return gsts_;
    case DMAR_RTADDR_REG:
      return rtaddr_;
    case DMAR_CCMD_REG:
      return ccmd_;
    case DMAR_FSTS_REG:
      return fsts_;
    case kIotlbReg:
      return iotlb_reg_;
    default:
      return 0;
  }
}

void IommuUnit::WriteReg(uint32_t offset, uint64_t value) {
  switch (offset) {
    case DMAR_GCMD_REG: {
      const auto cmd = static_cast<uint32_t>(value);
      if (cmd & DMA_GCMD_SRTP) {
        root_table_ = PhysAddr(rtaddr_ & VTD_PAGE_MASK);
        gsts_ |= DMA_GSTS_RTPS;
      }
      if (cmd & DMA_GCMD_TE) {
        gsts_ |= DMA_GSTS_TES;
      } else {
        gsts_ &= ~DMA_GSTS_TES;
      }
      return;
    }
    case DMAR_RTADDR_REG:
      rtaddr_ = value;
      return;
    case DMAR_CCMD_REG:
      ccmd_ = value & ~DMA_CCMD_ICC;
      return;
    case kIotlbReg:
      if (value & DMA_TLB_IVT) {
        const bool domain = (value & (uint64_t{3} << 60)) == DMA_TLB_DSI_FLUSH;
        InvalidateIotlb(!domain, static_cast<uint16_t>(value >> 32));
      }
      iotlb_reg_ = value & ~DMA_TLB_IVT;
      return;
    case DMAR_FSTS_REG:
      if (value & DMA_FSTS_PPF) {
        fsts_ &= ~DMA_FSTS_PPF;
        faults_.clear();
      }
      return;
    default:
      return;
  }
}

void IommuUnit::InvalidateIotlb(bool all, uint16_t did) {
  if (all) {
    iotlb_.clear();
    iotlb_order_.clear();
    return;
  }
  absl::erase_if(iotlb_, [did](const auto& kv) { return kv.second.did == did; });
  std::erase_if(iotlb_order_, [this](uint64_t key) { return !iotlb_.contains(key); });
}

bool IommuUnit::ReadTableEntry(PhysAddr table, unsigned index, DmaMemoryOracle* oracle,
                               uint64_t* out, IommuFault* fault) const {
  const PhysAddr page(table.value() & VTD_PAGE_MASK);
  DmaCheck check;
  if (!memory_.IsRam(page, VTD_PAGE_SIZE)) {
    check.verdict = DmaVerdict::kNotRam;
    check.owner = "not RAM";
  } else if (oracle != nullptr) {
    check = oracle->CheckTablePage(segment_, page);
  }
  if (check.verdict != DmaVerdict::kOk || !check.accessible) {
    fault->reason = IommuFaultReason::kTablePageInvalid;
    fault->table = page;
    fault->detail = check.owner.empty() ? DmaVerdictName(check.verdict) : check.owner;
    return false;
  }
  std::memcpy(out, memory_.Virt(PhysAddr(page.value() + index * sizeof(uint64_t))),
              sizeof(uint64_t));
  return true;
}

bool IommuUnit::LookupContext(uint8_t bus, uint8_t devfn, DmaMemoryOracle* oracle,
                              ContextEntry* out, IommuFault* fault) const {
  uint64_t root_lo = 0;
  if ((gsts_ & DMA_GSTS_RTPS) == 0) {
    fault->reason = IommuFaultReason::kRootNotPresent;
    return false;
  }
  if (!ReadTableEntry(root_table_, bus * 2u, oracle, &root_lo, fault)) return false;
  if ((root_lo & 1) == 0) {
    fault->reason = IommuFaultReason::kRootNotPresent;
    fault->table = root_table_;
    return false;
  }
  const PhysAddr context_table(root_lo & VTD_PAGE_MASK);
  if (!ReadTableEntry(context_table, devfn * 2u, oracle, &out->lo, fault) ||
      !ReadTableEntry(context_table, devfn * 2u + 1, oracle, &out->hi, fault)) {
    return false;
  }
  if ((out->lo & 1) == 0) {
    fault->reason = IommuFaultReason::kContextNotPresent;
    fault->table = context_table;
    return false;
  }
  return true;
}

Translation IommuUnit::Walk(uint8_t bus, uint8_t devfn, uint64_t iova, bool write,
                            DmaMemoryOracle* oracle) const {
  Translation t;
  t.fault =
      IommuFault{.segment = segment_, .bus = bus, .devfn = devfn, .iova = iova, .write = write};
  if (!translation_enabled()) {
    t.ok = true;
    t.pa = PhysAddr(iova);
    t.span = kLeafAll;
    return t;
  }
  ContextEntry ctx;
  if (!LookupContext(bus, devfn, oracle, &ctx, &t.fault)) return t;
  const unsigned type = (ctx.lo >> 2) & 3;
  const unsigned aw = ctx.hi & 7;
  if (type == CONTEXT_TT_PASS_THROUGH) {
    t.ok = true;
    t.pa = PhysAddr(iova);
    t.span = kLeafAll;
    return t;
  }
  if (type != CONTEXT_TT_MULTI_LEVEL || (cap_sagaw(kCap) & (1u << aw)) == 0) {
    t.fault.reason = IommuFaultReason::kContextInvalid;
    return t;
  }
  const unsigned levels = LevelsOf(aw);
  if (iova >> (VTD_PAGE_SHIFT + VTD_STRIDE_SHIFT * levels) != 0) {
    t.fault.reason = IommuFaultReason::kAddressTooWide;
    return t;
  }
  t.did = static_cast<uint16_t>((ctx.hi >> 8) & 0xffff);
  PhysAddr table(ctx.lo & VTD_PAGE_MASK);
  for (unsigned level = levels; level >= 1; --level) {
    const unsigned shift = VTD_PAGE_SHIFT + VTD_STRIDE_SHIFT * (level - 1);
    const unsigned index = (iova >> shift) & 511;
    uint64_t pte = 0;
    if (!ReadTableEntry(table, index, oracle, &pte, &t.fault)) return t;
    if ((pte & (DMA_PTE_READ | DMA_PTE_WRITE)) == 0) {
      t.fault.reason = IommuFaultReason::kPteNotPresent;
      t.fault.table = table;
      return t;
    }
    const bool leaf = level == 1 || ((pte & DMA_PTE_LARGE_PAGE) && level <= 3);
    if (!leaf) {
      table = PhysAddr(pte & DMA_PTE_ADDR_MASK);
      continue;
    }
    if (write && (pte & DMA_PTE_WRITE) == 0) {
      t.fault.reason = IommuFaultReason::kWriteNotAllowed;
      t.fault.table = table;
      return t;
    }
    if (!write && (pte & DMA_PTE_READ) == 0) {
      t.fault.reason = IommuFaultReason::kReadNotAllowed;
      t.fault.table = table;
      return t;
    }
    const uint64_t leaf_size = uint64_t{1} << shift;
    const uint64_t base = pte & DMA_PTE_ADDR_MASK & ~(leaf_size - 1);
    t.ok = true;
    t.pa = PhysAddr(base + (iova & (leaf_size - 1)));
    t.span = leaf_size - (iova & (leaf_size - 1));
    return t;
  }
  return t;
}

Translation IommuUnit::Translate(uint8_t bus, uint8_t devfn, uint64_t iova, bool write,
                                 DmaMemoryOracle* oracle) {
  const uint16_t sid = SourceId(bus, devfn);
  if (translation_enabled()) {
    const uint64_t key = (uint64_t{sid} << 52) | (iova >> VTD_PAGE_SHIFT);
    if (auto it = iotlb_.find(key); it != iotlb_.end()) {
      const TlbEntry& e = it->second;
      if (write ? e.write : e.read) {
        ++iotlb_hits_;
        const uint64_t offset = iova & (VTD_PAGE_SIZE - 1);
        return Translation{.ok = true,
                           .pa = PhysAddr((e.pa_page << VTD_PAGE_SHIFT) + offset),
                           .span = VTD_PAGE_SIZE - offset};
      }
    }
  }
  ++walks_;
  Translation t = Walk(bus, devfn, iova, write, oracle);
  if (!t.ok) {
    fsts_ |= DMA_FSTS_PPF;
    faults_.push_back(t.fault);
    return t;
  }
  if (translation_enabled() && t.span != kLeafAll) {
    const uint64_t key = (uint64_t{sid} << 52) | (iova >> VTD_PAGE_SHIFT);
    if (!iotlb_.contains(key)) {
      if (iotlb_order_.size() == kIotlbEntries) {
        iotlb_.erase(iotlb_order_.front());
        iotlb_order_.pop_front();
      }
      iotlb_order_.push_back(key);
    }
    TlbEntry& e = iotlb_[key];
    e.pa_page = t.pa.value() >> VTD_PAGE_SHIFT;
    e.did = t.did;
    (write ? e.write : e.read) = true;
    t.span = std::min<uint64_t>(t.span, VTD_PAGE_SIZE - (iova & (VTD_PAGE_SIZE - 1)));
  }
  return t;
}

IommuHardware::IommuHardware(PhysicalMemory& memory, const PciTopology& topology) {
  uint64_t base = kIommuMmioBase;
  for (const PciSegmentSpec& segment : topology.segments) {
    units_.push_back(std::make_unique<IommuUnit>(memory, segment.domain, base));
    base += VTD_PAGE_SIZE;
  }
}

void IommuHardware::PowerOn() {
  for (auto& unit : units_) unit->PowerOn();
}

IommuUnit* IommuHardware::Unit(uint16_t segment) const {
  for (const auto& unit : units_) {
    if (unit->segment() == segment) return unit.get();
  }
  return nullptr;
}

}  // namespace khosim::hw

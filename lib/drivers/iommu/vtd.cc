// The VT-d half of the IOMMU core: unit registers, root and context
// tables, second-stage page tables (khosim/linux/intel_iommu_regs.h gives
// the formats the hardware walks).
//
// Table pages come from the buddy allocator, one kernel page each (on
// 16 KiB pages the 4 KiB table sits at the start). Entries are written in
// place through the direct map, child before parent and hi before lo, so
// the hardware never sees a present entry pointing at an unwritten table.
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "khosim/drivers/iommu.h"
#include "khosim/linux/atomic.h"
#include "khosim/linux/gfp.h"
#include "khosim/linux/intel_iommu_regs.h"
#include "khosim/linux/mm_types.h"

namespace khosim::drivers {
namespace {

constexpr uint64_t kTablePresent = DMA_PTE_READ | DMA_PTE_WRITE;
uint64_t LevelSize(unsigned level) { return uint64_t{1} << (VTD_PAGE_SHIFT + 9 * (level - 1)); }
unsigned IndexAt(uint64_t iova, unsigned level) {
  return (iova >> (VTD_PAGE_SHIFT + 9 * (level - 1))) & 511;
}

}  // namespace

PhysAddr IommuCore::AllocTable() {
  struct page* page = mm_.pages().Alloc(GFP_KERNEL | __GFP_ZERO, 0);
  if (page == nullptr) return PhysAddr();
  return mm_.PageToPhys(page);
}

void IommuCore::FreeTable(PhysAddr table) {
  struct page* page = mm_.PhysToPage(table);
  atomic_set(&page->_refcount, 0);
  mm_.pages().Free(page, 0);
}

uint64_t IommuCore::ReadEntry(PhysAddr table, unsigned index) const {
  uint64_t v;
  std::memcpy(&v, mm_.memory().Virt(PhysAddr(table.value() + 8 * index)), 8);
  return v;
}

void IommuCore::WriteEntry(PhysAddr table, unsigned index, uint64_t value) {
  std::memcpy(mm_.memory().Virt(PhysAddr(table.value() + 8 * index)), &value, 8);
}

void IommuCore::BringUp(IommuUnitState& unit) {
  hw::IommuUnit& hw = *unit.hw;
  if (hw.translation_enabled()) {
    ctx_.Log(absl::StrCat("DMAR: Translation was enabled for dmar", unit.seq,
                          " but we are not in kdump mode"));
    hw.WriteReg(DMAR_GCMD_REG, 0);
  }
  unit.root = AllocTable();
  if (unit.root.IsNull()) return;  // the unit stays off; Init reports -ENOMEM
  unit_tables_.insert(unit.root.value());
  hw.WriteReg(DMAR_RTADDR_REG, unit.root.value());
  hw.WriteReg(DMAR_GCMD_REG, DMA_GCMD_SRTP);
  FlushContext(unit);
  FlushIotlb(unit, 0);
  hw.WriteReg(DMAR_GCMD_REG, DMA_GCMD_TE);
}

void IommuCore::FlushContext(IommuUnitState& unit) {
  unit.hw->WriteReg(DMAR_CCMD_REG, DMA_CCMD_ICC | DMA_CCMD_GLOBAL_INVL);
}

void IommuCore::FlushIotlb(IommuUnitState& unit, uint16_t did) {
  const uint32_t reg = ecap_iotlb_offset(unit.hw->ReadReg(DMAR_ECAP_REG)) + DMAR_IOTLB_REG_OFFSET;
  unit.hw->WriteReg(reg, did == 0 ? DMA_TLB_IVT | DMA_TLB_GLOBAL_FLUSH
                                  : DMA_TLB_IVT | DMA_TLB_DSI_FLUSH | DMA_TLB_DID(did));
}

int IommuCore::AllocDid(IommuUnitState& unit) {
  const uint64_t ndoms = cap_ndoms(unit.hw->ReadReg(DMAR_CAP_REG));
  for (uint64_t did = 1; did < ndoms && did < unit.dids.size(); ++did) {
    if (!unit.dids.test(did)) {
      unit.dids.set(did);
      return static_cast<int>(did);
    }
  }
  return -ENOSPC;
}

int IommuCore::EnsureContextTable(IommuUnitState& unit, uint8_t bus) {
  if (!unit.context[bus].IsNull()) return 0;
  const PhysAddr table = AllocTable();
  if (table.IsNull()) return -ENOMEM;
  unit.context[bus] = table;
  unit_tables_.insert(table.value());
  WriteEntry(unit.root, bus * 2u + 1, 0);
  WriteEntry(unit.root, bus * 2u, table.value() | 1);
  return 0;
}

void IommuCore::WriteContext(IommuUnitState& unit, const struct pci_dev* pdev, IommuDomain* domain,
                             uint16_t did) {
  const PhysAddr table = unit.context[pdev->bus->number];
  if (table.IsNull()) return;
  const unsigned slot = pdev->devfn * 2u;
  if (domain == nullptr) {
    WriteEntry(table, slot, 0);
    WriteEntry(table, slot + 1, 0);
  } else {
    WriteEntry(table, slot, 0);  // not present while it changes
    WriteEntry(table, slot + 1, AGAW_48 | (uint64_t{did} << 8));
    WriteEntry(table, slot, domain->top.value() | (CONTEXT_TT_MULTI_LEVEL << 2) | 1);
  }
  FlushContext(unit);
  FlushIotlb(unit, did);
}

bool IommuCore::FindLeaf(const IommuDomain& d, uint64_t iova, PhysAddr* table, unsigned* index,
                         uint64_t* size) const {
  PhysAddr t = d.top;
  for (unsigned level = d.levels; level >= 1; --level) {
    const unsigned i = IndexAt(iova, level);
    const uint64_t pte = ReadEntry(t, i);
    if ((pte & kTablePresent) == 0) {
      *size = LevelSize(level);  // the hole this entry spans
      return false;
    }
    if (level == 1 || (pte & DMA_PTE_LARGE_PAGE)) {
      *table = t;
      *index = i;
      *size = LevelSize(level);
      return true;
    }
    t = PhysAddr(pte & DMA_PTE_ADDR_MASK);
  }
  return false;
}

int IommuCore::Map(struct iommu_domain* face, uint64_t iova, uint64_t paddr, uint64_t size,
                   int prot) {
  IommuDomain* d = FromFace(face);
  if (face->preserved_state != nullptr) return -EBUSY;
  const uint64_t end = iova + size;
  if (size == 0 || ((iova | paddr | size) & (VTD_PAGE_SIZE - 1)) != 0 ||
      (prot & (IOMMU_READ | IOMMU_WRITE)) == 0 || end < iova ||
      end - 1 > face->geometry.aperture_end) {
    return -EINVAL;
  }
  const uint64_t leaf_bits =
      ((prot & IOMMU_READ) ? DMA_PTE_READ : 0) | ((prot & IOMMU_WRITE) ? DMA_PTE_WRITE : 0);
  uint64_t done = 0;
  int err = 0;
  while (done < size && err == 0) {
    const uint64_t va = iova + done;
    const uint64_t pa = paddr + done;
    // The largest leaf the alignment and the length allow.
    unsigned leaf = 1;
    for (unsigned l = 3; l >= 2; --l) {
      if (((va | pa) & (LevelSize(l) - 1)) == 0 && size - done >= LevelSize(l)) {
        leaf = l;
        break;
      }
    }
    PhysAddr t = d->top;
    for (unsigned level = d->levels; level > leaf; --level) {
      const unsigned i = IndexAt(va, level);
      uint64_t pte = ReadEntry(t, i);
      if (pte & DMA_PTE_LARGE_PAGE) {
        err = -EEXIST;
        break;
      }
      if ((pte & kTablePresent) == 0) {
        const PhysAddr child = AllocTable();
        if (child.IsNull()) {
          err = -ENOMEM;
          break;
        }
        d->tables.insert(child.value());
        pte = child.value() | kTablePresent;
        WriteEntry(t, i, pte);
      }
      t = PhysAddr(pte & DMA_PTE_ADDR_MASK);
    }
    if (err != 0) break;
    const unsigned i = IndexAt(va, leaf);
    if (ReadEntry(t, i) & kTablePresent) {
      err = -EEXIST;
      break;
    }
    WriteEntry(t, i, pa | leaf_bits | (leaf > 1 ? DMA_PTE_LARGE_PAGE : 0));
    done += LevelSize(leaf);
  }
  d->mapped_bytes += done;
  if (err != 0 && done > 0) Unmap(face, iova, done);
  return err;
}

uint64_t IommuCore::Unmap(struct iommu_domain* face, uint64_t iova, uint64_t size) {
  IommuDomain* d = FromFace(face);
  if (face->preserved_state != nullptr) {
    ctx_.Warn(KHOSIM_SITE, "iommu_unmap on a preserved domain");
    return 0;
  }
  uint64_t unmapped = 0;
  const uint64_t end = iova + size < iova ? ~uint64_t{0} : iova + size;
  for (uint64_t va = iova & VTD_PAGE_MASK; va < end;) {
    PhysAddr table;
    unsigned index = 0;
    uint64_t span = 0;
    const bool mapped = FindLeaf(*d, va, &table, &index, &span);
    const uint64_t next = (va & ~(span - 1)) + span;
    if (mapped) {
      WriteEntry(table, index, 0);
      unmapped += span;
    }
    if (next <= va) break;  // wrapped at the top of the address space
    va = next;
  }
  d->mapped_bytes -= std::min(d->mapped_bytes, unmapped);
  if (unmapped != 0) {
    for (auto& [unit, did] : d->dids) FlushIotlb(*unit, did.first);
  }
  return unmapped;
}

uint64_t IommuCore::IovaToPhys(struct iommu_domain* face, uint64_t iova) {
  PhysAddr table;
  unsigned index = 0;
  uint64_t span = 0;
  if (!FindLeaf(*FromFace(face), iova, &table, &index, &span)) return 0;
  return (ReadEntry(table, index) & DMA_PTE_ADDR_MASK & ~(span - 1)) + (iova & (span - 1));
}

void IommuCore::FreeTables(IommuDomain& d, PhysAddr table, unsigned level) {
  if (level > 1) {
    for (unsigned i = 0; i < 512; ++i) {
      const uint64_t pte = ReadEntry(table, i);
      if ((pte & kTablePresent) != 0 && (pte & DMA_PTE_LARGE_PAGE) == 0) {
        const PhysAddr child(pte & DMA_PTE_ADDR_MASK);
        if (d.tables.contains(child.value())) FreeTables(d, child, level - 1);
      }
    }
  }
  d.tables.erase(table.value());
  FreeTable(table);
}

}  // namespace khosim::drivers

// The running kernel's answer to the hardware's question "may this DMA
// touch this page?" (hw::DmaMemoryOracle). It is what turns silent memory
// corruption into a named event.
//
// A page a device writes is legitimate when
//   - this kernel's domain attached to the device maps that IOVA to it
//     (the kernel's own tables, read in software: a stale IOTLB entry
//     after an unmap does not count), or
//   - it is preserved memory: a block the previous kernel preserved that
//     is still waiting to be restored, or a page restored from one and not
//     freed since (guest memory the device's preserved domain maps, before
//     the new kernel has restored that domain).
// Otherwise it is a stray write: into free memory (the allocator will hand
// it out, scrubbed), or into memory the kernel owns for something else.
// A table page the unit reads is legitimate when it is one of this
// kernel's root, context or page tables, or preserved memory not yet
// restored (the previous kernel's tables, before this one adopts them).
//
// Before the buddy allocator runs (the first boot steps of a kernel), the
// kernel knows only its memblock reservations: a page it reserved is its
// own unless KHO reserved it as preserved memory; anything else is not
// judged yet (preserved memory is not reserved until KHO retrieves it).
#include <memory>

#include "khosim/drivers/iommu.h"
#include "khosim/linux/mm_types.h"

namespace khosim::drivers {
namespace {

class DmaOracle : public hw::DmaMemoryOracle {
 public:
  DmaOracle(IommuCore& core, mm::Mm& mm, kho::Kho& kho) : core_(core), mm_(mm), kho_(kho) {}

  hw::DmaCheck CheckTablePage(uint16_t /*segment*/, PhysAddr page) override {
    const PhysAddr kpage = KernelPage(page);
    if (!mm_.buddy_ready()) return Early(kpage);
    if (mm_.pages().IsFree(mm_.geometry().PhysToPfn(kpage))) return Free();
    if (core_.IsTablePage(kpage) || InUnrestoredBlock(kpage)) return {};
    return {hw::DmaVerdict::kOtherOwner, "kernel memory that is not a page table"};
  }

  hw::DmaCheck CheckAccess(const hw::PciFunction& device, uint64_t iova, PhysAddr page,
                           bool write) override {
    const PhysAddr kpage = KernelPage(page);
    if (!mm_.buddy_ready()) return write ? Early(kpage) : hw::DmaCheck{};
    if (mm_.pages().IsFree(mm_.geometry().PhysToPfn(kpage))) {
      hw::DmaCheck free = Free();
      if (!write) free.verdict = hw::DmaVerdict::kOk;
      return free;
    }
    if (!write || MappedForDevice(device, iova, page) || IsPreservedMemory(kpage)) return {};
    return {hw::DmaVerdict::kOtherOwner,
            core_.IsTablePage(kpage) ? "an IOMMU page table" : "kernel memory"};
  }

 private:
  PhysAddr KernelPage(PhysAddr pa) const {
    const uint64_t size = mm_.geometry().page_size();
    return PhysAddr(pa.value() & ~(size - 1));
  }

  hw::DmaCheck Early(PhysAddr kpage) const {
    // KHO reserves what it retrieved: that is preserved memory, not ours.
    if (mm_.memmap_ready() && InUnrestoredBlock(kpage)) return {};
    if (mm_.memblock().IsReserved(kpage, mm_.geometry().page_size())) {
      return {hw::DmaVerdict::kOtherOwner, "boot memory the kernel reserved"};
    }
    return {};
  }

  hw::DmaCheck Free() const {
    return {hw::DmaVerdict::kFree, "free memory",
            mm_.pages().policy() != mm::FreeMemoryPolicy::kInaccessible};
  }

  bool MappedForDevice(const hw::PciFunction& device, uint64_t iova, PhysAddr page) {
    PciCore* pci = PciCore::CurrentOrNull();
    struct pci_dev* pdev = pci == nullptr ? nullptr : pci->FindFunction(device);
    if (pdev == nullptr || pdev->dev.iommu == nullptr) return false;
    IommuDomain* d = pdev->dev.iommu->domain;
    if (d == nullptr) return false;
    const uint64_t pa = core_.IovaToPhys(&d->face, iova);
    return pa != 0 && (pa & ~uint64_t{0xfff}) == (page.value() & ~uint64_t{0xfff});
  }

  // Inside a block the previous kernel preserved that nobody restored yet:
  // the block's head carries KHO's tag and an order that covers |kpage|.
  bool InUnrestoredBlock(PhysAddr kpage) const {
    const uint64_t pfn = mm_.geometry().PhysToPfn(kpage).value();
    for (unsigned order = 0; order < 40; ++order) {
      const uint64_t head = pfn & ~((uint64_t{1} << order) - 1);
      unsigned block_order = 0;
      if (kho_.IsPreservedHead(mm_.geometry().PfnToPhys(Pfn(head)), &block_order) &&
          block_order >= order) {
        return true;
      }
      if (head == 0) break;
    }
    return false;
  }

  bool IsPreservedMemory(PhysAddr kpage) const {
    const struct page* page = mm_.PhysToPage(kpage);
    if (page->compound_head & 1) {
      page = reinterpret_cast<const struct page*>(page->compound_head & ~1UL);
    }
    return (page->flags & (1UL << PG_kho_restored)) != 0 || InUnrestoredBlock(kpage);
  }

  IommuCore& core_;
  mm::Mm& mm_;
  kho::Kho& kho_;
};

}  // namespace

std::unique_ptr<hw::DmaMemoryOracle> MakeDmaOracle(IommuCore& core, mm::Mm& mm, kho::Kho& kho) {
  return std::make_unique<DmaOracle>(core, mm, kho);
}

}  // namespace khosim::drivers

// Mm: one kernel's memory substrate (memblock, memmap, buddy, vmalloc) and
// the boot steps that bring it up in the kernel's order:
//
//   SetupArch()      memblock_add every RAM range, reserve the kernel image
//                    and early allocations (scratch-only on a KHO boot)
//   InitMemmap()     reserve the memmap's physical footprint per node, create
//                    the struct page array and the (still empty) page
//                    allocator, whose pageblock types may now be set
//   FreeAll()        memblock_free_all: every unreserved page goes to the
//                    buddy allocator; what the previous kernel left there is
//                    scrubbed first (poisoned, or unmapped), so only memory
//                    this kernel knows to be reserved keeps its bytes
//
// Upper layers (KHO) hook in between these steps; the Kernel in sim/machine
// sequences them. Kernel-face functions reach the current kernel's Mm
// through Mm::Current().
#ifndef KHOSIM_MM_MM_H_
#define KHOSIM_MM_MM_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/mm/hugetlb.h"
#include "khosim/mm/memblock.h"
#include "khosim/mm/memmap.h"
#include "khosim/mm/page_alloc.h"
#include "khosim/mm/vmalloc.h"

namespace khosim::mm {

struct MmConfig {
  FreeMemoryPolicy free_memory_policy = FreeMemoryPolicy::kPoison;
  // Where the kernel image sits and how large it is. A cold boot places it
  // at |image_base|; a kexec'd kernel is wherever kexec loaded it.
  PhysAddr image_base;
  uint64_t image_size = 0;
  // Early memblock allocations besides the memmap (page tables, per-cpu
  // areas, log buffer...), made per node. They count as RSRV_KERN and so
  // drive KHO's scratch sizing.
  uint64_t early_alloc_bytes_per_node = 0;
  // Early allocations that must sit below 4 GiB (DMA buffers, trampolines);
  // they are what KHO's lowmem scratch region is sized from.
  uint64_t low_early_alloc_bytes = 0;
  // Reserve the memmap's physical footprint (kKernelStructPageBytes/frame).
  bool reserve_memmap_footprint = true;
};

class Mm {
 public:
  Mm(KernelContext& ctx, hw::PhysicalMemory& memory, MmConfig config);
  ~Mm();

  static Mm& Current();

  // Boot steps, in order (see the file comment). Each panics where the
  // kernel would (an early allocation that cannot be satisfied).
  void SetupArch();
  void InitMemmap();
  void FreeAll();

  KernelContext& ctx() { return ctx_; }
  hw::PhysicalMemory& memory() { return memory_; }
  const PageGeometry& geometry() const { return ctx_.geometry(); }
  Memblock& memblock() { return memblock_; }
  Memmap& memmap() { return *memmap_; }
  PageAllocator& pages() { return *allocator_; }
  Vmalloc& vmalloc() { return *vmalloc_; }
  Hugetlb& hugetlb() { return *hugetlb_; }
  bool buddy_ready() const { return allocator_ != nullptr && free_all_done_; }
  bool memmap_ready() const { return memmap_ != nullptr; }

  // phys <-> struct page / direct map.
  struct page* PhysToPage(PhysAddr pa) const;
  PhysAddr PageToPhys(const struct page* page) const;
  void* PageAddress(const struct page* page) const;
  struct page* VirtToPage(const void* va) const;

  // Allocates early (memblock) memory, zeroed, or panics (the kernel's
  // memblock_alloc_or_panic). |nid| -1 = any node.
  PhysAddr EarlyAllocOrPanic(uint64_t size, uint64_t align, int nid = kNumaNoNode,
                             bool exact_nid = false);

  // kexec_file_load's segment placement: takes the highest free run of
  // |size| bytes aligned to |align| inside the allowed windows (all of RAM
  // unless restricted; KHO allows only boot memory) out of the page
  // allocator, so later segments cannot overlap it. -EADDRNOTAVAIL if none.
  int PlaceKexecSegment(uint64_t size, uint64_t align, PhysAddr* out);
  void SetKexecSegmentWindows(std::vector<PhysRange> windows) {
    kexec_windows_ = std::move(windows);
  }

  // The kernel's slab heap (kmalloc and friends, khosim/linux/slab.h): host
  // memory owned by this kernel. What is still allocated when the kernel
  // goes away (a kexec) is freed with it, as kernel A's slab simply stops
  // existing; nothing in it is ever handed over.
  void* SlabAlloc(size_t size, bool zero);
  void SlabFree(const void* p);
  size_t SlabObjects() const;

  // Zeroes [pa, pa+len) cheaply: page-aligned interiors are discarded
  // rather than written, so zeroing untouched memory costs no host memory.
  void ZeroPhys(PhysAddr pa, uint64_t len);

 private:
  KernelContext& ctx_;
  hw::PhysicalMemory& memory_;
  const MmConfig config_;
  Memblock memblock_;
  std::unique_ptr<Memmap> memmap_;
  std::unique_ptr<PageAllocator> allocator_;
  std::unique_ptr<Vmalloc> vmalloc_;
  std::unique_ptr<Hugetlb> hugetlb_;
  bool free_all_done_ = false;
  std::vector<PhysRange> kexec_windows_;
  mutable absl::Mutex slab_mu_;
  absl::flat_hash_set<const void*> slab_ ABSL_GUARDED_BY(slab_mu_);
};

}  // namespace khosim::mm

#endif  // KHOSIM_MM_MM_H_

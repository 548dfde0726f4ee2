// Vmalloc: virtually contiguous areas over physically scattered pages.
//
// Each area is a range of a per-kernel host address window in which the
// backing pages are mapped a second time (PhysicalMemory::MapAlias), so
// writing through a vmalloc pointer writes the very physical pages the area
// owns; KHO can preserve those pages and kernel B sees the bytes. Runs of
// physically consecutive pages are mapped with one mapping.
//
// Areas are separated by one unmapped guard page, as in the kernel.
// Context: any; internally locked.
#ifndef KHOSIM_MM_VMALLOC_H_
#define KHOSIM_MM_VMALLOC_H_

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/linux/gfp.h"
#include "khosim/linux/vmalloc.h"
#include "khosim/mm/memmap.h"
#include "khosim/mm/page_alloc.h"

namespace khosim::mm {

class Vmalloc {
 public:
  Vmalloc(KernelContext& ctx, hw::PhysicalMemory& memory, Memmap& memmap, PageAllocator& allocator);
  ~Vmalloc();  // unmaps every area; pages are the kernel's to leak
  Vmalloc(const Vmalloc&) = delete;
  Vmalloc& operator=(const Vmalloc&) = delete;

  // vmalloc()/vzalloc(): pages of 2^page_order (0 normally; with
  // VM_ALLOW_HUGE_VMAP and size >= pageblock, the pageblock order). nullptr
  // on failure (fault point "vmalloc", or page allocation failure).
  void* Alloc(uint64_t size, gfp_t gfp, unsigned long vm_flags = VM_ALLOC);
  // vmap(): maps caller pages (each 2^page_order pages, physically
  // contiguous). With VM_ALLOC or VM_MAP_PUT_PAGES the area owns the pages
  // and Free() drops one reference on each (VM_MAP_PUT_PAGES itself is not
  // kept in the area's flags).
  void* Map(struct page** pages, unsigned int count, unsigned int page_order,
            unsigned long vm_flags);
  // vfree()/vunmap(): nullptr is a no-op; an address that is not an area's
  // start WARNs and does nothing.
  void Free(const void* addr);

  bool IsVmallocAddr(const void* addr) const;
  // The area whose [addr, addr+size) contains |addr|, or nullptr.
  const vm_struct* FindArea(const void* addr) const;
  struct page* ToPage(const void* addr) const;
  uint64_t AreaCount() const;

 private:
  struct Area {
    vm_struct vm;
    std::vector<struct page*> pages;  // one per 2^page_order block
    bool owns_pages;
  };

  void* ReserveVaLocked(uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MapPages(Area& area);

  KernelContext& ctx_;
  hw::PhysicalMemory& memory_;
  Memmap& memmap_;
  PageAllocator& allocator_;
  uint8_t* window_;
  uint64_t window_size_;

  mutable absl::Mutex mu_;
  uint64_t next_offset_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, uint64_t> free_va_ ABSL_GUARDED_BY(mu_);  // offset -> size
  std::map<uintptr_t, Area> areas_ ABSL_GUARDED_BY(mu_);       // by start address
  // area start -> (window offset, bytes) of the reservation holding it
  std::map<uintptr_t, std::pair<uint64_t, uint64_t>> reservations_ ABSL_GUARDED_BY(mu_);
};

}  // namespace khosim::mm

#endif  // KHOSIM_MM_VMALLOC_H_

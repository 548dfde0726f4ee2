// Memmap: one struct page per page frame, virtually contiguous like the
// kernel's SPARSEMEM_VMEMMAP, so `page + n` and pfn arithmetic work.
//
// Host cost: the array is reserved with MAP_NORESERVE and starts zeroed; a
// host page of struct pages is materialized only when one of them is
// written. Free memory is tracked by the page allocator without touching
// struct pages, so a 1 TiB machine costs host memory only for the struct
// pages of frames the kernel actually used.
//
// The kernel's memmap also occupies physical memory. Mm reserves that
// footprint in memblock (kKernelStructPageBytes per frame, RSRV_KERN), so
// scratch sizing and early-boot pressure match the kernel, while the
// contents live here.
#ifndef KHOSIM_MM_MEMMAP_H_
#define KHOSIM_MM_MEMMAP_H_

#include <cstdint>

#include "khosim/base/types.h"
#include "khosim/linux/mm_types.h"

namespace khosim::mm {

// sizeof(struct page) on a 64-bit kernel: what the memmap costs in RAM.
inline constexpr uint64_t kKernelStructPageBytes = 64;

class Memmap {
 public:
  // Covers pfns [0, end_pfn).
  explicit Memmap(uint64_t end_pfn);
  ~Memmap();
  Memmap(const Memmap&) = delete;
  Memmap& operator=(const Memmap&) = delete;

  uint64_t end_pfn() const { return end_pfn_; }
  struct page* PfnToPage(Pfn pfn) const {
    return pages_ + pfn.value();
  }
  Pfn PageToPfn(const struct page* page) const { return Pfn(static_cast<uint64_t>(page - pages_)); }
  bool Contains(const void* p) const {
    return p >= static_cast<const void*>(pages_) && p < static_cast<const void*>(pages_ + end_pfn_);
  }
  // Host bytes of the array that have been materialized.
  uint64_t ResidentBytes() const;

 private:
  struct page* pages_;
  uint64_t end_pfn_;
  uint64_t bytes_;
};

}  // namespace khosim::mm

#endif  // KHOSIM_MM_MEMMAP_H_

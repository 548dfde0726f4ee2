// PageAllocator: the buddy allocator over the machine's page frames.
//
// Per node, per migrate type, per order, an ordered set of free block head
// pfns. Keeping free blocks out of struct page (the kernel links them
// through page->buddy_list) is what lets a mostly-free 1 TiB machine cost
// no memmap host memory; it also makes the choice of block deterministic
// (lowest pfn first).
//
// Pageblocks (2^pageblock_order pages) carry a migrate type. CMA pageblocks
// serve movable allocations only; KHO types its scratch CMA in kernel A.
// Free blocks never span pageblocks of different types: two buddies merge
// above pageblock_order only if their pageblocks agree.
//
// Allocation: preferred node first, then the other nodes in ascending
// distance (id order) unless __GFP_THISNODE. Every call is one hit of the
// "alloc_pages" fault point (except __GFP_NOFAIL). An allocation returns
// the head page with refcount 1; __GFP_COMP makes it a compound folio;
// __GFP_ZERO zeroes it.
//
// Context: any; internally locked (one lock, like a single zone lock).
#ifndef KHOSIM_MM_PAGE_ALLOC_H_
#define KHOSIM_MM_PAGE_ALLOC_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/types.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/mm/gfp.h"
#include "khosim/mm/memmap.h"

namespace khosim::mm {

enum class MigrateType : uint8_t { kUnmovable, kMovable, kReclaimable, kCma, kCount };
std::string_view MigrateTypeName(MigrateType type);

// What the allocator does to memory it does not hold allocated.
enum class FreeMemoryPolicy {
  kPoison,        // free memory keeps (scrubbed) bytes; reads are allowed
  kInaccessible,  // free memory is unmapped: a stray read faults
};

class PageAllocator {
 public:
  PageAllocator(KernelContext& ctx, hw::PhysicalMemory& memory, Memmap& memmap,
                FreeMemoryPolicy policy);

  // Boot-time: hands [start, end) of node |nid| to the allocator
  // (memblock_free_all and init_cma_reserved_pageblock use this). Page
  // aligned. Pageblock types of the range are set to |type| first if given.
  void AddFreeRange(Pfn start, Pfn end, int nid);
  void SetPageblockType(Pfn pfn, MigrateType type);
  MigrateType PageblockType(Pfn pfn) const;

  // Returns the head page, or nullptr on failure (no memory, or the fault
  // point fired). |nid| = -1 means the local (first) node.
  struct page* Alloc(gfp_t gfp, unsigned order, int nid = -1);
  // Frees a block previously returned by Alloc (or restored by KHO) of this
  // order. The caller has dropped the last reference.
  void Free(struct page* page, unsigned order);
  // Takes an exact block out of the free lists (for alloc_contig_range-like
  // callers, e.g. hugetlb pools). Fails with false if any page is not free.
  bool AllocRange(Pfn start, uint64_t nr_pages);

  // Highest run of |nr_pages| free pages inside [lo, hi), starting at a
  // multiple of |align_pages|, without taking it. Used to place kexec
  // segments in memory the kernel is not using. False if none.
  bool FindFreeRun(uint64_t nr_pages, uint64_t align_pages, Pfn lo, Pfn hi, Pfn* out) const;

  uint64_t FreePages(int nid = -1) const;
  uint64_t ManagedPages() const { return managed_pages_.load(); }
  void AdjustManagedPages(int64_t delta) { managed_pages_ += delta; }
  // True iff |pfn| is inside a free block.
  bool IsFree(Pfn pfn) const;
  // Per node, per order: number of free blocks (any migrate type).
  std::vector<std::vector<uint64_t>> FreeBlockCounts() const;

  // Free sets disjoint, aligned, inside their node, homogeneous pageblock
  // types, no two free buddies left unmerged, counters consistent.
  absl::Status Validate() const;

  FreeMemoryPolicy policy() const { return policy_; }

 private:
  struct NodeFreeArea {
    // [migrate type][order] -> head pfns
    std::vector<std::array<absl::btree_set<uint64_t>, static_cast<int>(MigrateType::kCount)>>
        by_order;
    uint64_t free_pages = 0;
  };

  MigrateType TypeForGfp(gfp_t gfp) const;
  int NodeOfPfn(uint64_t pfn) const;
  void FreeBlockLocked(uint64_t pfn, unsigned order, int nid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TakeBlockLocked(int nid, unsigned order, MigrateType type, bool allow_cma,
                       uint64_t* pfn_out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool FindFreeBlockLocked(uint64_t pfn, int nid, uint64_t* head, unsigned* order,
                           MigrateType* type) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PrepareAllocated(uint64_t pfn, unsigned order, gfp_t gfp);

  KernelContext& ctx_;
  hw::PhysicalMemory& memory_;
  Memmap& memmap_;
  const FreeMemoryPolicy policy_;
  const unsigned max_order_;
  const unsigned pageblock_order_;

  mutable absl::Mutex mu_;
  std::vector<NodeFreeArea> nodes_ ABSL_GUARDED_BY(mu_);
  std::vector<uint8_t> pageblock_types_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> managed_pages_{0};
};

}  // namespace khosim::mm

#endif  // KHOSIM_MM_PAGE_ALLOC_H_

// PageAllocator: the buddy allocator over the machine's page frames.
//
// Per node, per order, per migrate type, an ordered set of free block head
// pfns. Keeping free blocks out of struct page (the kernel links them
// through page->buddy_list) is what lets a mostly-free 1 TiB machine cost
// no memmap host memory; it also makes the choice of block deterministic
// (lowest pfn first). Free blocks are naturally aligned (head pfn a multiple
// of 2^order), never cross a node, and never exceed max_page_order.
//
// Pageblocks (2^pageblock_order pages) carry a migrate type, kMovable until
// set. CMA pageblocks serve movable allocations only; KHO types its scratch
// CMA in kernel A. A free block never spans pageblocks of different types:
// two buddies above pageblock_order merge only if their pageblocks have the
// same type (the kernel also merges two different non-CMA types and retypes
// one; here a pageblock's type changes only through SetPageblockType).
//
// Allocation: preferred node first, then the other nodes in ascending id
// order unless __GFP_THISNODE. Within a node: the pageblock type of the gfp
// (__GFP_MOVABLE, __GFP_RECLAIMABLE, else unmovable), then the other non-CMA
// types, then (movable only) CMA; within a type the smallest sufficient
// order, lowest pfn. Every call is one hit of the "alloc_pages" fault point
// (except __GFP_NOFAIL). An allocation returns the head page with refcount
// 1; __GFP_COMP makes it a compound folio; __GFP_ZERO zeroes it.
//
// Freeing resets what allocation set in struct page (the head, and the
// tails of a compound block) and merges with free buddies. Freeing pages
// that are already (partly) free is a double free: BUG (KernelPanic). Under
// FreeMemoryPolicy::kInaccessible every free page, including those handed
// over by AddFreeRange, is discarded and unmapped until allocated again.
//
// Context: any; internally locked (one lock, like a single zone lock).
#ifndef KHOSIM_MM_PAGE_ALLOC_H_
#define KHOSIM_MM_PAGE_ALLOC_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/types.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/linux/gfp.h"
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
  // (memblock_free_all and init_cma_reserved_pageblock use this) and counts
  // it as managed. The range is cut into the largest aligned blocks that
  // respect pageblock types, each freed through the merge path, so adjacent
  // ranges coalesce. Set pageblock types (CMA) before handing memory over.
  // A range outside |nid|'s RAM or the memmap is refused with a WARN; one
  // that overlaps free memory is a double free (BUG).
  void AddFreeRange(Pfn start, Pfn end, int nid);
  // Sets the type of the pageblock holding |pfn|. Free memory inside it
  // moves to the new type's lists at once: a free block spanning several
  // pageblocks is split at pageblock boundaries and the pieces re-merge
  // with neighbours of the same type. Allocated memory simply frees into
  // the new type later. A pfn outside the memmap, or kCount, WARNs.
  void SetPageblockType(Pfn pfn, MigrateType type);
  MigrateType PageblockType(Pfn pfn) const;

  // Returns the head page, or nullptr on failure (no memory, or the fault
  // point fired). |nid| = -1 means the local (first) node; a nid that is not
  // a node WARNs and is treated as -1. |order| above max_page_order returns
  // nullptr with a WARN (none with __GFP_NOWARN). Allocations of at least
  // KernelEnv::TraceAllocThreshold() bytes emit an "alloc/pages" event.
  struct page* Alloc(gfp_t gfp, unsigned order, int nid = -1);
  // Frees a block previously returned by Alloc (or restored by KHO) of this
  // order. The caller has dropped the last reference. Orders above
  // max_page_order (gigantic pages) are freed as max-order blocks. BUG on a
  // double free, a misaligned block, or a block that is not one node's RAM.
  void Free(struct page* page, unsigned order);
  // Takes an exact range out of the free lists (for alloc_contig_range-like
  // callers, e.g. hugetlb pools), splitting free blocks that straddle its
  // edges. Fails with false, changing nothing, if any page is not free. The
  // pages' struct pages are left as they are (refcount 0): the caller sets
  // them up. Free them later with Free() in naturally aligned blocks.
  bool AllocRange(Pfn start, uint64_t nr_pages);

  // Highest run of |nr_pages| free pages inside [lo, hi), starting at a
  // multiple of |align_pages| (0 counts as 1), without taking it. A run may
  // span adjacent free blocks, even of different nodes. Used to place kexec
  // segments in memory the kernel is not using. False if none.
  bool FindFreeRun(uint64_t nr_pages, uint64_t align_pages, Pfn lo, Pfn hi, Pfn* out) const;

  // Free pages of node |nid|, or of all nodes for -1.
  uint64_t FreePages(int nid = -1) const;
  uint64_t ManagedPages() const { return managed_pages_.load(); }
  void AdjustManagedPages(int64_t delta) { managed_pages_ += delta; }
  // True iff |pfn| is inside a free block.
  bool IsFree(Pfn pfn) const;
  // Per node, per order: number of free blocks (any migrate type).
  std::vector<std::vector<uint64_t>> FreeBlockCounts() const;

  // Free sets disjoint, aligned, inside their node, homogeneous pageblock
  // types, no two free buddies left unmerged, counters consistent. Returns
  // InternalError naming the first violation.
  absl::Status Validate() const;

  FreeMemoryPolicy policy() const { return policy_; }

 private:
  static constexpr int kNumTypes = static_cast<int>(MigrateType::kCount);

  struct NodeFreeArea {
    // [order][migrate type] -> head pfns
    std::vector<std::array<absl::btree_set<uint64_t>, kNumTypes>> by_order;
    uint64_t free_pages = 0;
  };
  // One free block, as the lists record it.
  struct FreeBlock {
    uint64_t pfn = 0;
    unsigned order = 0;
    MigrateType type = MigrateType::kMovable;
    int nid = 0;
  };

  MigrateType TypeForGfp(gfp_t gfp) const;
  int NodeOfPfn(uint64_t pfn) const;
  // True iff pfns [start, end) are all RAM of node |nid|.
  bool RangeInNodeRam(uint64_t start, uint64_t end, int nid) const;
  MigrateType TypeLocked(uint64_t pfn) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // True iff every pageblock of the block has the same type.
  bool HomogeneousLocked(uint64_t pfn, unsigned order) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Raw list edits (no merging); they keep free_pages in step.
  void InsertLocked(int nid, uint64_t pfn, unsigned order) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(const FreeBlock& block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The merge path: frees one aligned, homogeneous block.
  void FreeBlockLocked(uint64_t pfn, unsigned order, int nid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees [start, end) of node |nid| as the largest blocks the alignment,
  // max order and pageblock types allow.
  void FreeRangeLocked(uint64_t start, uint64_t end, int nid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TakeBlockLocked(int nid, unsigned order, MigrateType type, bool allow_cma, uint64_t* pfn_out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Free blocks of node |nid| overlapping pfns [start, end), at most |limit|.
  std::vector<FreeBlock> OverlappingLocked(int nid, uint64_t start, uint64_t end,
                                           size_t limit) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool FindFreeBlockLocked(uint64_t pfn, FreeBlock* out) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Applies the free-memory policy to pages leaving or entering use.
  void MakeInaccessible(uint64_t pfn, uint64_t nr_pages);
  void MakeAccessible(uint64_t pfn, uint64_t nr_pages);
  void PrepareAllocated(uint64_t pfn, unsigned order, gfp_t gfp);
  void ResetFreedPages(uint64_t pfn, unsigned order);

  KernelContext& ctx_;
  hw::PhysicalMemory& memory_;
  Memmap& memmap_;
  const FreeMemoryPolicy policy_;
  const unsigned max_order_;
  const unsigned pageblock_order_;
  const int num_nodes_;

  mutable absl::Mutex mu_;
  std::vector<NodeFreeArea> nodes_ ABSL_GUARDED_BY(mu_);
  std::vector<uint8_t> pageblock_types_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> managed_pages_{0};
};

}  // namespace khosim::mm

#endif  // KHOSIM_MM_PAGE_ALLOC_H_

// A KHO preservation tracker that stores runs of preserved blocks as
// extents (khosim proposal "kho-range-v1", wire format in
// khosim/abi/kho_range.h, design notes in docs/kho-range-tracker.md).
//
// What it records: the same set as the radix tracker, one member per
// preserved block (pa, order) of 2^order pages at a pa aligned to that size.
// Blocks of different orders are different members, even where they
// overlap in memory: kernel B tags each block's head page with its order and
// restores a folio of that order, so the order is part of what is handed
// over and can never be merged away.
//
// Outgoing live form: per order, an ordered map of extents [first, end) in
// units of that order's blocks (block index = pfn >> order); consecutive
// blocks of one order coalesce into one extent. This is kernel-private host
// state, like the xarrays of the kho-v1 tracker; nothing of it crosses the
// kexec.
//
// Serialized form: built by PrepareHandover() as a chain of pages obtained
// from RadixNodeMemory, one 16-byte record per extent. Its first page's
// physical address is the handle kernel B gets; Walk() reads it back as
// hostile input.
//
// Contract:
// - Add/Del/Contains take an aligned block: order <= max_order() and pa
//   aligned to 2^order pages, else -EINVAL (Add, Del) or false (Contains).
// - Add of a tracked block is success (a set, no refcount), as with the
//   radix tracker.
// - Del removes exactly the block (pa, order). If that block is not tracked
//   it returns -ENOENT and changes nothing, also when other blocks overlap
//   it: deleting an order-0 page inside a tracked order-9 block, or an
//   order-9 block that covers tracked order-0 pages, is -ENOENT (the radix
//   caller WARNs on -ENOENT; its keys are per order in the same way).
//   Deleting a block inside an extent splits the extent.
// - The serialized form is a snapshot: Add/Del after PrepareHandover() do
//   not change it (Stats().serialization_current tells whether it is still
//   up to date). PrepareHandover() can run again; on success it frees the
//   previous serialization, on failure it keeps it and the handle.
// - Walk() checks the whole chain before it reports anything: either every
//   check passes and every block is reported, or it returns -EINVAL and no
//   callback has run.
//
// Locking: one absl::Mutex per tracker, standing for the tracker's mutex
// (may sleep). Mutations and PrepareHandover/Destroy hold it exclusively,
// Contains/Stats/ForEachExtent hold it shared; ForEachExtent callbacks must
// not mutate the same tracker. The static incoming functions take no lock.
#ifndef KHOSIM_KHO_RANGE_TRACKER_H_
#define KHOSIM_KHO_RANGE_TRACKER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/counting_allocator.h"
#include "khosim/base/types.h"
#include "khosim/kho/radix_tree.h"

namespace khosim::kho {

struct RangeTrackerStats {
  uint64_t blocks = 0;   // tracked blocks, every order
  uint64_t pages = 0;    // pages those blocks cover (sum of 2^order)
  uint64_t extents = 0;  // coalesced runs in the live form
  // Host bytes the live form's maps hold (nodes as allocated).
  uint64_t live_bytes = 0;
  // The current serialization (zero when there is none).
  uint64_t serialized_records = 0;
  uint64_t serialized_pages = 0;
  uint64_t serialized_bytes = 0;  // serialized_pages * page size
  // True when PrepareHandover() succeeded and no Add, Del or Destroy has
  // changed the set since (an empty set serializes to no page at all).
  bool serialization_current = false;
};

// Visits one block; a non-zero return stops the walk and becomes its result.
using RangeBlockFn = std::function<int(PhysAddr pa, unsigned order)>;
// Visits one run of |nr_blocks| consecutive blocks of 2^order pages starting
// at |start|; a non-zero return stops the walk.
using RangeExtentFn = std::function<int(PhysAddr start, uint64_t nr_blocks, unsigned order)>;
// Visits one page of a serialized chain, before its records; a non-zero
// return stops the walk.
using RangePageFn = std::function<int(PhysAddr page)>;

namespace range_tracker_internal {

// first block index -> end block index (exclusive), one map per order.
using ExtentMap = absl::btree_map<uint64_t, uint64_t, std::less<uint64_t>,
                                  khosim::CountingAllocator<std::pair<const uint64_t, uint64_t>>>;

}  // namespace range_tracker_internal

class RangeTracker {
 public:
  // |page_shift| is the machine's (12, 14 or 16); |memory| provides the
  // serialization's pages and must outlive the tracker.
  RangeTracker(unsigned page_shift, RadixNodeMemory& memory);
  RangeTracker(const RangeTracker&) = delete;
  RangeTracker& operator=(const RangeTracker&) = delete;
  // Does not free the serialization: it must outlive the kexec. Call
  // Destroy() to release it.
  ~RangeTracker() = default;

  unsigned page_shift() const { return page_shift_; }
  // Largest order a block can have (the radix key's: 64 - page_shift).
  unsigned max_order() const { return 64 - page_shift_; }

  // Tracks the block. -EINVAL if it is not an aligned block; 0 otherwise,
  // also when it was already tracked.
  int Add(PhysAddr pa, unsigned order) ABSL_LOCKS_EXCLUDED(mu_);
  // Stops tracking the block. -EINVAL if it is not an aligned block,
  // -ENOENT if this exact (pa, order) is not tracked (nothing changes).
  int Del(PhysAddr pa, unsigned order) ABSL_LOCKS_EXCLUDED(mu_);
  // True if this exact (pa, order) is tracked.
  bool Contains(PhysAddr pa, unsigned order) const ABSL_LOCKS_EXCLUDED(mu_);

  // Serializes the current set into a fresh chain and stores its first
  // page's address in *handle (null for an empty set, which takes no page).
  // Errors: -ENOMEM if a page cannot be allocated, -EFAULT if the provider
  // hands out a page it cannot map; either way the pages of this attempt
  // are freed and the previous serialization (and *handle) is untouched.
  int PrepareHandover(PhysAddr* handle) ABSL_LOCKS_EXCLUDED(mu_);
  // The current serialization's handle; null if there is none.
  PhysAddr handover() const ABSL_LOCKS_EXCLUDED(mu_);

  // Frees the serialization's pages and forgets every block (outgoing side:
  // abort, or a kernel that will not kexec).
  void Destroy() ABSL_LOCKS_EXCLUDED(mu_);

  RangeTrackerStats Stats() const ABSL_LOCKS_EXCLUDED(mu_);

  // The live form's extents, in serialization order (order descending, then
  // address ascending), unsplit. Returns the first non-zero callback result.
  int ForEachExtent(const RangeExtentFn& extent_cb) const ABSL_LOCKS_EXCLUDED(mu_);
  // Outgoing side, block by block: every page of the current serialization
  // (page_cb), then every tracked block in the same order (block_cb).
  // Either callback may be null. Returns the first non-zero callback result.
  int ForEachBlock(const RangeBlockFn& block_cb, const RangePageFn& page_cb = nullptr) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Incoming side: reports every block of the chain at |handle| written by
  // a kernel with the same |page_shift|, in record order; |page_cb|
  // (optional) sees each chain page before its blocks. A null handle is the
  // empty set. Returns -EINVAL, before any callback, if the chain breaks a
  // rule of khosim/abi/kho_range.h: a page that is unaligned, unmappable or
  // reached twice; a bad magic, version or page_shift; a count of 0 or
  // above the page's capacity; a record with non-zero reserved bytes, no
  // blocks, an order above max_order, a misaligned pfn or an end beyond the
  // address space; records out of order, overlapping, or touching where a
  // single record would do. Otherwise the first non-zero callback result,
  // else 0. Either callback may be null. Callbacks must not free chain
  // pages.
  static int Walk(PhysAddr handle, unsigned page_shift, RadixNodeMemory& memory,
                  const RangeBlockFn& block_cb, const RangePageFn& page_cb = nullptr);
  // As Walk, one callback per record instead of per block, for a consumer
  // that reserves a whole run at once.
  static int WalkExtents(PhysAddr handle, unsigned page_shift, RadixNodeMemory& memory,
                         const RangeExtentFn& extent_cb, const RangePageFn& page_cb = nullptr);
  // Runs Walk's checks only. Errors carry EINVAL (see errno_status.h) and
  // name the offending page or record.
  static absl::Status Validate(PhysAddr handle, unsigned page_shift, RadixNodeMemory& memory);

 private:
  using ExtentMap = range_tracker_internal::ExtentMap;

  bool BlockFits(PhysAddr pa, unsigned order) const;
  void FreeSerializationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const unsigned page_shift_;
  RadixNodeMemory& memory_;
  mutable absl::Mutex mu_;
  // Bytes allocated by the maps below; declared first so that it outlives
  // them.
  int64_t live_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<ExtentMap> by_order_ ABSL_GUARDED_BY(mu_);  // index: order
  uint64_t blocks_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pages_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t extents_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped by every Add/Del that changes the set.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // The current serialization: its pages in chain order, the records they
  // hold, and the generation it was built from.
  std::vector<PhysAddr> serialized_ ABSL_GUARDED_BY(mu_);
  uint64_t serialized_records_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t serialized_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool prepared_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_RANGE_TRACKER_H_

// BitmapTracker: the legacy KHO preservation tracker (kho-v1, v6.16 to the
// spring of 2026), kept as a profile so that old-to-new handovers and their
// rejection can be exercised.
//
// What it records: per order, bitmap pages of PRESERVE_BITS = page_size * 8
// bits. The block of 2^order pages at pfn is bit (pfn >> order) %
// PRESERVE_BITS of the bitmap with index (pfn >> order) / PRESERVE_BITS.
// The bitmaps are simulated pages (what the handover carries); the index
// from (order, index) to bitmap page is host state, as the kernel's two
// levels of xarrays are kernel memory that never crosses the kexec.
//
// Handover (PrepareHandover, upstream's kho_mem_serialize at finalize): the
// index is written out as a list of khoser_mem_chunk pages
// (khosim/abi/kexec_handover.h): orders ascending, bitmaps ascending within
// an order, a new chunk for each order and whenever KhoserBitmapSize
// entries are used. An order that once had a block keeps its chunk even if
// its bitmaps are all clear or it has none (its first bitmap allocation
// failed), as the kernel's per-order xarray entry outlives them. The list
// is a snapshot: later Add/Del change only the bitmaps it points to, not
// which bitmaps it lists. Running it again builds a new list and then frees
// the previous one.
//
// Incoming (WalkIncoming, upstream's kho_mem_deserialize): every chunk,
// every entry, every set bit becomes one block, reported in list order.
// Upstream trusts the list; this walk refuses (-EINVAL) a chunk or bitmap
// address that is unaligned or not RAM, a page reached twice (cycle, shared
// bitmap, chunk used as bitmap), num_elms above the chunk's capacity, an
// order whose blocks cannot be addressed in 64 bits (page_shift + order >=
// 64), a phys_start not aligned to what one bitmap covers, and a block whose
// address does not fit in 64 bits. Blocks reported before the refusal stay
// reported, as with the radix walk.
//
// Locking: one absl::Mutex stands for the xarrays' locks and kho_out.lock.
#ifndef KHOSIM_KHO_BITMAP_TRACKER_H_
#define KHOSIM_KHO_BITMAP_TRACKER_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/synchronization/mutex.h"
#include "khosim/kho/preservation_tracker.h"

namespace khosim::kho {

class BitmapTracker final : public PreservationTracker {
 public:
  // |page_shift| is the machine's; |memory| provides bitmap and chunk pages
  // and must outlive the tracker.
  BitmapTracker(unsigned page_shift, TrackerPageMemory& memory);
  // Frees nothing: the bitmaps and the chunk list must outlive the kexec.
  ~BitmapTracker() override = default;

  uint64_t preserve_bits() const { return uint64_t{8} << page_shift_; }
  // Entries per chunk page (255 with 4 KiB pages).
  uint64_t chunk_capacity() const;
  // Largest order whose block addresses fit in 64 bits.
  unsigned max_order() const { return 63 - page_shift_; }

  absl::string_view name() const override { return "bitmap_v1"; }
  int Init() override;
  bool ready() const override { return true; }
  int Add(PhysAddr pa, unsigned order) override ABSL_LOCKS_EXCLUDED(mu_);
  int Del(PhysAddr pa, unsigned order) override ABSL_LOCKS_EXCLUDED(mu_);
  bool Contains(PhysAddr pa, unsigned order) const override ABSL_LOCKS_EXCLUDED(mu_);
  bool serializes() const override { return true; }
  int PrepareHandover(PhysAddr* handle) override ABSL_LOCKS_EXCLUDED(mu_);
  PhysAddr handover() const override ABSL_LOCKS_EXCLUDED(mu_);
  void Destroy() override ABSL_LOCKS_EXCLUDED(mu_);
  TrackerStats Stats() const override ABSL_LOCKS_EXCLUDED(mu_);
  int ForEachBlock(const TrackerBlockFn& block_cb, const TrackerPageFn& page_cb) const override
      ABSL_LOCKS_EXCLUDED(mu_);
  int WalkIncoming(PhysAddr handle, const TrackerBlockFn& block_cb,
                   const TrackerPageFn& page_cb) const override;

 private:
  // index -> bitmap page, ascending (xa_for_each order).
  using BitmapIndex = absl::btree_map<uint64_t, PhysAddr>;

  bool BlockFits(PhysAddr pa, unsigned order) const;
  // The bitmap page and bit of a block; nullptr if the bitmap is absent.
  uint8_t* FindBit(unsigned order, uint64_t pfn, uint64_t* bit) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void FreeChunksLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const unsigned page_shift_;
  TrackerPageMemory& memory_;
  mutable absl::Mutex mu_;
  // order -> that order's bitmaps. An order appears at its first Add and
  // stays (kho_mem_track.orders never drops an entry).
  std::map<unsigned, BitmapIndex> orders_ ABSL_GUARDED_BY(mu_);
  uint64_t bitmaps_ ABSL_GUARDED_BY(mu_) = 0;
  // The list the last successful PrepareHandover built, in list order.
  std::vector<PhysAddr> chunks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_BITMAP_TRACKER_H_

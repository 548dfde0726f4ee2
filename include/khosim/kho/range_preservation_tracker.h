// RangePreservationTracker: the khosim proposal "kho-range-v1" behind the
// PreservationTracker interface, so that Kho can run on RangeTracker
// (khosim/kho/range_tracker.h) as it runs on the radix and kho-v1 trackers.
//
// The adapter owns a RangeTracker and forwards to it, changing only what
// the two contracts disagree on:
// - Del. PreservationTracker::Del reserves -ENOENT for "the metadata that
//   would hold the block does not exist", which Kho WARNs about; a block
//   that is simply not recorded is 0. RangeTracker::Del returns -ENOENT for
//   any (pa, order) it does not track. Its live form is host state (like
//   kho-v1's xarray index) with no per-block metadata that could be
//   missing, so the adapter maps -ENOENT to 0: unpreserving an unrecorded
//   block is a silent no-op, as unpreserving a never-set bit in an existing
//   kho-v1 bitmap is. Kho's WARN therefore never fires on this profile.
// - ready(). The range tracker needs no initialization, but the profile
//   follows kho-v4's rules: blocks can be added only after Init() (Kho's
//   fs_initcall, with KHO enabled), so preserving with KHO off fails as on
//   kho-v4. Init() twice is -EEXIST, as for the radix root; Destroy() makes
//   the tracker not ready again.
// - serializes() is true: like kho-v1 the handle is a snapshot built by
//   PrepareHandover() (Kho::Finalize), re-runnable, freeing the previous
//   chain only once the new one is complete. Blocks added after the last
//   PrepareHandover are not handed over until the next one.
// - Stats: metadata pages are the current serialization's chain pages (the
//   live extents are host memory); `extents` and `range_records` report the
//   live extents and the serialized records.
//
// WalkIncoming is RangeTracker::Walk and WalkIncomingExtents is
// RangeTracker::WalkExtents: both check the whole chain before they report
// anything, so a refused chain reports no block at all (stricter than the
// interface requires).
//
// Locking: RangeTracker's own mutex; the adapter's `initialized_` flag is
// atomic, as ready() is read without the lock by preservation paths.
#ifndef KHOSIM_KHO_RANGE_PRESERVATION_TRACKER_H_
#define KHOSIM_KHO_RANGE_PRESERVATION_TRACKER_H_

#include <atomic>

#include "khosim/kho/preservation_tracker.h"
#include "khosim/kho/range_tracker.h"

namespace khosim::kho {

class RangePreservationTracker final : public PreservationTracker {
 public:
  // |memory| provides the chain pages and must outlive the tracker.
  RangePreservationTracker(unsigned page_shift, TrackerPageMemory& memory);
  // Frees nothing: the chain must outlive the kexec.
  ~RangePreservationTracker() override = default;

  // The wrapped tracker, for callers that need range specifics (extents).
  RangeTracker& range() { return range_; }
  const RangeTracker& range() const { return range_; }

  absl::string_view name() const override { return "range_v1"; }
  int Init() override;
  bool ready() const override { return initialized_.load(std::memory_order_acquire); }
  int Add(PhysAddr pa, unsigned order) override { return range_.Add(pa, order); }
  int Del(PhysAddr pa, unsigned order) override;
  bool Contains(PhysAddr pa, unsigned order) const override { return range_.Contains(pa, order); }
  bool serializes() const override { return true; }
  int PrepareHandover(PhysAddr* handle) override { return range_.PrepareHandover(handle); }
  PhysAddr handover() const override { return range_.handover(); }
  void Destroy() override;
  TrackerStats Stats() const override;
  int ForEachBlock(const TrackerBlockFn& block_cb, const TrackerPageFn& page_cb) const override;
  int WalkIncoming(PhysAddr handle, const TrackerBlockFn& block_cb,
                   const TrackerPageFn& page_cb) const override;
  // One callback per record: a run kernel B reserves with one call.
  int WalkIncomingExtents(PhysAddr handle, const TrackerExtentFn& extent_cb,
                          const TrackerPageFn& page_cb) const override;

 private:
  TrackerPageMemory& memory_;
  RangeTracker range_;
  std::atomic<bool> initialized_{false};
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_RANGE_PRESERVATION_TRACKER_H_

// RangePreservationTracker: forwards to RangeTracker; see the header for
// where the two contracts differ and how the adapter reconciles them.
#include "khosim/kho/range_preservation_tracker.h"

#include <cerrno>

namespace khosim::kho {

RangePreservationTracker::RangePreservationTracker(unsigned page_shift, TrackerPageMemory& memory)
    : memory_(memory), range_(page_shift, memory) {}

int RangePreservationTracker::Init() {
  bool expected = false;
  return initialized_.compare_exchange_strong(expected, true, std::memory_order_acq_rel) ? 0
                                                                                         : -EEXIST;
}

int RangePreservationTracker::Del(PhysAddr pa, unsigned order) {
  const int err = range_.Del(pa, order);
  // Not tracked is not missing metadata (see the header): no WARN.
  return err == -ENOENT ? 0 : err;
}

void RangePreservationTracker::Destroy() {
  range_.Destroy();
  initialized_.store(false, std::memory_order_release);
}

TrackerStats RangePreservationTracker::Stats() const {
  const RangeTrackerStats range = range_.Stats();
  TrackerStats stats;
  stats.metadata_pages = range.serialized_pages;
  stats.metadata_bytes = range.serialized_bytes;
  stats.extents = range.extents;
  stats.range_records = range.serialized_records;
  return stats;
}

int RangePreservationTracker::ForEachBlock(const TrackerBlockFn& block_cb,
                                           const TrackerPageFn& page_cb) const {
  return range_.ForEachBlock(block_cb, page_cb);
}

int RangePreservationTracker::WalkIncoming(PhysAddr handle, const TrackerBlockFn& block_cb,
                                           const TrackerPageFn& page_cb) const {
  return RangeTracker::Walk(handle, range_.page_shift(), memory_, block_cb, page_cb);
}

int RangePreservationTracker::WalkIncomingExtents(PhysAddr handle, const TrackerExtentFn& extent_cb,
                                                  const TrackerPageFn& page_cb) const {
  return RangeTracker::WalkExtents(handle, range_.page_shift(), memory_, extent_cb, page_cb);
}

}  // namespace khosim::kho

// RadixTracker: the radix tree (kho-v2+) behind the PreservationTracker
// interface.
//
// The tree is its own handover format, so there is nothing to prepare: the
// handle is the root, which Kho writes into the root FDT once at init. The
// incoming walk adopts the handle in a tree of its own and reports each key
// decoded into a block; the tree's walk already refuses unaligned,
// unmappable and repeated node pages.
#include "khosim/kho/preservation_tracker.h"

#include <cerrno>

namespace khosim::kho {

RadixTracker::RadixTracker(unsigned page_shift, TrackerPageMemory& memory)
    : memory_(memory), tree_(RadixGeometry::For(page_shift), memory) {}

int RadixTracker::Init() { return tree_.Init(); }

bool RadixTracker::ready() const { return !tree_.root().IsNull(); }

int RadixTracker::Add(PhysAddr pa, unsigned order) { return tree_.AddBlock(pa, order); }

int RadixTracker::Del(PhysAddr pa, unsigned order) { return tree_.DelBlock(pa, order); }

bool RadixTracker::Contains(PhysAddr pa, unsigned order) const {
  return tree_.ContainsBlock(pa, order);
}

int RadixTracker::PrepareHandover(PhysAddr* handle) {
  *handle = tree_.root();
  return 0;
}

PhysAddr RadixTracker::handover() const { return tree_.root(); }

void RadixTracker::Destroy() { tree_.Destroy(); }

TrackerStats RadixTracker::Stats() const {
  TrackerStats stats;
  stats.radix_nodes = tree_.NodeCount();
  stats.metadata_pages = stats.radix_nodes;
  stats.metadata_bytes = stats.metadata_pages * tree_.geometry().page_size();
  return stats;
}

int RadixTracker::WalkTree(const RadixTree& tree, const TrackerBlockFn& block_cb,
                           const TrackerPageFn& page_cb) {
  const RadixGeometry& geometry = tree.geometry();
  return tree.Walk(
      [&](uint64_t key) {
        PhysAddr pa;
        unsigned order = 0;
        if (!DecodeKey(geometry, key, &pa, &order)) return -EINVAL;
        return block_cb ? block_cb(pa, order) : 0;
      },
      [&](PhysAddr node, int) { return page_cb ? page_cb(node) : 0; });
}

int PreservationTracker::WalkIncomingExtents(PhysAddr handle, const TrackerExtentFn& extent_cb,
                                             const TrackerPageFn& page_cb) const {
  return WalkIncoming(
      handle, [&](PhysAddr pa, unsigned order) { return extent_cb ? extent_cb(pa, 1, order) : 0; },
      page_cb);
}

int RadixTracker::ForEachBlock(const TrackerBlockFn& block_cb, const TrackerPageFn& page_cb) const {
  return WalkTree(tree_, block_cb, page_cb);
}

int RadixTracker::WalkIncoming(PhysAddr handle, const TrackerBlockFn& block_cb,
                               const TrackerPageFn& page_cb) const {
  RadixTree incoming(tree_.geometry(), memory_);
  incoming.Adopt(handle);
  return WalkTree(incoming, block_cb, page_cb);
}

}  // namespace khosim::kho

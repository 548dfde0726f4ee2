// PreservationTracker: what KHO needs from the structure that records which
// blocks of memory kernel A preserves and how kernel B finds them again.
//
// A block is (pa, order): 2^order pages at a pa aligned to that size. The
// tracker records a set of blocks; blocks of different orders are different
// members even where they overlap, because kernel B restores each with the
// order it was recorded with.
//
// Outgoing side (kernel A), in the order Kho calls it:
//   Init()             ready the empty structure (radix: allocate the root)
//   Add/Del/Contains   one block at a time; Del reports a block whose
//                      metadata does not exist with -ENOENT (the caller
//                      WARNs), and never frees metadata
//   PrepareHandover()  produce the value of the root FDT's
//                      `preserved-memory-map`. The radix tree is handed over
//                      in place, so this is its root and costs nothing; the
//                      kho-v1 tracker serializes its bitmaps into a chunk
//                      list, freeing the list of a previous run once the new
//                      one is complete (re-runnable, as upstream's finalize
//                      became in late 2025)
//   Destroy()          free every metadata page (a kernel that will not
//                      kexec, tests, benchmarks)
// Incoming side (kernel B): WalkIncoming() reads the handle found in the
// root FDT as hostile bytes: every address is checked (page aligned,
// mappable RAM) before it is read, no metadata page may be reached twice,
// counts are bounded by what a page can hold. It reports each preserved
// block and each metadata page (so that extended scratch can keep those
// pages busy); it never frees them (memblock_free_all does).
//
// Errors are the kernel's: 0 or -errno. Locking: each implementation has a
// mutex standing for the kernel tracker's lock; callbacks run under it
// (shared) and must not mutate the same tracker.
#ifndef KHOSIM_KHO_PRESERVATION_TRACKER_H_
#define KHOSIM_KHO_PRESERVATION_TRACKER_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/strings/string_view.h"
#include "khosim/base/types.h"
#include "khosim/kho/radix_tree.h"

namespace khosim::kho {

// Where metadata pages come from and how their bytes are reached: the same
// provider the radix tree uses for its nodes.
using TrackerPageMemory = RadixNodeMemory;

// Visits one block; a non-zero return stops the walk and becomes its result.
using TrackerBlockFn = std::function<int(PhysAddr pa, unsigned order)>;
// Visits one metadata page (radix node, kho-v1 bitmap or chunk) before the
// blocks it describes; a non-zero return stops the walk.
using TrackerPageFn = std::function<int(PhysAddr page)>;
// Visits a run of |nr_blocks| (>= 1) consecutive blocks of one order from
// |start|; a non-zero return stops the walk and becomes its result.
using TrackerExtentFn = std::function<int(PhysAddr start, uint64_t nr_blocks, unsigned order)>;

// Sizes for benchmarks, `khosim inspect` and tests. Pages are simulated
// pages the outgoing tracker holds now; fields that do not apply are 0.
struct TrackerStats {
  uint64_t metadata_pages = 0;  // every page below
  uint64_t metadata_bytes = 0;  // metadata_pages * page size
  uint64_t radix_nodes = 0;     // radix: root, interior nodes and leaves
  uint64_t orders = 0;          // kho-v1: orders that ever had a block
  uint64_t bitmaps = 0;         // kho-v1: bitmap pages
  uint64_t chunks = 0;          // kho-v1: chunk pages of the last PrepareHandover
  uint64_t extents = 0;         // kho-range-v1: live extents (host memory)
  uint64_t range_records = 0;   // kho-range-v1: records of the last PrepareHandover
};

class PreservationTracker {
 public:
  virtual ~PreservationTracker() = default;

  // The structure's name in benchmark rows and traces: "radix", "bitmap_v1".
  virtual absl::string_view name() const = 0;

  // Readies the outgoing structure. Radix: -ENOMEM if the root cannot be
  // allocated, -EEXIST if it exists. kho-v1: nothing to do, always 0.
  virtual int Init() = 0;
  // True once blocks can be added: Init() succeeded (radix), or always
  // (kho-v1: its index is static data that needs no initialization, which
  // is why upstream's legacy preserve calls worked even with KHO disabled).
  virtual bool ready() const = 0;

  // Records the block. -EINVAL if the block is not aligned to its order or
  // the order is too large for the format; -ENOMEM if a metadata page
  // cannot be allocated (nothing changed then). A recorded block is success.
  virtual int Add(PhysAddr pa, unsigned order) = 0;
  // Forgets the block. -EINVAL as for Add; -ENOENT if the metadata that
  // would hold it does not exist (the caller WARNs). 0 otherwise, also when
  // the block was not recorded.
  virtual int Del(PhysAddr pa, unsigned order) = 0;
  virtual bool Contains(PhysAddr pa, unsigned order) const = 0;

  // True if PrepareHandover() builds a serialized copy that later Add/Del
  // calls do not update (kho-v1), false if the live structure itself is
  // handed over (radix).
  virtual bool serializes() const = 0;
  // Stores the value for `preserved-memory-map` in *handle: the radix root,
  // or the first chunk of a freshly built kho-v1 chunk list (null when no
  // order has a bitmap). -ENOMEM if a page cannot be allocated; the pages
  // of the failed attempt are freed and the previous handle stays valid.
  virtual int PrepareHandover(PhysAddr* handle) = 0;
  // The handle a PrepareHandover() now would hand over without building
  // anything: the radix root, or the kho-v1 list of the last successful
  // PrepareHandover() (null before the first).
  virtual PhysAddr handover() const = 0;

  // Frees every metadata page (serialized copies included) and forgets
  // every block.
  virtual void Destroy() = 0;

  virtual TrackerStats Stats() const = 0;

  // Outgoing side: every recorded block (ascending order, then address for
  // kho-v1; radix key order for radix) and every metadata page, live and
  // serialized. Either callback may be null. Returns the first non-zero
  // callback result.
  virtual int ForEachBlock(const TrackerBlockFn& block_cb, const TrackerPageFn& page_cb) const = 0;

  // Incoming side: walks the structure a kernel of the same profile handed
  // over as |handle|, as hostile input. Returns -EINVAL for a structure the
  // checks refuse (blocks already reported stay reported), else the first
  // non-zero callback result, else 0. Either callback may be null. Does not
  // touch this tracker's outgoing state.
  virtual int WalkIncoming(PhysAddr handle, const TrackerBlockFn& block_cb,
                           const TrackerPageFn& page_cb) const = 0;
  // As WalkIncoming, by runs: a format that stores runs reports each run
  // once, so that kernel B reserves it with one memblock call. The default
  // reports every block as a run of one: the radix tree and kho-v1 store no
  // runs, and upstream reserves their blocks one at a time.
  virtual int WalkIncomingExtents(PhysAddr handle, const TrackerExtentFn& extent_cb,
                                  const TrackerPageFn& page_cb) const;
};

// The kho-v2+ tracker: a RadixTree whose root is the handle.
class RadixTracker final : public PreservationTracker {
 public:
  RadixTracker(unsigned page_shift, TrackerPageMemory& memory);

  // The tree, for callers that need radix specifics (keys, node walks).
  RadixTree& tree() { return tree_; }
  const RadixTree& tree() const { return tree_; }

  absl::string_view name() const override { return "radix"; }
  int Init() override;
  bool ready() const override;
  int Add(PhysAddr pa, unsigned order) override;
  int Del(PhysAddr pa, unsigned order) override;
  bool Contains(PhysAddr pa, unsigned order) const override;
  bool serializes() const override { return false; }
  int PrepareHandover(PhysAddr* handle) override;
  PhysAddr handover() const override;
  void Destroy() override;
  TrackerStats Stats() const override;
  int ForEachBlock(const TrackerBlockFn& block_cb, const TrackerPageFn& page_cb) const override;
  int WalkIncoming(PhysAddr handle, const TrackerBlockFn& block_cb,
                   const TrackerPageFn& page_cb) const override;

 private:
  // Reports every key of |tree| as a block; an undecodable key is -EINVAL.
  static int WalkTree(const RadixTree& tree, const TrackerBlockFn& block_cb,
                      const TrackerPageFn& page_cb);

  TrackerPageMemory& memory_;
  RadixTree tree_;
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_PRESERVATION_TRACKER_H_

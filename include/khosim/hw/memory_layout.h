// The machine's physical memory map: RAM ranges with holes between them,
// each range on one NUMA node, and the page size the machine runs with.
//
// Contract: ranges are page aligned, sorted, non-overlapping, non-empty; the
// first page (pfn 0) is never RAM; nodes are numbered 0..num_nodes-1 and every
// node owns at least one range.
#ifndef KHOSIM_HW_MEMORY_LAYOUT_H_
#define KHOSIM_HW_MEMORY_LAYOUT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "khosim/base/types.h"

namespace khosim::hw {

struct RamRange {
  PhysAddr start;
  uint64_t size = 0;
  int nid = 0;
  PhysAddr end() const { return start + size; }
};

class MemoryLayout {
 public:
  // |ram| bytes split evenly over |nodes| nodes. RAM starts at 1 MiB (the
  // first MiB is a hole, as on a PC); with |hole_size| > 0, a hole of that
  // size opens in the middle of node 0's range (a PCI MMIO window, say).
  static MemoryLayout Uniform(uint64_t ram, int nodes, uint64_t page_size, uint64_t hole_size = 0);
  // Explicit ranges; Validate() before use.
  static MemoryLayout FromRanges(std::vector<RamRange> ranges, uint64_t page_size);

  absl::Status Validate() const;

  const std::vector<RamRange>& ranges() const { return ranges_; }
  uint64_t page_size() const { return page_size_; }
  int num_nodes() const;
  uint64_t total_ram() const;
  uint64_t node_ram(int nid) const;
  // End of the highest RAM range: the size of the physical address space
  // the backing must cover.
  PhysAddr end() const;
  // Node of the RAM byte at |pa|, or -1 for a hole.
  int NodeOf(PhysAddr pa) const;
  // True iff [pa, pa+len) lies inside RAM (possibly spanning ranges that
  // touch each other); len 0 is false.
  bool IsRam(PhysAddr pa, uint64_t len) const;

 private:
  // Sets the gapless span from ranges_ (the factories call it last).
  void ComputeSpan();

  std::vector<RamRange> ranges_;
  uint64_t page_size_ = 4096;
  // When every range touches the next, RAM is the one span [span_start_,
  // span_end_) and IsRam is two compares: it runs for every radix node a
  // kernel maps, several times per preserved block.
  bool gapless_ = false;
  uint64_t span_start_ = 0;
  uint64_t span_end_ = 0;
};

}  // namespace khosim::hw

#endif  // KHOSIM_HW_MEMORY_LAYOUT_H_

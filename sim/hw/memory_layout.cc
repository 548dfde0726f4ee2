// MemoryLayout construction and validation.
#include "khosim/hw/memory_layout.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace khosim::hw {

MemoryLayout MemoryLayout::Uniform(uint64_t ram, int nodes, uint64_t page_size,
                                   uint64_t hole_size) {
  // Every range is aligned to 2 MiB or the page size, whichever is larger,
  // so pageblocks never straddle a range boundary.
  const uint64_t align = std::max<uint64_t>(2 * kMiB, page_size);
  MemoryLayout layout;
  layout.page_size_ = page_size;
  if (nodes < 1) nodes = 1;
  const uint64_t per_node = AlignDown(ram / static_cast<uint64_t>(nodes), align);
  uint64_t cursor = align;  // the first block is a hole: pfn 0 is never RAM
  for (int nid = 0; nid < nodes; ++nid) {
    uint64_t size = nid == nodes - 1 ? AlignDown(ram - per_node * (nodes - 1), align) : per_node;
    if (nid == 0 && hole_size > 0 && size > 2 * align) {
      const uint64_t first = AlignDown(size / 2, align);
      layout.ranges_.push_back({PhysAddr(cursor), first, nid});
      cursor += first + AlignUp(hole_size, align);
      size -= first;
    }
    layout.ranges_.push_back({PhysAddr(cursor), size, nid});
    cursor += size;
  }
  layout.ComputeSpan();
  return layout;
}

MemoryLayout MemoryLayout::FromRanges(std::vector<RamRange> ranges, uint64_t page_size) {
  MemoryLayout layout;
  layout.page_size_ = page_size;
  std::sort(ranges.begin(), ranges.end(),
            [](const RamRange& a, const RamRange& b) { return a.start < b.start; });
  layout.ranges_ = std::move(ranges);
  layout.ComputeSpan();
  return layout;
}

void MemoryLayout::ComputeSpan() {
  gapless_ = !ranges_.empty();
  for (size_t i = 1; i < ranges_.size() && gapless_; ++i) {
    gapless_ = ranges_[i - 1].end() == ranges_[i].start;
  }
  span_start_ = gapless_ ? ranges_.front().start.value() : 0;
  span_end_ = gapless_ ? ranges_.back().end().value() : 0;
}

absl::Status MemoryLayout::Validate() const {
  if (!PageGeometry::IsSupportedPageSize(page_size_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page size ", page_size_, " is not 4096, 16384 or 65536"));
  }
  if (ranges_.empty()) return absl::InvalidArgumentError("no RAM ranges");
  std::set<int> nids;
  PhysAddr prev_end;
  for (const RamRange& r : ranges_) {
    if (r.size == 0) return absl::InvalidArgumentError("empty RAM range");
    if (!IsAligned(r.start.value(), page_size_) || !IsAligned(r.size, page_size_)) {
      return absl::InvalidArgumentError(
          absl::StrCat("RAM range ", r.start.ToString(), " is not page aligned"));
    }
    if (r.start.value() < page_size_) {
      return absl::InvalidArgumentError("pfn 0 must not be RAM");
    }
    if (r.start < prev_end) return absl::InvalidArgumentError("RAM ranges overlap");
    if (r.nid < 0) return absl::InvalidArgumentError("negative node id");
    prev_end = r.end();
    nids.insert(r.nid);
  }
  if (static_cast<int>(nids.size()) != *nids.rbegin() + 1) {
    return absl::InvalidArgumentError("node ids must be dense from 0");
  }
  return absl::OkStatus();
}

int MemoryLayout::num_nodes() const {
  int max_nid = -1;
  for (const RamRange& r : ranges_) max_nid = std::max(max_nid, r.nid);
  return max_nid + 1;
}

uint64_t MemoryLayout::total_ram() const {
  uint64_t total = 0;
  for (const RamRange& r : ranges_) total += r.size;
  return total;
}

uint64_t MemoryLayout::node_ram(int nid) const {
  uint64_t total = 0;
  for (const RamRange& r : ranges_) {
    if (r.nid == nid) total += r.size;
  }
  return total;
}

PhysAddr MemoryLayout::end() const { return ranges_.empty() ? PhysAddr() : ranges_.back().end(); }

int MemoryLayout::NodeOf(PhysAddr pa) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), pa,
                             [](PhysAddr p, const RamRange& r) { return p < r.start; });
  if (it == ranges_.begin()) return -1;
  --it;
  return pa < it->end() ? it->nid : -1;
}

bool MemoryLayout::IsRam(PhysAddr pa, uint64_t len) const {
  if (len == 0 || pa.value() + len < pa.value()) return false;
  if (gapless_) return pa.value() >= span_start_ && pa.value() + len <= span_end_;
  PhysAddr cursor = pa;
  const PhysAddr end = pa + len;
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), cursor,
                             [](PhysAddr p, const RamRange& r) { return p < r.start; });
  if (it == ranges_.begin()) return false;
  --it;
  for (; it != ranges_.end(); ++it) {
    if (cursor < it->start || cursor >= it->end()) return false;
    cursor = it->end();
    if (cursor >= end) return true;
  }
  return false;
}

}  // namespace khosim::hw

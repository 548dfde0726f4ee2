// RangeTracker: preserved blocks kept as per-order extents, handed over as a
// chain of 16-byte records.
//
// Lifecycle:
//   kernel A    Add/Del maintain, per order, a btree map of maximal runs of
//               consecutive blocks (first index -> end index). Adding a
//               block next to a run extends it, between two runs joins them;
//               deleting one inside a run splits it. PrepareHandover (at
//               the handover's prepare step, re-runnable) allocates exactly
//               the pages the records need, fills them in record order and
//               only then frees the previous chain, so a failed attempt
//               leaves the previous chain and the live set as they were.
//   kernel B    Walk/WalkExtents check every page and record of the chain
//               first (the bytes come from another kernel), then report
//               blocks or runs. Checking first costs one extra pass over
//               the records, which are few, and means a rejected chain has
//               reserved nothing.
//   teardown    Destroy frees the chain and forgets the set.
//
// Why per-order runs and not [start, end) byte ranges: kernel B must learn
// each block's order (it tags the head page and restores a folio of that
// order). A byte range loses it, so a range of mixed orders would need a
// per-block order list again. A run of equal-order, naturally aligned,
// consecutive blocks is described completely by (pfn, count, order), and it
// is what large preservations produce: a memfd's or a guest's folios of one
// size allocated together, a pool of huge pages. Fragmented sets (isolated
// blocks close together) are the format's bad case: a record per block.
#include "khosim/kho/range_tracker.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/abi/kho_range.h"
#include "khosim/base/errno_status.h"

namespace khosim::kho {
namespace {

static_assert(std::endian::native == std::endian::little,
              "chain pages are read and written as little-endian structs");

constexpr unsigned kMinPageShift = 12;
constexpr unsigned kMaxPageShift = 16;

// Block indices of |order| run over [0, IndexLimit): the blocks whose pages
// have a 64-bit physical address.
uint64_t IndexLimit(unsigned page_shift, unsigned order) {
  return uint64_t{1} << (64 - page_shift - order);
}

// Two shifts, each below 64 bits, for every order up to 64 - page_shift.
PhysAddr BlockAddress(unsigned page_shift, uint64_t index, unsigned order) {
  return PhysAddr((index << order) << page_shift);
}

uint64_t RecordsFor(uint64_t nr_blocks) {
  return (nr_blocks + abi::kKhoRangeMaxBlocksPerExtent - 1) / abi::kKhoRangeMaxBlocksPerExtent;
}

// Moves the run at |run| to start at |first|, which must keep it between
// its neighbours. Inserting before erasing keeps a one-run map from
// freeing its only node and allocating it again on every call (a sequential
// unpreserve shortens the same run from the front block after block).
void ReplaceKey(range_tracker_internal::ExtentMap& map,
                range_tracker_internal::ExtentMap::iterator run, uint64_t first) {
  const uint64_t old_first = run->first;
  const uint64_t end = run->second;
  // Either side of the old key, so the hint is exact.
  const auto hint = first < old_first ? run : std::next(run);
  map.emplace_hint(hint, first, end);
  map.erase(old_first);  // the insertion invalidated |run|
}

// One page of an incoming chain that passed the checks.
struct ChainPage {
  PhysAddr pa;
  const uint8_t* bytes;
  uint16_t count;
};

abi::KhoRangeExtent LoadExtent(const uint8_t* page, uint64_t i) {
  abi::KhoRangeExtent e;
  std::memcpy(&e, page + sizeof(abi::KhoRangePageHeader) + i * sizeof(e), sizeof(e));
  return e;
}

// Checks the whole chain at |handle|; on success fills |pages| in chain
// order. On failure returns -EINVAL and says why in |fault|.
int CheckChain(PhysAddr handle, unsigned page_shift, RadixNodeMemory& memory,
               std::vector<ChainPage>* pages, std::string* fault) {
  if (page_shift < kMinPageShift || page_shift > kMaxPageShift) {
    *fault = absl::StrFormat("page_shift %u is not a supported page size", page_shift);
    return -EINVAL;
  }
  const uint64_t page_size = uint64_t{1} << page_shift;
  const uint64_t capacity = abi::KhoRangeExtentsPerPage(page_size);
  const unsigned max_order = 64 - page_shift;
  absl::flat_hash_set<uint64_t> visited;
  // The previous record: its order, end index and whether it was full.
  bool have_prev = false;
  unsigned prev_order = 0;
  uint64_t prev_end = 0;
  bool prev_full = false;
  uint64_t record = 0;  // index across the chain, for messages

  for (PhysAddr pa = handle; !pa.IsNull();) {
    auto refuse = [&](absl::string_view why) {
      *fault = absl::StrFormat("range chain page %#x: %s", pa.value(), why);
      return -EINVAL;
    };
    if ((pa.value() & (page_size - 1)) != 0) return refuse("not page aligned");
    if (!visited.insert(pa.value()).second) return refuse("reached twice (cycle)");
    const uint8_t* bytes = memory.MapNode(pa);
    if (bytes == nullptr) return refuse("not a usable RAM page");

    abi::KhoRangePageHeader header;
    std::memcpy(&header, bytes, sizeof(header));
    if (header.magic != abi::kKhoRangeMagic) {
      return refuse(absl::StrFormat("bad magic %#x", header.magic));
    }
    if (header.version != abi::kKhoRangeVersion) {
      return refuse(absl::StrFormat("unknown version %u", header.version));
    }
    if (header.page_shift != page_shift) {
      return refuse(absl::StrFormat("written with page_shift %u, this kernel has %u",
                                    header.page_shift, page_shift));
    }
    if (header.count == 0 || header.count > capacity) {
      return refuse(absl::StrFormat("count %u outside 1..%u", header.count, capacity));
    }

    for (uint64_t i = 0; i < header.count; ++i, ++record) {
      const abi::KhoRangeExtent e = LoadExtent(bytes, i);
      auto bad = [&](absl::string_view why) {
        return refuse(absl::StrFormat("record %u (pfn %#x, %u blocks, order %u): %s", i, e.pfn,
                                      e.nr_blocks, e.order, why));
      };
      if (e.reserved[0] != 0 || e.reserved[1] != 0 || e.reserved[2] != 0) {
        return bad("reserved bytes are not zero");
      }
      if (e.nr_blocks == 0) return bad("no blocks");
      if (e.order > max_order) return bad("order too large");
      if ((e.pfn & ((uint64_t{1} << e.order) - 1)) != 0) return bad("pfn not aligned to order");
      const uint64_t first = e.pfn >> e.order;
      const uint64_t limit = IndexLimit(page_shift, e.order);
      if (first >= limit || e.nr_blocks > limit - first) {
        return bad("ends beyond the physical address space");
      }
      if (have_prev) {
        if (e.order > prev_order) return bad("orders not descending");
        if (e.order == prev_order) {
          if (first < prev_end) return bad("overlaps or precedes the previous record");
          if (first == prev_end && !prev_full) return bad("touches a record it should be part of");
        }
      }
      have_prev = true;
      prev_order = e.order;
      prev_end = first + e.nr_blocks;
      prev_full = e.nr_blocks == abi::kKhoRangeMaxBlocksPerExtent;
    }
    pages->push_back({pa, bytes, header.count});
    pa = PhysAddr(header.next);
  }
  return 0;
}

}  // namespace

RangeTracker::RangeTracker(unsigned page_shift, RadixNodeMemory& memory)
    : page_shift_(page_shift), memory_(memory) {
  absl::MutexLock lock(&mu_);
  by_order_.reserve(max_order() + 1);
  for (unsigned order = 0; order <= max_order(); ++order) {
    by_order_.emplace_back(CountingAllocator<ExtentMap::value_type>(&live_bytes_));
  }
}

bool RangeTracker::BlockFits(PhysAddr pa, unsigned order) const {
  if (order > max_order()) return false;
  const unsigned shift = page_shift_ + order;
  if (shift >= 64) return pa.IsNull();
  return IsAligned(pa.value(), uint64_t{1} << shift);
}

int RangeTracker::Add(PhysAddr pa, unsigned order) {
  if (!BlockFits(pa, order)) return -EINVAL;
  const uint64_t index = (pa.value() >> page_shift_) >> order;
  absl::MutexLock lock(&mu_);
  ExtentMap& map = by_order_[order];
  auto next = map.upper_bound(index);  // first run starting after |index|
  const bool joins_next = next != map.end() && next->first == index + 1;
  if (next != map.begin()) {
    auto prev = std::prev(next);
    if (prev->second > index) return 0;  // already tracked
    if (prev->second == index) {
      if (joins_next) {
        prev->second = next->second;
        map.erase(next);
        --extents_;
      } else {
        prev->second = index + 1;
      }
      ++blocks_;
      pages_ += uint64_t{1} << order;
      ++generation_;
      return 0;
    }
  }
  if (joins_next) {
    // Keys are immutable: the run that starts right after |index| is
    // re-inserted one block earlier (see ReplaceKey).
    ReplaceKey(map, next, index);
  } else {
    map.emplace_hint(next, index, index + 1);
    ++extents_;
  }
  ++blocks_;
  pages_ += uint64_t{1} << order;
  ++generation_;
  return 0;
}

int RangeTracker::Del(PhysAddr pa, unsigned order) {
  if (!BlockFits(pa, order)) return -EINVAL;
  const uint64_t index = (pa.value() >> page_shift_) >> order;
  absl::MutexLock lock(&mu_);
  ExtentMap& map = by_order_[order];
  auto next = map.upper_bound(index);
  if (next == map.begin()) return -ENOENT;
  auto run = std::prev(next);
  const uint64_t first = run->first;
  const uint64_t end = run->second;
  if (end <= index) return -ENOENT;
  if (first == index) {
    if (end == index + 1) {
      map.erase(run);
      --extents_;
    } else {
      ReplaceKey(map, run, index + 1);
    }
  } else {
    run->second = index;
    if (end != index + 1) {
      map.emplace_hint(next, index + 1, end);
      ++extents_;
    }
  }
  --blocks_;
  pages_ -= uint64_t{1} << order;
  ++generation_;
  return 0;
}

bool RangeTracker::Contains(PhysAddr pa, unsigned order) const {
  if (!BlockFits(pa, order)) return false;
  const uint64_t index = (pa.value() >> page_shift_) >> order;
  absl::ReaderMutexLock lock(&mu_);
  const ExtentMap& map = by_order_[order];
  auto next = map.upper_bound(index);
  if (next == map.begin()) return false;
  return std::prev(next)->second > index;
}

int RangeTracker::PrepareHandover(PhysAddr* handle) {
  absl::MutexLock lock(&mu_);
  const uint64_t page_size = uint64_t{1} << page_shift_;
  const uint64_t capacity = abi::KhoRangeExtentsPerPage(page_size);
  uint64_t records = 0;
  for (const ExtentMap& map : by_order_) {
    for (const auto& [first, end] : map) records += RecordsFor(end - first);
  }

  // Every page first, so that running out leaves the previous chain alone.
  std::vector<PhysAddr> pages((records + capacity - 1) / capacity);
  std::vector<uint8_t*> bytes(pages.size());
  for (size_t i = 0; i < pages.size(); ++i) {
    pages[i] = memory_.AllocNode();
    bytes[i] = pages[i].IsNull() ? nullptr : memory_.MapNode(pages[i]);
    if (bytes[i] == nullptr) {
      const int err = pages[i].IsNull() ? -ENOMEM : -EFAULT;
      for (size_t j = 0; j <= i; ++j) {
        if (!pages[j].IsNull()) memory_.FreeNode(pages[j]);
      }
      return err;
    }
  }

  // Record order is the radix key order: orders descending, then address.
  size_t page = 0;
  uint64_t slot = 0;
  auto flush = [&] {
    const abi::KhoRangePageHeader header{
        .magic = abi::kKhoRangeMagic,
        .version = abi::kKhoRangeVersion,
        .page_shift = static_cast<uint8_t>(page_shift_),
        .count = static_cast<uint16_t>(slot),
        .next = page + 1 < pages.size() ? pages[page + 1].value() : 0,
    };
    std::memcpy(bytes[page], &header, sizeof(header));
    ++page;
    slot = 0;
  };
  for (unsigned order = max_order() + 1; order-- > 0;) {
    for (const auto& [run_first, run_end] : by_order_[order]) {
      for (uint64_t first = run_first; first < run_end;) {
        const uint64_t nr = std::min<uint64_t>(run_end - first, abi::kKhoRangeMaxBlocksPerExtent);
        const abi::KhoRangeExtent e{
            .pfn = first << order,
            .nr_blocks = static_cast<uint32_t>(nr),
            .order = static_cast<uint8_t>(order),
            .reserved = {0, 0, 0},
        };
        std::memcpy(bytes[page] + sizeof(abi::KhoRangePageHeader) + slot * sizeof(e), &e,
                    sizeof(e));
        first += nr;
        if (++slot == capacity) flush();
      }
    }
  }
  if (slot != 0) flush();

  FreeSerializationLocked();
  serialized_ = std::move(pages);
  serialized_records_ = records;
  serialized_generation_ = generation_;
  prepared_ = true;
  *handle = serialized_.empty() ? PhysAddr() : serialized_.front();
  return 0;
}

PhysAddr RangeTracker::handover() const {
  absl::ReaderMutexLock lock(&mu_);
  return serialized_.empty() ? PhysAddr() : serialized_.front();
}

void RangeTracker::FreeSerializationLocked() {
  for (PhysAddr page : serialized_) memory_.FreeNode(page);
  serialized_.clear();
  serialized_records_ = 0;
}

void RangeTracker::Destroy() {
  absl::MutexLock lock(&mu_);
  FreeSerializationLocked();
  for (ExtentMap& map : by_order_) map.clear();
  blocks_ = 0;
  pages_ = 0;
  extents_ = 0;
  ++generation_;
  prepared_ = false;
}

RangeTrackerStats RangeTracker::Stats() const {
  absl::ReaderMutexLock lock(&mu_);
  RangeTrackerStats stats;
  stats.blocks = blocks_;
  stats.pages = pages_;
  stats.extents = extents_;
  stats.live_bytes = static_cast<uint64_t>(live_bytes_) + by_order_.capacity() * sizeof(ExtentMap);
  stats.serialized_records = serialized_records_;
  stats.serialized_pages = serialized_.size();
  stats.serialized_bytes = serialized_.size() << page_shift_;
  stats.serialization_current = prepared_ && serialized_generation_ == generation_;
  return stats;
}

int RangeTracker::ForEachExtent(const RangeExtentFn& extent_cb) const {
  absl::ReaderMutexLock lock(&mu_);
  for (unsigned order = max_order() + 1; order-- > 0;) {
    for (const auto& [first, end] : by_order_[order]) {
      if (const int ret = extent_cb(BlockAddress(page_shift_, first, order), end - first, order);
          ret != 0) {
        return ret;
      }
    }
  }
  return 0;
}

int RangeTracker::ForEachBlock(const RangeBlockFn& block_cb, const RangePageFn& page_cb) const {
  absl::ReaderMutexLock lock(&mu_);
  if (page_cb) {
    for (PhysAddr page : serialized_) {
      if (const int ret = page_cb(page); ret != 0) return ret;
    }
  }
  if (!block_cb) return 0;
  for (unsigned order = max_order() + 1; order-- > 0;) {
    for (const auto& [first, end] : by_order_[order]) {
      for (uint64_t index = first; index < end; ++index) {
        if (const int ret = block_cb(BlockAddress(page_shift_, index, order), order); ret != 0) {
          return ret;
        }
      }
    }
  }
  return 0;
}

int RangeTracker::WalkExtents(PhysAddr handle, unsigned page_shift, RadixNodeMemory& memory,
                              const RangeExtentFn& extent_cb, const RangePageFn& page_cb) {
  std::vector<ChainPage> pages;
  std::string fault;
  if (const int err = CheckChain(handle, page_shift, memory, &pages, &fault); err != 0) {
    return err;
  }
  for (const ChainPage& page : pages) {
    if (page_cb) {
      if (const int ret = page_cb(page.pa); ret != 0) return ret;
    }
    if (!extent_cb) continue;
    for (uint64_t i = 0; i < page.count; ++i) {
      const abi::KhoRangeExtent e = LoadExtent(page.bytes, i);
      if (const int ret = extent_cb(PhysAddr(e.pfn << page_shift), e.nr_blocks, e.order);
          ret != 0) {
        return ret;
      }
    }
  }
  return 0;
}

int RangeTracker::Walk(PhysAddr handle, unsigned page_shift, RadixNodeMemory& memory,
                       const RangeBlockFn& block_cb, const RangePageFn& page_cb) {
  if (!block_cb) return WalkExtents(handle, page_shift, memory, nullptr, page_cb);
  return WalkExtents(
      handle, page_shift, memory,
      [&](PhysAddr start, uint64_t nr_blocks, unsigned order) {
        const uint64_t first = (start.value() >> page_shift) >> order;
        for (uint64_t i = 0; i < nr_blocks; ++i) {
          if (const int ret = block_cb(BlockAddress(page_shift, first + i, order), order);
              ret != 0) {
            return ret;
          }
        }
        return 0;
      },
      page_cb);
}

absl::Status RangeTracker::Validate(PhysAddr handle, unsigned page_shift, RadixNodeMemory& memory) {
  std::vector<ChainPage> pages;
  std::string fault;
  const int err = CheckChain(handle, page_shift, memory, &pages, &fault);
  if (err == 0) return absl::OkStatus();
  return KernelErrorToStatus(err, fault);
}

}  // namespace khosim::kho

// Memblock: the boot-time region bookkeeping of one kernel.
//
// Lifecycle. Mm::SetupArch fills the `memory` list from the machine's RAM map
// and reserves the kernel image; on a KHO boot, KHO then adds and flags the
// inherited scratch regions and switches the allocator to scratch-only. Early
// allocations (memmap footprint, page tables, KHO's own tables) come from
// Alloc and land in `reserved` as RSRV_KERN; KHO retrieval reserves the
// preserved blocks and marks them RSRV_NOINIT. Mm::FreeAll then leaves
// scratch-only mode and walks ForEachFreeRange to hand every unreserved page
// to the buddy allocator. From then on nothing mutates the lists; they stay
// readable for accounting (scratch sizing of the next kexec) and for tests.
//
// Representation. Both lists are plain vectors kept in one canonical form
// after every mutation: ascending by base, no zero-size entries, no overlap,
// and no two touching neighbours that share flags and node (those are merged).
// Every mutation rebuilds the affected list in one linear pass, then merges.
// Reserved regions carry the node of the memory beneath them; a reservation
// that crosses a node boundary is stored as one region per node, and parts
// outside memory carry kNumaNoNode. The node assignment is recomputed
// whenever either list changes, so it never goes stale.
#include "khosim/mm/memblock.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace khosim::mm {
namespace {

constexpr uint64_t kMaxAddr = std::numeric_limits<uint64_t>::max();

using Regions = std::vector<MemblockRegion>;

// End of [base, base + size) with the size capped so that the end does not
// wrap past the top of the physical address space.
uint64_t CappedEnd(PhysAddr base, uint64_t size) {
  const uint64_t room = kMaxAddr - base.value();
  return base.value() + std::min(size, room);
}

MemblockRegion MakeRegion(uint64_t start, uint64_t end, uint32_t flags, int nid) {
  return MemblockRegion{PhysAddr(start), end - start, flags, nid};
}

bool Mergeable(const MemblockRegion& a, const MemblockRegion& b) {
  return a.end() == b.base && a.flags == b.flags && a.nid == b.nid;
}

// Coalesces touching neighbours with equal flags and node.
void MergeNeighbours(Regions& regions) {
  if (regions.empty()) return;
  size_t out = 0;
  for (size_t i = 1; i < regions.size(); ++i) {
    if (Mergeable(regions[out], regions[i])) {
      regions[out].size += regions[i].size;
    } else {
      regions[++out] = regions[i];
    }
  }
  regions.resize(out + 1);
}

// Fills the holes of [start, end) not yet covered by |regions| with new
// regions carrying |flags| and |nid|; covered parts keep what they had.
// Only the window of regions that overlap or touch [start, end) is rebuilt
// and spliced back, so an insertion costs a binary search plus the move of
// the regions after it: reserving blocks in ascending address order (how
// KHO's retrieval walk visits them) stays linear overall.
void InsertUncovered(Regions& regions, uint64_t start, uint64_t end, uint32_t flags, int nid) {
  if (start >= end) return;
  // [lo, hi): regions whose end >= start and whose base <= end.
  const auto lo_it = std::partition_point(
      regions.begin(), regions.end(), [start](const auto& r) { return r.end().value() < start; });
  const auto hi_it = std::partition_point(lo_it, regions.end(),
                                          [end](const auto& r) { return r.base.value() <= end; });
  Regions window;
  window.reserve(static_cast<size_t>(hi_it - lo_it) + 2);
  uint64_t cursor = start;
  for (auto it = lo_it; it != hi_it; ++it) {
    const uint64_t r_base = it->base.value();
    if (cursor < end && r_base > cursor) {
      window.push_back(MakeRegion(cursor, std::min(r_base, end), flags, nid));
    }
    cursor = std::max(cursor, it->end().value());
    window.push_back(*it);
  }
  if (cursor < end) window.push_back(MakeRegion(cursor, end, flags, nid));
  MergeNeighbours(window);
  const size_t lo = static_cast<size_t>(lo_it - regions.begin());
  const size_t hi = static_cast<size_t>(hi_it - regions.begin());
  // Reuse the slots of the window, then grow or shrink in place.
  const size_t common = std::min(window.size(), hi - lo);
  std::copy(window.begin(), window.begin() + static_cast<long>(common),
            regions.begin() + static_cast<long>(lo));
  if (window.size() > hi - lo) {
    regions.insert(regions.begin() + static_cast<long>(hi),
                   window.begin() + static_cast<long>(common), window.end());
  } else {
    regions.erase(regions.begin() + static_cast<long>(lo + common),
                  regions.begin() + static_cast<long>(hi));
  }
}

// Cuts [start, end) out of |regions|, splitting those that straddle it.
void CutOut(Regions& regions, uint64_t start, uint64_t end) {
  if (start >= end) return;
  Regions out;
  out.reserve(regions.size() + 1);
  for (const MemblockRegion& r : regions) {
    const uint64_t r_base = r.base.value();
    const uint64_t r_end = r.end().value();
    if (r_end <= start || r_base >= end) {
      out.push_back(r);
      continue;
    }
    if (r_base < start) out.push_back(MakeRegion(r_base, start, r.flags, r.nid));
    if (r_end > end) out.push_back(MakeRegion(end, r_end, r.flags, r.nid));
  }
  regions = std::move(out);
}

// Splits the regions at the edges of [start, end), then sets |set| and
// clears |clear| on the pieces inside it. Holes stay holes.
void UpdateFlags(Regions& regions, uint64_t start, uint64_t end, uint32_t set, uint32_t clear) {
  if (start >= end) return;
  Regions out;
  out.reserve(regions.size() + 2);
  for (const MemblockRegion& r : regions) {
    const uint64_t r_base = r.base.value();
    const uint64_t r_end = r.end().value();
    if (r_end <= start || r_base >= end) {
      out.push_back(r);
      continue;
    }
    const uint64_t in_start = std::max(r_base, start);
    const uint64_t in_end = std::min(r_end, end);
    if (r_base < in_start) out.push_back(MakeRegion(r_base, in_start, r.flags, r.nid));
    out.push_back(MakeRegion(in_start, in_end, (r.flags | set) & ~clear, r.nid));
    if (r_end > in_end) out.push_back(MakeRegion(in_end, r_end, r.flags, r.nid));
  }
  regions = std::move(out);
  MergeNeighbours(regions);
}

// Index of the first region whose end lies above |addr|.
size_t FirstEndingAbove(const Regions& regions, uint64_t addr) {
  auto it = std::partition_point(regions.begin(), regions.end(), [addr](const MemblockRegion& r) {
    return r.end().value() <= addr;
  });
  return static_cast<size_t>(it - regions.begin());
}

// Gives every reserved region the node of the memory beneath it, splitting
// reservations where the node underneath changes (or memory ends).
void AssignReservedNodes(const Regions& memory, Regions& reserved) {
  Regions out;
  out.reserve(reserved.size());
  for (const MemblockRegion& r : reserved) {
    uint64_t cursor = r.base.value();
    const uint64_t end = r.end().value();
    for (size_t i = FirstEndingAbove(memory, cursor); i < memory.size() && cursor < end; ++i) {
      const MemblockRegion& m = memory[i];
      const uint64_t m_base = m.base.value();
      if (m_base >= end) break;
      if (m_base > cursor) {
        out.push_back(MakeRegion(cursor, m_base, r.flags, kNumaNoNode));
        cursor = m_base;
      }
      const uint64_t piece_end = std::min(end, m.end().value());
      out.push_back(MakeRegion(cursor, piece_end, r.flags, m.nid));
      cursor = piece_end;
    }
    if (cursor < end) out.push_back(MakeRegion(cursor, end, r.flags, kNumaNoNode));
  }
  reserved = std::move(out);
  MergeNeighbours(reserved);
}

// A stretch of one memory region that no reservation touches.
struct FreeSpan {
  uint64_t start;
  uint64_t end;
  int nid;
};

// Memory minus reserved, one memory region at a time, ascending. Memory
// regions for which |skip| returns true contribute nothing.
template <typename Skip>
std::vector<FreeSpan> FreeSpans(const Regions& memory, const Regions& reserved, Skip skip) {
  std::vector<FreeSpan> spans;
  for (const MemblockRegion& m : memory) {
    if (skip(m)) continue;
    uint64_t cursor = m.base.value();
    const uint64_t end = m.end().value();
    for (size_t i = FirstEndingAbove(reserved, cursor); i < reserved.size() && cursor < end; ++i) {
      const MemblockRegion& r = reserved[i];
      const uint64_t r_base = r.base.value();
      if (r_base >= end) break;
      if (r_base > cursor) spans.push_back({cursor, r_base, m.nid});
      cursor = std::max(cursor, r.end().value());
    }
    if (cursor < end) spans.push_back({cursor, end, m.nid});
  }
  return spans;
}

// Places |size| bytes aligned to |align| inside one of |spans| clipped to
// [lo, hi): the highest fitting address, or the lowest when |bottom_up|.
std::optional<uint64_t> Place(const std::vector<FreeSpan>& spans, uint64_t size, uint64_t align,
                              uint64_t lo, uint64_t hi, bool bottom_up) {
  auto fit = [&](const FreeSpan& span) -> std::optional<uint64_t> {
    const uint64_t start = std::max(span.start, lo);
    const uint64_t end = std::min(span.end, hi);
    if (start >= end || end - start < size) return std::nullopt;
    if (bottom_up) {
      if (start > kMaxAddr - (align - 1)) return std::nullopt;
      const uint64_t candidate = AlignUp(start, align);
      if (candidate > end || end - candidate < size) return std::nullopt;
      return candidate;
    }
    const uint64_t candidate = AlignDown(end - size, align);
    if (candidate < start) return std::nullopt;
    return candidate;
  };
  if (bottom_up) {
    for (const FreeSpan& span : spans) {
      if (auto found = fit(span)) return found;
    }
  } else {
    for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
      if (auto found = fit(*it)) return found;
    }
  }
  return std::nullopt;
}

std::string FlagNames(uint32_t flags) {
  static constexpr std::pair<uint32_t, const char*> kNames[] = {
      {kMemblockHotplug, "HOTPLUG"},
      {kMemblockMirror, "MIRROR"},
      {kMemblockNoMap, "NOMAP"},
      {kMemblockDriverManaged, "DRIVER_MANAGED"},
      {kMemblockRsrvNoInit, "RSRV_NOINIT"},
      {kMemblockRsrvKern, "RSRV_KERN"},
      {kMemblockKhoScratch, "KHO_SCRATCH"},
      {kMemblockRsrvHugetlb, "RSRV_HUGETLB"},
  };
  std::vector<std::string> names;
  uint32_t known = 0;
  for (const auto& [bit, name] : kNames) {
    known |= bit;
    if (flags & bit) names.emplace_back(name);
  }
  if (flags & ~known) names.push_back(absl::StrFormat("0x%x", flags & ~known));
  if (names.empty()) return "NONE";
  return absl::StrJoin(names, "|");
}

absl::Status CheckList(const char* list_name, const Regions& regions) {
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemblockRegion& r = regions[i];
    if (r.size == 0) {
      return absl::InternalError(
          absl::StrFormat("memblock.%s[%d] at %s has zero size", list_name, i, r.base.ToString()));
    }
    if (r.size > kMaxAddr - r.base.value()) {
      return absl::InternalError(absl::StrFormat("memblock.%s[%d] at %s size 0x%x wraps", list_name,
                                                 i, r.base.ToString(), r.size));
    }
    if (i == 0) continue;
    const MemblockRegion& prev = regions[i - 1];
    if (prev.base >= r.base) {
      return absl::InternalError(absl::StrFormat("memblock.%s[%d] at %s is not sorted after %s",
                                                 list_name, i, r.base.ToString(),
                                                 prev.base.ToString()));
    }
    if (prev.end() > r.base) {
      return absl::InternalError(absl::StrFormat(
          "memblock.%s[%d] [%s, %s) overlaps [%s, %s)", list_name, i, r.base.ToString(),
          r.end().ToString(), prev.base.ToString(), prev.end().ToString()));
    }
    if (Mergeable(prev, r)) {
      return absl::InternalError(
          absl::StrFormat("memblock.%s[%d] at %s is unmerged with its neighbour (flags %s, nid %d)",
                          list_name, i, r.base.ToString(), FlagNames(r.flags), r.nid));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Memblock::Memblock(KernelContext& ctx) : ctx_(ctx) {}

void Memblock::Add(PhysAddr base, uint64_t size, int nid, uint32_t flags) {
  InsertUncovered(memory_, base.value(), CappedEnd(base, size), flags, nid);
  AssignReservedNodes(memory_, reserved_);
}

void Memblock::Remove(PhysAddr base, uint64_t size) {
  CutOut(memory_, base.value(), CappedEnd(base, size));
  AssignReservedNodes(memory_, reserved_);
}

void Memblock::MarkMemoryFlags(PhysAddr base, uint64_t size, uint32_t flags) {
  UpdateFlags(memory_, base.value(), CappedEnd(base, size), flags, 0);
}

void Memblock::ClearMemoryFlags(PhysAddr base, uint64_t size, uint32_t flags) {
  UpdateFlags(memory_, base.value(), CappedEnd(base, size), 0, flags);
}

void Memblock::Reserve(PhysAddr base, uint64_t size, uint32_t flags) {
  const uint64_t start = base.value();
  const uint64_t end = CappedEnd(base, size);
  // A range inside one memory region takes that region's node directly,
  // which keeps the reserved list's node invariant without a full pass.
  const size_t m = FirstEndingAbove(memory_, start);
  if (m < memory_.size() && memory_[m].base.value() <= start && memory_[m].end().value() >= end) {
    InsertUncovered(reserved_, start, end, flags, memory_[m].nid);
    return;
  }
  InsertUncovered(reserved_, start, end, flags, kNumaNoNode);
  AssignReservedNodes(memory_, reserved_);
}

void Memblock::Free(PhysAddr base, uint64_t size) {
  CutOut(reserved_, base.value(), CappedEnd(base, size));
}

void Memblock::MarkReservedFlags(PhysAddr base, uint64_t size, uint32_t flags) {
  UpdateFlags(reserved_, base.value(), CappedEnd(base, size), flags, 0);
}

PhysAddr Memblock::Alloc(const MemblockAllocRequest& request) {
  if (ctx_.ShouldFail("memblock")) return PhysAddr();
  if (request.size == 0) {
    ctx_.Warn(KHOSIM_SITE, "memblock: zero-size allocation");
    return PhysAddr();
  }
  const uint64_t page_size = ctx_.geometry().page_size();
  const uint64_t align = request.align == 0 ? page_size : request.align;
  if (!IsPowerOfTwo(align)) {
    ctx_.Warn(KHOSIM_SITE,
              absl::StrFormat("memblock: alignment 0x%x is not a power of two", request.align));
    return PhysAddr();
  }
  // The first page is never handed out, so a null address always means
  // failure.
  const uint64_t lo = std::max(request.min_addr.value(), page_size);
  const uint64_t hi = request.max_addr.IsNull() ? kMaxAddr : request.max_addr.value();
  if (lo >= hi) return PhysAddr();

  auto search = [&](int nid) {
    auto skip = [&](const MemblockRegion& m) {
      if (nid != kNumaNoNode && m.nid != nid) return true;
      if (m.flags & (kMemblockNoMap | kMemblockDriverManaged)) return true;
      if (scratch_only_ && !(m.flags & kMemblockKhoScratch)) return true;
      if (request.hugetlb && (m.flags & kMemblockKhoScratch)) return true;
      return false;
    };
    return Place(FreeSpans(memory_, reserved_, skip), request.size, align, lo, hi,
                 request.bottom_up);
  };

  std::optional<uint64_t> found = search(request.nid);
  if (!found.has_value() && request.nid != kNumaNoNode && !request.exact_nid) {
    found = search(kNumaNoNode);
  }
  if (!found.has_value()) return PhysAddr();

  const PhysAddr base(*found);
  Reserve(base, request.size, request.hugetlb ? kMemblockRsrvHugetlb : kMemblockRsrvKern);
  if (request.size >= ctx_.env().TraceAllocThreshold()) {
    ctx_.Trace("alloc", "memblock",
               {{"base", base.ToString()},
                {"size", absl::StrCat(request.size)},
                {"nid", absl::StrCat(NodeOf(base))}});
  }
  return base;
}

void Memblock::ForEachFreeRange(int nid,
                                const std::function<void(PhysAddr, PhysAddr, int)>& fn) const {
  const uint64_t page_size = ctx_.geometry().page_size();
  auto skip = [nid](const MemblockRegion& m) {
    if (nid != kNumaNoNode && m.nid != nid) return true;
    return (m.flags & (kMemblockNoMap | kMemblockDriverManaged)) != 0;
  };
  for (const FreeSpan& span : FreeSpans(memory_, reserved_, skip)) {
    if (span.start > kMaxAddr - (page_size - 1)) continue;
    const uint64_t start = AlignUp(span.start, page_size);
    const uint64_t end = AlignDown(span.end, page_size);
    if (start >= end) continue;
    fn(PhysAddr(start), PhysAddr(end), span.nid);
  }
}

uint64_t Memblock::ReservedSizeWithFlags(uint32_t flags) const {
  uint64_t total = 0;
  for (const MemblockRegion& r : reserved_) {
    if ((r.flags & flags) == flags) total += r.size;
  }
  return total;
}

uint64_t Memblock::ReservedKernSize(PhysAddr limit, int nid) const {
  uint64_t total = 0;
  for (const MemblockRegion& r : reserved_) {
    if (r.base >= limit) break;
    if (!(r.flags & kMemblockRsrvKern)) continue;
    if (nid != kNumaNoNode && r.nid != nid) continue;
    total += std::min(r.end(), limit) - r.base;
  }
  return total;
}

uint64_t Memblock::TotalReserved() const {
  uint64_t total = 0;
  for (const MemblockRegion& r : reserved_) total += r.size;
  return total;
}

uint64_t Memblock::TotalMemory() const {
  uint64_t total = 0;
  for (const MemblockRegion& m : memory_) total += m.size;
  return total;
}

bool Memblock::IsReserved(PhysAddr base, uint64_t size) const {
  if (size == 0) return false;
  const uint64_t start = base.value();
  const uint64_t end = CappedEnd(base, size);
  const size_t i = FirstEndingAbove(reserved_, start);
  return i < reserved_.size() && reserved_[i].base.value() < end;
}

bool Memblock::IsMemory(PhysAddr base, uint64_t size) const {
  if (size == 0) return false;
  uint64_t cursor = base.value();
  const uint64_t end = CappedEnd(base, size);
  for (size_t i = FirstEndingAbove(memory_, cursor); i < memory_.size(); ++i) {
    if (memory_[i].base.value() > cursor) return false;
    cursor = memory_[i].end().value();
    if (cursor >= end) return true;
  }
  return false;
}

int Memblock::NodeOf(PhysAddr pa) const {
  const size_t i = FirstEndingAbove(memory_, pa.value());
  if (i < memory_.size() && memory_[i].base <= pa) return memory_[i].nid;
  return kNumaNoNode;
}

absl::Status Memblock::Validate() const {
  if (absl::Status s = CheckList("memory", memory_); !s.ok()) return s;
  if (absl::Status s = CheckList("reserved", reserved_); !s.ok()) return s;
  for (size_t i = 0; i < reserved_.size(); ++i) {
    const MemblockRegion& r = reserved_[i];
    if (!IsMemory(r.base, r.size)) {
      return absl::InternalError(
          absl::StrFormat("memblock.reserved[%d] [%s, %s) lies outside memory", i,
                          r.base.ToString(), r.end().ToString()));
    }
    // Covered by memory: every byte beneath must belong to the region's node.
    for (size_t j = FirstEndingAbove(memory_, r.base.value());
         j < memory_.size() && memory_[j].base < r.end(); ++j) {
      if (memory_[j].nid != r.nid) {
        return absl::InternalError(
            absl::StrFormat("memblock.reserved[%d] at %s has nid %d but memory at %s is on nid %d",
                            i, r.base.ToString(), r.nid,
                            std::max(r.base, memory_[j].base).ToString(), memory_[j].nid));
      }
    }
  }
  return absl::OkStatus();
}

std::string Memblock::Dump() const {
  std::string out = absl::StrFormat("memblock: scratch_only=%d\n", scratch_only_ ? 1 : 0);
  auto dump_list = [&out](const char* name, const Regions& regions, uint64_t total) {
    absl::StrAppendFormat(&out, " %s: %d regions, 0x%x bytes\n", name, regions.size(), total);
    for (size_t i = 0; i < regions.size(); ++i) {
      const MemblockRegion& r = regions[i];
      absl::StrAppendFormat(&out, "  %s[%d] [0x%016x-0x%016x] 0x%x bytes nid %d flags %s\n", name,
                            i, r.base.value(), r.end().value() - 1, r.size, r.nid,
                            FlagNames(r.flags));
    }
  };
  dump_list("memory", memory_, TotalMemory());
  dump_list("reserved", reserved_, TotalReserved());
  return out;
}

}  // namespace khosim::mm

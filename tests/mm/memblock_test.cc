// Unit tests for Memblock: region list canonical form, flag handling,
// allocation placement and policy (scratch-only, hugetlb, nid), accounting
// and the "memblock" fault point.
#include "khosim/mm/memblock.h"

#include <cstdint>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/types.h"
#include "khosim/testing/fake_kernel_env.h"

namespace khosim::mm {
namespace {

using namespace khosim::literals;

constexpr uint64_t kAll = ~uint64_t{0};

// One expected region, comparable and printable.
struct R {
  uint64_t base;
  uint64_t size;
  uint32_t flags;
  int nid;
  bool operator==(const R&) const = default;
};

void PrintTo(const R& r, std::ostream* os) {
  *os << std::hex << "{0x" << r.base << ", 0x" << r.size << ", flags 0x" << r.flags << std::dec
      << ", nid " << r.nid << "}";
}

std::vector<R> Regions(const std::vector<MemblockRegion>& regions) {
  std::vector<R> out;
  for (const MemblockRegion& r : regions) out.push_back({r.base.value(), r.size, r.flags, r.nid});
  return out;
}

struct Range {
  uint64_t start;
  uint64_t end;
  int nid;
  bool operator==(const Range&) const = default;
};

void PrintTo(const Range& r, std::ostream* os) {
  *os << std::hex << "[0x" << r.start << ", 0x" << r.end << ")" << std::dec << " nid " << r.nid;
}

// A fresh kernel context and memblock for one page size.
struct Harness {
  explicit Harness(uint64_t page_size = 4096)
      : ctx(env, 1, PageGeometry::ForPageSize(page_size), BootParams{}), mb(ctx) {}

  std::vector<Range> FreeRanges(int nid = kNumaNoNode) const {
    std::vector<Range> out;
    mb.ForEachFreeRange(nid, [&out](PhysAddr start, PhysAddr end, int n) {
      out.push_back({start.value(), end.value(), n});
    });
    return out;
  }

  uint64_t Alloc(MemblockAllocRequest request) { return mb.Alloc(request).value(); }

  khosim::testing::FakeKernelEnv env;
  KernelContext ctx;
  Memblock mb;
};

// ---------------------------------------------------------------------------
// Memory list

TEST(MemblockTest, AddMergesOnlyMatchingNeighbours) {
  Harness h;
  h.mb.Add(PhysAddr(0x1000), 0x1000, 0);
  h.mb.Add(PhysAddr(0x2000), 0x1000, 0);                    // merges
  h.mb.Add(PhysAddr(0x3000), 0x1000, 1);                    // other node
  h.mb.Add(PhysAddr(0x4000), 0x1000, 1, kMemblockHotplug);  // other flags
  h.mb.Add(PhysAddr(0x6000), 0x1000, 1, kMemblockHotplug);  // gap
  h.mb.Add(PhysAddr(0x5000), 0x1000, 1, kMemblockHotplug);  // fills the gap
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x1000, 0x2000, kMemblockNone, 0},
                                                    {0x3000, 0x1000, kMemblockNone, 1},
                                                    {0x4000, 0x3000, kMemblockHotplug, 1}}));
  EXPECT_EQ(h.mb.TotalMemory(), 0x6000u);
  EXPECT_TRUE(h.mb.reserved().empty());
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, AddOverlapInsertsOnlyUncoveredParts) {
  Harness h;
  h.mb.Add(PhysAddr(0x10000), 0x10000, 0, kMemblockKhoScratch);
  h.mb.Add(PhysAddr(0x8000), 0x20000, 1);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x8000, 0x8000, kMemblockNone, 1},
                                                    {0x10000, 0x10000, kMemblockKhoScratch, 0},
                                                    {0x20000, 0x8000, kMemblockNone, 1}}));
  // Entirely covered: nothing changes.
  h.mb.Add(PhysAddr(0x11000), 0x1000, 5, kMemblockMirror);
  EXPECT_EQ(h.mb.memory().size(), 3u);
  EXPECT_EQ(h.mb.TotalMemory(), 0x20000u);
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, AddBridgingTwoRegionsMergesIntoOne) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 0x1000, 0);
  h.mb.Add(PhysAddr(0x3000), 0x1000, 0);
  h.mb.Add(PhysAddr(0x0), 0x4000, 0);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x0, 0x4000, kMemblockNone, 0}}));
}

TEST(MemblockTest, AddZeroSizeAndTopOfAddressSpace) {
  Harness h;
  h.mb.Add(PhysAddr(0x1000), 0, 0);
  EXPECT_TRUE(h.mb.memory().empty());
  // A size reaching past 2^64 is capped at the top of the address space.
  h.mb.Add(PhysAddr(kAll - 0xfff), 0x10000, 0);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{kAll - 0xfff, 0xfff, kMemblockNone, 0}}));
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, RemoveSplitsAndTrims) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 0x10000, 0);
  h.mb.Add(PhysAddr(0x10000), 0x10000, 1);
  h.mb.Remove(PhysAddr(0x4000), 0x2000);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x0, 0x4000, kMemblockNone, 0},
                                                    {0x6000, 0xa000, kMemblockNone, 0},
                                                    {0x10000, 0x10000, kMemblockNone, 1}}));
  // Across a node boundary, trimming both sides.
  h.mb.Remove(PhysAddr(0xf000), 0x2000);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x0, 0x4000, kMemblockNone, 0},
                                                    {0x6000, 0x9000, kMemblockNone, 0},
                                                    {0x11000, 0xf000, kMemblockNone, 1}}));
  // Removing a hole, or a whole region.
  h.mb.Remove(PhysAddr(0x4000), 0x2000);
  h.mb.Remove(PhysAddr(0x0), 0x4000);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x6000, 0x9000, kMemblockNone, 0},
                                                    {0x11000, 0xf000, kMemblockNone, 1}}));
  EXPECT_EQ(h.mb.TotalMemory(), 0x18000u);
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, MarkAndClearMemoryFlagsSplitAtBoundaries) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 0x10000, 0);
  h.mb.MarkMemoryFlags(PhysAddr(0x4000), 0x4000, kMemblockKhoScratch);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x0, 0x4000, kMemblockNone, 0},
                                                    {0x4000, 0x4000, kMemblockKhoScratch, 0},
                                                    {0x8000, 0x8000, kMemblockNone, 0}}));
  // Extending the flagged part merges with it.
  h.mb.MarkMemoryFlags(PhysAddr(0x8000), 0x1000, kMemblockKhoScratch);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x0, 0x4000, kMemblockNone, 0},
                                                    {0x4000, 0x5000, kMemblockKhoScratch, 0},
                                                    {0x9000, 0x7000, kMemblockNone, 0}}));
  // Flags accumulate on the overlapped piece only.
  h.mb.MarkMemoryFlags(PhysAddr(0x3000), 0x2000, kMemblockMirror);
  EXPECT_EQ(Regions(h.mb.memory()),
            (std::vector<R>{{0x0, 0x3000, kMemblockNone, 0},
                            {0x3000, 0x1000, kMemblockMirror, 0},
                            {0x4000, 0x1000, kMemblockKhoScratch | kMemblockMirror, 0},
                            {0x5000, 0x4000, kMemblockKhoScratch, 0},
                            {0x9000, 0x7000, kMemblockNone, 0}}));
  h.mb.ClearMemoryFlags(PhysAddr(0x0), 0x10000, kMemblockMirror);
  h.mb.ClearMemoryFlags(PhysAddr(0x4000), 0x5000, kMemblockKhoScratch);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x0, 0x10000, kMemblockNone, 0}}));
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, MarkMemoryFlagsLeavesHolesAlone) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 0x1000, 0);
  h.mb.Add(PhysAddr(0x3000), 0x1000, 0);
  h.mb.MarkMemoryFlags(PhysAddr(0x0), 0x4000, kMemblockNoMap);
  EXPECT_EQ(Regions(h.mb.memory()), (std::vector<R>{{0x0, 0x1000, kMemblockNoMap, 0},
                                                    {0x3000, 0x1000, kMemblockNoMap, 0}}));
  EXPECT_EQ(h.mb.TotalMemory(), 0x2000u);
}

// ---------------------------------------------------------------------------
// Reserved list

TEST(MemblockTest, ReserveOverlapKeepsExistingFlags) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 1_MiB, 0);
  h.mb.Reserve(PhysAddr(0x1000), 0x2000, kMemblockRsrvNoInit);
  h.mb.Reserve(PhysAddr(0x0), 0x5000);
  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{0x0, 0x1000, kMemblockNone, 0},
                                                      {0x1000, 0x2000, kMemblockRsrvNoInit, 0},
                                                      {0x3000, 0x2000, kMemblockNone, 0}}));
  h.mb.Reserve(PhysAddr(0x5000), 0x1000);                     // touches the last one: merges
  h.mb.Reserve(PhysAddr(0x6000), 0x1000, kMemblockRsrvKern);  // other flags: separate
  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{0x0, 0x1000, kMemblockNone, 0},
                                                      {0x1000, 0x2000, kMemblockRsrvNoInit, 0},
                                                      {0x3000, 0x3000, kMemblockNone, 0},
                                                      {0x6000, 0x1000, kMemblockRsrvKern, 0}}));
  EXPECT_EQ(h.mb.TotalReserved(), 0x7000u);
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, FreeCutsAcrossRegions) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 1_MiB, 0);
  h.mb.Reserve(PhysAddr(0x1000), 0x2000, kMemblockRsrvNoInit);
  h.mb.Reserve(PhysAddr(0x3000), 0x3000);
  h.mb.Free(PhysAddr(0x2000), 0x2000);
  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{0x1000, 0x1000, kMemblockRsrvNoInit, 0},
                                                      {0x4000, 0x2000, kMemblockNone, 0}}));
  h.mb.Free(PhysAddr(0x0), 1_MiB);
  EXPECT_TRUE(h.mb.reserved().empty());
  EXPECT_EQ(h.mb.TotalReserved(), 0u);
}

TEST(MemblockTest, MarkReservedFlagsSplitsAndMerges) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 1_MiB, 0);
  h.mb.Reserve(PhysAddr(0x1000), 0x4000);
  h.mb.MarkReservedFlags(PhysAddr(0x2000), 0x1000, kMemblockRsrvNoInit);
  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{0x1000, 0x1000, kMemblockNone, 0},
                                                      {0x2000, 0x1000, kMemblockRsrvNoInit, 0},
                                                      {0x3000, 0x2000, kMemblockNone, 0}}));
  EXPECT_EQ(h.mb.ReservedSizeWithFlags(kMemblockRsrvNoInit), 0x1000u);
  h.mb.MarkReservedFlags(PhysAddr(0x0), 0x10000, kMemblockRsrvNoInit);
  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{0x1000, 0x4000, kMemblockRsrvNoInit, 0}}));
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, ReservedRegionsTakeTheNodeOfTheirMemory) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 0x10000, 0);
  h.mb.Add(PhysAddr(0x10000), 0x10000, 1);
  h.mb.Reserve(PhysAddr(0xf000), 0x2000, kMemblockRsrvKern);
  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{0xf000, 0x1000, kMemblockRsrvKern, 0},
                                                      {0x10000, 0x1000, kMemblockRsrvKern, 1}}));
  EXPECT_TRUE(h.mb.Validate().ok());

  // Outside memory: kNumaNoNode, and Validate reports it.
  h.mb.Reserve(PhysAddr(0x30000), 0x1000);
  EXPECT_EQ(h.mb.reserved().back().nid, kNumaNoNode);
  absl::Status status = h.mb.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_NE(status.message().find("outside memory"), std::string::npos) << status;

  // Memory arriving later gives it a node.
  h.mb.Add(PhysAddr(0x20000), 0x20000, 2);
  EXPECT_EQ(h.mb.reserved().back().nid, 2);
  EXPECT_TRUE(h.mb.Validate().ok());

  // Removing memory beneath a reservation takes the node away again.
  h.mb.Remove(PhysAddr(0x30000), 0x10000);
  EXPECT_EQ(h.mb.reserved().back().nid, kNumaNoNode);
  EXPECT_FALSE(h.mb.Validate().ok());
}

TEST(MemblockTest, IsReservedIsMemoryNodeOf) {
  Harness h;
  h.mb.Add(PhysAddr(0x1000), 0x2000, 0);
  h.mb.Add(PhysAddr(0x3000), 0x2000, 1);
  h.mb.Add(PhysAddr(0x8000), 0x1000, 1);
  h.mb.Reserve(PhysAddr(0x2000), 0x1000);

  EXPECT_TRUE(h.mb.IsMemory(PhysAddr(0x1000), 0x4000));  // two adjacent regions
  EXPECT_FALSE(h.mb.IsMemory(PhysAddr(0x1000), 0x4001));
  EXPECT_FALSE(h.mb.IsMemory(PhysAddr(0xfff), 0x2));
  EXPECT_FALSE(h.mb.IsMemory(PhysAddr(0x4000), 0x5000));  // spans a hole
  EXPECT_TRUE(h.mb.IsMemory(PhysAddr(0x8000), 0x1000));
  EXPECT_FALSE(h.mb.IsMemory(PhysAddr(0x1000), 0));

  EXPECT_FALSE(h.mb.IsReserved(PhysAddr(0x1000), 0x1000));  // touches only
  EXPECT_TRUE(h.mb.IsReserved(PhysAddr(0x1000), 0x1001));
  EXPECT_TRUE(h.mb.IsReserved(PhysAddr(0x2fff), 0x1));
  EXPECT_FALSE(h.mb.IsReserved(PhysAddr(0x3000), 0x100));
  EXPECT_TRUE(h.mb.IsReserved(PhysAddr(0x0), 0x100000));
  EXPECT_FALSE(h.mb.IsReserved(PhysAddr(0x2000), 0));

  EXPECT_EQ(h.mb.NodeOf(PhysAddr(0x0)), kNumaNoNode);
  EXPECT_EQ(h.mb.NodeOf(PhysAddr(0x1000)), 0);
  EXPECT_EQ(h.mb.NodeOf(PhysAddr(0x2fff)), 0);
  EXPECT_EQ(h.mb.NodeOf(PhysAddr(0x3000)), 1);
  EXPECT_EQ(h.mb.NodeOf(PhysAddr(0x5000)), kNumaNoNode);
  EXPECT_EQ(h.mb.NodeOf(PhysAddr(0x8fff)), 1);
}

// ---------------------------------------------------------------------------
// Allocation

TEST(MemblockTest, AllocTopDownByDefaultAndReservesKern) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  EXPECT_EQ(h.Alloc({.size = 0x3000}), 0xffd000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 0xffc000u);
  // Neighbouring allocations merge into one RSRV_KERN region.
  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{0xffc000, 0x4000, kMemblockRsrvKern, 0}}));
  // A size that is not a page multiple is reserved exactly.
  EXPECT_EQ(h.Alloc({.size = 0x10}), 0xffb000u);
  EXPECT_EQ(h.mb.TotalReserved(), 0x4010u);
  EXPECT_EQ(h.mb.ReservedKernSize(), 0x4010u);
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, AllocBottomUpSkipsTheFirstPage) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .bottom_up = true}), 0x1000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .bottom_up = true}), 0x2000u);
  h.mb.Reserve(PhysAddr(0x3000), 0x2000);
  EXPECT_EQ(h.Alloc({.size = 0x2000, .bottom_up = true}), 0x5000u);
  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{0x1000, 0x2000, kMemblockRsrvKern, 0},
                                                      {0x3000, 0x2000, kMemblockNone, 0},
                                                      {0x5000, 0x2000, kMemblockRsrvKern, 0}}));
}

TEST(MemblockTest, AllocSearchesAroundReservationsTopDown) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 0x100000, 0);
  h.mb.Reserve(PhysAddr(0xf8000), 0x8000);
  h.mb.Reserve(PhysAddr(0xf0000), 0x6000);
  // [0xf6000, 0xf8000) is too small for 0x3000; next fit is below 0xf0000.
  EXPECT_EQ(h.Alloc({.size = 0x3000}), 0xed000u);
  EXPECT_EQ(h.Alloc({.size = 0x2000}), 0xf6000u);
}

TEST(MemblockTest, AllocAlignment) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  h.mb.Reserve(PhysAddr(0xffe800), 0x1800);
  // Default alignment is the page size.
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 0xffd000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .align = 1_MiB}), 0xf00000u);
  // The sub-page gap [0xffe000, 0xffe800) left above the first allocation
  // now fits.
  EXPECT_EQ(h.Alloc({.size = 0x10, .align = 0x10}), 0xffe7f0u);
  h.mb.Reserve(PhysAddr(0x1000), 0x11345);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .align = 64_KiB, .bottom_up = true}), 0x20000u);
  EXPECT_EQ(h.ctx.WarnCount(), 0u);

  const uint64_t reserved_before = h.mb.TotalReserved();
  EXPECT_EQ(h.Alloc({.size = 0x1000, .align = 0x3000}), 0u);
  EXPECT_EQ(h.Alloc({.size = 0}), 0u);
  EXPECT_EQ(h.ctx.WarnCount(), 2u);
  EXPECT_EQ(h.mb.TotalReserved(), reserved_before);
}

TEST(MemblockTest, AllocHonoursMinAndMaxAddr) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .max_addr = PhysAddr(8_MiB)}), 0x7ff000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .min_addr = PhysAddr(4_MiB), .bottom_up = true}), 0x400000u);
  // An unaligned min_addr is rounded up to the alignment.
  EXPECT_EQ(h.Alloc({.size = 0x1000, .min_addr = PhysAddr(0x300001), .bottom_up = true}),
            0x301000u);
  // Exactly fitting window.
  EXPECT_EQ(
      h.Alloc({.size = 0x2000, .min_addr = PhysAddr(0x500000), .max_addr = PhysAddr(0x502000)}),
      0x500000u);
  // Too small a window, or an empty one.
  EXPECT_EQ(
      h.Alloc({.size = 0x2000, .min_addr = PhysAddr(0x600000), .max_addr = PhysAddr(0x601000)}),
      0u);
  EXPECT_EQ(
      h.Alloc({.size = 0x1000, .min_addr = PhysAddr(0x700000), .max_addr = PhysAddr(0x700000)}),
      0u);
  // Beyond the end of memory.
  EXPECT_EQ(h.Alloc({.size = 0x1000, .min_addr = PhysAddr(16_MiB)}), 0u);
  // max_addr below the first page: nothing can be placed.
  EXPECT_EQ(h.Alloc({.size = 0x1000, .max_addr = PhysAddr(0x1000)}), 0u);
}

TEST(MemblockTest, AllocSkipsNoMapMemory) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  h.mb.MarkMemoryFlags(PhysAddr(15_MiB), 1_MiB, kMemblockNoMap);
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 15_MiB - 0x1000);
}

TEST(MemblockTest, AllocPrefersNidThenFallsBackUnlessExact) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  h.mb.Add(PhysAddr(16_MiB), 16_MiB, 1);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 0}), 0xfff000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 0x1fff000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 1, .exact_nid = true}), 0x1ffe000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 0, .bottom_up = true}), 0x1000u);

  h.mb.Reserve(PhysAddr(0x0), 16_MiB);  // node 0 is now full
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 0, .exact_nid = true}), 0u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 0}), 0x1ffd000u);
  EXPECT_EQ(h.mb.NodeOf(PhysAddr(0x1ffd000)), 1);
  // A node with no memory at all.
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 7, .exact_nid = true}), 0u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 7}), 0x1ffc000u);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(kAll), 1), 0x4000u);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(kAll), 0), 0x2000u);
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, ScratchOnlyAllocatesOnlyFromScratchWithoutFallback) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 64_MiB, 0);
  h.mb.MarkMemoryFlags(PhysAddr(16_MiB), 4_MiB, kMemblockKhoScratch);
  h.mb.SetScratchOnly(true);
  EXPECT_TRUE(h.mb.scratch_only());

  EXPECT_EQ(h.Alloc({.size = 0x1000}), 0x13ff000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .bottom_up = true}), 0x1000000u);
  // 4 MiB no longer fits in scratch; 44 MiB of other memory is free but is
  // never used.
  EXPECT_EQ(h.Alloc({.size = 4_MiB}), 0u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .max_addr = PhysAddr(16_MiB)}), 0u);
  EXPECT_EQ(h.Alloc({.size = 4_MiB - 0x2000}), 0x1001000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 0u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .bottom_up = true}), 0u);
  EXPECT_EQ(h.mb.TotalReserved(), 4_MiB);
  for (const MemblockRegion& r : h.mb.reserved()) {
    EXPECT_GE(r.base, PhysAddr(16_MiB));
    EXPECT_LE(r.end(), PhysAddr(20_MiB));
  }

  h.mb.SetScratchOnly(false);
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 64_MiB - 0x1000);
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, ScratchOnlyNidFallbackStaysInScratch) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  h.mb.Add(PhysAddr(16_MiB), 16_MiB, 1);
  h.mb.MarkMemoryFlags(PhysAddr(24_MiB), 1_MiB, kMemblockKhoScratch);
  h.mb.SetScratchOnly(true);
  // Node 0 has no scratch: exact fails, preferred falls back to node 1's.
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 0, .exact_nid = true}), 0u);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .nid = 0}), 25_MiB - 0x1000);
}

TEST(MemblockTest, HugetlbNeverOverlapsScratchAndIsFlaggedHugetlb) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 4_GiB, 0);
  h.mb.MarkMemoryFlags(PhysAddr(2_GiB + 512_MiB), 512_MiB, kMemblockKhoScratch);
  const MemblockAllocRequest giga{.size = 1_GiB, .align = 1_GiB, .hugetlb = true};
  EXPECT_EQ(h.Alloc(giga), 3_GiB);
  // 2 GiB would overlap scratch; 1 GiB is the next candidate.
  EXPECT_EQ(h.Alloc(giga), 1_GiB);
  // The only aligned place left is address 0, which is never handed out.
  EXPECT_EQ(h.Alloc(giga), 0u);

  EXPECT_EQ(Regions(h.mb.reserved()), (std::vector<R>{{1_GiB, 1_GiB, kMemblockRsrvHugetlb, 0},
                                                      {3_GiB, 1_GiB, kMemblockRsrvHugetlb, 0}}));
  EXPECT_EQ(h.mb.ReservedHugetlbSize(), 2_GiB);
  EXPECT_EQ(h.mb.ReservedKernSize(), 0u);
  for (const MemblockRegion& r : h.mb.reserved()) {
    EXPECT_FALSE(r.base < PhysAddr(3_GiB) && PhysAddr(2_GiB + 512_MiB) < r.end());
  }

  // A normal allocation may use scratch.
  EXPECT_EQ(h.Alloc({.size = 256_MiB, .align = 256_MiB}), 2_GiB + 768_MiB);
  // During scratch-only, hugetlb has no candidates at all.
  h.mb.SetScratchOnly(true);
  EXPECT_EQ(h.Alloc({.size = 0x1000, .hugetlb = true}), 0u);
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 2_GiB + 768_MiB - 0x1000);
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, TracesLargeAllocationsOnly) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 64_MiB, 0);
  ASSERT_EQ(h.env.TraceAllocThreshold(), 1_MiB);
  EXPECT_NE(h.Alloc({.size = 1_MiB - 1}), 0u);
  EXPECT_TRUE(h.env.events.empty());
  EXPECT_NE(h.Alloc({.size = 1_MiB}), 0u);
  EXPECT_EQ(h.env.events, (std::vector<std::string>{"alloc/memblock"}));
}

TEST(MemblockTest, FaultPointFailsExactlyTheNamedHit) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  h.env.fail_at["memblock"] = 2;
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 0xfff000u);
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 0u);
  EXPECT_EQ(h.Alloc({.size = 0x1000}), 0xffe000u);
  EXPECT_EQ(h.Alloc({.size = 0}), 0u);  // invalid calls are hits too
  EXPECT_EQ(h.env.hits["memblock"], 4u);
  EXPECT_EQ(h.mb.TotalReserved(), 0x2000u);
}

// ---------------------------------------------------------------------------
// Accounting and iteration

TEST(MemblockTest, ReservedKernSizeWithLimitAndNid) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  h.mb.Add(PhysAddr(16_MiB), 16_MiB, 1);
  h.mb.Reserve(PhysAddr(1_MiB), 2_MiB, kMemblockRsrvKern);
  h.mb.Reserve(PhysAddr(15_MiB), 2_MiB, kMemblockRsrvKern);  // crosses nodes
  h.mb.Reserve(PhysAddr(20_MiB), 1_MiB);
  h.mb.Reserve(PhysAddr(24_MiB), 1_MiB, kMemblockRsrvHugetlb);

  EXPECT_EQ(h.mb.ReservedKernSize(), 4_MiB);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(2_MiB)), 1_MiB);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(15_MiB + 512_KiB)), 2_MiB + 512_KiB);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(16_MiB)), 3_MiB);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(1_MiB)), 0u);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(kAll), 0), 3_MiB);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(kAll), 1), 1_MiB);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(16_MiB + 512_KiB), 1), 512_KiB);
  EXPECT_EQ(h.mb.ReservedKernSize(PhysAddr(kAll), 2), 0u);

  EXPECT_EQ(h.mb.ReservedSizeWithFlags(kMemblockRsrvKern), 4_MiB);
  EXPECT_EQ(h.mb.ReservedSizeWithFlags(kMemblockNone), 6_MiB);
  EXPECT_EQ(h.mb.TotalReserved(), 6_MiB);
  EXPECT_EQ(h.mb.ReservedHugetlbSize(), 1_MiB);

  // Flags combine: a KERN region marked NOINIT still counts as KERN.
  h.mb.MarkReservedFlags(PhysAddr(1_MiB), 1_MiB, kMemblockRsrvNoInit);
  EXPECT_EQ(h.mb.ReservedKernSize(), 4_MiB);
  EXPECT_EQ(h.mb.ReservedSizeWithFlags(kMemblockRsrvKern | kMemblockRsrvNoInit), 1_MiB);
  EXPECT_EQ(h.mb.ReservedSizeWithFlags(kMemblockRsrvNoInit), 1_MiB);
  EXPECT_TRUE(h.mb.Validate().ok());
}

TEST(MemblockTest, ForEachFreeRangeClipsToPages) {
  Harness h;
  h.mb.Add(PhysAddr(0x800), 0x9800, 0);  // [0x800, 0xa000)
  h.mb.Add(PhysAddr(0x10000), 0x8000, 1);
  h.mb.Add(PhysAddr(0x20000), 0x4000, 1, kMemblockNoMap);
  h.mb.Reserve(PhysAddr(0x3800), 0x1000);
  h.mb.Reserve(PhysAddr(0x6000), 0x3c00);  // leaves [0x9c00, 0xa000): under a page
  h.mb.Reserve(PhysAddr(0x12000), 0x1000);
  EXPECT_EQ(
      h.FreeRanges(),
      (std::vector<Range>{
          {0x1000, 0x3000, 0}, {0x5000, 0x6000, 0}, {0x10000, 0x12000, 1}, {0x13000, 0x18000, 1}}));
  EXPECT_EQ(h.FreeRanges(1), (std::vector<Range>{{0x10000, 0x12000, 1}, {0x13000, 0x18000, 1}}));
  EXPECT_EQ(h.FreeRanges(0), (std::vector<Range>{{0x1000, 0x3000, 0}, {0x5000, 0x6000, 0}}));
  EXPECT_TRUE(h.FreeRanges(3).empty());
  // The scratch-only switch does not affect iteration.
  h.mb.SetScratchOnly(true);
  EXPECT_EQ(h.FreeRanges().size(), 4u);
}

TEST(MemblockTest, ForEachFreeRangeIsPerMemoryRegion) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 0x4000, 0);
  h.mb.MarkMemoryFlags(PhysAddr(0x2000), 0x2000, kMemblockKhoScratch);
  EXPECT_EQ(h.FreeRanges(), (std::vector<Range>{{0x0, 0x2000, 0}, {0x2000, 0x4000, 0}}));
}

TEST(MemblockTest, ValidateAndDumpOnGoodState) {
  Harness h;
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  h.mb.Add(PhysAddr(16_MiB), 16_MiB, 1);
  h.mb.MarkMemoryFlags(PhysAddr(8_MiB), 16_MiB, kMemblockKhoScratch);
  h.mb.Reserve(PhysAddr(1_MiB), 1_MiB, kMemblockRsrvKern);
  h.mb.SetScratchOnly(true);
  EXPECT_NE(h.Alloc({.size = 0x1000}), 0u);
  EXPECT_NE(h.Alloc({.size = 0x1000, .nid = 0}), 0u);
  EXPECT_TRUE(h.mb.Validate().ok()) << h.mb.Validate();

  const std::string dump = h.mb.Dump();
  EXPECT_EQ(dump,
            "memblock: scratch_only=1\n"
            " memory: 4 regions, 0x2000000 bytes\n"
            "  memory[0] [0x0000000000000000-0x00000000007fffff] 0x800000 bytes nid 0 flags NONE\n"
            "  memory[1] [0x0000000000800000-0x0000000000ffffff] 0x800000 bytes nid 0 flags "
            "KHO_SCRATCH\n"
            "  memory[2] [0x0000000001000000-0x00000000017fffff] 0x800000 bytes nid 1 flags "
            "KHO_SCRATCH\n"
            "  memory[3] [0x0000000001800000-0x0000000001ffffff] 0x800000 bytes nid 1 flags NONE\n"
            " reserved: 3 regions, 0x102000 bytes\n"
            "  reserved[0] [0x0000000000100000-0x00000000001fffff] 0x100000 bytes nid 0 flags "
            "RSRV_KERN\n"
            "  reserved[1] [0x0000000000fff000-0x0000000000ffffff] 0x1000 bytes nid 0 flags "
            "RSRV_KERN\n"
            "  reserved[2] [0x00000000017ff000-0x00000000017fffff] 0x1000 bytes nid 1 flags "
            "RSRV_KERN\n");
}

// ---------------------------------------------------------------------------
// Other page sizes

TEST(MemblockTest, SixteenKiBPages) {
  Harness h(16_KiB);
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  EXPECT_EQ(h.Alloc({.size = 0x100}), 16_MiB - 16_KiB);
  EXPECT_EQ(h.Alloc({.size = 0x100, .bottom_up = true}), 16_KiB);  // first page skipped
  // An explicit smaller alignment uses the rest of the top page.
  EXPECT_EQ(h.Alloc({.size = 0x100, .align = 0x1000}), 16_MiB - 0x1000);
  // The partly used pages at 16 KiB and at the top yield no free range.
  EXPECT_EQ(h.FreeRanges(), (std::vector<Range>{{0x0, 0x4000, 0}, {0x8000, 16_MiB - 16_KiB, 0}}));
}

TEST(MemblockTest, SixtyFourKiBPages) {
  Harness h(64_KiB);
  h.mb.Add(PhysAddr(0x0), 16_MiB, 0);
  EXPECT_EQ(h.Alloc({.size = 0x100}), 16_MiB - 64_KiB);
  EXPECT_EQ(h.Alloc({.size = 0x100, .bottom_up = true}), 64_KiB);
  EXPECT_EQ(h.Alloc({.size = 0x100, .max_addr = PhysAddr(64_KiB + 0x100)}), 0u);
  EXPECT_EQ(h.FreeRanges(), (std::vector<Range>{{0x0, 0x10000, 0}, {0x20000, 16_MiB - 64_KiB, 0}}));
}

}  // namespace
}  // namespace khosim::mm

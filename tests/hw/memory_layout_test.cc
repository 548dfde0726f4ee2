#include "khosim/hw/memory_layout.h"

#include "gtest/gtest.h"

namespace khosim::hw {
namespace {

TEST(MemoryLayoutTest, UniformSplitsRamOverNodesAndNeverStartsAtZero) {
  MemoryLayout layout = MemoryLayout::Uniform(8 * kGiB, 2, 4096);
  ASSERT_TRUE(layout.Validate().ok());
  EXPECT_EQ(layout.num_nodes(), 2);
  EXPECT_EQ(layout.total_ram(), 8 * kGiB);
  EXPECT_EQ(layout.node_ram(0), 4 * kGiB);
  EXPECT_EQ(layout.node_ram(1), 4 * kGiB);
  EXPECT_EQ(layout.ranges().front().start, PhysAddr(2 * kMiB));
  EXPECT_EQ(layout.NodeOf(PhysAddr(0)), -1);
  EXPECT_EQ(layout.NodeOf(PhysAddr(2 * kMiB)), 0);
  EXPECT_EQ(layout.NodeOf(PhysAddr(2 * kMiB + 4 * kGiB)), 1);
  EXPECT_EQ(layout.NodeOf(layout.end()), -1);
}

TEST(MemoryLayoutTest, HoleSplitsNodeZero) {
  MemoryLayout layout = MemoryLayout::Uniform(4 * kGiB, 1, 4096, 256 * kMiB);
  ASSERT_TRUE(layout.Validate().ok());
  ASSERT_EQ(layout.ranges().size(), 2u);
  EXPECT_EQ(layout.total_ram(), 4 * kGiB);
  const PhysAddr hole = layout.ranges()[0].end();
  EXPECT_EQ(layout.ranges()[1].start - hole, 256 * kMiB);
  EXPECT_EQ(layout.NodeOf(hole), -1);
  EXPECT_FALSE(layout.IsRam(hole - 4096, 8192));
  EXPECT_TRUE(layout.IsRam(hole - 4096, 4096));
}

TEST(MemoryLayoutTest, IsRamSpansTouchingRanges) {
  MemoryLayout layout = MemoryLayout::FromRanges(
      {{PhysAddr(1 * kMiB), 1 * kMiB, 0}, {PhysAddr(2 * kMiB), 1 * kMiB, 1}}, 4096);
  ASSERT_TRUE(layout.Validate().ok());
  EXPECT_TRUE(layout.IsRam(PhysAddr(1 * kMiB), 2 * kMiB));
  EXPECT_FALSE(layout.IsRam(PhysAddr(1 * kMiB), 2 * kMiB + 1));
  EXPECT_FALSE(layout.IsRam(PhysAddr(1 * kMiB), 0));
  EXPECT_FALSE(layout.IsRam(PhysAddr(1 * kMiB - 4096), 8192)) << "starts in the hole below";
  EXPECT_TRUE(layout.IsRam(PhysAddr(3 * kMiB - 4096), 4096));
  EXPECT_FALSE(layout.IsRam(PhysAddr(3 * kMiB), 4096)) << "past the end";
  EXPECT_FALSE(layout.IsRam(PhysAddr(~uint64_t{0} - 4095), 8192)) << "wraps";
}

TEST(MemoryLayoutTest, ValidateRejectsBadLayouts) {
  EXPECT_FALSE(MemoryLayout::FromRanges({{PhysAddr(0), 1 * kMiB, 0}}, 4096).Validate().ok())
      << "pfn 0 must not be RAM";
  EXPECT_FALSE(MemoryLayout::FromRanges({{PhysAddr(4096), 100, 0}}, 4096).Validate().ok());
  EXPECT_FALSE(MemoryLayout::FromRanges(
                   {{PhysAddr(1 * kMiB), 2 * kMiB, 0}, {PhysAddr(2 * kMiB), 1 * kMiB, 0}}, 4096)
                   .Validate()
                   .ok())
      << "overlap";
  EXPECT_FALSE(MemoryLayout::FromRanges({{PhysAddr(1 * kMiB), 1 * kMiB, 1}}, 4096).Validate().ok())
      << "node ids must start at 0";
  EXPECT_FALSE(MemoryLayout::Uniform(1 * kGiB, 1, 8192).Validate().ok());
}

TEST(MemoryLayoutTest, LargePageSizesAlignRanges) {
  for (uint64_t page : {16384ull, 65536ull}) {
    MemoryLayout layout = MemoryLayout::Uniform(1 * kGiB, 2, page);
    EXPECT_TRUE(layout.Validate().ok()) << page;
    for (const RamRange& r : layout.ranges()) {
      EXPECT_EQ(r.start.value() % page, 0u);
      EXPECT_EQ(r.size % page, 0u);
    }
  }
}

}  // namespace
}  // namespace khosim::hw

#include "khosim/hw/physical_memory.h"

#include <cstring>

#include "gtest/gtest.h"

namespace khosim::hw {
namespace {

std::unique_ptr<PhysicalMemory> Make(uint64_t ram) {
  auto memory = PhysicalMemory::Create(MemoryLayout::Uniform(ram, 1, 4096, 64 * kMiB));
  EXPECT_TRUE(memory.ok()) << memory.status();
  return *std::move(memory);
}

TEST(PhysicalMemoryTest, UntouchedMemoryReadsZeroAndCostsNothing) {
  auto memory = Make(1 * kGiB);
  EXPECT_EQ(memory->ResidentBytes(), 0u);
  const uint8_t* p = memory->Virt(PhysAddr(512 * kMiB));
  for (int i = 0; i < 8192; ++i) ASSERT_EQ(p[i], 0);
  // A shared mapping materializes what it reads, page by page: reading is
  // paid for at most once per page read, never for the rest of RAM.
  EXPECT_LE(memory->ResidentBytes(), 8192u);
}

TEST(PhysicalMemoryTest, DirectMapRoundTrips) {
  auto memory = Make(256 * kMiB);
  const PhysAddr pa(8 * kMiB + 123);
  EXPECT_EQ(memory->Phys(memory->Virt(pa)), pa);
  EXPECT_TRUE(memory->IsDirectMap(memory->Virt(pa)));
  int local = 0;
  EXPECT_FALSE(memory->IsDirectMap(&local));
}

TEST(PhysicalMemoryTest, PoisonResidentTouchesOnlyWrittenPages) {
  auto memory = Make(256 * kMiB);
  std::memset(memory->Virt(PhysAddr(8 * kMiB)), 0x11, 3 * 4096);
  const uint64_t before = memory->ResidentBytes();
  EXPECT_EQ(before, 3 * 4096u);
  memory->PoisonResident(PhysAddr(4 * kMiB), 64 * kMiB);
  EXPECT_EQ(memory->ResidentBytes(), before);
  EXPECT_EQ(memory->Virt(PhysAddr(8 * kMiB))[0], kPoisonByte);
  EXPECT_EQ(memory->Virt(PhysAddr(8 * kMiB))[3 * 4096 - 1], kPoisonByte);
  EXPECT_EQ(memory->Virt(PhysAddr(8 * kMiB + 3 * 4096))[0], 0) << "untouched stays zero";
}

TEST(PhysicalMemoryTest, ForEachResidentRangeReportsMaximalRuns) {
  auto memory = Make(256 * kMiB);
  memory->Virt(PhysAddr(8 * kMiB))[0] = 1;
  memory->Virt(PhysAddr(8 * kMiB + 4096))[0] = 1;
  memory->Virt(PhysAddr(16 * kMiB))[0] = 1;
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  memory->ForEachResidentRange(PhysAddr(4 * kMiB), 64 * kMiB, [&](PhysAddr pa, uint64_t len) {
    runs.push_back({pa.value(), len});
  });
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0], std::make_pair(8 * kMiB, uint64_t{8192}));
  EXPECT_EQ(runs[1], std::make_pair(16 * kMiB, uint64_t{4096}));
}

TEST(PhysicalMemoryTest, ZeroDiscardsWholePagesAndWritesEdges) {
  auto memory = Make(256 * kMiB);
  std::memset(memory->Virt(PhysAddr(8 * kMiB)), 0x77, 4 * 4096);
  memory->Zero(PhysAddr(8 * kMiB + 100), 3 * 4096);
  EXPECT_EQ(memory->ResidentBytes(), 2 * 4096u) << "the two interior pages were discarded";
  const uint8_t* p = memory->Virt(PhysAddr(8 * kMiB));
  EXPECT_EQ(p[99], 0x77);
  for (uint64_t i = 100; i < 100 + 3 * 4096; ++i) ASSERT_EQ(p[i], 0) << i;
  EXPECT_EQ(p[100 + 3 * 4096], 0x77);
}

TEST(PhysicalMemoryTest, AliasSharesBytesWithTheDirectMap) {
  auto memory = Make(256 * kMiB);
  void* window = PhysicalMemory::ReserveAliasSpace(1 * kMiB);
  memory->MapAlias(window, PhysAddr(32 * kMiB), 4096);
  memory->MapAlias(static_cast<uint8_t*>(window) + 4096, PhysAddr(8 * kMiB), 4096);
  std::memcpy(static_cast<uint8_t*>(window) + 4090, "crossing", 8);
  EXPECT_EQ(std::memcmp(memory->Virt(PhysAddr(32 * kMiB + 4090)), "crossi", 6), 0);
  EXPECT_EQ(std::memcmp(memory->Virt(PhysAddr(8 * kMiB)), "ng", 2), 0);
  PhysicalMemory::UnmapAlias(window, 2 * 4096);
  PhysicalMemory::ReleaseAliasSpace(window, 1 * kMiB);
}

TEST(PhysicalMemoryDeathTest, HolesAndPageZeroFault) {
  auto memory = Make(256 * kMiB);
  const PhysAddr hole = memory->layout().ranges()[0].end();
  EXPECT_DEATH({ [[maybe_unused]] volatile uint8_t v = *memory->Virt(hole); }, "");
  EXPECT_DEATH({ [[maybe_unused]] volatile uint8_t v = *memory->Virt(PhysAddr(0)); }, "");
}

TEST(PhysicalMemoryDeathTest, InaccessibleRangeFaultsOnRead) {
  auto memory = Make(256 * kMiB);
  memory->SetAccessible(PhysAddr(8 * kMiB), 4096, false);
  EXPECT_DEATH({ [[maybe_unused]] volatile uint8_t v = *memory->Virt(PhysAddr(8 * kMiB)); }, "");
  memory->SetAccessible(PhysAddr(8 * kMiB), 4096, true);
  memory->Virt(PhysAddr(8 * kMiB))[0] = 3;
  EXPECT_EQ(memory->Virt(PhysAddr(8 * kMiB))[0], 3);
}

}  // namespace
}  // namespace khosim::hw

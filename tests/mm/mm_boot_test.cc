// The kernel's memory bring-up as a whole: memblock at boot, the memmap
// footprint, the hand-off to the buddy allocator, and the kernel face.
#include <cstring>

#include "gtest/gtest.h"
#include "khosim/linux/memblock.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

TEST(MmBootTest, ColdBootReservesImageMemmapAndEarlyAllocations) {
  Machine m(MachineConfig{.ram = 2 * kGiB, .nodes = 2, .early_alloc_bytes_per_node = 8 * kMiB});
  m.Boot();
  mm::Mm& mm = m.kernel().mm();
  EXPECT_EQ(m.kernel().phase(), BootPhase::kRunning);
  EXPECT_TRUE(mm.memblock().Validate().ok()) << mm.memblock().Dump();
  EXPECT_TRUE(mm.memblock().IsReserved(m.config().cold_boot_image_base, 4096));
  // memmap: one 2 MiB section map (128 MiB / 4 KiB x 64 bytes) per present
  // 128 MiB section of each node -- RAM starts at 2 MiB, so each 1 GiB node
  // touches 9 sections -- plus the per-node and the low early allocations,
  // all RSRV_KERN.
  const uint64_t memmap = (9 + 9) * 2 * kMiB;
  EXPECT_EQ(mm.memblock().ReservedKernSize(), memmap + 2 * 8 * kMiB + 2 * kMiB);
  const uint64_t reserved = mm.memblock().TotalReserved();
  EXPECT_EQ(mm.pages().FreePages() * 4096 + reserved, 2 * kGiB);
  EXPECT_EQ(mm.pages().ManagedPages(), mm.pages().FreePages());
  EXPECT_TRUE(mm.pages().Validate().ok());
  // memblock is closed after free_all.
  EXPECT_EQ(memblock_alloc(4096, 4096), nullptr);
  EXPECT_EQ(m.kernel().WarnCount("memblock allocation after memblock_free_all"), 1u);
}

TEST(MmBootTest, NodeLocalMemmapFootprint) {
  Machine m(MachineConfig{.ram = 2 * kGiB, .nodes = 2});
  m.Boot();
  mm::Mm& mm = m.kernel().mm();
  for (int nid = 0; nid < 2; ++nid) {
    EXPECT_GE(mm.memblock().ReservedKernSize(PhysAddr(~uint64_t{0}), nid),
              1 * kGiB / 4096 * mm::kKernelStructPageBytes)
        << nid;
  }
}

TEST(MmBootTest, FolioLifecycleThroughTheKernelFace) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  m.Boot();
  const uint64_t before = m.kernel().mm().pages().FreePages();
  struct folio* f = folio_alloc(GFP_KERNEL | __GFP_ZERO, 3);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(folio_order(f), 3u);
  EXPECT_EQ(folio_nr_pages(f), 8u);
  EXPECT_EQ(folio_size(f), 8 * PAGE_SIZE);
  EXPECT_EQ(folio_ref_count(f), 1);
  EXPECT_EQ(folio_pfn(f) % 8, 0u);
  EXPECT_EQ(page_folio(folio_page(f, 5)), f);
  EXPECT_EQ(folio_address(f), phys_to_virt(folio_phys(f)));
  EXPECT_EQ(virt_to_folio(static_cast<uint8_t*>(folio_address(f)) + 3 * PAGE_SIZE), f);
  folio_get(f);
  folio_put(f);
  EXPECT_EQ(m.kernel().mm().pages().FreePages(), before - 8);
  folio_put(f);
  EXPECT_EQ(m.kernel().mm().pages().FreePages(), before);
}

TEST(MmBootTest, NonCompoundHighOrderPagesAndSplitPage) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  m.Boot();
  const uint64_t before = m.kernel().mm().pages().FreePages();
  struct page* p = alloc_pages(GFP_KERNEL, 2);
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(PageCompound(p));
  split_page(p, 2);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(page_ref_count(p + i), 1);
  for (int i = 0; i < 4; ++i) __free_page(p + i);
  EXPECT_EQ(m.kernel().mm().pages().FreePages(), before);
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
}

class PageSizeTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(PageSizeTest, BootsAllocatesAndDerivesOrders) {
  // 4 GiB so that each node holds free MAX_PAGE_ORDER blocks even with 64 KiB
  // pages, where that order is 512 MiB.
  Machine m(MachineConfig{.ram = 4 * kGiB, .nodes = 2, .page_size = GetParam()});
  m.Boot();
  EXPECT_EQ(PAGE_SIZE, GetParam());
  const unsigned expected_max = GetParam() == 4096 ? 10 : GetParam() == 16384 ? 11 : 13;
  EXPECT_EQ(MAX_PAGE_ORDER, expected_max);
  EXPECT_EQ(get_order(PAGE_SIZE + 1), 1u);
  struct folio* f = folio_alloc(GFP_KERNEL, MAX_PAGE_ORDER);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(folio_size(f), PAGE_SIZE << MAX_PAGE_ORDER);
  std::memset(folio_address(f), 1, folio_size(f));
  folio_put(f);
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
  // The memmap footprint follows the page size.
  EXPECT_GE(m.kernel().mm().memblock().ReservedKernSize(),
            4 * kGiB / GetParam() * mm::kKernelStructPageBytes);
}

INSTANTIATE_TEST_SUITE_P(PageSizes, PageSizeTest, ::testing::Values(4096, 16384, 65536));

}  // namespace
}  // namespace khosim

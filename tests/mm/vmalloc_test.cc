#include "khosim/linux/vmalloc.h"

#include <cstring>

#include "gtest/gtest.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

class VmallocTest : public ::testing::Test {
 protected:
  void SetUp() override { m_.Boot(); }
  Machine m_{MachineConfig{.ram = 512 * kMiB, .seed = 5}};
};

TEST_F(VmallocTest, BytesWrittenThroughTheAreaAreThePhysicalPagesBytes) {
  const unsigned long size = 5 * PAGE_SIZE + 100;
  auto* area = static_cast<uint8_t*>(vmalloc(size));
  ASSERT_NE(area, nullptr);
  for (unsigned long i = 0; i < size; ++i) area[i] = static_cast<uint8_t>(i * 7);
  for (unsigned long off = 0; off < size; off += 1000) {
    struct page* page = vmalloc_to_page(area + off);
    ASSERT_NE(page, nullptr);
    const auto* direct = static_cast<const uint8_t*>(page_address(page));
    EXPECT_EQ(direct[off % PAGE_SIZE], static_cast<uint8_t>(off * 7)) << off;
  }
  const vm_struct* vm = find_vm_area(area + 3);
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(vm->addr, area);
  EXPECT_EQ(vm->nr_pages, 6u);
  EXPECT_EQ(vm->page_order, 0u);
  EXPECT_EQ(vm->flags & VM_ALLOC, VM_ALLOC);
  EXPECT_TRUE(is_vmalloc_addr(area));
  vfree(area);
}

TEST_F(VmallocTest, VfreeReturnsEveryPage) {
  const uint64_t before = m_.kernel().mm().pages().FreePages();
  void* area = vmalloc(64 * PAGE_SIZE);
  ASSERT_NE(area, nullptr);
  EXPECT_EQ(m_.kernel().mm().pages().FreePages(), before - 64);
  vfree(area);
  EXPECT_EQ(m_.kernel().mm().pages().FreePages(), before);
  EXPECT_TRUE(m_.kernel().mm().pages().Validate().ok());
  EXPECT_EQ(m_.kernel().mm().vmalloc().AreaCount(), 0u);
}

TEST_F(VmallocTest, VzallocIsZeroEvenOverReusedPages) {
  auto* a = static_cast<uint8_t*>(vmalloc(8 * PAGE_SIZE));
  std::memset(a, 0xee, 8 * PAGE_SIZE);
  vfree(a);
  auto* b = static_cast<uint8_t*>(vzalloc(8 * PAGE_SIZE));
  ASSERT_NE(b, nullptr);
  for (unsigned long i = 0; i < 8 * PAGE_SIZE; ++i) ASSERT_EQ(b[i], 0) << i;
  vfree(b);
}

TEST_F(VmallocTest, HugeAreasUsePageblockOrderBlocks) {
  const unsigned long size = 2 * (PAGE_SIZE << khosim_pageblock_order());
  auto* area = static_cast<uint8_t*>(vmalloc_huge(size, GFP_KERNEL));
  ASSERT_NE(area, nullptr);
  const vm_struct* vm = find_vm_area(area);
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(vm->page_order, khosim_pageblock_order());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(area) % (PAGE_SIZE << khosim_pageblock_order()), 0u);
  // Each block is physically contiguous.
  for (unsigned i = 1; i < (1u << khosim_pageblock_order()); ++i) {
    EXPECT_EQ(page_to_pfn(vm->pages[i]), page_to_pfn(vm->pages[0]) + i);
  }
  area[size - 1] = 9;
  EXPECT_EQ(static_cast<uint8_t*>(page_address(vm->pages[vm->nr_pages - 1]))[PAGE_SIZE - 1], 9);
  vfree(area);
}

TEST_F(VmallocTest, VmapMapsCallerPagesAndVunmapLeavesThem) {
  struct page* pages[3];
  for (auto& p : pages) {
    p = alloc_page(GFP_KERNEL);
    ASSERT_NE(p, nullptr);
  }
  static_cast<uint8_t*>(page_address(pages[2]))[5] = 77;
  auto* area = static_cast<uint8_t*>(vmap(pages, 3, VM_MAP, PAGE_KERNEL));
  ASSERT_NE(area, nullptr);
  EXPECT_EQ(area[2 * PAGE_SIZE + 5], 77);
  vunmap(area);
  EXPECT_EQ(page_ref_count(pages[2]), 1) << "vunmap does not free caller pages";
  for (auto& p : pages) __free_page(p);
}

TEST_F(VmallocTest, FaultPointAndBadFreeAreReported) {
  m_.faults().FailOnce("vmalloc");
  EXPECT_EQ(vmalloc(PAGE_SIZE), nullptr);
  EXPECT_EQ(vmalloc(0), nullptr) << "a zero-size area is refused";
  const uint64_t warns = m_.kernel().WarnCount();
  int not_an_area = 0;
  vfree(&not_an_area);
  EXPECT_EQ(m_.kernel().WarnCount(), warns + 1);
}

TEST_F(VmallocTest, PageAllocationFailureUnwinds) {
  const uint64_t before = m_.kernel().mm().pages().FreePages();
  m_.faults().FailNth("alloc_pages", 3);
  EXPECT_EQ(vmalloc(8 * PAGE_SIZE), nullptr);
  EXPECT_EQ(m_.kernel().mm().pages().FreePages(), before);
  EXPECT_EQ(m_.kernel().mm().vmalloc().AreaCount(), 0u);
}

}  // namespace
}  // namespace khosim

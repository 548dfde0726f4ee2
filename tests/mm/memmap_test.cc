#include "khosim/mm/memmap.h"

#include "gtest/gtest.h"
#include "khosim/linux/atomic.h"

namespace khosim::mm {
namespace {

TEST(MemmapTest, OneTebibyteCostsOnlyWhatIsTouched) {
  Memmap memmap((1 * kTiB) >> 12);  // 268M struct pages reserved, not paid for
  EXPECT_EQ(memmap.ResidentBytes(), 0u);
  struct page* p = memmap.PfnToPage(Pfn(200'000'000));
  p->private_data = 42;
  EXPECT_EQ(memmap.ResidentBytes(), 4096u);
  EXPECT_EQ(memmap.PageToPfn(p), Pfn(200'000'000));
  EXPECT_TRUE(memmap.Contains(p));
}

TEST(MemmapTest, FreshStructPagesAreInitializedUnusedPages) {
  Memmap memmap(1024);
  const struct page* p = memmap.PfnToPage(Pfn(7));
  EXPECT_EQ(atomic_read(&p->_refcount), 0);
  EXPECT_EQ(p->flags, 0u);
  EXPECT_EQ(p->private_data, 0u);
  EXPECT_EQ(p->compound_head, 0u);
  EXPECT_EQ(memmap.PfnToPage(Pfn(8)) - p, 1) << "virtually contiguous";
}

}  // namespace
}  // namespace khosim::mm

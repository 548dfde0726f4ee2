// memparse(), which kho_scratch=, hugepagesz= and scenario pool checks share.
#include <cstdint>

#include "gtest/gtest.h"
#include "khosim/base/kernel_context.h"

namespace khosim {
namespace {

TEST(MemParseTest, SuffixesAreBinaryUnitsOfEitherCase) {
  uint64_t v = 0;
  EXPECT_TRUE(MemParse("4096", &v));
  EXPECT_EQ(v, 4096u);
  EXPECT_TRUE(MemParse("2M", &v));
  EXPECT_EQ(v, 2 * kMiB);
  EXPECT_TRUE(MemParse("1g", &v));
  EXPECT_EQ(v, kGiB);
  EXPECT_TRUE(MemParse("3k", &v));
  EXPECT_EQ(v, 3 * kKiB);
  EXPECT_TRUE(MemParse("2T", &v));
  EXPECT_EQ(v, uint64_t{2} << 40);
  EXPECT_TRUE(MemParse("1P", &v));
  EXPECT_EQ(v, uint64_t{1} << 50);
  EXPECT_TRUE(MemParse("1e", &v));
  EXPECT_EQ(v, uint64_t{1} << 60);
}

TEST(MemParseTest, WholeStringOrNothing) {
  uint64_t v = 7;
  EXPECT_FALSE(MemParse("", &v));
  EXPECT_FALSE(MemParse("M", &v));
  EXPECT_FALSE(MemParse("2MB", &v));
  EXPECT_FALSE(MemParse(" 2M", &v));
  EXPECT_FALSE(MemParse("+2M", &v));
  EXPECT_FALSE(MemParse("2X", &v));
  EXPECT_EQ(v, 7u) << "a refused size stores nothing";
}

TEST(MemParseTest, PrefixReportsWhatItConsumed) {
  uint64_t v = 0;
  EXPECT_EQ(MemParsePrefix("64M,128M", &v), 3u);
  EXPECT_EQ(v, 64 * kMiB);
  EXPECT_EQ(MemParsePrefix("12%", &v), 2u);
  EXPECT_EQ(v, 12u);
  v = 5;
  EXPECT_EQ(MemParsePrefix("x1", &v), 0u);
  EXPECT_EQ(v, 5u);
}

}  // namespace
}  // namespace khosim

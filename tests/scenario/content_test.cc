// Content generators: any range regenerates the same bytes, holes are zero,
// and the hash does not depend on the chunking.
#include "khosim/scenario/content.h"

#include <vector>

#include "gtest/gtest.h"

namespace khosim::scenario {
namespace {

FileSpec File(ContentSpec content, uint64_t size = 64 * 1024) {
  FileSpec f;
  f.name = "f";
  f.size = size;
  f.content = std::move(content);
  return f;
}

std::vector<uint8_t> All(const Content& c) {
  std::vector<uint8_t> out(c.size());
  c.Fill(0, out.data(), out.size());
  return out;
}

TEST(ContentTest, RandomIsAFunctionOfSeedAndOffset) {
  const Content c(File({.kind = ContentKind::kRandom, .seed = 7}), 1);
  const std::vector<uint8_t> all = All(c);
  for (uint64_t off : {0ull, 1ull, 7ull, 4093ull, 60000ull}) {
    std::vector<uint8_t> part(100);
    c.Fill(off, part.data(), part.size());
    EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin() + off)) << off;
  }
  const Content other(File({.kind = ContentKind::kRandom, .seed = 8}), 1);
  EXPECT_NE(All(other), all);
  // Without a seed the machine seed and the name decide.
  const Content a(File({.kind = ContentKind::kRandom}), 1);
  const Content b(File({.kind = ContentKind::kRandom}), 2);
  EXPECT_NE(All(a), All(b));
  EXPECT_EQ(All(a), All(Content(File({.kind = ContentKind::kRandom}), 1)));
}

TEST(ContentTest, PatternZerosAndSparse) {
  const Content p(File({.kind = ContentKind::kPattern, .pattern = "AB"}), 1);
  std::vector<uint8_t> b(3);
  p.Fill(1, b.data(), 3);
  EXPECT_EQ(std::string(b.begin(), b.end()), "BAB");
  EXPECT_EQ(p.written().size(), 1u);

  const Content z(File({.kind = ContentKind::kZeros}), 1);
  EXPECT_TRUE(z.written().empty());
  for (uint8_t v : All(z)) ASSERT_EQ(v, 0);

  const Content s(
      File({.kind = ContentKind::kSparse, .seed = 3, .extents = {{4096, 100}, {8192, 4096}}}), 1);
  const std::vector<uint8_t> all = All(s);
  EXPECT_EQ(all[0], 0);
  EXPECT_EQ(all[4096 + 100], 0);
  int nonzero = 0;
  for (int i = 8192; i < 8192 + 4096; ++i) nonzero += all[i] != 0;
  EXPECT_GT(nonzero, 4000);
  ASSERT_EQ(s.written().size(), 2u);
}

TEST(ContentTest, HashIgnoresChunking) {
  const Content c(File({.kind = ContentKind::kRandom, .seed = 1}), 1);
  const std::vector<uint8_t> all = All(c);
  ContentHash whole;
  whole.Update(all.data(), all.size());
  ContentHash chunks;
  for (size_t off = 0; off < all.size(); off += 4096) chunks.Update(all.data() + off, 4096);
  EXPECT_EQ(whole.value(), chunks.value());
  std::vector<uint8_t> changed = all;
  changed[12345] ^= 1;
  ContentHash other;
  other.Update(changed.data(), changed.size());
  EXPECT_NE(other.value(), whole.value());
}

}  // namespace
}  // namespace khosim::scenario

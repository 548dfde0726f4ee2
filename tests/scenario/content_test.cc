// Content generators: any range regenerates the same bytes, holes are zero,
// and the hash does not depend on the chunking.
#include "khosim/scenario/content.h"

#include <algorithm>
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

TEST(ContentTest, SparseDataRangesAreSortedAndMerged) {
  const Content s(File({.kind = ContentKind::kSparse,
                        .extents = {{8192, 4096}, {0, 100}, {8192 + 1000, 8192}, {50, 10}}}),
                  1);
  ASSERT_EQ(s.written().size(), 4u);  // write order kept
  ASSERT_EQ(s.data().size(), 2u);
  EXPECT_EQ(s.data()[0].offset, 0u);
  EXPECT_EQ(s.data()[0].length, 100u);
  EXPECT_EQ(s.data()[1].offset, 8192u);
  EXPECT_EQ(s.data()[1].length, 1000u + 8192u);
  EXPECT_EQ(s.data_bytes(), 100u + 9192u);
  // Overlapping writes agree: the bytes are a function of the offset.
  std::vector<uint8_t> part(64);
  s.Fill(8192 + 990, part.data(), part.size());
  const std::vector<uint8_t> all = All(s);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin() + 8192 + 990));
}

TEST(ContentTest, SampledWritesOneBlockPerStride) {
  constexpr uint64_t kStride = 64 * 1024;
  constexpr uint64_t kSize = 1024 * 1024 + 8192;  // a short last window
  const Content c(File({.kind = ContentKind::kSampled,
                        .seed = 5,
                        .extents = {{0, 16384}},
                        .stride = kStride,
                        .length = 4096},
                       kSize),
                  1);
  // Holes read as zero: past the extent, every window has exactly one
  // page of data (random bytes, so never all zero).
  const std::vector<uint8_t> all = All(c);
  for (uint64_t w = 0; w * kStride < kSize; ++w) {
    int pages_with_data = 0;
    for (uint64_t p = std::max<uint64_t>(w * kStride, 16384);
         p < std::min(kSize, (w + 1) * kStride); p += 4096) {
      pages_with_data +=
          std::any_of(all.begin() + p, all.begin() + p + 4096, [](uint8_t b) { return b != 0; });
    }
    if (w == 0) {
      EXPECT_LE(pages_with_data, 1);  // its block may lie in the extent
    } else {
      EXPECT_EQ(pages_with_data, 1) << "window " << w;
    }
  }
  // data() says where: its bytes are the nonzero ones.
  uint64_t in_data = 0;
  for (const Extent& e : c.data()) {
    for (uint64_t i = e.offset; i < e.offset + e.length; ++i) in_data += all[i] != 0;
  }
  uint64_t nonzero = 0;
  for (uint8_t b : all) nonzero += b != 0;
  EXPECT_EQ(in_data, nonzero);
  EXPECT_GE(c.data_bytes(), 16384u + 16 * 4096u);
  EXPECT_EQ(c.written().size(), c.data().size());
  // The positions and bytes follow the seed.
  const Content same(File({.kind = ContentKind::kSampled,
                           .seed = 5,
                           .extents = {{0, 16384}},
                           .stride = kStride,
                           .length = 4096},
                          kSize),
                     1);
  EXPECT_EQ(All(same), all);
  const Content other(File({.kind = ContentKind::kSampled,
                            .seed = 6,
                            .extents = {{0, 16384}},
                            .stride = kStride,
                            .length = 4096},
                           kSize),
                      1);
  EXPECT_NE(All(other), all);
}

TEST(ContentTest, HashIgnoresChunking) {
  const Content c(File({.kind = ContentKind::kRandom, .seed = 1}), 1);
  const std::vector<uint8_t> all = All(c);
  ContentHash whole;
  whole.Update(all.data(), all.size());
  ContentHash chunks;
  for (size_t off = 0; off < all.size(); off += 4096) chunks.Update(all.data() + off, 4096);
  EXPECT_EQ(whole.value(), chunks.value());
  // Chunks that split words.
  ContentHash odd;
  for (size_t off = 0, n = 1; off < all.size(); off += n, n = n % 13 + 1) {
    odd.Update(all.data() + off, std::min(n, all.size() - off));
  }
  EXPECT_EQ(odd.value(), whole.value());
  ContentHash tail;  // a stream that ends mid-word
  tail.Update(all.data(), 5);
  tail.Update(all.data() + 5, 6);
  ContentHash tail_whole;
  tail_whole.Update(all.data(), 11);
  EXPECT_EQ(tail.value(), tail_whole.value());
  std::vector<uint8_t> changed = all;
  changed[12345] ^= 1;
  ContentHash other;
  other.Update(changed.data(), changed.size());
  EXPECT_NE(other.value(), whole.value());
}

}  // namespace
}  // namespace khosim::scenario

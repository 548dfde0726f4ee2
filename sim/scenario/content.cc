// Content generators and the content hash (see the header).
#include "khosim/scenario/content.h"

#include <algorithm>
#include <cstring>

namespace khosim::scenario {
namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t NameHash(absl::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

// Random bytes [offset, offset + len) of the stream seeded by |seed|.
void FillRandom(uint64_t seed, uint64_t offset, uint8_t* out, uint64_t len) {
  const uint64_t key = SplitMix(seed);
  uint64_t pos = offset;
  const uint64_t end = offset + len;
  while (pos < end) {
    const uint64_t word = SplitMix(key ^ (pos / 8));
    if (pos % 8 == 0 && end - pos >= 8) {
      std::memcpy(out + (pos - offset), &word, 8);
      pos += 8;
    } else {
      out[pos - offset] = static_cast<uint8_t>(word >> (8 * (pos % 8)));
      ++pos;
    }
  }
}

}  // namespace

Content::Content(const FileSpec& file, uint64_t machine_seed)
    : kind_(file.content.kind),
      size_(file.size),
      seed_(file.content.seed.value_or(SplitMix(machine_seed) ^ NameHash(file.name))),
      pattern_(file.content.pattern) {
  switch (kind_) {
    case ContentKind::kRandom:
    case ContentKind::kPattern:
      written_.push_back(Extent{0, size_});
      break;
    case ContentKind::kZeros:
      break;
    case ContentKind::kSparse:
      written_ = file.content.extents;
      break;
  }
}

void Content::Fill(uint64_t offset, uint8_t* out, uint64_t len) const {
  switch (kind_) {
    case ContentKind::kRandom:
      FillRandom(seed_, offset, out, len);
      return;
    case ContentKind::kPattern:
      for (uint64_t i = 0; i < len; ++i) out[i] = pattern_[(offset + i) % pattern_.size()];
      return;
    case ContentKind::kZeros:
      std::memset(out, 0, len);
      return;
    case ContentKind::kSparse: {
      std::memset(out, 0, len);
      // Later extents overwrite earlier ones, as the writes did.
      for (const Extent& e : written_) {
        const uint64_t lo = std::max(offset, e.offset);
        const uint64_t hi = std::min(offset + len, e.offset + e.length);
        if (lo >= hi) continue;
        if (pattern_.empty()) {
          FillRandom(seed_, lo, out + (lo - offset), hi - lo);
        } else {
          for (uint64_t p = lo; p < hi; ++p) out[p - offset] = pattern_[p % pattern_.size()];
        }
      }
      return;
    }
  }
}

void ContentHash::Update(const uint8_t* data, uint64_t len) {
  uint64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, data + i, 8);
    h_ = (h_ ^ w) * 0x100000001b3ull;
    h_ ^= h_ >> 29;
  }
  for (; i < len; ++i) h_ = (h_ ^ data[i]) * 0x100000001b3ull;
}

}  // namespace khosim::scenario

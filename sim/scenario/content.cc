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
    case ContentKind::kSampled: {
      // One block per stride window; the window's slot comes from a stream
      // keyed apart from the bytes', so positions and bytes are independent.
      const uint64_t stride = file.content.stride;
      const uint64_t length = file.content.length != 0 ? file.content.length : 4096;
      const uint64_t key = SplitMix(seed_ ^ 0x73616d706c656421ull);  // "sampled!"
      written_ = file.content.extents;
      for (uint64_t start = 0; stride != 0 && start < size_; start += stride) {
        const uint64_t slots = std::min(stride, size_ - start) / length;
        if (slots == 0) continue;
        const uint64_t slot = SplitMix(key ^ (start / stride)) % slots;
        written_.push_back(Extent{start + slot * length, length});
      }
      break;
    }
  }
  // data_: the union of the writes, sorted and merged.
  data_ = written_;
  std::sort(data_.begin(), data_.end(),
            [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
  size_t n = 0;
  for (const Extent& e : data_) {
    if (e.length == 0) continue;
    if (n > 0 && e.offset <= data_[n - 1].offset + data_[n - 1].length) {
      Extent& last = data_[n - 1];
      last.length = std::max(last.offset + last.length, e.offset + e.length) - last.offset;
    } else {
      data_[n++] = e;
    }
  }
  data_.resize(n);
  for (const Extent& e : data_) data_bytes_ += e.length;
  // The sampled generator writes exactly its data, each byte once.
  if (kind_ == ContentKind::kSampled) written_ = data_;
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
    case ContentKind::kSparse:
    case ContentKind::kSampled: {
      std::memset(out, 0, len);
      // The data ranges are sorted: start at the last one beginning at or
      // before |offset| (it may reach into the range asked for).
      auto it = std::upper_bound(data_.begin(), data_.end(), offset,
                                 [](uint64_t off, const Extent& e) { return off < e.offset; });
      if (it != data_.begin()) --it;
      for (; it != data_.end() && it->offset < offset + len; ++it) {
        const uint64_t lo = std::max(offset, it->offset);
        const uint64_t hi = std::min(offset + len, it->offset + it->length);
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

namespace {

uint64_t MixWord(uint64_t h, const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  h = (h ^ w) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

}  // namespace

void ContentHash::Update(const uint8_t* data, uint64_t len) {
  // Whole 8-byte words of the stream are mixed as words; a word split
  // across calls waits in pending_, so the chunking does not matter.
  if (len == 0) return;
  if (npending_ != 0) {
    const uint64_t take = std::min<uint64_t>(8 - npending_, len);
    std::memcpy(pending_ + npending_, data, take);
    npending_ += take;
    data += take;
    len -= take;
    if (npending_ < 8) return;
    h_ = MixWord(h_, pending_);
    npending_ = 0;
  }
  uint64_t i = 0;
  for (; i + 8 <= len; i += 8) h_ = MixWord(h_, data + i);
  npending_ = len - i;
  std::memcpy(pending_, data + i, npending_);
}

uint64_t ContentHash::value() const {
  // The stream's last bytes (fewer than a word) are mixed one by one.
  uint64_t h = h_;
  for (uint64_t i = 0; i < npending_; ++i) h = (h ^ pending_[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace khosim::scenario

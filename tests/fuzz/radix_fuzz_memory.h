// The fake physical memory kho_radix_walk_fuzzer builds its trees in, shared
// with the seed generator so seeds and target agree on the layout.
//
// Input layout (little-endian):
//   byte 0        flags: bits 0-1 page size (0, 3: 4 KiB; 1: 16 KiB;
//                 2: 64 KiB); bit 2: with 16/64 KiB pages, each input chunk
//                 fills the last 4 KiB of its page instead of the first;
//                 bit 3: use the extra key below unmasked
//   bytes 1-8     root selector: top bit clear -> page (value % N) of the
//                 input pages; top byte 0xff -> no root; otherwise the raw
//                 value << 1 (anything, usually not a page)
//   bytes 9-16    a key that the target adds and deletes again, cut to the
//                 geometry's key_width bits unless flags bit 3 is set
//   rest          N = min(16, rest / 4096 + 1) chunks of 4096 bytes, chunk i
//                 the contents of the page at fake physical address
//                 kBase + i * page_size (short chunks zero-padded)
// Further pages after the input pages serve AllocNode.
#ifndef KHOSIM_TESTS_FUZZ_RADIX_FUZZ_MEMORY_H_
#define KHOSIM_TESTS_FUZZ_RADIX_FUZZ_MEMORY_H_

#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "khosim/base/types.h"
#include "khosim/kho/radix_tree.h"

namespace khosim::fuzz {

inline constexpr uint64_t kRadixBase = 0x100000;
inline constexpr size_t kRadixHeader = 17;
inline constexpr size_t kRadixChunk = 4096;
inline constexpr size_t kRadixMaxPages = 16;
inline constexpr size_t kRadixSparePages = 8;

inline unsigned RadixPageShift(uint8_t flags) {
  switch (flags & 3) {
    case 1:
      return 14;
    case 2:
      return 16;
    default:
      return 12;
  }
}

// N input pages followed by spare pages for AllocNode, all at fake
// physical addresses from kRadixBase. Input pages and allocated spares are
// mappable until freed; spares not yet handed out and freed pages are not.
// Freeing a page twice, or one that was never in the tree, is a bug in the
// code under test.
class FuzzNodeMemory : public kho::RadixNodeMemory {
 public:
  FuzzNodeMemory(unsigned page_shift, size_t input_pages, size_t spare_pages)
      : page_size_(uint64_t{1} << page_shift),
        input_pages_(input_pages),
        total_pages_(input_pages + spare_pages),
        bytes_(total_pages_ * page_size_, 0),
        state_(total_pages_, kInTree) {
    for (size_t i = input_pages_; i < total_pages_; ++i) state_[i] = kFree;
  }

  uint64_t page_size() const { return page_size_; }
  size_t total_pages() const { return total_pages_; }
  size_t input_pages() const { return input_pages_; }
  PhysAddr PageAddr(size_t i) const { return PhysAddr(kRadixBase + i * page_size_); }
  uint8_t* PageBytes(size_t i) { return bytes_.data() + i * page_size_; }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  uint64_t allocs() const { return allocs_; }
  uint64_t frees() const { return frees_; }

  PhysAddr AllocNode() override {
    for (size_t i = input_pages_; i < total_pages_; ++i) {
      if (state_[i] != kFree) continue;
      state_[i] = kInTree;
      std::memset(PageBytes(i), 0, page_size_);
      ++allocs_;
      return PageAddr(i);
    }
    return PhysAddr();
  }
  void FreeNode(PhysAddr page) override {
    const long i = Index(page);
    KHOSIM_FUZZ_CHECK(i >= 0);
    KHOSIM_FUZZ_CHECK(state_[static_cast<size_t>(i)] == kInTree);
    state_[static_cast<size_t>(i)] = kFreed;
    ++frees_;
  }
  uint8_t* MapNode(PhysAddr page) override {
    const long i = Index(page);
    if (i < 0 || state_[static_cast<size_t>(i)] != kInTree) return nullptr;
    return PageBytes(static_cast<size_t>(i));
  }

 private:
  enum State : uint8_t { kInTree, kFree, kFreed };
  long Index(PhysAddr page) const {
    const uint64_t pa = page.value();
    if (pa < kRadixBase || (pa - kRadixBase) % page_size_ != 0) return -1;
    const uint64_t i = (pa - kRadixBase) / page_size_;
    return i < total_pages_ ? static_cast<long>(i) : -1;
  }

  uint64_t page_size_;
  size_t input_pages_;
  size_t total_pages_;
  std::vector<uint8_t> bytes_;
  std::vector<State> state_;
  uint64_t allocs_ = 0;
  uint64_t frees_ = 0;
};

}  // namespace khosim::fuzz

#endif  // KHOSIM_TESTS_FUZZ_RADIX_FUZZ_MEMORY_H_

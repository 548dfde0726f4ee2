// KHO block sets (kho_block, kho-v4): arrays of fixed-size records kept in
// a chain of preserved pages.
//
// Block = one page: a packed 16-byte header, then count_per_block =
// (PAGE_SIZE - 16) / entry_size entries, contiguous and packed. `next` is
// the physical address of the next block (0 ends the chain); `count` is the
// number of valid entries in this block (1..count_per_block in a handed-over
// chain). An empty set is the physical address 0, never an empty block.
// Page size is part of this ABI: a chain cannot cross kernels with
// different page sizes.
#ifndef KHOSIM_ABI_BLOCK_H_
#define KHOSIM_ABI_BLOCK_H_

#include <cstddef>
#include <cstdint>

namespace khosim::abi {

struct __attribute__((packed)) KhoBlockHeader {
  uint64_t next;
  uint64_t count;
};
static_assert(sizeof(KhoBlockHeader) == 16);
static_assert(offsetof(KhoBlockHeader, next) == 0);
static_assert(offsetof(KhoBlockHeader, count) == 8);

// KHO_MAX_BLOCKS: the cap on a set's length on both sides of a kexec
// (10000 pages: about 40 MB with 4 KiB pages).
inline constexpr uint64_t kKhoMaxBlocks = 10000;

inline constexpr uint64_t KhoBlockEntriesPerBlock(uint64_t page_size, uint64_t entry_size) {
  return entry_size == 0 ? 0 : (page_size - sizeof(KhoBlockHeader)) / entry_size;
}

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_BLOCK_H_

// KHO block sets (kho_block, kho-v4): the C++ face of the wire format in
// khosim/linux/kho/abi/block.h.
#ifndef KHOSIM_ABI_BLOCK_H_
#define KHOSIM_ABI_BLOCK_H_

#include <cstdint>

#include "khosim/linux/kho/abi/block.h"

namespace khosim::abi {

using KhoBlockHeader = ::kho_block_header_ser;

inline constexpr uint64_t kKhoMaxBlocks = KHO_MAX_BLOCKS;

// Entries of |entry_size| bytes in one block (0 if none fits).
inline constexpr uint64_t KhoBlockEntriesPerBlock(uint64_t page_size, uint64_t entry_size) {
  return entry_size == 0 ? 0 : (page_size - sizeof(KhoBlockHeader)) / entry_size;
}

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_BLOCK_H_

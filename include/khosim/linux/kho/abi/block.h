// KHO block sets (kho_block, kho-v4; <linux/kho/abi/block.h>): arrays of
// fixed-size records kept in a chain of preserved pages.
//
// Block = one page: a packed 16-byte header, then count_per_block =
// (PAGE_SIZE - 16) / entry_size entries, contiguous and packed. `next` is
// the physical address of the next block (0 ends the chain); `count` is the
// number of valid entries in this block (1..count_per_block in a handed-over
// chain). An empty set is the physical address 0, never an empty block.
// Page size is part of this ABI: a chain cannot cross kernels with
// different page sizes.
#ifndef KHOSIM_LINUX_KHO_ABI_BLOCK_H_
#define KHOSIM_LINUX_KHO_ABI_BLOCK_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

struct kho_block_header_ser {
  u64 next;
  u64 count;
} __packed;
static_assert(sizeof(struct kho_block_header_ser) == 16);
static_assert(offsetof(struct kho_block_header_ser, next) == 0);
static_assert(offsetof(struct kho_block_header_ser, count) == 8);

// The cap on a set's length on both sides of a kexec (10000 pages: about
// 40 MB with 4 KiB pages).
#define KHO_MAX_BLOCKS 10000

#endif  // KHOSIM_LINUX_KHO_ABI_BLOCK_H_

// Kernel-face kho_block API (include/linux/kho_block.h upstream).
#ifndef KHOSIM_LINUX_KHO_BLOCK_H_
#define KHOSIM_LINUX_KHO_BLOCK_H_

#include "khosim/abi/block.h"
#include "khosim/kho/block_set.h"
#include "khosim/linux/types.h"

struct kho_block_set : khosim::kho::BlockSet {
  using BlockSet::BlockSet;
};

struct kho_block_set_it {
  khosim::kho::BlockSet::Iterator it;
};

// struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, sizeof(struct entry));
#define KHO_BLOCK_SET_INIT(_name, _entry_size) kho_block_set(_entry_size)
#define KHO_MAX_BLOCKS (khosim::abi::kKhoMaxBlocks)

void kho_block_set_init(struct kho_block_set* bs, size_t entry_size);
int kho_block_set_grow(struct kho_block_set* bs, u64 count);
void kho_block_set_shrink(struct kho_block_set* bs, u64 count);
int kho_block_set_restore(struct kho_block_set* bs, u64 head_pa);
void kho_block_set_destroy(struct kho_block_set* bs);
void kho_block_set_clear(struct kho_block_set* bs);
u64 kho_block_set_head_pa(struct kho_block_set* bs);
bool kho_block_set_is_empty(struct kho_block_set* bs);
void kho_block_set_it_init(struct kho_block_set_it* it, struct kho_block_set* bs);
void* kho_block_set_it_reserve_entry(struct kho_block_set_it* it);
void* kho_block_set_it_read_entry(struct kho_block_set_it* it);
void* kho_block_set_it_prev(struct kho_block_set_it* it);

#endif  // KHOSIM_LINUX_KHO_BLOCK_H_

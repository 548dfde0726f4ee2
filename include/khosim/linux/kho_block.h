// Kernel-face kho_block API (<linux/kho_block.h>): a chain of preserved
// pages holding fixed-size records, for handover state that grows with the
// number of objects (LUO's sessions and files, PCI's devices).
//
// struct kho_block_set is a plain C handle over the chain itself: the
// blocks are linked through their headers in preserved memory, and the set
// only remembers the first and last block, so it needs no memory of its
// own and a kfree of its owner is all the teardown there is.
//
// Outgoing (writer) side: kho_block_set_grow(count) preallocates preserved
// pages until the set can hold |count| entries, so that serialization at
// reboot never allocates; kho_block_set_shrink(count) drops tail blocks no
// longer needed; an iterator reserves entries in order, writing each
// block's count as it goes; kho_block_set_clear() zeroes every count and
// payload; kho_block_set_destroy() unpreserves and frees every block.
// Incoming (reader) side: kho_block_set_restore(head_pa) adopts a chain
// from the previous kernel in two passes, each failing with -EINVAL:
//   1. the chain's shape, before anything is taken: every link page-aligned
//      RAM and the head of an order-0 block the previous kernel preserved
//      and nobody has restored yet, no cycle (Floyd), at most
//      KHO_MAX_BLOCKS blocks. A failure here takes and frees nothing: a
//      hostile link may name a page that belongs to another owner.
//   2. each block's count in 1..count_per_block, restoring block by block.
//      A failure here frees the blocks already taken and the rest of the
//      chain, which pass 1 proved to be this set's own preserved pages.
// An incoming set never grows (-EINVAL plus a WARN). kho_block_set_destroy()
// restores and frees.
//
// An entry size that leaves no room for one entry in a block WARNs once
// and makes every grow and restore fail with -EINVAL.
// Context: the caller serializes access to a set, as upstream's callers
// hold their own lock.
#ifndef KHOSIM_LINUX_KHO_BLOCK_H_
#define KHOSIM_LINUX_KHO_BLOCK_H_

#include "khosim/linux/kho/abi/block.h"
#include "khosim/linux/types.h"

struct kho_block_set {
  size_t entry_size;
  struct kho_block_header_ser* head;  // first block; NULL: the set is empty
  struct kho_block_header_ser* tail;  // last block
  u64 nr_blocks;
  bool incoming;
};

// Walks a set's entries. Positioned before the first entry by
// kho_block_set_it_init; an all-zero iterator returns NULL from every call.
struct kho_block_set_it {
  struct kho_block_set* bs;
  struct kho_block_header_ser* block;  // the block of the current position
  u64 i;                               // entries of |block| before the position
  u64 per_block;                       // kho_block_set_count_per_block(bs), read once at init
};

// struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, sizeof(struct entry));
#define KHO_BLOCK_SET_INIT(_name, _entry_size) \
  { .entry_size = (_entry_size) }

// Re-initializes an empty set.
void kho_block_set_init(struct kho_block_set* bs, size_t entry_size);
// 0, -EINVAL (incoming set, or no usable entry size), -ENOSPC (more than
// KHO_MAX_BLOCKS blocks), -ENOMEM. On failure the set is as before.
int kho_block_set_grow(struct kho_block_set* bs, u64 count);
// Drops tail blocks until the set holds no more than needed for |count|.
void kho_block_set_shrink(struct kho_block_set* bs, u64 count);
// 0 or -EINVAL; the set must be empty and becomes incoming either way.
int kho_block_set_restore(struct kho_block_set* bs, u64 head_pa);
void kho_block_set_destroy(struct kho_block_set* bs);
void kho_block_set_clear(struct kho_block_set* bs);
u64 kho_block_set_head_pa(const struct kho_block_set* bs);
bool kho_block_set_is_empty(const struct kho_block_set* bs);
// Entries one block holds: (PAGE_SIZE - 16) / entry_size, 0 if none fits.
u64 kho_block_set_count_per_block(const struct kho_block_set* bs);

void kho_block_set_it_init(struct kho_block_set_it* it, struct kho_block_set* bs);
// The next free slot (its block's count grows by one), or NULL when the
// capacity is exhausted.
void* kho_block_set_it_reserve_entry(struct kho_block_set_it* it);
// The next written entry (honouring each block's count), or NULL.
void* kho_block_set_it_read_entry(struct kho_block_set_it* it);
// The slot before the current position, or NULL at the start.
void* kho_block_set_it_prev(struct kho_block_set_it* it);

#endif  // KHOSIM_LINUX_KHO_BLOCK_H_

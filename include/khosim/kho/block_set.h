// BlockSet: the kho_block container (C++ face); the kernel face is
// khosim/linux/kho_block.h.
//
// Outgoing (writer) side: Grow(count) preallocates preserved pages until
// the set can hold |count| entries, so that serialization at reboot never
// allocates; Shrink(count) drops tail blocks no longer needed; an Iterator
// reserves entries in order, writing each block's count as it goes; Clear()
// zeroes every count and payload; Destroy() unpreserves and frees every
// block.
// Incoming (reader) side: Restore(head_pa) adopts a chain from the previous
// kernel in two passes, each failing with -EINVAL:
//   1. the chain's shape, before anything is taken: every link page-aligned
//      RAM and the head of an order-0 block the previous kernel preserved
//      and nobody has restored yet, no cycle (Floyd), at most kKhoMaxBlocks
//      blocks. A failure here takes and frees nothing: a hostile link may
//      name a page that belongs to another owner.
//   2. each block's count in 1..count_per_block, restoring block by block.
//      A failure here frees the blocks already taken and the rest of the
//      chain, which pass 1 proved to be this set's own preserved pages.
// An incoming set never grows (-EINVAL plus a WARN). Destroy() restores and
// frees.
//
// The block list is host memory (runtime state); the blocks are simulated
// pages. Context: the caller serializes access, as upstream's callers hold
// their own lock.
#ifndef KHOSIM_KHO_BLOCK_SET_H_
#define KHOSIM_KHO_BLOCK_SET_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "boost/intrusive/list.hpp"
#include "khosim/abi/block.h"

namespace khosim::kho {

class BlockSet {
 public:
  // A set of |entry_size|-byte entries; entry_size must fit a block (a
  // WARN_ON_ONCE otherwise, and every Grow then fails with -EINVAL).
  explicit BlockSet(uint64_t entry_size = 0);
  ~BlockSet();
  BlockSet(const BlockSet&) = delete;
  BlockSet& operator=(const BlockSet&) = delete;

  // Re-initializes an empty set (kho_block_set_init).
  void Init(uint64_t entry_size);

  // 0, -EINVAL (incoming set, or no usable entry size), -ENOSPC (more than
  // kKhoMaxBlocks blocks), -ENOMEM. On failure the set is as before.
  int Grow(uint64_t count);
  void Shrink(uint64_t count);
  // 0 or -EINVAL; the set must be empty and becomes incoming either way.
  int Restore(uint64_t head_pa);
  void Destroy();
  void Clear();

  uint64_t head_pa() const { return head_pa_; }
  bool empty() const { return blocks_.empty(); }
  uint64_t nblocks() const { return blocks_.size(); }
  uint64_t entry_size() const { return entry_size_; }
  uint64_t count_per_block() const { return count_per_block_; }
  bool incoming() const { return incoming_; }
  uint64_t capacity() const { return nblocks() * count_per_block_; }
  // Sum of the blocks' counts.
  uint64_t EntryCount() const;

  // nblocks == ceil(count / count_per_block), block counts within range and
  // summing to |count| when |count_in_blocks|, chain links matching the list.
  absl::Status Validate(uint64_t count, bool count_in_blocks = true) const;

  class Iterator {
   public:
    Iterator() = default;  // positioned nowhere: every call returns nullptr
    explicit Iterator(BlockSet& set);
    // Next free slot (updating its block's count), or nullptr when the
    // capacity is exhausted.
    void* ReserveEntry();
    // Next written entry (honouring each block's count), or nullptr.
    void* ReadEntry();
    // The slot before the current position, or nullptr at the start.
    void* Prev();

   private:
    BlockSet* set_ = nullptr;
    void* block_ = nullptr;  // Block*, opaque here
    uint64_t i_ = 0;
  };

 private:
  // Host-side handle of one block (the kernel's struct kho_block).
  struct Block
      : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> {
    abi::KhoBlockHeader* ser = nullptr;
  };
  using BlockList = boost::intrusive::list<Block, boost::intrusive::constant_time_size<true>>;

  int AddBlock(abi::KhoBlockHeader* ser);
  int GrowOne();
  void ShrinkOne();
  void FreeSer(abi::KhoBlockHeader* ser) const;
  bool ChainIsBad(uint64_t head_pa) const;
  uint8_t* Entry(Block* block, uint64_t index) const;

  BlockList blocks_;
  uint64_t head_pa_ = 0;
  uint64_t entry_size_ = 0;
  uint64_t count_per_block_ = 0;
  bool incoming_ = false;
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_BLOCK_SET_H_

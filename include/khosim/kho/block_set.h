// BlockSet: the C++ face of a kho_block set (khosim/linux/kho_block.h,
// where the lifecycle, the checks on restore and every errno are
// documented), for LUO and tests: a set that owns its struct kho_block_set
// and calls the kernel face.
//
// Destroying a BlockSet frees nothing: the blocks belong to the kernel
// (an outgoing set's pages are meant to outlive it across the kexec);
// Destroy() gives them back. Context: the caller serializes access.
#ifndef KHOSIM_KHO_BLOCK_SET_H_
#define KHOSIM_KHO_BLOCK_SET_H_

#include <cstdint>

#include "absl/status/status.h"
#include "khosim/linux/kho_block.h"

namespace khosim::kho {

// The invariants of a set: nr_blocks == ceil(count / count_per_block) for an
// outgoing set, block counts within range and summing to |count| when
// |count_in_blocks|, the chain from head ending at tail, no more than
// KHO_MAX_BLOCKS blocks. Errors carry what broke.
absl::Status ValidateBlockSet(const struct kho_block_set& bs, uint64_t count,
                              bool count_in_blocks = true);
// Sum of the blocks' counts.
uint64_t BlockSetEntryCount(const struct kho_block_set& bs);

class BlockSet {
 public:
  explicit BlockSet(uint64_t entry_size = 0) { kho_block_set_init(&bs_, entry_size); }
  BlockSet(const BlockSet&) = delete;
  BlockSet& operator=(const BlockSet&) = delete;

  void Init(uint64_t entry_size) { kho_block_set_init(&bs_, entry_size); }
  int Grow(uint64_t count) { return kho_block_set_grow(&bs_, count); }
  void Shrink(uint64_t count) { kho_block_set_shrink(&bs_, count); }
  int Restore(uint64_t head_pa) { return kho_block_set_restore(&bs_, head_pa); }
  void Destroy() { kho_block_set_destroy(&bs_); }
  void Clear() { kho_block_set_clear(&bs_); }

  uint64_t head_pa() const { return kho_block_set_head_pa(&bs_); }
  bool empty() const { return kho_block_set_is_empty(&bs_); }
  uint64_t nblocks() const { return bs_.nr_blocks; }
  uint64_t entry_size() const { return bs_.entry_size; }
  uint64_t count_per_block() const { return kho_block_set_count_per_block(&bs_); }
  bool incoming() const { return bs_.incoming; }
  uint64_t capacity() const { return nblocks() * count_per_block(); }
  uint64_t EntryCount() const { return BlockSetEntryCount(bs_); }
  absl::Status Validate(uint64_t count, bool count_in_blocks = true) const {
    return ValidateBlockSet(bs_, count, count_in_blocks);
  }

  struct kho_block_set* raw() {
    return &bs_;
  }

  class Iterator {
   public:
    Iterator() = default;  // positioned nowhere: every call returns nullptr
    explicit Iterator(BlockSet& set) { kho_block_set_it_init(&it_, &set.bs_); }
    void* ReserveEntry() { return kho_block_set_it_reserve_entry(&it_); }
    void* ReadEntry() { return kho_block_set_it_read_entry(&it_); }
    void* Prev() { return kho_block_set_it_prev(&it_); }

   private:
    struct kho_block_set_it it_ = {};
  };

 private:
  struct kho_block_set bs_ = {};
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_BLOCK_SET_H_

// BlockSet: a chain of preserved pages holding fixed-size records.
//
// Lifecycle, outgoing: Grow() before each insertion keeps capacity at
// count+1 (rolling back exactly the blocks it added on failure), Shrink()
// after each removal from the tail, the Iterator fills blocks in order when
// the owner serializes, Clear() on an aborted serialization, Destroy() when
// the owner goes away. Incoming: Restore() adopts and checks the chain, the
// owner reads it with the Iterator, Destroy() gives the pages back.
#include "khosim/kho/block_set.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "khosim/base/kernel_context.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/err.h"
#include "khosim/mm/mm.h"

namespace khosim::kho {

namespace {

uint64_t PageSize() { return mm::Mm::Current().geometry().page_size(); }

}  // namespace

BlockSet::BlockSet(uint64_t entry_size) {
  if (entry_size != 0) Init(entry_size);
}

BlockSet::~BlockSet() {
  // The pages belong to the kernel (they may be handed over); only the
  // host-side list goes.
  blocks_.clear_and_dispose([](Block* b) { delete b; });
}

void BlockSet::Init(uint64_t entry_size) {
  blocks_.clear_and_dispose([](Block* b) { delete b; });
  head_pa_ = 0;
  incoming_ = false;
  entry_size_ = entry_size;
  count_per_block_ = abi::KhoBlockEntriesPerBlock(PageSize(), entry_size);
  if (count_per_block_ == 0) {
    RequireKernelContext().WarnOnce(KHOSIM_SITE, "kho_block_set_init: entry does not fit a block");
  }
}

uint8_t* BlockSet::Entry(Block* block, uint64_t index) const {
  return reinterpret_cast<uint8_t*>(block->ser + 1) + index * entry_size_;
}

void BlockSet::FreeSer(abi::KhoBlockHeader* ser) const {
  if (incoming_) {
    Kho::Current().RestoreFree(ser);
  } else {
    Kho::Current().UnpreserveFree(ser);
  }
}

int BlockSet::AddBlock(abi::KhoBlockHeader* ser) {
  if (blocks_.size() >= abi::kKhoMaxBlocks) return -ENOSPC;
  auto* block = new Block;
  block->ser = ser;
  const uint64_t pa = mm::Mm::Current().memory().Phys(ser).value();
  if (blocks_.empty()) {
    head_pa_ = pa;
  } else {
    blocks_.back().ser->next = pa;
  }
  blocks_.push_back(*block);
  return 0;
}

int BlockSet::GrowOne() {
  if (incoming_)
    RequireKernelContext().WarnOnce(KHOSIM_SITE, "allocating a block for an incoming set");
  void* mem = Kho::Current().AllocPreserve(PageSize());
  if (IS_ERR(mem)) return static_cast<int>(PTR_ERR(mem));
  auto* ser = static_cast<abi::KhoBlockHeader*>(mem);
  if (int err = AddBlock(ser); err != 0) {
    FreeSer(ser);
    return err;
  }
  return 0;
}

void BlockSet::ShrinkOne() {
  if (blocks_.empty()) return;
  Block* last = &blocks_.back();
  blocks_.pop_back();
  FreeSer(last->ser);
  delete last;
  if (blocks_.empty()) {
    head_pa_ = 0;
  } else {
    blocks_.back().ser->next = 0;
  }
}

int BlockSet::Grow(uint64_t count) {
  if (incoming_) {
    RequireKernelContext().WarnOnce(KHOSIM_SITE, "kho_block_set_grow on an incoming set");
    return -EINVAL;
  }
  if (count_per_block_ == 0) return -EINVAL;
  const uint64_t original = blocks_.size();
  while (count > capacity()) {
    if (int err = GrowOne(); err != 0) {
      while (blocks_.size() > original) ShrinkOne();
      return err;
    }
  }
  return 0;
}

void BlockSet::Shrink(uint64_t count) {
  while (!blocks_.empty() && count <= (blocks_.size() - 1) * count_per_block_) ShrinkOne();
}

bool BlockSet::ChainIsBad(uint64_t head_pa) const {
  // Every address is checked before it is read: page-aligned RAM and an
  // order-0 block the previous kernel preserved that nobody has restored
  // (a hostile link may name a page this kernel already reuses, or has
  // unmapped). Then Floyd's cycle search, with the writer's bound counted
  // in blocks (the fast pointer walks two per iteration).
  const mm::Mm& mm = mm::Mm::Current();
  const Kho& kho = Kho::Current();
  const uint64_t page = mm.geometry().page_size();
  auto valid = [&](uint64_t pa) {
    unsigned order = 0;
    return IsAligned(pa, page) && pa != 0 &&
           const_cast<mm::Mm&>(mm).memory().IsRam(PhysAddr(pa), page) &&
           kho.IsPreservedHead(PhysAddr(pa), &order) && order == 0;
  };
  auto next_of = [&](uint64_t pa) {
    return reinterpret_cast<const abi::KhoBlockHeader*>(
               const_cast<mm::Mm&>(mm).memory().Virt(PhysAddr(pa)))
        ->next;
  };
  if (!valid(head_pa)) return true;
  uint64_t slow = head_pa;
  uint64_t fast = head_pa;
  uint64_t blocks = 1;  // reached by fast, head included
  while (true) {
    uint64_t n = next_of(fast);
    if (n == 0) return false;
    if (!valid(n) || ++blocks > abi::kKhoMaxBlocks) return true;
    fast = n;
    n = next_of(fast);
    if (n == 0) return false;
    if (!valid(n) || ++blocks > abi::kKhoMaxBlocks) return true;
    fast = n;
    slow = next_of(slow);
    if (slow == fast) return true;
  }
}

int BlockSet::Restore(uint64_t head_pa) {
  incoming_ = true;
  if (head_pa == 0) return 0;
  if (ChainIsBad(head_pa)) {
    RequireKernelContext().Log("kho_block: block set is corrupted");
    return -EINVAL;
  }
  mm::Mm& mm = mm::Mm::Current();
  uint64_t next = head_pa;
  int err = 0;
  while (next != 0) {
    auto* ser = reinterpret_cast<abi::KhoBlockHeader*>(mm.memory().Virt(PhysAddr(next)));
    if (ser->count == 0 || ser->count > count_per_block_) {
      RequireKernelContext().Log(
          absl::StrFormat("kho_block: block contains invalid entry count: %d", ser->count));
      err = -EINVAL;
      break;
    }
    if ((err = AddBlock(ser)) != 0) break;
    next = ser->next;
  }
  if (err == 0) return 0;
  // Give back what was taken and the rest of the chain. Restore's
  // validation already proved every remaining address is an unrestored
  // preserved block.
  Destroy();
  while (next != 0) {
    auto* ser = reinterpret_cast<abi::KhoBlockHeader*>(mm.memory().Virt(PhysAddr(next)));
    next = ser->next;
    FreeSer(ser);
  }
  return err;
}

void BlockSet::Destroy() {
  blocks_.clear_and_dispose([this](Block* b) {
    FreeSer(b->ser);
    delete b;
  });
  head_pa_ = 0;
}

void BlockSet::Clear() {
  const uint64_t payload = PageSize() - sizeof(abi::KhoBlockHeader);
  for (Block& b : blocks_) {
    b.ser->count = 0;
    std::memset(b.ser + 1, 0, payload);
  }
}

uint64_t BlockSet::EntryCount() const {
  uint64_t n = 0;
  for (const Block& b : blocks_) n += b.ser->count;
  return n;
}

absl::Status BlockSet::Validate(uint64_t count, bool count_in_blocks) const {
  if (count_per_block_ == 0) return absl::InternalError("no entry size");
  const uint64_t want = (count + count_per_block_ - 1) / count_per_block_;
  if (!incoming_ && blocks_.size() != want) {
    return absl::InternalError(absl::StrFormat("%d blocks for %d entries of %d per block",
                                               blocks_.size(), count, count_per_block_));
  }
  if (blocks_.size() > abi::kKhoMaxBlocks) return absl::InternalError("too many blocks");
  const mm::Mm& mm = mm::Mm::Current();
  uint64_t expected_pa = head_pa_;
  uint64_t sum = 0;
  for (const Block& b : blocks_) {
    const uint64_t pa = const_cast<mm::Mm&>(mm).memory().Phys(b.ser).value();
    if (pa != expected_pa) return absl::InternalError("chain link does not match the list");
    if (b.ser->count > count_per_block_) return absl::InternalError("block count above capacity");
    sum += b.ser->count;
    expected_pa = b.ser->next;
  }
  if (expected_pa != 0) return absl::InternalError("last block has a next pointer");
  if (blocks_.empty() && head_pa_ != 0) return absl::InternalError("empty set with a head");
  if (count_in_blocks && sum != count) {
    return absl::InternalError(absl::StrFormat("blocks hold %d entries, expected %d", sum, count));
  }
  return absl::OkStatus();
}

BlockSet::Iterator::Iterator(BlockSet& set)
    : set_(&set), block_(set.blocks_.empty() ? nullptr : &set.blocks_.front()) {}

void* BlockSet::Iterator::ReserveEntry() {
  auto* block = static_cast<Block*>(block_);
  if (block == nullptr) return nullptr;
  if (i_ == set_->count_per_block_) {
    auto it = set_->blocks_.iterator_to(*block);
    if (++it == set_->blocks_.end()) return nullptr;
    block_ = block = &*it;
    i_ = 0;
  }
  void* entry = set_->Entry(block, i_++);
  block->ser->count = i_;
  return entry;
}

void* BlockSet::Iterator::ReadEntry() {
  auto* block = static_cast<Block*>(block_);
  if (block == nullptr) return nullptr;
  // Skips blocks with nothing (left) to read. Upstream steps into the next
  // block without looking at its count, which a cleared outgoing set (all
  // counts 0) turns into a read past the written entries.
  while (i_ >= block->ser->count) {
    auto it = set_->blocks_.iterator_to(*block);
    if (++it == set_->blocks_.end()) return nullptr;
    block_ = block = &*it;
    i_ = 0;
  }
  return set_->Entry(block, i_++);
}

void* BlockSet::Iterator::Prev() {
  auto* block = static_cast<Block*>(block_);
  if (block == nullptr) return nullptr;
  if (i_ == 0) {
    auto it = set_->blocks_.iterator_to(*block);
    if (it == set_->blocks_.begin()) return nullptr;
    block_ = block = &*--it;
    i_ = set_->count_per_block_;
  }
  return set_->Entry(block, --i_);
}

}  // namespace khosim::kho

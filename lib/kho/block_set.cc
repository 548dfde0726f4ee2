// kho_block sets: a chain of preserved pages holding fixed-size records.
//
// Lifecycle, outgoing: grow before each insertion keeps capacity at
// count+1 (rolling back exactly the blocks it added on failure), shrink
// after each removal from the tail, the iterator fills blocks in order when
// the owner serializes, clear on an aborted serialization, destroy when the
// owner goes away. Incoming: restore adopts and checks the chain, the owner
// reads it with the iterator, destroy gives the pages back.
//
// The chain in preserved memory is the only list: the set keeps its first
// and last block, and the few steps that go backwards (dropping the tail
// block, stepping an iterator back over a block boundary) walk forward
// from the head. Both are rare: a block is dropped once per
// count_per_block removals, and stepping back only unwinds a failed
// serialization.
#include "khosim/kho/block_set.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "khosim/abi/block.h"
#include "khosim/base/kernel_context.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kho_block.h"
#include "khosim/mm/mm.h"

namespace {

using khosim::PhysAddr;
using Header = struct kho_block_header_ser;

uint64_t PageSize() { return khosim::mm::Mm::Current().geometry().page_size(); }

Header* VirtOf(uint64_t pa) {
  return reinterpret_cast<Header*>(khosim::mm::Mm::Current().memory().Virt(PhysAddr(pa)));
}

uint64_t PhysOf(const Header* block) {
  return khosim::mm::Mm::Current().memory().Phys(block).value();
}

uint8_t* EntryOf(const struct kho_block_set* bs, Header* block, uint64_t index) {
  return reinterpret_cast<uint8_t*>(block + 1) + index * bs->entry_size;
}

// Entries per block, WARNing once per boot when the entry size leaves no
// room for one.
uint64_t UsableCountPerBlock(const struct kho_block_set* bs) {
  const uint64_t n = kho_block_set_count_per_block(bs);
  if (n == 0) {
    khosim::RequireKernelContext().WarnOnce(KHOSIM_SITE,
                                            "kho_block_set: entry does not fit a block");
  }
  return n;
}

void FreeBlock(const struct kho_block_set* bs, Header* block) {
  if (bs->incoming) {
    khosim::kho::Kho::Current().RestoreFree(block);
  } else {
    khosim::kho::Kho::Current().UnpreserveFree(block);
  }
}

// The block before |block| in the chain, or NULL for the head.
Header* PrevBlock(const struct kho_block_set* bs, const Header* block) {
  Header* prev = nullptr;
  for (Header* b = bs->head; b != block; b = VirtOf(b->next)) prev = b;
  return prev;
}

int AppendBlock(struct kho_block_set* bs, Header* block) {
  if (bs->nr_blocks >= KHO_MAX_BLOCKS) return -ENOSPC;
  block->next = 0;
  if (bs->tail == nullptr) {
    bs->head = block;
  } else {
    bs->tail->next = PhysOf(block);
  }
  bs->tail = block;
  bs->nr_blocks++;
  return 0;
}

int GrowOne(struct kho_block_set* bs) {
  void* mem = khosim::kho::Kho::Current().AllocPreserve(PageSize());
  if (IS_ERR(mem)) return static_cast<int>(PTR_ERR(mem));
  auto* block = static_cast<Header*>(mem);
  if (int err = AppendBlock(bs, block); err != 0) {
    FreeBlock(bs, block);
    return err;
  }
  return 0;
}

void ShrinkOne(struct kho_block_set* bs) {
  Header* last = bs->tail;
  if (last == nullptr) return;
  Header* prev = PrevBlock(bs, last);
  bs->tail = prev;
  if (prev == nullptr) {
    bs->head = nullptr;
  } else {
    prev->next = 0;
  }
  bs->nr_blocks--;
  FreeBlock(bs, last);
}

// Whether the chain at |head_pa| must be refused before anything is taken.
// Every address is checked before it is read: page-aligned RAM and an
// order-0 block the previous kernel preserved that nobody has restored (a
// hostile link may name a page this kernel already reuses, or has
// unmapped). Then Floyd's cycle search, with the writer's bound counted in
// blocks (the fast pointer walks two per iteration).
bool ChainIsBad(uint64_t head_pa) {
  khosim::mm::Mm& mm = khosim::mm::Mm::Current();
  const khosim::kho::Kho& kho = khosim::kho::Kho::Current();
  const uint64_t page = mm.geometry().page_size();
  auto valid = [&](uint64_t pa) {
    unsigned order = 0;
    return khosim::IsAligned(pa, page) && pa != 0 && mm.memory().IsRam(PhysAddr(pa), page) &&
           kho.IsPreservedHead(PhysAddr(pa), &order) && order == 0;
  };
  auto next_of = [](uint64_t pa) { return VirtOf(pa)->next; };
  if (!valid(head_pa)) return true;
  uint64_t slow = head_pa;
  uint64_t fast = head_pa;
  uint64_t blocks = 1;  // reached by fast, head included
  while (true) {
    uint64_t n = next_of(fast);
    if (n == 0) return false;
    if (!valid(n) || ++blocks > KHO_MAX_BLOCKS) return true;
    fast = n;
    n = next_of(fast);
    if (n == 0) return false;
    if (!valid(n) || ++blocks > KHO_MAX_BLOCKS) return true;
    fast = n;
    slow = next_of(slow);
    if (slow == fast) return true;
  }
}

}  // namespace

void kho_block_set_init(struct kho_block_set* bs, size_t entry_size) {
  *bs = {};
  bs->entry_size = entry_size;
}

u64 kho_block_set_count_per_block(const struct kho_block_set* bs) {
  return khosim::abi::KhoBlockEntriesPerBlock(PageSize(), bs->entry_size);
}

int kho_block_set_grow(struct kho_block_set* bs, u64 count) {
  if (bs->incoming) {
    khosim::RequireKernelContext().WarnOnce(KHOSIM_SITE, "kho_block_set_grow on an incoming set");
    return -EINVAL;
  }
  const uint64_t per_block = UsableCountPerBlock(bs);
  if (per_block == 0) return -EINVAL;
  const uint64_t original = bs->nr_blocks;
  while (count > bs->nr_blocks * per_block) {
    if (int err = GrowOne(bs); err != 0) {
      while (bs->nr_blocks > original) ShrinkOne(bs);
      return err;
    }
  }
  return 0;
}

void kho_block_set_shrink(struct kho_block_set* bs, u64 count) {
  const uint64_t per_block = kho_block_set_count_per_block(bs);
  while (bs->nr_blocks != 0 && count <= (bs->nr_blocks - 1) * per_block) ShrinkOne(bs);
}

int kho_block_set_restore(struct kho_block_set* bs, u64 head_pa) {
  bs->incoming = true;
  if (head_pa == 0) return 0;
  const uint64_t per_block = UsableCountPerBlock(bs);
  if (per_block == 0) return -EINVAL;
  if (ChainIsBad(head_pa)) {
    khosim::RequireKernelContext().Log("kho_block: block set is corrupted");
    return -EINVAL;
  }
  uint64_t next = head_pa;
  int err = 0;
  while (next != 0) {
    Header* block = VirtOf(next);
    if (block->count == 0 || block->count > per_block) {
      khosim::RequireKernelContext().Log(
          absl::StrFormat("kho_block: block contains invalid entry count: %d", block->count));
      err = -EINVAL;
      break;
    }
    // Adopted as linked: pass 1 bounded the chain by KHO_MAX_BLOCKS.
    if (bs->head == nullptr) bs->head = block;
    bs->tail = block;
    bs->nr_blocks++;
    next = block->next;
  }
  if (err == 0) return 0;
  // Give back what was taken and the rest of the chain: pass 1 proved every
  // remaining address an unrestored preserved block of this chain.
  kho_block_set_destroy(bs);
  while (next != 0) {
    Header* block = VirtOf(next);
    next = block->next;
    FreeBlock(bs, block);
  }
  return err;
}

void kho_block_set_destroy(struct kho_block_set* bs) {
  for (Header* b = bs->head; b != nullptr;) {
    Header* next = b == bs->tail ? nullptr : VirtOf(b->next);
    FreeBlock(bs, b);
    b = next;
  }
  bs->head = nullptr;
  bs->tail = nullptr;
  bs->nr_blocks = 0;
}

void kho_block_set_clear(struct kho_block_set* bs) {
  const uint64_t payload = PageSize() - sizeof(Header);
  for (Header* b = bs->head; b != nullptr; b = b == bs->tail ? nullptr : VirtOf(b->next)) {
    b->count = 0;
    std::memset(b + 1, 0, payload);
  }
}

u64 kho_block_set_head_pa(const struct kho_block_set* bs) {
  return bs->head == nullptr ? 0 : PhysOf(bs->head);
}

bool kho_block_set_is_empty(const struct kho_block_set* bs) { return bs->head == nullptr; }

void kho_block_set_it_init(struct kho_block_set_it* it, struct kho_block_set* bs) {
  // The entries per block are fixed for the set's life; the kernel's
  // PAGE_SIZE is a constant, the simulator's a lookup, kept out of the
  // per-entry path.
  *it = {.bs = bs, .block = bs->head, .i = 0, .per_block = kho_block_set_count_per_block(bs)};
}

void* kho_block_set_it_reserve_entry(struct kho_block_set_it* it) {
  if (it->block == nullptr) return nullptr;
  if (it->i == it->per_block) {
    if (it->block == it->bs->tail) return nullptr;
    it->block = VirtOf(it->block->next);
    it->i = 0;
  }
  void* entry = EntryOf(it->bs, it->block, it->i++);
  it->block->count = it->i;
  return entry;
}

void* kho_block_set_it_read_entry(struct kho_block_set_it* it) {
  if (it->block == nullptr) return nullptr;
  // Skips blocks with nothing (left) to read. Upstream steps into the next
  // block without looking at its count, which a cleared outgoing set (all
  // counts 0) turns into a read past the written entries.
  while (it->i >= it->block->count) {
    if (it->block == it->bs->tail) return nullptr;
    it->block = VirtOf(it->block->next);
    it->i = 0;
  }
  return EntryOf(it->bs, it->block, it->i++);
}

void* kho_block_set_it_prev(struct kho_block_set_it* it) {
  if (it->block == nullptr) return nullptr;
  if (it->i == 0) {
    Header* prev = PrevBlock(it->bs, it->block);
    if (prev == nullptr) return nullptr;
    it->block = prev;
    it->i = it->per_block;
  }
  return EntryOf(it->bs, it->block, --it->i);
}

namespace khosim::kho {

uint64_t BlockSetEntryCount(const struct kho_block_set& bs) {
  uint64_t n = 0;
  for (const Header* b = bs.head; b != nullptr; b = b == bs.tail ? nullptr : VirtOf(b->next)) {
    n += b->count;
  }
  return n;
}

absl::Status ValidateBlockSet(const struct kho_block_set& bs, uint64_t count,
                              bool count_in_blocks) {
  const uint64_t per_block = kho_block_set_count_per_block(&bs);
  if (per_block == 0) return absl::InternalError("no entry size");
  const uint64_t want = (count + per_block - 1) / per_block;
  if (!bs.incoming && bs.nr_blocks != want) {
    return absl::InternalError(absl::StrFormat("%d blocks for %d entries of %d per block",
                                               bs.nr_blocks, count, per_block));
  }
  if (bs.nr_blocks > KHO_MAX_BLOCKS) return absl::InternalError("too many blocks");
  if ((bs.head == nullptr) != (bs.tail == nullptr) || (bs.head == nullptr) != (bs.nr_blocks == 0)) {
    return absl::InternalError("head, tail and block count disagree");
  }
  uint64_t seen = 0;
  uint64_t sum = 0;
  const Header* b = bs.head;
  while (b != nullptr) {
    if (++seen > bs.nr_blocks) return absl::InternalError("the chain is longer than the set");
    if (b->count > per_block) return absl::InternalError("block count above capacity");
    sum += b->count;
    if (b == bs.tail) break;
    if (b->next == 0) return absl::InternalError("the chain ends before the tail");
    b = VirtOf(b->next);
  }
  if (seen != bs.nr_blocks) return absl::InternalError("the chain is shorter than the set");
  if (bs.tail != nullptr && bs.tail->next != 0) {
    return absl::InternalError("last block has a next pointer");
  }
  if (count_in_blocks && sum != count) {
    return absl::InternalError(absl::StrFormat("blocks hold %d entries, expected %d", sum, count));
  }
  return absl::OkStatus();
}

}  // namespace khosim::kho

// KhoXarray: a fixed-depth radix map kept in preserved pages.
//
// Lifecycle of one map across kexecs:
//   kernel A   Init() writes an empty descriptor (to |home| if given).
//              Store() walks down from the root; the levels that are
//              missing are all allocated first (kho_alloc_preserve, so each
//              page is preserved from birth), linked to each other, and only
//              then hung into the existing tree with a single slot write,
//              so a failed allocation leaves nothing to undo but the fresh
//              pages. Erase() clears the leaf word and walks back up,
//              freeing (kho_unpreserve_free) every node whose use count
//              drops to zero. The descriptor is republished after each
//              change; at kexec there is nothing left to do.
//   kernel B   Restore() copies the descriptor and walks every node with the
//              checks listed in the header, before reading any page it has
//              not proved to be a preserved head. Then the owner reads in
//              place and Destroy()s (kho_restore_free per node), Convert()s
//              into a host map, or Adopt()s: preserve every node in B's
//              tracker (undone on failure), restore each into a live folio,
//              recompute use counts, and carry on as kernel A did.
//
// Use counts sit in the node page's struct page private field of the kernel
// that owns the map; nodes are read and written as little-endian u64 words
// through the direct map.
#include "khosim/kho/kho_xarray.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <type_traits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/base/errno_status.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/spinlock_guard.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kho_xarray.h"
#include "khosim/mm/mm.h"

namespace khosim::kho {
namespace {

static_assert(std::endian::native == std::endian::little,
              "node pages are read as little-endian u64 words");

// A key has at most 64 bits and every level consumes at least 1 of them
// (slot_bits >= 9 for any supported page size keeps real depths at 8 or less).
constexpr int kMaxDepth = abi::kKhoXarrayMaxKeyBits;

mm::Mm& CurrentMm() { return mm::Mm::Current(); }

}  // namespace

// ---------------------------------------------------------------------------
// Shape and node access

unsigned KhoXarray::SlotBitsLocked() const { return xa_.slot_bits; }

void KhoXarray::SetShapeLocked() {
  const bool shaped = xa_.desc.key_bits != 0;
  xa_.slot_bits = shaped ? static_cast<uint8_t>(abi::KhoXarraySlotBits(xa_.desc.page_shift)) : 0;
  xa_.root_bits =
      shaped ? static_cast<uint8_t>(abi::KhoXarrayRootBits(xa_.desc.key_bits, xa_.desc.page_shift))
             : 0;
}

void KhoXarray::BumpGenerationLocked() { __atomic_fetch_add(&xa_.generation, 1, __ATOMIC_RELEASE); }

uint64_t KhoXarray::SlotsAt(int level) const {
  const unsigned bits =
      level == static_cast<int>(xa_.desc.depth) - 1 ? xa_.root_bits : xa_.slot_bits;
  return uint64_t{1} << bits;
}

unsigned KhoXarray::SlotOf(uint64_t index, int level) const {
  // level * slot_bits < key_bits <= 64 for every level of the map.
  const unsigned shift = static_cast<unsigned>(level) * xa_.slot_bits;
  return static_cast<unsigned>((index >> shift) & ((uint64_t{1} << xa_.slot_bits) - 1));
}

uint64_t KhoXarray::MaxIndexLocked() const {
  return xa_.desc.key_bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << xa_.desc.key_bits) - 1;
}

const uint8_t* KhoXarray::NodeBytes(uint64_t node) {
  return CurrentMm().memory().Virt(PhysAddr(node));
}

uint64_t KhoXarray::LoadWord(const uint8_t* node, uint64_t slot) {
  uint64_t word;
  std::memcpy(&word, node + slot * sizeof(uint64_t), sizeof(word));
  return word;
}

uint64_t KhoXarray::NextUsedSlot(const uint8_t* node, uint64_t from, uint64_t slots) {
  // Sparse maps are mostly zero words: test eight at a time (one cache
  // line), which the compiler turns into vector ORs.
  constexpr uint64_t kChunk = 8;
  if (from < slots && LoadWord(node, from) != 0) return from;  // dense maps
  uint64_t slot = from;
  while (slot % kChunk != 0 && slot < slots && LoadWord(node, slot) == 0) ++slot;
  if (slot % kChunk == 0) {
    while (slot + kChunk <= slots) {
      uint64_t words[kChunk];
      std::memcpy(words, node + slot * sizeof(uint64_t), sizeof(words));
      uint64_t any = 0;
      for (uint64_t w : words) any |= w;
      if (any != 0) break;
      slot += kChunk;
    }
  }
  while (slot < slots && LoadWord(node, slot) == 0) ++slot;
  return slot;
}

template <typename SlotFn>
void KhoXarray::ForEachUsedSlot(const uint8_t* node, uint64_t first, uint64_t slots,
                                SlotFn&& slot_fn) {
  for (uint64_t i = first; i < slots; ++i) {
    uint64_t word = LoadWord(node, i);
    if (word == 0) {  // a hole: skip the rest of it in chunks
      i = NextUsedSlot(node, i, slots);
      if (i == slots) return;
      word = LoadWord(node, i);
    }
    if (!slot_fn(i, word)) return;
  }
}

uint64_t KhoXarray::Word(uint64_t node, uint64_t slot) const {
  return LoadWord(NodeBytes(node), slot);
}

void KhoXarray::SetWord(uint64_t node, uint64_t slot, uint64_t word) {
  std::memcpy(CurrentMm().memory().Virt(PhysAddr(node)) + slot * sizeof(uint64_t), &word,
              sizeof(word));
}

unsigned long& KhoXarray::UseCount(uint64_t node) const {
  return CurrentMm().PhysToPage(PhysAddr(node))->private_data;
}

int KhoXarray::AllocNode(uint64_t* pa) {
  mm::Mm& mm = CurrentMm();
  void* mem = Kho::Current().AllocPreserve(mm.geometry().page_size());
  if (IS_ERR(mem)) return static_cast<int>(PTR_ERR(mem));
  *pa = mm.memory().Phys(mem).value();
  UseCount(*pa) = 0;
  return 0;
}

void KhoXarray::FreeNode(uint64_t pa) {
  void* va = CurrentMm().memory().Virt(PhysAddr(pa));
  if (xa_.mode == KHO_XA_INCOMING) {
    Kho::Current().RestoreFree(va);
  } else {
    UseCount(pa) = 0;
    Kho::Current().UnpreserveFree(va);
  }
}

void KhoXarray::Publish() {
  BumpGenerationLocked();
  if (xa_.home != nullptr) std::memcpy(static_cast<void*>(xa_.home), &xa_.desc, sizeof(xa_.desc));
}

// ---------------------------------------------------------------------------
// Outgoing

int KhoXarray::Init(unsigned key_bits, abi::KhoXarrayDesc* home) {
  SpinLockGuard lock(&xa_.lock);
  if (key_bits < 1 || key_bits > abi::kKhoXarrayMaxKeyBits) return -EINVAL;
  if (xa_.mode != KHO_XA_UNUSED && xa_.desc.root != 0) return -EBUSY;
  const unsigned page_shift = CurrentMm().geometry().page_shift;
  xa_.desc = abi::KhoXarrayDesc{};
  xa_.desc.magic = abi::kKhoXarrayMagic;
  xa_.desc.version = abi::kKhoXarrayVersion;
  xa_.desc.key_bits = static_cast<uint8_t>(key_bits);
  xa_.desc.depth = static_cast<uint8_t>(abi::KhoXarrayDepth(key_bits, page_shift));
  xa_.desc.page_shift = static_cast<uint8_t>(page_shift);
  SetShapeLocked();
  xa_.mode = KHO_XA_OUTGOING;
  xa_.home = home;
  Publish();
  return 0;
}

int KhoXarray::Store(uint64_t index, uint64_t entry) {
  SpinLockGuard lock(&xa_.lock);
  if (xa_.mode != KHO_XA_OUTGOING) {
    if (xa_.mode == KHO_XA_INCOMING) {
      RequireKernelContext().WarnOnce(KHOSIM_SITE, "kho_xa_store on an incoming map");
    }
    return -EINVAL;
  }
  if (entry == 0) return -EINVAL;
  if (index > MaxIndexLocked()) return -ERANGE;
  const int top = static_cast<int>(xa_.desc.depth) - 1;
  uint64_t path[kMaxDepth] = {};
  // Levels missing_from .. 0 of the path do not exist yet (-1: none).
  int missing_from = -1;
  if (xa_.desc.root == 0) {
    missing_from = top;
  } else {
    path[top] = xa_.desc.root;
    for (int l = top; l > 0; --l) {
      const uint64_t child = Word(path[l], SlotOf(index, l));
      if (child == 0) {
        missing_from = l - 1;
        break;
      }
      path[l - 1] = child;
    }
  }
  for (int l = missing_from; l >= 0; --l) {
    if (int err = AllocNode(&path[l]); err != 0) {
      for (int k = missing_from; k > l; --k) FreeNode(path[k]);
      return err;
    }
  }
  // The fresh nodes are private until the last write below hangs them in.
  for (int l = missing_from; l > 0; --l) SetWord(path[l], SlotOf(index, l), path[l - 1]);
  const unsigned leaf_slot = SlotOf(index, 0);
  const uint64_t old = Word(path[0], leaf_slot);
  SetWord(path[0], leaf_slot, entry);
  if (missing_from == top) {
    xa_.desc.root = path[top];
  } else if (missing_from >= 0) {
    SetWord(path[missing_from + 1], SlotOf(index, missing_from + 1), path[missing_from]);
  }
  if (missing_from >= 0) {
    for (int l = 0; l <= missing_from; ++l) UseCount(path[l]) = 1;
    if (missing_from < top) ++UseCount(path[missing_from + 1]);
  } else if (old == 0) {
    ++UseCount(path[0]);
  }
  if (old == 0) ++xa_.desc.count;
  Publish();
  return 0;
}

int KhoXarray::Erase(uint64_t index, uint64_t* old) {
  SpinLockGuard lock(&xa_.lock);
  if (xa_.mode != KHO_XA_OUTGOING) {
    if (xa_.mode == KHO_XA_INCOMING) {
      RequireKernelContext().WarnOnce(KHOSIM_SITE, "kho_xa_erase on an incoming map");
    }
    return -EINVAL;
  }
  if (index > MaxIndexLocked()) return -ERANGE;
  if (xa_.desc.root == 0) return -ENOENT;
  const int top = static_cast<int>(xa_.desc.depth) - 1;
  uint64_t path[kMaxDepth] = {};
  path[top] = xa_.desc.root;
  for (int l = top; l > 0; --l) {
    path[l - 1] = Word(path[l], SlotOf(index, l));
    if (path[l - 1] == 0) return -ENOENT;
  }
  const unsigned leaf_slot = SlotOf(index, 0);
  const uint64_t word = Word(path[0], leaf_slot);
  if (word == 0) return -ENOENT;
  SetWord(path[0], leaf_slot, 0);
  --xa_.desc.count;
  for (int l = 0; l <= top; ++l) {
    if (--UseCount(path[l]) != 0) break;
    FreeNode(path[l]);
    if (l == top) {
      xa_.desc.root = 0;
    } else {
      SetWord(path[l + 1], SlotOf(index, l + 1), 0);
    }
  }
  Publish();
  if (old != nullptr) *old = word;
  return 0;
}

// ---------------------------------------------------------------------------
// Lookup

bool KhoXarray::Load(uint64_t index, uint64_t* entry) const {
  SpinLockGuard lock(&xa_.lock);
  if (xa_.mode == KHO_XA_UNUSED || index > MaxIndexLocked()) return false;
  uint64_t node = xa_.desc.root;
  for (int l = static_cast<int>(xa_.desc.depth) - 1; l >= 0; --l) {
    if (node == 0) return false;
    node = Word(node, SlotOf(index, l));
  }
  if (node == 0) return false;
  *entry = node;
  return true;
}

template <typename LeafFn>
void KhoXarray::WalkLeavesLocked(uint64_t start, LeafFn&& leaf_fn) const {
  if (xa_.mode == KHO_XA_UNUSED || xa_.desc.root == 0 || start > MaxIndexLocked()) return;
  // One frame per level: the node, the index bits above it, the next slot
  // to look at, and whether the node lies on |start|'s path (then its
  // first slot is start's digit, otherwise 0).
  struct Frame {
    const uint8_t* node;
    uint64_t prefix;
    uint64_t slot;
    bool on_start_path;
  };
  Frame stack[kMaxDepth];
  const int top = static_cast<int>(xa_.desc.depth) - 1;
  stack[top] = {NodeBytes(xa_.desc.root), 0, SlotOf(start, top), true};
  int level = top;
  for (;;) {
    Frame& f = stack[level];
    const uint64_t slots = SlotsAt(level);
    if (level == 0) {
      if (f.slot < slots && !leaf_fn(f.prefix, f.node, f.slot, slots)) return;
      f.slot = slots;
    }
    f.slot = NextUsedSlot(f.node, f.slot, slots);
    if (f.slot >= slots) {
      if (++level > top) return;
      ++stack[level].slot;
      continue;
    }
    const unsigned shift = static_cast<unsigned>(level) * SlotBitsLocked();
    const bool child_on_path = f.on_start_path && f.slot == SlotOf(start, level);
    stack[level - 1] = {NodeBytes(LoadWord(f.node, f.slot)), f.prefix | (f.slot << shift),
                        child_on_path ? SlotOf(start, level - 1) : 0, child_on_path};
    --level;
  }
}

bool KhoXarray::FindLocked(uint64_t start, uint64_t* index, uint64_t* entry) const {
  bool found = false;
  WalkLeavesLocked(start,
                   [&](uint64_t prefix, const uint8_t* leaf, uint64_t first, uint64_t slots) {
                     const uint64_t i = NextUsedSlot(leaf, first, slots);
                     if (i == slots) return true;
                     *index = prefix | i;
                     *entry = LoadWord(leaf, i);
                     found = true;
                     return false;
                   });
  return found;
}

bool KhoXarray::Find(uint64_t* index, uint64_t* entry) const {
  SpinLockGuard lock(&xa_.lock);
  return FindLocked(*index, index, entry);
}

bool KhoXarray::FindAfter(uint64_t* index, uint64_t* entry) const {
  SpinLockGuard lock(&xa_.lock);
  if (*index == ~uint64_t{0}) return false;
  return FindLocked(*index + 1, index, entry);
}

void KhoXarray::ForEach(uint64_t start, const std::function<bool(uint64_t, uint64_t)>& fn) const {
  // A batch at a time: under the lock, copy the next entries at >= |next|
  // in index order; then call |fn| on them unlocked. Any change to the map
  // (by |fn| or anyone else) bumps the generation, and the rest of the batch
  // is dropped for a fresh lookup from the entry not yet visited, so
  // stores and erases ahead of the cursor are honoured exactly as a lookup
  // per step would. Batches start small, since a range walk often stops at
  // its first entry, and grow to several leaves' worth for long walks.
  using Entry = std::pair<uint64_t, uint64_t>;
  constexpr size_t kFirstBatch = 4;
  constexpr size_t kMaxBatch = 4096;
  std::array<Entry, kFirstBatch> first_batch;
  std::vector<Entry> grown;
  Entry* batch = first_batch.data();
  size_t limit = kFirstBatch;
  uint64_t next = start;
  for (;;) {
    size_t n = 0;
    uint64_t generation = 0;
    {
      SpinLockGuard lock(&xa_.lock);
      WalkLeavesLocked(next,
                       [&](uint64_t prefix, const uint8_t* leaf, uint64_t first, uint64_t slots) {
                         ForEachUsedSlot(leaf, first, slots, [&](uint64_t i, uint64_t word) {
                           batch[n++] = {prefix | i, word};
                           return n < limit;
                         });
                         return n < limit;
                       });
      generation = CurrentGeneration();
    }
    size_t visited = 0;
    for (; visited < n; ++visited) {
      if (CurrentGeneration() != generation) break;
      if (!fn(batch[visited].first, batch[visited].second)) return;
    }
    if (visited < n) {  // stale: look up again from the first unvisited
      next = batch[visited].first;
      continue;
    }
    if (n < limit || batch[n - 1].first == ~uint64_t{0}) return;  // the walk reached the end
    next = batch[n - 1].first + 1;
    if (limit < kMaxBatch) {
      limit = std::min(limit * 8, kMaxBatch);
      grown.resize(limit);
      batch = grown.data();
    }
  }
}

// ---------------------------------------------------------------------------
// Inspection

uint64_t KhoXarray::Count() const {
  SpinLockGuard lock(&xa_.lock);
  return xa_.desc.count;
}

std::vector<uint64_t> KhoXarray::NodesLocked() const {
  std::vector<uint64_t> nodes;
  if (xa_.desc.root == 0) return nodes;
  const uint64_t root = xa_.desc.root;
  std::vector<std::pair<uint64_t, int>> stack = {{root, static_cast<int>(xa_.desc.depth) - 1}};
  while (!stack.empty()) {
    const auto [pa, level] = stack.back();
    stack.pop_back();
    nodes.push_back(pa);
    if (level == 0) continue;
    const uint64_t slots = SlotsAt(level);
    for (uint64_t i = slots; i-- > 0;) {
      if (const uint64_t child = Word(pa, i); child != 0) stack.push_back({child, level - 1});
    }
  }
  return nodes;
}

uint64_t KhoXarray::NodeCount() const {
  SpinLockGuard lock(&xa_.lock);
  return NodesLocked().size();
}

abi::KhoXarrayDesc KhoXarray::descriptor() const {
  SpinLockGuard lock(&xa_.lock);
  return xa_.desc;
}

unsigned KhoXarray::key_bits() const {
  SpinLockGuard lock(&xa_.lock);
  return xa_.desc.key_bits;
}

unsigned KhoXarray::depth() const {
  SpinLockGuard lock(&xa_.lock);
  return xa_.desc.depth;
}

uint64_t KhoXarray::max_index() const {
  SpinLockGuard lock(&xa_.lock);
  return xa_.mode == KHO_XA_UNUSED ? 0 : MaxIndexLocked();
}

bool KhoXarray::initialized() const {
  SpinLockGuard lock(&xa_.lock);
  return xa_.mode != KHO_XA_UNUSED;
}

bool KhoXarray::incoming() const {
  SpinLockGuard lock(&xa_.lock);
  return xa_.mode == KHO_XA_INCOMING;
}

// ---------------------------------------------------------------------------
// Teardown

void KhoXarray::DestroyLocked() {
  const std::vector<uint64_t> nodes = NodesLocked();
  // Children first; every slot was read before anything was freed.
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) FreeNode(*it);
  xa_.desc.root = 0;
  xa_.desc.count = 0;
  Publish();
}

void KhoXarray::Destroy() {
  SpinLockGuard lock(&xa_.lock);
  if (xa_.mode == KHO_XA_UNUSED) return;
  DestroyLocked();
}

void KhoXarray::Convert(absl::btree_map<uint64_t, uint64_t>* out) {
  SpinLockGuard lock(&xa_.lock);
  if (xa_.mode == KHO_XA_UNUSED) return;
  // Entries arrive in ascending order, so the end is the right hint.
  WalkLeavesLocked(0, [&](uint64_t prefix, const uint8_t* leaf, uint64_t first, uint64_t slots) {
    ForEachUsedSlot(leaf, first, slots, [&](uint64_t i, uint64_t word) {
      out->insert_or_assign(out->end(), prefix | i, word);
      return true;
    });
    return true;
  });
  DestroyLocked();
}

}  // namespace khosim::kho

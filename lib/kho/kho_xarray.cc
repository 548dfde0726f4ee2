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
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/base/errno_status.h"
#include "khosim/base/kernel_context.h"
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

KhoXarray::Shape KhoXarray::ShapeFor(unsigned key_bits, unsigned page_shift) {
  Shape s;
  s.page_shift = page_shift;
  s.slot_bits = abi::KhoXarraySlotBits(page_shift);
  s.key_bits = key_bits;
  s.depth = abi::KhoXarrayDepth(key_bits, page_shift);
  s.root_bits = abi::KhoXarrayRootBits(key_bits, page_shift);
  return s;
}

uint64_t KhoXarray::SlotsAt(int level) const {
  const unsigned bits =
      level == static_cast<int>(shape_.depth) - 1 ? shape_.root_bits : shape_.slot_bits;
  return uint64_t{1} << bits;
}

unsigned KhoXarray::SlotOf(uint64_t index, int level) const {
  // level * slot_bits < key_bits <= 64 for every level of the map.
  const unsigned shift = static_cast<unsigned>(level) * shape_.slot_bits;
  return static_cast<unsigned>((index >> shift) & ((uint64_t{1} << shape_.slot_bits) - 1));
}

uint64_t KhoXarray::MaxIndexLocked() const {
  return shape_.key_bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << shape_.key_bits) - 1;
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
  if (mode_ == Mode::kIncoming) {
    Kho::Current().RestoreFree(va);
  } else {
    UseCount(pa) = 0;
    Kho::Current().UnpreserveFree(va);
  }
}

void KhoXarray::Publish() {
  generation_.fetch_add(1, std::memory_order_release);
  if (home_ != nullptr) std::memcpy(static_cast<void*>(home_), &desc_, sizeof(desc_));
}

// ---------------------------------------------------------------------------
// Outgoing

int KhoXarray::Init(unsigned key_bits, abi::KhoXarrayDesc* home) {
  absl::MutexLock lock(&mu_);
  if (key_bits < 1 || key_bits > abi::kKhoXarrayMaxKeyBits) return -EINVAL;
  if (mode_ != Mode::kUnused && desc_.root != 0) return -EBUSY;
  shape_ = ShapeFor(key_bits, CurrentMm().geometry().page_shift);
  desc_ = abi::KhoXarrayDesc{};
  desc_.magic = abi::kKhoXarrayMagic;
  desc_.version = abi::kKhoXarrayVersion;
  desc_.key_bits = static_cast<uint8_t>(shape_.key_bits);
  desc_.depth = static_cast<uint8_t>(shape_.depth);
  desc_.page_shift = static_cast<uint8_t>(shape_.page_shift);
  mode_ = Mode::kOutgoing;
  home_ = home;
  Publish();
  return 0;
}

int KhoXarray::Store(uint64_t index, uint64_t entry) {
  absl::MutexLock lock(&mu_);
  if (mode_ != Mode::kOutgoing) {
    if (mode_ == Mode::kIncoming) {
      RequireKernelContext().WarnOnce(KHOSIM_SITE, "kho_xa_store on an incoming map");
    }
    return -EINVAL;
  }
  if (entry == 0) return -EINVAL;
  if (index > MaxIndexLocked()) return -ERANGE;
  const int top = static_cast<int>(shape_.depth) - 1;
  uint64_t path[kMaxDepth] = {};
  // Levels missing_from .. 0 of the path do not exist yet (-1: none).
  int missing_from = -1;
  if (desc_.root == 0) {
    missing_from = top;
  } else {
    path[top] = desc_.root;
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
    desc_.root = path[top];
  } else if (missing_from >= 0) {
    SetWord(path[missing_from + 1], SlotOf(index, missing_from + 1), path[missing_from]);
  }
  if (missing_from >= 0) {
    for (int l = 0; l <= missing_from; ++l) UseCount(path[l]) = 1;
    if (missing_from < top) ++UseCount(path[missing_from + 1]);
  } else if (old == 0) {
    ++UseCount(path[0]);
  }
  if (old == 0) ++desc_.count;
  Publish();
  return 0;
}

int KhoXarray::Erase(uint64_t index, uint64_t* old) {
  absl::MutexLock lock(&mu_);
  if (mode_ != Mode::kOutgoing) {
    if (mode_ == Mode::kIncoming) {
      RequireKernelContext().WarnOnce(KHOSIM_SITE, "kho_xa_erase on an incoming map");
    }
    return -EINVAL;
  }
  if (index > MaxIndexLocked()) return -ERANGE;
  if (desc_.root == 0) return -ENOENT;
  const int top = static_cast<int>(shape_.depth) - 1;
  uint64_t path[kMaxDepth] = {};
  path[top] = desc_.root;
  for (int l = top; l > 0; --l) {
    path[l - 1] = Word(path[l], SlotOf(index, l));
    if (path[l - 1] == 0) return -ENOENT;
  }
  const unsigned leaf_slot = SlotOf(index, 0);
  const uint64_t word = Word(path[0], leaf_slot);
  if (word == 0) return -ENOENT;
  SetWord(path[0], leaf_slot, 0);
  --desc_.count;
  for (int l = 0; l <= top; ++l) {
    if (--UseCount(path[l]) != 0) break;
    FreeNode(path[l]);
    if (l == top) {
      desc_.root = 0;
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
  absl::ReaderMutexLock lock(&mu_);
  if (mode_ == Mode::kUnused || index > MaxIndexLocked()) return false;
  uint64_t node = desc_.root;
  for (int l = static_cast<int>(shape_.depth) - 1; l >= 0; --l) {
    if (node == 0) return false;
    node = Word(node, SlotOf(index, l));
  }
  if (node == 0) return false;
  *entry = node;
  return true;
}

template <typename LeafFn>
void KhoXarray::WalkLeavesLocked(uint64_t start, LeafFn&& leaf_fn) const {
  if (mode_ == Mode::kUnused || desc_.root == 0 || start > MaxIndexLocked()) return;
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
  const int top = static_cast<int>(shape_.depth) - 1;
  stack[top] = {NodeBytes(desc_.root), 0, SlotOf(start, top), true};
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
    const unsigned shift = static_cast<unsigned>(level) * shape_.slot_bits;
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
  absl::ReaderMutexLock lock(&mu_);
  return FindLocked(*index, index, entry);
}

bool KhoXarray::FindAfter(uint64_t* index, uint64_t* entry) const {
  absl::ReaderMutexLock lock(&mu_);
  if (*index == ~uint64_t{0}) return false;
  return FindLocked(*index + 1, index, entry);
}

void KhoXarray::ForEach(uint64_t start, const std::function<bool(uint64_t, uint64_t)>& fn) const {
  // A batch at a time: under the lock, copy the next entries at >= |next|
  // in index order; then call |fn| on them unlocked. Any change to the map
  // (by |fn| or anyone else) bumps generation_, and the rest of the batch
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
      absl::ReaderMutexLock lock(&mu_);
      WalkLeavesLocked(next,
                       [&](uint64_t prefix, const uint8_t* leaf, uint64_t first, uint64_t slots) {
                         ForEachUsedSlot(leaf, first, slots, [&](uint64_t i, uint64_t word) {
                           batch[n++] = {prefix | i, word};
                           return n < limit;
                         });
                         return n < limit;
                       });
      generation = generation_.load(std::memory_order_relaxed);
    }
    size_t visited = 0;
    for (; visited < n; ++visited) {
      if (generation_.load(std::memory_order_acquire) != generation) break;
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
  absl::ReaderMutexLock lock(&mu_);
  return desc_.count;
}

std::vector<uint64_t> KhoXarray::NodesLocked() const {
  std::vector<uint64_t> nodes;
  if (desc_.root == 0) return nodes;
  std::vector<std::pair<uint64_t, int>> stack = {{desc_.root, static_cast<int>(shape_.depth) - 1}};
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
  absl::ReaderMutexLock lock(&mu_);
  return NodesLocked().size();
}

abi::KhoXarrayDesc KhoXarray::descriptor() const {
  absl::ReaderMutexLock lock(&mu_);
  return desc_;
}

unsigned KhoXarray::key_bits() const {
  absl::ReaderMutexLock lock(&mu_);
  return shape_.key_bits;
}

unsigned KhoXarray::depth() const {
  absl::ReaderMutexLock lock(&mu_);
  return shape_.depth;
}

uint64_t KhoXarray::max_index() const {
  absl::ReaderMutexLock lock(&mu_);
  return mode_ == Mode::kUnused ? 0 : MaxIndexLocked();
}

bool KhoXarray::initialized() const {
  absl::ReaderMutexLock lock(&mu_);
  return mode_ != Mode::kUnused;
}

bool KhoXarray::incoming() const {
  absl::ReaderMutexLock lock(&mu_);
  return mode_ == Mode::kIncoming;
}

// ---------------------------------------------------------------------------
// Teardown

void KhoXarray::DestroyLocked() {
  const std::vector<uint64_t> nodes = NodesLocked();
  // Children first; every slot was read before anything was freed.
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) FreeNode(*it);
  desc_.root = 0;
  desc_.count = 0;
  Publish();
}

void KhoXarray::Destroy() {
  absl::MutexLock lock(&mu_);
  if (mode_ == Mode::kUnused) return;
  DestroyLocked();
}

void KhoXarray::Convert(absl::btree_map<uint64_t, uint64_t>* out) {
  absl::MutexLock lock(&mu_);
  if (mode_ == Mode::kUnused) return;
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

// ---------------------------------------------------------------------------
// Checks

bool KhoXarray::NodeIsPreserved(uint64_t pa, bool incoming) {
  if (incoming) {
    unsigned order = 0;
    return Kho::Current().IsPreservedHead(PhysAddr(pa), &order) && order == 0;
  }
  return Kho::Current().IsPreserved(PhysAddr(pa), 1);
}

int KhoXarray::CheckLocked(std::string* why, std::vector<NodeUse>* nodes) const {
  auto fail = [&](std::string message) {
    *why = std::move(message);
    return -EINVAL;
  };
  if (desc_.root == 0) {
    return desc_.count == 0 ? 0 : fail(absl::StrFormat("count %d with no root", desc_.count));
  }
  if (desc_.count == 0) return fail("a root with count 0");
  mm::Mm& mm = CurrentMm();
  const uint64_t page = mm.geometry().page_size();
  const uint64_t slots_per_node = abi::KhoXarraySlots(shape_.page_shift);
  absl::flat_hash_set<uint64_t> seen;
  const bool incoming = mode_ == Mode::kIncoming;
  // Proves |pa| is a node page before anything reads it.
  auto admit = [&](uint64_t pa, int level) -> int {
    if (!IsAligned(pa, page) || !mm.memory().IsRam(PhysAddr(pa), page)) {
      return fail(absl::StrFormat("level-%d node 0x%x is not a page of RAM", level, pa));
    }
    if (!NodeIsPreserved(pa, incoming)) {
      return fail(absl::StrFormat("level-%d node 0x%x is not a preserved page", level, pa));
    }
    if (!seen.insert(pa).second) {
      return fail(absl::StrFormat("level-%d node 0x%x is reached twice", level, pa));
    }
    return 0;
  };
  const int top = static_cast<int>(shape_.depth) - 1;
  if (int err = admit(desc_.root, top); err != 0) return err;
  std::vector<std::pair<uint64_t, int>> stack = {{desc_.root, top}};
  uint64_t entries = 0;
  while (!stack.empty()) {
    const auto [pa, level] = stack.back();
    stack.pop_back();
    const uint64_t usable = SlotsAt(level);
    uint64_t used = 0;
    for (uint64_t i = 0; i < slots_per_node; ++i) {
      const uint64_t word = Word(pa, i);
      if (word == 0) continue;
      if (i >= usable) {
        return fail(
            absl::StrFormat("root slot %d is beyond the %d-bit key width", i, shape_.key_bits));
      }
      ++used;
      if (level == 0) {
        ++entries;
        continue;
      }
      if (int err = admit(word, level - 1); err != 0) return err;
      stack.push_back({word, level - 1});
    }
    if (used == 0) return fail(absl::StrFormat("level-%d node 0x%x is empty", level, pa));
    if (mode_ == Mode::kOutgoing && UseCount(pa) != used) {
      return fail(absl::StrFormat("node 0x%x has use count %d but %d slots in use", pa,
                                  UseCount(pa), used));
    }
    if (nodes != nullptr) nodes->push_back({pa, used});
  }
  if (entries != desc_.count) {
    return fail(
        absl::StrFormat("leaves hold %d entries, descriptor says %d", entries, desc_.count));
  }
  return 0;
}

absl::Status KhoXarray::Validate() const {
  absl::ReaderMutexLock lock(&mu_);
  if (mode_ == Mode::kUnused) return absl::OkStatus();
  if (desc_.magic != abi::kKhoXarrayMagic || desc_.version != abi::kKhoXarrayVersion ||
      desc_.key_bits != shape_.key_bits || desc_.depth != shape_.depth ||
      desc_.page_shift != shape_.page_shift) {
    return KernelErrorToStatus(-EINVAL, "kho_xarray: descriptor does not match the map's shape");
  }
  std::string why;
  if (CheckLocked(&why, nullptr) != 0) return KernelErrorToStatus(-EINVAL, "kho_xarray: " + why);
  if (home_ != nullptr && std::memcmp(home_, &desc_, sizeof(desc_)) != 0) {
    return KernelErrorToStatus(-EINVAL, "kho_xarray: the descriptor at home is out of date");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Incoming

int KhoXarray::RejectLocked(const std::string& why) {
  KernelContext& ctx = RequireKernelContext();
  ctx.Log(absl::StrCat("kho_xarray: rejecting incoming map: ", why));
  ctx.Trace("kho", "xarray_restore_rejected", {{"why", why}});
  mode_ = Mode::kUnused;
  shape_ = Shape{};
  desc_ = abi::KhoXarrayDesc{};
  home_ = nullptr;
  generation_.fetch_add(1, std::memory_order_release);
  return -EINVAL;
}

int KhoXarray::Restore(const abi::KhoXarrayDesc& desc) {
  absl::MutexLock lock(&mu_);
  if (mode_ != Mode::kUnused && desc_.root != 0) return -EBUSY;
  KernelContext& ctx = RequireKernelContext();
  abi::KhoXarrayDesc d;
  std::memcpy(&d, &desc, sizeof(d));
  if (d.magic != abi::kKhoXarrayMagic) {
    return RejectLocked(absl::StrFormat("bad magic 0x%x", d.magic));
  }
  if (d.version != abi::kKhoXarrayVersion) {
    return RejectLocked(absl::StrFormat("unsupported version %d", d.version));
  }
  if (d.reserved0 != 0 || d.reserved1 != 0 || d.reserved2 != 0) {
    return RejectLocked("reserved fields are not zero");
  }
  const unsigned page_shift = CurrentMm().geometry().page_shift;
  if (d.page_shift != page_shift) {
    return RejectLocked(absl::StrFormat("written with page_shift %d, this kernel uses %d",
                                        d.page_shift, page_shift));
  }
  if (d.key_bits < 1 || d.key_bits > abi::kKhoXarrayMaxKeyBits) {
    return RejectLocked(absl::StrFormat("key width %d", d.key_bits));
  }
  if (d.depth != abi::KhoXarrayDepth(d.key_bits, page_shift)) {
    return RejectLocked(absl::StrFormat("depth %d does not fit a %d-bit key", d.depth, d.key_bits));
  }
  mode_ = Mode::kIncoming;
  shape_ = ShapeFor(d.key_bits, page_shift);
  desc_ = d;
  home_ = nullptr;
  std::string why;
  std::vector<NodeUse> nodes;
  if (CheckLocked(&why, &nodes) != 0) return RejectLocked(why);
  generation_.fetch_add(1, std::memory_order_release);
  ctx.Trace("kho", "xarray_restore",
            {{"entries", absl::StrCat(desc_.count)}, {"nodes", absl::StrCat(nodes.size())}});
  return 0;
}

int KhoXarray::Adopt(abi::KhoXarrayDesc* home) {
  absl::MutexLock lock(&mu_);
  if (mode_ != Mode::kIncoming) return -EINVAL;
  KernelContext& ctx = RequireKernelContext();
  std::string why;
  std::vector<NodeUse> nodes;
  if (CheckLocked(&why, &nodes) != 0) {
    ctx.Log(absl::StrCat("kho_xarray: cannot adopt: ", why));
    return -EINVAL;
  }
  mm::Mm& mm = CurrentMm();
  Kho& kho = Kho::Current();
  // Preserve first: it is the step that can fail, and it leaves the pages
  // untouched, so undoing it is exact.
  size_t preserved = 0;
  int err = 0;
  for (; preserved < nodes.size(); ++preserved) {
    err = kho.PreservePages(mm.PhysToPage(PhysAddr(nodes[preserved].pa)), 1);
    if (err != 0) break;
  }
  if (err != 0) {
    for (size_t i = 0; i < preserved; ++i)
      kho.UnpreservePages(mm.PhysToPage(PhysAddr(nodes[i].pa)), 1);
    return err;
  }
  for (const NodeUse& node : nodes) {
    struct folio* folio = kho.RestoreFolio(PhysAddr(node.pa));
    KHOSIM_BUG_ON(ctx, folio == nullptr, "kho_xarray: a checked node failed to restore");
    UseCount(node.pa) = node.used;
  }
  mode_ = Mode::kOutgoing;
  home_ = home;
  Publish();
  ctx.Trace("kho", "xarray_adopt",
            {{"entries", absl::StrCat(desc_.count)}, {"nodes", absl::StrCat(nodes.size())}});
  return 0;
}

}  // namespace khosim::kho

// ---------------------------------------------------------------------------
// Kernel face (khosim/linux/kho_xarray.h)

int kho_xa_init(struct kho_xarray* xa, unsigned int key_bits, struct kho_xa_desc* desc) {
  return xa->Init(key_bits, desc);
}

void kho_xa_destroy(struct kho_xarray* xa) { xa->Destroy(); }

int kho_xa_store(struct kho_xarray* xa, u64 index, u64 entry) { return xa->Store(index, entry); }

int kho_xa_erase(struct kho_xarray* xa, u64 index) { return xa->Erase(index); }

u64 kho_xa_load(struct kho_xarray* xa, u64 index) {
  uint64_t entry = 0;
  return xa->Load(index, &entry) ? entry : 0;
}

u64 kho_xa_find(struct kho_xarray* xa, u64* index) {
  uint64_t i = *index;
  uint64_t entry = 0;
  if (!xa->Find(&i, &entry)) return 0;
  *index = i;
  return entry;
}

u64 kho_xa_find_after(struct kho_xarray* xa, u64* index) {
  uint64_t i = *index;
  uint64_t entry = 0;
  if (!xa->FindAfter(&i, &entry)) return 0;
  *index = i;
  return entry;
}

u64 kho_xa_count(struct kho_xarray* xa) { return xa->Count(); }

void kho_xa_get_desc(struct kho_xarray* xa, struct kho_xa_desc* desc) {
  const khosim::abi::KhoXarrayDesc d = xa->descriptor();
  std::memcpy(static_cast<void*>(desc), &d, sizeof(d));
}

int kho_xa_restore(struct kho_xarray* xa, const struct kho_xa_desc* desc) {
  if (desc == nullptr) return -EINVAL;
  return xa->Restore(*desc);
}

int kho_xa_adopt(struct kho_xarray* xa, struct kho_xa_desc* desc) { return xa->Adopt(desc); }

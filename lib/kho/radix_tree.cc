// RadixTree: the preservation tracker kept in simulated physical pages.
//
// Lifecycle:
//   kernel A    Init() allocates an empty root; every preserve call adds one
//               key per block (AddKey grows a path on demand, rolling back
//               the pages it allocated if it cannot finish); unpreserve
//               clears bits but keeps the nodes. At kexec nothing is
//               serialized: the root's physical address goes into the root
//               FDT and the pages themselves are the handover.
//   kernel B    Adopt() takes the root found in the FDT; Walk() reports
//               every key (to reserve the blocks) and every node page (to
//               keep the tracker's own pages busy until they are released).
//               The walk checks each pointer before following it, because
//               these bytes come from another kernel.
//   teardown    Destroy() frees every node page when an outgoing tree is
//               abandoned.
//
// Layout reminders: an interior node is page_size / 8 little-endian u64
// child addresses; a leaf is a bitmap whose bit i is bit (i % 8) of byte
// (i / 8), which is also bit (i % 64) of little-endian u64 word (i / 64).
#include "khosim/kho/radix_tree.h"

#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "khosim/base/errno_status.h"

namespace khosim::kho {
namespace {

static_assert(std::endian::native == std::endian::little,
              "node pages are read as little-endian u64 words");

// Bound on the levels one AddKey can allocate: a key has at most 64 bits and
// every level consumes at least one (4 KiB pages use 6 levels).
constexpr int kMaxDepth = 64;

uint64_t LoadWord(const uint8_t* page, uint64_t index) {
  uint64_t value;
  std::memcpy(&value, page + index * sizeof(uint64_t), sizeof(value));
  return value;
}

void StoreWord(uint8_t* page, uint64_t index, uint64_t value) {
  std::memcpy(page + index * sizeof(uint64_t), &value, sizeof(value));
}

bool BlockFits(const RadixGeometry& geometry, PhysAddr pa, unsigned order) {
  if (order > geometry.max_order()) return false;
  const unsigned shift = geometry.page_shift + order;
  if (shift >= 64) return pa.IsNull();
  return IsAligned(pa.value(), uint64_t{1} << shift);
}

}  // namespace

uint64_t EncodeKey(const RadixGeometry& geometry, PhysAddr pa, unsigned order) {
  if (order > geometry.max_order()) return 0;
  const unsigned shift = geometry.page_shift + order;
  const uint64_t frame = shift >= 64 ? 0 : pa.value() >> shift;
  return (uint64_t{1} << (geometry.order0_bit() - order)) | frame;
}

bool KeyInRange(const RadixGeometry& geometry, uint64_t key) {
  return key != 0 && static_cast<unsigned>(std::bit_width(key)) <= geometry.key_width;
}

bool DecodeKey(const RadixGeometry& geometry, uint64_t key, PhysAddr* pa, unsigned* order) {
  if (!KeyInRange(geometry, key)) return false;
  const unsigned order_bit = static_cast<unsigned>(std::bit_width(key)) - 1;
  const uint64_t frame = key & ~(uint64_t{1} << order_bit);
  const unsigned block_order = geometry.order0_bit() - order_bit;
  const unsigned shift = geometry.page_shift + block_order;
  *order = block_order;
  *pa = PhysAddr(shift >= 64 ? 0 : frame << shift);
  return true;
}

unsigned LevelIndex(const RadixGeometry& geometry, uint64_t key, int level) {
  return static_cast<unsigned>((key >> geometry.LevelShift(level)) &
                               (geometry.table_entries() - 1));
}

unsigned LeafBit(const RadixGeometry& geometry, uint64_t key) {
  return static_cast<unsigned>(key & (geometry.bitmap_bits() - 1));
}

// What one walk carries down the recursion.
struct RadixTree::WalkState {
  const RadixLeafFn* leaf_cb = nullptr;  // null: leaves are not scanned
  const RadixNodeFn* node_cb = nullptr;
  // Validate(): children must sit in slots that some in-range key reaches.
  bool check_slots = false;
  absl::flat_hash_set<uint64_t> visited;
  // Why the walk refused the tree (set with -EINVAL from the checks).
  std::string fault;
};

RadixTree::RadixTree(RadixGeometry geometry, RadixNodeMemory& memory)
    : geometry_(geometry), memory_(memory) {}

int RadixTree::Init() {
  absl::MutexLock lock(&mu_);
  if (!root_.IsNull()) return -EEXIST;
  const PhysAddr root = memory_.AllocNode();
  if (root.IsNull()) return -ENOMEM;
  root_ = root;
  return 0;
}

void RadixTree::Adopt(PhysAddr root) {
  absl::MutexLock lock(&mu_);
  root_ = root;
}

PhysAddr RadixTree::root() const {
  absl::ReaderMutexLock lock(&mu_);
  return root_;
}

int RadixTree::AddKey(uint64_t key) {
  absl::MutexLock lock(&mu_);
  if (root_.IsNull()) return -EINVAL;
  if (!KeyInRange(geometry_, key)) return -ERANGE;

  // Pages this call allocated, in allocation order, and the slot of a
  // pre-existing node that the first of them hangs from.
  std::array<PhysAddr, kMaxDepth> fresh;
  int fresh_count = 0;
  uint8_t* anchor_page = nullptr;
  unsigned anchor_slot = 0;
  auto undo = [&](int err) {
    if (anchor_page != nullptr) StoreWord(anchor_page, anchor_slot, 0);
    while (fresh_count > 0) memory_.FreeNode(fresh[--fresh_count]);
    return err;
  };
  auto map = [&](PhysAddr page) -> uint8_t* {
    if (!geometry_.IsPageAligned(page.value())) return nullptr;
    return memory_.MapNode(page);
  };

  PhysAddr node = root_;
  for (int level = static_cast<int>(geometry_.depth) - 1; level >= 1; --level) {
    uint8_t* page = map(node);
    if (page == nullptr) return undo(-EFAULT);
    const unsigned slot = LevelIndex(geometry_, key, level);
    uint64_t child = LoadWord(page, slot);
    if (child == 0) {
      const PhysAddr created = memory_.AllocNode();
      if (created.IsNull()) return undo(-ENOMEM);
      fresh[fresh_count++] = created;
      if (anchor_page == nullptr) {
        anchor_page = page;
        anchor_slot = slot;
      }
      StoreWord(page, slot, created.value());
      child = created.value();
    }
    node = PhysAddr(child);
  }
  uint8_t* leaf = map(node);
  if (leaf == nullptr) return undo(-EFAULT);
  const unsigned bit = LeafBit(geometry_, key);
  leaf[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
  return 0;
}

uint8_t* RadixTree::FindLeaf(uint64_t key, int* err) const {
  PhysAddr node = root_;
  for (int level = static_cast<int>(geometry_.depth) - 1; level >= 0; --level) {
    uint8_t* page = geometry_.IsPageAligned(node.value()) ? memory_.MapNode(node) : nullptr;
    if (page == nullptr) {
      *err = -EFAULT;
      return nullptr;
    }
    if (level == 0) return page;
    const uint64_t child = LoadWord(page, LevelIndex(geometry_, key, level));
    if (child == 0) {
      *err = -ENOENT;
      return nullptr;
    }
    node = PhysAddr(child);
  }
  *err = -EFAULT;
  return nullptr;
}

int RadixTree::DelKey(uint64_t key) {
  absl::MutexLock lock(&mu_);
  if (root_.IsNull()) return -EINVAL;
  if (!KeyInRange(geometry_, key)) return -ERANGE;
  int err = 0;
  uint8_t* leaf = FindLeaf(key, &err);
  if (leaf == nullptr) return err;
  const unsigned bit = LeafBit(geometry_, key);
  leaf[bit / 8] &= static_cast<uint8_t>(~(1u << (bit % 8)));
  return 0;
}

bool RadixTree::Contains(uint64_t key) const {
  absl::ReaderMutexLock lock(&mu_);
  if (root_.IsNull() || !KeyInRange(geometry_, key)) return false;
  int err = 0;
  const uint8_t* leaf = FindLeaf(key, &err);
  if (leaf == nullptr) return false;
  const unsigned bit = LeafBit(geometry_, key);
  return (leaf[bit / 8] >> (bit % 8)) & 1;
}

int RadixTree::AddBlock(PhysAddr pa, unsigned order) {
  if (!BlockFits(geometry_, pa, order)) return -EINVAL;
  return AddKey(EncodeKey(geometry_, pa, order));
}

int RadixTree::DelBlock(PhysAddr pa, unsigned order) {
  if (!BlockFits(geometry_, pa, order)) return -EINVAL;
  return DelKey(EncodeKey(geometry_, pa, order));
}

bool RadixTree::ContainsBlock(PhysAddr pa, unsigned order) const {
  if (!BlockFits(geometry_, pa, order)) return false;
  return Contains(EncodeKey(geometry_, pa, order));
}

int RadixTree::WalkNode(WalkState& state, PhysAddr node, int level, uint64_t prefix) const {
  auto refuse = [&](absl::string_view why) {
    state.fault = absl::StrFormat("radix node %#x at level %d: %s", node.value(), level, why);
    return -EINVAL;
  };
  if (!geometry_.IsPageAligned(node.value())) return refuse("not page aligned");
  if (state.visited.contains(node.value())) return refuse("reached twice (cycle or shared child)");
  const uint8_t* page = memory_.MapNode(node);
  if (page == nullptr) return refuse("not a usable RAM page");
  state.visited.insert(node.value());

  if (state.node_cb != nullptr && *state.node_cb) {
    if (const int ret = (*state.node_cb)(node, level); ret != 0) return ret;
  }

  const uint64_t words = geometry_.page_size() / sizeof(uint64_t);
  if (level == 0) {
    if (state.leaf_cb == nullptr) return 0;
    for (uint64_t w = 0; w < words; ++w) {
      uint64_t bits = LoadWord(page, w);
      while (bits != 0) {
        const uint64_t bit = w * 64 + static_cast<uint64_t>(std::countr_zero(bits));
        bits &= bits - 1;
        if (const int ret = (*state.leaf_cb)(prefix | bit); ret != 0) return ret;
      }
    }
    return 0;
  }

  const unsigned shift = geometry_.LevelShift(level);
  for (uint64_t slot = 0; slot < words; ++slot) {
    const uint64_t child = LoadWord(page, slot);
    if (child == 0) continue;
    const uint64_t child_prefix = prefix | (slot << shift);
    if (state.check_slots && (child_prefix >> geometry_.key_width) != 0) {
      return refuse(absl::StrFormat("child in slot %u holds only keys wider than %u bits", slot,
                                    geometry_.key_width));
    }
    if (const int ret = WalkNode(state, PhysAddr(child), level - 1, child_prefix); ret != 0) {
      return ret;
    }
  }
  return 0;
}

int RadixTree::WalkLocked(WalkState& state) const {
  if (root_.IsNull()) return 0;
  return WalkNode(state, root_, static_cast<int>(geometry_.depth) - 1, 0);
}

int RadixTree::Walk(const RadixLeafFn& leaf_cb, const RadixNodeFn& node_cb) const {
  absl::ReaderMutexLock lock(&mu_);
  WalkState state;
  state.leaf_cb = leaf_cb ? &leaf_cb : nullptr;
  state.node_cb = &node_cb;
  return WalkLocked(state);
}

uint64_t RadixTree::NodeCount() const {
  absl::ReaderMutexLock lock(&mu_);
  uint64_t count = 0;
  const RadixNodeFn count_node = [&count](PhysAddr, int) {
    ++count;
    return 0;
  };
  WalkState state;
  state.node_cb = &count_node;
  WalkLocked(state);
  return count;
}

void RadixTree::Destroy() {
  absl::MutexLock lock(&mu_);
  std::vector<PhysAddr> pages;
  const RadixNodeFn collect = [&pages](PhysAddr node, int) {
    pages.push_back(node);
    return 0;
  };
  WalkState state;
  state.node_cb = &collect;
  WalkLocked(state);
  // Reverse pre-order: every page is freed before the node that points to it.
  for (auto it = pages.rbegin(); it != pages.rend(); ++it) memory_.FreeNode(*it);
  root_ = PhysAddr();
}

absl::Status RadixTree::Validate() const {
  absl::ReaderMutexLock lock(&mu_);
  WalkState state;
  state.check_slots = true;
  const RadixLeafFn check_key = [&](uint64_t key) {
    PhysAddr pa;
    unsigned order = 0;
    if (!DecodeKey(geometry_, key, &pa, &order)) {
      state.fault = absl::StrFormat("key %#x does not decode", key);
      return -EINVAL;
    }
    if (!BlockFits(geometry_, pa, order) || EncodeKey(geometry_, pa, order) != key) {
      state.fault = absl::StrFormat("key %#x decodes to a misaligned block %#x order %u", key,
                                    pa.value(), order);
      return -EINVAL;
    }
    return 0;
  };
  state.leaf_cb = &check_key;
  const int ret = WalkLocked(state);
  if (ret == 0) return absl::OkStatus();
  return KernelErrorToStatus(ret, absl::StrCat("radix tree: ", state.fault));
}

}  // namespace khosim::kho

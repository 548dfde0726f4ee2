// The KHO preservation tracker: a radix tree of preserved blocks that lives
// entirely in simulated physical pages (kho-v2 and later).
//
// What it records: a set of keys, one per preserved block of 2^order pages.
// A key packs the order and the block's physical address into one integer
// (see EncodeKey), so blocks of every order share one tree and keys of
// different orders never collide. The tree has RadixGeometry::depth levels:
// interior nodes (levels depth-1 .. 1) are pages of u64 child physical
// addresses (0 = absent), leaves (level 0) are pages used as bitmaps of
// 8 * page_size bits. The tree is the handover format itself: kernel A hands
// the root's physical address to kernel B, which walks the very same pages.
//
// Contract:
// - Node pages are reached only through RadixNodeMemory, by physical
//   address; nothing about the tree lives in host memory except the root
//   address, so a tree survives a simulated kexec as plain bytes.
// - Keys are a set: adding a present key succeeds and counts nothing;
//   deleting clears the bit whatever its state. Interior nodes are never
//   freed by deletion, only by Destroy().
// - AddKey either succeeds or leaves every node page byte-identical and
//   frees every page it allocated.
// - Walk() and Validate() treat the tree as hostile input (an incoming tree
//   from another kernel): child addresses must be page aligned and mappable,
//   and no page may be reached twice. They never follow a pointer they have
//   not checked. AddKey/DelKey/Contains trust the tree they mutate (it is
//   this kernel's own) but still refuse unmappable pages.
//
// Locking: one absl::Mutex per tree, mirroring the tracker's mutex (may
// sleep). Mutations hold it exclusively; Walk, NodeCount, Contains and
// Validate hold it shared for the whole call, so Walk callbacks must not
// mutate the same tree.
#ifndef KHOSIM_KHO_RADIX_TREE_H_
#define KHOSIM_KHO_RADIX_TREE_H_

#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/types.h"

namespace khosim::kho {

// The tree's shape for one page size. Every value derives from page_shift
// exactly as the kernel's constants do.
struct RadixGeometry {
  unsigned page_shift = 12;
  unsigned table_log2 = 9;    // log2(u64 slots per interior node)
  unsigned bitmap_log2 = 15;  // log2(bits per leaf)
  unsigned key_width = 53;    // widest key accepted, in bits
  unsigned depth = 6;         // levels, leaf included

  static constexpr RadixGeometry For(unsigned page_shift) {
    RadixGeometry g;
    g.page_shift = page_shift;
    g.table_log2 = page_shift - 3;
    g.bitmap_log2 = page_shift + 3;
    g.key_width = 64 - page_shift + 1;
    g.depth = (g.key_width - g.bitmap_log2 + g.table_log2 - 1) / g.table_log2 + 1;
    return g;
  }
  static constexpr RadixGeometry For(const PageGeometry& pages) { return For(pages.page_shift); }

  constexpr uint64_t page_size() const { return uint64_t{1} << page_shift; }
  constexpr uint64_t table_entries() const { return uint64_t{1} << table_log2; }
  constexpr uint64_t bitmap_bits() const { return uint64_t{1} << bitmap_log2; }
  constexpr bool IsPageAligned(uint64_t v) const { return (v & (page_size() - 1)) == 0; }
  // Position of the order bit of an order-0 key (52 with 4 KiB pages).
  constexpr unsigned order0_bit() const { return 64 - page_shift; }
  // Largest order a key can express (the whole 64-bit space at pa 0).
  constexpr unsigned max_order() const { return 64 - page_shift; }
  // Bit position where the index of |level| (1 .. depth-1) starts.
  constexpr unsigned LevelShift(int level) const {
    return bitmap_log2 + table_log2 * static_cast<unsigned>(level - 1);
  }
};

static_assert(RadixGeometry::For(12).depth == 6);
static_assert(RadixGeometry::For(14).depth == 5);
static_assert(RadixGeometry::For(16).depth == 4);

// Key of the block of 2^order pages at |pa|:
//   (1 << (64 - page_shift - order)) | (pa >> (page_shift + order)).
// Address bits below the block size are dropped (callers pass aligned
// blocks). Returns 0, which no tree accepts, if order > max_order().
uint64_t EncodeKey(const RadixGeometry& geometry, PhysAddr pa, unsigned order);

// Inverse of EncodeKey. False for key 0 and for keys wider than key_width;
// otherwise writes the block's address (aligned to its order by
// construction) and order.
bool DecodeKey(const RadixGeometry& geometry, uint64_t key, PhysAddr* pa, unsigned* order);

// Slot index of |key| in an interior node of |level| (1 .. depth-1).
unsigned LevelIndex(const RadixGeometry& geometry, uint64_t key, int level);

// Bit index of |key| in its leaf.
unsigned LeafBit(const RadixGeometry& geometry, uint64_t key);

// True if |key| is one a tree can hold: non-zero and no wider than
// key_width.
bool KeyInRange(const RadixGeometry& geometry, uint64_t key);

// Where node pages come from and how their bytes are reached. The kernel's
// implementation allocates from memblock or the buddy allocator and maps
// through the physical memory model; tests use a private page pool.
class RadixNodeMemory {
 public:
  virtual ~RadixNodeMemory() = default;
  // A zero-filled page for a new node; a null address on failure.
  virtual PhysAddr AllocNode() = 0;
  // Returns a page obtained from AllocNode (or, on the incoming side, a node
  // page of an adopted tree).
  virtual void FreeNode(PhysAddr page) = 0;
  // The page's bytes (page_size of them), or nullptr if |page| is not a
  // usable RAM page: unaligned, outside RAM, or pfn 0. The pointer stays
  // valid until the page is freed.
  virtual uint8_t* MapNode(PhysAddr page) = 0;
};

// Visits one key; a non-zero return stops the walk and becomes its result.
using RadixLeafFn = std::function<int(uint64_t key)>;
// Visits one node page at |level| (depth-1 for the root, 0 for leaves)
// before any of its children; a non-zero return stops the walk.
using RadixNodeFn = std::function<int(PhysAddr node, int level)>;

class RadixTree {
 public:
  RadixTree(RadixGeometry geometry, RadixNodeMemory& memory);
  RadixTree(const RadixTree&) = delete;
  RadixTree& operator=(const RadixTree&) = delete;
  // Does not free node pages: an outgoing tree must outlive the kexec and
  // an incoming one belongs to the memory it was found in. Call Destroy()
  // to release them.
  ~RadixTree() = default;

  const RadixGeometry& geometry() const { return geometry_; }

  // Allocates an empty root (outgoing side). -EEXIST if the tree already
  // has a root, -ENOMEM if the page cannot be allocated.
  int Init() ABSL_LOCKS_EXCLUDED(mu_);
  // Takes |root| as the tree's root (incoming side, or a tree handed over
  // in place). Nothing is read or checked here; run Validate() or a Walk()
  // before trusting it. A previous root is forgotten, not freed. A null
  // address leaves the tree without a root.
  void Adopt(PhysAddr root) ABSL_LOCKS_EXCLUDED(mu_);
  // The root's physical address; null if the tree has none.
  PhysAddr root() const ABSL_LOCKS_EXCLUDED(mu_);

  // Adds |key|, allocating missing interior nodes and the leaf from the top
  // level down. Errors, in the order checked:
  //   -EINVAL  the tree has no root;
  //   -ERANGE  key is 0 or wider than key_width;
  //   -EFAULT  a node on the path is not a mappable page (corrupted tree);
  //   -ENOMEM  a node could not be allocated.
  // On -EFAULT and -ENOMEM every page this call allocated is freed and the
  // slot that anchored them is cleared again: the tree is byte-identical to
  // before the call. A key already present is success.
  int AddKey(uint64_t key) ABSL_LOCKS_EXCLUDED(mu_);
  // Clears |key|. -EINVAL without a root, -ERANGE for a key out of range,
  // -ENOENT if a node on the path is absent (the caller decides whether to
  // WARN), -EFAULT for an unmappable node. 0 otherwise, also when the bit
  // was already clear. Never frees a node.
  int DelKey(uint64_t key) ABSL_LOCKS_EXCLUDED(mu_);
  // True if |key| is in range and its bit is set.
  bool Contains(uint64_t key) const ABSL_LOCKS_EXCLUDED(mu_);

  // Block forms of the above. |pa| must be aligned to 2^order pages and
  // order <= max_order(): otherwise -EINVAL (AddBlock/DelBlock) or false
  // (ContainsBlock).
  int AddBlock(PhysAddr pa, unsigned order) ABSL_LOCKS_EXCLUDED(mu_);
  int DelBlock(PhysAddr pa, unsigned order) ABSL_LOCKS_EXCLUDED(mu_);
  bool ContainsBlock(PhysAddr pa, unsigned order) const ABSL_LOCKS_EXCLUDED(mu_);

  // Depth-first walk: child slots ascending, leaf bits ascending, so keys
  // arrive in ascending order. |node_cb| (optional) sees every node page
  // once, before its children. Returns the first non-zero callback result,
  // -EINVAL if a child (or the root) is unaligned, unmappable, or a page
  // already reached (cycle, shared child), else 0. A tree without a root
  // has nothing to visit. Keys are passed as found: on a hostile tree they
  // may be undecodable, so leaf callbacks decode with DecodeKey.
  int Walk(const RadixLeafFn& leaf_cb, const RadixNodeFn& node_cb = nullptr) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Node pages reachable from the root, root and leaves included (counting
  // stops at the first hostile pointer).
  uint64_t NodeCount() const ABSL_LOCKS_EXCLUDED(mu_);

  // Frees every reachable node page, root included, and leaves the tree
  // without a root (outgoing side: abort, or a kernel that will not kexec).
  // A corrupted tree is freed as far as the walk's checks allow.
  void Destroy() ABSL_LOCKS_EXCLUDED(mu_);

  // Checks what Walk checks, and that every child sits in a slot a valid
  // key can reach and every set bit decodes to a block (aligned to its
  // order, by the encoding). A tree without a root is valid. Errors carry
  // EINVAL (see errno_status.h) and name the offending page.
  absl::Status Validate() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct WalkState;

  // The leaf page holding |key|'s bit; nullptr with *err set if a node on
  // the path is absent (-ENOENT) or unmappable (-EFAULT).
  uint8_t* FindLeaf(uint64_t key, int* err) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int WalkNode(WalkState& state, PhysAddr node, int level, uint64_t prefix) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int WalkLocked(WalkState& state) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const RadixGeometry geometry_;
  RadixNodeMemory& memory_;
  mutable absl::Mutex mu_;
  PhysAddr root_ ABSL_GUARDED_BY(mu_);
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_RADIX_TREE_H_

// KhoXarray: a u64 index -> u64 entry map whose nodes are preserved pages
// (C++ face; the kernel face is khosim/linux/kho_xarray.h, the wire format
// khosim/abi/kho_xarray.h, the proposal docs/kho-xarray.md).
//
// The map never serializes. Every node page comes from kho_alloc_preserve
// and the descriptor (root address, entry count, shape) is kept current on
// every change, optionally mirrored into a |home| inside a preserved blob,
// so at any moment - including after the owner has registered it for
// handover - the pages and the descriptor are what the next kernel reads.
// A memfd that faults in a page after preservation simply stores it.
//
// Entries are words: 0 means absent, so a store of 0 is refused; build
// words with MakeValue (tagged integers up to 2^63 - 1, so a stored 0 is
// the word 1) or MakePhys (even, non-zero physical addresses).
//
// Lifecycles:
//   outgoing  Init -> Store/Erase/Load/Find ... -> (kexec, or Destroy, which
//             unpreserves and frees every node)
//   incoming  Restore(desc) validates the previous kernel's map without
//             taking anything; then exactly one of
//               (a) read in place: Load/Find/ForEach, then Destroy, which
//                   restores and frees every node (kho_restore_free);
//               (b) Convert: copy into a host btree_map and free the nodes;
//               (c) Adopt: re-preserve every node in this kernel's tracker,
//                   restore it into live memory, and continue as an
//                   outgoing map (mutable, handed over at the next kexec).
//             An incoming map refuses Store/Erase with -EINVAL until
//             adopted.
//
// Node lifetime: a node's use count (non-empty slots) lives in the node
// page's struct page private field of the kernel that owns the map, never
// in the handed-over bytes. A store that fills a slot increments it; an
// erase that empties the last slot of a node frees the node (unpreserving
// it) and clears the parent's slot, bottom-up to the root. An incoming map
// keeps no counts (the private field holds the KHO tag until restore);
// Adopt computes them.
//
// Restore treats the bytes as hostile: see Restore() for every check.
//
// The state is the kernel face's plain struct kho_xarray: a KhoXarray is
// exactly one (standard layout, pointer-interconvertible), so the kernel
// face runs these methods on a handler's struct through From().
//
// Locking: the map's spinlock (struct kho_xarray::lock), taken by every
// call. ForEach holds it only while it copies one leaf's entries, never
// across its callback, so the callback may store and erase. Node
// allocation happens under it (simulated kernel code never sleeps).
#ifndef KHOSIM_KHO_KHO_XARRAY_H_
#define KHOSIM_KHO_KHO_XARRAY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "khosim/abi/kho_xarray.h"
#include "khosim/base/types.h"
#include "khosim/linux/kho_xarray.h"

namespace khosim::kho {

class KhoXarray {
 public:
  KhoXarray() = default;
  // Frees nothing: node pages belong to the kernel (an outgoing map's pages
  // are meant to outlive it across the kexec). Call Destroy() to give them
  // back.
  ~KhoXarray() = default;
  KhoXarray(const KhoXarray&) = delete;
  KhoXarray& operator=(const KhoXarray&) = delete;

  // The map whose state is |xa| (the kernel face's handle).
  static KhoXarray& From(struct kho_xarray* xa) { return *reinterpret_cast<KhoXarray*>(xa); }
  struct kho_xarray* raw() {
    return &xa_;
  }

  // Entry words (see the file comment and abi/kho_xarray.h). A helper
  // returns 0 for what it cannot encode (a value above 2^63 - 1, an odd or
  // zero address), and Store refuses 0.
  static constexpr uint64_t MakeValue(uint64_t v) { return abi::KhoXarrayMakeValue(v); }
  static constexpr uint64_t MakePhys(PhysAddr pa) { return abi::KhoXarrayMakePhys(pa.value()); }
  static constexpr bool IsValue(uint64_t word) { return abi::KhoXarrayIsValue(word); }
  static constexpr uint64_t ValueOf(uint64_t word) { return abi::KhoXarrayToValue(word); }
  static constexpr bool IsPhys(uint64_t word) { return abi::KhoXarrayIsPhys(word); }
  static constexpr PhysAddr PhysOf(uint64_t word) { return PhysAddr(abi::KhoXarrayToPhys(word)); }

  // Outgoing: an empty map for indices below 2^key_bits. |home|, if given,
  // receives the descriptor now and after every change (put it inside a
  // preserved blob to hand the map over with no step at reboot). -EINVAL
  // for key_bits outside 1..64, -EBUSY if the map still holds nodes.
  int Init(unsigned key_bits, abi::KhoXarrayDesc* home = nullptr) ABSL_LOCKS_EXCLUDED(xa_.lock);

  // Sets |index| to |entry|, allocating the missing nodes of its path.
  // Errors, in the order checked:
  //   -EINVAL  not initialized, an incoming map not adopted, or entry 0;
  //   -ERANGE  index >= 2^key_bits;
  //   -ENOMEM  (or another kho_alloc_preserve error) a node could not be
  //            allocated: the nodes this call allocated are freed and
  //            the map is byte-identical to before.
  // Replacing an entry is success and leaves Count() unchanged.
  int Store(uint64_t index, uint64_t entry) ABSL_LOCKS_EXCLUDED(xa_.lock);
  // Clears |index| and frees every node left empty, bottom-up. -EINVAL
  // (not initialized, incoming), -ERANGE, -ENOENT if nothing is stored
  // there. |old| (optional) receives the erased word.
  int Erase(uint64_t index, uint64_t* old = nullptr) ABSL_LOCKS_EXCLUDED(xa_.lock);
  // True and *entry set if |index| holds an entry.
  bool Load(uint64_t index, uint64_t* entry) const ABSL_LOCKS_EXCLUDED(xa_.lock);
  // The first entry at an index >= *index (Find) or > *index (FindAfter):
  // true with both written, false (nothing written) if there is none.
  bool Find(uint64_t* index, uint64_t* entry) const ABSL_LOCKS_EXCLUDED(xa_.lock);
  bool FindAfter(uint64_t* index, uint64_t* entry) const ABSL_LOCKS_EXCLUDED(xa_.lock);
  // Calls |fn|(index, entry) in ascending index order from |start| until it
  // returns false; entries stored or erased by |fn| ahead of the cursor
  // are seen or skipped accordingly.
  void ForEach(uint64_t start, const std::function<bool(uint64_t, uint64_t)>& fn) const
      ABSL_LOCKS_EXCLUDED(xa_.lock);

  uint64_t Count() const ABSL_LOCKS_EXCLUDED(xa_.lock);
  // Node pages reachable from the root.
  uint64_t NodeCount() const ABSL_LOCKS_EXCLUDED(xa_.lock);
  // The current descriptor (what |home| holds), for owners that embed it
  // themselves. All zero before Init/Restore.
  abi::KhoXarrayDesc descriptor() const ABSL_LOCKS_EXCLUDED(xa_.lock);
  unsigned key_bits() const ABSL_LOCKS_EXCLUDED(xa_.lock);
  unsigned depth() const ABSL_LOCKS_EXCLUDED(xa_.lock);
  uint64_t max_index() const ABSL_LOCKS_EXCLUDED(xa_.lock);
  bool initialized() const ABSL_LOCKS_EXCLUDED(xa_.lock);
  bool incoming() const ABSL_LOCKS_EXCLUDED(xa_.lock);

  // Frees every node: outgoing maps unpreserve and free
  // (kho_unpreserve_free), incoming maps restore and free
  // (kho_restore_free). The map stays initialized, empty, and in the same
  // direction.
  void Destroy() ABSL_LOCKS_EXCLUDED(xa_.lock);

  // Incoming: validates |desc| (copied once; the caller's bytes are not
  // read again) and the nodes it names, taking nothing. -EBUSY if this map
  // holds nodes; otherwise -EINVAL, with a kernel log line naming the
  // reason, unless all of these hold:
  //   magic, version, reserved fields zero, page_shift == this kernel's,
  //   key_bits in 1..64, depth == KhoXarrayDepth(key_bits, page_shift);
  //   root == 0 exactly when count == 0;
  //   every node address (root included) page aligned, RAM, and the head
  //   of an order-0 block preserved by the previous kernel and not yet
  //   restored (Kho::IsPreservedHead);
  //   no node reached twice (cycles, shared children);
  //   no root slot beyond 2^root_bits, no empty node;
  //   the leaves hold exactly |count| non-zero words.
  // On failure the map is left uninitialized and no page is restored: a
  // hostile descriptor may name pages that another owner will restore.
  int Restore(const abi::KhoXarrayDesc& desc) ABSL_LOCKS_EXCLUDED(xa_.lock);
  // Incoming -> outgoing: preserves every node in this kernel's tracker,
  // then restores each into live memory and sets its use count. -EINVAL if
  // the map is not an incoming one or a node is no longer a restorable
  // head; a kho_preserve_pages error (-ENOMEM) undoes the preservations
  // this call made and leaves the map incoming and unchanged. |home| as in
  // Init.
  int Adopt(abi::KhoXarrayDesc* home = nullptr) ABSL_LOCKS_EXCLUDED(xa_.lock);
  // Copies every entry into |out| (added to what it holds), then Destroy().
  void Convert(absl::btree_map<uint64_t, uint64_t>* out) ABSL_LOCKS_EXCLUDED(xa_.lock);

  // Outgoing maps: every node page aligned RAM and preserved in this
  // kernel's tracker, reached once, non-empty, its use count equal to its
  // non-empty slots; no root slot beyond the key width; leaf words summing
  // to Count(); the descriptor consistent and mirrored at |home|.
  // Incoming maps: what Restore checks. Errors carry EINVAL.
  absl::Status Validate() const ABSL_LOCKS_EXCLUDED(xa_.lock);

 private:
  // One node reached by a checked walk.
  struct NodeUse {
    uint64_t pa;
    uint64_t used;  // non-empty slots
  };

  // Index bits one node level consumes (the descriptor records the shape).
  unsigned SlotBitsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  // Derives slot_bits and root_bits from the descriptor (zeros for none).
  void SetShapeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  uint64_t SlotsAt(int level) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  unsigned SlotOf(uint64_t index, int level) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  uint64_t MaxIndexLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  // The node page through the direct map, and one little-endian word of it.
  static const uint8_t* NodeBytes(uint64_t node);
  static uint64_t LoadWord(const uint8_t* node, uint64_t slot);
  // The first slot in [from, slots) holding a non-zero word, or |slots|.
  static uint64_t NextUsedSlot(const uint8_t* node, uint64_t from, uint64_t slots);
  // slot_fn(slot, word) for each non-zero word in [first, slots), in order,
  // until it returns false.
  template <typename SlotFn>
  static void ForEachUsedSlot(const uint8_t* node, uint64_t first, uint64_t slots,
                              SlotFn&& slot_fn);
  uint64_t Word(uint64_t node, uint64_t slot) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  void SetWord(uint64_t node, uint64_t slot, uint64_t word) ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  unsigned long& UseCount(uint64_t node) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  int AllocNode(uint64_t* pa) ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  void FreeNode(uint64_t pa) ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  // After every change: bumps the generation and mirrors the descriptor home.
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  bool FindLocked(uint64_t start, uint64_t* index, uint64_t* entry) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  // In-order walk of the leaves that may hold an entry at an index >=
  // |start|: calls leaf_fn(prefix, leaf, first_slot, slots), where the
  // entry at slot i has index prefix | i, until it returns false. One
  // descent per leaf, not per entry.
  template <typename LeafFn>
  void WalkLeavesLocked(uint64_t start, LeafFn&& leaf_fn) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  // Every node page, parents before children, trusting the map.
  std::vector<uint64_t> NodesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  void DestroyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  // The checked walk behind Restore, Adopt and Validate: -EINVAL with *why
  // set at the first violation; |nodes| receives every node reached.
  int CheckLocked(std::string* why, std::vector<NodeUse>* nodes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  // Is |pa| a node page a map may use: preserved in this kernel's tracker
  // (outgoing) or an unrestored order-0 preserved head (incoming)?
  static bool NodeIsPreserved(uint64_t pa, bool incoming);
  // Restore's failure path: logs |why|, forgets the descriptor, -EINVAL.
  int RejectLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);

  void BumpGenerationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(xa_.lock);
  uint64_t CurrentGeneration() const { return __atomic_load_n(&xa_.generation, __ATOMIC_ACQUIRE); }

  // The whole state; mutable so that lookups can take the lock.
  mutable struct kho_xarray xa_ = {};
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_KHO_XARRAY_H_

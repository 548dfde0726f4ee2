// KHO xarray wire format (<linux/kho/abi/xarray.h>; khosim's proposal
// "kho-xarray-v1", upstream has only an unposted draft, see
// docs/kho-xarray.md).
//
// A map from u64 index to u64 entry whose nodes are preserved pages. The
// pages ARE the handover state: kernel B reads the very bytes kernel A wrote.
//
// Descriptor: the packed 32-byte struct kho_xa_desc below, embedded by its
// owner in a preserved blob (a KHO subtree, a handler's record).
//
// Nodes: one page each, headerless, page_size / 8 little-endian u64 slots
// (512 with 4 KiB pages). The tree has a fixed depth derived from the key
// width: every index is reached through exactly |depth| nodes, level
// depth-1 (the root) down to level 0 (the leaf). Slot s of a node at level L
// covers index bits [L * slot_bits, (L + 1) * slot_bits).
//   - interior slot: 0 = no child, else the page-aligned physical address of
//     the child node (itself a preserved order-0 page);
//   - leaf slot: an entry word (encoding below), 0 = no entry.
// The root only uses its first 2^(key_bits - (depth-1) * slot_bits) slots;
// the rest are zero. No node is ever empty (a node whose last slot is
// cleared is freed and unlinked), so the root is 0 exactly when count is 0.
//
// Entry words (so that 0 can mean "absent" without a presence bitmap):
//   0            absent
//   bit 0 set    tagged integer: value = word >> 1 (0 .. 2^63 - 1)
//   even, != 0   a physical address (or any even non-zero word the owner
//                chooses; bits 1.. are the owner's, e.g. a page-aligned
//                folio address with its order in the low bits)
// The map never interprets an entry beyond "non-zero".
//
// Per-node use counts are runtime state (page->private of the node page in
// the kernel that owns the map) and are never part of these bytes.
//
// Page size is part of this ABI (the descriptor records it): a map cannot
// cross kernels with different page sizes. All values are native-endian
// (little-endian here).
#ifndef KHOSIM_LINUX_KHO_ABI_XARRAY_H_
#define KHOSIM_LINUX_KHO_ABI_XARRAY_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

#define KHO_XA_COMPATIBLE "kho-xarray-v1"
#define KHO_XA_MAGIC 0x4b584152U  // "KXAR"
#define KHO_XA_VERSION 1
#define KHO_XA_MAX_KEY_BITS 64

struct kho_xa_desc {
  u32 magic;      // KHO_XA_MAGIC
  u16 version;    // KHO_XA_VERSION
  u8 key_bits;    // 1..64: indices are < 2^key_bits
  u8 depth;       // levels: ceil(key_bits / (page_shift - 3))
  u8 page_shift;  // node size of the kernel that wrote the map
  u8 reserved0;   // 0
  u16 reserved1;  // 0
  u32 reserved2;  // 0
  u64 root;       // physical address of the root node, 0 = empty map
  u64 count;      // non-zero entry words in the leaves
} __packed;
static_assert(sizeof(struct kho_xa_desc) == 32);
static_assert(offsetof(struct kho_xa_desc, magic) == 0);
static_assert(offsetof(struct kho_xa_desc, version) == 4);
static_assert(offsetof(struct kho_xa_desc, key_bits) == 6);
static_assert(offsetof(struct kho_xa_desc, depth) == 7);
static_assert(offsetof(struct kho_xa_desc, page_shift) == 8);
static_assert(offsetof(struct kho_xa_desc, reserved0) == 9);
static_assert(offsetof(struct kho_xa_desc, reserved1) == 10);
static_assert(offsetof(struct kho_xa_desc, reserved2) == 12);
static_assert(offsetof(struct kho_xa_desc, root) == 16);
static_assert(offsetof(struct kho_xa_desc, count) == 24);

// Entry words: tagged integers (bit 0 set) and even physical addresses.
// The constructors return 0, which every store refuses, for what they
// cannot encode (a value above KHO_XA_MAX_VALUE, an odd address).
#define KHO_XA_MAX_VALUE ((((u64)1) << 63) - 1)
static constexpr u64 kho_xa_mk_value(u64 v) { return v > KHO_XA_MAX_VALUE ? 0 : (v << 1) | 1; }
static constexpr bool kho_xa_is_value(u64 entry) { return (entry & 1) != 0; }
static constexpr u64 kho_xa_to_value(u64 entry) { return entry >> 1; }
static constexpr u64 kho_xa_mk_phys(phys_addr_t pa) { return (pa & 1) != 0 ? 0 : pa; }
static constexpr bool kho_xa_is_phys(u64 entry) { return entry != 0 && (entry & 1) == 0; }
static constexpr phys_addr_t kho_xa_to_phys(u64 entry) { return entry; }

#endif  // KHOSIM_LINUX_KHO_ABI_XARRAY_H_

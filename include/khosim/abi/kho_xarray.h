// KHO xarray wire format (khosim proposal "kho-xarray-v1"; upstream has only
// an unposted draft, see docs/kho-xarray.md).
//
// A map from u64 index to u64 entry whose nodes are preserved pages. The
// pages ARE the handover state: kernel B reads the very bytes kernel A wrote.
//
// Descriptor: the packed 32-byte KhoXarrayDesc below, embedded by its owner
// in a preserved blob (a KHO subtree, a handler's record).
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
#ifndef KHOSIM_ABI_KHO_XARRAY_H_
#define KHOSIM_ABI_KHO_XARRAY_H_

#include <cstddef>
#include <cstdint>

namespace khosim::abi {

inline constexpr char kKhoXarrayCompatible[] = "kho-xarray-v1";
inline constexpr uint32_t kKhoXarrayMagic = 0x4b584152;  // "KXAR"
inline constexpr uint16_t kKhoXarrayVersion = 1;
inline constexpr unsigned kKhoXarrayMaxKeyBits = 64;

struct __attribute__((packed)) KhoXarrayDesc {
  uint32_t magic;      // kKhoXarrayMagic
  uint16_t version;    // kKhoXarrayVersion
  uint8_t key_bits;    // 1..64: indices are < 2^key_bits
  uint8_t depth;       // KhoXarrayDepth(key_bits, page_shift)
  uint8_t page_shift;  // node size of the kernel that wrote the map
  uint8_t reserved0;   // 0
  uint16_t reserved1;  // 0
  uint32_t reserved2;  // 0
  uint64_t root;       // physical address of the root node, 0 = empty map
  uint64_t count;      // non-zero entry words in the leaves
};
static_assert(sizeof(KhoXarrayDesc) == 32);
static_assert(offsetof(KhoXarrayDesc, magic) == 0);
static_assert(offsetof(KhoXarrayDesc, version) == 4);
static_assert(offsetof(KhoXarrayDesc, key_bits) == 6);
static_assert(offsetof(KhoXarrayDesc, depth) == 7);
static_assert(offsetof(KhoXarrayDesc, page_shift) == 8);
static_assert(offsetof(KhoXarrayDesc, reserved0) == 9);
static_assert(offsetof(KhoXarrayDesc, reserved1) == 10);
static_assert(offsetof(KhoXarrayDesc, reserved2) == 12);
static_assert(offsetof(KhoXarrayDesc, root) == 16);
static_assert(offsetof(KhoXarrayDesc, count) == 24);

// Geometry. Every node holds page_size / 8 slots.
inline constexpr unsigned KhoXarraySlotBits(unsigned page_shift) { return page_shift - 3; }
inline constexpr uint64_t KhoXarraySlots(unsigned page_shift) {
  return uint64_t{1} << KhoXarraySlotBits(page_shift);
}
// Levels, leaf included: enough slot_bits-wide digits to hold key_bits.
inline constexpr unsigned KhoXarrayDepth(unsigned key_bits, unsigned page_shift) {
  return (key_bits + KhoXarraySlotBits(page_shift) - 1) / KhoXarraySlotBits(page_shift);
}
// Index bits the root consumes (1 .. slot_bits).
inline constexpr unsigned KhoXarrayRootBits(unsigned key_bits, unsigned page_shift) {
  return key_bits - (KhoXarrayDepth(key_bits, page_shift) - 1) * KhoXarraySlotBits(page_shift);
}

static_assert(KhoXarraySlots(12) == 512);
static_assert(KhoXarraySlots(14) == 2048);
static_assert(KhoXarraySlots(16) == 8192);
static_assert(KhoXarrayDepth(54, 12) == 6, "the upstream draft's 54-bit, 6-level shape");
static_assert(KhoXarrayDepth(64, 12) == 8);
static_assert(KhoXarrayDepth(64, 14) == 6);
static_assert(KhoXarrayDepth(64, 16) == 5);
static_assert(KhoXarrayDepth(9, 12) == 1, "a root that is its own leaf");
static_assert(KhoXarrayRootBits(64, 12) == 1);
static_assert(KhoXarrayRootBits(54, 12) == 9);

// Entry encodings. A helper given something it cannot encode returns 0,
// the absent word, which every store refuses.
inline constexpr uint64_t kKhoXarrayMaxValue = (uint64_t{1} << 63) - 1;
inline constexpr uint64_t KhoXarrayMakeValue(uint64_t v) {
  return v > kKhoXarrayMaxValue ? 0 : (v << 1) | 1;
}
inline constexpr bool KhoXarrayIsValue(uint64_t word) { return (word & 1) != 0; }
inline constexpr uint64_t KhoXarrayToValue(uint64_t word) { return word >> 1; }
inline constexpr uint64_t KhoXarrayMakePhys(uint64_t pa) { return (pa & 1) != 0 ? 0 : pa; }
inline constexpr bool KhoXarrayIsPhys(uint64_t word) { return word != 0 && (word & 1) == 0; }
inline constexpr uint64_t KhoXarrayToPhys(uint64_t word) { return word; }

static_assert(KhoXarrayMakeValue(0) == 1, "a stored 0 is not the absent word");
static_assert(KhoXarrayToValue(KhoXarrayMakeValue(kKhoXarrayMaxValue)) == kKhoXarrayMaxValue);
static_assert(KhoXarrayMakeValue(kKhoXarrayMaxValue + 1) == 0);
static_assert(KhoXarrayMakePhys(0x1001) == 0 && KhoXarrayMakePhys(0) == 0);

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_KHO_XARRAY_H_

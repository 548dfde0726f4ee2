// The input formats of kho_block_set_fuzzer and kho_xarray_fuzzer, shared
// with the seed generator.
//
// Both targets build a genuine container in kernel A of a small Machine,
// then let the input overwrite bytes of its metadata pages before the kexec.
// Each input is a fixed header (per target, below) followed by patch
// records, applied in order (at most kMaxContainerPatches):
//
//   u8  page     which metadata page to patch (PickIndex over the target's
//                page list)
//   u8  kind     bits 0-1: what to write (PatchKind); bits 2-7 ignored
//   u16 offset   little-endian, modulo the page size; for every kind but
//                kPatchBytes rounded down to 8 (a u64 slot)
//   then, by kind:
//     kPatchBytes    u8 length, then that many bytes (cut at the page end
//                    and at the end of the input)
//     kPatchPointer  u8 ref (PickIndex over the target's reference list),
//                    i8 delta: writes the u64 reference + delta
//     kPatchNumber   u8 which: writes the u64 numbers[which % size] (counts
//                    around the capacity, 0, ~0, ...)
//     kPatchU64      u64 literal
//
// PickIndex(sel, n): sel < 0x80 counts from the front (sel % n), sel >= 0x80
// from the back (0xff is the last element), so both ends of a long list
// stay reachable with one byte. The reference lists end with the same
// special addresses (RefSpecial): their selectors are fixed.
#ifndef KHOSIM_TESTS_FUZZ_CONTAINER_FUZZ_FORMAT_H_
#define KHOSIM_TESTS_FUZZ_CONTAINER_FUZZ_FORMAT_H_

#include <cstddef>
#include <cstdint>

namespace khosim::fuzz {

inline constexpr int kMaxContainerPatches = 32;

enum PatchKind : uint8_t {
  kPatchBytes = 0,
  kPatchPointer = 1,
  kPatchNumber = 2,
  kPatchU64 = 3,
};

inline size_t PickIndex(uint8_t sel, size_t n) {
  if (n == 0) return 0;
  return sel < 0x80 ? sel % n : n - 1 - (0xffu - sel) % n;
}

// The reference list of both targets is {the container's own pages...,
// then these, in this order}. The selector of a special is fixed:
// 0xff - (kRefSpecials - 1 - special).
enum RefSpecial : uint8_t {
  kRefBlob = 0,         // the page of the blob kernel A published
  kRefUnpreserved = 1,  // a faithful copy of a container page nobody preserved
  kRefOrder1Head = 2,   // the same copy in the first page of a preserved order-1 block
  kRefOrder1Tail = 3,   // ... and in its second page (no preserved head)
  kRefBelowRam = 4,     // 0x1000: RAM starts at 1 MiB
  kRefHole = 5,         // the start of the machine's hole (kFuzzHoleBytes)
  kRefRamEnd = 6,       // the first byte past RAM
  kRefFar = 7,          // 2^45
  kRefZero = 8,         // 0
};
inline constexpr uint8_t kRefSpecials = 9;
inline constexpr uint8_t RefSelector(RefSpecial s) {
  return static_cast<uint8_t>(0xff - (kRefSpecials - 1 - s));
}

// Both targets run on a machine with this hole in its RAM (an MMIO window).
inline constexpr uint64_t kFuzzHoleBytes = 4ull << 20;

// Mode byte bits 0-1 of both targets: the page size.
inline constexpr uint64_t FuzzPageSize(uint8_t mode) {
  return (mode & 3) == 1 ? 16384 : (mode & 3) == 2 ? 65536 : 4096;
}
inline constexpr uint8_t kModePage16K = 1;
inline constexpr uint8_t kModePage64K = 2;
// Mode byte bit 2 of both targets: kernel B's free memory is inaccessible
// (a stray read faults) instead of poisoned.
inline constexpr uint8_t kModeInaccessible = 0x04;

// ---------------------------------------------------------------------------
// kho_block_set_fuzzer
//
//   byte 0   mode: bits 0-1 page size, bit 2 kModeInaccessible, and the
//            kBlockMode* bits below
//   byte 1   entry size of kernel A's sets (BlockEntrySize)
//   byte 2-3 u16: entries of the primary set, modulo
//            capacity * BlockMaxPrimaryBlocks(page size) + 1
//   byte 4   entries of the secondary set, modulo
//            capacity * BlockMaxSecondaryBlocks(page size) + 1
//   byte 5   kernel B's entry size when kBlockModeOtherEntrySize is set
//   rest     patch records
//
// Page list (patch targets): the primary's blocks, the secondary's blocks,
// the blob page. Reference list: the same blocks, then the RefSpecials.
// Numbers: BlockNumber, where "capacity" is kernel A's entries per block
// and "B capacity" kernel B's.
inline constexpr size_t kBlockHeader = 6;
// Kernel B restores the secondary set too, before destroying the primary.
inline constexpr uint8_t kBlockModeSecondary = 0x08;
// Kernel B restores the secondary set only after the primary was destroyed
// (its pages freed): a shared block is then a stale pointer.
inline constexpr uint8_t kBlockModeSecondaryLate = 0x10;
// Kernel B reads with the entry size of byte 5 (capacities differ).
inline constexpr uint8_t kBlockModeOtherEntrySize = 0x20;
// Kernel B copies what it read into a new outgoing set and kexecs again;
// kernel C must read exactly that.
inline constexpr uint8_t kBlockModeKexecAgain = 0x40;
// The primary set is kBlockLongChainBlocks one-entry blocks (slow: seeds
// only). Honoured only when byte 5 is kBlockLongChainKey as well, so that
// random mutations rarely pay for it.
inline constexpr uint8_t kBlockModeLongChain = 0x80;
inline constexpr uint8_t kBlockLongChainKey = 0x4c;       // 'L'
inline constexpr uint64_t kBlockLongChainBlocks = 10000;  // KHO_MAX_BLOCKS

// At most 48 KiB of entries per set (12 and 3 blocks of 4 KiB), at least
// 2 and 1 blocks.
inline constexpr uint64_t BlockMaxPrimaryBlocks(uint64_t page_size) {
  return 12 * 4096 / page_size < 2 ? 2 : 12 * 4096 / page_size;
}
inline constexpr uint64_t BlockMaxSecondaryBlocks(uint64_t page_size) {
  return 3 * 4096 / page_size < 1 ? 1 : 3 * 4096 / page_size;
}

enum BlockNumber : uint8_t {
  kBlockNumZero = 0,
  kBlockNumOne,
  kBlockNumCapMinus1,
  kBlockNumCap,
  kBlockNumCapPlus1,
  kBlockNumCapB,
  kBlockNumCapBPlus1,
  kBlockNumAllOnes,
  kBlockNum2Pow32,
  kBlockNum2Pow63,
  kBlockNumPageSize,
  kBlockNumMaxBlocksPlus1,  // KHO_MAX_BLOCKS + 1
  kBlockNumbers,
};

// Byte -> entry size: a table of the sizes in use (and extremes) below 16,
// the byte itself from 16 on. 0 in the table means "one entry per block".
inline constexpr uint64_t kBlockEntrySizes[16] = {80,  64,  8,   32,   16,   1,    24,   48,
                                                  100, 255, 512, 1000, 2040, 2048, 4080, 0};
inline constexpr uint64_t BlockEntrySize(uint8_t sel, uint64_t page_size) {
  if (sel >= 16) return sel;
  const uint64_t e = kBlockEntrySizes[sel];
  const uint64_t max = page_size - 16;
  return e == 0 || e > max ? max : e;
}

// The blob kernel A publishes under kBlockSubtree.
inline constexpr char kBlockSubtree[] = "fuzz-blocks";
inline constexpr uint64_t kBlockBlobMagic = 0x4b424c4f434b3031;  // "KBLOCK01"
struct __attribute__((packed)) BlockFuzzBlob {
  uint64_t primary_head;
  uint64_t secondary_head;
  uint64_t magic;
};
static_assert(sizeof(BlockFuzzBlob) == 24);

// ---------------------------------------------------------------------------
// kho_xarray_fuzzer
//
//   byte 0   mode: bits 0-1 page size, bit 2 kModeInaccessible, bits 3-4
//            the follow-up (XaFollowUp), bit 5 kXaModeStoreFaults, bits 6-7
//            the index pattern (XaPattern)
//   byte 1   key width: 1 + byte % 64
//   byte 2   entries kernel A tries to store: byte % (kXaMaxEntries + 1);
//            an index whose path would take the map over XaNodeBudget
//            nodes is skipped
//   byte 3   pattern parameter (start, stride shift, random seed)
//   byte 4   follow-up parameter: stores and erases after Adopt (byte % 16)
//   rest     patch records
//
// Page list: the page holding the descriptor (the blob kernel A published;
// the descriptor is at offset 0), then every node in pre-order (parents
// before children, slots in ascending order). Reference list: the nodes
// in the same order, then the RefSpecials; the unpreserved and order-1
// copies are copies of the first leaf. Numbers: XaNumber, where "count" is
// the number of entries kernel A stored.
inline constexpr size_t kXaHeader = 5;
inline constexpr uint8_t kXaMaxEntries = 40;
// Every check scans every slot of every node, so maps stay within 16 nodes'
// worth of 4 KiB slots (16, 4 and 1 nodes of 4, 16 and 64 KiB), but always
// allow one root-to-leaf path plus one node.
inline constexpr uint64_t XaNodeBudget(uint64_t page_size, unsigned depth) {
  return 16 * 4096 / page_size > depth + 1 ? 16 * 4096 / page_size : depth + 1;
}

enum XaNumber : uint8_t {
  kXaNumZero = 0,
  kXaNumOne,
  kXaNumTwo,
  kXaNumCountMinus1,
  kXaNumCountPlus1,
  kXaNumAllOnes,
  kXaNum2Pow63,
  kXaNumMaxIndex,  // 2^key_bits - 1
  kXaNumPageSize,
  kXaNumbers,
};

// Offsets in the descriptor (abi::KhoXarrayDesc), for seeds.
inline constexpr uint16_t kXaDescMagic = 0;
inline constexpr uint16_t kXaDescVersion = 4;
inline constexpr uint16_t kXaDescKeyBits = 6;
inline constexpr uint16_t kXaDescDepth = 7;
inline constexpr uint16_t kXaDescPageShift = 8;
inline constexpr uint16_t kXaDescReserved2 = 12;
inline constexpr uint16_t kXaDescRoot = 16;
inline constexpr uint16_t kXaDescCount = 24;

enum XaFollowUp : uint8_t {
  kXaReadInPlace = 0,  // Load/Find/ForEach, then Destroy
  kXaConvert = 1,      // Convert into a host map
  kXaAdopt = 2,        // Adopt, mutate as an outgoing map, Destroy
  kXaAdoptKexec = 3,   // Adopt, mutate, kexec again: kernel C restores it
};
inline constexpr uint8_t XaFollowUpOf(uint8_t mode) { return (mode >> 3) & 3; }
// After Adopt, each store is first tried with its 1st, 2nd or 3rd node
// allocation (kho_alloc_preserve) failing.
inline constexpr uint8_t kXaModeStoreFaults = 0x20;

enum XaPattern : uint8_t {
  kXaDense = 0,    // start, start + 1, ...
  kXaStrided = 1,  // i << (param % key_bits)
  kXaRandom = 2,   // uniform below 2^key_bits
  kXaEdges = 3,    // 0, max, slot and level boundaries, then random
};
inline constexpr uint8_t XaPatternOf(uint8_t mode) { return (mode >> 6) & 3; }
inline constexpr uint8_t XaMode(uint8_t page_bits, XaFollowUp follow, XaPattern pattern) {
  return static_cast<uint8_t>(page_bits | (follow << 3) | (pattern << 6));
}

inline constexpr char kXaSubtree[] = "fuzz-xarray";

}  // namespace khosim::fuzz

#endif  // KHOSIM_TESTS_FUZZ_CONTAINER_FUZZ_FORMAT_H_

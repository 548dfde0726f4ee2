// The input format of kho_incoming_fuzzer, shared with the seed generator.
//
//   byte 0    bits 0-5: target page (value % kIncomingTargets, see
//             IncomingTarget); bit 6: preserve a vmalloc area of
//             kLargeAreaPages (two chunk pages) instead of kSmallAreaPages
//             (one), which makes the iteration about twice as slow; bit 7:
//             after kernel B's restores, kexec once more into kernel C
//   byte 1    selector: for kRadixNode, which node of the outgoing tree
//             (pre-order index modulo the node count); for kV1Bitmap,
//             which bitmap page (ascending order, then index)
//   rest      patches, applied in order to the target page before the
//             kexec: u16 offset (little-endian, modulo the page size), u8
//             length, then that many bytes (cut at the page end and at the
//             end of the input). At most kMaxPatches are applied.
//             The kV1* targets boot every kernel with the kho-v1 profile
//             and patch in a reboot hook, after the load-time finalize
//             wrote the chunk list kernel B will read.
#ifndef KHOSIM_TESTS_FUZZ_INCOMING_FUZZ_FORMAT_H_
#define KHOSIM_TESTS_FUZZ_INCOMING_FUZZ_FORMAT_H_

#include <cstdint>

namespace khosim::fuzz {

enum IncomingTarget : uint8_t {
  kRootFdt = 0,       // Kho::out_fdt()
  kRadixRoot = 1,     // out_tree()->root()
  kRadixNode = 2,     // any node of the outgoing tree (byte 1 picks it)
  kVmallocDesc = 3,   // the page holding the fuzz subtree's blob
  kFirstChunk = 4,    // the vmalloc descriptor's first chunk page
  kLastChunk = 5,     // the last chunk page of the list
  kMetadataBlob = 6,  // the kexec-metadata blob
  kV1Chunk = 7,       // kho-v1: the first khoser_mem_chunk page
  kV1Bitmap = 8,      // kho-v1: a bitmap page (byte 1 picks it)
};
inline constexpr uint8_t kIncomingTargets = 9;
inline constexpr uint8_t kIncomingTargetMask = 0x3f;
inline constexpr uint8_t kIncomingLargeArea = 0x40;
inline constexpr uint8_t kIncomingKexecAgain = 0x80;
// vmalloc area sizes in 4 KiB pages: a chunk page lists 511 of them.
inline constexpr unsigned long kSmallAreaPages = 24;
inline constexpr unsigned long kLargeAreaPages = 520;
inline constexpr int kMaxPatches = 64;

// The blob kernel A publishes under kIncomingSubtree.
inline constexpr char kIncomingSubtree[] = "fuzz";
inline constexpr uint32_t kIncomingBlobMagic = 0x465a5a31;  // "FZZ1"
struct __attribute__((packed)) IncomingBlob {
  uint64_t vm_first;  // struct kho_vmalloc, field by field
  uint32_t vm_total_pages;
  uint16_t vm_flags;
  uint16_t vm_order;
  uint64_t folio_phys;
  uint32_t folio_order;
  uint32_t magic;
};
static_assert(sizeof(IncomingBlob) == 32);

}  // namespace khosim::fuzz

#endif  // KHOSIM_TESTS_FUZZ_INCOMING_FUZZ_FORMAT_H_

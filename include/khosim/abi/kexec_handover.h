// KHO wire formats (kho-v4): the root FDT's names, the page tag restored
// pages carry, the scratch table, the vmalloc descriptor and chunk pages,
// and the kexec-metadata record; and the kho-v1 (bitmap tracker) formats
// that the kho-v1 profile still speaks: the subtree property name and the
// khoser_mem_chunk list.
//
// Contract: these layouts are what kernel A writes and kernel B reads.
// Changing any of them is an ABI break that must bump the compatible
// string. All multi-byte values are native-endian (little-endian here),
// including FDT property values, as upstream stores them.
#ifndef KHOSIM_ABI_KEXEC_HANDOVER_H_
#define KHOSIM_ABI_KEXEC_HANDOVER_H_

#include <cstddef>
#include <cstdint>

#include "khosim/linux/kho/abi/kexec_handover.h"

namespace khosim::abi {

// Root FDT compatible strings, oldest first. kho-v1: bitmap tracker
// serialized at finalize; v2: radix tree; v3: blob-size; v4: block sets.
inline constexpr char kKhoCompatV1[] = "kho-v1";
inline constexpr char kKhoCompatV2[] = "kho-v2";
inline constexpr char kKhoCompatV3[] = "kho-v3";
inline constexpr char kKhoCompatV4[] = "kho-v4";
inline constexpr char kKhoFdtCompatible[] = "kho-v4";

inline constexpr char kPropCompatible[] = "compatible";
inline constexpr char kPropPreservedMemoryMap[] = "preserved-memory-map";
inline constexpr char kPropPreservedData[] = "preserved-data";
inline constexpr char kPropBlobSize[] = "blob-size";
// kho-v1 names the blob property after what it held then, a sub-FDT
// (PROP_SUB_FDT); there is no blob-size before kho-v3.
inline constexpr char kPropSubFdtV1[] = "fdt";

// Tag in page->private of every preserved head page after retrieval:
// low 32 bits the order, high 32 bits the magic.
inline constexpr uint32_t kKhoPageMagic = 0x4b484f50;  // "KHOP"
inline constexpr uint64_t KhoPageInfo(uint32_t order) {
  return (uint64_t{kKhoPageMagic} << 32) | order;
}

// One boot-memory (scratch) region; the table handed over is an array of
// these: [lowmem, global, one per node with memory].
struct __attribute__((packed)) KhoScratch {
  uint64_t addr;
  uint64_t size;
};
static_assert(sizeof(KhoScratch) == 16);

// Scratch regions are sized and aligned to PAGE_SIZE << MAX_PAGE_ORDER
// (SCRATCH_ALIGNMENT_BYTES: 4 MiB with 4 KiB pages).
inline constexpr uint64_t ScratchAlignmentBytes(unsigned page_shift, unsigned max_page_order) {
  return uint64_t{1} << (page_shift + max_page_order);
}

// vmalloc preservation descriptor, embedded in the owner's blob (the
// kernel face's struct kho_vmalloc).
inline constexpr uint16_t kKhoVmallocAlloc = KHO_VMALLOC_ALLOC;
inline constexpr uint16_t kKhoVmallocHugeVmap = KHO_VMALLOC_HUGE_VMAP;
using KhoVmalloc = ::kho_vmalloc;

// A chunk is one page: u64 next (phys of the next chunk, 0 = last), then
// (PAGE_SIZE - 8) / 8 physical addresses (511 with 4 KiB pages), zero
// terminated when not full.
struct __attribute__((packed)) KhoVmallocChunkHeader {
  uint64_t next;
};
static_assert(sizeof(KhoVmallocChunkHeader) == 8);
inline constexpr uint64_t KhoVmallocEntriesPerChunk(uint64_t page_size) {
  return (page_size - sizeof(KhoVmallocChunkHeader)) / sizeof(uint64_t);
}

// kho-v1 preserved memory map: the per-order bitmaps of kernel A's tracker,
// serialized when the handover is prepared (kho_finalize) into a singly
// linked list of one-page chunks. `preserved-memory-map` holds the first
// chunk's physical address (0: nothing serialized). Every chunk describes
// bitmaps of one order; orders ascend along the list, a new chunk starts
// for each order and whenever a chunk is full. Neither the chunks nor the
// bitmap pages they point to are preserved: kernel B reads them while it
// still allocates from scratch only.
//
// A bitmap is one page of PRESERVE_BITS = page_size * 8 bits (bit i is bit
// i % 64 of little-endian u64 word i / 64); bit i set means the block of
// 2^order pages at phys_start + (i << (order + page_shift)) is preserved.
// phys_start = (index * PRESERVE_BITS) << (order + page_shift), where index
// = (pfn >> order) / PRESERVE_BITS is the bitmap's position in its order.
struct __attribute__((packed)) KhoserMemChunkHeader {
  uint64_t next;      // phys of the next chunk, 0 = last
  uint32_t order;     // order of every bitmap in this chunk
  uint32_t num_elms;  // entries in use, <= KhoserBitmapSize(page_size)
};
static_assert(sizeof(KhoserMemChunkHeader) == 16);
static_assert(offsetof(KhoserMemChunkHeader, next) == 0);
static_assert(offsetof(KhoserMemChunkHeader, order) == 8);
static_assert(offsetof(KhoserMemChunkHeader, num_elms) == 12);

// One entry of a chunk (khoser_mem_bitmap_ptr).
struct __attribute__((packed)) KhoserMemBitmapPtr {
  uint64_t phys_start;  // first byte the bitmap covers
  uint64_t bitmap;      // phys of the bitmap page
};
static_assert(sizeof(KhoserMemBitmapPtr) == 16);
static_assert(offsetof(KhoserMemBitmapPtr, phys_start) == 0);
static_assert(offsetof(KhoserMemBitmapPtr, bitmap) == 8);

// KHOSER_BITMAP_SIZE: entries per chunk page (255 with 4 KiB pages).
inline constexpr uint64_t KhoserBitmapSize(uint64_t page_size) {
  return (page_size - sizeof(KhoserMemChunkHeader)) / sizeof(KhoserMemBitmapPtr);
}
static_assert(KhoserBitmapSize(4096) == 255);
static_assert(sizeof(KhoserMemChunkHeader) + KhoserBitmapSize(4096) * sizeof(KhoserMemBitmapPtr) ==
              4096);
// PRESERVE_BITS: blocks one bitmap page tracks (32768 with 4 KiB pages).
inline constexpr uint64_t KhoPreserveBits(uint64_t page_size) { return page_size * 8; }
static_assert(KhoPreserveBits(4096) == 32768);

// The "kexec-metadata" subtree.
inline constexpr char kKexecMetadataName[] = "kexec-metadata";
inline constexpr uint32_t kKexecMetadataVersion = 1;
inline constexpr size_t kKexecReleaseLength = 65;  // __NEW_UTS_LEN + 1
struct __attribute__((packed)) KexecMetadata {
  uint32_t version;
  char previous_release[kKexecReleaseLength];
  uint32_t kexec_count;
};
static_assert(sizeof(KexecMetadata) == 73);
static_assert(offsetof(KexecMetadata, previous_release) == 4);
static_assert(offsetof(KexecMetadata, kexec_count) == 69);

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_KEXEC_HANDOVER_H_

// KHO range tracker wire format (khosim proposal "kho-range-v1"; upstream
// has no such format, see docs/kho-range-tracker.md).
//
// The serialized set of preserved blocks that kernel A builds when it
// prepares the handover and kernel B walks to reserve them. A block is
// (pfn, order): 2^order pages at a pfn aligned to 2^order, exactly what the
// radix tracker (kho-v2+) keys. Runs of consecutive blocks of one order are
// stored as one extent.
//
// Chain: a singly linked list of pages. The handle (what the root FDT's
// property would carry) is the physical address of the first page; 0 is the
// empty set, never a page with no extent. Each page is a packed 16-byte
// KhoRangePageHeader followed by |count| packed 16-byte KhoRangeExtent
// records (1 <= count <= KhoRangeExtentsPerPage(page_size)); bytes after the
// last record are zero. |next| is the physical address of the next page, 0
// ends the chain.
//
// Record order, across the whole chain: ascending radix key, which is order
// descending, then pfn ascending (the order in which a radix walk reports
// the same blocks). Within one order, extents do not overlap and do not
// touch, except that a record holding the maximum nr_blocks may be followed
// by one that starts where it ends (a run longer than a u32 count is split).
// So each set has exactly one serialization.
//
// Page size is part of this ABI (every header records it): a chain cannot
// cross kernels with different page sizes. All fields are little-endian.
#ifndef KHOSIM_ABI_KHO_RANGE_H_
#define KHOSIM_ABI_KHO_RANGE_H_

#include <cstddef>
#include <cstdint>

namespace khosim::abi {

inline constexpr char kKhoRangeCompatible[] = "kho-range-v1";
inline constexpr uint32_t kKhoRangeMagic = 0x4b524e47;  // "KRNG"
inline constexpr uint8_t kKhoRangeVersion = 1;

struct __attribute__((packed)) KhoRangePageHeader {
  uint32_t magic;      // kKhoRangeMagic
  uint8_t version;     // kKhoRangeVersion
  uint8_t page_shift;  // page size of the kernel that wrote the chain
  uint16_t count;      // records in this page: 1 .. KhoRangeExtentsPerPage
  uint64_t next;       // physical address of the next page, 0 = last page
};
static_assert(sizeof(KhoRangePageHeader) == 16);
static_assert(offsetof(KhoRangePageHeader, magic) == 0);
static_assert(offsetof(KhoRangePageHeader, version) == 4);
static_assert(offsetof(KhoRangePageHeader, page_shift) == 5);
static_assert(offsetof(KhoRangePageHeader, count) == 6);
static_assert(offsetof(KhoRangePageHeader, next) == 8);

// nr_blocks blocks of 2^order pages: pfn, pfn + 2^order, ...,
// pfn + (nr_blocks - 1) * 2^order.
struct __attribute__((packed)) KhoRangeExtent {
  uint64_t pfn;         // head pfn of the first block, aligned to 2^order
  uint32_t nr_blocks;   // >= 1
  uint8_t order;        // <= 64 - page_shift (the radix key's widest order)
  uint8_t reserved[3];  // 0
};
static_assert(sizeof(KhoRangeExtent) == 16);
static_assert(offsetof(KhoRangeExtent, pfn) == 0);
static_assert(offsetof(KhoRangeExtent, nr_blocks) == 8);
static_assert(offsetof(KhoRangeExtent, order) == 12);
static_assert(offsetof(KhoRangeExtent, reserved) == 13);

inline constexpr uint32_t kKhoRangeMaxBlocksPerExtent = UINT32_MAX;

inline constexpr uint64_t KhoRangeExtentsPerPage(uint64_t page_size) {
  return (page_size - sizeof(KhoRangePageHeader)) / sizeof(KhoRangeExtent);
}
static_assert(KhoRangeExtentsPerPage(4096) == 255);
static_assert(KhoRangeExtentsPerPage(16384) == 1023);
static_assert(KhoRangeExtentsPerPage(65536) == 4095);
static_assert(KhoRangeExtentsPerPage(65536) <= UINT16_MAX, "count must fit the header");

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_KHO_RANGE_H_

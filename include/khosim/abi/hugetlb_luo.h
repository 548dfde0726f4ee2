// The hugetlb live-update records: the "hugemfd-v1" file handler (unlinked
// hugetlbfs files, i.e. MFD_HUGETLB memfds) and the "hugetlb-v1" FLB that
// counts the preserved huge pages of each size.
//
// Upstream status: posted as an RFC ("liveupdate: hugetlb support", Dec
// 2025; LSFMM 2026), not merged. These layouts are khosim's, shaped after
// memfd-v2 so that a port is mostly a rename; they are a proposal (see
// docs/hugetlb-luo.md).
//
//   LuoFileSer.data -> HugemfdLuoSer (kho_alloc_preserve, 48 bytes)
//     folios -> KHO vmalloc area of nr_folios MemfdLuoFolioSer (16 bytes,
//               the memfd-v2 folio record), one per huge folio in index
//               order; the index is in PAGE_SIZE units; absent when the
//               size is 0. Every folio is of order `order`.
//   LuoFlbSer{"hugetlb-v1"}.data -> HugetlbFlbSer (kho_alloc_preserve)
//     one entry per hstate of the outgoing kernel: its order and how many
//     of its huge pages the preserved files hold. Kernel B reads it in
//     early boot, before the pools are filled, and allocates that many
//     fewer pages of each size: the preserved folios join the pool when
//     they are retrieved or finished.
#ifndef KHOSIM_ABI_HUGETLB_LUO_H_
#define KHOSIM_ABI_HUGETLB_LUO_H_

#include <cstddef>
#include <cstdint>

#include "khosim/abi/kexec_handover.h"
#include "khosim/abi/memfd_luo.h"

namespace khosim::abi {

inline constexpr char kHugemfdLuoCompatible[] = "hugemfd-v1";

struct __attribute__((packed)) HugemfdLuoSer {
  uint64_t pos;    // f_pos, refreshed at freeze
  uint64_t size;   // i_size, a whole number of huge pages
  uint32_t seals;  // F_SEAL_* as in MemfdLuoSer (kMemfdLuoAllSeals)
  uint32_t order;  // huge page order of the file's hstate (9 or 18 with 4 KiB pages)
  uint64_t nr_folios;
  KhoVmalloc folios;  // MemfdLuoFolioSer[nr_folios]
};
static_assert(sizeof(HugemfdLuoSer) == 48);
static_assert(offsetof(HugemfdLuoSer, seals) == 16);
static_assert(offsetof(HugemfdLuoSer, order) == 20);
static_assert(offsetof(HugemfdLuoSer, nr_folios) == 24);
static_assert(offsetof(HugemfdLuoSer, folios) == 32);

inline constexpr char kHugetlbFlbCompatible[] = "hugetlb-v1";
// HUGE_MAX_HSTATE of the architectures that have the most (arm64 has four
// sizes per page size); kernel B ignores entries past nr_hstates.
inline constexpr uint32_t kHugetlbFlbMaxHstates = 4;

struct __attribute__((packed)) HugetlbFlbHstateSer {
  uint32_t order;     // huge page order
  uint32_t reserved;  // 0
  uint64_t nr_pages;  // huge pages of this order held by preserved files
};
static_assert(sizeof(HugetlbFlbHstateSer) == 16);

struct __attribute__((packed)) HugetlbFlbSer {
  uint32_t nr_hstates;  // entries in use, <= kHugetlbFlbMaxHstates
  uint32_t reserved;    // 0
  HugetlbFlbHstateSer hstates[kHugetlbFlbMaxHstates];
};
static_assert(sizeof(HugetlbFlbSer) == 72);
static_assert(offsetof(HugetlbFlbSer, hstates) == 8);

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_HUGETLB_LUO_H_

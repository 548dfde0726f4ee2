// The hugetlb live-update records (<linux/kho/abi/hugetlb.h>): the
// "hugemfd-v1" file handler (unlinked hugetlbfs files, i.e. MFD_HUGETLB
// memfds) and the "hugetlb-v1" FLB that counts the preserved huge pages of
// each size.
//
// Upstream status: posted as an RFC ("liveupdate: hugetlb support", Dec
// 2025; LSFMM 2026), not merged. These layouts are khosim's, shaped after
// memfd-v2 so that a port is mostly a rename; they are a proposal (see
// docs/hugetlb-luo.md).
//
//   luo_file_ser.data -> struct hugemfd_luo_ser (kho_alloc_preserve)
//     folios -> KHO vmalloc area of nr_folios struct memfd_luo_folio_ser
//               (the memfd-v2 folio record), one per huge folio in index
//               order; the index is in PAGE_SIZE units; absent when the
//               size is 0. Every folio is of order `order`.
//   luo_flb_ser{"hugetlb-v1"}.data -> struct hugetlb_flb_ser
//     one entry per hstate of the outgoing kernel: its order and how many
//     of its huge pages the preserved files hold. Kernel B reads it in
//     early boot, before the pools are filled, and allocates that many
//     fewer pages of each size: the preserved folios join the pool when
//     they are retrieved or finished.
#ifndef KHOSIM_LINUX_KHO_ABI_HUGETLB_H_
#define KHOSIM_LINUX_KHO_ABI_HUGETLB_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/kho/abi/kexec_handover.h"
#include "khosim/linux/kho/abi/memfd.h"
#include "khosim/linux/types.h"

#define HUGEMFD_LUO_FH_COMPATIBLE "hugemfd-v1"
#define HUGETLB_FLB_COMPATIBLE "hugetlb-v1"

struct hugemfd_luo_ser {
  u64 pos;    // f_pos, refreshed at freeze
  u64 size;   // i_size, a whole number of huge pages
  u32 seals;  // F_SEAL_* as in memfd_luo_ser
  u32 order;  // huge page order of the file's hstate (9 or 18 with 4 KiB pages)
  u64 nr_folios;
  struct kho_vmalloc folios;  // struct memfd_luo_folio_ser[nr_folios]
} __packed;
static_assert(sizeof(struct hugemfd_luo_ser) == 48);
static_assert(offsetof(struct hugemfd_luo_ser, seals) == 16);
static_assert(offsetof(struct hugemfd_luo_ser, order) == 20);
static_assert(offsetof(struct hugemfd_luo_ser, nr_folios) == 24);
static_assert(offsetof(struct hugemfd_luo_ser, folios) == 32);

// HUGE_MAX_HSTATE of the architectures that have the most (arm64 has four
// sizes per page size); kernel B ignores entries past nr_hstates.
#define HUGETLB_FLB_MAX_HSTATES 4

// Not __packed: every field sits on its natural offset already (asserted),
// and kernel A updates nr_pages atomically, which needs that alignment.
struct hugetlb_flb_hstate_ser {
  u32 order;     // huge page order
  u32 reserved;  // 0
  u64 nr_pages;  // huge pages of this order held by preserved files
};
static_assert(sizeof(struct hugetlb_flb_hstate_ser) == 16);
static_assert(offsetof(struct hugetlb_flb_hstate_ser, nr_pages) == 8);

struct hugetlb_flb_ser {
  u32 nr_hstates;  // entries in use, <= HUGETLB_FLB_MAX_HSTATES
  u32 reserved;    // 0
  struct hugetlb_flb_hstate_ser hstates[HUGETLB_FLB_MAX_HSTATES];
};
static_assert(sizeof(struct hugetlb_flb_ser) == 72);
static_assert(offsetof(struct hugetlb_flb_ser, hstates) == 8);

#endif  // KHOSIM_LINUX_KHO_ABI_HUGETLB_H_

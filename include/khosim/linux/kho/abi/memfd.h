// The memfd file handler's handover records (<linux/kho/abi/memfd.h>):
// upstream's "memfd-v2" and khosim's sparse profile "memfd-sparse-v1"
// (docs/memfd-sparse.md), what a preserved memfd's luo_file_ser.data
// points at.
//
//   memfd-v2:        data -> struct memfd_luo_ser (kho_alloc_preserve)
//                      folios -> KHO vmalloc area of nr_folios
//                                struct memfd_luo_folio_ser, one per folio
//                                in index order; absent when the size is 0
//   memfd-sparse-v1: data -> struct memfd_sparse_ser (kho_alloc_preserve)
//                      folios: a KHO xarray from the page index of each
//                              folio's first page to its physical address;
//                              only populated pages have entries
//
// A folio record packs the pfn into bits 0..51 and the flags into bits
// 52..63 of its first word; pfn 0 marks an empty slot.
#ifndef KHOSIM_LINUX_KHO_ABI_MEMFD_H_
#define KHOSIM_LINUX_KHO_ABI_MEMFD_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/kho/abi/kexec_handover.h"
#include "khosim/linux/kho/abi/xarray.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/types.h"

#define MEMFD_LUO_FH_COMPATIBLE "memfd-v2"
#define MEMFD_SPARSE_FH_COMPATIBLE "memfd-sparse-v1"

// The seals a record may carry; any other fails preserve and retrieve with
// -EOPNOTSUPP (it would silently disappear across the kexec).
#define MEMFD_LUO_ALL_SEALS \
  (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC)

#define MEMFD_LUO_FOLIO_DIRTY (1U << 0)
#define MEMFD_LUO_FOLIO_UPTODATE (1U << 1)

struct memfd_luo_folio_ser {
  u64 pfn : 52;
  u64 flags : 12;
  u64 index;  // page offset of the folio in the file
} __packed;
static_assert(sizeof(struct memfd_luo_folio_ser) == 16);

struct memfd_luo_ser {
  u64 pos;    // f_pos, refreshed at freeze
  u64 size;   // i_size
  u32 seals;  // F_SEAL_* (uAPI values)
  u32 flags;  // none defined: 0
  u64 nr_folios;
  struct kho_vmalloc folios;
} __packed;
static_assert(sizeof(struct memfd_luo_ser) == 48);
static_assert(offsetof(struct memfd_luo_ser, seals) == 16);
static_assert(offsetof(struct memfd_luo_ser, nr_folios) == 24);
static_assert(offsetof(struct memfd_luo_ser, folios) == 32);

// The sparse profile: every preserved folio is dirty and uptodate (no
// per-folio flags); its order is the order KHO preserved it with.
struct memfd_sparse_ser {
  u64 pos;
  u64 size;
  u32 seals;     // as memfd_luo_ser
  u32 flags;     // none defined: 0
  u64 reserved;  // 0
  struct kho_xa_desc folios;
} __packed;
static_assert(sizeof(struct memfd_sparse_ser) == 64);
static_assert(offsetof(struct memfd_sparse_ser, folios) == 32);

#endif  // KHOSIM_LINUX_KHO_ABI_MEMFD_H_

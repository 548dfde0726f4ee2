// The memfd file handler's handover record ("memfd-v2", mm/memfd_luo.c):
// what LuoFileSer.data points at for a preserved memfd.
//
//   LuoFileSer.data -> MemfdLuoSer (kho_alloc_preserve, 48 bytes)
//     folios -> KHO vmalloc area of nr_folios MemfdLuoFolioSer (16 bytes),
//               one per folio in index order; absent when the size is 0
//
// Each folio record packs the pfn into bits 0..51 and the folio flags into
// bits 52..63 of its first word (a u64 pfn:52, flags:12 bitfield on a
// little-endian machine); pfn 0 marks an empty slot.
#ifndef KHOSIM_ABI_MEMFD_LUO_H_
#define KHOSIM_ABI_MEMFD_LUO_H_

#include <cstddef>
#include <cstdint>

#include "khosim/abi/kexec_handover.h"
#include "khosim/abi/kho_xarray.h"

namespace khosim::abi {

inline constexpr char kMemfdLuoCompatible[] = "memfd-v2";

inline constexpr uint64_t kMemfdLuoFolioDirty = 1u << 0;
inline constexpr uint64_t kMemfdLuoFolioUptodate = 1u << 1;

inline constexpr unsigned kMemfdLuoPfnBits = 52;
inline constexpr uint64_t kMemfdLuoPfnMask = (uint64_t{1} << kMemfdLuoPfnBits) - 1;

struct __attribute__((packed)) MemfdLuoFolioSer {
  uint64_t pfn_flags;  // pfn | flags << 52
  uint64_t index;      // page offset of the folio in the file
};
static_assert(sizeof(MemfdLuoFolioSer) == 16);

inline constexpr uint64_t MemfdLuoFolioWord(uint64_t pfn, uint64_t flags) {
  return (pfn & kMemfdLuoPfnMask) | (flags << kMemfdLuoPfnBits);
}
inline constexpr uint64_t MemfdLuoFolioPfn(uint64_t word) { return word & kMemfdLuoPfnMask; }
inline constexpr uint64_t MemfdLuoFolioFlags(uint64_t word) { return word >> kMemfdLuoPfnBits; }

struct __attribute__((packed)) MemfdLuoSer {
  uint64_t pos;    // f_pos, refreshed at freeze
  uint64_t size;   // i_size
  uint32_t seals;  // F_SEAL_* (uAPI values), only kMemfdLuoAllSeals
  uint32_t flags;  // none defined: 0
  uint64_t nr_folios;
  KhoVmalloc folios;
};
static_assert(sizeof(MemfdLuoSer) == 48);
static_assert(offsetof(MemfdLuoSer, seals) == 16);
static_assert(offsetof(MemfdLuoSer, nr_folios) == 24);
static_assert(offsetof(MemfdLuoSer, folios) == 32);

// F_SEAL_SEAL | SHRINK | GROW | WRITE | FUTURE_WRITE | EXEC: the seals this
// version can carry; any other seal fails preserve and retrieve with
// -EOPNOTSUPP.
inline constexpr uint32_t kMemfdLuoAllSeals = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 | 0x0020;

// ---- The sparse profile ("memfd-sparse-v1", docs/memfd-sparse.md) --------
//
//   LuoFileSer.data -> MemfdSparseSer (kho_alloc_preserve, 64 bytes)
//     folios: a KHO xarray (abi/kho_xarray.h) from the page index of each
//             folio's first page to its physical address (an even entry
//             word); only populated pages have entries, and the map is
//             kept current while the file stays preserved (pages written
//             into holes after preserve are added).
// Every preserved folio is dirty and uptodate (there are no per-folio
// flags); the folio's order is the order KHO preserved it with.
inline constexpr char kMemfdSparseCompatible[] = "memfd-sparse-v1";

struct __attribute__((packed)) MemfdSparseSer {
  uint64_t pos;
  uint64_t size;
  uint32_t seals;     // as MemfdLuoSer
  uint32_t flags;     // none defined: 0
  uint64_t reserved;  // 0
  KhoXarrayDesc folios;
};
static_assert(sizeof(MemfdSparseSer) == 64);
static_assert(offsetof(MemfdSparseSer, folios) == 32);

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_MEMFD_LUO_H_

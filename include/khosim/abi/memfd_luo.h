// The memfd file handler's handover records: the C++ face of
// khosim/linux/kho/abi/memfd.h, where the layouts are documented. Adds a
// word view of the folio record (the kernel face uses bitfields) and the
// seals a record may carry.
#ifndef KHOSIM_ABI_MEMFD_LUO_H_
#define KHOSIM_ABI_MEMFD_LUO_H_

#include <cstddef>
#include <cstdint>

#include "khosim/abi/kexec_handover.h"
#include "khosim/abi/kho_xarray.h"
#include "khosim/linux/kho/abi/memfd.h"

namespace khosim::abi {

inline constexpr char kMemfdLuoCompatible[] = MEMFD_LUO_FH_COMPATIBLE;
inline constexpr char kMemfdSparseCompatible[] = MEMFD_SPARSE_FH_COMPATIBLE;

inline constexpr uint64_t kMemfdLuoFolioDirty = MEMFD_LUO_FOLIO_DIRTY;
inline constexpr uint64_t kMemfdLuoFolioUptodate = MEMFD_LUO_FOLIO_UPTODATE;

inline constexpr unsigned kMemfdLuoPfnBits = 52;
inline constexpr uint64_t kMemfdLuoPfnMask = (uint64_t{1} << kMemfdLuoPfnBits) - 1;

// struct memfd_luo_folio_ser as two words: pfn | flags << 52, and index.
struct __attribute__((packed)) MemfdLuoFolioSer {
  uint64_t pfn_flags;
  uint64_t index;
};
static_assert(sizeof(MemfdLuoFolioSer) == sizeof(struct memfd_luo_folio_ser));

inline constexpr uint64_t MemfdLuoFolioWord(uint64_t pfn, uint64_t flags) {
  return (pfn & kMemfdLuoPfnMask) | (flags << kMemfdLuoPfnBits);
}
inline constexpr uint64_t MemfdLuoFolioPfn(uint64_t word) { return word & kMemfdLuoPfnMask; }
inline constexpr uint64_t MemfdLuoFolioFlags(uint64_t word) { return word >> kMemfdLuoPfnBits; }

using MemfdLuoSer = ::memfd_luo_ser;
using MemfdSparseSer = ::memfd_sparse_ser;

// F_SEAL_SEAL | SHRINK | GROW | WRITE | FUTURE_WRITE | EXEC: the seals this
// version can carry; any other seal fails preserve and retrieve with
// -EOPNOTSUPP.
inline constexpr uint32_t kMemfdLuoAllSeals = MEMFD_LUO_ALL_SEALS;

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_MEMFD_LUO_H_

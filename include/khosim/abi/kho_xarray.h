// KHO xarray wire format: the C++ face of khosim/linux/kho/abi/xarray.h
// (the layout, entry encoding and node rules are documented there), with
// the geometry helpers the map and its tests compute shapes with.
#ifndef KHOSIM_ABI_KHO_XARRAY_H_
#define KHOSIM_ABI_KHO_XARRAY_H_

#include <cstddef>
#include <cstdint>

#include "khosim/linux/kho/abi/xarray.h"

namespace khosim::abi {

inline constexpr char kKhoXarrayCompatible[] = KHO_XA_COMPATIBLE;
inline constexpr uint32_t kKhoXarrayMagic = KHO_XA_MAGIC;
inline constexpr uint16_t kKhoXarrayVersion = KHO_XA_VERSION;
inline constexpr unsigned kKhoXarrayMaxKeyBits = KHO_XA_MAX_KEY_BITS;

using KhoXarrayDesc = ::kho_xa_desc;

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

// Entry encodings (the kernel face's kho_xa_* helpers).
inline constexpr uint64_t kKhoXarrayMaxValue = KHO_XA_MAX_VALUE;
inline constexpr uint64_t KhoXarrayMakeValue(uint64_t v) { return kho_xa_mk_value(v); }
inline constexpr bool KhoXarrayIsValue(uint64_t word) { return kho_xa_is_value(word); }
inline constexpr uint64_t KhoXarrayToValue(uint64_t word) { return kho_xa_to_value(word); }
inline constexpr uint64_t KhoXarrayMakePhys(uint64_t pa) { return kho_xa_mk_phys(pa); }
inline constexpr bool KhoXarrayIsPhys(uint64_t word) { return kho_xa_is_phys(word); }
inline constexpr uint64_t KhoXarrayToPhys(uint64_t word) { return kho_xa_to_phys(word); }

static_assert(KhoXarrayMakeValue(0) == 1, "a stored 0 is not the absent word");
static_assert(KhoXarrayToValue(KhoXarrayMakeValue(kKhoXarrayMaxValue)) == kKhoXarrayMaxValue);
static_assert(KhoXarrayMakeValue(kKhoXarrayMaxValue + 1) == 0);
static_assert(KhoXarrayMakePhys(0x1001) == 0 && KhoXarrayMakePhys(0) == 0);

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_KHO_XARRAY_H_

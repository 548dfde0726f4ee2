// Vocabulary types shared by every layer: physical addresses, page frame
// numbers, orders, and the page geometry a machine is built with.
//
// The C++ face uses these strong types so a physical address can never be
// passed where a pfn or a byte count is expected. The kernel face
// (khosim/linux/*.h) uses the kernel's plain integer typedefs.
#ifndef KHOSIM_BASE_TYPES_H_
#define KHOSIM_BASE_TYPES_H_

#include <compare>
#include <cstdint>
#include <string>

namespace khosim {

class PhysAddr {
 public:
  constexpr PhysAddr() = default;
  constexpr explicit PhysAddr(uint64_t value) : value_(value) {}
  constexpr uint64_t value() const { return value_; }
  constexpr bool IsNull() const { return value_ == 0; }
  constexpr PhysAddr operator+(uint64_t bytes) const { return PhysAddr(value_ + bytes); }
  constexpr PhysAddr operator-(uint64_t bytes) const { return PhysAddr(value_ - bytes); }
  constexpr uint64_t operator-(PhysAddr other) const { return value_ - other.value_; }
  constexpr auto operator<=>(const PhysAddr&) const = default;
  std::string ToString() const;

 private:
  uint64_t value_ = 0;
};

class Pfn {
 public:
  constexpr Pfn() = default;
  constexpr explicit Pfn(uint64_t value) : value_(value) {}
  constexpr uint64_t value() const { return value_; }
  constexpr Pfn operator+(uint64_t pages) const { return Pfn(value_ + pages); }
  constexpr Pfn operator-(uint64_t pages) const { return Pfn(value_ - pages); }
  constexpr uint64_t operator-(Pfn other) const { return value_ - other.value_; }
  constexpr auto operator<=>(const Pfn&) const = default;

 private:
  uint64_t value_ = 0;
};

// Allocation order: a block of 2^order pages.
class Order {
 public:
  constexpr Order() = default;
  constexpr explicit Order(unsigned value) : value_(value) {}
  constexpr unsigned value() const { return value_; }
  constexpr uint64_t pages() const { return uint64_t{1} << value_; }
  constexpr auto operator<=>(const Order&) const = default;

 private:
  unsigned value_ = 0;
};

// Page size and the orders derived from it, as the kernel derives them:
// MAX_PAGE_ORDER follows the arm64 defaults (10 / 11 / 13 for 4K / 16K /
// 64K), pageblock_order = min(PMD order, MAX_PAGE_ORDER).
struct PageGeometry {
  unsigned page_shift = 12;
  unsigned max_page_order = 10;
  unsigned pageblock_order = 9;

  // Returns the geometry for 4096, 16384 or 65536; any other size is a
  // configuration error reported by the caller (Validate below).
  static PageGeometry ForPageSize(uint64_t page_size);
  static bool IsSupportedPageSize(uint64_t page_size);

  constexpr uint64_t page_size() const { return uint64_t{1} << page_shift; }
  constexpr uint64_t max_order_nr_pages() const { return uint64_t{1} << max_page_order; }
  constexpr uint64_t pageblock_nr_pages() const { return uint64_t{1} << pageblock_order; }
  constexpr uint64_t PfnToPhysBytes(uint64_t pfn) const { return pfn << page_shift; }
  constexpr Pfn PhysToPfn(PhysAddr pa) const { return Pfn(pa.value() >> page_shift); }
  constexpr PhysAddr PfnToPhys(Pfn pfn) const { return PhysAddr(pfn.value() << page_shift); }
  constexpr bool IsPageAligned(uint64_t v) const { return (v & (page_size() - 1)) == 0; }
  // Order needed to hold |bytes| (the kernel's get_order); bytes > 0.
  unsigned GetOrder(uint64_t bytes) const;
};

inline constexpr uint64_t kKiB = uint64_t{1} << 10;
inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kGiB = uint64_t{1} << 30;
inline constexpr uint64_t kTiB = uint64_t{1} << 40;

namespace literals {
constexpr uint64_t operator""_KiB(unsigned long long v) { return v * kKiB; }
constexpr uint64_t operator""_MiB(unsigned long long v) { return v * kMiB; }
constexpr uint64_t operator""_GiB(unsigned long long v) { return v * kGiB; }
constexpr uint64_t operator""_TiB(unsigned long long v) { return v * kTiB; }
}  // namespace literals

constexpr uint64_t AlignDown(uint64_t v, uint64_t align) { return v & ~(align - 1); }
constexpr uint64_t AlignUp(uint64_t v, uint64_t align) { return (v + align - 1) & ~(align - 1); }
constexpr bool IsAligned(uint64_t v, uint64_t align) { return (v & (align - 1)) == 0; }
constexpr bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Half-open byte range [start, end).
struct PhysRange {
  PhysAddr start;
  PhysAddr end;
  constexpr uint64_t size() const { return end - start; }
  constexpr bool Contains(PhysAddr pa) const { return pa >= start && pa < end; }
  constexpr bool Overlaps(PhysAddr s, PhysAddr e) const { return s < end && start < e; }
  constexpr auto operator<=>(const PhysRange&) const = default;
};

}  // namespace khosim

#endif  // KHOSIM_BASE_TYPES_H_

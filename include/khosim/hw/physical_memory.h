// PhysicalMemory: the simulated DRAM. It outlives every kernel: a kexec
// destroys the Kernel, never the memory.
//
// Backing: one sparse memfd as large as the physical address space, mapped
// once (MAP_SHARED | MAP_NORESERVE) as the direct map. Only pages that were
// written cost host memory; untouched memory reads as zero. Holes and pfn 0
// are mapped PROT_NONE, so touching them faults at the offending instruction.
// vmalloc builds virtually contiguous views by mapping the same file pages a
// second time (MapAlias), so a vmalloc'd byte and its physical page are the
// same memory.
//
// Thread safety: the byte contents follow the simulated hardware's rules
// (none); the methods themselves may be called concurrently.
#ifndef KHOSIM_HW_PHYSICAL_MEMORY_H_
#define KHOSIM_HW_PHYSICAL_MEMORY_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "khosim/base/types.h"
#include "khosim/hw/memory_layout.h"

namespace khosim::hw {

// The byte pattern scrubbed memory reads as (the kernel's PAGE_POISON).
inline constexpr uint8_t kPoisonByte = 0xaa;

class PhysicalMemory {
 public:
  static absl::StatusOr<std::unique_ptr<PhysicalMemory>> Create(MemoryLayout layout);
  ~PhysicalMemory();
  PhysicalMemory(const PhysicalMemory&) = delete;
  PhysicalMemory& operator=(const PhysicalMemory&) = delete;

  const MemoryLayout& layout() const { return layout_; }
  uint64_t page_size() const { return layout_.page_size(); }

  // Direct map (phys_to_virt / virt_to_phys). Virt() accepts any address in
  // [0, end()]; touching a hole faults. Phys() requires a direct-map pointer.
  uint8_t* Virt(PhysAddr pa) const { return base_ + pa.value(); }
  PhysAddr Phys(const void* va) const;
  bool IsDirectMap(const void* va) const;
  bool IsRam(PhysAddr pa, uint64_t len) const { return layout_.IsRam(pa, len); }

  // Overwrites every host-resident byte of [pa, pa+len) with kPoisonByte.
  // Bytes never written stay zero and cost nothing, so scrubbing a range is
  // proportional to what was touched, not to its size.
  void PoisonResident(PhysAddr pa, uint64_t len);
  // Drops the contents of [pa, pa+len) (reads as zero again, host memory
  // returned). Page aligned.
  void Discard(PhysAddr pa, uint64_t len);
  // Zeroes [pa, pa+len). Whole host pages inside the range are discarded
  // rather than written, so zeroing untouched memory costs no host memory.
  void Zero(PhysAddr pa, uint64_t len);
  // Direct-map access for [pa, pa+len), page aligned: read-write or none.
  void SetAccessible(PhysAddr pa, uint64_t len, bool accessible);
  // Every RAM byte accessible again through the direct map (holes stay
  // inaccessible): the state a freshly started kernel finds.
  void ResetAccess();
  // Calls |fn| for each maximal host-resident sub-range of [pa, pa+len).
  void ForEachResidentRange(PhysAddr pa, uint64_t len,
                            const std::function<void(PhysAddr, uint64_t)>& fn) const;

  // Maps [pa, pa+len) at host address |va| (MAP_FIXED, inside a region the
  // caller reserved with ReserveAliasSpace). Page aligned.
  void MapAlias(void* va, PhysAddr pa, uint64_t len);
  // Reserves |len| bytes of inaccessible host address space for aliases.
  static void* ReserveAliasSpace(uint64_t len);
  // Returns alias space [va, va+len) to the inaccessible reserved state.
  static void UnmapAlias(void* va, uint64_t len);
  static void ReleaseAliasSpace(void* va, uint64_t len);

  // Host memory the backing currently costs.
  uint64_t ResidentBytes() const;

 private:
  PhysicalMemory(MemoryLayout layout, int fd, uint8_t* base, uint64_t span);

  MemoryLayout layout_;
  int fd_;
  uint8_t* base_;
  uint64_t span_;
};

}  // namespace khosim::hw

#endif  // KHOSIM_HW_PHYSICAL_MEMORY_H_

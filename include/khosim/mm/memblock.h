// Memblock: the boot-time memory manager.
//
// Two region lists, `memory` (what RAM exists, with KHO_SCRATCH / HOTPLUG /
// MIRROR / NOMAP flags) and `reserved` (what is taken, with RSRV_KERN /
// RSRV_NOINIT / RSRV_HUGETLB flags). Allocations search memory minus
// reserved, top-down by default, and record themselves as RSRV_KERN.
//
// Scratch-only phase: while set (a KHO boot before memblock_free_all), only
// memory regions flagged KHO_SCRATCH are candidates. There is no fallback: an
// allocation that does not fit fails (Alloc returns a null address), and the
// *_or_panic variants panic, which is what upstream callers do.
//
// Lifecycle: live from setup_arch until FreeAll() hands every unreserved
// range to the page allocator; after that it is read-only bookkeeping that
// tests may inspect. Context: single-threaded early boot.
#ifndef KHOSIM_MM_MEMBLOCK_H_
#define KHOSIM_MM_MEMBLOCK_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/types.h"

namespace khosim::mm {

// Flag values match the kernel's enum memblock_flags.
enum MemblockFlag : uint32_t {
  kMemblockNone = 0x0,
  kMemblockHotplug = 0x1,
  kMemblockMirror = 0x2,
  kMemblockNoMap = 0x4,
  kMemblockDriverManaged = 0x8,
  kMemblockRsrvNoInit = 0x10,
  kMemblockRsrvKern = 0x20,
  kMemblockKhoScratch = 0x40,
  kMemblockRsrvHugetlb = 0x80,
};

inline constexpr int kNumaNoNode = -1;
// ARCH_LOW_ADDRESS_LIMIT: the top of "low" memory (exclusive here).
inline constexpr uint64_t kLowAddressLimit = uint64_t{1} << 32;

struct MemblockRegion {
  PhysAddr base;
  uint64_t size = 0;
  uint32_t flags = 0;
  int nid = kNumaNoNode;
  PhysAddr end() const { return base + size; }
};

struct MemblockAllocRequest {
  uint64_t size = 0;
  uint64_t align = 0;  // 0 means page size
  PhysAddr min_addr;   // inclusive
  PhysAddr max_addr;   // exclusive; null means no limit
  int nid = kNumaNoNode;
  bool exact_nid = false;
  bool bottom_up = false;
  // Reserved with RSRV_KERN unless this is a hugetlb reservation, which gets
  // RSRV_HUGETLB and must not overlap scratch.
  bool hugetlb = false;
};

class Memblock {
 public:
  explicit Memblock(KernelContext& ctx);

  // Ranges are [base, base + size); a size reaching past the top of the
  // address space is capped there, and size 0 is a no-op.
  //
  // memory list. Add inserts only the parts not yet covered (covered parts
  // keep their node and flags); the Mark/Clear calls split regions at the
  // range's edges and change flags only where memory exists.
  void Add(PhysAddr base, uint64_t size, int nid, uint32_t flags = kMemblockNone);
  void Remove(PhysAddr base, uint64_t size);
  void MarkMemoryFlags(PhysAddr base, uint64_t size, uint32_t flags);
  void ClearMemoryFlags(PhysAddr base, uint64_t size, uint32_t flags);
  // reserved list. Same overlap rules as the memory list. A reserved region
  // takes the node of the memory beneath it (kNumaNoNode outside memory),
  // recomputed whenever memory changes, so a reservation crossing a node
  // boundary is kept as one region per node.
  void Reserve(PhysAddr base, uint64_t size, uint32_t flags = kMemblockNone);
  void Free(PhysAddr base, uint64_t size);
  void MarkReservedFlags(PhysAddr base, uint64_t size, uint32_t flags);

  // Returns the base of a newly reserved range, or a null address on failure
  // (also when the "memblock" fault point fires). Contents are not touched.
  // Each call is one hit of the fault point. Size 0 or a non-power-of-two
  // alignment WARNs and fails. The first page is never returned (min_addr is
  // raised to the page size) so that a null address always means failure.
  // NOMAP and DRIVER_MANAGED memory is never a candidate.
  PhysAddr Alloc(const MemblockAllocRequest& request);

  void SetScratchOnly(bool on) { scratch_only_ = on; }
  bool scratch_only() const { return scratch_only_; }

  // Calls |fn| for each free range (memory minus reserved, excluding NOMAP
  // and DRIVER_MANAGED), one memory region at a time, rounded inward to page
  // boundaries (empty results dropped), ascending. nid = kNumaNoNode for all
  // nodes. Ignores the scratch-only switch.
  void ForEachFreeRange(int nid, const std::function<void(PhysAddr, PhysAddr, int)>& fn) const;

  uint64_t ReservedSizeWithFlags(uint32_t flags) const;
  uint64_t ReservedKernSize(PhysAddr limit = PhysAddr(~uint64_t{0}), int nid = kNumaNoNode) const;
  uint64_t ReservedHugetlbSize() const { return ReservedSizeWithFlags(kMemblockRsrvHugetlb); }
  uint64_t TotalReserved() const;
  uint64_t TotalMemory() const;
  // Both are false for size 0.
  bool IsReserved(PhysAddr base, uint64_t size) const;  // any overlap
  bool IsMemory(PhysAddr base, uint64_t size) const;    // fully covered
  // Node of the memory region holding |pa|, or kNumaNoNode.
  int NodeOf(PhysAddr pa) const;

  const std::vector<MemblockRegion>& memory() const { return memory_; }
  const std::vector<MemblockRegion>& reserved() const { return reserved_; }

  // Sorted, non-overlapping, merged where possible, reserved inside memory
  // and on the node of the memory beneath it. InternalError names the
  // first violation.
  absl::Status Validate() const;
  std::string Dump() const;

 private:
  KernelContext& ctx_;
  std::vector<MemblockRegion> memory_;
  std::vector<MemblockRegion> reserved_;
  bool scratch_only_ = false;
};

}  // namespace khosim::mm

#endif  // KHOSIM_MM_MEMBLOCK_H_

// IommuHardware: the machine's DMA remapping units, VT-d-like, one per PCI
// segment. Like PCI config space they outlive every kernel: a kexec leaves
// the registers, the latched root-table pointer and the caches as kernel A
// left them; only a cold boot (PowerOn) resets them.
//
// A unit translates a DMA request from (bus, devfn) at an IOVA by reading
// tables from simulated physical memory at the moment of the access, as the
// hardware does: the root table (one 16-byte entry per bus) whose address
// was latched by GCMD.SRTP, the bus's context table (one entry per devfn:
// present, translation type, address width, domain id, second-level table
// pointer) and 3-, 4- or 5-level second-level page tables (read/write bits,
// 2 MiB and 1 GiB leaves). With GSTS.TES clear, requests pass untranslated
// (IOVA = physical address). Translations are cached in an IOTLB (FIFO,
// tagged by source and domain id) until software invalidates them through
// the IOTLB register: a stale entry keeps translating after an unmap,
// exactly the class of bug invalidation exists for. Context entries are
// read at every walk (no context cache is modelled; CCMD completes at once).
//
// Every table page the walk is about to read is first shown to the running
// kernel's DmaMemoryOracle: a page that is not RAM, or that the kernel holds
// free or owns for something other than the unit's tables, is a translation
// fault (the walk reads nothing from it). Faults are recorded in the unit's
// fault log (FSTS.PPF set) and returned to the requester, which aborts the
// access.
//
// Thread safety: none; the machine drives it from one thread.
#ifndef KHOSIM_HW_IOMMU_H_
#define KHOSIM_HW_IOMMU_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "khosim/base/types.h"
#include "khosim/hw/pci_topology.h"
#include "khosim/hw/physical_memory.h"

namespace khosim::hw {

// What the running kernel says about a physical page a unit or a device is
// about to touch.
enum class DmaVerdict {
  kOk,          // a table page of the unit / a page the device may write
  kNotRam,      // no memory there
  kFree,        // the kernel's allocator holds it free (scrubbed, reusable)
  kOtherOwner,  // the kernel owns it for something else
};
const char* DmaVerdictName(DmaVerdict verdict);

struct DmaCheck {
  DmaVerdict verdict = DmaVerdict::kOk;
  // Who owns the page instead ("free memory", "kernel memory", ...).
  std::string owner;
  // False when the page is not mapped in the host (free memory under the
  // inaccessible policy): a write there is recorded but cannot land.
  bool accessible = true;
};

class PciFunction;

// Implemented by the running kernel (drivers/iommu); the machine passes the
// current kernel's to the hardware at each access. nullptr: no kernel runs
// (nothing is checked).
class DmaMemoryOracle {
 public:
  virtual ~DmaMemoryOracle() = default;
  // The unit of |segment| is about to read a root, context or page-table
  // page.
  virtual DmaCheck CheckTablePage(uint16_t segment, PhysAddr page) = 0;
  // |device| is about to write (or read) the page at |page|, which it
  // reached through |iova|. Only writes are judged; for a read, only
  // |accessible| matters.
  virtual DmaCheck CheckAccess(const PciFunction& device, uint64_t iova, PhysAddr page,
                               bool write) = 0;
};

enum class IommuFaultReason {
  kRootNotPresent,
  kContextNotPresent,
  kContextInvalid,    // reserved translation type or unsupported width
  kAddressTooWide,    // IOVA beyond the context's address width
  kPteNotPresent,     // no mapping
  kWriteNotAllowed,   // mapped without DMA_PTE_WRITE
  kReadNotAllowed,    // mapped without DMA_PTE_READ
  kTablePageInvalid,  // a table page the kernel does not hold as one
};
const char* IommuFaultReasonName(IommuFaultReason reason);

struct IommuFault {
  uint16_t segment = 0;
  uint8_t bus = 0;
  uint8_t devfn = 0;
  uint64_t iova = 0;
  bool write = false;
  IommuFaultReason reason = IommuFaultReason::kPteNotPresent;
  PhysAddr table;      // the table page the walk stopped at (if any)
  std::string detail;  // the oracle's owner for kTablePageInvalid
};

struct Translation {
  bool ok = false;
  PhysAddr pa;  // the translated address (ok)
  // Bytes from |pa| that the same translation covers (to the end of the
  // leaf page).
  uint64_t span = 0;
  uint16_t did = 0;  // the context's domain id (ok, translated)
  IommuFault fault;  // !ok
};

class IommuUnit {
 public:
  IommuUnit(PhysicalMemory& memory, uint16_t segment, uint64_t mmio_base);
  IommuUnit(const IommuUnit&) = delete;
  IommuUnit& operator=(const IommuUnit&) = delete;

  uint16_t segment() const { return segment_; }
  // The register block's address (the ACPI DMAR unit's base): how kernels
  // name a unit across a kexec.
  uint64_t mmio_base() const { return mmio_base_; }

  // MMIO: 32-bit registers (GCMD, GSTS, FSTS) and 64-bit ones (CAP, ECAP,
  // RTADDR, CCMD, IOTLB) at their DMAR_* offsets; other offsets read 0 and
  // ignore writes. GCMD acts: SRTP latches RTADDR as the root table (and
  // sets GSTS.RTPS), TE sets or clears GSTS.TES. CCMD with ICC and the
  // IOTLB register with IVT invalidate (global or by domain id) and read
  // back with the bit clear. Writing FSTS.PPF clears the fault log.
  uint64_t ReadReg(uint32_t offset) const;
  void WriteReg(uint32_t offset, uint64_t value);

  void PowerOn();

  bool translation_enabled() const { return (gsts_ & (1U << 31)) != 0; }
  // The latched root table (GSTS.RTPS), or 0.
  PhysAddr root_table() const { return root_table_; }

  // Translates a request from (bus, devfn); records a fault on failure.
  Translation Translate(uint8_t bus, uint8_t devfn, uint64_t iova, bool write,
                        DmaMemoryOracle* oracle);
  // The raw walk without caches and without recording faults (inspection).
  Translation Walk(uint8_t bus, uint8_t devfn, uint64_t iova, bool write,
                   DmaMemoryOracle* oracle) const;

  const std::vector<IommuFault>& faults() const { return faults_; }
  uint64_t walks() const { return walks_; }
  uint64_t iotlb_hits() const { return iotlb_hits_; }

  static constexpr size_t kIotlbEntries = 512;

 private:
  struct ContextEntry {
    uint64_t lo = 0;
    uint64_t hi = 0;
  };
  struct TlbEntry {
    uint64_t pa_page = 0;  // 4 KiB frame the IOVA page maps to
    bool read = false;
    bool write = false;
    uint16_t did = 0;
  };

  bool LookupContext(uint8_t bus, uint8_t devfn, DmaMemoryOracle* oracle, ContextEntry* out,
                     IommuFault* fault) const;
  bool ReadTableEntry(PhysAddr table, unsigned index, DmaMemoryOracle* oracle, uint64_t* out,
                      IommuFault* fault) const;
  void InvalidateIotlb(bool all, uint16_t did);

  PhysicalMemory& memory_;
  const uint16_t segment_;
  const uint64_t mmio_base_;
  uint32_t gsts_ = 0;
  uint32_t fsts_ = 0;
  uint64_t rtaddr_ = 0;
  PhysAddr root_table_;
  uint64_t ccmd_ = 0;
  uint64_t iotlb_reg_ = 0;
  std::vector<IommuFault> faults_;
  absl::flat_hash_map<uint64_t, TlbEntry> iotlb_;  // (source id << 52) | iova page
  std::deque<uint64_t> iotlb_order_;
  uint64_t walks_ = 0;
  uint64_t iotlb_hits_ = 0;
};

class IommuHardware {
 public:
  // One unit per segment of |topology|, register blocks from
  // kIommuMmioBase, one page apart, in segment order.
  IommuHardware(PhysicalMemory& memory, const PciTopology& topology);

  void PowerOn();
  // nullptr for a segment without a unit.
  IommuUnit* Unit(uint16_t segment) const;
  const std::vector<std::unique_ptr<IommuUnit>>& units() const { return units_; }

  static constexpr uint64_t kIommuMmioBase = 0xfed90000;

 private:
  std::vector<std::unique_ptr<IommuUnit>> units_;
};

}  // namespace khosim::hw

#endif  // KHOSIM_HW_IOMMU_H_

// IommuCore: one kernel's IOMMU core and VT-d driver, the C++ face of
// linux/iommu.h. It brings the machine's remapping units up at
// pci_iommu_init (after PCI enumeration), gives every PCI function an IOMMU
// state (dev->iommu), owns the paging domains of this boot with their page
// tables (allocated from the buddy allocator, written in the VT-d format
// the hardware walks), programs context entries on attach and detach,
// invalidates the IOTLB on unmap, and shuts the units down at kexec.
//
// Unit bring-up, as intel-iommu's init_dmars:
//   - a unit the previous kernel preserved (the FLB "iommu-liveupdate"
//     names it by register base) keeps running: its root table and
//     context tables are restored in place, the register that points at
//     them is not rewritten, and the domain ids of the preserved devices
//     stay reserved;
//   - any other unit found translating is switched off first ("Translation
//     was enabled ... but we are not in kdump mode"), then gets a fresh
//     root table, and translation is enabled.
// Device probe: every non-bridge function gets an IOMMU state; one the
// previous kernel preserved is attached to its restored domain (the
// page-table pages are restored in place, never copied) and its group is
// owned by the preserved dma_owner_token, so only that owner can claim it.
// Shutdown at kexec (intel_iommu_shutdown, after device_shutdown): a
// preserved unit keeps translating, with every context entry of a device
// not preserved cleared; any other unit stops translating.
//
// Context: per boot; dies with the kernel. Callers drive it from one
// thread, as the PCI core's; the DMA oracle (dma_oracle()) is called by the
// hardware from the machine's thread between kernel operations.
#ifndef KHOSIM_DRIVERS_IOMMU_H_
#define KHOSIM_DRIVERS_IOMMU_H_

#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/types.h"
#include "khosim/drivers/pci.h"
#include "khosim/hw/iommu.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/iommu.h"
#include "khosim/mm/mm.h"

namespace khosim::drivers {

class IommuCore;
class IommuLiveUpdate;
struct IommuUnitState;

// A paging domain of this kernel (4-level VT-d second-stage tables).
struct IommuDomain {
  struct iommu_domain face;  // what the kernel face hands out
  PhysAddr top;              // the top table page
  unsigned levels = 4;
  // Every table page, the top included (4 KiB of tables at the start of
  // each kernel page).
  absl::flat_hash_set<uint64_t> tables;
  // Domain id on each unit the domain is attached through, with the number
  // of devices attached there.
  absl::flat_hash_map<IommuUnitState*, std::pair<uint16_t, int>> dids;
  uint64_t mapped_bytes = 0;
  bool restored = false;       // adopted from the previous kernel's tables
  uint64_t restored_from = 0;  // kernel B: the iommu_domain_ser it came from
};

// The VT-d driver's view of one unit (intel-iommu's struct intel_iommu).
struct IommuUnitState {
  hw::IommuUnit* hw = nullptr;
  int seq = 0;  // dmar<seq>
  PhysAddr root;
  std::array<PhysAddr, 256> context = {};  // per bus; 0: none
  std::bitset<4096> dids;                  // 0 is reserved
  bool adopted = false;                    // kernel B: kept the preserved tables
};

}  // namespace khosim::drivers

// dev->iommu: the core's per-device state.
struct dev_iommu {
  struct pci_dev* pdev = nullptr;
  khosim::drivers::IommuUnitState* unit = nullptr;
  khosim::drivers::IommuDomain* domain = nullptr;  // NULL: blocked
  void* owner = nullptr;                           // DMA owner of the group
  unsigned owner_cnt = 0;
  bool singleton = true;
  struct iommu_device_ser* preserved = nullptr;  // kernel A: this device's record
  bool restored = false;                         // kernel B: came in preserved
  bool restored_claimed = false;  // kernel B: claimed with the preserved owner token since
};

namespace khosim::drivers {

class IommuCore {
 public:
  IommuCore(KernelContext& ctx, mm::Mm& mm, kho::Kho& kho, hw::IommuHardware& hw, PciCore* pci);
  ~IommuCore();
  IommuCore(const IommuCore&) = delete;
  IommuCore& operator=(const IommuCore&) = delete;

  // The running kernel's core; nullptr without IOMMU hardware.
  static IommuCore* CurrentOrNull();

  // pci_iommu_init: units up, then every device probed (see the file
  // comment). 0 or -ENOMEM.
  int Init();
  // intel_iommu_shutdown for a kexec (see the file comment).
  void Shutdown();

  // What the hardware asks before it reads a table page or a device writes
  // memory (see DmaOracle in dma_oracle.cc).
  hw::DmaMemoryOracle* dma_oracle() { return oracle_.get(); }

  // The kernel face's backends (linux/iommu.h), same contracts.
  struct iommu_domain* DomainAlloc(struct device* dev);
  void DomainFree(struct iommu_domain* domain);
  int Map(struct iommu_domain* domain, uint64_t iova, uint64_t paddr, uint64_t size, int prot);
  uint64_t Unmap(struct iommu_domain* domain, uint64_t iova, uint64_t size);
  uint64_t IovaToPhys(struct iommu_domain* domain, uint64_t iova);
  int Attach(struct iommu_domain* domain, struct device* dev);
  void Detach(struct iommu_domain* domain, struct device* dev);
  struct iommu_domain* DomainOf(struct device* dev);
  int ClaimDmaOwner(struct device* dev, void* owner);
  void ReleaseDmaOwner(struct device* dev);

  IommuLiveUpdate& liveupdate() { return *liveupdate_; }

  // Inspection (tests, reports).
  const std::vector<std::unique_ptr<IommuUnitState>>& units() const { return units_; }
  std::vector<const IommuDomain*> domains() const;
  static IommuDomain* FromFace(struct iommu_domain* domain);
  // True iff |page| (a kernel page) holds a root, context or page table of
  // this kernel's units and domains.
  bool IsTablePage(PhysAddr page) const;
  IommuUnitState* UnitFor(const struct pci_dev* pdev) const;

 private:
  friend class IommuLiveUpdate;

  // VT-d programming (vtd.cc).
  void BringUp(IommuUnitState& unit);
  PhysAddr AllocTable();
  void FreeTable(PhysAddr table);
  uint64_t ReadEntry(PhysAddr table, unsigned index) const;
  void WriteEntry(PhysAddr table, unsigned index, uint64_t value);
  int EnsureContextTable(IommuUnitState& unit, uint8_t bus);
  void WriteContext(IommuUnitState& unit, const struct pci_dev* pdev, IommuDomain* domain,
                    uint16_t did);
  void FlushContext(IommuUnitState& unit);
  void FlushIotlb(IommuUnitState& unit, uint16_t did);
  int AllocDid(IommuUnitState& unit);
  // The leaf entry mapping |iova|: its table and index and the leaf's
  // size; false if not mapped. Reads this kernel's tables only.
  bool FindLeaf(const IommuDomain& d, uint64_t iova, PhysAddr* table, unsigned* index,
                uint64_t* size) const;
  void FreeTables(IommuDomain& d, PhysAddr table, unsigned level);
  IommuDomain* NewDomain();

  void Probe(struct pci_dev* pdev);
  struct dev_iommu* StateOf(struct device* dev) const;

  KernelContext& ctx_;
  mm::Mm& mm_;
  kho::Kho& kho_;
  hw::IommuHardware& hw_;
  PciCore* pci_;
  std::vector<std::unique_ptr<IommuUnitState>> units_;
  std::vector<std::unique_ptr<IommuDomain>> domains_;
  std::vector<std::unique_ptr<struct dev_iommu>> devices_;
  // Root and context tables of every unit (page-table pages are per
  // domain).
  absl::flat_hash_set<uint64_t> unit_tables_;
  std::unique_ptr<hw::DmaMemoryOracle> oracle_;
  std::unique_ptr<IommuLiveUpdate> liveupdate_;
};

}  // namespace khosim::drivers

#endif  // KHOSIM_DRIVERS_IOMMU_H_

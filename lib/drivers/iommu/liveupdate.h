// IommuLiveUpdate: the IOMMU core's live update state in one kernel: the
// FLB "iommu-liveupdate" (linux/kho/abi/iommu.h), what kernel A preserves
// (domains with their page-table pages, devices, units with their root and
// context tables), and what kernel B adopts at bring-up and probe.
//
// Kernel B treats every byte of the record as hostile: array chains are
// bounded by the pages that really were preserved (each page is restored
// once; a second visit fails the restore), object counts are checked
// against the page, and addresses inside objects must name slots of the
// arrays. Where upstream panics or BUGs (a page that cannot be restored,
// a bad version, a missing array) the simulator panics; where upstream
// would read past an array page, it panics naming the access instead.
#ifndef KHOSIM_LIB_DRIVERS_IOMMU_LIVEUPDATE_H_
#define KHOSIM_LIB_DRIVERS_IOMMU_LIVEUPDATE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "khosim/drivers/iommu.h"
#include "khosim/linux/kho/abi/iommu.h"
#include "khosim/linux/liveupdate.h"

namespace khosim::drivers {

// The FLB every linked handler shares.
extern struct liveupdate_flb iommu_liveupdate_flb;

class IommuLiveUpdate {
 public:
  explicit IommuLiveUpdate(IommuCore& core);
  ~IommuLiveUpdate();
  IommuLiveUpdate(const IommuLiveUpdate&) = delete;
  IommuLiveUpdate& operator=(const IommuLiveUpdate&) = delete;

  // The FLB's callbacks.
  int FlbPreserve(struct liveupdate_flb_op_args* args);
  void FlbUnpreserve(struct liveupdate_flb_op_args* args);
  int FlbRetrieve(struct liveupdate_flb_op_args* args);
  void FlbFinish(struct liveupdate_flb_op_args* args);

  // Kernel A (linux/iommu.h contracts).
  int PreserveDomain(IommuDomain& d);
  void UnpreserveDomain(IommuDomain& d);
  int PreserveDevice(IommuDomain& d, struct dev_iommu& dev, uint64_t token);
  void UnpreserveDevice(IommuDomain& d, struct dev_iommu& dev);
  // Shutdown: the unit's record, if kernel A preserved it; whether a
  // context table page is part of it.
  bool UnitPreserved(const IommuUnitState& unit) const;
  bool ContextTablePreserved(const IommuUnitState& unit, uint8_t bus) const;

  // Kernel B: reads the incoming FLB (once; nothing if there is none).
  void LoadIncoming();
  // Adopts |unit| if the previous kernel preserved it: restores its root
  // and context tables in place and reserves its preserved devices' domain
  // ids. False if the unit was not preserved.
  bool AdoptUnit(IommuUnitState& unit);
  // Attaches |dev| to its restored domain if the previous kernel preserved
  // it (restoring the domain's tables the first time).
  void RestoreDevice(struct dev_iommu& dev);
  // NULL once the restored domain was freed.
  IommuDomain* RestoredDomain(uint64_t domain_ser_phys) const;
  // A restored domain is being freed: its record stays counted as restored
  // (its tables are freed by the domain, not by finish) but no longer
  // names the domain.
  void ForgetRestored(const IommuDomain& d);
  bool has_incoming() const { return incoming_ != nullptr; }

 private:
  struct Chain {
    std::vector<struct iommu_array_hdr_ser*> pages;
  };
  struct Outgoing {
    struct iommu_flb_ser* ser = nullptr;
    Chain units, domains, devices;
    absl::flat_hash_map<const IommuUnitState*, struct iommu_hw_ser*> unit_sers;
  };
  struct Incoming {
    struct iommu_flb_ser* ser = nullptr;
    std::vector<void*> pages;  // restored array pages, freed at finish
    std::vector<struct iommu_hw_ser*> units;
    std::vector<struct iommu_domain_ser*> domains;
    std::vector<struct iommu_device_ser*> devices;
    absl::flat_hash_set<uint64_t> unit_slots, domain_slots;        // physical addresses
    absl::flat_hash_map<uint64_t, IommuDomain*> restored;          // domain slot -> domain
    absl::flat_hash_map<uint64_t, IommuUnitState*> adopted_units;  // unit slot -> unit
  };

  Outgoing* GetOutgoing(int* err);
  void PutOutgoing();
  void* Append(Chain& chain, uint64_t* head_phys, size_t size, int* err);
  int PreserveTable(PhysAddr table);
  void UnpreserveTable(PhysAddr table);
  struct iommu_hw_ser* PreserveUnit(Outgoing& out, IommuUnitState& unit, int* err);
  void ReleaseUnit(Outgoing& out, IommuUnitState& unit, struct iommu_hw_ser* ser);
  void RestoreChain(uint64_t head, size_t size, const char* what, std::vector<void*>* objects);
  IommuDomain* RestoreDomain(struct iommu_domain_ser* ser);
  void RestoreTables(IommuDomain& d, PhysAddr table, unsigned level);
  void ReleaseUnrestored();
  // Kernel B gives up on a preserved device: its context entry is cleared
  // so the unit stops walking tables this kernel will free.
  void Block(IommuUnitState& unit, uint8_t bus, uint8_t devfn);

  IommuCore& core_;
  std::unique_ptr<Outgoing> outgoing_;
  std::unique_ptr<Incoming> incoming_;
  bool loaded_ = false;
};

}  // namespace khosim::drivers

#endif  // KHOSIM_LIB_DRIVERS_IOMMU_LIVEUPDATE_H_

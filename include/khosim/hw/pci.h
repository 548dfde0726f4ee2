// PciHardware: the machine's PCI functions and their configuration spaces.
// It outlives every kernel: a kexec does not touch it, so whatever kernel A
// last wrote (bus numbers, bus mastering, ACS control, MSI-X enable, ...)
// is what kernel B reads. Only a cold boot (PowerOn), a Function Level
// Reset or a secondary bus reset puts registers back to their reset values.
//
// Config space (4 KiB per function, little endian) behaves as a device's
// does: each byte has a write mask (read-only bits keep their value) and a
// write-1-to-clear mask (status error bits); a few writes act:
//   - PCI Express Device Control "Initiate FLR" on an FLR-capable function
//     resets it (and, on a PF, disables its VFs); the bit reads as 0;
//   - Bridge Control "Secondary Bus Reset" going 0 -> 1 resets every
//     function below the bridge (bridges lose their bus numbers);
//   - SR-IOV Control "VF Enable" going 0 -> 1 creates NumVFs virtual
//     functions (NumVFs in 1..TotalVFs, else nothing is created), 1 -> 0
//     removes them; NumVFs is read-only while VFs are enabled.
//
// Routing follows PCI Express: an access to (domain, bus, devfn) starts on
// the segment's root bus; a bridge passes it down when its secondary <=
// bus <= subordinate (a bridge with secondary bus 0 passes nothing), and a
// root or downstream port delivers to device number 0 only, unless its ARI
// Forwarding Enable is set. VFs answer at PF routing ID + offset + n *
// stride; they read vendor and device id as 0xffff, as real VFs do. An
// access nothing answers reads all-ones, and a write to it is dropped.
//
// Thread safety: none; the machine drives it from one thread.
#ifndef KHOSIM_HW_PCI_H_
#define KHOSIM_HW_PCI_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "khosim/hw/pci_topology.h"

namespace khosim::hw {

class PciHardware;

// A function's reset values and write masks: fixed by its hardware design,
// so functions of one design (and a PF's VFs) share one.
struct PciConfigTemplate {
  std::array<uint8_t, 4096> reset = {};
  std::array<uint8_t, 4096> wmask = {};
  std::array<uint8_t, 4096> w1cmask = {};
  bool flr_capable = false;
  uint16_t exp_cap = 0;
  uint16_t msi_cap = 0;
  uint16_t msix_cap = 0;
  uint16_t acs_cap = 0;
  uint16_t sriov_cap = 0;
};

class PciFunction {
 public:
  PciFunction(const PciFunction&) = delete;
  PciFunction& operator=(const PciFunction&) = delete;

  const std::string& name() const { return name_; }
  PciKind kind() const { return kind_; }
  bool is_bridge() const { return kind_ != PciKind::kEndpoint; }
  bool is_virtfn() const { return physfn_ != nullptr; }
  uint16_t domain() const { return domain_; }
  // Device/function number on the parent's secondary bus (or the root bus).
  uint8_t devfn() const { return devfn_; }
  // The bridge whose secondary bus this function sits on; nullptr on a
  // root bus. A VF's is its PF's.
  PciFunction* parent() const { return parent_; }
  PciFunction* physfn() const { return physfn_; }
  const std::vector<std::unique_ptr<PciFunction>>& children() const { return children_; }
  const std::vector<std::unique_ptr<PciFunction>>& vfs() const { return vfs_; }

  // The register bytes as they are, without side effects (tests, reports,
  // the DMA engines that check bus mastering).
  uint32_t Peek(uint16_t offset, int size) const;
  bool bus_master() const;
  // Capability offsets, 0 if absent (fixed by the hardware's layout).
  uint16_t exp_cap() const { return tmpl_->exp_cap; }
  uint16_t msi_cap() const { return tmpl_->msi_cap; }
  uint16_t msix_cap() const { return tmpl_->msix_cap; }
  uint16_t acs_cap() const { return tmpl_->acs_cap; }
  uint16_t sriov_cap() const { return tmpl_->sriov_cap; }
  // Resets this function went through (FLR, bus reset, power-on).
  uint64_t reset_count() const { return reset_count_; }

 private:
  friend class PciHardware;
  PciFunction() = default;

  std::string name_;
  PciKind kind_ = PciKind::kEndpoint;
  uint16_t domain_ = 0;
  uint8_t devfn_ = 0;
  PciFunction* parent_ = nullptr;
  PciFunction* physfn_ = nullptr;
  std::vector<std::unique_ptr<PciFunction>> children_;
  std::vector<std::unique_ptr<PciFunction>> vfs_;
  std::array<uint8_t, 4096> config_ = {};
  std::shared_ptr<const PciConfigTemplate> tmpl_;
  std::shared_ptr<const PciConfigTemplate> vf_tmpl_;  // a PF's VFs' design
  uint64_t reset_count_ = 0;
};

class PciHardware {
 public:
  // InvalidArgument as PciTopology::Validate.
  static absl::StatusOr<std::unique_ptr<PciHardware>> Create(const PciTopology& topology);
  ~PciHardware();
  PciHardware(const PciHardware&) = delete;
  PciHardware& operator=(const PciHardware&) = delete;

  // A config read of |size| bytes (1, 2 or 4, |offset| aligned to it, below
  // 4096) as the host bridge issues it: all-ones for a malformed access or
  // when nothing answers.
  uint32_t ConfigRead(uint16_t domain, uint8_t bus, uint8_t devfn, uint16_t offset, int size);
  // A config write; dropped when malformed or when nothing answers.
  void ConfigWrite(uint16_t domain, uint8_t bus, uint8_t devfn, uint16_t offset, int size,
                   uint32_t value);
  // The function an access to (domain, bus, devfn) reaches now, or nullptr.
  PciFunction* Route(uint16_t domain, uint8_t bus, uint8_t devfn);
  // The bus number |f| sits on now (its requester ID's bus): the parent
  // bridge's secondary bus register, or the segment's root bus.
  uint8_t BusOf(const PciFunction& f) const;

  // Power-on reset of every function: a cold boot. A kexec never calls it.
  void PowerOn();

  // The segments' domains, in topology order, and each one's root bus.
  std::vector<uint16_t> Domains() const;
  uint8_t RootBus(uint16_t domain) const;  // 0 for an unknown domain
  // The functions on |domain|'s root bus.
  const std::vector<std::unique_ptr<PciFunction>>* RootFunctions(uint16_t domain) const;
  // By name (VFs are "<pf name>.vf<n>", n from 0); nullptr if absent.
  PciFunction* Find(absl::string_view name) const;
  // Every function, depth first, each PF's VFs right after it.
  void ForEach(const std::function<void(PciFunction&)>& fn) const;
  size_t FunctionCount() const;

  uint64_t config_reads() const { return config_reads_; }
  uint64_t config_writes() const { return config_writes_; }

 private:
  struct Segment {
    uint16_t domain = 0;
    uint8_t root_bus = 0;
    std::vector<std::unique_ptr<PciFunction>> functions;
  };

  class Designs;

  PciHardware() = default;
  static std::unique_ptr<PciFunction> Build(const PciFunctionSpec& spec, uint16_t domain,
                                            PciFunction* parent, bool multifunction,
                                            Designs& designs);
  PciFunction* RouteOnBus(const std::vector<std::unique_ptr<PciFunction>>& functions,
                          uint8_t this_bus, const PciFunction* upstream, uint8_t bus,
                          uint8_t devfn);
  void Write(PciFunction& f, uint16_t offset, int size, uint32_t value);
  void ResetFunction(PciFunction& f);
  void ResetBelow(PciFunction& bridge);
  void EnableVfs(PciFunction& pf);

  std::vector<Segment> segments_;
  uint64_t config_reads_ = 0;
  uint64_t config_writes_ = 0;
};

}  // namespace khosim::hw

#endif  // KHOSIM_HW_PCI_H_

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
// MSI-X (the capability's Message Control in config space; each vector's
// mask bit and pending bit, which live in BAR 0, as state of the function):
// see "MSI-X" in PciFunction and docs/msix.md. Like config space, it
// survives a kexec; FLR, bus reset and power-on put it back to reset
// (MSI-X off, every vector masked, nothing pending).
//
// Thread safety: none; the machine drives it from one thread.
#ifndef KHOSIM_HW_PCI_H_
#define KHOSIM_HW_PCI_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "khosim/hw/pci_topology.h"

namespace khosim::hw {

class PciFunction;
class PciHardware;

// What a function's MSI-X logic did with a vector it signalled: sent the
// message (a memory write to the interrupt controller's address), or could
// not send it. A vector it had to hold back (masked) is no event: it sets
// the pending bit, and is sent when unmasked.
struct MsixMessage {
  enum class Kind {
    kSent,
    kLost,  // MSI-X Enable clear, or a vector outside the table
  };
  Kind kind = Kind::kSent;
  const PciFunction* function = nullptr;
  uint16_t vector = 0;
  const char* reason = "";  // kLost: "MSI-X disabled" or "no such vector"
};
// Receives every MSI-X message of every function, in the order sent, on the
// thread that made the function send it (the machine's). Installed by the
// machine, which routes sent messages to the running kernel.
using MsixSink = std::function<void(const MsixMessage&)>;

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

  // ---- MSI-X --------------------------------------------------------------
  // The table size (Message Control's Table Size + 1); 0 without MSI-X.
  uint16_t msix_table_size() const;
  // Message Control's MSI-X Enable and Function Mask bits.
  bool msix_enabled() const;
  bool msix_function_masked() const;
  // Table entry |vector|'s Vector Control Mask Bit (set at reset) and its
  // bit in the Pending Bit Array; true and false past the table.
  bool msix_vector_masked(uint16_t vector) const;
  bool msix_pending(uint16_t vector) const;
  // Stands for software's write of the Mask Bit in table entry |vector| (the
  // table is in BAR 0; the simulator has no MMIO, so drivers call this).
  // Like any memory-space write it reaches the function only while memory
  // decoding is on (Command's Memory Space Enable; for a VF, its PF's
  // SR-IOV VF MSE): false when the write goes nowhere (decoding off, or no
  // such entry). Unmasking a pending vector sends it now, if MSI-X is
  // enabled and the function unmasked (see RaiseMsix).
  bool SetMsixVectorMasked(uint16_t vector, bool masked);
  // The function signals |vector| (a completion of its own, a test), as the
  // PCIe base specification says an MSI-X function does:
  //   - |vector| past the table: nothing is sent (lost, "no such vector");
  //   - MSI-X Enable clear: no message (the function would fall back to
  //     INTx, which is not modelled): lost, "MSI-X disabled";
  //   - Function Mask or the vector's Mask Bit set: the pending bit is set
  //     (repeated signals while masked collapse into that one bit), and the
  //     message is sent, the bit cleared, once neither mask is set and MSI-X
  //     is enabled (a config write of Message Control, or
  //     SetMsixVectorMasked);
  //   - otherwise the message is sent.
  // Sent and lost messages go to the hardware's MsixSink, synchronously.
  // Bus Master Enable does not gate messages here (the specification says
  // it does); the DMA engine, which raises vectors, stops without it.
  void RaiseMsix(uint16_t vector);
  // Messages this function sent, and signals it could not send, since it
  // was built (observations, not registers: no reset clears them).
  uint64_t msix_sent() const { return msix_sent_; }
  uint64_t msix_lost() const { return msix_lost_; }

 private:
  friend class PciHardware;
  PciFunction() = default;
  // MSI-X: the reset state, and sending what is pending and deliverable.
  void ResetMsix();
  void SendPendingMsix();
  void SendMsix(MsixMessage::Kind kind, uint16_t vector, const char* reason);
  bool memory_decoding() const;

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
  PciHardware* hw_ = nullptr;
  std::vector<bool> msix_masked_;   // per vector: Vector Control bit 0
  std::vector<bool> msix_pending_;  // the Pending Bit Array
  uint64_t msix_sent_ = 0;
  uint64_t msix_lost_ = 0;
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

  // Where every function's MSI-X messages go (see MsixSink); none: they are
  // counted (PciFunction::msix_sent / msix_lost) and go nowhere.
  void SetMsixSink(MsixSink sink) { msix_sink_ = std::move(sink); }
  const MsixSink& msix_sink() const { return msix_sink_; }

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
  MsixSink msix_sink_;
  uint64_t config_reads_ = 0;
  uint64_t config_writes_ = 0;
};

}  // namespace khosim::hw

#endif  // KHOSIM_HW_PCI_H_

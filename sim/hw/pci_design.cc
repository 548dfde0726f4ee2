// Config-space layouts. Every function is PCI Express, with this map:
//
//   0x00  type 0 or type 1 header; command, status (w1c error bits)
//   0x40  PCI Express capability (device/port type, FLR, ARI forwarding)
//   0x80  MSI (endpoints and root ports; not VFs)
//   0x90  MSI-X (endpoints, VFs)
//   0x100 ACS (root and downstream ports)        -- extended capabilities
//   0x100 SR-IOV (PFs), then ARI at 0x140
//
// Write masks follow the PCI Express base specification for the bits the
// simulator models: software can set what a real device lets it set, and
// nothing else.
#include "pci_design.h"

#include <cstring>

#include "khosim/linux/pci_regs.h"

namespace khosim::hw {
namespace {

constexpr uint16_t kExpCap = 0x40;
constexpr uint16_t kMsiCap = 0x80;
constexpr uint16_t kMsixCap = 0x90;
constexpr uint16_t kExtCap = 0x100;
constexpr uint16_t kAriCap = 0x140;
// Bridges of the simulated machine: one vendor/device pair per port kind.
constexpr uint16_t kBridgeVendor = 0x8086;
constexpr uint32_t kBridgeClass = 0x060400;

class Layout {
 public:
  explicit Layout(PciConfigTemplate& t) : t_(t) {}

  void Set(uint16_t offset, int size, uint32_t value) {
    for (int i = 0; i < size; ++i) t_.reset[offset + i] = static_cast<uint8_t>(value >> (8 * i));
  }
  void Writable(uint16_t offset, int size, uint32_t mask) {
    for (int i = 0; i < size; ++i) t_.wmask[offset + i] = static_cast<uint8_t>(mask >> (8 * i));
  }
  void WriteOneToClear(uint16_t offset, int size, uint32_t mask) {
    for (int i = 0; i < size; ++i) {
      t_.w1cmask[offset + i] = static_cast<uint8_t>(mask >> (8 * i));
    }
  }
  // Links a capability into the standard list (the list head is at 0x34).
  void AddCap(uint16_t offset, uint8_t id) {
    t_.reset[offset + PCI_CAP_LIST_ID] = id;
    uint16_t at = PCI_CAPABILITY_LIST;
    while (t_.reset[at] != 0) at = t_.reset[at] + PCI_CAP_LIST_NEXT;
    t_.reset[at] = static_cast<uint8_t>(offset);
    Set(PCI_STATUS, 2, PCI_STATUS_CAP_LIST);
  }
  // Appends an extended capability (version 1) to the chain at 0x100.
  void AddExtCap(uint16_t offset, uint16_t id) {
    Set(offset, 4, static_cast<uint32_t>(id) | (1u << 16));
    if (offset == kExtCap) return;
    uint16_t at = kExtCap;
    for (;;) {
      uint32_t header = 0;
      std::memcpy(&header, &t_.reset[at], 4);
      if (PCI_EXT_CAP_NEXT(header) == 0) {
        Set(at, 4, header | (static_cast<uint32_t>(offset) << 20));
        return;
      }
      at = static_cast<uint16_t>(PCI_EXT_CAP_NEXT(header));
    }
  }

 private:
  PciConfigTemplate& t_;
};

void CommonHeader(Layout& l, uint16_t vendor, uint16_t device, uint32_t class_code,
                  uint8_t header_type, uint16_t command_mask) {
  l.Set(PCI_VENDOR_ID, 2, vendor);
  l.Set(PCI_DEVICE_ID, 2, device);
  l.Set(PCI_CLASS_REVISION, 4, (class_code << 8) | 0x01);
  l.Set(PCI_HEADER_TYPE, 1, header_type);
  l.Writable(PCI_COMMAND, 2, command_mask);
  l.WriteOneToClear(PCI_STATUS, 2,
                    PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_TARGET_ABORT |
                        PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_SYSTEM_ERROR |
                        PCI_STATUS_DETECTED_PARITY);
  l.Writable(PCI_INTERRUPT_LINE, 1, 0xff);
}

uint8_t ExpType(PciKind kind) {
  switch (kind) {
    case PciKind::kEndpoint:
      return PCI_EXP_TYPE_ENDPOINT;
    case PciKind::kRootPort:
      return PCI_EXP_TYPE_ROOT_PORT;
    case PciKind::kSwitchUpstream:
      return PCI_EXP_TYPE_UPSTREAM;
    case PciKind::kSwitchDownstream:
      return PCI_EXP_TYPE_DOWNSTREAM;
  }
  return PCI_EXP_TYPE_ENDPOINT;
}

void ExpressCap(Layout& l, PciConfigTemplate& t, PciKind kind, bool flr) {
  t.exp_cap = kExpCap;
  l.AddCap(kExpCap, PCI_CAP_ID_EXP);
  l.Set(kExpCap + PCI_EXP_FLAGS, 2, 0x2 | (ExpType(kind) << 4));
  l.Set(kExpCap + PCI_EXP_DEVCAP, 4, flr ? PCI_EXP_DEVCAP_FLR : 0);
  // Device Control: the error-reporting and payload fields; "Initiate
  // FLR" is an action, never stored.
  l.Writable(kExpCap + PCI_EXP_DEVCTL, 2, 0x7fff);
  t.flr_capable = flr;
  const bool downstream_port = kind == PciKind::kRootPort || kind == PciKind::kSwitchDownstream;
  l.Set(kExpCap + PCI_EXP_DEVCAP2, 4, downstream_port ? PCI_EXP_DEVCAP2_ARI : 0);
  l.Writable(kExpCap + PCI_EXP_DEVCTL2, 2, downstream_port ? 0x001f | PCI_EXP_DEVCTL2_ARI : 0x001f);
}

void MsiCap(Layout& l, PciConfigTemplate& t) {
  t.msi_cap = kMsiCap;
  l.AddCap(kMsiCap, PCI_CAP_ID_MSI);
  l.Set(kMsiCap + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_64BIT | (5 << 1));  // 32 vectors capable
  l.Writable(kMsiCap + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
  l.Writable(kMsiCap + 4, 4, 0xfffffffc);  // message address
  l.Writable(kMsiCap + 8, 4, 0xffffffff);  // upper address
  l.Writable(kMsiCap + 12, 2, 0xffff);     // data
}

void MsixCap(Layout& l, PciConfigTemplate& t, uint16_t vectors) {
  t.msix_cap = kMsixCap;
  l.AddCap(kMsixCap, PCI_CAP_ID_MSIX);
  l.Set(kMsixCap + PCI_MSIX_FLAGS, 2, (vectors - 1) & PCI_MSIX_FLAGS_QSIZE);
  l.Writable(kMsixCap + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
  l.Set(kMsixCap + 4, 4, 0x0);    // table in BAR 0 at 0
  l.Set(kMsixCap + 8, 4, 0x800);  // PBA in BAR 0 at 2 KiB
}

void Bar0(Layout& l, uint64_t size) {
  if (size == 0) return;
  const uint64_t mask = ~(size - 1);
  l.Set(PCI_BASE_ADDRESS_0, 4, PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64);
  l.Writable(PCI_BASE_ADDRESS_0, 4, static_cast<uint32_t>(mask) & 0xfffffff0u);
  l.Writable(PCI_BASE_ADDRESS_0 + 4, 4, static_cast<uint32_t>(mask >> 32));
}

}  // namespace

std::shared_ptr<const PciConfigTemplate> MakeFunctionDesign(const PciFunctionSpec& spec,
                                                            bool multifunction) {
  auto t = std::make_shared<PciConfigTemplate>();
  Layout l(*t);
  const uint8_t mfd = multifunction ? PCI_HEADER_TYPE_MFD : 0;
  const uint16_t command_mask = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                                PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;
  if (spec.kind == PciKind::kEndpoint) {
    CommonHeader(l, spec.vendor, spec.device, spec.class_code, PCI_HEADER_TYPE_NORMAL | mfd,
                 command_mask);
    Bar0(l, spec.bar0_size);
    ExpressCap(l, *t, spec.kind, spec.flr);
    if (spec.msi) MsiCap(l, *t);
    if (spec.msix_vectors > 0) MsixCap(l, *t, spec.msix_vectors);
    if (spec.total_vfs > 0) {
      t->sriov_cap = kExtCap;
      l.AddExtCap(kExtCap, PCI_EXT_CAP_ID_SRIOV);
      l.Writable(kExtCap + PCI_SRIOV_CTRL, 2,
                 PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE | PCI_SRIOV_CTRL_ARI);
      l.Set(kExtCap + PCI_SRIOV_INITIAL_VF, 2, spec.total_vfs);
      l.Set(kExtCap + PCI_SRIOV_TOTAL_VF, 2, spec.total_vfs);
      l.Writable(kExtCap + PCI_SRIOV_NUM_VF, 2, 0xffff);
      l.Set(kExtCap + PCI_SRIOV_VF_OFFSET, 2, spec.vf_offset);
      l.Set(kExtCap + PCI_SRIOV_VF_STRIDE, 2, spec.vf_stride);
      l.Set(kExtCap + PCI_SRIOV_VF_DID, 2, spec.vf_device);
      // ARI, so that VFs past device 0 are reachable below a port.
      l.AddExtCap(kAriCap, PCI_EXT_CAP_ID_ARI);
    }
    return t;
  }
  const uint16_t device = spec.kind == PciKind::kRootPort         ? 0x7a38
                          : spec.kind == PciKind::kSwitchUpstream ? 0x8796
                                                                  : 0x8797;
  CommonHeader(l, kBridgeVendor, device, kBridgeClass, PCI_HEADER_TYPE_BRIDGE | mfd, command_mask);
  l.Writable(PCI_PRIMARY_BUS, 1, 0xff);
  l.Writable(PCI_SECONDARY_BUS, 1, 0xff);
  l.Writable(PCI_SUBORDINATE_BUS, 1, 0xff);
  l.Writable(PCI_MEMORY_BASE, 2, 0xfff0);
  l.Writable(PCI_MEMORY_LIMIT, 2, 0xfff0);
  l.Writable(PCI_BRIDGE_CONTROL, 2, 0x0003 | PCI_BRIDGE_CTL_BUS_RESET);
  ExpressCap(l, *t, spec.kind, /*flr=*/false);
  if (spec.kind == PciKind::kRootPort) MsiCap(l, *t);
  if (spec.kind != PciKind::kSwitchUpstream) {
    t->acs_cap = kExtCap;
    l.AddExtCap(kExtCap, PCI_EXT_CAP_ID_ACS);
    const uint16_t acs =
        PCI_ACS_SV | PCI_ACS_TB | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF | PCI_ACS_DT;
    l.Set(kExtCap + PCI_ACS_CAP, 2, acs);
    l.Writable(kExtCap + PCI_ACS_CTRL, 2, acs);
  }
  return t;
}

std::shared_ptr<const PciConfigTemplate> MakeVfDesign(const PciFunctionSpec& pf) {
  auto t = std::make_shared<PciConfigTemplate>();
  Layout l(*t);
  // A VF's vendor and device id read as all-ones; software takes them from
  // the PF (vendor) and its SR-IOV capability (VF device id). Memory space
  // is enabled in the PF's SR-IOV control, so a VF's command register
  // only holds bus mastering.
  CommonHeader(l, 0xffff, 0xffff, pf.class_code, PCI_HEADER_TYPE_NORMAL,
               PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR);
  ExpressCap(l, *t, PciKind::kEndpoint, /*flr=*/true);
  if (pf.msix_vectors > 0) MsixCap(l, *t, pf.msix_vectors);
  return t;
}

}  // namespace khosim::hw

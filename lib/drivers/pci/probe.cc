// Enumeration: pci_scan_child_bus and pci_scan_bridge_extend, with the live
// update rules of khosim/drivers/pci.h. Only config-space accesses reach
// the hardware, so what the core finds is what the previous kernel (or
// power-on) left in the registers.
#include <algorithm>
#include <cerrno>

#include "absl/strings/str_format.h"
#include "khosim/drivers/pci.h"
#include "khosim/linux/bug.h"
#include "liveupdate.h"

namespace khosim::drivers {

class PciProbe {
 public:
  explicit PciProbe(PciCore& core) : core_(core), lu_(core.liveupdate()) {}

  void ScanRoot(uint16_t domain, uint8_t root_bus) {
    struct pci_bus* bus = core_.NewBus(nullptr, nullptr, root_bus);
    bus->domain_nr = domain;
    const unsigned max = ScanChildBus(bus);
    bus->busn_res_end = static_cast<unsigned char>(max);
  }

 private:
  // Returns the highest bus number at or below |bus|.
  unsigned ScanChildBus(struct pci_bus* bus) {
    std::vector<struct pci_dev*> found;
    ScanDevices(bus, &found);
    unsigned max = bus->number;
    for (int pass = 0; pass < 2; ++pass) {
      for (struct pci_dev* dev : found) {
        if (pci_is_bridge(dev)) max = ScanBridge(bus, dev, max, pass, found);
      }
    }
    return max;
  }

  void ScanDevices(struct pci_bus* bus, std::vector<struct pci_dev*>* found) {
    const struct pci_dev* port = bus->self;
    // Below a port with ARI forwarding on, every devfn can be a function.
    const bool ari = port != nullptr && port->ari_enabled;
    for (unsigned devfn = 0; devfn < 256; devfn += ari ? 1 : 8) {
      if (!ari && !Present(bus, devfn)) continue;
      if (ari) {
        if (Present(bus, devfn)) found->push_back(SetupDevice(bus, devfn));
        continue;
      }
      struct pci_dev* fn0 = SetupDevice(bus, devfn);
      found->push_back(fn0);
      if ((fn0->hdr_type & PCI_HEADER_TYPE_MFD) == 0) continue;
      for (unsigned fn = 1; fn < 8; ++fn) {
        if (Present(bus, devfn + fn)) found->push_back(SetupDevice(bus, devfn + fn));
      }
    }
    // VFs a previous kernel enabled are live in hardware: add them too
    // (pci_iov_init finds VF Enable set).
    const size_t pfs = found->size();
    for (size_t i = 0; i < pfs; ++i) AddVfs((*found)[i], found);
  }

  bool Present(struct pci_bus* bus, unsigned devfn) {
    u32 id = 0;
    struct pci_dev probe = {};
    probe.bus = bus;
    probe.devfn = devfn;
    if (core_.ConfigRead(&probe, PCI_VENDOR_ID, 4, &id) != 0) return false;
    return id != 0xffffffffu && id != 0 && (id & 0xffff) != 0xffff;
  }

  struct pci_dev* SetupDevice(struct pci_bus* bus, unsigned devfn) {
    struct pci_dev* dev = core_.NewDevice(bus, devfn);
    u32 id = 0;
    u32 class_rev = 0;
    u8 hdr = 0;
    pci_read_config_dword(dev, PCI_VENDOR_ID, &id);
    pci_read_config_dword(dev, PCI_CLASS_REVISION, &class_rev);
    pci_read_config_byte(dev, PCI_HEADER_TYPE, &hdr);
    dev->vendor = static_cast<unsigned short>(id & 0xffff);
    dev->device = static_cast<unsigned short>(id >> 16);
    dev->class_ = class_rev >> 8;
    dev->revision = static_cast<u8>(class_rev & 0xff);
    dev->hdr_type = hdr;
    InitCapabilities(dev);
    lu_.SetupDevice(dev);  // pci_setup_device: after class, before the caps' users
    ConfigureAri(dev);
    EnableAcs(dev);
    return dev;
  }

  void InitCapabilities(struct pci_dev* dev) {
    dev->pcie_cap = pci_find_capability(dev, PCI_CAP_ID_EXP);
    dev->msi_cap = pci_find_capability(dev, PCI_CAP_ID_MSI);
    dev->msix_cap = pci_find_capability(dev, PCI_CAP_ID_MSIX);
    if (dev->pcie_cap != 0) {
      pci_read_config_word(dev, dev->pcie_cap + PCI_EXP_FLAGS, &dev->pcie_flags_reg);
      dev->acs_cap = pci_find_ext_capability(dev, PCI_EXT_CAP_ID_ACS);
      dev->ari_cap = pci_find_ext_capability(dev, PCI_EXT_CAP_ID_ARI);
      dev->sriov_cap = pci_find_ext_capability(dev, PCI_EXT_CAP_ID_SRIOV);
      dev->is_physfn = dev->sriov_cap != 0;
    }
    u16 cmd = 0;
    pci_read_config_word(dev, PCI_COMMAND, &cmd);
    dev->is_busmaster = (cmd & PCI_COMMAND_MASTER) != 0;
  }

  // pci_configure_ari: function 0 below a port that can forward ARI
  // decides the port's ARI Forwarding Enable; an incoming port keeps it.
  void ConfigureAri(struct pci_dev* dev) {
    struct pci_dev* bridge = dev->bus->self;
    if (dev->is_virtfn || dev->devfn != 0 || bridge == nullptr || !pci_is_pcie(dev)) return;
    u32 cap = 0;
    pci_read_config_dword(bridge, bridge->pcie_cap + PCI_EXP_DEVCAP2, &cap);
    if ((cap & PCI_EXP_DEVCAP2_ARI) == 0) return;
    if (lu_.AdoptAri(bridge) == 0) return;
    u16 ctl = 0;
    pci_read_config_word(bridge, bridge->pcie_cap + PCI_EXP_DEVCTL2, &ctl);
    if (dev->ari_cap != 0) {
      ctl |= PCI_EXP_DEVCTL2_ARI;
      bridge->ari_enabled = 1;
    } else {
      ctl &= ~PCI_EXP_DEVCTL2_ARI;
      bridge->ari_enabled = 0;
    }
    pci_write_config_word(bridge, bridge->pcie_cap + PCI_EXP_DEVCTL2, ctl);
  }

  // pci_enable_acs: the kernel's default controls, unless the previous
  // kernel's are adopted.
  void EnableAcs(struct pci_dev* dev) {
    if (dev->acs_cap == 0 || lu_.AdoptAcs(dev) == 0) return;
    u16 cap = 0;
    u16 ctrl = 0;
    pci_read_config_word(dev, dev->acs_cap + PCI_ACS_CAP, &cap);
    pci_read_config_word(dev, dev->acs_cap + PCI_ACS_CTRL, &ctrl);
    ctrl |= cap & (PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF);
    pci_write_config_word(dev, dev->acs_cap + PCI_ACS_CTRL, ctrl);
  }

  void AddVfs(struct pci_dev* pf, std::vector<struct pci_dev*>* found) {
    if (!pf->is_physfn) return;
    const int pos = pf->sriov_cap;
    u16 ctrl = 0;
    u16 num = 0;
    u16 offset = 0;
    u16 stride = 0;
    u16 vf_device = 0;
    pci_read_config_word(pf, pos + PCI_SRIOV_CTRL, &ctrl);
    if ((ctrl & PCI_SRIOV_CTRL_VFE) == 0) return;
    pci_read_config_word(pf, pos + PCI_SRIOV_NUM_VF, &num);
    pci_read_config_word(pf, pos + PCI_SRIOV_VF_OFFSET, &offset);
    pci_read_config_word(pf, pos + PCI_SRIOV_VF_STRIDE, &stride);
    pci_read_config_word(pf, pos + PCI_SRIOV_VF_DID, &vf_device);
    for (unsigned i = 0; i < num; ++i) {
      const unsigned devfn = pf->devfn + offset + i * stride;
      if (devfn > 255) break;
      struct pci_dev* vf = core_.NewDevice(pf->bus, devfn);
      vf->is_virtfn = 1;
      vf->physfn = pf;
      vf->vendor = pf->vendor;
      vf->device = vf_device;
      vf->class_ = pf->class_;
      vf->hdr_type = PCI_HEADER_TYPE_NORMAL;
      InitCapabilities(vf);
      lu_.SetupDevice(vf);
      found->push_back(vf);
    }
  }

  // pci_scan_bridge_extend.
  unsigned ScanBridge(struct pci_bus* bus, struct pci_dev* dev, unsigned max, int pass,
                      const std::vector<struct pci_dev*>& on_bus) {
    // Pass 0 scanned it already (a guard: the numbers read again below
    // should say so, but a failed read returns all-ones).
    if (pass != 0 && dev->subordinate != nullptr) return max;
    // One dword, as upstream reads it: primary, secondary, subordinate and
    // the secondary latency timer fail or succeed together.
    u32 buses = 0;
    pci_read_config_dword(dev, PCI_PRIMARY_BUS, &buses);
    const u8 secondary = static_cast<u8>(buses >> 8);
    const u8 subordinate = static_cast<u8>(buses >> 16);
    const bool configured = secondary != 0 && subordinate >= secondary && secondary > bus->number;
    const bool keep = !core_.options().assign_busses || lu_.PreserveBusNumbers();
    if (configured && keep) {
      if (pass != 0) return max;
      struct pci_bus* child = core_.NewBus(bus, dev, secondary);
      child->busn_res_end = subordinate;
      const unsigned cmax = ScanChildBus(child);
      return std::max({max, unsigned{subordinate}, cmax});
    }
    if (pass == 0) {
      // Stop forwarding on bridges about to be renumbered, so that two
      // bridges never claim overlapping ranges meanwhile.
      if (configured) {
        pci_write_config_byte(dev, PCI_SUBORDINATE_BUS, 0);
        pci_write_config_byte(dev, PCI_SECONDARY_BUS, 0);
        pci_write_config_byte(dev, PCI_PRIMARY_BUS, 0);
      }
      return max;
    }
    if (lu_.RefuseBusNumbers(bus, on_bus)) return max;
    if (max >= 255) {
      pr_err("pci %s: no bus number left for the bridge", pci_name(dev));
      return max;
    }
    const unsigned next = max + 1;
    pci_write_config_byte(dev, PCI_PRIMARY_BUS, bus->number);
    pci_write_config_byte(dev, PCI_SECONDARY_BUS, static_cast<u8>(next));
    pci_write_config_byte(dev, PCI_SUBORDINATE_BUS, 0xff);
    struct pci_bus* child = core_.NewBus(bus, dev, next);
    unsigned cmax = ScanChildBus(child);
    const int type = pci_pcie_type(dev);
    if (type == PCI_EXP_TYPE_ROOT_PORT || type == PCI_EXP_TYPE_DOWNSTREAM) {
      cmax = std::min(255u, cmax + core_.options().hpbussize);
    }
    pci_write_config_byte(dev, PCI_SUBORDINATE_BUS, static_cast<u8>(cmax));
    child->busn_res_end = static_cast<unsigned char>(cmax);
    return cmax;
  }

  PciCore& core_;
  PciLiveUpdate& lu_;
};

int PciCore::Enumerate() {
  PciProbe probe(*this);
  for (uint16_t domain : hw_.Domains()) probe.ScanRoot(domain, hw_.RootBus(domain));
  ctx_.Log(absl::StrFormat("PCI: %zu devices on %zu buses", devices_.size(), buses_.size()));
  ctx_.Trace("pci", "enumerated",
             {{"devices", absl::StrCat(devices_.size())}, {"buses", absl::StrCat(buses_.size())}});
  return 0;
}

}  // namespace khosim::drivers

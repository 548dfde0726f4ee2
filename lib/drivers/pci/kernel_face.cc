// The kernel face of the PCI core (linux/pci.h, linux/pci_liveupdate.h):
// each call resolves to the running kernel's PciCore.
#include <cerrno>

#include "khosim/drivers/pci.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/pci.h"
#include "khosim/linux/pci_liveupdate.h"
#include "liveupdate.h"

using khosim::drivers::pci_liveupdate_flb;
using khosim::drivers::PciCore;

namespace {

// A PCI call on a kernel without a PCI core is a harness bug, as a call
// without a running kernel is.
PciCore& Core() {
  PciCore* core = PciCore::CurrentOrNull();
  if (core == nullptr) khosim::kernel_face::Bug(KHOSIM_SITE, "no PCI core in this kernel");
  return *core;
}

template <typename T>
int Read(const struct pci_dev* dev, int where, T* val) {
  uint32_t v = 0;
  const int ret = Core().ConfigRead(dev, where, sizeof(T), &v);
  *val = static_cast<T>(v);
  return ret;
}

}  // namespace

const struct bus_type pci_bus_type = {.name = "pci"};

int pci_read_config_byte(const struct pci_dev* dev, int where, u8* val) {
  return Read(dev, where, val);
}
int pci_read_config_word(const struct pci_dev* dev, int where, u16* val) {
  return Read(dev, where, val);
}
int pci_read_config_dword(const struct pci_dev* dev, int where, u32* val) {
  return Read(dev, where, val);
}
int pci_write_config_byte(const struct pci_dev* dev, int where, u8 val) {
  return Core().ConfigWrite(dev, where, 1, val);
}
int pci_write_config_word(const struct pci_dev* dev, int where, u16 val) {
  return Core().ConfigWrite(dev, where, 2, val);
}
int pci_write_config_dword(const struct pci_dev* dev, int where, u32 val) {
  return Core().ConfigWrite(dev, where, 4, val);
}

u8 pci_find_capability(struct pci_dev* dev, int cap) {
  u16 status = 0;
  if (pci_read_config_word(dev, PCI_STATUS, &status) != 0 || (status & PCI_STATUS_CAP_LIST) == 0 ||
      status == 0xffff) {
    return 0;
  }
  u8 pos = 0;
  pci_read_config_byte(dev, PCI_CAPABILITY_LIST, &pos);
  // At most 48 capabilities fit; a longer chain is a loop.
  for (int ttl = 48; ttl > 0 && pos >= 0x40; --ttl) {
    pos &= ~3;
    u8 id = 0;
    pci_read_config_byte(dev, pos + PCI_CAP_LIST_ID, &id);
    if (id == 0xff) return 0;
    if (id == cap) return pos;
    pci_read_config_byte(dev, pos + PCI_CAP_LIST_NEXT, &pos);
  }
  return 0;
}

u16 pci_find_ext_capability(struct pci_dev* dev, int cap) {
  int pos = PCI_CFG_SPACE_SIZE;
  // At most (4096 - 256) / 8 capabilities fit.
  for (int ttl = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8; ttl > 0; --ttl) {
    u32 header = 0;
    if (pci_read_config_dword(dev, pos, &header) != 0 || header == 0 || header == 0xffffffffu) {
      return 0;
    }
    if (static_cast<int>(PCI_EXT_CAP_ID(header)) == cap) return static_cast<u16>(pos);
    pos = static_cast<int>(PCI_EXT_CAP_NEXT(header));
    if (pos < PCI_CFG_SPACE_SIZE) return 0;
  }
  return 0;
}

namespace {

void SetMaster(struct pci_dev* dev, bool enable) {
  u16 cmd = 0;
  pci_read_config_word(dev, PCI_COMMAND, &cmd);
  const u16 want = enable ? (cmd | PCI_COMMAND_MASTER) : (cmd & ~PCI_COMMAND_MASTER);
  if (want != cmd) pci_write_config_word(dev, PCI_COMMAND, want);
  dev->is_busmaster = enable;
}

}  // namespace

int pci_enable_device(struct pci_dev* dev) {
  for (struct pci_dev* d = dev; d != nullptr; d = pci_upstream_bridge(d)) {
    u16 cmd = 0;
    if (pci_read_config_word(d, PCI_COMMAND, &cmd) != 0) return -EIO;
    u16 want = cmd | PCI_COMMAND_MEMORY;
    if (d != dev) want |= PCI_COMMAND_MASTER;
    if (d->is_virtfn) want &= ~PCI_COMMAND_MEMORY;  // a VF decodes through its PF
    if (want != cmd && pci_write_config_word(d, PCI_COMMAND, want) != 0) return -EIO;
    if (d != dev) d->is_busmaster = 1;
  }
  return 0;
}

void pci_set_master(struct pci_dev* dev) { SetMaster(dev, true); }
void pci_clear_master(struct pci_dev* dev) { SetMaster(dev, false); }

int pcie_flr(struct pci_dev* dev) {
  u32 cap = 0;
  if (dev->pcie_cap == 0) return -ENOTTY;
  pci_read_config_dword(dev, dev->pcie_cap + PCI_EXP_DEVCAP, &cap);
  if ((cap & PCI_EXP_DEVCAP_FLR) == 0) return -ENOTTY;
  u16 ctl = 0;
  pci_read_config_word(dev, dev->pcie_cap + PCI_EXP_DEVCTL, &ctl);
  pci_write_config_word(dev, dev->pcie_cap + PCI_EXP_DEVCTL, ctl | PCI_EXP_DEVCTL_BCR_FLR);
  dev->is_busmaster = 0;
  return 0;
}

struct pci_dev* pci_get_domain_bus_and_slot(int domain, unsigned int bus, unsigned int devfn) {
  return pci_dev_get(Core().Find(domain, bus, devfn));
}

struct pci_dev* pci_dev_get(struct pci_dev* dev) {
  if (dev != nullptr) dev->refcnt++;
  return dev;
}

void pci_dev_put(struct pci_dev* dev) {
  if (dev == nullptr) return;
  // The core holds the first reference for the whole boot.
  if (WARN_ON(dev->refcnt <= 1)) return;
  dev->refcnt--;
}

int pci_register_driver(struct pci_driver* drv) { return Core().RegisterDriver(drv); }
void pci_unregister_driver(struct pci_driver* drv) { Core().UnregisterDriver(drv); }

// ---- Live update -----------------------------------------------------------

int pci_liveupdate_register_flb(struct liveupdate_file_handler* fh) {
  return liveupdate_register_flb(fh, &pci_liveupdate_flb);
}

void pci_liveupdate_unregister_flb(struct liveupdate_file_handler* fh) {
  liveupdate_unregister_flb(fh, &pci_liveupdate_flb);
}

int pci_liveupdate_preserve(struct pci_dev* dev) { return Core().liveupdate().Preserve(dev); }
void pci_liveupdate_unpreserve(struct pci_dev* dev) { Core().liveupdate().Unpreserve(dev); }
void pci_liveupdate_finish(struct pci_dev* dev) { Core().liveupdate().Finish(dev); }
bool pci_liveupdate_is_incoming(struct pci_dev* dev) { return Core().liveupdate().IsIncoming(dev); }

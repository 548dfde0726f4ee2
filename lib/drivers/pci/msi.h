// PciMsi: the PCI core's MSI-X vectors in one kernel (drivers/pci/msi/):
// which devices this kernel enabled MSI-X on, and the Linux irq of each
// vector it allocated. linux/pci.h ("Interrupt vectors") has the
// driver-facing contract; the irqs themselves live in the core's IrqTable.
//
// This is host state of one kernel. A kexec drops it and keeps the
// hardware: the next kernel finds MSI-X as this one left it (enabled,
// vectors unmasked) but knows nothing of it, so it neither frees those
// vectors nor has irqs for them until a driver allocates them again.
//
// Context: process context, one thread (the core's).
#ifndef KHOSIM_LIB_DRIVERS_PCI_MSI_H_
#define KHOSIM_LIB_DRIVERS_PCI_MSI_H_

#include <map>
#include <vector>

#include "khosim/drivers/irq.h"
#include "khosim/drivers/pci.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/pci.h"

namespace khosim::drivers {

class PciMsi {
 public:
  PciMsi(PciCore& core, IrqTable& irqs);
  PciMsi(const PciMsi&) = delete;
  PciMsi& operator=(const PciMsi&) = delete;

  // linux/pci.h
  int AllocIrqVectors(struct pci_dev* dev, unsigned min_vecs, unsigned max_vecs, unsigned flags);
  void FreeIrqVectors(struct pci_dev* dev);
  int IrqVector(struct pci_dev* dev, unsigned nr) const;
  int MsixVecCount(struct pci_dev* dev) const;

  // Whether this kernel enabled MSI-X on |dev| (upstream's dev->msix_enabled).
  bool MsixEnabled(const struct pci_dev* dev) const { return devices_.count(dev) != 0; }

 private:
  struct Vectors {
    std::vector<unsigned> irqs;  // by vector number
  };

  // The function at |dev|'s address now (the MSI-X table's BAR 0 is
  // reached through it), or nullptr.
  hw::PciFunction* Function(const struct pci_dev* dev) const;
  // The Mask Bit write of table entry |vector| (dropped if nothing answers).
  void MaskVector(const struct pci_dev* dev, int vector);
  int EnableMsixRange(struct pci_dev* dev, int minvec, int maxvec);
  int MsixCapabilityInit(struct pci_dev* dev, int nvec);
  void ClearAndSetControl(struct pci_dev* dev, uint16_t clear, uint16_t set);
  void IntxForMsi(struct pci_dev* dev, bool enable);

  PciCore& core_;
  IrqTable& irqs_;
  std::map<const struct pci_dev*, Vectors> devices_;
};

}  // namespace khosim::drivers

#endif  // KHOSIM_LIB_DRIVERS_PCI_MSI_H_

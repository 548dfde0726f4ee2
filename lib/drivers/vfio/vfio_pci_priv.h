// vfio-pci's device and the calls its files share: the core
// (vfio_pci_core.cc), interrupts (vfio_pci_intrs.cc) and live update
// (vfio_pci_liveupdate.cc). See khosim/drivers/vfio.h.
#ifndef KHOSIM_LIB_DRIVERS_VFIO_PCI_VFIO_PCI_PRIV_H_
#define KHOSIM_LIB_DRIVERS_VFIO_PCI_VFIO_PCI_PRIV_H_

#include "khosim/linux/liveupdate.h"
#include "khosim/linux/pci.h"
#include "khosim/uapi/vfio.h"
#include "vfio.h"

struct eventfd_ctx;

struct vfio_pci_core_device {
  struct vfio_device vdev;  // first: the core frees the device through it
  struct pci_dev* pdev;
  bool reset_works;  // the function has FLR
  // VFIO_PCI_NUM_IRQS when no interrupt is enabled, else the index.
  int irq_type;
  int num_ctx;                        // MSI-X vectors enabled
  struct eventfd_ctx** msix_trigger;  // [num_ctx], NULL: no eventfd
  // Kernel B, khosim.vfio_liveupdate_irqs=replay: the device came in
  // with its interrupts disabled at freeze; the first MSI-X enable fires
  // every vector once, for what the blackout lost.
  bool liveupdate_replay_irqs;
};

static inline struct vfio_pci_core_device* to_vfio_pci(struct vfio_device* vdev) {
  return reinterpret_cast<struct vfio_pci_core_device*>(vdev);
}

// vfio_pci_core.cc
extern struct pci_driver vfio_pci_driver;
// The vfio-pci device of |pdev|, or NULL when another driver (or none)
// has it.
struct vfio_pci_core_device* vfio_pci_core_from_pci(struct pci_dev* pdev);
bool vfio_pci_is_device_file(struct file* file);

// vfio_pci_intrs.cc
long vfio_pci_ioctl_get_irq_info(struct vfio_pci_core_device* vdev, unsigned long arg);
long vfio_pci_ioctl_set_irqs(struct vfio_pci_core_device* vdev, unsigned long arg);
// Disables whatever is enabled, frees the triggers.
void vfio_pci_irqs_disable(struct vfio_pci_core_device* vdev);

// vfio_pci_liveupdate.cc
#define VFIO_PCI_LIVEUPDATE_CONFIG "CONFIG_VFIO_PCI_LIVEUPDATE"
int vfio_pci_liveupdate_init(void);
void vfio_pci_liveupdate_exit(void);

#endif  // KHOSIM_LIB_DRIVERS_VFIO_PCI_VFIO_PCI_PRIV_H_

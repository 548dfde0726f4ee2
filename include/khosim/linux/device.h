// Kernel-face device model (<linux/device.h>), the part the IOMMU core
// needs: a device knows its bus, so the core can tell a PCI device from
// anything else (dev_is_pci), and carries the IOMMU core's per-device
// state (dev->iommu).
#ifndef KHOSIM_LINUX_DEVICE_H_
#define KHOSIM_LINUX_DEVICE_H_

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

struct bus_type {
  const char* name;
};

struct dev_iommu;

struct device {
  const struct bus_type* bus;  // NULL: a device on no bus the kernel models
  const char* init_name;       // what dev_name() returns
  struct dev_iommu* iommu;     // the IOMMU core's state; NULL until probed
};

static inline const char* dev_name(const struct device* dev) { return dev->init_name; }

extern const struct bus_type pci_bus_type;
#define dev_is_pci(d) ((d)->bus == &pci_bus_type)

#endif  // KHOSIM_LINUX_DEVICE_H_

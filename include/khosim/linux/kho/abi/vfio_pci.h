// vfio-pci's handover record ("vfio/pci: Base support to preserve a VFIO
// device file across Live Update", v5): what a preserved VFIO device
// file's luo_file_ser.data points at. The device is named by its PCI
// segment and BDF, which the PCI core keeps stable for preserved devices;
// its IOMMU state travels in the IOMMU core's FLB and the iommufd's
// record, not here.
//
//   data -> struct vfio_pci_core_device_ser (kho_alloc_preserve)
#ifndef KHOSIM_LINUX_KHO_ABI_VFIO_PCI_H_
#define KHOSIM_LINUX_KHO_ABI_VFIO_PCI_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

#define VFIO_PCI_LUO_FH_COMPATIBLE "vfio-pci-v1"

struct vfio_pci_core_device_ser {
  u32 domain;
  u16 bdf;
} __packed;

static_assert(sizeof(struct vfio_pci_core_device_ser) == 6);
static_assert(offsetof(struct vfio_pci_core_device_ser, bdf) == 4);

#endif  // KHOSIM_LINUX_KHO_ABI_VFIO_PCI_H_

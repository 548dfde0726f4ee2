// The test passthrough driver's handover record: what a preserved
// /dev/pci-passthrough/<bdf> file's luo_file_ser.data points at. Same shape
// as vfio-pci-v1's: the device's address and nothing else, since the PCI
// core's FLB "pci" carries the rest.
//
//   data -> struct pci_passthrough_ser (kho_alloc_preserve)
#ifndef KHOSIM_LINUX_KHO_ABI_PCI_PASSTHROUGH_H_
#define KHOSIM_LINUX_KHO_ABI_PCI_PASSTHROUGH_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

#define PCI_PASSTHROUGH_LUO_COMPATIBLE "pci-passthrough-v1"

struct pci_passthrough_ser {
  u32 domain;
  u16 bdf;
} __packed;

static_assert(sizeof(struct pci_passthrough_ser) == 6);
static_assert(offsetof(struct pci_passthrough_ser, bdf) == 4);

#endif  // KHOSIM_LINUX_KHO_ABI_PCI_PASSTHROUGH_H_

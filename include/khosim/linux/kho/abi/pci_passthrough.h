// The test passthrough driver's handover record: what a preserved
// /dev/pci-passthrough/<bdf> file's luo_file_ser.data points at. The
// device's address (as vfio-pci-v1's record), and, when the VMM gave the
// device DMA mappings, the IOMMU domain's preserved record and one entry
// per mapped memfd range, naming the memfd by its LUO token in the same
// session (the stand-in for what VFIO + iommufd carry, until they land).
//
//   data -> struct pci_passthrough_ser (kho_alloc_preserve)
//
// v2 added iommu_domain, owner_token and the DMA maps to v1's {domain, bdf}.
#ifndef KHOSIM_LINUX_KHO_ABI_PCI_PASSTHROUGH_H_
#define KHOSIM_LINUX_KHO_ABI_PCI_PASSTHROUGH_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

#define PCI_PASSTHROUGH_LUO_COMPATIBLE "pci-passthrough-v2"
#define PCI_PASSTHROUGH_MAX_DMA_MAPS 8

struct pci_passthrough_dma_ser {
  u64 memfd_token;  // the memfd's token in the session
  u64 offset;       // bytes into the memfd
  u64 length;
  u64 iova;
} __packed;

struct pci_passthrough_ser {
  u32 domain;
  u16 bdf;
  u16 nr_maps;       // entries of maps[] in use (0: no DMA)
  u64 iommu_domain;  // physical address of the domain's iommu_domain_ser; 0: none
  u64 owner_token;   // the device's dma_owner_token
  struct pci_passthrough_dma_ser maps[PCI_PASSTHROUGH_MAX_DMA_MAPS];
} __packed;

static_assert(sizeof(struct pci_passthrough_dma_ser) == 32);
static_assert(offsetof(struct pci_passthrough_ser, bdf) == 4);
static_assert(offsetof(struct pci_passthrough_ser, iommu_domain) == 8);
static_assert(offsetof(struct pci_passthrough_ser, maps) == 24);
static_assert(sizeof(struct pci_passthrough_ser) == 24 + 32 * PCI_PASSTHROUGH_MAX_DMA_MAPS);

#endif  // KHOSIM_LINUX_KHO_ABI_PCI_PASSTHROUGH_H_

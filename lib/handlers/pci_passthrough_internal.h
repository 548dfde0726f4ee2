// State shared by the pci-passthrough driver (pci_passthrough.cc) and its
// DMA half (pci_passthrough_dma.cc).
#ifndef KHOSIM_LIB_HANDLERS_PCI_PASSTHROUGH_INTERNAL_H_
#define KHOSIM_LIB_HANDLERS_PCI_PASSTHROUGH_INTERNAL_H_

#include "khosim/linux/fs.h"
#include "khosim/linux/iommu.h"
#include "khosim/linux/iommufd.h"
#include "khosim/linux/kho/abi/pci_passthrough.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/miscdevice.h"
#include "khosim/linux/mm_types.h"
#include "khosim/linux/pci.h"

struct ppt_dma_map {
  struct file* memfd;  // a reference
  u64 offset;
  u64 length;
  u64 iova;
  struct folio** folios;  // pinned, in index order
  long nr_folios;
};

struct ppt_device {
  struct miscdevice misc;  // first: the misc open hands us its address
  struct pci_dev* pdev;
  char node[48];   // "pci-passthrough/0000:03:00.0"
  bool opened;     // one file at a time
  bool luo_owned;  // came in preserved: only RETRIEVE_FD opens it
  bool unbound;    // the driver let go while a file was open: the file frees it
  // DMA: the device's own domain, created by the first map, owned (DMA
  // ownership) with owner_token.
  struct iommu_domain* domain;
  u64 owner_token;
  struct ppt_dma_map maps[PCI_PASSTHROUGH_MAX_DMA_MAPS];
  unsigned nr_maps;
  // Or DMA through an iommufd (the VFIO cdev way): the binding, NULL when
  // unbound.
  struct iommufd_device* idev;
};

// PCI_PASSTHROUGH_DMA_MAP_FILE (see khosim/handlers/pci_passthrough.h).
long ppt_dma_map_file(struct ppt_device* ppt, unsigned long arg);
// Undoes every map, detaches and frees the domain, releases ownership.
void ppt_dma_release(struct ppt_device* ppt);
// The kernel is gone: drops the maps' host objects only (file references,
// folio arrays); nothing of the kernel runs. Nothing left after a release.
void ppt_dma_free_host(struct ppt_device* ppt);
// Preserve: domain and device through the IOMMU core, maps by memfd token.
int ppt_dma_preserve(struct ppt_device* ppt, struct liveupdate_session* session,
                     struct pci_passthrough_ser* ser);
void ppt_dma_unpreserve(struct ppt_device* ppt);
// Retrieve: takes over the restored domain and re-pins the memfds.
int ppt_dma_retrieve(struct ppt_device* ppt, struct liveupdate_session* session,
                     const struct pci_passthrough_ser* ser);

// The iommufd half (pci_passthrough_iommufd.cc): the BIND / ATTACH /
// DETACH ioctls; unbinding at release; preserving the binding.
long ppt_iommufd_ioctl(struct ppt_device* ppt, unsigned int cmd, unsigned long arg);
void ppt_iommufd_release(struct ppt_device* ppt);
int ppt_iommufd_preserve(struct ppt_device* ppt, struct liveupdate_session* session);
void ppt_iommufd_unpreserve(struct ppt_device* ppt);

#endif  // KHOSIM_LIB_HANDLERS_PCI_PASSTHROUGH_INTERNAL_H_

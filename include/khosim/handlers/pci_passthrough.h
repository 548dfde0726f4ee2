// "pci-passthrough": a minimal PCI driver with a LUO file handler
// ("pci-passthrough-v2"), so that PCI preservation can be exercised end to
// end before VFIO exists. It is what a VFIO-like driver does, reduced to
// the live update contract:
//   - it binds only devices whose driver_override names it (the user's
//     choice, as for vfio-pci) and publishes /dev/pci-passthrough/<bdf>;
//     one opener at a time (-EBUSY);
//   - PCI_PASSTHROUGH_SET_MASTER (arg 0 or 1) sets or clears bus
//     mastering, the VMM's "start the device";
//   - PCI_PASSTHROUGH_DMA_MAP_FILE maps a memfd range at an IOVA for the
//     device's DMA: the first map claims the device's DMA ownership, gives
//     it its own IOMMU domain and attaches it; the memfd's folios are
//     pinned and mapped (a stand-in for VFIO + iommufd's IOAS_MAP_FILE);
//     closing the file unmaps, unpins and lets the device go;
//   - PCI_PASSTHROUGH_BIND_IOMMUFD / _ATTACH_IOMMUFD_PT / _DETACH_IOMMUFD_PT
//     are the VFIO device cdev's VFIO_DEVICE_BIND_IOMMUFD and
//     VFIO_DEVICE_[AT|DE]TACH_IOMMUFD_PT: the device's DMA then belongs to
//     an iommufd (linux/iommufd.h) instead of DMA_MAP_FILE's own domain;
//     the two are exclusive (-EBUSY);
//   - preserving the file preserves the device (pci_liveupdate_preserve,
//     its errnos) and, with DMA maps, the domain and the device through the
//     IOMMU core (iommu_preserve_domain / iommu_preserve_device, their
//     errnos); every mapped memfd must be preserved in the same session
//     first (-ENOENT); a device bound to an iommufd is preserved through
//     it (iommufd_device_preserve: the iommufd must be preserved in the
//     same session first, -ENOENT, with the device's HWPT marked, -EINVAL);
//     the record is linux/kho/abi/pci_passthrough.h;
//   - in the next kernel the device is probed again, but its node refuses
//     open (-EBUSY) until the file is retrieved from LUO; retrieve finds
//     the device by domain and BDF (-ENODEV if it is gone or bound to
//     another driver), takes over the domain the IOMMU core restored
//     (-ENOENT if it did not) after checking each IOVA still maps the
//     memfd's folio (-EINVAL), retrieving the memfds through their tokens;
//     finish calls pci_liveupdate_finish and needs the file retrieved
//     first, and a device that came in attached through an iommufd bound
//     to the retrieved iommufd (can_finish).
// A kernel built with module "pci-passthrough" (off by default) registers
// driver and handler from a device initcall.
#ifndef KHOSIM_HANDLERS_PCI_PASSTHROUGH_H_
#define KHOSIM_HANDLERS_PCI_PASSTHROUGH_H_

#define PCI_PASSTHROUGH_DRIVER_NAME "pci-passthrough"
// ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 0 or 1): 0, or -EINVAL.
#define PCI_PASSTHROUGH_SET_MASTER 0x5001
// ioctl(fd, PCI_PASSTHROUGH_DMA_MAP_FILE, &struct pci_passthrough_dma_map):
// 0; -EFAULT; -EINVAL (size field, length 0, offset / length / iova not
// page aligned, not a memfd, a large folio); -EBADF; -ENOSPC (eight maps
// already); -EPERM (another owner holds the device's DMA); -ENODEV (no
// IOMMU translates the device); -EEXIST (IOVA overlap); -EBUSY (the
// device's domain is preserved); -ENOMEM.
#define PCI_PASSTHROUGH_DMA_MAP_FILE 0x5002
// ioctl(fd, PCI_PASSTHROUGH_BIND_IOMMUFD, &struct pci_passthrough_bind_iommufd):
// 0; -EFAULT; -EINVAL (size field); -EBADF; -EBADFD (not an iommufd);
// -EBUSY (bound already, or DMA_MAP_FILE maps exist); the errnos of
// iommufd_device_bind (-EPERM: a device that came in preserved and an
// iommufd other than the retrieved one).
#define PCI_PASSTHROUGH_BIND_IOMMUFD 0x5003
// ioctl(fd, PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT, &struct pci_passthrough_attach_pt):
// 0 (pt_id: the HWPT attached); -EFAULT; -EINVAL (size field, not bound);
// the errnos of iommufd_device_attach.
#define PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT 0x5004
// ioctl(fd, PCI_PASSTHROUGH_DETACH_IOMMUFD_PT, 0): 0; -EINVAL (not bound).
#define PCI_PASSTHROUGH_DETACH_IOMMUFD_PT 0x5005

#include "khosim/linux/types.h"

struct pci_passthrough_dma_map {
  u32 size;  // sizeof(struct pci_passthrough_dma_map)
  s32 fd;    // a memfd
  u64 offset;
  u64 length;
  u64 iova;
};

struct pci_passthrough_bind_iommufd {
  u32 size;  // sizeof(struct pci_passthrough_bind_iommufd)
  s32 iommufd;
  u32 out_devid;
};

struct pci_passthrough_attach_pt {
  u32 size;   // sizeof(struct pci_passthrough_attach_pt)
  u32 pt_id;  // an IOAS or HWPT id; out: the HWPT
};

// Registers the driver, the file handler and links the PCI FLB to it. 0,
// or the first registration error (LUO being disabled is not one).
int pci_passthrough_init(void);
void pci_passthrough_exit(void);

#endif  // KHOSIM_HANDLERS_PCI_PASSTHROUGH_H_

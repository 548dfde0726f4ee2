// iommufd: /dev/iommu, the userspace face of the IOMMU core, and its LUO
// file handler "iommufd-v1" (kernel module "iommufd"). uAPI: khosim/uapi/iommufd.h; the
// driver-facing calls: linux/iommufd.h; the record: linux/kho/abi/iommufd.h.
//
// Objects of one iommufd (ids from 1, never reused within the file):
//   IOAS    an I/O address space: areas mapping user memory (IOAS_MAP:
//           anonymous pages the map allocates and pins) or a memfd range
//           (IOAS_MAP_FILE: the memfd's folios, pinned; its seals at map
//           time are remembered);
//   HWPT    a paging domain of the IOMMU core holding every area of its
//           IOAS (HWPT_ALLOC for a bound device, or the automatic HWPT an
//           attach to an IOAS creates);
//   device  a struct device a driver bound (iommufd_device_bind).
//
// Live update, kernel A (the newest upstream posting's rules):
//   - IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE marks a HWPT with a token;
//   - preserving the iommufd (LIVEUPDATE_SESSION_PRESERVE_FD) preserves
//     every marked HWPT's domain (iommu_preserve_domain: the table pages
//     and a record in the FLB "iommu-liveupdate", which this handler links)
//     after checking each IOAS behind them: every area must map a memfd
//     (-EINVAL), sealed F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK when it
//     was mapped (-EINVAL), and preserved in the same session before the
//     iommufd (-ENOENT); a marked HWPT without a domain fails with -EINVAL.
//     The IOAS becomes immutable: IOAS_MAP, IOAS_MAP_FILE and IOAS_UNMAP
//     fail with -EBUSY until the iommufd is unpreserved;
//   - a driver then preserves its device (iommufd_device_preserve), which
//     needs the iommufd preserved in that session first (-ENOENT); the
//     IOMMU FLB records the iommufd's LUO token as the device's
//     dma_owner_token.
// Kernel B: the IOMMU core restores the domains and devices at probe, so
// DMA keeps translating through the preserved tables before any of this
// runs. What the iommufd file does then depends on the kernel:
//   - khosim.iommufd_retrieve=restore (the default; khosim's completion of
//     the flow, as the VFIO selftest expects it): RETRIEVE_FD returns an
//     iommufd holding the preserved HWPTs by token; a preserved device
//     binds only to that iommufd (any other: -EPERM) and so takes over the
//     preserved DMA ownership; IOMMU_HWPT_LIVEUPDATE_RESTORE turns a
//     preserved HWPT into an object once every device on its domain is
//     bound (-ENODEV before); the device can then move to a fresh HWPT and
//     the restored one be destroyed (its table pages are freed). FINISH
//     fails (can_finish) until every preserved HWPT was restored and
//     destroyed again: a restored HWPT maps the previous kernel's pages
//     without pinning them, so once finish frees the files nobody
//     retrieved, a device still on it would write freed memory;
//   - khosim.iommufd_retrieve=unsupported (the newest upstream posting as
//     it stands): RETRIEVE_FD fails with -EOPNOTSUPP and can_finish is
//     always false, so the session cannot finish.
#ifndef KHOSIM_DRIVERS_IOMMUFD_H_
#define KHOSIM_DRIVERS_IOMMUFD_H_

#define IOMMUFD_MODULE_NAME "iommufd"

// Registers /dev/iommu, the file handler and links the IOMMU FLB to it.
// 0 or the first registration error (LUO being disabled is not one).
int iommufd_init(void);
void iommufd_exit(void);

#endif  // KHOSIM_DRIVERS_IOMMUFD_H_

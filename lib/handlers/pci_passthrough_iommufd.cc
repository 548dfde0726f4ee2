// The iommufd half of the pci-passthrough driver: the device's DMA given
// to an iommufd, as VFIO's device cdev does (see
// khosim/handlers/pci_passthrough.h for the uAPI).
//
// Preservation goes through iommufd_device_preserve, which needs the
// iommufd preserved in the same session first; the record then carries no
// IOMMU state of its own (iommu_domain 0): the IOMMU core's FLB names the
// device and its domain, and the next kernel's iommufd takes it over when
// the retrieved device is bound to the retrieved iommufd.
#include <cerrno>

#include "khosim/handlers/pci_passthrough.h"
#include "khosim/linux/err.h"
#include "khosim/linux/uaccess.h"
#include "pci_passthrough_internal.h"

namespace {

long ppt_bind(struct ppt_device* ppt, unsigned long arg) {
  struct pci_passthrough_bind_iommufd req;
  void __user* ubuf = reinterpret_cast<void __user*>(arg);
  if (copy_from_user(&req, ubuf, sizeof(req)) != 0) return -EFAULT;
  if (req.size != sizeof(req)) return -EINVAL;
  if (ppt->idev != nullptr || ppt->domain != nullptr) return -EBUSY;
  struct file* file = fget(static_cast<unsigned int>(req.iommufd));
  if (file == nullptr) return -EBADF;
  struct iommufd_ctx* ictx = iommufd_ctx_from_file(file);
  fput(file);
  if (IS_ERR(ictx)) return PTR_ERR(ictx);
  u32 id = 0;
  struct iommufd_device* idev = iommufd_device_bind(ictx, &ppt->pdev->dev, &id);
  iommufd_ctx_put(ictx);
  if (IS_ERR(idev)) return PTR_ERR(idev);
  req.out_devid = id;
  if (copy_to_user(ubuf, &req, sizeof(req)) != 0) {
    iommufd_device_unbind(idev);
    return -EFAULT;
  }
  ppt->idev = idev;
  return 0;
}

long ppt_attach(struct ppt_device* ppt, unsigned long arg) {
  struct pci_passthrough_attach_pt req;
  void __user* ubuf = reinterpret_cast<void __user*>(arg);
  if (copy_from_user(&req, ubuf, sizeof(req)) != 0) return -EFAULT;
  if (req.size != sizeof(req) || ppt->idev == nullptr) return -EINVAL;
  if (int err = iommufd_device_attach(ppt->idev, IOMMU_NO_PASID, &req.pt_id); err != 0) {
    return err;
  }
  return copy_to_user(ubuf, &req, sizeof(req)) != 0 ? -EFAULT : 0;
}

}  // namespace

long ppt_iommufd_ioctl(struct ppt_device* ppt, unsigned int cmd, unsigned long arg) {
  switch (cmd) {
    case PCI_PASSTHROUGH_BIND_IOMMUFD:
      return ppt_bind(ppt, arg);
    case PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT:
      return ppt_attach(ppt, arg);
    case PCI_PASSTHROUGH_DETACH_IOMMUFD_PT:
      if (ppt->idev == nullptr) return -EINVAL;
      iommufd_device_detach(ppt->idev, IOMMU_NO_PASID);
      return 0;
    default:
      return -ENOTTY;
  }
}

void ppt_iommufd_release(struct ppt_device* ppt) {
  if (ppt->idev == nullptr) return;
  iommufd_device_unbind(ppt->idev);
  ppt->idev = nullptr;
}

int ppt_iommufd_preserve(struct ppt_device* ppt, struct liveupdate_session* session) {
  return ppt->idev == nullptr ? 0 : iommufd_device_preserve(ppt->idev, session);
}

void ppt_iommufd_unpreserve(struct ppt_device* ppt) {
  if (ppt->idev != nullptr) iommufd_device_unpreserve(ppt->idev);
}

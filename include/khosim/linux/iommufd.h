// Kernel-face iommufd API (<linux/iommufd.h>): what a device driver that
// hands its device to userspace (VFIO, the pci-passthrough stand-in) calls
// to bind the device to an iommufd and attach it to an IOAS or HWPT, plus
// the live update calls such a driver makes for its device. The uAPI of
// /dev/iommu is khosim/uapi/iommufd.h; khosim/drivers/iommufd.h says how
// the whole subsystem behaves across a kexec.
//
// Context: process context, one caller at a time (the machine's thread).
#ifndef KHOSIM_LINUX_IOMMUFD_H_
#define KHOSIM_LINUX_IOMMUFD_H_

#include "khosim/linux/device.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/types.h"

#define IOMMU_NO_PASID 0u

struct iommufd_ctx;
struct iommufd_device;
struct liveupdate_session;

// The iommufd behind |file| with a new reference, or ERR_PTR(-EBADFD) when
// |file| is not an iommufd.
struct iommufd_ctx* iommufd_ctx_from_file(struct file* file);
void iommufd_ctx_get(struct iommufd_ctx* ictx);
void iommufd_ctx_put(struct iommufd_ctx* ictx);

// Binds |dev| to |ictx|: claims the device's DMA ownership for the iommufd
// and gives it an object id (*id). The device stays blocked until
// attached. In the kernel after a live update, a device that came in
// preserved binds only to the iommufd retrieved from LUO that holds its
// preserved HWPT, which takes over the preserved DMA ownership; it keeps
// translating through its restored domain meanwhile.
// ERR_PTR: -EPERM (another owner holds the device's DMA: a second
// iommufd, another driver, or a fresh iommufd for a preserved device),
// -ENODEV (no IOMMU translates the device), -ENOMEM.
struct iommufd_device* iommufd_device_bind(struct iommufd_ctx* ictx, struct device* dev, u32* id);
// Detaches if attached, releases the ownership and the object.
void iommufd_device_unbind(struct iommufd_device* idev);
// Simulator: the kernel died with the device bound (a driver's f_free).
// Drops the binding's reference on the iommufd's file, so the iommufd's
// host objects go with its last reference; nothing of the kernel runs.
void iommufd_device_free_host(struct iommufd_device* idev);
// Attaches the device to *pt_id: a HWPT, or an IOAS (the device then gets
// an automatic HWPT of that IOAS, whose id is returned in *pt_id). An
// attached device is moved in one step (no DMA window without a domain).
// 0; -EINVAL (pasid not IOMMU_NO_PASID), -ENOENT (no such IOAS or HWPT),
// -ENOMEM, the IOMMU core's errnos.
int iommufd_device_attach(struct iommufd_device* idev, u32 pasid, u32* pt_id);
// Blocks the device's DMA again.
void iommufd_device_detach(struct iommufd_device* idev, u32 pasid);
struct iommufd_ctx* iommufd_device_to_ictx(struct iommufd_device* idev);
u32 iommufd_device_to_id(struct iommufd_device* idev);

// --- Live update --------------------------------------------------------
// Kernel A, from a driver's LUO preserve: records the device attached to
// its HWPT in the IOMMU core's FLB (iommu_preserve_device; the
// dma_owner_token is the iommufd's LUO token in |session|, as upstream's).
// In order: -ENOENT (not attached), -EINVAL (its HWPT is not marked),
// -ENOENT (the iommufd is not preserved in |session|: it must be preserved
// before its devices), then the IOMMU core's errnos (-EINVAL: the HWPT's
// domain was not preserved with the iommufd).
int iommufd_device_preserve(struct iommufd_device* idev, struct liveupdate_session* session);
void iommufd_device_unpreserve(struct iommufd_device* idev);
// Kernel B: whether |dev| came in preserved and no iommufd has taken it
// over yet (a driver's can_finish waits for that).
bool iommufd_device_awaits_bind(struct device* dev);

#endif  // KHOSIM_LINUX_IOMMUFD_H_

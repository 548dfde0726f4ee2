// The VFIO core: a device's cdev (/dev/vfio/devices/vfioN) and the device
// file every way of opening a device returns, with the ioctls the core
// handles itself (VFIO_DEVICE_BIND_IOMMUFD, _ATTACH_IOMMUFD_PT,
// _DETACH_IOMMUFD_PT); the rest goes to the bus driver's ops.
//
// A device file's life:
//   cdev open   -> unbound file (everything but BIND is -EINVAL);
//   BIND        -> iommufd_device_bind, then the driver's open_device on
//                  the first open: the device is the VMM's;
//   release     -> the driver's close_device on the last open, unbind.
// The group path (group.cc) opens the file already bound to its
// container. LUO's retrieve (vfio_pci_liveupdate.cc) opens an
// unbound file like the cdev's.
#include <cerrno>
#include <cstddef>
#include <cstdio>

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/uaccess.h"
#include "khosim/uapi/vfio.h"
#include "vfio.h"

namespace {

// Slots of the cdev minor space: a kernel numbers its devices from 0 in
// registration order, as the kernel's ida does.
constexpr int kMaxDevices = 4096;

struct vfio_device* DeviceOfMisc(struct file* file) {
  auto* misc = static_cast<struct miscdevice*>(file->private_data);
  return reinterpret_cast<struct vfio_device*>(reinterpret_cast<char*>(misc) -
                                               offsetof(struct vfio_device, cdev));
}

// The last file of a device its driver has let go of frees it.
void vfio_device_put_file(struct vfio_device* vdev) {
  if (--vdev->files == 0 && vdev->unregistered) kfree(vdev);
}

void vfio_df_close(struct vfio_device_file* df) {
  struct vfio_device* vdev = df->device;
  if (!df->access_granted) return;
  df->access_granted = false;
  if (--vdev->open_count == 0 && !vdev->unregistered) vdev->ops->close_device(vdev);
  if (df->from_group) vfio_group_close_device(vdev);
  if (df->iommufd != nullptr) {
    if (vdev->iommufd_device != nullptr) iommufd_device_unbind(vdev->iommufd_device);
    vdev->iommufd_device = nullptr;
    vdev->iommufd_attached = false;
    vdev->cdev_opened = false;
    iommufd_ctx_put(df->iommufd);
    df->iommufd = nullptr;
  }
}

// The kernel died with the file open: host memory and the references
// that keep other files' host objects alive.
void vfio_device_file_free(struct file* file) {
  auto* df = static_cast<struct vfio_device_file*>(file->private_data);
  if (df->from_group) vfio_group_free_host(df->device);
  if (df->iommufd != nullptr) {
    if (df->device->iommufd_device != nullptr) {
      iommufd_device_free_host(df->device->iommufd_device);
    }
    iommufd_ctx_put(df->iommufd);
  }
  kfree(df);
}

int vfio_device_fops_release(struct inode* /*inode*/, struct file* file) {
  auto* df = static_cast<struct vfio_device_file*>(file->private_data);
  struct vfio_device* vdev = df->device;
  vfio_df_close(df);
  file->f_free = nullptr;
  kfree(df);
  vfio_device_put_file(vdev);
  return 0;
}

long vfio_df_ioctl_bind_iommufd(struct vfio_device_file* df, unsigned long arg) {
  struct vfio_device_bind_iommufd bind;
  void __user* ubuf = reinterpret_cast<void __user*>(arg);
  constexpr size_t kMinsz = offsetof(struct vfio_device_bind_iommufd, out_devid) + sizeof(u32);
  if (copy_from_user(&bind, ubuf, kMinsz) != 0) return -EFAULT;
  if (bind.argsz < kMinsz || bind.flags != 0 || bind.iommufd < 0) return -EINVAL;
  if (df->from_group) return -EINVAL;  // BIND is the cdev's
  struct vfio_device* vdev = df->device;
  if (vdev->group.opened || vdev->group.device_fds != 0) return -EBUSY;  // legacy mode
  if (df->access_granted) return -EINVAL;                                // bound already
  if (vdev->open_count != 0) return -EBUSY;                              // another file has it
  struct file* file = fget(static_cast<unsigned int>(bind.iommufd));
  if (file == nullptr) return -EBADF;
  struct iommufd_ctx* ictx = iommufd_ctx_from_file(file);
  fput(file);
  if (IS_ERR(ictx)) return PTR_ERR(ictx);
  if (int err = vfio_df_open_iommufd(df, ictx); err != 0) {
    iommufd_ctx_put(ictx);
    return err;
  }
  bind.out_devid = iommufd_device_to_id(vdev->iommufd_device);
  if (copy_to_user(
          static_cast<char __user*>(ubuf) + offsetof(struct vfio_device_bind_iommufd, out_devid),
          &bind.out_devid, sizeof(bind.out_devid)) != 0) {
    vfio_df_close(df);
    return -EFAULT;
  }
  return 0;
}

long vfio_df_ioctl_attach_pt(struct vfio_device_file* df, unsigned long arg) {
  struct vfio_device_attach_iommufd_pt attach;
  void __user* ubuf = reinterpret_cast<void __user*>(arg);
  constexpr size_t kMinsz = offsetof(struct vfio_device_attach_iommufd_pt, pt_id) + sizeof(u32);
  if (copy_from_user(&attach, ubuf, kMinsz) != 0) return -EFAULT;
  if (attach.argsz < kMinsz || attach.flags != 0 || df->iommufd == nullptr) return -EINVAL;
  struct vfio_device* vdev = df->device;
  if (vdev->liveupdate_outgoing) return -EBUSY;
  if (int err = iommufd_device_attach(vdev->iommufd_device, IOMMU_NO_PASID, &attach.pt_id);
      err != 0) {
    return err;
  }
  vdev->iommufd_attached = true;
  return copy_to_user(ubuf, &attach, kMinsz) != 0 ? -EFAULT : 0;
}

long vfio_df_ioctl_detach_pt(struct vfio_device_file* df, unsigned long arg) {
  struct vfio_device_detach_iommufd_pt detach;
  constexpr size_t kMinsz = offsetof(struct vfio_device_detach_iommufd_pt, flags) + sizeof(u32);
  if (copy_from_user(&detach, reinterpret_cast<void __user*>(arg), kMinsz) != 0) return -EFAULT;
  if (detach.argsz < kMinsz || detach.flags != 0 || df->iommufd == nullptr) return -EINVAL;
  if (df->device->liveupdate_outgoing) return -EBUSY;
  iommufd_device_detach(df->device->iommufd_device, IOMMU_NO_PASID);
  df->device->iommufd_attached = false;
  return 0;
}

long vfio_device_fops_ioctl(struct file* file, unsigned int cmd, unsigned long arg) {
  auto* df = static_cast<struct vfio_device_file*>(file->private_data);
  struct vfio_device* vdev = df->device;
  if (vdev->unregistered) return -ENODEV;
  if (vdev->liveupdate_frozen) return -EIO;
  if (cmd == VFIO_DEVICE_BIND_IOMMUFD) return vfio_df_ioctl_bind_iommufd(df, arg);
  if (!df->access_granted) return -EINVAL;
  switch (cmd) {
    case VFIO_DEVICE_ATTACH_IOMMUFD_PT:
      return vfio_df_ioctl_attach_pt(df, arg);
    case VFIO_DEVICE_DETACH_IOMMUFD_PT:
      return vfio_df_ioctl_detach_pt(df, arg);
    default:
      return vdev->ops->ioctl(vdev, cmd, arg);
  }
}

ssize_t vfio_device_fops_read(struct file* file, char* buf, size_t count, loff_t* ppos) {
  auto* df = static_cast<struct vfio_device_file*>(file->private_data);
  if (df->device->unregistered) return -ENODEV;
  if (df->device->liveupdate_frozen) return -EIO;
  if (!df->access_granted) return -EINVAL;
  return df->device->ops->read(df->device, buf, count, ppos);
}

ssize_t vfio_device_fops_write(struct file* file, const char* buf, size_t count, loff_t* ppos) {
  auto* df = static_cast<struct vfio_device_file*>(file->private_data);
  if (df->device->unregistered) return -ENODEV;
  if (df->device->liveupdate_frozen) return -EIO;
  if (!df->access_granted) return -EINVAL;
  return df->device->ops->write(df->device, buf, count, ppos);
}

const struct file_operations vfio_device_fops = {
    .owner = nullptr,
    .open = nullptr,
    .release = vfio_device_fops_release,
    .unlocked_ioctl = vfio_device_fops_ioctl,
    .read = vfio_device_fops_read,
    .write = vfio_device_fops_write,
};

struct vfio_device_file* vfio_allocate_device_file(struct vfio_device* vdev, bool from_group) {
  auto* df =
      static_cast<struct vfio_device_file*>(kzalloc(sizeof(struct vfio_device_file), GFP_KERNEL));
  if (df == nullptr) return nullptr;
  df->device = vdev;
  df->from_group = from_group;
  vdev->files++;
  return df;
}

// The cdev: an unbound device file. -EBUSY while the previous kernel's
// preserved device waits for LUO to hand it out.
int vfio_device_fops_cdev_open(struct inode* /*inode*/, struct file* file) {
  struct vfio_device* vdev = DeviceOfMisc(file);
  if (vfio_liveupdate_incoming_is_preserved(vdev)) return -EBUSY;
  struct vfio_device_file* df = vfio_allocate_device_file(vdev, false);
  if (df == nullptr) return -ENOMEM;
  file->private_data = df;
  file->f_op = &vfio_device_fops;
  file->f_free = vfio_device_file_free;
  return 0;
}

const struct file_operations vfio_device_cdev_fops = {
    .owner = nullptr,
    .open = vfio_device_fops_cdev_open,
    .release = vfio_device_fops_release,
    .unlocked_ioctl = vfio_device_fops_ioctl,
    .read = vfio_device_fops_read,
    .write = vfio_device_fops_write,
};

}  // namespace

int vfio_df_open_iommufd(struct vfio_device_file* df, struct iommufd_ctx* ictx) {
  struct vfio_device* vdev = df->device;
  u32 id = 0;
  struct iommufd_device* idev = iommufd_device_bind(ictx, vdev->dev, &id);
  if (IS_ERR(idev)) return static_cast<int>(PTR_ERR(idev));
  if (vdev->open_count == 0) {
    if (int err = vdev->ops->open_device(vdev); err != 0) {
      iommufd_device_unbind(idev);
      return err;
    }
  }
  vdev->open_count++;
  vdev->iommufd_device = idev;
  vdev->cdev_opened = true;
  df->iommufd = ictx;
  df->access_granted = true;
  return 0;
}

struct file* vfio_device_open_file(struct vfio_device* vdev, const char* name, bool from_group) {
  struct vfio_device_file* df = vfio_allocate_device_file(vdev, from_group);
  if (df == nullptr) return static_cast<struct file*>(ERR_PTR(-ENOMEM));
  struct file* file = anon_inode_getfile(name, &vfio_device_fops, df, O_RDWR);
  if (IS_ERR(file)) {
    kfree(df);
    vfio_device_put_file(vdev);
    return file;
  }
  file->f_free = vfio_device_file_free;
  return file;
}

struct vfio_device* vfio_device_from_file(struct file* file) {
  struct vfio_device_file* df = vfio_device_file_of(file);
  return df == nullptr ? nullptr : df->device;
}

struct vfio_device_file* vfio_device_file_of(struct file* file) {
  if (file == nullptr || file->f_op != &vfio_device_fops) return nullptr;
  return static_cast<struct vfio_device_file*>(file->private_data);
}

int vfio_register_group_dev(struct vfio_device* vdev) {
  vdev->cdev = {
      .minor = MISC_DYNAMIC_MINOR, .name = vdev->cdev_node, .fops = &vfio_device_cdev_fops};
  int err = -EEXIST;
  for (int i = 0; i < kMaxDevices && err == -EEXIST; ++i) {
    vdev->index = i;
    std::snprintf(vdev->cdev_node, sizeof(vdev->cdev_node), "vfio/devices/vfio%d", i);
    err = misc_register(&vdev->cdev);
  }
  if (err != 0) return err;
  if (err = vfio_group_register(vdev); err != 0) misc_deregister(&vdev->cdev);
  return err;
}

bool vfio_unregister_group_dev(struct vfio_device* vdev) {
  vfio_group_unregister(vdev);
  misc_deregister(&vdev->cdev);
  if (vdev->open_count != 0) vdev->ops->close_device(vdev);
  vdev->unregistered = true;
  return vdev->files == 0;
}

// The legacy VFIO interface: the container (/dev/vfio/vfio) and each
// device's group (/dev/vfio/<id>). A VMM opens a container and the group,
// puts the group in the container (VFIO_GROUP_SET_CONTAINER), picks the
// type1 IOMMU (VFIO_SET_IOMMU, which gives the container its IOMMU
// domain) and asks the group for the device (VFIO_GROUP_GET_DEVICE_FD):
// the device file comes back open, its DMA owned by the container and
// translated by the container's domain.
//
// It exists so that live update's rule can be tested: only a device
// opened through its cdev and bound to an iommufd can be preserved; a
// group, a container, or a device fd from a group cannot (-ENOENT from
// LUO: no handler takes them). khosim's groups are singletons (one device
// each, id = the device's vfio index). Type1 DMA mapping (VFIO_IOMMU_MAP_DMA)
// is not modelled: a group-opened device translates through an empty
// domain, so its DMA faults.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/iommu.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/uaccess.h"
#include "khosim/uapi/vfio.h"
#include "vfio.h"

namespace {

constexpr int kMaxGroupsPerContainer = 64;

struct vfio_container {
  int iommu_type;  // 0 until VFIO_SET_IOMMU
  struct iommu_domain* domain;
  int nr_groups;
  struct vfio_group* groups[kMaxGroupsPerContainer];
};

struct vfio_device* DeviceOfGroup(struct vfio_group* group) {
  return reinterpret_cast<struct vfio_device*>(reinterpret_cast<char*>(group) -
                                               offsetof(struct vfio_device, group));
}

// ---- The container ----------------------------------------------------------

int vfio_container_open(struct inode* /*inode*/, struct file* file) {
  auto* c = static_cast<struct vfio_container*>(kzalloc(sizeof(struct vfio_container), GFP_KERNEL));
  if (c == nullptr) return -ENOMEM;
  file->private_data = c;
  return 0;
}

int vfio_container_release(struct inode* /*inode*/, struct file* file) {
  auto* c = static_cast<struct vfio_container*>(file->private_data);
  // Groups hold a reference: the last one is gone, and with it every device.
  if (c->domain != nullptr) iommu_domain_free(c->domain);
  kfree(c);
  return 0;
}

long vfio_container_set_iommu(struct vfio_container* c, unsigned long type) {
  if (c->nr_groups == 0 || c->iommu_type != 0) return -EINVAL;
  if (type != VFIO_TYPE1_IOMMU && type != VFIO_TYPE1v2_IOMMU) return -ENODEV;
  struct iommu_domain* domain = iommu_paging_domain_alloc(DeviceOfGroup(c->groups[0])->dev);
  if (IS_ERR(domain)) return PTR_ERR(domain);
  c->domain = domain;
  c->iommu_type = static_cast<int>(type);
  return 0;
}

long vfio_container_ioctl(struct file* file, unsigned int cmd, unsigned long arg) {
  auto* c = static_cast<struct vfio_container*>(file->private_data);
  switch (cmd) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
      return arg == VFIO_TYPE1_IOMMU || arg == VFIO_TYPE1v2_IOMMU ? 1 : 0;
    case VFIO_SET_IOMMU:
      return vfio_container_set_iommu(c, arg);
    default:
      return -ENOTTY;
  }
}

const struct file_operations vfio_container_fops = {
    .owner = nullptr,
    .open = vfio_container_open,
    .release = vfio_container_release,
    .unlocked_ioctl = vfio_container_ioctl,
};

struct miscdevice vfio_container_misc = {
    .minor = MISC_DYNAMIC_MINOR, .name = "vfio/vfio", .fops = &vfio_container_fops};

// ---- The group --------------------------------------------------------------

struct vfio_group* GroupOfFile(struct file* file) {
  return static_cast<struct vfio_group*>(file->private_data);
}

void vfio_group_unset_container(struct vfio_group* group) {
  auto* c = static_cast<struct vfio_container*>(group->container->private_data);
  for (int i = 0; i < c->nr_groups; ++i) {
    if (c->groups[i] == group) c->groups[i] = c->groups[--c->nr_groups];
  }
  fput(group->container);
  group->container = nullptr;
}

// The kernel died with the group open: the container reference goes.
void vfio_group_file_free(struct file* file) {
  struct vfio_group* group = GroupOfFile(file);
  if (group->container != nullptr) fput(group->container);
  group->container = nullptr;
}

// One opener; -EBUSY while the device is open through its cdev, or LUO
// holds it.
int vfio_group_fops_open(struct inode* /*inode*/, struct file* file) {
  auto* misc = static_cast<struct miscdevice*>(file->private_data);
  auto* group = reinterpret_cast<struct vfio_group*>(reinterpret_cast<char*>(misc) -
                                                     offsetof(struct vfio_group, misc));
  struct vfio_device* vdev = DeviceOfGroup(group);
  if (group->opened || vdev->cdev_opened) return -EBUSY;
  group->opened = true;
  file->private_data = group;
  file->f_free = vfio_group_file_free;
  return 0;
}

int vfio_group_fops_release(struct inode* /*inode*/, struct file* file) {
  struct vfio_group* group = GroupOfFile(file);
  if (group->container != nullptr && group->device_fds == 0) vfio_group_unset_container(group);
  group->opened = false;
  file->f_free = nullptr;
  return 0;
}

long vfio_group_set_container(struct vfio_group* group, unsigned long arg) {
  s32 fd = -1;
  if (copy_from_user(&fd, reinterpret_cast<void __user*>(arg), sizeof(fd)) != 0) return -EFAULT;
  if (group->container != nullptr || DeviceOfGroup(group)->cdev_opened) return -EBUSY;
  struct file* file = fget(static_cast<unsigned int>(fd));
  if (file == nullptr) return -EBADF;
  if (file->f_op != &vfio_container_fops) {
    fput(file);
    return -EINVAL;
  }
  auto* c = static_cast<struct vfio_container*>(file->private_data);
  if (c->nr_groups == kMaxGroupsPerContainer) {
    fput(file);
    return -ENOSPC;
  }
  c->groups[c->nr_groups++] = group;
  group->container = file;  // fget's reference
  return 0;
}

// Binds a group-opened device file to its group's container: DMA
// ownership for the container, attached to its domain. 0 or an errno.
int vfio_group_attach_device(struct vfio_device* vdev) {
  auto* c = static_cast<struct vfio_container*>(vdev->group.container->private_data);
  if (int err = iommu_device_claim_dma_owner(vdev->dev, c); err != 0) return err;
  int err = iommu_attach_device(c->domain, vdev->dev);
  if (err == 0 && vdev->open_count == 0) {
    err = vdev->ops->open_device(vdev);
    if (err != 0) iommu_detach_device(c->domain, vdev->dev);
  }
  if (err != 0) {
    iommu_device_release_dma_owner(vdev->dev);
    return err;
  }
  vdev->open_count++;
  return 0;
}

long vfio_group_get_device_fd(struct vfio_group* group, unsigned long arg) {
  char name[32] = {};
  if (strncpy_from_user(name, reinterpret_cast<const char __user*>(arg), sizeof(name) - 1) < 0) {
    return -EFAULT;
  }
  if (group->container == nullptr) return -EINVAL;
  auto* c = static_cast<struct vfio_container*>(group->container->private_data);
  if (c->iommu_type == 0) return -EINVAL;
  struct vfio_device* vdev = DeviceOfGroup(group);
  if (std::strcmp(name, dev_name(vdev->dev)) != 0) return -ENODEV;
  // A device preserved by the previous kernel is LUO's until retrieved.
  if (vfio_liveupdate_incoming_is_preserved(vdev) || vdev->cdev_opened) return -EBUSY;
  const int fd = get_unused_fd_flags(O_CLOEXEC);
  if (fd < 0) return fd;
  struct file* file = vfio_device_open_file(vdev, "[vfio-device]", true);
  if (IS_ERR(file)) {
    put_unused_fd(fd);
    return PTR_ERR(file);
  }
  if (int err = vfio_group_attach_device(vdev); err != 0) {
    put_unused_fd(fd);
    fput(file);
    return err;
  }
  vfio_device_file_of(file)->access_granted = true;
  group->device_fds++;
  fd_install(static_cast<unsigned int>(fd), file);
  return fd;
}

long vfio_group_fops_ioctl(struct file* file, unsigned int cmd, unsigned long arg) {
  struct vfio_group* group = GroupOfFile(file);
  if (DeviceOfGroup(group)->unregistered) return -ENODEV;
  switch (cmd) {
    case VFIO_GROUP_GET_STATUS: {
      struct vfio_group_status status;
      void __user* ubuf = reinterpret_cast<void __user*>(arg);
      if (copy_from_user(&status, ubuf, sizeof(status)) != 0) return -EFAULT;
      if (status.argsz < sizeof(status)) return -EINVAL;
      status.flags = VFIO_GROUP_FLAGS_VIABLE;
      if (group->container != nullptr) status.flags |= VFIO_GROUP_FLAGS_CONTAINER_SET;
      return copy_to_user(ubuf, &status, sizeof(status)) != 0 ? -EFAULT : 0;
    }
    case VFIO_GROUP_SET_CONTAINER:
      return vfio_group_set_container(group, arg);
    case VFIO_GROUP_UNSET_CONTAINER:
      if (group->container == nullptr) return -EINVAL;
      if (group->device_fds != 0) return -EBUSY;
      vfio_group_unset_container(group);
      return 0;
    case VFIO_GROUP_GET_DEVICE_FD:
      return vfio_group_get_device_fd(group, arg);
    default:
      return -ENOTTY;
  }
}

const struct file_operations vfio_group_fops = {
    .owner = nullptr,
    .open = vfio_group_fops_open,
    .release = vfio_group_fops_release,
    .unlocked_ioctl = vfio_group_fops_ioctl,
};

}  // namespace

void vfio_group_close_device(struct vfio_device* vdev) {
  struct vfio_group* group = &vdev->group;
  auto* c = static_cast<struct vfio_container*>(group->container->private_data);
  iommu_detach_device(c->domain, vdev->dev);
  iommu_device_release_dma_owner(vdev->dev);
  if (--group->device_fds == 0 && !group->opened) vfio_group_unset_container(group);
}

void vfio_group_free_host(struct vfio_device* vdev) {
  struct vfio_group* group = &vdev->group;
  if (--group->device_fds == 0 && !group->opened && group->container != nullptr) {
    fput(group->container);
    group->container = nullptr;
  }
}

int vfio_group_register(struct vfio_device* vdev) {
  struct vfio_group* group = &vdev->group;
  group->id = vdev->index;
  std::snprintf(group->node, sizeof(group->node), "vfio/%d", group->id);
  group->misc = {.minor = MISC_DYNAMIC_MINOR, .name = group->node, .fops = &vfio_group_fops};
  return misc_register(&group->misc);
}

void vfio_group_unregister(struct vfio_device* vdev) { misc_deregister(&vdev->group.misc); }

int vfio_container_register(void) { return misc_register(&vfio_container_misc); }
void vfio_container_unregister(void) { misc_deregister(&vfio_container_misc); }

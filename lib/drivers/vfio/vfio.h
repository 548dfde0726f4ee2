// The VFIO core's objects and the calls vfio-pci and its live update
// handler share (see khosim/drivers/vfio.h for the behaviour). Names follow
// upstream drivers/vfio/vfio.h and include/linux/vfio.h.
//
// Ownership: a vfio_device belongs to its driver (vfio-pci allocates it at
// probe, frees it at remove or, if a file still holds it, at the last
// file's release); each device file (struct vfio_device_file) belongs to
// its struct file. The group is embedded in the device: khosim's IOMMU
// groups are singletons.
// Context: process context, one caller at a time (the machine's thread).
#ifndef KHOSIM_LIB_DRIVERS_VFIO_VFIO_H_
#define KHOSIM_LIB_DRIVERS_VFIO_VFIO_H_

#include "khosim/linux/device.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/iommufd.h"
#include "khosim/linux/miscdevice.h"
#include "khosim/linux/types.h"

struct vfio_device;

// What a VFIO bus driver provides (upstream struct vfio_device_ops, the
// members khosim uses).
struct vfio_device_ops {
  const char* name;
  // First open of the device (a cdev bound to an iommufd, or a device fd
  // from a group): 0 or an errno, which fails the bind / GET_DEVICE_FD.
  int (*open_device)(struct vfio_device* vdev);
  // Last close.
  void (*close_device)(struct vfio_device* vdev);
  long (*ioctl)(struct vfio_device* vdev, unsigned int cmd, unsigned long arg);
  ssize_t (*read)(struct vfio_device* vdev, char* buf, size_t count, loff_t* ppos);
  ssize_t (*write)(struct vfio_device* vdev, const char* buf, size_t count, loff_t* ppos);
};

// The legacy group of one device (/dev/vfio/<id>).
struct vfio_group {
  int id;
  char node[24];  // "vfio/3"
  struct miscdevice misc;
  bool opened;              // the group fd (one at a time)
  struct file* container;   // VFIO_GROUP_SET_CONTAINER's (a reference)
  unsigned int device_fds;  // device fds it handed out, open
};

struct vfio_device {
  struct device* dev;
  const struct vfio_device_ops* ops;
  int index;               // vfioN
  char cdev_node[32];      // "vfio/devices/vfio3"
  struct miscdevice cdev;  // opened: an unbound device file
  struct vfio_group group;
  // Files referring to the device (cdev and group opens, LUO's) and
  // whether its driver let go of it: the last file then frees it.
  unsigned int files;
  bool unregistered;
  // Opened: open_device ran (a bound cdev or a group device fd).
  unsigned int open_count;
  bool cdev_opened;  // bound to an iommufd through a cdev file
  struct iommufd_device* iommufd_device;
  bool iommufd_attached;  // to an IOAS or HWPT of its iommufd
  // Kernel A: preserved in a session (attach/detach -EBUSY) / frozen for
  // the kexec (every ioctl, read and write -EIO).
  bool liveupdate_outgoing;
  bool liveupdate_frozen;
  // Kernel B: LUO handed it out (a second record naming it is refused).
  bool liveupdate_retrieved;
};

// One open of a device: a cdev (unbound until VFIO_DEVICE_BIND_IOMMUFD),
// a group's VFIO_GROUP_GET_DEVICE_FD, or LUO's retrieve.
struct vfio_device_file {
  struct vfio_device* device;
  bool from_group;
  bool access_granted;  // opened: ioctls beyond BIND work
  struct iommufd_ctx* iommufd;
};

// vfio_main.cc
// Publishes the device's cdev and group; |vdev| is the driver's, zeroed
// but for dev and ops. 0, misc_register's errno.
int vfio_register_group_dev(struct vfio_device* vdev);
// Withdraws the nodes. Returns true if the driver may free |vdev| now,
// false if open files hold it (the last release frees it with kfree).
bool vfio_unregister_group_dev(struct vfio_device* vdev);
// The device behind a VFIO device file, or NULL for any other file.
struct vfio_device* vfio_device_from_file(struct file* file);
struct vfio_device_file* vfio_device_file_of(struct file* file);
// A new device file; ERR_PTR(-ENOMEM).
struct file* vfio_device_open_file(struct vfio_device* vdev, const char* name, bool from_group);
// Binds |df|'s device to |ictx| and opens it (open_device); 0 or errno.
int vfio_df_open_iommufd(struct vfio_device_file* df, struct iommufd_ctx* ictx);

// Kernel B: the previous kernel preserved the device and this kernel can
// hand it out through LUO (CONFIG_VFIO_PCI_LIVEUPDATE): until the session
// finishes it, its cdev and group refuse it (-EBUSY), and opening it does
// not reset it. (vfio_pci_liveupdate.cc)
bool vfio_liveupdate_incoming_is_preserved(struct vfio_device* vdev);

// group.cc: the legacy group and container (/dev/vfio/<id>, /dev/vfio/vfio).
int vfio_group_register(struct vfio_device* vdev);
void vfio_group_unregister(struct vfio_device* vdev);
// The last close of a group-opened device file: detaches the device,
// releases the container's ownership; the container goes once neither the
// group fd nor a device fd holds it.
void vfio_group_close_device(struct vfio_device* vdev);
// The kernel died with a group-opened device file open: the container's
// host reference, if this was its last holder.
void vfio_group_free_host(struct vfio_device* vdev);
int vfio_container_register(void);
void vfio_container_unregister(void);

#endif  // KHOSIM_LIB_DRIVERS_VFIO_VFIO_H_

// The VFIO userspace API (upstream include/uapi/linux/vfio.h, the subset
// khosim models): ioctl numbers and argument structs of the container
// (/dev/vfio/vfio), the legacy group (/dev/vfio/<group>) and the device
// file, whether opened through a group or as the device cdev
// (/dev/vfio/devices/vfioN) bound to an iommufd.
//
// Every struct starts with `argsz` (the caller's sizeof) and `flags`: an
// argsz below the command's minimum, or an unknown flag, is -EINVAL.
// khosim/drivers/vfio.h says how the devices behave.
#ifndef KHOSIM_UAPI_VFIO_H_
#define KHOSIM_UAPI_VFIO_H_

#include <linux/ioctl.h>

#include <cstdint>

#define VFIO_API_VERSION 0
#define VFIO_TYPE1_IOMMU 1
#define VFIO_TYPE1v2_IOMMU 3

#define VFIO_TYPE (';')
#define VFIO_BASE 100

// ---- The container ----------------------------------------------------------

// VFIO_API_VERSION.
#define VFIO_GET_API_VERSION _IO(VFIO_TYPE, VFIO_BASE + 0)
// arg: an IOMMU type; 1 if the container supports it, else 0.
#define VFIO_CHECK_EXTENSION _IO(VFIO_TYPE, VFIO_BASE + 1)
// arg: VFIO_TYPE1v2_IOMMU (or VFIO_TYPE1_IOMMU). 0; -EINVAL (no group set,
// or the type is set already); -ENODEV (a type the container lacks).
#define VFIO_SET_IOMMU _IO(VFIO_TYPE, VFIO_BASE + 2)

// ---- The group --------------------------------------------------------------

#define VFIO_GROUP_FLAGS_VIABLE (1 << 0)
#define VFIO_GROUP_FLAGS_CONTAINER_SET (1 << 1)
struct vfio_group_status {
  uint32_t argsz;
  uint32_t flags;
};
#define VFIO_GROUP_GET_STATUS _IO(VFIO_TYPE, VFIO_BASE + 3)
// arg: a pointer to the container's fd (int32). 0; -EFAULT; -EBADF;
// -EINVAL (not a container); -EBUSY (a container is set already, or a
// device of the group is open through its cdev).
#define VFIO_GROUP_SET_CONTAINER _IO(VFIO_TYPE, VFIO_BASE + 4)
// 0; -EINVAL (no container); -EBUSY (a device fd of the group is open).
#define VFIO_GROUP_UNSET_CONTAINER _IO(VFIO_TYPE, VFIO_BASE + 5)
// arg: the device's name ("0000:01:00.0"), a C string. The device fd;
// -EFAULT; -EINVAL (no container with an IOMMU type set); -ENODEV (no such
// device in the group); -EBUSY (open through its cdev, or preserved by
// the previous kernel and not yet retrieved from LUO).
#define VFIO_GROUP_GET_DEVICE_FD _IO(VFIO_TYPE, VFIO_BASE + 6)

// ---- The device -------------------------------------------------------------

#define VFIO_DEVICE_FLAGS_RESET (1 << 0)
#define VFIO_DEVICE_FLAGS_PCI (1 << 1)
#define VFIO_DEVICE_FLAGS_CAPS (1 << 7)
struct vfio_device_info {
  uint32_t argsz;
  uint32_t flags;
  uint32_t num_regions;
  uint32_t num_irqs;
  uint32_t cap_offset;
  uint32_t pad;
};
#define VFIO_DEVICE_GET_INFO _IO(VFIO_TYPE, VFIO_BASE + 7)

// vfio-pci's regions and interrupts. Only the config region is modelled:
// pread/pwrite at VFIO_PCI_CONFIG_OFFSET + register.
enum {
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_BAR1_REGION_INDEX,
  VFIO_PCI_BAR2_REGION_INDEX,
  VFIO_PCI_BAR3_REGION_INDEX,
  VFIO_PCI_BAR4_REGION_INDEX,
  VFIO_PCI_BAR5_REGION_INDEX,
  VFIO_PCI_ROM_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_VGA_REGION_INDEX,
  VFIO_PCI_NUM_REGIONS = 9
};
#define VFIO_PCI_OFFSET_SHIFT 40
#define VFIO_PCI_CONFIG_OFFSET (uint64_t{VFIO_PCI_CONFIG_REGION_INDEX} << VFIO_PCI_OFFSET_SHIFT)

enum {
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_REQ_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS
};

#define VFIO_IRQ_INFO_EVENTFD (1 << 0)
#define VFIO_IRQ_INFO_MASKABLE (1 << 1)
#define VFIO_IRQ_INFO_AUTOMASKED (1 << 2)
#define VFIO_IRQ_INFO_NORESIZE (1 << 3)
struct vfio_irq_info {
  uint32_t argsz;
  uint32_t flags;
  uint32_t index;
  uint32_t count;
};
// 0; -EFAULT; -EINVAL (argsz, index out of range).
#define VFIO_DEVICE_GET_IRQ_INFO _IO(VFIO_TYPE, VFIO_BASE + 9)

#define VFIO_IRQ_SET_DATA_NONE (1 << 0)
#define VFIO_IRQ_SET_DATA_BOOL (1 << 1)
#define VFIO_IRQ_SET_DATA_EVENTFD (1 << 2)
#define VFIO_IRQ_SET_ACTION_MASK (1 << 3)
#define VFIO_IRQ_SET_ACTION_UNMASK (1 << 4)
#define VFIO_IRQ_SET_ACTION_TRIGGER (1 << 5)
#define VFIO_IRQ_SET_DATA_TYPE_MASK \
  (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD)
#define VFIO_IRQ_SET_ACTION_TYPE_MASK \
  (VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER)
struct vfio_irq_set {
  uint32_t argsz;  // sizeof(struct vfio_irq_set) + the data
  uint32_t flags;  // one DATA type, one ACTION
  uint32_t index;
  uint32_t start;
  uint32_t count;
  uint8_t data[];  // DATA_EVENTFD: count int32 fds (-1: none); DATA_BOOL: count bytes
};
// MSI-X only (index VFIO_PCI_MSIX_IRQ_INDEX), ACTION_TRIGGER:
//   DATA_EVENTFD  enables MSI-X with the vectors' eventfds (fd -1 leaves a
//                 vector without one), or updates them while enabled;
//   DATA_NONE     with count 0 disables MSI-X; with count > 0 fires the
//                 vectors' eventfds once each (a test's interrupt);
//   DATA_BOOL     fires each vector whose byte is 1.
// 0; -EFAULT; -EINVAL (argsz, flags, index, start + count beyond the
// vectors, an MSI-X enable while MSI/INTx is enabled, DATA_NONE on a
// disabled index, an fd that is not an eventfd); -EBADF; -ENOTTY (another
// index or action: not modelled).
#define VFIO_DEVICE_SET_IRQS _IO(VFIO_TYPE, VFIO_BASE + 10)
// A function reset (FLR): 0; -EINVAL (the function has no reset).
#define VFIO_DEVICE_RESET _IO(VFIO_TYPE, VFIO_BASE + 11)

// ---- Type1 IOMMU (the container) -------------------------------------------

#define VFIO_DMA_MAP_FLAG_READ (1 << 0)
#define VFIO_DMA_MAP_FLAG_WRITE (1 << 1)
// [vaddr, vaddr + size) stands for anonymous user memory, as iommufd's
// IOMMU_IOAS_MAP does (the simulator has no process page tables).
struct vfio_iommu_type1_dma_map {
  uint32_t argsz;
  uint32_t flags;
  uint64_t vaddr;
  uint64_t iova;
  uint64_t size;
};
// 0; -EINVAL (argsz, flags, alignment, no IOMMU type set); -EEXIST; -ENOMEM.
#define VFIO_IOMMU_MAP_DMA _IO(VFIO_TYPE, VFIO_BASE + 13)
struct vfio_iommu_type1_dma_unmap {
  uint32_t argsz;
  uint32_t flags;
  uint64_t iova;
  uint64_t size;
};
// 0 (size: the bytes unmapped); -EINVAL; -ENOENT.
#define VFIO_IOMMU_UNMAP_DMA _IO(VFIO_TYPE, VFIO_BASE + 14)

// ---- The device cdev and iommufd -------------------------------------------

struct vfio_device_bind_iommufd {
  uint32_t argsz;
  uint32_t flags;  // 0
  int32_t iommufd;
  uint32_t out_devid;
};
// Binds a cdev-opened device to an iommufd; its other ioctls, read and
// write are -EINVAL before. 0; -EFAULT; -EINVAL (argsz, flags, iommufd <
// 0, a group-opened device, bound already); -EBADF; -EBUSY (the group is
// open in legacy mode); the errnos of iommufd_device_bind (-EPERM: a
// device preserved by the previous kernel bound to an iommufd other than
// the one retrieved with it).
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)

#define VFIO_DEVICE_ATTACH_PASID (1 << 0)
struct vfio_device_attach_iommufd_pt {
  uint32_t argsz;
  uint32_t flags;  // 0: PASIDs are not modelled
  uint32_t pt_id;  // an IOAS or HWPT id; out: the HWPT attached
  uint32_t pasid;
};
// 0; -EFAULT; -EINVAL (argsz, flags, a group-opened device); the errnos of
// iommufd_device_attach; -EBUSY (a preserved device between PRESERVE_FD
// and the kexec).
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
struct vfio_device_detach_iommufd_pt {
  uint32_t argsz;
  uint32_t flags;
  uint32_t pasid;
};
// 0; -EFAULT; -EINVAL; -EBUSY (preserved, as attach).
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)

#endif  // KHOSIM_UAPI_VFIO_H_

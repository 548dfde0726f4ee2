// VFIO: the vfio-pci driver with its device cdevs, legacy groups and
// container (kernel module "vfio-pci"), and its LUO file handler
// "vfio-pci-v1" (module "vfio-pci-liveupdate", the switch
// CONFIG_VFIO_PCI_LIVEUPDATE). uAPI: khosim/uapi/vfio.h; the record:
// linux/kho/abi/vfio_pci.h; the whole model: docs/devices.md.
//
// Nodes, per kernel:
//   /dev/vfio/vfio               a legacy container;
//   /dev/vfio/<N>                the group of device N (khosim's groups
//                                are singletons; one opener: -EBUSY);
//   /dev/vfio/devices/vfio<N>    the device cdev: an unbound device file.
// N numbers the vfio-pci devices of one kernel from 0 in probe order.
//
// A device file from the cdev is bound with VFIO_DEVICE_BIND_IOMMUFD,
// then attached to an IOAS or HWPT (VFIO_DEVICE_ATTACH_IOMMUFD_PT); one
// bound file per device (-EBUSY), and not while its group is in legacy
// use (-EBUSY). The first open resets the function (FLR) and the last
// close disables its interrupts, clears bus mastering and resets it.
// MSI-X is the interrupt modelled (VFIO_DEVICE_SET_IRQS with eventfds).
//
// Live update (vfio-pci-v1), see lib/drivers/vfio/vfio_pci_liveupdate.cc
// for each callback's rules. Kernel parameter
// khosim.vfio_liveupdate_irqs=refuse|replay: with MSI-X enabled, freeze
// fails with -EINVAL (refuse, upstream's), or disables MSI-X and the next
// kernel fires every vector once when userspace enables MSI-X again after
// retrieving the device (replay, a proposal: an interrupt raised during
// the blackout is lost, and a spurious one is harmless to a driver).
#ifndef KHOSIM_DRIVERS_VFIO_H_
#define KHOSIM_DRIVERS_VFIO_H_

#define VFIO_PCI_DRIVER_NAME "vfio-pci"

// Registers the container node, the handler (when the kernel has
// CONFIG_VFIO_PCI_LIVEUPDATE; LUO being off is not an error) and the PCI
// driver. 0 or the first error.
int vfio_pci_init(void);
void vfio_pci_exit(void);

struct pci_dev;
// What sysfs's /sys/bus/pci/devices/<bdf>/vfio-dev/vfioN tells a VMM: the
// N of |pdev|'s cdev and group in the running kernel, or -ENODEV when
// vfio-pci does not drive it.
int vfio_pci_device_index(struct pci_dev* pdev);

#endif  // KHOSIM_DRIVERS_VFIO_H_

// "pci-passthrough": a minimal PCI driver with a LUO file handler
// ("pci-passthrough-v1"), so that PCI preservation can be exercised end to
// end before VFIO exists. It is what a VFIO-like driver does, reduced to
// the live update contract:
//   - it binds only devices whose driver_override names it (the user's
//     choice, as for vfio-pci) and publishes /dev/pci-passthrough/<bdf>;
//     one opener at a time (-EBUSY);
//   - PCI_PASSTHROUGH_SET_MASTER (arg 0 or 1) sets or clears bus
//     mastering, the VMM's "start the device";
//   - preserving the file preserves the device (pci_liveupdate_preserve,
//     its errnos), its record is {domain, bdf};
//   - in the next kernel the device is probed again, but its node refuses
//     open (-EBUSY) until the file is retrieved from LUO; retrieve finds
//     the device by domain and BDF (-ENODEV if it is gone or bound to
//     another driver); finish calls pci_liveupdate_finish and needs the
//     file retrieved first (can_finish).
// A kernel built with module "pci-passthrough" (off by default) registers
// driver and handler from a device initcall.
#ifndef KHOSIM_HANDLERS_PCI_PASSTHROUGH_H_
#define KHOSIM_HANDLERS_PCI_PASSTHROUGH_H_

#define PCI_PASSTHROUGH_DRIVER_NAME "pci-passthrough"
// ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 0 or 1): 0, or -EINVAL.
#define PCI_PASSTHROUGH_SET_MASTER 0x5001

// Registers the driver, the file handler and links the PCI FLB to it. 0,
// or the first registration error (LUO being disabled is not one).
int pci_passthrough_init(void);
void pci_passthrough_exit(void);

#endif  // KHOSIM_HANDLERS_PCI_PASSTHROUGH_H_

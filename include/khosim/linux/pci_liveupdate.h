// Kernel-face PCI live update API (<linux/pci_liveupdate.h>, "PCI:
// liveupdate" v9): how a driver's LUO file handler keeps its device, and
// the bridges above it, alive and at the same address across a kexec.
// The PCI core's FLB "pci" carries the preserved devices
// (khosim/linux/kho/abi/pci.h).
//
// Outgoing kernel:
//   pci_liveupdate_register_flb(fh)  links the FLB to a registered file
//       handler: 0, or liveupdate_register_flb's errno (-EOPNOTSUPP
//       without LUO, which callers treat as success).
//   pci_liveupdate_preserve(dev)  from the handler's preserve(): records
//       |dev| and every bridge above it (a bridge's refcount counts the
//       preserved endpoints below it; new entries reuse a free slot before
//       the block set grows). 0, or:
//         -ENOENT  no outgoing FLB (the handler was not linked, or no file
//                  of a linked handler is being preserved);
//         -EINVAL  a VF; a frozen device (after pci_device_shutdown,
//                  WARNs); an entry with refcount 0 (WARNs);
//         -EBUSY   the endpoint is already preserved;
//         the block set's errno (-ENOMEM, -ENOSPC).
//       A failure part-way up the path undoes what it did.
//   pci_liveupdate_unpreserve(dev)  the reverse, from unpreserve(); a
//       device that is frozen or not preserved is logged and left alone.
//   At kexec, pci_device_shutdown freezes every device and leaves bus
//   mastering on for preserved ones, so their DMA goes on.
// Incoming kernel:
//   enumeration marks each device the previous kernel preserved incoming
//   (pci_liveupdate_is_incoming) and keeps every bridge's bus numbers;
//   pci_liveupdate_finish(dev)  from the handler's finish(): drops |dev|'s
//       and its bridges' incoming references; each reaching 0 stops being
//       incoming. The FLB's finish panics if any device was never finished.
// Locking: one rwsem in the core; none of these may be called with it held.
#ifndef KHOSIM_LINUX_PCI_LIVEUPDATE_H_
#define KHOSIM_LINUX_PCI_LIVEUPDATE_H_

#include "khosim/linux/liveupdate.h"
#include "khosim/linux/pci.h"

int pci_liveupdate_register_flb(struct liveupdate_file_handler* fh);
void pci_liveupdate_unregister_flb(struct liveupdate_file_handler* fh);
int pci_liveupdate_preserve(struct pci_dev* dev);
void pci_liveupdate_unpreserve(struct pci_dev* dev);
void pci_liveupdate_finish(struct pci_dev* dev);
bool pci_liveupdate_is_incoming(struct pci_dev* dev);

#endif  // KHOSIM_LINUX_PCI_LIVEUPDATE_H_

// The PCI core's handover record (<linux/kho/abi/pci.h>, "PCI: liveupdate"
// v9): the data handle of the FLB "pci" points at one struct pci_ser, and
// that at a KHO block set of struct pci_dev_ser, one per preserved device
// (endpoints and every bridge above them).
//
//   FLB "pci" data -> struct pci_ser (kho_alloc_preserve, 16 bytes)
//                       devices -> first block of a kho_block_set with
//                                  8-byte entries: (PAGE_SIZE - 16) / 8 per
//                                  block (510 on 4 KiB pages)
//
// An entry's refcount is the number of preserved endpoints at or below the
// device (1 for an endpoint); a slot whose refcount is 0 is free and is
// reused before the set grows. nr_devices counts the live entries, bridges
// included. bdf is (bus << 8) | devfn.
#ifndef KHOSIM_LINUX_KHO_ABI_PCI_H_
#define KHOSIM_LINUX_KHO_ABI_PCI_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

#define PCI_LUO_FLB_COMPATIBLE "pci"
#define PCI_LUO_FLB_VERSION 1

struct pci_dev_ser {
  u32 domain;
  u16 bdf;
  u16 refcount;
} __packed;

struct pci_ser {
  u32 version;
  u32 nr_devices;
  u64 devices;  // physical address of the first block; 0: none
} __packed;

static_assert(sizeof(struct pci_dev_ser) == 8);
static_assert(offsetof(struct pci_dev_ser, bdf) == 4);
static_assert(offsetof(struct pci_dev_ser, refcount) == 6);
static_assert(sizeof(struct pci_ser) == 16);
static_assert(offsetof(struct pci_ser, nr_devices) == 4);
static_assert(offsetof(struct pci_ser, devices) == 8);

#endif  // KHOSIM_LINUX_KHO_ABI_PCI_H_

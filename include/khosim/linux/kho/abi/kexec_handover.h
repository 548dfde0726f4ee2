// KHO wire formats a client embeds in its own records
// (<linux/kho/abi/kexec_handover.h>): the vmalloc preservation descriptor.
// The rest of KHO's ABI (root FDT, scratch table, trackers) is KHO's own
// business: khosim/abi/kexec_handover.h.
#ifndef KHOSIM_LINUX_KHO_ABI_KEXEC_HANDOVER_H_
#define KHOSIM_LINUX_KHO_ABI_KEXEC_HANDOVER_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

// kho_vmalloc.flags
#define KHO_VMALLOC_ALLOC 0x0001      // VM_ALLOC
#define KHO_VMALLOC_HUGE_VMAP 0x0002  // VM_ALLOW_HUGE_VMAP

// A preserved vmalloc area, embedded in its owner's record. `first` is the
// physical address of the first chunk page: a u64 `next` (the next chunk,
// 0 = last) followed by (PAGE_SIZE - 8) / 8 physical addresses of the
// area's blocks, zero terminated when not full. An all-zero descriptor is
// an empty area.
struct kho_vmalloc {
  u64 first;
  unsigned int total_pages;  // PAGE_SIZE pages in the area
  unsigned short flags;      // KHO_VMALLOC_*
  unsigned short order;      // page order of each contiguous block
} __packed;
static_assert(sizeof(struct kho_vmalloc) == 16);
static_assert(offsetof(struct kho_vmalloc, first) == 0);
static_assert(offsetof(struct kho_vmalloc, total_pages) == 8);
static_assert(offsetof(struct kho_vmalloc, flags) == 12);
static_assert(offsetof(struct kho_vmalloc, order) == 14);

#endif  // KHOSIM_LINUX_KHO_ABI_KEXEC_HANDOVER_H_

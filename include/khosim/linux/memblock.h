// Kernel-face memblock API over the running kernel's Memblock. Allocation
// functions return zeroed memory (the _raw variants do not) and NULL / 0 on
// failure; *_or_panic variants panic.
#ifndef KHOSIM_LINUX_MEMBLOCK_H_
#define KHOSIM_LINUX_MEMBLOCK_H_

#include "khosim/linux/types.h"

#define MEMBLOCK_NONE 0x0u
#define MEMBLOCK_HOTPLUG 0x1u
#define MEMBLOCK_MIRROR 0x2u
#define MEMBLOCK_NOMAP 0x4u
#define MEMBLOCK_DRIVER_MANAGED 0x8u
#define MEMBLOCK_RSRV_NOINIT 0x10u
#define MEMBLOCK_RSRV_KERN 0x20u
#define MEMBLOCK_KHO_SCRATCH 0x40u
#define MEMBLOCK_RSRV_HUGETLB 0x80u

#define MEMBLOCK_LOW_LIMIT 0
#define MEMBLOCK_ALLOC_ANYWHERE (~(phys_addr_t)0)
#define MEMBLOCK_ALLOC_ACCESSIBLE 0

int memblock_add(phys_addr_t base, phys_addr_t size);
int memblock_add_node(phys_addr_t base, phys_addr_t size, int nid, unsigned int flags);
int memblock_remove(phys_addr_t base, phys_addr_t size);
int memblock_reserve(phys_addr_t base, phys_addr_t size);
int memblock_phys_free(phys_addr_t base, phys_addr_t size);
int memblock_mark_kho_scratch(phys_addr_t base, phys_addr_t size);
int memblock_clear_kho_scratch(phys_addr_t base, phys_addr_t size);
void memblock_set_kho_scratch_only(void);
void memblock_clear_kho_scratch_only(void);
void memblock_reserved_mark_noinit(phys_addr_t base, phys_addr_t size);
phys_addr_t memblock_reserved_kern_size(phys_addr_t limit, int nid);
phys_addr_t memblock_reserved_hugetlb_size(void);
bool memblock_is_region_reserved(phys_addr_t base, phys_addr_t size);
bool memblock_is_region_memory(phys_addr_t base, phys_addr_t size);

phys_addr_t memblock_phys_alloc(phys_addr_t size, phys_addr_t align);
phys_addr_t memblock_phys_alloc_range(phys_addr_t size, phys_addr_t align, phys_addr_t start,
                                      phys_addr_t end);
phys_addr_t memblock_phys_alloc_try_nid(phys_addr_t size, phys_addr_t align, int nid);
void* memblock_alloc(phys_addr_t size, phys_addr_t align);
void* memblock_alloc_raw(phys_addr_t size, phys_addr_t align);
void* memblock_alloc_or_panic(phys_addr_t size, phys_addr_t align);
void* memblock_alloc_try_nid(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr,
                             phys_addr_t max_addr, int nid);
void* memblock_alloc_exact_nid_raw(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr,
                                   phys_addr_t max_addr, int nid);
void* memblock_alloc_node(phys_addr_t size, phys_addr_t align, int nid);
phys_addr_t memblock_alloc_hugetlb(phys_addr_t size, int nid);

#endif  // KHOSIM_LINUX_MEMBLOCK_H_

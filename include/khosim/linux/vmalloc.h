// Kernel-face vmalloc API over the running kernel's Vmalloc.
#ifndef KHOSIM_LINUX_VMALLOC_H_
#define KHOSIM_LINUX_VMALLOC_H_

#include "khosim/linux/mm.h"
#include "khosim/mm/vmalloc.h"

void* vmalloc(unsigned long size);
void* vzalloc(unsigned long size);
void* vmalloc_huge(unsigned long size, gfp_t gfp);
void* __vmalloc(unsigned long size, gfp_t gfp);
void vfree(const void* addr);
// A zeroed area of n * size bytes; NULL when that overflows.
void* vcalloc(size_t n, size_t size);
void* vmap(struct page** pages, unsigned int count, unsigned long flags, int prot);
void vunmap(const void* addr);
bool is_vmalloc_addr(const void* addr);
struct page* vmalloc_to_page(const void* addr);
struct vm_struct* find_vm_area(const void* addr);
// vmap of 2^page_shift-byte contiguous blocks (the internal form KHO's
// restore uses): count is in PAGE_SIZE pages.
void* khosim_vmap_blocks(struct page** pages, unsigned int count, unsigned int page_shift,
                         unsigned long vm_flags);

#define PAGE_KERNEL 0

#endif  // KHOSIM_LINUX_VMALLOC_H_

// Kernel-face vmalloc API over the running kernel's Vmalloc.
#ifndef KHOSIM_LINUX_VMALLOC_H_
#define KHOSIM_LINUX_VMALLOC_H_

#include "khosim/linux/mm.h"

// vm_struct flags (kernel values).
#define VM_IOREMAP 0x00000001u
#define VM_ALLOC 0x00000002u
#define VM_MAP 0x00000004u
#define VM_USERMAP 0x00000008u
#define VM_DMA_COHERENT 0x00000010u
#define VM_UNINITIALIZED 0x00000020u
#define VM_NO_GUARD 0x00000040u
#define VM_KASAN 0x00000080u
#define VM_FLUSH_RESET_PERMS 0x00000100u
#define VM_MAP_PUT_PAGES 0x00000200u
#define VM_ALLOW_HUGE_VMAP 0x00000400u

// The kernel's struct vm_struct, reduced to what callers read.
struct vm_struct {
  void* addr;
  unsigned long size;  // without the guard page
  unsigned long flags;
  struct page** pages;
  unsigned int nr_pages;  // in PAGE_SIZE units
  unsigned int page_order;
};

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

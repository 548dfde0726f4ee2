// Kernel-face small allocations (<linux/slab.h>, kvmalloc from <linux/mm.h>).
// They come from the running kernel's slab heap (mm::Mm::SlabAlloc): host
// memory that is not part of the physical memory model, so nothing
// allocated here can be preserved (use kho_alloc_preserve or the page
// allocator for that), and whatever is left at a kexec goes with the old
// kernel. kfree of memory another kernel allocated WARNs.
// Every allocation checks the fault point "kmalloc" and returns NULL when
// it fires. __GFP_ZERO zeroes; other gfp bits are accepted and ignored.
#ifndef KHOSIM_LINUX_SLAB_H_
#define KHOSIM_LINUX_SLAB_H_

#include <cstddef>

#include "khosim/linux/gfp.h"

void* kmalloc(size_t size, gfp_t gfp);
void* kzalloc(size_t size, gfp_t gfp);
// NULL when n * size overflows.
void* kcalloc(size_t n, size_t size, gfp_t gfp);
void* kmalloc_array(size_t n, size_t size, gfp_t gfp);
void kfree(const void* p);

void* kvmalloc(size_t size, gfp_t gfp);
void* kvmalloc_array(size_t n, size_t size, gfp_t gfp);
void* kvcalloc(size_t n, size_t size, gfp_t gfp);
void kvfree(const void* p);

#endif  // KHOSIM_LINUX_SLAB_H_

// Kernel-face KHO API (include/linux/kexec_handover.h upstream) over the
// running kernel's Kho. Return conventions are upstream's: 0 / -errno,
// ERR_PTR, or NULL with a WARN for a failed restore.
#ifndef KHOSIM_LINUX_KEXEC_HANDOVER_H_
#define KHOSIM_LINUX_KEXEC_HANDOVER_H_

#include "khosim/linux/kho/abi/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/types.h"

bool kho_is_enabled(void);
bool is_kho_boot(void);

int kho_preserve_folio(struct folio* folio);
void kho_unpreserve_folio(struct folio* folio);
int kho_preserve_pages(struct page* page, unsigned long nr_pages);
void kho_unpreserve_pages(struct page* page, unsigned long nr_pages);
int kho_preserve_vmalloc(void* ptr, struct kho_vmalloc* preservation);
void kho_unpreserve_vmalloc(struct kho_vmalloc* preservation);
void* kho_restore_vmalloc(const struct kho_vmalloc* preservation);

void* kho_alloc_preserve(size_t size);
void kho_unpreserve_free(void* mem);
void kho_restore_free(void* mem);

struct folio* kho_restore_folio(phys_addr_t phys);
struct page* kho_restore_pages(phys_addr_t phys, unsigned long nr_pages);

int kho_add_subtree(const char* name, void* blob, size_t size);
void kho_remove_subtree(void* blob);
int kho_retrieve_subtree(const char* name, phys_addr_t* phys, size_t* size);

bool kho_is_preserved(phys_addr_t phys, unsigned long nr_pages);
bool kho_scratch_overlap(phys_addr_t phys, size_t size);

#endif  // KHOSIM_LINUX_KEXEC_HANDOVER_H_

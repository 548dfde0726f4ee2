// The kernel face of lib/kho: upstream names over Kho::Current().
#include "khosim/kho/kho.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho_block.h"

using khosim::PhysAddr;
using khosim::kho::Kho;

bool kho_is_enabled(void) { return Kho::Current().enabled(); }
bool is_kho_boot(void) { return Kho::Current().is_kho_boot(); }

int kho_preserve_folio(struct folio* folio) { return Kho::Current().PreserveFolio(folio); }
void kho_unpreserve_folio(struct folio* folio) { Kho::Current().UnpreserveFolio(folio); }

int kho_preserve_pages(struct page* page, unsigned long nr_pages) {
  return Kho::Current().PreservePages(page, nr_pages);
}

void kho_unpreserve_pages(struct page* page, unsigned long nr_pages) {
  Kho::Current().UnpreservePages(page, nr_pages);
}

int kho_preserve_vmalloc(void* ptr, struct kho_vmalloc* preservation) {
  return Kho::Current().PreserveVmalloc(ptr, preservation);
}

void kho_unpreserve_vmalloc(struct kho_vmalloc* preservation) {
  Kho::Current().UnpreserveVmalloc(preservation);
}

void* kho_restore_vmalloc(const struct kho_vmalloc* preservation) {
  return Kho::Current().RestoreVmalloc(preservation);
}

void* kho_alloc_preserve(size_t size) { return Kho::Current().AllocPreserve(size); }
void kho_unpreserve_free(void* mem) { Kho::Current().UnpreserveFree(mem); }
void kho_restore_free(void* mem) { Kho::Current().RestoreFree(mem); }

struct folio* kho_restore_folio(phys_addr_t phys) {
  return Kho::Current().RestoreFolio(PhysAddr(phys));
}

struct page* kho_restore_pages(phys_addr_t phys, unsigned long nr_pages) {
  return Kho::Current().RestorePages(PhysAddr(phys), nr_pages);
}

int kho_add_subtree(const char* name, void* blob, size_t size) {
  return Kho::Current().AddSubtree(name, blob, size);
}

void kho_remove_subtree(void* blob) { Kho::Current().RemoveSubtree(blob); }

int kho_retrieve_subtree(const char* name, phys_addr_t* phys, size_t* size) {
  uint64_t p = 0;
  uint64_t s = 0;
  const int err = Kho::Current().RetrieveSubtree(name, phys == nullptr ? nullptr : &p, &s);
  // Upstream writes *phys before it checks blob-size; keep that visible.
  if (phys != nullptr && (err == 0 || p != 0)) *phys = p;
  if (err == 0 && size != nullptr) *size = s;
  return err;
}

bool kho_is_preserved(phys_addr_t phys, unsigned long nr_pages) {
  return Kho::Current().IsPreserved(PhysAddr(phys), nr_pages);
}

bool kho_scratch_overlap(phys_addr_t phys, size_t size) {
  return Kho::Current().ScratchOverlap(PhysAddr(phys), size);
}

// kho_block

void kho_block_set_init(struct kho_block_set* bs, size_t entry_size) { bs->Init(entry_size); }
int kho_block_set_grow(struct kho_block_set* bs, u64 count) { return bs->Grow(count); }
void kho_block_set_shrink(struct kho_block_set* bs, u64 count) { bs->Shrink(count); }
int kho_block_set_restore(struct kho_block_set* bs, u64 head_pa) { return bs->Restore(head_pa); }
void kho_block_set_destroy(struct kho_block_set* bs) { bs->Destroy(); }
void kho_block_set_clear(struct kho_block_set* bs) { bs->Clear(); }
u64 kho_block_set_head_pa(struct kho_block_set* bs) { return bs->head_pa(); }
bool kho_block_set_is_empty(struct kho_block_set* bs) { return bs->empty(); }

void kho_block_set_it_init(struct kho_block_set_it* it, struct kho_block_set* bs) {
  it->it = khosim::kho::BlockSet::Iterator(*bs);
}

void* kho_block_set_it_reserve_entry(struct kho_block_set_it* it) { return it->it.ReserveEntry(); }
void* kho_block_set_it_read_entry(struct kho_block_set_it* it) { return it->it.ReadEntry(); }
void* kho_block_set_it_prev(struct kho_block_set_it* it) { return it->it.Prev(); }

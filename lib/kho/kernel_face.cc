// The kernel face of lib/kho: upstream names over Kho::Current().
#include <cstring>
#include <type_traits>

#include "khosim/kho/kho.h"
#include "khosim/kho/kho_xarray.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho_xarray.h"

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

// ---- KHO xarray (linux/kho_xarray.h) ---------------------------------------
using khosim::kho::KhoXarray;
static_assert(std::is_standard_layout_v<KhoXarray> &&
                  sizeof(KhoXarray) == sizeof(struct kho_xarray),
              "a KhoXarray is exactly its struct kho_xarray");

int kho_xa_init(struct kho_xarray* xa, unsigned int key_bits, struct kho_xa_desc* desc) {
  return KhoXarray::From(xa).Init(key_bits, desc);
}

void kho_xa_destroy(struct kho_xarray* xa) { KhoXarray::From(xa).Destroy(); }

int kho_xa_store(struct kho_xarray* xa, u64 index, u64 entry) {
  return KhoXarray::From(xa).Store(index, entry);
}

int kho_xa_erase(struct kho_xarray* xa, u64 index) { return KhoXarray::From(xa).Erase(index); }

u64 kho_xa_load(struct kho_xarray* xa, u64 index) {
  uint64_t entry = 0;
  return KhoXarray::From(xa).Load(index, &entry) ? entry : 0;
}

u64 kho_xa_find(struct kho_xarray* xa, u64* index) {
  uint64_t i = *index;
  uint64_t entry = 0;
  if (!KhoXarray::From(xa).Find(&i, &entry)) return 0;
  *index = i;
  return entry;
}

u64 kho_xa_find_after(struct kho_xarray* xa, u64* index) {
  uint64_t i = *index;
  uint64_t entry = 0;
  if (!KhoXarray::From(xa).FindAfter(&i, &entry)) return 0;
  *index = i;
  return entry;
}

u64 kho_xa_count(struct kho_xarray* xa) { return KhoXarray::From(xa).Count(); }

void kho_xa_get_desc(struct kho_xarray* xa, struct kho_xa_desc* desc) {
  const khosim::abi::KhoXarrayDesc d = KhoXarray::From(xa).descriptor();
  std::memcpy(static_cast<void*>(desc), &d, sizeof(d));
}

int kho_xa_restore(struct kho_xarray* xa, const struct kho_xa_desc* desc) {
  if (desc == nullptr) return -EINVAL;
  return KhoXarray::From(xa).Restore(*desc);
}

int kho_xa_adopt(struct kho_xarray* xa, struct kho_xa_desc* desc) {
  return KhoXarray::From(xa).Adopt(desc);
}

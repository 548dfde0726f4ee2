// The kernel face of lib/mm: upstream names over Mm::Current().
//
// Refcount rules follow the kernel: an allocation returns its head with one
// reference; put_page()/folio_put() free the whole block (of the head's
// compound order) when the last reference goes. Tail pages forward to their
// head.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "khosim/base/kernel_context.h"
#include "khosim/linux/atomic.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/hugetlb_pool.h"
#include "khosim/linux/memblock.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/vmalloc.h"
#include "khosim/mm/mm.h"

using khosim::Pfn;
using khosim::PhysAddr;
using khosim::mm::Mm;

namespace {

Mm& CurrentMm() { return Mm::Current(); }

unsigned HeadOrder(const struct page* head) {
  return (head->flags & (1ul << PG_head)) ? head->compound_order : 0;
}

}  // namespace

unsigned long khosim_page_size() { return CurrentMm().geometry().page_size(); }
unsigned int khosim_page_shift() { return CurrentMm().geometry().page_shift; }
unsigned int khosim_max_page_order() { return CurrentMm().geometry().max_page_order; }
unsigned int khosim_pageblock_order() { return CurrentMm().geometry().pageblock_order; }

struct page* alloc_pages(gfp_t gfp, unsigned int order) {
  return CurrentMm().pages().Alloc(gfp, order);
}

struct page* alloc_pages_node(int nid, gfp_t gfp, unsigned int order) {
  return CurrentMm().pages().Alloc(gfp, order, nid);
}

struct page* alloc_page(gfp_t gfp) {
  return alloc_pages(gfp, 0);
}

void __free_pages(struct page* page, unsigned int order) {
  if (page == nullptr) return;
  if (atomic_fetch_sub(1, &page->_refcount) == 1) {
    CurrentMm().pages().Free(page, order);
  } else if (order > 0 && !PageHead(page)) {
    // A non-compound high-order block still referenced: the upper halves
    // are freed now, the first page at its last put.
    while (order-- > 0) CurrentMm().pages().Free(page + (1u << order), order);
  }
}

void __free_page(struct page* page) { __free_pages(page, 0); }

unsigned long __get_free_pages(gfp_t gfp, unsigned int order) {
  struct page* page = alloc_pages(gfp, order);
  return page == nullptr ? 0 : reinterpret_cast<unsigned long>(page_address(page));
}

unsigned long get_zeroed_page(gfp_t gfp) { return __get_free_pages(gfp | __GFP_ZERO, 0); }

void free_pages(unsigned long addr, unsigned int order) {
  if (addr == 0) return;
  __free_pages(virt_to_page(reinterpret_cast<void*>(addr)), order);
}

void free_page(unsigned long addr) { free_pages(addr, 0); }

void split_page(struct page* page, unsigned int order) {
  for (unsigned i = 1; i < (1u << order); ++i) atomic_set(&page[i]._refcount, 1);
}

unsigned int get_order(unsigned long size) { return CurrentMm().geometry().GetOrder(size); }

struct folio* folio_alloc(gfp_t gfp, unsigned int order) {
  return reinterpret_cast<struct folio*>(alloc_pages(gfp | __GFP_COMP, order));
}

struct folio* folio_alloc_node(gfp_t gfp, unsigned int order, int nid) {
  return reinterpret_cast<struct folio*>(alloc_pages_node(nid, gfp | __GFP_COMP, order));
}

void folio_get(struct folio* folio) { atomic_fetch_add(1, &folio->page._refcount); }

void folio_put(struct folio* folio) {
  struct page* head = &folio->page;
  const int old = atomic_fetch_sub(1, &head->_refcount);
  if (old <= 0) {
    atomic_fetch_add(1, &head->_refcount);
    khosim::RequireKernelContext().Warn(KHOSIM_SITE, "folio_put on a folio with no reference");
    return;
  }
  if (old != 1) return;
  // A hugetlb folio's destructor puts it back in its pool.
  if ((head->flags & (1ul << PG_hugetlb)) != 0) {
    CurrentMm().hugetlb().FreeFolio(folio);
    return;
  }
  CurrentMm().pages().Free(head, HeadOrder(head));
}

unsigned int folio_order(const struct folio* folio) { return HeadOrder(&folio->page); }
unsigned long folio_nr_pages(const struct folio* folio) { return 1ul << folio_order(folio); }
size_t folio_size(const struct folio* folio) { return folio_nr_pages(folio) * PAGE_SIZE; }
unsigned long folio_pfn(const struct folio* folio) { return page_to_pfn(&folio->page); }
void* folio_address(const struct folio* folio) { return page_address(&folio->page); }
int folio_ref_count(const struct folio* folio) { return atomic_read(&folio->page._refcount); }
int folio_nid(const struct folio* folio) { return page_to_nid(&folio->page); }
phys_addr_t folio_phys(const struct folio* folio) { return page_to_phys(&folio->page); }

struct page* folio_page(struct folio* folio, unsigned long n) {
  return &folio->page + n;
}

struct folio* page_folio(const struct page* page) {
  return reinterpret_cast<struct folio*>(compound_head(page));
}

struct folio* pfn_folio(unsigned long pfn) {
  return page_folio(pfn_to_page(pfn));
}

struct page* compound_head(const struct page* page) {
  if (page->compound_head & 1) {
    return reinterpret_cast<struct page*>(page->compound_head & ~1ul);
  }
  return const_cast<struct page*>(page);
}

bool PageHead(const struct page* page) { return (page->flags & (1ul << PG_head)) != 0; }
bool PageTail(const struct page* page) { return (page->compound_head & 1) != 0; }
bool PageCompound(const struct page* page) { return PageHead(page) || PageTail(page); }
unsigned int compound_order(const struct page* page) { return HeadOrder(page); }

void get_page(struct page* page) { atomic_fetch_add(1, &compound_head(page)->_refcount); }

void put_page(struct page* page) {
  struct page* head = compound_head(page);
  folio_put(reinterpret_cast<struct folio*>(head));
}

int page_ref_count(const struct page* page) { return atomic_read(&page->_refcount); }
void set_page_count(struct page* page, int v) { atomic_set(&page->_refcount, v); }
void init_page_count(struct page* page) { atomic_set(&page->_refcount, 1); }
unsigned long page_private(const struct page* page) { return page->private_data; }
void set_page_private(struct page* page, unsigned long private_data) {
  page->private_data = private_data;
}

int page_to_nid(const struct page* page) {
  return CurrentMm().memory().layout().NodeOf(PhysAddr(page_to_phys(page)));
}

bool pfn_valid(unsigned long pfn) {
  Mm& mm = CurrentMm();
  return mm.memory().IsRam(mm.geometry().PfnToPhys(Pfn(pfn)), mm.geometry().page_size());
}

struct page* nth_page(struct page* page, unsigned long n) {
  return page + n;
}

unsigned long page_to_pfn(const struct page* page) {
  return CurrentMm().memmap().PageToPfn(page).value();
}

struct page* pfn_to_page(unsigned long pfn) {
  return CurrentMm().memmap().PfnToPage(Pfn(pfn));
}

phys_addr_t page_to_phys(const struct page* page) { return CurrentMm().PageToPhys(page).value(); }

struct page* phys_to_page(phys_addr_t pa) {
  return CurrentMm().PhysToPage(PhysAddr(pa));
}

void* page_address(const struct page* page) { return CurrentMm().PageAddress(page); }

struct page* virt_to_page(const void* va) {
  return CurrentMm().VirtToPage(va);
}

struct folio* virt_to_folio(const void* va) {
  return page_folio(virt_to_page(va));
}

phys_addr_t virt_to_phys(const void* va) { return CurrentMm().memory().Phys(va).value(); }

void* phys_to_virt(phys_addr_t pa) { return CurrentMm().memory().Virt(PhysAddr(pa)); }
void* __va(phys_addr_t pa) { return phys_to_virt(pa); }
phys_addr_t __pa(const void* va) { return virt_to_phys(va); }

void adjust_managed_page_count(struct page* page, long count) {
  CurrentMm().pages().AdjustManagedPages(count);
}

// memblock

namespace {

khosim::mm::Memblock& CurrentMemblock() { return CurrentMm().memblock(); }

void* PhysOrNull(PhysAddr pa) { return pa.IsNull() ? nullptr : CurrentMm().memory().Virt(pa); }

PhysAddr AllocChecked(const khosim::mm::MemblockAllocRequest& request, bool zero) {
  Mm& mm = CurrentMm();
  if (mm.buddy_ready()) {
    khosim::RequireKernelContext().Warn(KHOSIM_SITE, "memblock allocation after memblock_free_all");
    return PhysAddr();
  }
  PhysAddr pa = mm.memblock().Alloc(request);
  if (!pa.IsNull() && zero) mm.ZeroPhys(pa, request.size);
  return pa;
}

// The kernel's (min_addr, max_addr) pair, where MEMBLOCK_ALLOC_ANYWHERE and
// MEMBLOCK_ALLOC_ACCESSIBLE both mean "no upper limit".
khosim::mm::MemblockAllocRequest RangeRequest(phys_addr_t size, phys_addr_t align,
                                              phys_addr_t min_addr, phys_addr_t max_addr, int nid,
                                              bool exact_nid) {
  return {.size = size,
          .align = align,
          .min_addr = PhysAddr(min_addr),
          .max_addr = PhysAddr(max_addr == MEMBLOCK_ALLOC_ANYWHERE ? 0 : max_addr),
          .nid = nid,
          .exact_nid = exact_nid};
}

}  // namespace

int memblock_add(phys_addr_t base, phys_addr_t size) {
  CurrentMemblock().Add(PhysAddr(base), size, CurrentMm().memory().layout().NodeOf(PhysAddr(base)));
  return 0;
}

int memblock_add_node(phys_addr_t base, phys_addr_t size, int nid, unsigned int flags) {
  CurrentMemblock().Add(PhysAddr(base), size, nid, flags);
  return 0;
}

int memblock_remove(phys_addr_t base, phys_addr_t size) {
  CurrentMemblock().Remove(PhysAddr(base), size);
  return 0;
}

int memblock_reserve(phys_addr_t base, phys_addr_t size) {
  CurrentMemblock().Reserve(PhysAddr(base), size);
  return 0;
}

int memblock_phys_free(phys_addr_t base, phys_addr_t size) {
  CurrentMemblock().Free(PhysAddr(base), size);
  return 0;
}

int memblock_mark_kho_scratch(phys_addr_t base, phys_addr_t size) {
  CurrentMemblock().MarkMemoryFlags(PhysAddr(base), size, MEMBLOCK_KHO_SCRATCH);
  return 0;
}

int memblock_clear_kho_scratch(phys_addr_t base, phys_addr_t size) {
  CurrentMemblock().ClearMemoryFlags(PhysAddr(base), size, MEMBLOCK_KHO_SCRATCH);
  return 0;
}

void memblock_set_kho_scratch_only(void) { CurrentMemblock().SetScratchOnly(true); }
void memblock_clear_kho_scratch_only(void) { CurrentMemblock().SetScratchOnly(false); }

void memblock_reserved_mark_noinit(phys_addr_t base, phys_addr_t size) {
  CurrentMemblock().MarkReservedFlags(PhysAddr(base), size, MEMBLOCK_RSRV_NOINIT);
}

phys_addr_t memblock_reserved_kern_size(phys_addr_t limit, int nid) {
  return CurrentMemblock().ReservedKernSize(PhysAddr(limit), nid);
}

phys_addr_t memblock_reserved_hugetlb_size(void) { return CurrentMemblock().ReservedHugetlbSize(); }

bool memblock_is_region_reserved(phys_addr_t base, phys_addr_t size) {
  return CurrentMemblock().IsReserved(PhysAddr(base), size);
}

bool memblock_is_region_memory(phys_addr_t base, phys_addr_t size) {
  return CurrentMemblock().IsMemory(PhysAddr(base), size);
}

phys_addr_t memblock_phys_alloc(phys_addr_t size, phys_addr_t align) {
  return AllocChecked({.size = size, .align = align}, false).value();
}

phys_addr_t memblock_phys_alloc_range(phys_addr_t size, phys_addr_t align, phys_addr_t start,
                                      phys_addr_t end) {
  return AllocChecked(RangeRequest(size, align, start, end, NUMA_NO_NODE, false), false).value();
}

phys_addr_t memblock_phys_alloc_try_nid(phys_addr_t size, phys_addr_t align, int nid) {
  return AllocChecked({.size = size, .align = align, .nid = nid}, false).value();
}

void* memblock_alloc(phys_addr_t size, phys_addr_t align) {
  return PhysOrNull(AllocChecked({.size = size, .align = align}, true));
}

void* memblock_alloc_raw(phys_addr_t size, phys_addr_t align) {
  return PhysOrNull(AllocChecked({.size = size, .align = align}, false));
}

void* memblock_alloc_or_panic(phys_addr_t size, phys_addr_t align) {
  return CurrentMm().memory().Virt(CurrentMm().EarlyAllocOrPanic(size, align));
}

void* memblock_alloc_try_nid(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr,
                             phys_addr_t max_addr, int nid) {
  return PhysOrNull(AllocChecked(RangeRequest(size, align, min_addr, max_addr, nid, false), true));
}

void* memblock_alloc_exact_nid_raw(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr,
                                   phys_addr_t max_addr, int nid) {
  return PhysOrNull(AllocChecked(RangeRequest(size, align, min_addr, max_addr, nid, true), false));
}

void* memblock_alloc_node(phys_addr_t size, phys_addr_t align, int nid) {
  return memblock_alloc_try_nid(size, align, 0, MEMBLOCK_ALLOC_ACCESSIBLE, nid);
}

phys_addr_t memblock_alloc_hugetlb(phys_addr_t size, int nid) {
  return AllocChecked({.size = size, .align = size, .nid = nid, .hugetlb = true}, false).value();
}

// vmalloc

void* vmalloc(unsigned long size) { return CurrentMm().vmalloc().Alloc(size, GFP_KERNEL); }
void* vzalloc(unsigned long size) {
  return CurrentMm().vmalloc().Alloc(size, GFP_KERNEL | __GFP_ZERO);
}
void* vmalloc_huge(unsigned long size, gfp_t gfp) {
  return CurrentMm().vmalloc().Alloc(size, gfp, VM_ALLOC | VM_ALLOW_HUGE_VMAP);
}
void* __vmalloc(unsigned long size, gfp_t gfp) { return CurrentMm().vmalloc().Alloc(size, gfp); }
void vfree(const void* addr) { CurrentMm().vmalloc().Free(addr); }

void* vcalloc(size_t n, size_t size) {
  size_t bytes = 0;
  if (__builtin_mul_overflow(n, size, &bytes)) return nullptr;
  return vzalloc(bytes);
}

// ---- slab (host heap) ---------------------------------------------------------

void* kmalloc(size_t size, gfp_t gfp) {
  if (khosim::RequireKernelContext().ShouldFail("kmalloc")) return nullptr;
  return CurrentMm().SlabAlloc(size, (gfp & __GFP_ZERO) != 0);
}
void* kzalloc(size_t size, gfp_t gfp) { return kmalloc(size, gfp | __GFP_ZERO); }
void* kmalloc_array(size_t n, size_t size, gfp_t gfp) {
  size_t bytes = 0;
  if (__builtin_mul_overflow(n, size, &bytes)) return nullptr;
  return kmalloc(bytes, gfp);
}
void* kcalloc(size_t n, size_t size, gfp_t gfp) { return kmalloc_array(n, size, gfp | __GFP_ZERO); }
void kfree(const void* p) { CurrentMm().SlabFree(p); }
void* kvmalloc(size_t size, gfp_t gfp) { return kmalloc(size, gfp); }
void* kvmalloc_array(size_t n, size_t size, gfp_t gfp) { return kmalloc_array(n, size, gfp); }
void* kvcalloc(size_t n, size_t size, gfp_t gfp) { return kcalloc(n, size, gfp); }
void kvfree(const void* p) { kfree(p); }

void* vmap(struct page** pages, unsigned int count, unsigned long flags, int prot) {
  return CurrentMm().vmalloc().Map(pages, count, 0, flags | VM_MAP);
}

void vunmap(const void* addr) { CurrentMm().vmalloc().Free(addr); }
bool is_vmalloc_addr(const void* addr) { return CurrentMm().vmalloc().IsVmallocAddr(addr); }
struct page* vmalloc_to_page(const void* addr) {
  return CurrentMm().vmalloc().ToPage(addr);
}

struct vm_struct* find_vm_area(const void* addr) {
  return const_cast<struct vm_struct*>(CurrentMm().vmalloc().FindArea(addr));
}

void* khosim_vmap_blocks(struct page** pages, unsigned int count, unsigned int page_shift,
                         unsigned long vm_flags) {
  const unsigned shift = CurrentMm().geometry().page_shift;
  if (page_shift < shift) return nullptr;
  return CurrentMm().vmalloc().Map(pages, count, page_shift - shift, vm_flags);
}

// ---- hugetlb pools (linux/hugetlb_pool.h) ---------------------------------------------

unsigned int hugetlb_max_hstate(void) { return khosim::mm::Hugetlb::kNumHstates; }

unsigned int hstate_index_order(unsigned int idx) {
  if (WARN_ON_ONCE(idx >= hugetlb_max_hstate())) return 0;
  return CurrentMm().hugetlb().Info(static_cast<int>(idx)).order;
}

void hugetlb_luo_set_preserved(unsigned int order, unsigned long nr_pages) {
  CurrentMm().hugetlb().SetPreservedOnBoot(order, nr_pages);
}

void hugetlb_luo_adopt_folio(struct folio* folio) { CurrentMm().hugetlb().AdoptFolio(folio); }

// Kernel-face memory API: pages, folios, the page allocator and the direct
// map, resolved against the running kernel (see khosim/base/kernel_context.h).
//
// Page size is a machine parameter, so PAGE_SIZE / PAGE_SHIFT /
// MAX_PAGE_ORDER are run-time values here; everything else has the kernel's
// name, signature and return conventions.
#ifndef KHOSIM_LINUX_MM_H_
#define KHOSIM_LINUX_MM_H_

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/gfp.h"
#include "khosim/linux/mm_types.h"
#include "khosim/linux/types.h"

unsigned long khosim_page_size();
unsigned int khosim_page_shift();
unsigned int khosim_max_page_order();
unsigned int khosim_pageblock_order();

#define PAGE_SIZE (khosim_page_size())
#define PAGE_SHIFT (khosim_page_shift())
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define MAX_PAGE_ORDER (khosim_max_page_order())
#define NR_PAGE_ORDERS (MAX_PAGE_ORDER + 1)
#define MAX_ORDER_NR_PAGES (1UL << MAX_PAGE_ORDER)
#define PHYS_PFN(x) ((unsigned long)((x) >> PAGE_SHIFT))
#define PFN_PHYS(x) ((phys_addr_t)(x) << PAGE_SHIFT)
#define PAGE_ALIGN(x) (((x) + PAGE_SIZE - 1) & PAGE_MASK)
#define PAGE_ALIGNED(x) ((((unsigned long)(x)) & (PAGE_SIZE - 1)) == 0)

// Page allocator. Return NULL on failure, as the kernel does.
struct page* alloc_pages(gfp_t gfp, unsigned int order);
struct page* alloc_pages_node(int nid, gfp_t gfp, unsigned int order);
struct page* alloc_page(gfp_t gfp);
void __free_pages(struct page* page, unsigned int order);
void __free_page(struct page* page);
unsigned long __get_free_pages(gfp_t gfp, unsigned int order);
unsigned long get_zeroed_page(gfp_t gfp);
void free_pages(unsigned long addr, unsigned int order);
void free_page(unsigned long addr);
// Makes each page of a non-compound order-N allocation independent.
void split_page(struct page* page, unsigned int order);
unsigned int get_order(unsigned long size);

// Folios.
struct folio* folio_alloc(gfp_t gfp, unsigned int order);
struct folio* folio_alloc_node(gfp_t gfp, unsigned int order, int nid);
void folio_get(struct folio* folio);
void folio_put(struct folio* folio);
unsigned int folio_order(const struct folio* folio);
unsigned long folio_nr_pages(const struct folio* folio);
size_t folio_size(const struct folio* folio);
unsigned long folio_pfn(const struct folio* folio);
void* folio_address(const struct folio* folio);
int folio_ref_count(const struct folio* folio);
int folio_nid(const struct folio* folio);
struct page* folio_page(struct folio* folio, unsigned long n);
struct folio* page_folio(const struct page* page);
struct folio* pfn_folio(unsigned long pfn);
phys_addr_t folio_phys(const struct folio* folio);  // simulator helper

// struct page accessors.
struct page* compound_head(const struct page* page);
bool PageHead(const struct page* page);
bool PageTail(const struct page* page);
bool PageCompound(const struct page* page);
unsigned int compound_order(const struct page* page);
void get_page(struct page* page);
void put_page(struct page* page);
int page_ref_count(const struct page* page);
void set_page_count(struct page* page, int v);
void init_page_count(struct page* page);
unsigned long page_private(const struct page* page);
void set_page_private(struct page* page, unsigned long private_data);
int page_to_nid(const struct page* page);
bool pfn_valid(unsigned long pfn);
struct page* nth_page(struct page* page, unsigned long n);

// Direct map.
unsigned long page_to_pfn(const struct page* page);
struct page* pfn_to_page(unsigned long pfn);
phys_addr_t page_to_phys(const struct page* page);
struct page* phys_to_page(phys_addr_t pa);
void* page_address(const struct page* page);
struct page* virt_to_page(const void* va);
struct folio* virt_to_folio(const void* va);
phys_addr_t virt_to_phys(const void* va);
void* phys_to_virt(phys_addr_t pa);
void* __va(phys_addr_t pa);
phys_addr_t __pa(const void* va);

void adjust_managed_page_count(struct page* page, long count);

#endif  // KHOSIM_LINUX_MM_H_

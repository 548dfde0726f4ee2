// struct page and struct folio (<linux/mm_types.h>): the simulated memmap
// entry, a plain C layout.
//
// Handlers hold `struct page *` and `struct folio *` exactly as kernel code
// does. A folio is its head page viewed as a folio; tail pages point at
// their head. The reference count is an atomic_t touched through
// page_ref_count() / set_page_count() (linux/mm.h) or linux/atomic.h.
//
// Lifetime: one memmap per kernel (see memmap.h). A zeroed struct page is an
// initialized, unused page: refcount 0, no flags, no private data. The
// memmap never crosses a kexec; kernel B rebuilds every struct page it uses.
#ifndef KHOSIM_LINUX_MM_TYPES_H_
#define KHOSIM_LINUX_MM_TYPES_H_

#include "khosim/linux/types.h"

// Page flag bits (bit numbers in page::flags).
enum pageflags {
  PG_locked,
  PG_referenced,
  PG_uptodate,
  PG_dirty,
  PG_lru,
  PG_head,
  PG_reserved,
  PG_private,
  PG_swapbacked,
  PG_pinned,   // simulator: a long-term pin is held (FOLL_LONGTERM)
  PG_vmalloc,  // simulator: page backs a vmalloc area
  PG_hugetlb,  // a hugetlb pool folio (the kernel's PGTY_hugetlb page type)
  // simulator: restored from the previous kernel's preservation and not
  // freed since (what the DMA checks accept as a preserved DMA target)
  PG_kho_restored,
};

struct page {
  unsigned long flags;
  // page_private(): free for the owner's use. KHO tags preserved heads here.
  unsigned long private_data;
  // Tail pages: head page address | 1. 0 for heads and order-0 pages.
  unsigned long compound_head;
  atomic_t _refcount;
  int pincount;
  unsigned char compound_order;  // valid on a compound head
  unsigned char pad_[7];
  void* mapping;        // page cache owner (lib/fs)
  unsigned long index;  // page offset within mapping
  unsigned long memcg;  // charge owner id, 0 = uncharged
};

// A folio is a head page; the cast is how the kernel's page_folio() works.
struct folio {
  struct page page;
};

#endif  // KHOSIM_LINUX_MM_TYPES_H_

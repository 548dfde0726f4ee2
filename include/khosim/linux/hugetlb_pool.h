// Kernel-face hugetlb pools (the mm half of <linux/hugetlb.h>): the
// hstates, huge folios, and what the hugetlb handler tells the pools about
// pages the previous kernel preserved. linux/hugetlb.h adds hugetlbfs files
// and includes this; handlers include linux/hugetlb.h.
//
// The simulator keeps no struct hstate for handlers to hold: an hstate is
// named by its index (0 .. hugetlb_max_hstate() - 1) or by its order.
#ifndef KHOSIM_LINUX_HUGETLB_POOL_H_
#define KHOSIM_LINUX_HUGETLB_POOL_H_

#include "khosim/linux/mm_types.h"
#include "khosim/linux/types.h"

// hugetlb_max_hstate: the hstates this kernel has (registered or not).
unsigned int hugetlb_max_hstate(void);
// huge_page_order(&hstates[idx]).
unsigned int hstate_index_order(unsigned int idx);

static inline bool folio_test_hugetlb(const struct folio* folio) {
  return (folio->page.flags & (1UL << PG_hugetlb)) != 0;
}

// Early boot only (before the pools are filled, i.e. before
// memblock_free_all): |nr_pages| huge pages of |order| are held by the
// previous kernel's preserved files, so the pool of that size allocates
// that many fewer at boot. Pages of an order no hstate has are ignored.
void hugetlb_luo_set_preserved(unsigned int order, unsigned long nr_pages);
// A folio restored from the previous kernel (kho_restore_folio, of an
// hstate's order) becomes a pool folio in use, with the reference the
// caller holds: the last folio_put returns it to the pool. WARNs and does
// nothing for a folio of no hstate's order.
void hugetlb_luo_adopt_folio(struct folio* folio);

#endif  // KHOSIM_LINUX_HUGETLB_POOL_H_

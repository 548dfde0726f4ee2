// Kernel-face hugetlb API (<linux/hugetlb.h>): what the hugemfd handler
// needs of the pools in khosim/mm/hugetlb.h.
//
// The simulator keeps no struct hstate for handlers to hold: an hstate is
// named by its index (0 .. hugetlb_max_hstate() - 1) or by its order.
#ifndef KHOSIM_LINUX_HUGETLB_H_
#define KHOSIM_LINUX_HUGETLB_H_

#include "khosim/linux/fs.h"
#include "khosim/linux/gfp.h"
#include "khosim/linux/types.h"
#include "khosim/mm/page.h"

// hugetlb_max_hstate: the hstates this kernel has (registered or not).
unsigned int hugetlb_max_hstate(void);
// huge_page_order(&hstates[idx]).
unsigned int hstate_index_order(unsigned int idx);
// huge_page_order(hstate_file(file)) of a hugetlbfs file; 0 (and a WARN)
// for any other file.
unsigned int hugetlb_file_order(struct file* file);

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

// Charges a hugetlb folio to the calling process's memcg (the simulator
// has one memcg model for shmem and hugetlb). 0, or -ENOMEM when the fault
// point "mem_cgroup_charge" fires.
int mem_cgroup_charge_hugetlb(struct folio* folio, gfp_t gfp);
// Inserts |folio| (locked, charged) into the hugetlbfs |mapping| at page
// index |idx| (PAGE_SIZE units, aligned to the folio); the cache takes its
// own reference. -EEXIST when the range is occupied, -EINVAL for a mapping
// that is not hugetlbfs or a misaligned index, -ENOMEM from the fault point
// "hugetlb_add_to_page_cache".
int hugetlb_add_to_page_cache(struct folio* folio, struct address_space* mapping, pgoff_t idx);

#endif  // KHOSIM_LINUX_HUGETLB_H_

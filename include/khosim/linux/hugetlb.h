// Kernel-face hugetlb (<linux/hugetlb.h>): the pools (linux/hugetlb_pool.h)
// and hugetlbfs files, what the hugemfd handler needs.
#ifndef KHOSIM_LINUX_HUGETLB_H_
#define KHOSIM_LINUX_HUGETLB_H_

#include "khosim/linux/fs.h"
#include "khosim/linux/gfp.h"
#include "khosim/linux/hugetlb_pool.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/linux/types.h"

// hugetlbfs mappings (MFD_HUGETLB memfds): not shmem (shmem_mapping() and
// shmem_file() are false), but the same page-cache model with pool folios.
extern const struct address_space_operations hugetlbfs_aops;
bool is_file_hugepages(const struct file* file);

// huge_page_order(hstate_file(file)) of a hugetlbfs file; 0 (and a WARN)
// for any other file.
unsigned int hugetlb_file_order(struct file* file);

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

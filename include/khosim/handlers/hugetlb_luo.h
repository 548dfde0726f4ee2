// The hugetlb memfd file handler ("hugemfd-v1") and the per-hstate FLB
// ("hugetlb-v1"): khosim's proposal after the hugetlb RFC, documented in
// docs/hugetlb-luo.md; record layouts in khosim/linux/kho/abi/hugetlb.h. A
// kernel built with module "hugetlb" (off by default) runs
// hugetlb_luo_early_init() between KHO's memory retrieval and
// memblock_free_all, and hugetlb_luo_init() as a late initcall.
//
// What a preserved hugetlb memfd keeps: every huge page of its size (holes
// are filled from the pool at preserve), the page size, size, position (as
// of freeze) and seals. While preserved, truncate, fallocate and hole
// punching fail with -EPERM; data written through a mapping is what the
// next kernel sees. Retrieve makes an unnamed MFD_HUGETLB memfd of the same
// page size (-ENODEV if the next kernel has no such hstate registered),
// charged to the retriever; folios nobody retrieves return to the pool at
// finish.
#ifndef KHOSIM_HANDLERS_HUGETLB_LUO_H_
#define KHOSIM_HANDLERS_HUGETLB_LUO_H_

// Early boot, before the hugetlb pools are filled: reads the previous
// kernel's "hugetlb-v1" FLB and leaves the preserved pages out of the
// pools (hugetlb_luo_set_preserved). Does nothing without one.
void hugetlb_luo_early_init(void);
// Registers the handler and links the FLB to it. 0 also when LUO is
// disabled, otherwise the registration error.
int hugetlb_luo_init(void);
void hugetlb_luo_exit(void);

#endif  // KHOSIM_HANDLERS_HUGETLB_LUO_H_

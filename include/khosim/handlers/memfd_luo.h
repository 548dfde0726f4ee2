// The memfd file handler (mm/memfd_luo.c, compatible "memfd-v2"): kernel
// face. A kernel built with module "memfd" (on by default) runs
// memfd_luo_init() as a late initcall; the record layout is
// khosim/linux/kho/abi/memfd.h.
//
// What a preserved memfd keeps: contents (holes are filled: every page of
// the size is allocated, pinned and preserved), size, file position (as of
// freeze), O_RDWR|O_LARGEFILE and the seals. Not kept: FD_CLOEXEC, the
// name (retrieve makes an unnamed memfd), mappings. While preserved, the
// file's mapping is frozen: growing, shrinking and hole punching fail with
// -EPERM; writes inside the size still work and are what the next kernel
// sees.
#ifndef KHOSIM_HANDLERS_MEMFD_LUO_H_
#define KHOSIM_HANDLERS_MEMFD_LUO_H_

// Registers the handler with LUO. 0 also when LUO is disabled
// (-EOPNOTSUPP is not an error), otherwise the registration error.
int memfd_luo_init(void);
// Unregisters it (module unload in tests).
void memfd_luo_exit(void);

// The sparse profile, "memfd-sparse-v1" (docs/memfd-sparse.md): the same
// userspace behaviour, but the folios are recorded in a KHO xarray instead
// of a flat array, so holes stay holes (no page is allocated for them),
// the metadata is proportional to the populated pages, there is no
// UINT_MAX-page limit, and pages written into holes after preserve are
// added to the handover as they appear. Module "memfd-sparse" (off by
// default) registers it before memfd-v2, so that it preserves every memfd
// while memfd-v2 still retrieves what an older kernel left.
int memfd_sparse_luo_init(void);
void memfd_sparse_luo_exit(void);

#endif  // KHOSIM_HANDLERS_MEMFD_LUO_H_

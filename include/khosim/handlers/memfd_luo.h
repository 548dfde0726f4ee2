// The memfd file handler (mm/memfd_luo.c, compatible "memfd-v2"): kernel
// face. A kernel built with it runs memfd_luo_init() as a late initcall
// (KernelConfig::handlers.memfd, on by default); the record layout is
// khosim/abi/memfd_luo.h.
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

#endif  // KHOSIM_HANDLERS_MEMFD_LUO_H_

// Kernel-face memfd: sealing, in-kernel memfd creation and folio pinning
// (<linux/memfd.h>, plus memfd_pin_folios / unpin_folio(s) which the kernel
// declares in <linux/mm.h>). The memfd_create(2) syscall for a simulated
// process is khosim::fs::MemfdCreate (khosim/fs/shmem.h).
//
// Seal semantics (mm/memfd.c, mm/shmem.c):
//   F_SEAL_SEAL          no further F_ADD_SEALS (-EPERM)
//   F_SEAL_SHRINK        ftruncate to a smaller size -> -EPERM
//   F_SEAL_GROW          ftruncate larger, a write ending past EOF, fallocate
//                        ending past EOF (even with KEEP_SIZE) -> -EPERM
//   F_SEAL_WRITE         write, hole punch, new shared writable mappings
//                        -> -EPERM; adding it fails with -EBUSY while a
//                        shared writable mapping exists or a folio is pinned
//   F_SEAL_FUTURE_WRITE  as F_SEAL_WRITE, but existing writable mappings keep
//                        writing and adding it never fails with -EBUSY
//   F_SEAL_EXEC          the exec bits cannot change; on an executable memfd
//                        (mode & 0111) it implies SHRINK|GROW|WRITE|FUTURE_WRITE
#ifndef KHOSIM_LINUX_MEMFD_H_
#define KHOSIM_LINUX_MEMFD_H_

#include <fcntl.h>

#include "khosim/linux/fs.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/types.h"

// UAPI values (<linux/fcntl.h>, <linux/memfd.h>); older host headers lack
// some of them.
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#define F_ALL_SEALS \
  (F_SEAL_SEAL | F_SEAL_EXEC | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#define MFD_HUGE_MASK 0x3fU
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << MFD_HUGE_SHIFT)
#define MFD_HUGE_1GB (30U << MFD_HUGE_SHIFT)
#endif

// fcntl(F_ADD_SEALS / F_GET_SEALS) on a memfd; any other cmd -> -EINVAL.
// The syscall passes the argument as an unsigned int (upper bits dropped).
long memfd_fcntl(struct file* file, unsigned int cmd, unsigned int arg);

// A memfd file for in-kernel users (memfd_luo retrieve): O_RDWR|O_LARGEFILE,
// unlinked, named |name| as given (no "memfd:" prefix). |flags|: MFD_*;
// without MFD_ALLOW_SEALING / MFD_NOEXEC_SEAL it starts with F_SEAL_SEAL.
// MFD_HUGETLB makes a hugetlbfs file of the size in the MFD_HUGE_* bits (0:
// the default huge page size), ERR_PTR(-ENODEV) when no hstate of that
// size is registered (khosim/mm/hugetlb.h); otherwise the errors of
// shmem_file_setup().
struct file* memfd_alloc_file(const char* name, unsigned int flags);

// The seals word of a shmem file, NULL for any other file.
unsigned int* memfd_file_seals_ptr(struct file* file);
// The seals, or -EINVAL for a file that is not a memfd-capable file.
int memfd_get_seals(struct file* file);
// F_ADD_SEALS. In order: no FMODE_WRITE -> -EPERM; unknown bits -> -EINVAL;
// not a shmem file -> -EINVAL; F_SEAL_SEAL set -> -EPERM; F_SEAL_EXEC on
// an executable file adds the write seals; a new F_SEAL_WRITE with a shared
// writable mapping or an elevated folio refcount (a pin) -> -EBUSY.
// Takes inode_lock().
int memfd_add_seals(struct file* file, unsigned int seals);

// The folio at page |idx| of a memfd, allocated if missing (as a fault
// would); a reference is returned. ERR_PTR(-EINVAL) for a non-shmem file.
struct folio* memfd_alloc_folio(struct file* memfd, pgoff_t idx);

// Long-term pins (FOLL_PIN | FOLL_LONGTERM) on the folios backing bytes
// [start, end] of |memfd|, allocating a zeroed uptodate folio for every hole
// on the way, each folio once, in index order, at most |max_folios|.
// *offset receives start's offset inside the first folio. Folios sitting in
// CMA pageblocks (e.g. KHO scratch) are first migrated to non-CMA memory,
// as long-term pinning requires; a folio that cannot move -> -ENOMEM.
// Returns the number of folios pinned, or -EINVAL (start < 0, start > end,
// max_folios 0, not a shmem file, end >= i_size), -ENOMEM.
// A pin takes a folio reference, increments page.pincount and sets
// PG_pinned; unpin_folio() undoes one.
long memfd_pin_folios(struct file* memfd, loff_t start, loff_t end, struct folio** folios,
                      unsigned int max_folios, pgoff_t* offset);
void unpin_folio(struct folio* folio);
// mm/internal.h: takes |refs| references on |folio|, as pins with FOLL_PIN
// (what unpin_folio drops). 0, or -EINVAL for other flags or refs < 1.
#ifndef FOLL_PIN
#define FOLL_PIN (1U << 10)
#endif
int try_grab_folio(struct folio* folio, int refs, unsigned int flags);
void unpin_folios(struct folio** folios, unsigned long nfolios);

#endif  // KHOSIM_LINUX_MEMFD_H_

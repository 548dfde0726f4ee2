// What the memfd handler profiles ("memfd-v2", "memfd-sparse-v1") share:
// which files they take, the seals they can carry, and the kernel-B half
// of retrieve that does not depend on the record format. Kernel face only,
// as the handlers themselves are.
#ifndef KHOSIM_LIB_HANDLERS_MEMFD_COMMON_H_
#define KHOSIM_LIB_HANDLERS_MEMFD_COMMON_H_

#include "khosim/linux/fs.h"
#include "khosim/linux/kho/abi/memfd.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/types.h"

// preserve: the file's seals, if a record can carry every one of them. 0
// and *sealsp; memfd_get_seals' error; or -EOPNOTSUPP for a seal outside
// MEMFD_LUO_ALL_SEALS (it would silently disappear across the kexec).
int memfd_luo_get_seals(struct file* file, u32* sealsp);

// can_preserve: an unlinked shmem file (a memfd, not a /dev/shm file).
bool memfd_luo_can_preserve_file(struct file* file);
// get_id: two fds or struct files of one memfd are one preservation.
unsigned long memfd_luo_inode_id(struct file* file);

// Retrieve: a new unnamed memfd that allows sealing, with |seals|
// re-applied and the position and size restored; ERR_PTR on failure.
struct file* memfd_luo_new_file(u32 seals, u64 pos, u64 size);

// Retrieve: moves one restored |folio| (one reference) into |file|'s page
// cache at |index|, charged to the retriever, uptodate and dirty when the
// record says so, and accounted; *nr_added_pages grows by its pages. On
// failure the folio is out of the cache again and put, and the error is
// returned. The caller calls shmem_recalc_inode once at the end.
int memfd_luo_insert_folio(struct file* file, struct folio* folio, pgoff_t index, bool uptodate,
                           bool dirty, long* nr_added_pages);

// Restores and puts the preserved folio at |phys| (finish of a file never
// retrieved, or the rest of a failed retrieve); warns when it cannot.
void memfd_luo_discard_folio(phys_addr_t phys);

#endif  // KHOSIM_LIB_HANDLERS_MEMFD_COMMON_H_

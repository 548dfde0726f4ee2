// What the memfd-family handlers ("memfd-v2", "memfd-sparse-v1",
// "hugemfd-v1") share: which files they take, the seals they can carry, the
// frame every preserve and unpreserve runs in, the memfd-v2 folio array
// (memfd-v2 and hugemfd-v1 keep their folios in one), and the kernel-B half
// of retrieve that does not depend on the record format. Kernel face only,
// as the handlers themselves are.
//
// The frame: preserve takes the inode lock, freezes the mapping (no grow,
// shrink or punch from then on), allocates the record in preserved memory
// and checks the seals; the handler fills the record; on success the inode
// is unlocked, on failure the record is freed and the mapping thawed first.
// Unpreserve takes the inode lock and thaws at once, as upstream's
// memfd_luo does; the handler undoes its preservations; the record is
// freed and the inode unlocked. Since the inode lock is held from the first
// step to the last, no other thread can tell in which order the thaw and
// the handler's own steps ran.
#ifndef KHOSIM_LIB_HANDLERS_MEMFD_COMMON_H_
#define KHOSIM_LIB_HANDLERS_MEMFD_COMMON_H_

#include "khosim/linux/fs.h"
#include "khosim/linux/kho/abi/memfd.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/types.h"

// preserve: the file's seals, if a record can carry every one of them. 0
// and *sealsp; memfd_get_seals' error; or -EOPNOTSUPP for a seal outside
// MEMFD_LUO_ALL_SEALS (it would silently disappear across the kexec).
int memfd_luo_get_seals(struct file* file, u32* sealsp);

// The preserve frame (see above). begin: the zeroed |ser_size|-byte
// record with the inode locked and the mapping frozen, and *sealsp set;
// or ERR_PTR (kho_alloc_preserve's or memfd_luo_get_seals' error) with
// nothing held. end: |err| back, after unlocking (0) or freeing the record,
// thawing and unlocking (an errno).
void* memfd_luo_preserve_begin(struct file* file, size_t ser_size, u32* sealsp);
int memfd_luo_preserve_end(struct file* file, void* ser, int err);
// The unpreserve frame: begin locks and thaws; end frees the record and
// unlocks.
void memfd_luo_unpreserve_begin(struct file* file);
void memfd_luo_unpreserve_end(struct file* file, void* ser);
// freeze: refreshes the position in a record that begins with u64 pos (the
// only field that still moves once the mapping is frozen).
int memfd_luo_freeze_pos(struct liveupdate_file_op_args* args);

// The shmem step (memfd-v2's, and the sparse profile's): the folio is
// handed over dirty, since a mapping can still write it after preserve and
// the next kernel may reclaim a folio it believes clean; a folio fallocate
// left not uptodate is zeroed and marked uptodate, so it reaches the next
// kernel zeroed rather than with whatever the page held. Locks the folio. 0.
int memfd_luo_prepare_folio(struct folio* folio, void* arg);

// The folio array: pins every folio of the file's size (memfd_pin_folios
// allocates the holes; at most |max_folios|), preserves each, runs
// |prepare|(folio, |arg|) on it (a failure unpreserves it and fails the call), records
// it {pfn, dirty|uptodate, index}, and preserves the records as a vmalloc
// area described by |kho_vmalloc|. 0 with *out (the records, kept for
// unpreserve) and *nr; or the error with everything undone. A file of size
// 0 has no array: *nr 0, *out NULL, |kho_vmalloc| zeroed. |who| prefixes
// the log lines.
typedef int (*memfd_luo_prepare_fn)(struct folio* folio, void* arg);
int memfd_luo_preserve_folio_array(struct file* file, unsigned int max_folios,
                                   memfd_luo_prepare_fn prepare, void* arg, const char* who,
                                   struct kho_vmalloc* kho_vmalloc,
                                   struct memfd_luo_folio_ser** out, u64* nr);
// Undoes it: the array, then every folio's preservation and pin.
void memfd_luo_unpreserve_folio_array(struct kho_vmalloc* kho_vmalloc,
                                      const struct memfd_luo_folio_ser* folios_ser, u64 nr);
// Retrieve and finish: restores the folio array of a record claiming
// |nr| records, or NULL if kho_restore_vmalloc fails. Upstream walks |nr|
// records whatever the array holds, so a hostile count reads past the
// vmalloc area and oopses there; the simulator panics at that point
// instead (memfd_luo_folio_oops), naming |who|, never touching host memory
// beyond the area. docs/hostile-input.md lists this upstream gap. A caller
// holding objects a panic would leak checks with
// memfd_luo_folio_array_fits after kho_restore_vmalloc, releases them,
// then calls memfd_luo_folio_oops.
struct memfd_luo_folio_ser* memfd_luo_restore_folio_array(const struct kho_vmalloc* kho_vmalloc,
                                                          u64 nr, const char* who);
// Whether a restored area of |kho_vmalloc| holds |nr| folio records.
bool memfd_luo_folio_array_fits(const struct kho_vmalloc* kho_vmalloc, u64 nr);
// The oops upstream would have reading record |capacity| of the area, as
// a KernelPanic: "<who>: BUG: unable to handle page fault: folio record N
// past the N-record array (the record claims M folios)".
[[noreturn]] void memfd_luo_folio_oops(const char* who, const struct kho_vmalloc* kho_vmalloc,
                                       u64 nr);

// finish of a file never retrieved: restores the array and hands every
// recorded folio to |release| (which restores and puts it), then frees it.
void memfd_luo_release_folio_array(const struct kho_vmalloc* kho_vmalloc, u64 nr,
                                   void (*release)(phys_addr_t phys), const char* who);

// A module init: registers |fh|. 0 also when LUO is disabled (-EOPNOTSUPP
// is not an error); otherwise the registration error, logged as |who|'s.
int memfd_luo_register_handler(struct liveupdate_file_handler* fh, const char* who);

// can_preserve: an unlinked shmem file (a memfd, not a /dev/shm file).
bool memfd_luo_can_preserve_file(struct file* file);
// get_id: two fds or struct files of one memfd are one preservation.
unsigned long memfd_luo_inode_id(struct file* file);

// Retrieve: a new unnamed memfd that allows sealing, with |seals|
// re-applied and the position and size restored; ERR_PTR on failure:
// -EINVAL for a size or position above MAX_LFS_FILESIZE (upstream writes
// them unchecked, a negative i_size: docs/hostile-input.md).
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

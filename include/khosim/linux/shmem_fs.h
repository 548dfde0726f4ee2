// Kernel-face shmem (tmpfs) page cache: what mm/memfd_luo.c and other
// handlers reach through <linux/shmem_fs.h> and the headers it pulls in
// (<linux/pagemap.h>, <linux/page-flags.h>, <linux/memcontrol.h>, and the
// i_size / inode-lock / vfs_setpos helpers of <linux/fs.h>). The C++ face
// (memfd_create for a Process, mappings, accounting queries, validation) is
// khosim/fs/shmem.h; memfd_* calls are in khosim/linux/memfd.h.
//
// Model:
//   - a shmem inode is a struct shmem_inode_info embedding its struct inode
//     (SHMEM_I) and its address_space (inode->i_mapping == &info->i_data);
//   - the page cache maps a page index to the folio holding it. The cache
//     holds one reference per folio (the kernel holds folio_nr_pages()); a
//     cached folio has page.mapping == the address_space, page.index == its
//     first page index, and is charged to a memcg (page.memcg != 0);
//   - new folios are allocated zeroed, GFP_HIGHUSER_MOVABLE, at the
//     inode's folio order (0 for memfds: one PAGE_SIZE page per folio). A
//     folio added from outside (shmem_add_to_page_cache) may have any order
//     as long as it is naturally aligned and does not overlap another;
//   - folios allocated by fallocate are not uptodate and read as zeros;
//     writes, faults and shmem_read_folio leave a folio uptodate;
//   - memcg accounting counts pages per memcg id (see khosim/fs/shmem.h).
//     A folio leaves its memcg when it leaves the page cache (the kernel
//     uncharges when the folio is freed; the two differ only while a pin
//     keeps a truncated folio alive).
//
// Locking: inode_lock() is the inode's i_rwsem (held by write, ftruncate,
// fallocate, F_ADD_SEALS; memfd_luo holds it around shmem_freeze). The page
// cache has its own inner lock, taken inside every function below, so they
// may be called with or without inode_lock held. Folio locks are flag bits
// (PG_locked) that spin; nothing here sleeps.
//
// Errors are the kernel's: 0 / -errno, ERR_PTR, or NULL where it uses them.
#ifndef KHOSIM_LINUX_SHMEM_FS_H_
#define KHOSIM_LINUX_SHMEM_FS_H_

#include <climits>

#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/gfp.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/types.h"

// ---- <linux/fs.h> pieces the page cache needs ------------------------------
// (They belong to linux/fs.h; they live here until the VFS grows them.)

#ifndef MAX_LFS_FILESIZE
#define MAX_LFS_FILESIZE ((loff_t)LLONG_MAX)
#endif

static inline loff_t i_size_read(const struct inode* inode) {
  return __atomic_load_n(&inode->i_size, __ATOMIC_RELAXED);
}
static inline void i_size_write(struct inode* inode, loff_t size) {
  __atomic_store_n(&inode->i_size, size, __ATOMIC_RELAXED);
}

// Sets file->f_pos: -EINVAL when |offset| is negative or above |maxsize|.
loff_t vfs_setpos(struct file* file, loff_t offset, loff_t maxsize);

// The inode's i_rwsem, exclusive. Only shmem inodes have one here; on any
// other inode these WARN once and do nothing.
void inode_lock(struct inode* inode);
void inode_unlock(struct inode* inode);
bool inode_trylock(struct inode* inode);

// ---- address_space (<linux/fs.h>, <linux/pagemap.h>) ----------------------

// Identifies the filesystem that owns a mapping; shmem's is shmem_aops.
struct address_space_operations {
  const char* name;
};
extern const struct address_space_operations shmem_aops;

struct address_space {
  struct inode* host;
  const struct address_space_operations* a_ops;
  gfp_t gfp_mask;
  unsigned long nrpages;  // pages in the cache
};

static inline gfp_t mapping_gfp_mask(const struct address_space* mapping) {
  return mapping->gfp_mask;
}

// ---- shmem inodes -----------------------------------------------------------

// shmem_inode_info::flags
#define SHMEM_F_NORESERVE (1UL << 0)
#define SHMEM_F_LOCKED (1UL << 1)
// Growing, shrinking and hole punching fail with -EPERM (ftruncate to
// another size, any fallocate, a write that would end past EOF). Unlike
// F_SEAL_GROW | F_SEAL_SHRINK it can be removed, and userspace never sees
// it. memfd_luo sets it for as long as a memfd is preserved.
#define SHMEM_F_MAPPING_FROZEN (1UL << 2)

struct shmem_inode_info {
  unsigned int seals;     // F_SEAL_*; F_SEAL_SEAL unless sealing is allowed
  unsigned long flags;    // SHMEM_F_*
  unsigned long alloced;  // pages in the page cache (data pages)
  unsigned long swapped;  // always 0: the simulator has no swap
  struct address_space i_data;
  struct inode vfs_inode;
};

static inline struct shmem_inode_info* SHMEM_I(struct inode* inode) {
  return reinterpret_cast<struct shmem_inode_info*>(reinterpret_cast<char*>(inode) -
                                                    offsetof(struct shmem_inode_info, vfs_inode));
}

// A live preservation record of the inode's folios (the sparse memfd
// handler) hears of every folio that enters the page cache afterwards:
// folio_added runs once the new folio is in the cache, charged, with the
// page-cache lock held (it must not call back into this inode). A non-zero
// return takes the folio out again and fails the allocation (the write or
// fault) with that error. The caller of shmem_set_luo_hook holds
// inode_lock(inode); NULL clears the hook.
struct shmem_luo_hook {
  int (*folio_added)(struct inode* inode, struct folio* folio, void* data);
};
void shmem_set_luo_hook(struct inode* inode, const struct shmem_luo_hook* hook, void* data);
static inline void mapping_set_gfp_mask(struct address_space* mapping, gfp_t mask) {
  mapping->gfp_mask = mask;
}

// Whether |mapping| / |file| belong to shmem (tmpfs or memfd, not hugetlbfs).
bool shmem_mapping(const struct address_space* mapping);
bool shmem_file(const struct file* file);

// Sets or clears SHMEM_F_MAPPING_FROZEN. The caller holds inode_lock(inode)
// (WARNs once otherwise).
void shmem_freeze(struct inode* inode, bool freeze);

#ifndef VM_NORESERVE
#define VM_NORESERVE 0x00200000UL
#endif

// An unlinked (i_nlink 0) shmem file of |size| bytes, O_RDWR, named |name|,
// sealed with F_SEAL_SEAL; f_count 1. ERR_PTR(-EINVAL) for a size outside
// [0, MAX_LFS_FILESIZE], ERR_PTR(-ENOMEM) (fault point "alloc_file"),
// ERR_PTR(-ENODEV) with no running VFS.
struct file* shmem_file_setup(const char* name, loff_t size, unsigned long flags);

// What shmem_get_folio() may do about a missing folio.
enum sgp_type {
  SGP_READ,     // don't allocate: a hole (or a folio not uptodate) gives NULL
  SGP_NOALLOC,  // don't allocate: a hole gives -ENOENT
  SGP_CACHE,    // allocate a zeroed, uptodate folio
  SGP_WRITE,    // allocate; the caller will write it
  SGP_FALLOC,   // allocate, not uptodate (fallocate)
};

// The folio at |index|, locked, with a reference (folio_unlock + folio_put
// when done). |write_end| is unused (0). A hole: SGP_READ returns 0 with
// *foliop NULL, SGP_NOALLOC -ENOENT. An index at or past EOF with SGP_READ,
// SGP_NOALLOC or SGP_CACHE: -EINVAL. A folio that is not uptodate (from
// fallocate) is a hole for SGP_READ, left as it is for SGP_WRITE, and
// zeroed and marked uptodate otherwise; a new SGP_FALLOC / SGP_WRITE folio
// stays not uptodate.
// Allocation failure: -ENOMEM (fault points "alloc_pages",
// "mem_cgroup_charge"). New folios are charged to the caller's memcg.
int shmem_get_folio(struct inode* inode, pgoff_t index, loff_t write_end, struct folio** foliop,
                    enum sgp_type sgp);
// The folio at |index| with a reference, unlocked and uptodate, allocating
// (SGP_CACHE) if needed; ERR_PTR(-errno) on failure.
struct folio* shmem_read_folio(struct address_space* mapping, pgoff_t index);

// Inserts |folio| (referenced, locked, charged, not in any cache) at
// |index|. The cache takes its own reference; folio->mapping / index are
// set. |expected| must be NULL (no swap entries). -EEXIST when the range is
// (partly) occupied, -EINVAL for a misaligned index or a foreign mapping.
// An uncharged folio is a bug: WARNed, then charged to the caller's memcg.
int shmem_add_to_page_cache(struct folio* folio, struct address_space* mapping, pgoff_t index,
                            void* expected, gfp_t gfp);
// Block accounting of the inode's filesystem (tmpfs size= limits). The
// internal mount that backs memfds has none: 0, or -ENOSPC when the fault
// point "shmem_inode_acct_blocks" fires.
int shmem_inode_acct_blocks(struct inode* inode, long pages);
// Adds |alloced| / |swapped| to the inode's counters (after folios were
// added behind the page cache's back, e.g. by memfd_luo retrieve). The
// simulator keeps `alloced` itself, so this only checks that it agrees.
void shmem_recalc_inode(struct inode* inode, long alloced, long swapped);
// Removes the folios wholly inside [lstart, lend] (bytes, inclusive; lend
// -1 = to the end) and zeroes the covered part of folios it only touches.
void shmem_truncate_range(struct inode* inode, loff_t lstart, loff_t lend);

extern const struct file_operations shmem_file_operations;

// ---- page cache lookup and iteration (<linux/pagemap.h>) -------------------
// Takes a locked folio out of its mapping's page cache; the cache's
// reference is dropped (the caller's stays), and the folio leaves its memcg.
void filemap_remove_folio(struct folio* folio);

// The folio containing |index| with a reference, ERR_PTR(-ENOENT) if none.
struct folio* filemap_get_folio(struct address_space* mapping, pgoff_t index);

#define PAGEVEC_SIZE 31
struct folio_batch {
  unsigned char nr;
  unsigned char i;
  bool percpu_pvec_drained;
  struct folio* folios[PAGEVEC_SIZE];
};
static inline void folio_batch_init(struct folio_batch* fbatch) {
  fbatch->nr = 0;
  fbatch->i = 0;
  fbatch->percpu_pvec_drained = false;
}
static inline unsigned int folio_batch_count(const struct folio_batch* fbatch) {
  return fbatch->nr;
}
// folio_put()s every folio and empties the batch.
void folio_batch_release(struct folio_batch* fbatch);

// Up to PAGEVEC_SIZE folios overlapping [*start, end] in index order, each
// with a reference. *start moves past the last folio returned, or to
// end + 1 (ULONG_MAX stays) when the range is exhausted. Returns the count.
unsigned filemap_get_folios(struct address_space* mapping, pgoff_t* start, pgoff_t end,
                            struct folio_batch* fbatch);
// The same, stopping at the first hole.
unsigned filemap_get_folios_contig(struct address_space* mapping, pgoff_t* start, pgoff_t end,
                                   struct folio_batch* fbatch);

// ---- folio flags and helpers (<linux/page-flags.h>, <linux/pagemap.h>) -----

static inline bool khosim_folio_test(const struct folio* folio, unsigned bit) {
  return (__atomic_load_n(&folio->page.flags, __ATOMIC_ACQUIRE) >> bit) & 1;
}
static inline bool khosim_folio_test_and_set(struct folio* folio, unsigned bit) {
  return (__atomic_fetch_or(&folio->page.flags, 1UL << bit, __ATOMIC_ACQ_REL) >> bit) & 1;
}
static inline void khosim_folio_clear(struct folio* folio, unsigned bit) {
  __atomic_fetch_and(&folio->page.flags, ~(1UL << bit), __ATOMIC_RELEASE);
}

static inline bool folio_test_locked(const struct folio* f) {
  return khosim_folio_test(f, PG_locked);
}
static inline bool folio_trylock(struct folio* f) {
  return !khosim_folio_test_and_set(f, PG_locked);
}
// Spins until the lock is free (simulated kernel code never sleeps).
void folio_lock(struct folio* folio);
static inline void folio_unlock(struct folio* f) {
  WARN_ON_ONCE(!folio_test_locked(f));
  khosim_folio_clear(f, PG_locked);
}
// Non-atomic variants, for folios nobody else can see yet.
static inline void __folio_set_locked(struct folio* f) { khosim_folio_test_and_set(f, PG_locked); }
static inline void __folio_clear_locked(struct folio* f) { khosim_folio_clear(f, PG_locked); }

static inline bool folio_test_uptodate(const struct folio* f) {
  return khosim_folio_test(f, PG_uptodate);
}
static inline void folio_mark_uptodate(struct folio* f) {
  khosim_folio_test_and_set(f, PG_uptodate);
}
static inline void folio_clear_uptodate(struct folio* f) { khosim_folio_clear(f, PG_uptodate); }
static inline bool folio_test_dirty(const struct folio* f) {
  return khosim_folio_test(f, PG_dirty);
}
// True if the folio was clean before.
static inline bool folio_mark_dirty(struct folio* f) {
  return !khosim_folio_test_and_set(f, PG_dirty);
}
static inline void folio_clear_dirty(struct folio* f) { khosim_folio_clear(f, PG_dirty); }
static inline bool folio_test_swapbacked(const struct folio* f) {
  return khosim_folio_test(f, PG_swapbacked);
}
static inline void __folio_set_swapbacked(struct folio* f) {
  khosim_folio_test_and_set(f, PG_swapbacked);
}
static inline bool folio_test_lru(const struct folio* f) { return khosim_folio_test(f, PG_lru); }
// There is no reclaim; the LRU is only the PG_lru bit.
static inline void folio_add_lru(struct folio* f) { khosim_folio_test_and_set(f, PG_lru); }
static inline bool folio_test_large(const struct folio* f) { return folio_order(f) > 0; }

// struct folio has no index field of its own here: folio->index in kernel
// code is folio_index(folio) (or folio->page.index).
static inline pgoff_t folio_index(const struct folio* f) { return f->page.index; }
static inline loff_t folio_pos(const struct folio* f) {
  return static_cast<loff_t>(f->page.index) << PAGE_SHIFT;
}
static inline size_t offset_in_folio(const struct folio* f, loff_t pos) {
  return static_cast<size_t>(pos) & (folio_size(f) - 1);
}
static inline struct address_space* folio_mapping(const struct folio* f) {
  return static_cast<struct address_space*>(f->page.mapping);
}
// Zeroes [offset, offset + len) of the folio.
void folio_zero_range(struct folio* folio, size_t offset, size_t len);
static inline void flush_dcache_folio(struct folio*) {}

// A folio may be pinned for DMA (pin_user_pages / memfd_pin_folios).
static inline bool folio_maybe_dma_pinned(const struct folio* f) {
  return __atomic_load_n(&f->page.pincount, __ATOMIC_ACQUIRE) > 0;
}

// ---- memory cgroups (<linux/memcontrol.h>) --------------------------------

struct mm_struct;

// Charges |folio| to the memcg of |mm| (must be NULL here: the simulator
// has no mm_structs) or, for NULL, of the calling process (the root memcg
// without one). -ENOMEM when the fault point "mem_cgroup_charge" fires.
// Charging a charged folio is a bug: WARNed, -EINVAL.
int mem_cgroup_charge(struct folio* folio, struct mm_struct* mm, gfp_t gfp);
// Drops the folio's charge (no-op for an uncharged folio).
void mem_cgroup_uncharge(struct folio* folio);
static inline bool folio_memcg_charged(const struct folio* f) { return f->page.memcg != 0; }

#endif  // KHOSIM_LINUX_SHMEM_FS_H_

// shmem and memfd: the C++ face of the simulated kernel's tmpfs page cache.
// The kernel face (what a port of mm/memfd_luo.c calls) is
// khosim/linux/shmem_fs.h and khosim/linux/memfd.h.
//
// What lives where:
//   - ShmemInode: one shmem inode (a shmem_inode_info plus its page cache, a
//     map from page index to folio). Its file_operations implement read,
//     write, pread/pwrite, lseek (incl. SEEK_DATA / SEEK_HOLE), ftruncate
//     (the setsize hook), fallocate (KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE) and
//     F_ADD_SEALS / F_GET_SEALS (the fcntl hook), with the kernel's errnos.
//   - ShmemSb: the per-kernel shmem state (the internal tmpfs mount): live
//     inodes, shared mappings, and the memcg charge counters.
//   - MemfdCreate / TmpfsCreate: memfd_create(2) and a linked tmpfs file for
//     a Process; ShmemMmap: a MAP_SHARED mapping whose Fault() is the page
//     fault, returning a host pointer into the folio.
//
// Memory accounting: every folio in a page cache is charged to a memcg id,
// kept in its head page's `memcg` field. The id of a process is its pid;
// kernel work with no current process charges the root memcg (kRootMemcg).
// As in the kernel, a folio is charged to whoever allocates it: the process
// whose write / fallocate / fault / in-kernel call brought it in, not the
// file's creator (a memfd passed to another process and written there is
// charged to the writer; memfd_luo's retrieve charges the retriever).
//
// Lifetimes: an unlinked shmem inode (memfd) dies with its last file
// reference; i_evict then frees every folio. A kernel torn down with shmem
// files still open (kexec, panic) frees only host objects: the folios are
// physical memory of a dead kernel. Mappings hold a file reference; those
// still mapped when the kernel's VFS is torn down are revoked (their
// Fault() returns -EFAULT, their destructor does nothing). Mappings belong
// to the test that made them: Process::Exit does not unmap them.
//
// Huge pages: the folio order is per inode (ShmemOptions::folio_order), and
// every path handles folios of any order (lookups, partial truncate and
// punch zero the covered part, whole folios are freed). A hugetlbfs memfd
// (MFD_HUGETLB) is the same inode with its own address_space_operations
// (hugetlbfs_aops, so shmem_file() is false, as upstream) and 2 MiB / 1 GiB
// folios taken from the hugetlb pool (khosim/mm/hugetlb.h) instead of the
// buddy allocator: write(2) is -EINVAL (data goes in through mappings),
// the size must be a multiple of the huge page size, and an empty pool
// makes fallocate and faults fail with -ENOSPC.
//
// Locking: see khosim/linux/shmem_fs.h. ShmemSb has one internal mutex,
// innermost.
#ifndef KHOSIM_FS_SHMEM_H_
#define KHOSIM_FS_SHMEM_H_

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"
#include "khosim/fs/vfs.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/shmem_fs.h"

namespace khosim::fs {

// The memcg id of kernel work done with no current process.
inline constexpr unsigned long kRootMemcg = ~0UL;
// The memcg a process's allocations are charged to: its pid.
unsigned long ProcessMemcg(const Process& process);
// The calling process's memcg, kRootMemcg with none.
unsigned long CurrentMemcg();

// memfd_create(2) for |process|: returns the fd or -errno. |flags|: MFD_*.
// Errors, in the kernel's order: unknown flags (the hugetlb size bits are
// allowed only with MFD_HUGETLB), or MFD_EXEC together with
// MFD_NOEXEC_SEAL -> -EINVAL; a name longer than 249 bytes -> -EINVAL;
// -EMFILE from the fd table; MFD_HUGETLB with a huge page size that has no
// registered hstate -> -ENODEV; -ENOMEM (fault point "alloc_file"). The file is O_RDWR, unlinked
// (i_nlink 0), mode 0777 (0666 with MFD_NOEXEC_SEAL), and is shown as
// "/memfd:<name> (deleted)". Seals start at F_SEAL_SEAL unless
// MFD_ALLOW_SEALING (no seals) or MFD_NOEXEC_SEAL (F_SEAL_EXEC). A name is
// taken up to its first NUL.
int MemfdCreate(Process& process, absl::string_view name, unsigned int flags);

// A regular tmpfs file with a directory link (i_nlink 1), as open("/dev/shm/
// <name>", O_CREAT|flags) would give: the case LUO's memfd handler must
// refuse. Sealing is not allowed (F_SEAL_SEAL). There is no namespace: the
// name is only shown in f_name, and the file dies with its last reference.
// |flags|: the access mode and O_CLOEXEC. Returns the fd or -errno.
int TmpfsCreate(Process& process, absl::string_view name, int flags);

struct ShmemOptions {
  loff_t size = 0;
  // Folios of PAGE_SIZE << folio_order bytes (0 for memfds; a hugetlbfs
  // inode would use 2 MiB / 1 GiB folios). At most MAX_PAGE_ORDER.
  unsigned int folio_order = 0;
  // 0: unlinked (memfd); 1: a linked tmpfs file.
  unsigned int nlink = 0;
  int open_flags = O_RDWR;
  umode_t mode = S_IFREG | 0777;
  unsigned int seals = F_SEAL_SEAL;
  // >= 0: a hugetlbfs inode of that mm::Hugetlb hstate (folio_order is
  // then the hstate's): folios come from the hugetlb pool (-ENOSPC when it
  // is empty), write(2) is -EINVAL, the size must be a multiple of the huge
  // page size, and shmem_file() is false for it.
  int hstate = -1;
};
// shmem_file_setup with the simulator's options; f_name is |f_name| as
// given. ERR_PTR(-EINVAL) for a bad size or order, ERR_PTR(-ENODEV) with
// no VFS, ERR_PTR(-ENOMEM) (fault point "alloc_file").
struct file* ShmemFileSetup(absl::string_view f_name, const ShmemOptions& options);

class ShmemSb;
struct ShmemMappingState;

// One shmem inode. Kernel code reaches it as SHMEM_I(inode); tests and
// handlers use the inspection methods. The backends below are what the
// file operations and the kernel-face functions call.
class ShmemInode : public shmem_inode_info {
 public:
  // The shmem inode behind |inode| / |file|, or nullptr if not shmem.
  static ShmemInode* FromInode(struct inode* inode);
  static ShmemInode* FromFile(const struct file* file);

  ShmemInode(std::shared_ptr<ShmemSb> sb, const ShmemOptions& options);
  ~ShmemInode();
  ShmemInode(const ShmemInode&) = delete;
  ShmemInode& operator=(const ShmemInode&) = delete;

  struct inode* inode() {
    return &vfs_inode;
  }
  ShmemSb& sb() { return *sb_; }

  // ---- Inspection ----
  unsigned int folio_order() const { return order_; }
  bool hugetlb() const { return hstate_ >= 0; }
  unsigned int Seals() const;
  bool Frozen() const;
  loff_t Size() const { return i_size_read(&vfs_inode); }
  // Pages and folios in the page cache.
  uint64_t CachedPages() const;
  uint64_t CachedFolios() const;
  // First page index of every cached folio, ascending.
  std::vector<pgoff_t> FolioIndices() const;
  // The folio holding page |index| (no reference taken), or nullptr.
  struct folio* PeekFolio(pgoff_t index) const;
  // Writable shared mappings (> 0), or -1 once F_SEAL_WRITE denied them.
  long MmapWritable() const;
  // Cache entries aligned, disjoint, consistent with their struct pages
  // (mapping, index, refcount >= 1, charged) and with alloced / nrpages.
  // Adds each folio's pages to (*charges)[memcg] when |charges| is given.
  absl::Status Validate(std::map<unsigned long, uint64_t>* charges = nullptr) const;

  // ---- Backends (file operations and kernel face) ----
  ssize_t Read(struct file* file, char* buf, size_t count, loff_t* pos);
  ssize_t Write(struct file* file, const char* buf, size_t count, loff_t* pos);
  loff_t Llseek(struct file* file, loff_t offset, int whence);
  int SetSize(loff_t size);
  long Fallocate(int mode, loff_t offset, loff_t len);
  int AddSeals(struct file* file, unsigned int seals);
  void Freeze(bool freeze);
  // shmem_set_luo_hook's backend (nullptr clears it).
  void SetLuoHook(const struct shmem_luo_hook* hook, void* data);
  // shmem_get_folio: see linux/shmem_fs.h. Takes a reference; the folio is
  // not locked here (the kernel-face wrapper locks it).
  int GetFolio(pgoff_t index, enum sgp_type sgp, unsigned long memcg, struct folio** out);
  int AddFolio(struct folio* folio, pgoff_t index);
  // Up to |max| folios overlapping [*start, end] with references; see
  // filemap_get_folios.
  unsigned GetFolios(pgoff_t* start, pgoff_t end, bool contig, struct folio** out, unsigned max);
  void TruncateRange(loff_t lstart, loff_t lend);
  // Takes |folio| out of the cache (dropping the cache's reference);
  // false if it is not this inode's folio at its index.
  bool RemoveFolio(struct folio* folio);
  long PinFolios(loff_t start, loff_t end, struct folio** folios, unsigned int max_folios,
                 pgoff_t* offset, unsigned long memcg);
  // The page fault at |index|: *out = the page's host address. -EFAULT
  // beyond EOF (SIGBUS), -ENOMEM when allocation fails (VM_FAULT_OOM).
  int Fault(pgoff_t index, bool write, unsigned long memcg, void** out);
  // i_mmap_writable: a new shared writable mapping (-EPERM once denied by
  // F_SEAL_WRITE) and its removal.
  int MapWritable();
  void UnmapWritable();
  // Frees every folio (i_evict).
  void Evict();

  // inode_lock / inode_unlock / inode_trylock. The owner is recorded so
  // that shmem_freeze can check its caller holds the lock.
  void LockInode() ABSL_EXCLUSIVE_LOCK_FUNCTION(rwsem_);
  void UnlockInode() ABSL_UNLOCK_FUNCTION(rwsem_);
  bool TryLockInode() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true, rwsem_);
  bool InodeLockedByCaller() const;

 private:
  using Cache = absl::btree_map<pgoff_t, struct folio*>;

  Cache::iterator FindLocked(pgoff_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Cache::const_iterator FindLocked(pgoff_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Allocates, charges and inserts the folio that will hold |index| (at
  // the inode's order when that fits between its neighbours, else order 0).
  int AllocFolioLocked(pgoff_t index, unsigned long memcg, bool uptodate, struct folio** out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int AllocHugetlbFolioLocked(pgoff_t index, unsigned long memcg, struct folio** out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts a freshly allocated, charged |folio| at |start| and tells the
  // LUO hook of a preserved mapping; the hook's error removes it again (and
  // is returned). 0 with *out.
  int AddNewFolioLocked(struct folio* folio, pgoff_t start, struct folio** out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns the folio holding |index|, allocating per |sgp|; no reference.
  int GetFolioLocked(pgoff_t index, enum sgp_type sgp, unsigned long memcg, struct folio** out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InsertLocked(struct folio* folio, pgoff_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Cache::iterator DeleteLocked(Cache::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TruncateRangeLocked(loff_t lstart, loff_t lend) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces a folio sitting in a CMA pageblock by a copy outside CMA.
  int MigrateOutOfCmaLocked(Cache::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<ShmemSb> sb_;
  const unsigned int order_;
  const int hstate_;  // >= 0: hugetlbfs
  const struct shmem_luo_hook* luo_hook_ ABSL_GUARDED_BY(mu_) = nullptr;
  void* luo_hook_data_ ABSL_GUARDED_BY(mu_) = nullptr;
  // i_rwsem: serializes size, seal and frozen-flag changes (outer).
  mutable absl::Mutex rwsem_;
  std::atomic<std::thread::id> rwsem_owner_{};
  // The i_pages lock: the cache, seals, flags, i_size updates (inner).
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(rwsem_);
  Cache cache_ ABSL_GUARDED_BY(mu_);
  long mmap_writable_ ABSL_GUARDED_BY(mu_) = 0;
};

// A MAP_SHARED mapping of a shmem file from offset 0 (the simulated VMA).
// It holds a file reference until destroyed (munmap) or revoked at VFS
// teardown. Faults charge the mapping process's memcg.
class ShmemMapping {
 public:
  ~ShmemMapping();
  ShmemMapping(const ShmemMapping&) = delete;
  ShmemMapping& operator=(const ShmemMapping&) = delete;

  // The page fault for page |index| of the file: *out = the host address of
  // the page, allocated (zeroed) on first touch. -EFAULT outside the mapping
  // or at/after EOF (SIGSEGV / SIGBUS), -EACCES for a write to a read-only
  // mapping, -ENOMEM (VM_FAULT_OOM), -EFAULT once revoked. The pointer
  // stays valid until the page leaves the cache (truncate, punch, migration
  // when pinned) or the kernel dies.
  int Fault(pgoff_t index, bool write, void** out);
  bool writable() const { return writable_; }
  size_t length() const { return length_; }
  bool revoked() const;

 private:
  friend int ShmemMmap(Process& process, int fd, size_t length, bool writable,
                       std::unique_ptr<ShmemMapping>* out);
  ShmemMapping(std::shared_ptr<ShmemMappingState> state, size_t length, bool writable,
               unsigned long memcg);

  std::shared_ptr<ShmemMappingState> state_;
  const size_t length_;
  const bool writable_;
  const unsigned long memcg_;
};

// mmap(NULL, length, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
// fd, 0). Errors in the kernel's order: -EINVAL (length 0), -EBADF, -ENODEV
// (not a shmem file), -EACCES (file not open for reading; writable without
// FMODE_WRITE), -EPERM (writable and F_SEAL_WRITE / F_SEAL_FUTURE_WRITE
// set, or writable mappings denied), -ESRCH (process exited).
int ShmemMmap(Process& process, int fd, size_t length, bool writable,
              std::unique_ptr<ShmemMapping>* out);

// The per-kernel shmem state. Created on first use for the running kernel's
// Vfs and destroyed with it.
class ShmemSb {
 public:
  // The running kernel's shmem state, created if needed; nullptr when no
  // Vfs exists. CurrentIfExists never creates.
  static std::shared_ptr<ShmemSb> Current();
  static std::shared_ptr<ShmemSb> CurrentIfExists();

  explicit ShmemSb(KernelContext& ctx);
  ~ShmemSb();
  ShmemSb(const ShmemSb&) = delete;
  ShmemSb& operator=(const ShmemSb&) = delete;

  KernelContext& ctx() { return ctx_; }

  // Pages charged to |memcg| (page-cache folios, and charged folios not yet
  // inserted that are still allocated).
  uint64_t ChargedPages(unsigned long memcg);
  // Every memcg with a non-zero charge.
  std::map<unsigned long, uint64_t> ChargedPagesByMemcg();
  // Pages held by every shmem page cache of this kernel.
  uint64_t CachedPages() const;
  int64_t LiveInodes() const;
  int64_t LiveMappings() const;
  // Bytes copied by migrating folios out of CMA (KHO scratch) pageblocks
  // for long-term pins, since this kernel booted.
  uint64_t MigratedBytes() const { return migrated_bytes_.load(std::memory_order_relaxed); }
  void AddMigratedBytes(uint64_t bytes) {
    migrated_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
  // Every live inode valid, and the memcg counters equal to a recount.
  absl::Status Validate();

  // ---- Backends ----
  // Charges |folio| to |memcg|: -ENOMEM when |use_fault_point| and the
  // fault point "mem_cgroup_charge" fires; -EINVAL (WARN) if it is charged.
  int Charge(struct folio* folio, unsigned long memcg, bool use_fault_point);
  void Uncharge(struct folio* folio);
  // Moves the charge of a charged folio to |memcg|.
  void Recharge(struct folio* folio, unsigned long memcg);
  // The page cache took / dropped a charged folio.
  void CacheInsert(struct folio* folio);
  void CacheRemove(struct folio* folio);
  void AddInode(ShmemInode* inode);
  void RemoveInode(ShmemInode* inode, uint64_t cached_pages);
  void AddMapping(const std::shared_ptr<ShmemMappingState>& state);
  void RemoveMapping(const ShmemMappingState* state);
  // VFS teardown: revokes every mapping (dropping its file reference).
  void Teardown();

 private:
  struct Loose {
    unsigned long memcg;
    uint64_t pages;
  };
  void SubLocked(unsigned long memcg, uint64_t pages) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReapLooseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  KernelContext& ctx_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<unsigned long, uint64_t> charged_ ABSL_GUARDED_BY(mu_);
  // Charged folios outside any page cache, by head page: their charge
  // ends when they are freed, which the allocator does not report, so they
  // are checked (page still charged to the same memcg and referenced) on
  // every query.
  absl::flat_hash_map<struct page*, Loose> loose_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<ShmemInode*> inodes_ ABSL_GUARDED_BY(mu_);
  uint64_t cached_pages_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<ShmemMappingState>> mappings_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> migrated_bytes_{0};
};

// The running kernel's charge of |memcg| in pages (0 with no shmem state).
uint64_t MemcgChargedPages(unsigned long memcg);
// Charges / uncharges / re-charges a folio in the running kernel (C++ face
// of mem_cgroup_charge; Recharge moves an existing charge, e.g. to the
// process that took over a memfd).
int MemcgCharge(struct folio* folio, unsigned long memcg);
void MemcgUncharge(struct folio* folio);
void MemcgRecharge(struct folio* folio, unsigned long memcg);

}  // namespace khosim::fs

#endif  // KHOSIM_FS_SHMEM_H_

// Kernel face of shmem and memfd (khosim/linux/shmem_fs.h,
// khosim/linux/memfd.h): thin wrappers that find the ShmemInode behind a
// struct inode / file / address_space and call its backend, plus the folio
// pin and memcg entry points. Every function resolves to the running kernel
// (the current KernelContext) and the calling process (memcg).
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "khosim/fs/shmem.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/hugetlb.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/mm/mm.h"

using khosim::fs::CurrentMemcg;
using khosim::fs::ShmemInode;

namespace {

// The kernel's O_LARGEFILE (asm-generic 00100000). glibc defines it as 0 on
// 64-bit hosts, but F_GETFL on a memfd shows the kernel's bit.
constexpr unsigned int kKernelOLargefile = 0100000;

ShmemInode* ShmemOfMapping(const struct address_space* mapping) {
  return shmem_mapping(mapping) ? ShmemInode::FromInode(mapping->host) : nullptr;
}

}  // namespace

// ---- linux/fs.h pieces ------------------------------------------------------

loff_t vfs_setpos(struct file* file, loff_t offset, loff_t maxsize) {
  if (offset < 0 || offset > maxsize) return -EINVAL;
  file->f_pos = offset;
  return offset;
}

// The lock outlives these calls (the kernel's lock/unlock pairing), which
// the static analysis cannot follow.
void inode_lock(struct inode* inode) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ShmemInode* shmem = ShmemInode::FromInode(inode);
  if (WARN_ON_ONCE(shmem == nullptr)) return;
  shmem->LockInode();
}

void inode_unlock(struct inode* inode) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ShmemInode* shmem = ShmemInode::FromInode(inode);
  if (WARN_ON_ONCE(shmem == nullptr)) return;
  shmem->UnlockInode();
}

bool inode_trylock(struct inode* inode) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ShmemInode* shmem = ShmemInode::FromInode(inode);
  if (WARN_ON_ONCE(shmem == nullptr)) return false;
  return shmem->TryLockInode();
}

// ---- shmem ------------------------------------------------------------------

bool shmem_mapping(const struct address_space* mapping) {
  return mapping != nullptr && mapping->a_ops == &shmem_aops;
}

bool shmem_file(const struct file* file) {
  return file != nullptr && file->f_inode != nullptr && shmem_mapping(file->f_inode->i_mapping);
}

void shmem_freeze(struct inode* inode, bool freeze) {
  ShmemInode* shmem = ShmemInode::FromInode(inode);
  if (WARN_ON_ONCE(shmem == nullptr)) return;
  WARN_ON_ONCE(!shmem->InodeLockedByCaller());
  shmem->Freeze(freeze);
}

void shmem_set_luo_hook(struct inode* inode, const struct shmem_luo_hook* hook, void* data) {
  ShmemInode* shmem = ShmemInode::FromInode(inode);
  if (WARN_ON_ONCE(shmem == nullptr)) return;
  WARN_ON_ONCE(!shmem->InodeLockedByCaller());
  shmem->SetLuoHook(hook, data);
}

struct file* shmem_file_setup(const char* name, loff_t size, unsigned long flags) {
  if (size < 0 || size > MAX_LFS_FILESIZE) return static_cast<struct file*>(ERR_PTR(-EINVAL));
  khosim::fs::ShmemOptions options;
  options.size = size;
  return khosim::fs::ShmemFileSetup(absl::StrCat("/", name == nullptr ? "" : name, " (deleted)"),
                                    options);
}

int shmem_get_folio(struct inode* inode, pgoff_t index, loff_t write_end, struct folio** foliop,
                    enum sgp_type sgp) {
  *foliop = nullptr;
  ShmemInode* shmem = ShmemInode::FromInode(inode);
  if (WARN_ON_ONCE(shmem == nullptr)) return -EINVAL;
  struct folio* folio = nullptr;
  const int err = shmem->GetFolio(index, sgp, CurrentMemcg(), &folio);
  if (err != 0) return err;
  if (folio != nullptr) folio_lock(folio);
  *foliop = folio;
  return 0;
}

struct folio* shmem_read_folio(struct address_space* mapping, pgoff_t index) {
  ShmemInode* shmem = ShmemOfMapping(mapping);
  if (WARN_ON_ONCE(shmem == nullptr)) return static_cast<struct folio*>(ERR_PTR(-EINVAL));
  struct folio* folio = nullptr;
  const int err = shmem->GetFolio(index, SGP_CACHE, CurrentMemcg(), &folio);
  if (err != 0) return static_cast<struct folio*>(ERR_PTR(err));
  return folio;
}

int shmem_add_to_page_cache(struct folio* folio, struct address_space* mapping, pgoff_t index,
                            void* expected, gfp_t gfp) {
  ShmemInode* shmem = ShmemOfMapping(mapping);
  if (WARN_ON_ONCE(shmem == nullptr)) return -EINVAL;
  if (expected != nullptr) return -EEXIST;  // no swap entries to replace
  khosim::KernelContext& ctx = khosim::RequireKernelContext();
  if (ctx.ShouldFail("shmem_add_to_page_cache")) return -ENOMEM;
  return shmem->AddFolio(folio, index);
}

int shmem_inode_acct_blocks(struct inode* inode, long pages) {
  if (WARN_ON_ONCE(ShmemInode::FromInode(inode) == nullptr)) return -EINVAL;
  if (khosim::RequireKernelContext().ShouldFail("shmem_inode_acct_blocks")) return -ENOSPC;
  return 0;
}

void shmem_recalc_inode(struct inode* inode, long alloced, long swapped) {
  WARN_ON_ONCE(ShmemInode::FromInode(inode) == nullptr);
  WARN_ON_ONCE(swapped != 0);
}

void shmem_truncate_range(struct inode* inode, loff_t lstart, loff_t lend) {
  ShmemInode* shmem = ShmemInode::FromInode(inode);
  if (WARN_ON_ONCE(shmem == nullptr)) return;
  shmem->TruncateRange(lstart, lend);
}

// ---- page cache lookup ------------------------------------------------------

void filemap_remove_folio(struct folio* folio) {
  ShmemInode* shmem = ShmemOfMapping(folio_mapping(folio));
  if (WARN_ON_ONCE(shmem == nullptr)) return;
  WARN_ON_ONCE(!folio_test_locked(folio));
  WARN_ON_ONCE(!shmem->RemoveFolio(folio));
}

struct folio* filemap_get_folio(struct address_space* mapping, pgoff_t index) {
  ShmemInode* shmem = ShmemOfMapping(mapping);
  struct folio* folio = nullptr;
  pgoff_t start = index;
  if (shmem == nullptr || shmem->GetFolios(&start, index, false, &folio, 1) == 0) {
    return static_cast<struct folio*>(ERR_PTR(-ENOENT));
  }
  return folio;
}

void folio_batch_release(struct folio_batch* fbatch) {
  for (unsigned i = 0; i < fbatch->nr; ++i) folio_put(fbatch->folios[i]);
  folio_batch_init(fbatch);
}

namespace {

unsigned GetFolios(struct address_space* mapping, pgoff_t* start, pgoff_t end,
                   struct folio_batch* fbatch, bool contig) {
  folio_batch_init(fbatch);
  ShmemInode* shmem = ShmemOfMapping(mapping);
  if (WARN_ON_ONCE(shmem == nullptr)) return 0;
  fbatch->nr = static_cast<unsigned char>(
      shmem->GetFolios(start, end, contig, fbatch->folios, PAGEVEC_SIZE));
  return fbatch->nr;
}

}  // namespace

unsigned filemap_get_folios(struct address_space* mapping, pgoff_t* start, pgoff_t end,
                            struct folio_batch* fbatch) {
  return GetFolios(mapping, start, end, fbatch, /*contig=*/false);
}

unsigned filemap_get_folios_contig(struct address_space* mapping, pgoff_t* start, pgoff_t end,
                                   struct folio_batch* fbatch) {
  return GetFolios(mapping, start, end, fbatch, /*contig=*/true);
}

// ---- folios -----------------------------------------------------------------

void folio_lock(struct folio* folio) {
  while (!folio_trylock(folio)) std::this_thread::yield();
}

void folio_zero_range(struct folio* folio, size_t offset, size_t len) {
  if (len == 0) return;
  if (WARN_ON_ONCE(offset > folio_size(folio) || len > folio_size(folio) - offset)) return;
  khosim::mm::Mm::Current().ZeroPhys(khosim::PhysAddr(folio_phys(folio) + offset), len);
}

// ---- memcg ------------------------------------------------------------------

int mem_cgroup_charge(struct folio* folio, struct mm_struct* mm, gfp_t gfp) {
  WARN_ON_ONCE(mm != nullptr);
  return khosim::fs::MemcgCharge(folio, CurrentMemcg());
}

void mem_cgroup_uncharge(struct folio* folio) { khosim::fs::MemcgUncharge(folio); }

// ---- memfd ------------------------------------------------------------------

long memfd_fcntl(struct file* file, unsigned int cmd, unsigned int arg) {
  switch (cmd) {
    case F_ADD_SEALS:
      return memfd_add_seals(file, arg);
    case F_GET_SEALS:
      return memfd_get_seals(file);
    default:
      return -EINVAL;
  }
}

bool is_file_hugepages(const struct file* file) {
  return file != nullptr && file->f_inode != nullptr && file->f_inode->i_mapping != nullptr &&
         file->f_inode->i_mapping->a_ops == &hugetlbfs_aops;
}

unsigned int hugetlb_file_order(struct file* file) {
  ShmemInode* inode = is_file_hugepages(file) ? ShmemInode::FromFile(file) : nullptr;
  if (WARN_ON_ONCE(inode == nullptr)) return 0;
  return inode->folio_order();
}

int mem_cgroup_charge_hugetlb(struct folio* folio, gfp_t /*gfp*/) {
  return khosim::fs::MemcgCharge(folio, CurrentMemcg());
}

int hugetlb_add_to_page_cache(struct folio* folio, struct address_space* mapping, pgoff_t idx) {
  if (mapping == nullptr || mapping->a_ops != &hugetlbfs_aops) return -EINVAL;
  ShmemInode* inode = ShmemInode::FromInode(mapping->host);
  if (WARN_ON_ONCE(inode == nullptr)) return -EINVAL;
  if (khosim::RequireKernelContext().ShouldFail("hugetlb_add_to_page_cache")) return -ENOMEM;
  return inode->AddFolio(folio, idx);
}

struct file* memfd_alloc_file(const char* name, unsigned int flags) {
  khosim::fs::ShmemOptions options;
  if ((flags & MFD_HUGETLB) != 0) {
    // hugetlb_file_setup: the size is 2^bits, 0 the default hstate; a size
    // with no registered hstate (no hugepagesz= for it) is -ENODEV.
    khosim::mm::Hugetlb& hugetlb = khosim::mm::Mm::Current().hugetlb();
    const unsigned int log = (flags >> MFD_HUGE_SHIFT) & MFD_HUGE_MASK;
    const int hstate =
        log == 0 ? hugetlb.default_hstate() : hugetlb.HstateForSize(uint64_t{1} << log);
    if (hstate < 0 || !hugetlb.Info(hstate).registered) {
      return static_cast<struct file*>(ERR_PTR(-ENODEV));
    }
    options.hstate = hstate;
  }
  if ((flags & MFD_NOEXEC_SEAL) != 0) {
    options.mode &= static_cast<umode_t>(~0111);
    options.seals = F_SEAL_EXEC;
  } else if ((flags & MFD_ALLOW_SEALING) != 0) {
    options.seals = 0;
  }
  struct file* file = khosim::fs::ShmemFileSetup(
      absl::StrCat("/", name == nullptr ? "" : name, " (deleted)"), options);
  if (!IS_ERR(file)) file->f_flags |= kKernelOLargefile;
  return file;
}

unsigned int* memfd_file_seals_ptr(struct file* file) {
  ShmemInode* shmem = ShmemInode::FromFile(file);
  return shmem == nullptr ? nullptr : &shmem->seals;
}

int memfd_get_seals(struct file* file) {
  ShmemInode* shmem = ShmemInode::FromFile(file);
  return shmem == nullptr ? -EINVAL : static_cast<int>(shmem->Seals());
}

int memfd_add_seals(struct file* file, unsigned int seals) {
  if ((file->f_mode & FMODE_WRITE) == 0) return -EPERM;
  if ((seals & ~static_cast<unsigned int>(F_ALL_SEALS)) != 0) return -EINVAL;
  ShmemInode* shmem = ShmemInode::FromFile(file);
  if (shmem == nullptr) return -EINVAL;
  return shmem->AddSeals(file, seals);
}

struct folio* memfd_alloc_folio(struct file* memfd, pgoff_t idx) {
  ShmemInode* shmem = ShmemInode::FromFile(memfd);
  if (shmem == nullptr) return static_cast<struct folio*>(ERR_PTR(-EINVAL));
  return shmem_read_folio(&shmem->i_data, idx);
}

long memfd_pin_folios(struct file* memfd, loff_t start, loff_t end, struct folio** folios,
                      unsigned int max_folios, pgoff_t* offset) {
  if (start < 0 || start > end || max_folios == 0) return -EINVAL;
  ShmemInode* shmem = ShmemInode::FromFile(memfd);
  if (shmem == nullptr) return -EINVAL;
  return shmem->PinFolios(start, end, folios, max_folios, offset, CurrentMemcg());
}

void unpin_folio(struct folio* folio) {
  const int old = __atomic_fetch_sub(&folio->page.pincount, 1, __ATOMIC_ACQ_REL);
  if (WARN_ON_ONCE(old <= 0)) {
    __atomic_fetch_add(&folio->page.pincount, 1, __ATOMIC_ACQ_REL);
    return;
  }
  if (old == 1) khosim_folio_clear(folio, PG_pinned);
  folio_put(folio);
}

int try_grab_folio(struct folio* folio, int refs, unsigned int flags) {
  if (flags != FOLL_PIN || refs < 1) return -EINVAL;
  for (int i = 0; i < refs; ++i) {
    folio_get(folio);
    __atomic_fetch_add(&folio->page.pincount, 1, __ATOMIC_ACQ_REL);
  }
  khosim_folio_test_and_set(folio, PG_pinned);
  return 0;
}

void unpin_folios(struct folio** folios, unsigned long nfolios) {
  for (unsigned long i = 0; i < nfolios; ++i) unpin_folio(folios[i]);
}

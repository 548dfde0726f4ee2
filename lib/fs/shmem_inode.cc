// ShmemInode: the page cache of one shmem or hugetlbfs inode - lookup,
// allocation, insertion and removal of folios, truncation, migration out of
// CMA, pins, faults, the inode lock and the LUO hook.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/fs/shmem.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/hugetlb.h"
#include "khosim/linux/uaccess.h"
#include "khosim/mm/mm.h"
#include "shmem_internal.h"

namespace khosim::fs {

void ShmemEvictInode(struct inode* inode) { ShmemInode::FromInode(inode)->Evict(); }
void ShmemFreeInode(struct inode* inode) { delete ShmemInode::FromInode(inode); }

// ---- ShmemInode -------------------------------------------------------------

ShmemInode* ShmemInode::FromInode(struct inode* inode) {
  if (inode == nullptr || inode->i_mapping == nullptr) return nullptr;
  if (!shmem_mapping(inode->i_mapping) && inode->i_mapping->a_ops != &hugetlbfs_aops) {
    return nullptr;
  }
  return static_cast<ShmemInode*>(SHMEM_I(inode));
}

ShmemInode* ShmemInode::FromFile(const struct file* file) {
  return file == nullptr ? nullptr : FromInode(file->f_inode);
}

ShmemInode::ShmemInode(std::shared_ptr<ShmemSb> sb, const ShmemOptions& options)
    : shmem_inode_info(), sb_(std::move(sb)), order_(options.folio_order), hstate_(options.hstate) {
  seals = options.seals;
  flags = SHMEM_F_NORESERVE;
  i_data.host = &vfs_inode;
  i_data.a_ops = hstate_ >= 0 ? &hugetlbfs_aops : &shmem_aops;
  i_data.gfp_mask = hstate_ >= 0 ? GFP_HIGHUSER : GFP_HIGHUSER_MOVABLE;
  Vfs* vfs = Vfs::CurrentOrNull();
  vfs_inode.i_ino = vfs != nullptr ? vfs->NextIno() : 0;
  vfs_inode.i_mode = options.mode;
  vfs_inode.i_nlink = options.nlink;
  vfs_inode.i_size = options.size;
  vfs_inode.i_fop = &shmem_file_operations;
  vfs_inode.i_mapping = &i_data;
  atomic_long_set(&vfs_inode.i_count, 1);
  vfs_inode.i_evict = &ShmemEvictInode;
  vfs_inode.i_free = &ShmemFreeInode;
  if (vfs != nullptr) vfs->CountInode(1);
  sb_->AddInode(this);
}

ShmemInode::~ShmemInode() {
  // Evict emptied the cache unless the kernel is dead, in which case the
  // folios are dead memory: drop host state only.
  uint64_t leftover = 0;
  {
    absl::MutexLock lock(&mu_);
    leftover = alloced;
    cache_.clear();
  }
  sb_->RemoveInode(this, leftover);
}

unsigned int ShmemInode::Seals() const {
  absl::MutexLock lock(&mu_);
  return seals;
}

bool ShmemInode::Frozen() const {
  absl::MutexLock lock(&mu_);
  return (flags & SHMEM_F_MAPPING_FROZEN) != 0;
}

uint64_t ShmemInode::CachedPages() const {
  absl::MutexLock lock(&mu_);
  return alloced;
}

uint64_t ShmemInode::CachedFolios() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

std::vector<pgoff_t> ShmemInode::FolioIndices() const {
  absl::MutexLock lock(&mu_);
  std::vector<pgoff_t> out;
  out.reserve(cache_.size());
  for (const auto& [index, folio] : cache_) out.push_back(index);
  return out;
}

struct folio* ShmemInode::PeekFolio(pgoff_t index) const {
  absl::MutexLock lock(&mu_);
  auto it = FindLocked(index);
  return it == cache_.end() ? nullptr : it->second;
}

long ShmemInode::MmapWritable() const {
  absl::MutexLock lock(&mu_);
  return mmap_writable_;
}

absl::Status ShmemInode::Validate(std::map<unsigned long, uint64_t>* charges) const {
  absl::MutexLock lock(&mu_);
  uint64_t pages = 0;
  pgoff_t next_free = 0;
  for (const auto& [index, folio] : cache_) {
    const uint64_t nr = folio_nr_pages(folio);
    const std::string where = absl::StrCat("shmem inode ", vfs_inode.i_ino, " index ", index);
    if ((index & (nr - 1)) != 0) return absl::InternalError(where + ": misaligned folio");
    if (index < next_free) return absl::InternalError(where + ": overlaps its predecessor");
    if (folio->page.mapping != &i_data) return absl::InternalError(where + ": wrong mapping");
    if (folio->page.index != index) return absl::InternalError(where + ": wrong page index");
    if (folio_ref_count(folio) < 1) return absl::InternalError(where + ": no reference");
    if (folio->page.memcg == 0) return absl::InternalError(where + ": uncharged");
    if (charges != nullptr) (*charges)[folio->page.memcg] += nr;
    pages += nr;
    next_free = index + nr;
  }
  if (pages != alloced || pages != i_data.nrpages) {
    return absl::InternalError(absl::StrCat("shmem inode ", vfs_inode.i_ino, ": ", pages,
                                            " pages cached, alloced ", alloced, ", nrpages ",
                                            i_data.nrpages));
  }
  return absl::OkStatus();
}

ShmemInode::Cache::iterator ShmemInode::FindLocked(pgoff_t index) {
  auto it = cache_.upper_bound(index);
  if (it == cache_.begin()) return cache_.end();
  --it;
  return index - it->first < folio_nr_pages(it->second) ? it : cache_.end();
}

ShmemInode::Cache::const_iterator ShmemInode::FindLocked(pgoff_t index) const {
  auto it = cache_.upper_bound(index);
  if (it == cache_.begin()) return cache_.end();
  --it;
  return index - it->first < folio_nr_pages(it->second) ? it : cache_.end();
}

void ShmemInode::InsertLocked(struct folio* folio, pgoff_t index) {
  folio->page.mapping = &i_data;
  folio->page.index = index;
  cache_.emplace(index, folio);
  const unsigned long nr = folio_nr_pages(folio);
  alloced += nr;
  i_data.nrpages += nr;
  sb_->CacheInsert(folio);
}

ShmemInode::Cache::iterator ShmemInode::DeleteLocked(Cache::iterator it) {
  struct folio* folio = it->second;
  const unsigned long nr = folio_nr_pages(folio);
  it = cache_.erase(it);
  alloced -= nr;
  i_data.nrpages -= nr;
  sb_->CacheRemove(folio);
  folio->page.mapping = nullptr;
  folio_put(folio);  // the cache's reference; a pin keeps the folio alive
  return it;
}

int ShmemInode::AllocFolioLocked(pgoff_t index, unsigned long memcg, bool uptodate,
                                 struct folio** out) {
  if (hstate_ >= 0) return AllocHugetlbFolioLocked(index, memcg, out);
  unsigned int order = order_;
  pgoff_t nr = pgoff_t{1} << order;
  pgoff_t start = index & ~(nr - 1);
  if (order > 0) {
    // A smaller folio inserted from outside may sit inside the aligned
    // range: fall back to a single page then.
    auto next = cache_.lower_bound(start);
    bool overlap = next != cache_.end() && next->first < start + nr;
    if (!overlap && next != cache_.begin()) {
      auto prev = std::prev(next);
      overlap = prev->first + folio_nr_pages(prev->second) > start;
    }
    if (overlap) {
      order = 0;
      nr = 1;
      start = index;
    }
  }
  // The mapping's mask: GFP_HIGHUSER_MOVABLE, unless a preservation made
  // the mapping unmovable.
  struct folio* folio = folio_alloc(i_data.gfp_mask | __GFP_ZERO, order);
  if (folio == nullptr) return -ENOMEM;
  const int err = sb_->Charge(folio, memcg, /*use_fault_point=*/true);
  if (err != 0) {
    folio_put(folio);
    return err;
  }
  __folio_set_swapbacked(folio);
  if (uptodate) folio_mark_uptodate(folio);
  return AddNewFolioLocked(folio, start, out);
}

int ShmemInode::AddNewFolioLocked(struct folio* folio, pgoff_t start, struct folio** out) {
  InsertLocked(folio, start);
  if (luo_hook_ != nullptr) {
    if (const int hook_err = luo_hook_->folio_added(&vfs_inode, folio, luo_hook_data_);
        hook_err != 0) {
      DeleteLocked(cache_.find(start));
      return hook_err;
    }
  }
  *out = folio;
  return 0;
}

int ShmemInode::AllocHugetlbFolioLocked(pgoff_t index, unsigned long memcg, struct folio** out) {
  const pgoff_t start = index & ~((pgoff_t{1} << order_) - 1);
  // A pool folio, zeroed (clear_huge_page), so always uptodate.
  struct folio* folio = mm::Mm::Current().hugetlb().Alloc(hstate_);
  if (folio == nullptr) return -ENOSPC;
  const int err = sb_->Charge(folio, memcg, /*use_fault_point=*/true);
  if (err != 0) {
    folio_put(folio);
    return err;
  }
  folio_mark_uptodate(folio);
  return AddNewFolioLocked(folio, start, out);
}

int ShmemInode::GetFolioLocked(pgoff_t index, enum sgp_type sgp, unsigned long memcg,
                               struct folio** out) {
  *out = nullptr;
  if (sgp <= SGP_CACHE && static_cast<uint64_t>(index) >= PagesFor(i_size_read(&vfs_inode))) {
    return -EINVAL;
  }
  auto it = FindLocked(index);
  if (it != cache_.end()) {
    struct folio* folio = it->second;
    if (!folio_test_uptodate(folio)) {
      if (sgp == SGP_READ) return 0;  // a fallocated folio reads as a hole
      if (sgp != SGP_WRITE) {
        folio_zero_range(folio, 0, folio_size(folio));
        folio_mark_uptodate(folio);
      }
    }
    *out = folio;
    return 0;
  }
  if (sgp == SGP_READ) return 0;
  if (sgp == SGP_NOALLOC) return -ENOENT;
  return AllocFolioLocked(index, memcg, /*uptodate=*/sgp == SGP_CACHE, out);
}

void ShmemInode::TruncateRangeLocked(loff_t lstart, loff_t lend) {
  if (lstart < 0) lstart = 0;
  const uint64_t first = static_cast<uint64_t>(lstart);
  const uint64_t last = lend < 0 ? ~uint64_t{0} : static_cast<uint64_t>(lend);
  if (first > last) return;
  const pgoff_t first_index = first >> PAGE_SHIFT;
  auto it = cache_.lower_bound(first_index);
  if (it != cache_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + folio_nr_pages(prev->second) > first_index) it = prev;
  }
  while (it != cache_.end()) {
    struct folio* folio = it->second;
    const uint64_t fs = static_cast<uint64_t>(it->first) << PAGE_SHIFT;
    const uint64_t fe = fs + folio_size(folio) - 1;
    if (fs > last) break;
    const uint64_t a = std::max(fs, first);
    const uint64_t b = std::min(fe, last);
    if (a == fs && b == fe) {
      it = DeleteLocked(it);
      continue;
    }
    folio_zero_range(folio, a - fs, b - a + 1);
    ++it;
  }
}

int ShmemInode::MigrateOutOfCmaLocked(Cache::iterator it) {
  struct folio* old = it->second;
  // Someone else holds it (another pin, a transient reference): the
  // kernel's migration would fail the same way.
  if (folio_ref_count(old) != 1 || folio_maybe_dma_pinned(old)) return -ENOMEM;
  struct folio* folio = folio_alloc(GFP_HIGHUSER, ::folio_order(old));
  if (folio == nullptr) return -ENOMEM;
  std::memcpy(folio_address(folio), folio_address(old), folio_size(old));
  sb_->AddMigratedBytes(folio_size(old));
  constexpr unsigned long kCarried =
      (1UL << PG_uptodate) | (1UL << PG_dirty) | (1UL << PG_swapbacked) | (1UL << PG_lru);
  __atomic_fetch_or(&folio->page.flags, old->page.flags & kCarried, __ATOMIC_RELEASE);
  // The charge moves with the data (mem_cgroup_migrate); counters are per
  // memcg, so they do not change.
  folio->page.memcg = old->page.memcg;
  old->page.memcg = 0;
  folio->page.mapping = &i_data;
  folio->page.index = old->page.index;
  old->page.mapping = nullptr;
  it->second = folio;
  folio_put(old);
  return 0;
}

void ShmemInode::LockInode() {
  rwsem_.Lock();
  rwsem_owner_.store(std::this_thread::get_id());
}

void ShmemInode::UnlockInode() {
  rwsem_owner_.store(std::thread::id());
  rwsem_.Unlock();
}

bool ShmemInode::TryLockInode() {
  if (!rwsem_.TryLock()) return false;
  rwsem_owner_.store(std::this_thread::get_id());
  return true;
}

bool ShmemInode::InodeLockedByCaller() const {
  return rwsem_owner_.load() == std::this_thread::get_id();
}

void ShmemInode::SetLuoHook(const struct shmem_luo_hook* hook, void* data) {
  absl::MutexLock lock(&mu_);
  luo_hook_ = hook;
  luo_hook_data_ = data;
}

void ShmemInode::Freeze(bool freeze) {
  absl::MutexLock lock(&mu_);
  if (freeze) {
    flags |= SHMEM_F_MAPPING_FROZEN;
  } else {
    flags &= ~SHMEM_F_MAPPING_FROZEN;
  }
}

int ShmemInode::GetFolio(pgoff_t index, enum sgp_type sgp, unsigned long memcg,
                         struct folio** out) {
  absl::MutexLock lock(&mu_);
  const int err = GetFolioLocked(index, sgp, memcg, out);
  if (err == 0 && *out != nullptr) folio_get(*out);
  return err;
}

int ShmemInode::AddFolio(struct folio* folio, pgoff_t index) {
  const pgoff_t nr = folio_nr_pages(folio);
  if ((index & (nr - 1)) != 0) return -EINVAL;
  if (WARN_ON_ONCE(folio->page.mapping != nullptr)) return -EINVAL;
  absl::MutexLock lock(&mu_);
  auto next = cache_.lower_bound(index);
  if (next != cache_.end() && next->first < index + nr) return -EEXIST;
  if (next != cache_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + folio_nr_pages(prev->second) > index) return -EEXIST;
  }
  if (WARN_ON_ONCE(!folio_memcg_charged(folio))) {
    const int err = sb_->Charge(folio, CurrentMemcg(), /*use_fault_point=*/false);
    if (err != 0) return err;
  }
  folio_get(folio);
  InsertLocked(folio, index);
  return 0;
}

unsigned ShmemInode::GetFolios(pgoff_t* start, pgoff_t end, bool contig, struct folio** out,
                               unsigned max) {
  absl::MutexLock lock(&mu_);
  unsigned n = 0;
  pgoff_t expect = *start;
  if (expect > end) return 0;
  auto it = FindLocked(expect);
  if (it == cache_.end()) it = cache_.lower_bound(expect);
  bool stopped = false;
  while (it != cache_.end() && it->first <= end) {
    if (n == max || (contig && it->first > expect)) {
      stopped = true;
      break;
    }
    folio_get(it->second);
    out[n++] = it->second;
    expect = it->first + folio_nr_pages(it->second);
    ++it;
  }
  if (stopped) {
    *start = expect;
  } else {
    *start = end == ~pgoff_t{0} ? end : end + 1;
  }
  return n;
}

bool ShmemInode::RemoveFolio(struct folio* folio) {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(folio_index(folio));
  if (it == cache_.end() || it->second != folio) return false;
  DeleteLocked(it);
  return true;
}

void ShmemInode::TruncateRange(loff_t lstart, loff_t lend) {
  absl::MutexLock lock(&mu_);
  TruncateRangeLocked(lstart, lend);
}

long ShmemInode::PinFolios(loff_t start, loff_t end, struct folio** folios, unsigned int max_folios,
                           pgoff_t* offset, unsigned long memcg) {
  if (start < 0 || start > end || max_folios == 0) return -EINVAL;
  absl::MutexLock lock(&mu_);
  if (end >= i_size_read(&vfs_inode)) return -EINVAL;
  const pgoff_t last = static_cast<uint64_t>(end) >> PAGE_SHIFT;
  unsigned int nr = 0;
  int err = 0;
  for (pgoff_t index = static_cast<uint64_t>(start) >> PAGE_SHIFT;
       index <= last && nr < max_folios;) {
    auto it = FindLocked(index);
    if (it == cache_.end()) {
      // memfd_alloc_folio: a hole gets a zeroed, uptodate folio.
      struct folio* folio = nullptr;
      err = AllocFolioLocked(index, memcg, /*uptodate=*/true, &folio);
      if (err != 0) break;
      it = FindLocked(index);
    }
    // FOLL_LONGTERM: nothing pinned for long may stay in CMA.
    if (InCma(it->second)) {
      err = MigrateOutOfCmaLocked(it);
      if (err != 0) break;
    }
    PinFolio(it->second);
    folios[nr++] = it->second;
    index = it->first + folio_nr_pages(it->second);
  }
  if (err != 0) {
    unpin_folios(folios, nr);
    return err;
  }
  *offset = static_cast<pgoff_t>(offset_in_folio(folios[0], start));
  return nr;
}

int ShmemInode::Fault(pgoff_t index, bool write, unsigned long memcg, void** out) {
  absl::MutexLock lock(&mu_);
  if (static_cast<uint64_t>(index) >= PagesFor(i_size_read(&vfs_inode))) {
    return -EFAULT;  // SIGBUS
  }
  struct folio* folio = nullptr;
  const int err = GetFolioLocked(index, SGP_CACHE, memcg, &folio);
  if (err != 0) return err == -EINVAL ? -EFAULT : err;
  if (write) folio_mark_dirty(folio);
  *out = PageAddress(folio, index - folio_index(folio));
  return 0;
}

int ShmemInode::MapWritable() {
  absl::MutexLock lock(&mu_);
  if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0 || mmap_writable_ < 0) return -EPERM;
  ++mmap_writable_;
  return 0;
}

void ShmemInode::UnmapWritable() {
  absl::MutexLock lock(&mu_);
  WARN_ON_ONCE(mmap_writable_ <= 0);
  --mmap_writable_;
}

void ShmemInode::Evict() {
  absl::MutexLock lock(&mu_);
  TruncateRangeLocked(0, -1);
}

}  // namespace khosim::fs

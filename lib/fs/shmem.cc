// shmem: the page cache of tmpfs / memfd inodes, their file operations, the
// per-kernel shmem state (ShmemSb) and shared mappings.
//
// Lifecycle of a shmem inode:
//   ShmemFileSetup (memfd_create, memfd_alloc_file, shmem_file_setup)
//     -> a ShmemInode (i_count 1) and a file on it;
//   read / write / fault / fallocate / shmem_get_folio / memfd_pin_folios
//     fill the cache with zeroed folios charged to the allocating memcg;
//     shmem_add_to_page_cache inserts folios from outside (memfd_luo
//     retrieve); truncate and hole punch remove them;
//   last iput -> i_evict (Evict: every folio leaves the cache and loses its
//     charge and the cache's reference) -> i_free (the host object).
//   At kernel teardown i_evict is skipped: i_free drops host state only.
//
// ShmemSb is created on first use for a Vfs and lives until that Vfs's
// anonymous inode is freed (the last step of Vfs teardown): the Vfs has no
// slot for per-filesystem state, so the shmem layer chains its teardown onto
// that inode's i_free. It is keyed by the anonymous inode, which is unique
// among live Vfs instances even when a new Vfs reuses a dead one's address.
#include "khosim/fs/shmem.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/hugetlb.h"
#include "khosim/linux/uaccess.h"
#include "khosim/mm/mm.h"

namespace khosim::fs {

struct ShmemMappingState {
  absl::Mutex mu;
  struct file* file ABSL_GUARDED_BY(mu) = nullptr;  // nullptr: unmapped or revoked
  bool revoked ABSL_GUARDED_BY(mu) = false;
  KernelContext* ctx = nullptr;
};

namespace {

// rw_verify_area's cap on one read or write.
size_t MaxRwCount() { return static_cast<size_t>(INT_MAX) & PAGE_MASK; }

// Source of zeros for reading holes.
constexpr size_t kZeroBytes = 64 * 1024;
const char kZeros[kZeroBytes] = {};

// Pages needed to hold |bytes| (the first page index at or past EOF).
uint64_t PagesFor(uint64_t bytes) { return (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT; }

char* PageAddress(struct folio* folio, pgoff_t nth) {
  return static_cast<char*>(folio_address(folio)) + nth * PAGE_SIZE;
}

bool InCma(const struct folio* folio) {
  return mm::Mm::Current().pages().PageblockType(Pfn(folio_pfn(folio))) == mm::MigrateType::kCma;
}

void PinFolio(struct folio* folio) {
  folio_get(folio);
  __atomic_fetch_add(&folio->page.pincount, 1, __ATOMIC_ACQ_REL);
  khosim_folio_test_and_set(folio, PG_pinned);
}

// ---- The ShmemSb registry ---------------------------------------------------

struct SbEntry {
  std::shared_ptr<ShmemSb> sb;
  void (*previous_free)(struct inode*);
};

struct Registry {
  absl::Mutex mu;
  absl::flat_hash_map<struct inode*, SbEntry> by_anon_inode ABSL_GUARDED_BY(mu);
};

Registry& registry() {
  static auto* r = new Registry();
  return *r;
}

// Chained onto the Vfs's anonymous inode: runs when the Vfs is torn down.
void AnonInodeFree(struct inode* inode) {
  SbEntry entry{};
  {
    Registry& r = registry();
    absl::MutexLock lock(&r.mu);
    auto it = r.by_anon_inode.find(inode);
    if (it != r.by_anon_inode.end()) {
      entry = std::move(it->second);
      r.by_anon_inode.erase(it);
    }
  }
  if (entry.sb != nullptr) entry.sb->Teardown();
  if (entry.previous_free != nullptr) {
    entry.previous_free(inode);
  } else {
    delete inode;
  }
}

// ---- file_operations --------------------------------------------------------

ssize_t ShmemRead(struct file* file, char* buf, size_t count, loff_t* pos) {
  return ShmemInode::FromFile(file)->Read(file, buf, count, pos);
}
ssize_t ShmemWrite(struct file* file, const char* buf, size_t count, loff_t* pos) {
  return ShmemInode::FromFile(file)->Write(file, buf, count, pos);
}
loff_t ShmemLlseek(struct file* file, loff_t offset, int whence) {
  return ShmemInode::FromFile(file)->Llseek(file, offset, whence);
}
long ShmemFallocate(struct file* file, int mode, loff_t offset, loff_t len) {
  return ShmemInode::FromFile(file)->Fallocate(mode, offset, len);
}
int ShmemSetsize(struct file* file, loff_t size) {
  return ShmemInode::FromFile(file)->SetSize(size);
}
long ShmemFcntl(struct file* file, unsigned int cmd, unsigned long arg) {
  // do_fcntl hands the seal commands an unsigned int.
  return memfd_fcntl(file, cmd, static_cast<unsigned int>(arg));
}

void ShmemEvictInode(struct inode* inode) { ShmemInode::FromInode(inode)->Evict(); }
void ShmemFreeInode(struct inode* inode) { delete ShmemInode::FromInode(inode); }

}  // namespace

}  // namespace khosim::fs

const struct address_space_operations shmem_aops = {"shmem"};
const struct address_space_operations hugetlbfs_aops = {"hugetlbfs"};

const struct file_operations shmem_file_operations = {
    .owner = nullptr,
    .open = nullptr,
    .release = nullptr,
    .unlocked_ioctl = nullptr,
    .read = khosim::fs::ShmemRead,
    .write = khosim::fs::ShmemWrite,
    .llseek = khosim::fs::ShmemLlseek,
    .fallocate = khosim::fs::ShmemFallocate,
    .setsize = khosim::fs::ShmemSetsize,
    .fcntl = khosim::fs::ShmemFcntl,
};

namespace khosim::fs {

unsigned long ProcessMemcg(const Process& process) {
  return static_cast<unsigned long>(process.pid());
}

unsigned long CurrentMemcg() {
  Process* p = CurrentProcess();
  return p == nullptr ? kRootMemcg : ProcessMemcg(*p);
}

// ---- ShmemSb ----------------------------------------------------------------

std::shared_ptr<ShmemSb> ShmemSb::Current() {
  Vfs* vfs = Vfs::CurrentOrNull();
  if (vfs == nullptr) return nullptr;
  struct inode* anon = vfs->anon_inode();
  Registry& r = registry();
  absl::MutexLock lock(&r.mu);
  auto it = r.by_anon_inode.find(anon);
  if (it != r.by_anon_inode.end()) return it->second.sb;
  auto sb = std::make_shared<ShmemSb>(vfs->ctx());
  r.by_anon_inode.emplace(anon, SbEntry{sb, anon->i_free});
  anon->i_free = &AnonInodeFree;
  return sb;
}

std::shared_ptr<ShmemSb> ShmemSb::CurrentIfExists() {
  Vfs* vfs = Vfs::CurrentOrNull();
  if (vfs == nullptr) return nullptr;
  Registry& r = registry();
  absl::MutexLock lock(&r.mu);
  auto it = r.by_anon_inode.find(vfs->anon_inode());
  return it == r.by_anon_inode.end() ? nullptr : it->second.sb;
}

ShmemSb::ShmemSb(KernelContext& ctx) : ctx_(ctx) {}

ShmemSb::~ShmemSb() = default;

void ShmemSb::SubLocked(unsigned long memcg, uint64_t pages) {
  auto it = charged_.find(memcg);
  if (it == charged_.end() || it->second < pages) {
    ctx_.Warn(KHOSIM_SITE, absl::StrFormat("memcg %#x uncharged below zero", memcg));
    if (it != charged_.end()) charged_.erase(it);
    return;
  }
  it->second -= pages;
  if (it->second == 0) charged_.erase(it);
}

void ShmemSb::ReapLooseLocked() {
  for (auto it = loose_.begin(); it != loose_.end();) {
    const struct page* head = it->first;
    if (head->memcg != it->second.memcg || page_ref_count(head) <= 0) {
      SubLocked(it->second.memcg, it->second.pages);
      loose_.erase(it++);
    } else {
      ++it;
    }
  }
}

int ShmemSb::Charge(struct folio* folio, unsigned long memcg, bool use_fault_point) {
  if (memcg == 0) memcg = kRootMemcg;
  if (use_fault_point && ctx_.ShouldFail("mem_cgroup_charge")) return -ENOMEM;
  struct page* head = &folio->page;
  if (WARN_ON_ONCE(head->memcg != 0)) return -EINVAL;
  const uint64_t pages = folio_nr_pages(folio);
  absl::MutexLock lock(&mu_);
  auto it = loose_.find(head);
  if (it != loose_.end()) {
    // A loose charged folio at this address was freed uncharged.
    SubLocked(it->second.memcg, it->second.pages);
    loose_.erase(it);
  }
  head->memcg = memcg;
  charged_[memcg] += pages;
  loose_[head] = Loose{memcg, pages};
  return 0;
}

void ShmemSb::Uncharge(struct folio* folio) {
  struct page* head = &folio->page;
  absl::MutexLock lock(&mu_);
  loose_.erase(head);
  if (head->memcg == 0) return;
  SubLocked(head->memcg, folio_nr_pages(folio));
  head->memcg = 0;
}

void ShmemSb::Recharge(struct folio* folio, unsigned long memcg) {
  if (memcg == 0) memcg = kRootMemcg;
  struct page* head = &folio->page;
  absl::MutexLock lock(&mu_);
  if (WARN_ON_ONCE(head->memcg == 0)) return;
  const uint64_t pages = folio_nr_pages(folio);
  SubLocked(head->memcg, pages);
  charged_[memcg] += pages;
  head->memcg = memcg;
  auto it = loose_.find(head);
  if (it != loose_.end()) it->second.memcg = memcg;
}

void ShmemSb::CacheInsert(struct folio* folio) {
  absl::MutexLock lock(&mu_);
  loose_.erase(&folio->page);
  cached_pages_ += folio_nr_pages(folio);
}

void ShmemSb::CacheRemove(struct folio* folio) {
  struct page* head = &folio->page;
  const uint64_t pages = folio_nr_pages(folio);
  absl::MutexLock lock(&mu_);
  cached_pages_ -= pages;
  if (head->memcg == 0) return;
  SubLocked(head->memcg, pages);
  head->memcg = 0;
}

void ShmemSb::AddInode(ShmemInode* inode) {
  absl::MutexLock lock(&mu_);
  inodes_.insert(inode);
}

void ShmemSb::RemoveInode(ShmemInode* inode, uint64_t cached_pages) {
  absl::MutexLock lock(&mu_);
  inodes_.erase(inode);
  cached_pages_ -= std::min(cached_pages_, cached_pages);
}

void ShmemSb::AddMapping(const std::shared_ptr<ShmemMappingState>& state) {
  absl::MutexLock lock(&mu_);
  mappings_.push_back(state);
}

void ShmemSb::RemoveMapping(const ShmemMappingState* state) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(mappings_.begin(), mappings_.end(),
                         [state](const auto& s) { return s.get() == state; });
  if (it != mappings_.end()) mappings_.erase(it);
}

void ShmemSb::Teardown() {
  std::vector<std::shared_ptr<ShmemMappingState>> mappings;
  {
    absl::MutexLock lock(&mu_);
    mappings.swap(mappings_);
  }
  for (const auto& state : mappings) {
    struct file* file = nullptr;
    {
      absl::MutexLock lock(&state->mu);
      file = std::exchange(state->file, nullptr);
      state->revoked = true;
    }
    // The kernel is dead here: the last fput frees host objects only.
    if (file != nullptr) fput(file);
  }
}

uint64_t ShmemSb::ChargedPages(unsigned long memcg) {
  absl::MutexLock lock(&mu_);
  ReapLooseLocked();
  auto it = charged_.find(memcg);
  return it == charged_.end() ? 0 : it->second;
}

std::map<unsigned long, uint64_t> ShmemSb::ChargedPagesByMemcg() {
  absl::MutexLock lock(&mu_);
  ReapLooseLocked();
  return std::map<unsigned long, uint64_t>(charged_.begin(), charged_.end());
}

uint64_t ShmemSb::CachedPages() const {
  absl::MutexLock lock(&mu_);
  return cached_pages_;
}

int64_t ShmemSb::LiveInodes() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(inodes_.size());
}

int64_t ShmemSb::LiveMappings() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(mappings_.size());
}

absl::Status ShmemSb::Validate() {
  std::vector<ShmemInode*> inodes;
  std::map<unsigned long, uint64_t> expected;
  {
    absl::MutexLock lock(&mu_);
    ReapLooseLocked();
    inodes.assign(inodes_.begin(), inodes_.end());
    for (const auto& [head, loose] : loose_) expected[loose.memcg] += loose.pages;
  }
  uint64_t cached = 0;
  for (ShmemInode* inode : inodes) {
    absl::Status s = inode->Validate(&expected);
    if (!s.ok()) return s;
    cached += inode->CachedPages();
  }
  absl::MutexLock lock(&mu_);
  if (cached != cached_pages_) {
    return absl::InternalError(
        absl::StrCat("shmem: ", cached_pages_, " cached pages counted, ", cached, " found"));
  }
  const std::map<unsigned long, uint64_t> charged(charged_.begin(), charged_.end());
  if (charged != expected) {
    return absl::InternalError("shmem: memcg counters differ from the charged folios");
  }
  return absl::OkStatus();
}

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

// ---- Backends ---------------------------------------------------------------

ssize_t ShmemInode::Read(struct file* file, char* buf, size_t count, loff_t* pos) {
  const loff_t start = *pos;
  if (start < 0) return -EINVAL;
  count = std::min(count, MaxRwCount());
  absl::MutexLock lock(&mu_);
  const loff_t size = i_size_read(&vfs_inode);
  if (count == 0 || start >= size) return 0;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(count, size - start));
  const size_t page_size = PAGE_SIZE;
  size_t done = 0;
  while (done < n) {
    const uint64_t cur = static_cast<uint64_t>(start) + done;
    const pgoff_t index = cur >> PAGE_SHIFT;
    const size_t offset = cur & (page_size - 1);
    size_t chunk = std::min(page_size - offset, n - done);
    const char* src = nullptr;
    auto it = FindLocked(index);
    if (it != cache_.end() && folio_test_uptodate(it->second)) {
      src = PageAddress(it->second, index - it->first) + offset;
    } else {
      // A hole (or a fallocated folio): zeros, nothing allocated.
      chunk = std::min(chunk, kZeroBytes);
      src = kZeros;
    }
    if (copy_to_user(buf + done, src, chunk) != 0) {
      if (done == 0) return -EFAULT;
      break;
    }
    done += chunk;
  }
  *pos = start + static_cast<loff_t>(done);
  return static_cast<ssize_t>(done);
}

ssize_t ShmemInode::Write(struct file* file, const char* buf, size_t count, loff_t* pos) {
  if (hstate_ >= 0) return -EINVAL;  // hugetlbfs has no write_iter
  absl::MutexLock inode_lock(&rwsem_);
  absl::MutexLock lock(&mu_);
  loff_t start = (file->f_flags & O_APPEND) != 0 ? i_size_read(&vfs_inode) : *pos;
  if (start < 0) return -EINVAL;
  count = std::min(count, MaxRwCount());
  if (count == 0) return 0;
  if (start >= MAX_LFS_FILESIZE) return -EFBIG;
  count = static_cast<size_t>(std::min<uint64_t>(count, MAX_LFS_FILESIZE - start));
  const uint64_t chunk_max = static_cast<uint64_t>(PAGE_SIZE) << order_;
  const unsigned long memcg = CurrentMemcg();
  size_t done = 0;
  ssize_t err = 0;
  while (done < count) {
    const loff_t cur = start + static_cast<loff_t>(done);
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(
        chunk_max - (static_cast<uint64_t>(cur) & (chunk_max - 1)), count - done));
    // shmem_write_begin's checks, per chunk: a write that crosses a page
    // boundary into a forbidden region is a short write.
    const loff_t size = i_size_read(&vfs_inode);
    const loff_t chunk_end = cur + static_cast<loff_t>(chunk);
    if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0 ||
        ((seals & F_SEAL_GROW) != 0 && chunk_end > size) ||
        ((flags & SHMEM_F_MAPPING_FROZEN) != 0 && chunk_end > size)) {
      err = -EPERM;
      break;
    }
    struct folio* folio = nullptr;
    err = GetFolioLocked(static_cast<pgoff_t>(cur >> PAGE_SHIFT), SGP_WRITE, memcg, &folio);
    if (err != 0) break;
    const size_t offset = static_cast<size_t>(cur - folio_pos(folio));
    chunk = std::min(chunk, folio_size(folio) - offset);
    char* dst = static_cast<char*>(folio_address(folio)) + offset;
    if (copy_from_user(dst, buf + done, chunk) != 0) {
      err = -EFAULT;
      break;
    }
    if (!folio_test_uptodate(folio)) {
      folio_zero_range(folio, 0, offset);
      folio_zero_range(folio, offset + chunk, folio_size(folio) - offset - chunk);
      folio_mark_uptodate(folio);
    }
    folio_mark_dirty(folio);
    done += chunk;
    if (cur + static_cast<loff_t>(chunk) > size) {
      i_size_write(&vfs_inode, cur + static_cast<loff_t>(chunk));
    }
  }
  if (done == 0) return err;
  *pos = start + static_cast<loff_t>(done);
  return static_cast<ssize_t>(done);
}

loff_t ShmemInode::Llseek(struct file* file, loff_t offset, int whence) {
  switch (whence) {
    case SEEK_SET:
      return vfs_setpos(file, offset, MAX_LFS_FILESIZE);
    case SEEK_CUR: {
      if (offset == 0) return file->f_pos;
      loff_t target = 0;
      if (__builtin_add_overflow(file->f_pos, offset, &target)) return -EINVAL;
      return vfs_setpos(file, target, MAX_LFS_FILESIZE);
    }
    case SEEK_END: {
      loff_t target = 0;
      if (__builtin_add_overflow(Size(), offset, &target)) return -EINVAL;
      return vfs_setpos(file, target, MAX_LFS_FILESIZE);
    }
    case SEEK_DATA:
    case SEEK_HOLE:
      break;
    default:
      return -EINVAL;
  }
  if (offset < 0) return -ENXIO;
  loff_t result = 0;
  {
    absl::MutexLock inode_lock(&rwsem_);
    absl::MutexLock lock(&mu_);
    const loff_t size = i_size_read(&vfs_inode);
    if (offset >= size) return -ENXIO;
    const uint64_t page_size = PAGE_SIZE;
    if (whence == SEEK_DATA) {
      pgoff_t index = static_cast<uint64_t>(offset) >> PAGE_SHIFT;
      auto it = FindLocked(index);
      if (it == cache_.end()) it = cache_.lower_bound(index);
      while (it != cache_.end() && !folio_test_uptodate(it->second)) ++it;
      if (it == cache_.end()) return -ENXIO;
      result = std::max<loff_t>(offset, static_cast<loff_t>(it->first * page_size));
      if (result >= size) return -ENXIO;
    } else {
      uint64_t cur = static_cast<uint64_t>(offset);
      while (cur < static_cast<uint64_t>(size)) {
        auto it = FindLocked(cur >> PAGE_SHIFT);
        if (it == cache_.end() || !folio_test_uptodate(it->second)) break;
        cur = (static_cast<uint64_t>(it->first) << PAGE_SHIFT) + folio_size(it->second);
      }
      result = static_cast<loff_t>(std::min<uint64_t>(cur, size));
    }
  }
  return vfs_setpos(file, result, MAX_LFS_FILESIZE);
}

int ShmemInode::SetSize(loff_t size) {
  if (size < 0) return -EINVAL;
  // hugetlbfs_setattr: only whole huge pages.
  if (hstate_ >= 0 && (static_cast<uint64_t>(size) & ((uint64_t{PAGE_SIZE} << order_) - 1)) != 0) {
    return -EINVAL;
  }
  absl::MutexLock inode_lock(&rwsem_);
  absl::MutexLock lock(&mu_);
  const loff_t old = i_size_read(&vfs_inode);
  if ((size < old && (seals & F_SEAL_SHRINK) != 0) || (size > old && (seals & F_SEAL_GROW) != 0)) {
    return -EPERM;
  }
  if (size != old) {
    if ((flags & SHMEM_F_MAPPING_FROZEN) != 0) return -EPERM;
    i_size_write(&vfs_inode, size);
  }
  // Shrinking (or truncating to the same size) drops everything past the
  // new EOF, including fallocated pages beyond it, and zeroes the tail of
  // the last page.
  if (size <= old) TruncateRangeLocked(size, -1);
  return 0;
}

long ShmemInode::Fallocate(int mode, loff_t offset, loff_t len) {
  if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) != 0) return -EOPNOTSUPP;
  // vfs_fallocate: a punch must keep the size.
  if ((mode & FALLOC_FL_PUNCH_HOLE) != 0 && (mode & FALLOC_FL_KEEP_SIZE) == 0) return -EOPNOTSUPP;
  if (offset < 0 || len <= 0) return -EINVAL;
  if (offset > MAX_LFS_FILESIZE - len) return -EFBIG;
  absl::MutexLock inode_lock(&rwsem_);
  absl::MutexLock lock(&mu_);
  if ((flags & SHMEM_F_MAPPING_FROZEN) != 0) return -EPERM;
  const loff_t end = offset + len;
  if ((mode & FALLOC_FL_PUNCH_HOLE) != 0) {
    if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0) return -EPERM;
    TruncateRangeLocked(offset, end - 1);
    return 0;
  }
  if ((seals & F_SEAL_GROW) != 0 && end > i_size_read(&vfs_inode)) return -EPERM;
  const unsigned long memcg = CurrentMemcg();
  std::vector<pgoff_t> added;
  const pgoff_t last = static_cast<uint64_t>(end - 1) >> PAGE_SHIFT;
  for (pgoff_t index = static_cast<uint64_t>(offset) >> PAGE_SHIFT; index <= last;) {
    const bool existed = FindLocked(index) != cache_.end();
    struct folio* folio = nullptr;
    const int err = GetFolioLocked(index, SGP_FALLOC, memcg, &folio);
    if (err != 0) {
      // Undo only what this call allocated.
      for (pgoff_t a : added) {
        auto it = cache_.find(a);
        if (it != cache_.end()) DeleteLocked(it);
      }
      return err;
    }
    if (!existed) added.push_back(folio_index(folio));
    index = folio_index(folio) + folio_nr_pages(folio);
  }
  if ((mode & FALLOC_FL_KEEP_SIZE) == 0 && end > i_size_read(&vfs_inode)) {
    i_size_write(&vfs_inode, end);
  }
  return 0;
}

int ShmemInode::AddSeals(struct file* file, unsigned int new_seals) {
  absl::MutexLock inode_lock(&rwsem_);
  absl::MutexLock lock(&mu_);
  if ((seals & F_SEAL_SEAL) != 0) return -EPERM;
  // On an executable memfd F_SEAL_EXEC implies the write seals (W^X); the
  // writable-mapping check below then applies to the implied F_SEAL_WRITE.
  if ((new_seals & F_SEAL_EXEC) != 0 && (vfs_inode.i_mode & 0111) != 0) {
    new_seals |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
  }
  if ((new_seals & F_SEAL_WRITE) != 0 && (seals & F_SEAL_WRITE) == 0) {
    // mapping_deny_writable, then memfd_wait_for_pins (which gives up at
    // once here: nothing drops a pin while we wait).
    if (mmap_writable_ > 0) return -EBUSY;
    for (const auto& [index, folio] : cache_) {
      if (folio_ref_count(folio) > 1) return -EBUSY;
    }
    --mmap_writable_;
  }
  seals |= new_seals;
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

// ---- Files ------------------------------------------------------------------

struct file* ShmemFileSetup(absl::string_view f_name, const ShmemOptions& in) {
  ShmemOptions options = in;
  if (options.hstate >= 0) {
    const int hstates = mm::Hugetlb::kNumHstates;
    if (options.hstate >= hstates) return static_cast<struct file*>(ERR_PTR(-EINVAL));
    options.folio_order = mm::Mm::Current().hugetlb().Info(options.hstate).order;
  } else if (options.folio_order > MAX_PAGE_ORDER) {
    return static_cast<struct file*>(ERR_PTR(-EINVAL));
  }
  if (options.size < 0) return static_cast<struct file*>(ERR_PTR(-EINVAL));
  std::shared_ptr<ShmemSb> sb = ShmemSb::Current();
  if (WARN_ON_ONCE(sb == nullptr)) return static_cast<struct file*>(ERR_PTR(-ENODEV));
  auto* shmem = new ShmemInode(std::move(sb), options);
  struct file* file = alloc_file_pseudo(shmem->inode(), std::string(f_name).c_str(),
                                        options.open_flags, &shmem_file_operations);
  if (IS_ERR(file)) iput(shmem->inode());
  return file;
}

namespace {

// A syscall of |process|: its kernel and the process are current.
class SyscallScope {
 public:
  SyscallScope(KernelContext& ctx, Process& process) : kernel_(&ctx), process_(process) {}

 private:
  ScopedKernelContext kernel_;
  ScopedCurrentProcess process_;
};

// The Vfs |process| belongs to: the running kernel's, checked.
Vfs* VfsOf(Process& process) {
  Vfs* vfs = Vfs::CurrentOrNull();
  if (vfs == nullptr || vfs->FindProcess(process.pid()) != &process) return nullptr;
  return vfs;
}

constexpr size_t kMemfdNameMax = 255 - 6;  // NAME_MAX - strlen("memfd:")
constexpr unsigned int kMfdAllFlags =
    MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC;

}  // namespace

int MemfdCreate(Process& process, absl::string_view name, unsigned int flags) {
  Vfs* vfs = VfsOf(process);
  if (vfs == nullptr) return -ESRCH;
  SyscallScope scope(vfs->ctx(), process);
  if (process.exited()) return -ESRCH;
  if ((flags & MFD_HUGETLB) == 0) {
    if ((flags & ~kMfdAllFlags) != 0) return -EINVAL;
  } else if ((flags & ~(kMfdAllFlags | (MFD_HUGE_MASK << MFD_HUGE_SHIFT))) != 0) {
    return -EINVAL;
  }
  if ((flags & MFD_EXEC) != 0 && (flags & MFD_NOEXEC_SEAL) != 0) return -EINVAL;
  // vm.memfd_noexec = 0: neither flag means MFD_EXEC.
  if ((flags & (MFD_EXEC | MFD_NOEXEC_SEAL)) == 0) flags |= MFD_EXEC;
  name = name.substr(0, name.find('\0'));
  if (name.size() > kMemfdNameMax) return -EINVAL;
  const int fd = get_unused_fd_flags((flags & MFD_CLOEXEC) != 0 ? O_CLOEXEC : 0);
  if (fd < 0) return fd;
  struct file* file = memfd_alloc_file(absl::StrCat("memfd:", name).c_str(), flags);
  if (IS_ERR(file)) {
    put_unused_fd(fd);
    return static_cast<int>(PTR_ERR(file));
  }
  fd_install(fd, file);
  return fd;
}

int TmpfsCreate(Process& process, absl::string_view name, int flags) {
  Vfs* vfs = VfsOf(process);
  if (vfs == nullptr) return -ESRCH;
  SyscallScope scope(vfs->ctx(), process);
  if (process.exited()) return -ESRCH;
  const int fd = get_unused_fd_flags(static_cast<unsigned int>(flags & O_CLOEXEC));
  if (fd < 0) return fd;
  ShmemOptions options;
  options.nlink = 1;
  options.open_flags = flags & O_ACCMODE;
  options.mode = S_IFREG | 0600;
  struct file* file = ShmemFileSetup(absl::StrCat("/dev/shm/", name), options);
  if (IS_ERR(file)) {
    put_unused_fd(fd);
    return static_cast<int>(PTR_ERR(file));
  }
  fd_install(fd, file);
  return fd;
}

// ---- Mappings ---------------------------------------------------------------

ShmemMapping::ShmemMapping(std::shared_ptr<ShmemMappingState> state, size_t length, bool writable,
                           unsigned long memcg)
    : state_(std::move(state)), length_(length), writable_(writable), memcg_(memcg) {}

ShmemMapping::~ShmemMapping() {
  struct file* file = nullptr;
  {
    absl::MutexLock lock(&state_->mu);
    file = std::exchange(state_->file, nullptr);
  }
  if (file == nullptr) return;  // revoked with its kernel
  ScopedKernelContext kernel(state_->ctx);
  ShmemInode* shmem = ShmemInode::FromFile(file);
  shmem->sb().RemoveMapping(state_.get());
  if (writable_) shmem->UnmapWritable();
  fput(file);
}

bool ShmemMapping::revoked() const {
  absl::MutexLock lock(&state_->mu);
  return state_->revoked;
}

int ShmemMapping::Fault(pgoff_t index, bool write, void** out) {
  absl::MutexLock lock(&state_->mu);
  if (state_->file == nullptr) return -EFAULT;
  ScopedKernelContext kernel(state_->ctx);
  if (static_cast<uint64_t>(index) >= PagesFor(length_)) return -EFAULT;
  if (write && !writable_) return -EACCES;
  return ShmemInode::FromFile(state_->file)->Fault(index, write, memcg_, out);
}

int ShmemMmap(Process& process, int fd, size_t length, bool writable,
              std::unique_ptr<ShmemMapping>* out) {
  if (length == 0) return -EINVAL;
  Vfs* vfs = VfsOf(process);
  if (vfs == nullptr) return -ESRCH;
  SyscallScope scope(vfs->ctx(), process);
  if (process.exited()) return -ESRCH;
  struct file* file = process.GetFile(fd);
  if (file == nullptr) return -EBADF;
  ShmemInode* shmem = ShmemInode::FromFile(file);
  int err = 0;
  if (shmem == nullptr) {
    err = -ENODEV;
  } else if ((file->f_mode & FMODE_READ) == 0 || (writable && (file->f_mode & FMODE_WRITE) == 0)) {
    err = -EACCES;
  } else if (writable) {
    err = shmem->MapWritable();
  }
  if (err != 0) {
    fput(file);
    return err;
  }
  auto state = std::make_shared<ShmemMappingState>();
  {
    absl::MutexLock lock(&state->mu);
    state->file = file;  // the mapping's reference
  }
  state->ctx = &vfs->ctx();
  shmem->sb().AddMapping(state);
  out->reset(new ShmemMapping(std::move(state), length, writable, ProcessMemcg(process)));
  return 0;
}

// ---- Accounting -------------------------------------------------------------

uint64_t MemcgChargedPages(unsigned long memcg) {
  std::shared_ptr<ShmemSb> sb = ShmemSb::CurrentIfExists();
  return sb == nullptr ? 0 : sb->ChargedPages(memcg);
}

int MemcgCharge(struct folio* folio, unsigned long memcg) {
  std::shared_ptr<ShmemSb> sb = ShmemSb::Current();
  if (WARN_ON_ONCE(sb == nullptr)) return -ENODEV;
  return sb->Charge(folio, memcg, /*use_fault_point=*/true);
}

void MemcgUncharge(struct folio* folio) {
  std::shared_ptr<ShmemSb> sb = ShmemSb::Current();
  if (sb == nullptr) {
    folio->page.memcg = 0;
    return;
  }
  sb->Uncharge(folio);
}

void MemcgRecharge(struct folio* folio, unsigned long memcg) {
  std::shared_ptr<ShmemSb> sb = ShmemSb::Current();
  if (WARN_ON_ONCE(sb == nullptr)) return;
  sb->Recharge(folio, memcg);
}

}  // namespace khosim::fs

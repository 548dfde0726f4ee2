// ShmemSb: the per-kernel shmem state (cache and inode counts, mappings)
// and memcg accounting, created on first use for a Vfs and torn down with
// it (see shmem.cc for how it is tied to the Vfs).
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
namespace {

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

}  // namespace

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

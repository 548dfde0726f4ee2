// PageAllocator: free lists of aligned blocks, kept outside struct page.
//
// Lifecycle:
//   construction     empty lists for every node and order; every pageblock
//                    movable; nothing managed yet
//   AddFreeRange()   boot (memblock_free_all, CMA activation): ranges are cut
//                    into aligned blocks and freed through the merge path
//   Alloc()/Free()   runtime: take the lowest suitable block and split off
//                    the halves not needed; on free, merge with free buddies
//                    as far as order and pageblock types allow
//   destruction      with the kernel at kexec; nothing here survives, the
//                    next kernel rebuilds its lists from its own memblock
//
// The lists are the only record of free memory: struct pages are written
// only for pages a caller receives (the head, and tails of compound pages),
// so free memory costs no memmap host memory. Under kInaccessible, pages are
// discarded and unmapped while on the lists; allocation maps them again.
#include "khosim/mm/page_alloc.h"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/linux/atomic.h"
#include "khosim/linux/mm_types.h"

namespace khosim::mm {
namespace {

constexpr uint64_t OrderPages(unsigned order) { return uint64_t{1} << order; }

// Non-CMA fallback order per requested type (requested type first).
constexpr std::array<MigrateType, 3> kFallbacks[] = {
    {MigrateType::kUnmovable, MigrateType::kReclaimable, MigrateType::kMovable},
    {MigrateType::kMovable, MigrateType::kReclaimable, MigrateType::kUnmovable},
    {MigrateType::kReclaimable, MigrateType::kUnmovable, MigrateType::kMovable},
};

void ClearPage(struct page* page) {
  page->flags = 0;
  page->private_data = 0;
  page->compound_head = 0;
  atomic_set(&page->_refcount, 0);
  page->pincount = 0;
  page->compound_order = 0;
  page->mapping = nullptr;
  page->index = 0;
  page->memcg = 0;
}

std::string Hex(uint64_t v) { return absl::StrFormat("0x%x", v); }

// MigrateTypeName for absl::StrCat, whose string_view need not be std's.
absl::string_view TypeName(MigrateType type) {
  const std::string_view name = MigrateTypeName(type);
  return absl::string_view(name.data(), name.size());
}

}  // namespace

std::string_view MigrateTypeName(MigrateType type) {
  switch (type) {
    case MigrateType::kUnmovable:
      return "unmovable";
    case MigrateType::kMovable:
      return "movable";
    case MigrateType::kReclaimable:
      return "reclaimable";
    case MigrateType::kCma:
      return "cma";
    case MigrateType::kCount:
      break;
  }
  return "?";
}

PageAllocator::PageAllocator(KernelContext& ctx, hw::PhysicalMemory& memory, Memmap& memmap,
                             FreeMemoryPolicy policy)
    : ctx_(ctx),
      memory_(memory),
      memmap_(memmap),
      policy_(policy),
      max_order_(ctx.geometry().max_page_order),
      pageblock_order_(ctx.geometry().pageblock_order),
      num_nodes_(std::max(memory.layout().num_nodes(), 1)) {
  if (ctx.geometry().page_size() != memory.page_size()) {
    ctx.Panic(KHOSIM_SITE, absl::StrCat("kernel page size ", ctx.geometry().page_size(),
                                        " differs from the machine's ", memory.page_size()));
  }
  absl::MutexLock lock(&mu_);
  nodes_.resize(static_cast<size_t>(num_nodes_));
  for (NodeFreeArea& area : nodes_) area.by_order.resize(max_order_ + 1);
  const uint64_t pageblocks =
      (memmap.end_pfn() + OrderPages(pageblock_order_) - 1) >> pageblock_order_;
  pageblock_types_.assign(pageblocks, static_cast<uint8_t>(MigrateType::kMovable));
}

// --- helpers -----------------------------------------------------------------

MigrateType PageAllocator::TypeForGfp(gfp_t gfp) const {
  if (gfp & __GFP_MOVABLE) return MigrateType::kMovable;
  if (gfp & __GFP_RECLAIMABLE) return MigrateType::kReclaimable;
  return MigrateType::kUnmovable;
}

int PageAllocator::NodeOfPfn(uint64_t pfn) const {
  return memory_.layout().NodeOf(ctx_.geometry().PfnToPhys(Pfn(pfn)));
}

bool PageAllocator::RangeInNodeRam(uint64_t start, uint64_t end, int nid) const {
  const PageGeometry& g = ctx_.geometry();
  if (start >= end) return false;
  uint64_t cursor = g.PfnToPhysBytes(start);
  const uint64_t stop = g.PfnToPhysBytes(end);
  for (const hw::RamRange& r : memory_.layout().ranges()) {
    if (r.end().value() <= cursor) continue;
    if (r.start.value() > cursor || r.nid != nid) return false;
    cursor = r.end().value();
    if (cursor >= stop) return true;
  }
  return false;
}

MigrateType PageAllocator::TypeLocked(uint64_t pfn) const {
  const uint64_t index = pfn >> pageblock_order_;
  if (index >= pageblock_types_.size()) return MigrateType::kMovable;
  return static_cast<MigrateType>(pageblock_types_[index]);
}

bool PageAllocator::HomogeneousLocked(uint64_t pfn, unsigned order) const {
  if (order <= pageblock_order_) return true;
  const MigrateType first = TypeLocked(pfn);
  for (uint64_t p = pfn + OrderPages(pageblock_order_); p < pfn + OrderPages(order);
       p += OrderPages(pageblock_order_)) {
    if (TypeLocked(p) != first) return false;
  }
  return true;
}

void PageAllocator::InsertLocked(int nid, uint64_t pfn, unsigned order) {
  NodeFreeArea& area = nodes_[static_cast<size_t>(nid)];
  area.by_order[order][static_cast<int>(TypeLocked(pfn))].insert(pfn);
  area.free_pages += OrderPages(order);
}

void PageAllocator::EraseLocked(const FreeBlock& block) {
  NodeFreeArea& area = nodes_[static_cast<size_t>(block.nid)];
  area.by_order[block.order][static_cast<int>(block.type)].erase(block.pfn);
  area.free_pages -= OrderPages(block.order);
}

void PageAllocator::FreeBlockLocked(uint64_t pfn, unsigned order, int nid) {
  NodeFreeArea& area = nodes_[static_cast<size_t>(nid)];
  while (order < max_order_) {
    const uint64_t buddy = pfn ^ OrderPages(order);
    if (buddy + OrderPages(order) > memmap_.end_pfn()) break;
    // Below pageblock_order both halves share a pageblock; above it they
    // merge only into a block of one type.
    const MigrateType type = TypeLocked(buddy);
    if (type != TypeLocked(pfn)) break;
    auto& list = area.by_order[order][static_cast<int>(type)];
    auto it = list.find(buddy);
    if (it == list.end()) break;
    list.erase(it);
    area.free_pages -= OrderPages(order);
    pfn = std::min(pfn, buddy);
    ++order;
  }
  // Each merged buddy was subtracted above; the merged block adds them back
  // along with the pages being freed.
  InsertLocked(nid, pfn, order);
}

void PageAllocator::FreeRangeLocked(uint64_t start, uint64_t end, int nid) {
  uint64_t pfn = start;
  while (pfn < end) {
    unsigned order = pfn == 0 ? max_order_ : std::min<unsigned>(max_order_, std::countr_zero(pfn));
    while (pfn + OrderPages(order) > end) --order;
    while (!HomogeneousLocked(pfn, order)) --order;
    FreeBlockLocked(pfn, order, nid);
    pfn += OrderPages(order);
  }
}

std::vector<PageAllocator::FreeBlock> PageAllocator::OverlappingLocked(int nid, uint64_t start,
                                                                       uint64_t end,
                                                                       size_t limit) const {
  std::vector<FreeBlock> out;
  if (nid < 0 || static_cast<size_t>(nid) >= nodes_.size() || start >= end) return out;
  const NodeFreeArea& area = nodes_[static_cast<size_t>(nid)];
  for (unsigned order = 0; order <= max_order_; ++order) {
    // Blocks of one order are disjoint: those overlapping [start, end) have
    // heads in [start - size + 1, end).
    const uint64_t size = OrderPages(order);
    const uint64_t first = start >= size - 1 ? start - (size - 1) : 0;
    for (int t = 0; t < kNumTypes; ++t) {
      const auto& list = area.by_order[order][t];
      for (auto it = list.lower_bound(first); it != list.end() && *it < end; ++it) {
        out.push_back({*it, order, static_cast<MigrateType>(t), nid});
        if (out.size() >= limit) return out;
      }
    }
  }
  return out;
}

bool PageAllocator::FindFreeBlockLocked(uint64_t pfn, FreeBlock* out) const {
  std::vector<FreeBlock> found = OverlappingLocked(NodeOfPfn(pfn), pfn, pfn + 1, 1);
  if (found.empty()) return false;
  *out = found.front();
  return true;
}

void PageAllocator::MakeInaccessible(uint64_t pfn, uint64_t nr_pages) {
  if (policy_ != FreeMemoryPolicy::kInaccessible || nr_pages == 0) return;
  const PhysAddr pa = ctx_.geometry().PfnToPhys(Pfn(pfn));
  const uint64_t len = ctx_.geometry().PfnToPhysBytes(nr_pages);
  memory_.Discard(pa, len);
  memory_.SetAccessible(pa, len, false);
}

void PageAllocator::MakeAccessible(uint64_t pfn, uint64_t nr_pages) {
  if (policy_ != FreeMemoryPolicy::kInaccessible || nr_pages == 0) return;
  memory_.SetAccessible(ctx_.geometry().PfnToPhys(Pfn(pfn)),
                        ctx_.geometry().PfnToPhysBytes(nr_pages), true);
}

// --- boot ----------------------------------------------------------------------

void PageAllocator::AddFreeRange(Pfn start, Pfn end, int nid) {
  const uint64_t s = start.value();
  const uint64_t e = end.value();
  if (s >= e) return;
  if (nid < 0 || e > memmap_.end_pfn() || !RangeInNodeRam(s, e, nid)) {
    ctx_.Warn(KHOSIM_SITE, absl::StrCat("free range [", Hex(s), ", ", Hex(e),
                                        ") is not RAM of node ", nid, "; ignored"));
    return;
  }
  absl::MutexLock lock(&mu_);
  if (!OverlappingLocked(nid, s, e, 1).empty()) {
    ctx_.Panic(KHOSIM_SITE, absl::StrCat("free range [", Hex(s), ", ", Hex(e),
                                         ") overlaps free memory (double free)"));
  }
  MakeInaccessible(s, e - s);
  FreeRangeLocked(s, e, nid);
  managed_pages_ += static_cast<int64_t>(e - s);
}

void PageAllocator::SetPageblockType(Pfn pfn, MigrateType type) {
  const uint64_t index = pfn.value() >> pageblock_order_;
  if (type == MigrateType::kCount || pfn.value() >= memmap_.end_pfn()) {
    ctx_.Warn(KHOSIM_SITE, absl::StrCat("bad pageblock type change at pfn ", Hex(pfn.value())));
    return;
  }
  absl::MutexLock lock(&mu_);
  if (pageblock_types_[index] == static_cast<uint8_t>(type)) return;
  // Take out every free block touching the pageblock, retype, and free the
  // blocks again: pieces outside the pageblock re-merge with their
  // neighbours, the pageblock's own pages land in the new type's lists.
  const uint64_t first = index << pageblock_order_;
  const uint64_t last = first + OrderPages(pageblock_order_);
  std::vector<FreeBlock> blocks;
  for (int nid = 0; nid < num_nodes_; ++nid) {
    std::vector<FreeBlock> found =
        OverlappingLocked(nid, first, last, std::numeric_limits<size_t>::max());
    blocks.insert(blocks.end(), found.begin(), found.end());
  }
  for (const FreeBlock& b : blocks) EraseLocked(b);
  pageblock_types_[index] = static_cast<uint8_t>(type);
  for (const FreeBlock& b : blocks) FreeRangeLocked(b.pfn, b.pfn + OrderPages(b.order), b.nid);
}

MigrateType PageAllocator::PageblockType(Pfn pfn) const {
  absl::ReaderMutexLock lock(&mu_);
  return TypeLocked(pfn.value());
}

// --- allocation ------------------------------------------------------------------

bool PageAllocator::TakeBlockLocked(int nid, unsigned order, MigrateType type, bool allow_cma,
                                    uint64_t* pfn_out) {
  NodeFreeArea& area = nodes_[static_cast<size_t>(nid)];
  std::vector<MigrateType> types(kFallbacks[static_cast<int>(type)].begin(),
                                 kFallbacks[static_cast<int>(type)].end());
  if (allow_cma) types.push_back(MigrateType::kCma);
  for (MigrateType t : types) {
    for (unsigned o = order; o <= max_order_; ++o) {
      const auto& list = area.by_order[o][static_cast<int>(t)];
      if (list.empty()) continue;
      const uint64_t head = *list.begin();
      EraseLocked({head, o, t, nid});
      // Hand the upper halves back until the block has the wanted order.
      while (o > order) {
        --o;
        InsertLocked(nid, head + OrderPages(o), o);
      }
      *pfn_out = head;
      return true;
    }
  }
  return false;
}

void PageAllocator::PrepareAllocated(uint64_t pfn, unsigned order, gfp_t gfp) {
  const uint64_t nr = OrderPages(order);
  MakeAccessible(pfn, nr);
  if (gfp & __GFP_ZERO) {
    // Whole pages: dropping the contents zeroes them without host memory.
    memory_.Discard(ctx_.geometry().PfnToPhys(Pfn(pfn)), ctx_.geometry().PfnToPhysBytes(nr));
  }
  struct page* head = memmap_.PfnToPage(Pfn(pfn));
  ClearPage(head);
  if ((gfp & __GFP_COMP) && order > 0) {
    head->flags = 1UL << PG_head;
    head->compound_order = static_cast<unsigned char>(order);
    const unsigned long tail_link = reinterpret_cast<unsigned long>(head) | 1UL;
    for (uint64_t i = 1; i < nr; ++i) {
      struct page* tail = head + i;
      ClearPage(tail);
      tail->compound_head = tail_link;
    }
  }
  atomic_set_release(&head->_refcount, 1);
  if (ctx_.geometry().PfnToPhysBytes(nr) >= ctx_.env().TraceAllocThreshold()) {
    ctx_.Trace("alloc", "pages", {{"pfn", Hex(pfn)}, {"order", absl::StrCat(order)}});
  }
}

struct page* PageAllocator::Alloc(gfp_t gfp, unsigned order, int nid) {
  if (order > max_order_) {
    if (!(gfp & __GFP_NOWARN)) {
      ctx_.Warn(KHOSIM_SITE, absl::StrCat("page allocation of order ", order,
                                          " above max_page_order ", max_order_));
    }
    return nullptr;
  }
  if (!(gfp & __GFP_NOFAIL) && ctx_.ShouldFail("alloc_pages")) return nullptr;
  if (nid >= num_nodes_ || nid < -1) {
    ctx_.Warn(KHOSIM_SITE, absl::StrCat("page allocation for node ", nid, " which is offline"));
    nid = -1;
  }
  const int preferred = nid < 0 ? 0 : nid;
  std::vector<int> order_of_nodes = {preferred};
  if (!(gfp & __GFP_THISNODE)) {
    for (int n = 0; n < num_nodes_; ++n) {
      if (n != preferred) order_of_nodes.push_back(n);
    }
  }
  const MigrateType type = TypeForGfp(gfp);
  uint64_t pfn = 0;
  bool found = false;
  {
    absl::MutexLock lock(&mu_);
    for (int n : order_of_nodes) {
      if (TakeBlockLocked(n, order, type, type == MigrateType::kMovable, &pfn)) {
        found = true;
        break;
      }
    }
  }
  if (!found) return nullptr;
  PrepareAllocated(pfn, order, gfp);
  return memmap_.PfnToPage(Pfn(pfn));
}

bool PageAllocator::AllocRange(Pfn start, uint64_t nr_pages) {
  const uint64_t s = start.value();
  if (nr_pages == 0 || s >= memmap_.end_pfn() || nr_pages > memmap_.end_pfn() - s) return false;
  const uint64_t e = s + nr_pages;
  {
    absl::MutexLock lock(&mu_);
    std::vector<FreeBlock> blocks;
    for (int nid = 0; nid < num_nodes_; ++nid) {
      std::vector<FreeBlock> found =
          OverlappingLocked(nid, s, e, std::numeric_limits<size_t>::max());
      blocks.insert(blocks.end(), found.begin(), found.end());
    }
    std::sort(blocks.begin(), blocks.end(),
              [](const FreeBlock& a, const FreeBlock& b) { return a.pfn < b.pfn; });
    uint64_t cursor = s;
    for (const FreeBlock& b : blocks) {
      if (b.pfn > cursor) return false;  // a page in [cursor, b.pfn) is in use
      cursor = std::max(cursor, b.pfn + OrderPages(b.order));
    }
    if (cursor < e) return false;
    for (const FreeBlock& b : blocks) {
      EraseLocked(b);
      const uint64_t b_end = b.pfn + OrderPages(b.order);
      if (b.pfn < s) FreeRangeLocked(b.pfn, s, b.nid);
      if (b_end > e) FreeRangeLocked(e, b_end, b.nid);
    }
  }
  MakeAccessible(s, nr_pages);
  return true;
}

// --- freeing ---------------------------------------------------------------------

void PageAllocator::ResetFreedPages(uint64_t pfn, unsigned order) {
  struct page* head = memmap_.PfnToPage(Pfn(pfn));
  const bool compound = (head->flags & (1UL << PG_head)) != 0;
  if (compound && head->compound_order != order) {
    ctx_.Warn(KHOSIM_SITE, absl::StrCat("freeing compound page ", Hex(pfn), " of order ",
                                        head->compound_order, " as order ", order));
  }
  ClearPage(head);
  if (!compound) return;
  for (uint64_t i = 1; i < OrderPages(order); ++i) ClearPage(head + i);
}

void PageAllocator::Free(struct page* page, unsigned order) {
  if (page == nullptr || !memmap_.Contains(page)) {
    ctx_.Panic(KHOSIM_SITE, "freeing a page that is not in the memmap");
  }
  const uint64_t pfn = memmap_.PageToPfn(page).value();
  if (order >= 64 || OrderPages(order) > memmap_.end_pfn() - pfn) {
    ctx_.Panic(KHOSIM_SITE, absl::StrCat("freeing order ", order, " at pfn ", Hex(pfn),
                                         " runs past the memmap"));
  }
  if (!IsAligned(pfn, OrderPages(order))) {
    ctx_.Panic(KHOSIM_SITE,
               absl::StrCat("freeing misaligned block: pfn ", Hex(pfn), " order ", order));
  }
  const uint64_t end = pfn + OrderPages(order);
  const int nid = NodeOfPfn(pfn);
  if (nid < 0 || !RangeInNodeRam(pfn, end, nid)) {
    ctx_.Panic(KHOSIM_SITE, absl::StrCat("freeing [", Hex(pfn), ", ", Hex(end),
                                         ") which is not RAM of one node"));
  }
  absl::MutexLock lock(&mu_);
  std::vector<FreeBlock> overlap = OverlappingLocked(nid, pfn, end, 1);
  if (!overlap.empty()) {
    ctx_.Panic(KHOSIM_SITE, absl::StrCat("double free: pfn ", Hex(pfn), " order ", order,
                                         " overlaps free block ", Hex(overlap.front().pfn),
                                         " order ", overlap.front().order));
  }
  ResetFreedPages(pfn, order);
  // Unmapped before the lists show the pages, so no allocation can race
  // with the unmapping.
  MakeInaccessible(pfn, OrderPages(order));
  FreeRangeLocked(pfn, end, nid);
}

// --- queries -----------------------------------------------------------------------

bool PageAllocator::FindFreeRun(uint64_t nr_pages, uint64_t align_pages, Pfn lo, Pfn hi,
                                Pfn* out) const {
  if (align_pages == 0) align_pages = 1;
  const uint64_t l = lo.value();
  const uint64_t h = std::min(hi.value(), memmap_.end_pfn());
  if (nr_pages == 0 || l >= h || nr_pages > h - l) return false;
  std::vector<FreeBlock> blocks;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (int nid = 0; nid < num_nodes_; ++nid) {
      std::vector<FreeBlock> found =
          OverlappingLocked(nid, l, h, std::numeric_limits<size_t>::max());
      blocks.insert(blocks.end(), found.begin(), found.end());
    }
  }
  std::sort(blocks.begin(), blocks.end(),
            [](const FreeBlock& a, const FreeBlock& b) { return a.pfn < b.pfn; });
  // Coalesce adjacent blocks into maximal runs, clipped to [l, h).
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (const FreeBlock& b : blocks) {
    const uint64_t s = std::max(b.pfn, l);
    const uint64_t e = std::min(b.pfn + OrderPages(b.order), h);
    if (!runs.empty() && runs.back().second == s) {
      runs.back().second = e;
    } else {
      runs.emplace_back(s, e);
    }
  }
  for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
    const auto [s, e] = *it;
    if (e - s < nr_pages) continue;
    const uint64_t candidate = (e - nr_pages) / align_pages * align_pages;
    if (candidate >= s) {
      *out = Pfn(candidate);
      return true;
    }
  }
  return false;
}

uint64_t PageAllocator::FreePages(int nid) const {
  absl::ReaderMutexLock lock(&mu_);
  if (nid >= 0) {
    return static_cast<size_t>(nid) < nodes_.size() ? nodes_[static_cast<size_t>(nid)].free_pages
                                                    : 0;
  }
  uint64_t total = 0;
  for (const NodeFreeArea& area : nodes_) total += area.free_pages;
  return total;
}

bool PageAllocator::IsFree(Pfn pfn) const {
  absl::ReaderMutexLock lock(&mu_);
  FreeBlock block;
  return FindFreeBlockLocked(pfn.value(), &block);
}

std::vector<std::vector<uint64_t>> PageAllocator::FreeBlockCounts() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::vector<uint64_t>> counts;
  for (const NodeFreeArea& area : nodes_) {
    std::vector<uint64_t>& per_order = counts.emplace_back(max_order_ + 1, 0);
    for (unsigned o = 0; o <= max_order_; ++o) {
      for (int t = 0; t < kNumTypes; ++t) per_order[o] += area.by_order[o][t].size();
    }
  }
  return counts;
}

absl::Status PageAllocator::Validate() const {
  absl::ReaderMutexLock lock(&mu_);
  for (size_t i = 0; i < pageblock_types_.size(); ++i) {
    if (pageblock_types_[i] >= kNumTypes) {
      return absl::InternalError(absl::StrCat("pageblock ", i, " has invalid type ",
                                              static_cast<int>(pageblock_types_[i])));
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> all;  // [start, end) of every free block
  uint64_t total_free = 0;
  for (int nid = 0; nid < num_nodes_; ++nid) {
    const NodeFreeArea& area = nodes_[static_cast<size_t>(nid)];
    uint64_t node_free = 0;
    for (unsigned o = 0; o <= max_order_; ++o) {
      for (int t = 0; t < kNumTypes; ++t) {
        const MigrateType type = static_cast<MigrateType>(t);
        for (uint64_t pfn : area.by_order[o][t]) {
          const std::string what = absl::StrCat("free block ", Hex(pfn), " order ", o, " (",
                                                TypeName(type), ", node ", nid, ")");
          if (!IsAligned(pfn, OrderPages(o))) {
            return absl::InternalError(absl::StrCat(what, " is misaligned"));
          }
          if (pfn + OrderPages(o) > memmap_.end_pfn() ||
              !RangeInNodeRam(pfn, pfn + OrderPages(o), nid)) {
            return absl::InternalError(absl::StrCat(what, " is outside its node's RAM"));
          }
          for (uint64_t p = pfn; p < pfn + OrderPages(o); p += OrderPages(pageblock_order_)) {
            if (TypeLocked(p) != type) {
              return absl::InternalError(absl::StrCat(what, " covers pageblock ", Hex(p),
                                                      " of type ", TypeName(TypeLocked(p))));
            }
          }
          if (o < max_order_) {
            const uint64_t buddy = pfn ^ OrderPages(o);
            if (TypeLocked(buddy) == type && area.by_order[o][t].contains(buddy)) {
              return absl::InternalError(
                  absl::StrCat(what, " and its free buddy ", Hex(buddy), " are not merged"));
            }
          }
          all.emplace_back(pfn, pfn + OrderPages(o));
          node_free += OrderPages(o);
        }
      }
    }
    if (node_free != area.free_pages) {
      return absl::InternalError(absl::StrCat("node ", nid, " counts ", area.free_pages,
                                              " free pages but its lists hold ", node_free));
    }
    total_free += node_free;
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 1; i < all.size(); ++i) {
    if (all[i].first < all[i - 1].second) {
      return absl::InternalError(absl::StrCat("free blocks at ", Hex(all[i - 1].first), " and ",
                                              Hex(all[i].first), " overlap"));
    }
  }
  const int64_t managed = managed_pages_.load();
  if (managed < 0 || total_free > static_cast<uint64_t>(managed)) {
    return absl::InternalError(
        absl::StrCat(total_free, " free pages exceed ", managed, " managed pages"));
  }
  return absl::OkStatus();
}

}  // namespace khosim::mm

// Hugetlb pools: command-line parsing, boot-time filling, and the free list
// behind alloc / folio_put of PG_hugetlb folios.
#include "khosim/mm/hugetlb.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "khosim/linux/atomic.h"
#include "khosim/linux/gfp.h"
#include "khosim/mm/mm.h"

namespace khosim::mm {

std::vector<unsigned> HugePageOrders(const PageGeometry& geometry) {
  const unsigned level_bits = geometry.page_shift - 3;
  return {level_bits, 2 * level_bits};
}

HugetlbRequest ParseHugetlbCmdline(absl::string_view cmdline, const PageGeometry& geometry) {
  HugetlbRequest request;
  for (unsigned order : HugePageOrders(geometry)) {
    request.pools.push_back({.size = geometry.page_size() << order});
  }
  request.pools[0].registered = true;
  auto pool_of = [&request](uint64_t bytes) {
    for (size_t i = 0; i < request.pools.size(); ++i) {
      if (request.pools[i].size == bytes) return static_cast<int>(i);
    }
    return -1;
  };
  int selected = -1;  // hugepages= before any hugepagesz= is the default size
  for (absl::string_view word : absl::StrSplit(cmdline, ' ', absl::SkipEmpty())) {
    const size_t eq = word.find('=');
    if (eq == absl::string_view::npos) continue;
    const absl::string_view key = word.substr(0, eq);
    const absl::string_view value = word.substr(eq + 1);
    if (key == "hugepagesz" || key == "default_hugepagesz") {
      uint64_t bytes = 0;
      const int h = MemParse(value, &bytes) ? pool_of(bytes) : -1;
      if (h < 0) {
        request.log.push_back(absl::StrCat("HugeTLB: unsupported ", key, "=", value));
        if (key == "hugepagesz") selected = -2;  // its hugepages= is ignored
        continue;
      }
      (key == "hugepagesz" ? selected : request.default_pool) = h;
      request.pools[static_cast<size_t>(h)].registered = true;
    } else if (key == "hugepages") {
      uint64_t n = 0;
      if (selected == -2 || !absl::SimpleAtoi(value, &n)) {
        request.log.push_back(absl::StrCat("HugeTLB: hugepages=", value, " ignored"));
        continue;
      }
      request.pools[static_cast<size_t>(selected < 0 ? request.default_pool : selected)].requested =
          n;
    }
  }
  return request;
}

Hugetlb::Hugetlb(Mm& mm) : mm_(mm), ctx_(mm.ctx()) {
  const PageGeometry& g = mm.geometry();
  absl::MutexLock lock(&mu_);
  for (unsigned order : HugePageOrders(g)) {
    Hstate h;
    h.info.order = order;
    h.info.size = g.page_size() << order;
    h.info.name = absl::StrCat("hugepages-", h.info.size >> 10, "kB");
    hstates_.push_back(std::move(h));
  }
  default_ = 0;
  hstates_[0].info.registered = true;
}

int Hugetlb::HstateForSize(uint64_t bytes) const {
  const PageGeometry& g = mm_.geometry();
  const unsigned level_bits = g.page_shift - 3;
  if (bytes == (g.page_size() << level_bits)) return 0;
  if (bytes == (g.page_size() << (2 * level_bits))) return 1;
  return -1;
}

int Hugetlb::HstateForOrder(unsigned order) const {
  const unsigned level_bits = mm_.geometry().page_shift - 3;
  if (order == level_bits) return 0;
  if (order == 2 * level_bits) return 1;
  return -1;
}

HstateInfo Hugetlb::Info(int hstate) const {
  absl::MutexLock lock(&mu_);
  return hstates_.at(static_cast<size_t>(hstate)).info;
}

void Hugetlb::ParseCmdline(absl::string_view cmdline) {
  const HugetlbRequest request = ParseHugetlbCmdline(cmdline, mm_.geometry());
  for (const std::string& line : request.log) ctx_.Log(line);
  default_ = request.default_pool;
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < hstates_.size(); ++i) {
    hstates_[i].info.registered = request.pools[i].registered;
    hstates_[i].info.requested = request.pools[i].requested;
  }
}

void Hugetlb::SetPreservedOnBoot(unsigned order, uint64_t pages) {
  const int h = HstateForOrder(order);
  if (h < 0) return;
  absl::MutexLock lock(&mu_);
  if (bootmem_done_) {
    ctx_.Warn(KHOSIM_SITE, "preserved huge pages reported after the pools were sized");
    return;
  }
  hstates_[static_cast<size_t>(h)].info.preserved = pages;
}

void Hugetlb::ReserveBootmem() {
  const unsigned max_order = mm_.geometry().max_page_order;
  const int nodes = mm_.memory().layout().num_nodes();
  absl::MutexLock lock(&mu_);
  bootmem_done_ = true;
  for (Hstate& h : hstates_) {
    if (h.info.order <= max_order) continue;
    const uint64_t want = h.info.requested - std::min(h.info.requested, h.info.preserved);
    for (uint64_t i = 0; i < want; ++i) {
      // Round-robin over the nodes, as hugetlb_hstate_alloc_pages does.
      const PhysAddr pa = mm_.memblock().Alloc({.size = h.info.size,
                                                .align = h.info.size,
                                                .nid = static_cast<int>(i % nodes),
                                                .hugetlb = true});
      if (pa.IsNull()) {
        ++h.info.bootmem_failures;
        continue;
      }
      h.bootmem.push_back(pa);
    }
    if (h.info.bootmem_failures != 0) {
      ctx_.Log(absl::StrFormat("HugeTLB: allocating %d of page size %d failed. Only allocated %d",
                               want, h.info.size, h.bootmem.size()));
    }
  }
}

void Hugetlb::PrepPoolFolio(struct folio* folio, unsigned order) {
  struct page* head = &folio->page;
  const uint64_t nr = uint64_t{1} << order;
  head->flags = (1UL << PG_head) | (1UL << PG_hugetlb);
  head->compound_order = static_cast<unsigned char>(order);
  head->private_data = 0;
  head->compound_head = 0;
  const unsigned long tail_link = reinterpret_cast<unsigned long>(head) | 1UL;
  for (uint64_t i = 1; i < nr; ++i) {
    head[i].flags = 0;
    head[i].private_data = 0;
    head[i].compound_head = tail_link;
  }
}

void Hugetlb::Init() {
  const unsigned max_order = mm_.geometry().max_page_order;
  absl::MutexLock lock(&mu_);
  for (Hstate& h : hstates_) {
    if (h.info.order > max_order) {
      for (PhysAddr pa : h.bootmem) {
        auto* folio = reinterpret_cast<struct folio*>(mm_.PhysToPage(pa));
        PrepPoolFolio(folio, h.info.order);
        atomic_set(&folio->page._refcount, 0);
        h.free_list.push_back(folio);
      }
      h.bootmem.clear();
    } else {
      const uint64_t want = h.info.requested - std::min(h.info.requested, h.info.preserved);
      for (uint64_t i = 0; i < want; ++i) {
        struct page* page = mm_.pages().Alloc(
            GFP_HIGHUSER | __GFP_COMP, h.info.order,
            static_cast<int>(i % static_cast<uint64_t>(mm_.memory().layout().num_nodes())));
        if (page == nullptr) {
          ctx_.Log(
              absl::StrFormat("HugeTLB: allocating %d of page size %d failed. Only allocated %d",
                              want, h.info.size, i));
          break;
        }
        auto* folio = reinterpret_cast<struct folio*>(page);
        PrepPoolFolio(folio, h.info.order);
        atomic_set(&folio->page._refcount, 0);
        h.free_list.push_back(folio);
      }
    }
    h.info.nr_huge_pages = h.free_list.size();
    h.info.free_huge_pages = h.free_list.size();
    if (h.info.nr_huge_pages != 0) {
      ctx_.Log(absl::StrFormat("HugeTLB: registered %d page size, pre-allocated %d pages",
                               h.info.size, h.info.nr_huge_pages));
    }
  }
}

struct folio* Hugetlb::Alloc(int hstate, int nid) {
  struct folio* folio = nullptr;
  uint64_t bytes = 0;
  {
    absl::MutexLock lock(&mu_);
    Hstate& h = hstates_.at(static_cast<size_t>(hstate));
    if (h.free_list.empty()) return nullptr;
    auto pick = h.free_list.end() - 1;
    if (nid >= 0) {
      auto on_node = std::find_if(h.free_list.rbegin(), h.free_list.rend(), [&](struct folio* f) {
        return mm_.memory().layout().NodeOf(mm_.PageToPhys(&f->page)) == nid;
      });
      if (on_node != h.free_list.rend()) pick = std::next(on_node).base();
    }
    folio = *pick;
    h.free_list.erase(pick);
    --h.info.free_huge_pages;
    bytes = h.info.size;
  }
  // clear_huge_page: dropping the backing zeroes it without host memory.
  mm_.ZeroPhys(mm_.PageToPhys(&folio->page), bytes);
  folio->page.flags &= (1UL << PG_head) | (1UL << PG_hugetlb);
  atomic_set(&folio->page._refcount, 1);
  return folio;
}

void Hugetlb::FreeFolio(struct folio* folio) {
  const int h = HstateForOrder(folio->page.compound_order);
  if (h < 0) {
    ctx_.Warn(KHOSIM_SITE, "free of a PG_hugetlb folio of no hstate's order");
    return;
  }
  folio->page.flags &= (1UL << PG_head) | (1UL << PG_hugetlb);
  folio->page.pincount = 0;
  folio->page.private_data = 0;
  absl::MutexLock lock(&mu_);
  Hstate& hs = hstates_[static_cast<size_t>(h)];
  hs.free_list.push_back(folio);
  ++hs.info.free_huge_pages;
}

void Hugetlb::AdoptFolio(struct folio* folio) {
  const unsigned order = folio->page.compound_order;
  const int h = HstateForOrder(order);
  if (h < 0 || (folio->page.flags & (1UL << PG_head)) == 0) {
    ctx_.Warn(KHOSIM_SITE, "adopting a folio of no hstate's order into the hugetlb pool");
    return;
  }
  folio->page.flags |= 1UL << PG_hugetlb;
  absl::MutexLock lock(&mu_);
  ++hstates_[static_cast<size_t>(h)].info.nr_huge_pages;
}

}  // namespace khosim::mm

// Kho's incoming side: restoring preserved pages, folios, blobs and
// vmalloc areas exactly once, and the root FDT's subtrees and debug view.
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/container/btree_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/abi/kho_range.h"
#include "khosim/kho/bitmap_tracker.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_fdt.h"
#include "khosim/kho/range_preservation_tracker.h"
#include "khosim/linux/atomic.h"
#include "khosim/linux/err.h"
#include "khosim/linux/mm.h"

namespace khosim::kho {

// ---------------------------------------------------------------------------
// Restore

struct page* Kho::RestorePage(PhysAddr pa, bool is_folio) {
  const PageGeometry& g = mm_.geometry();
  if (!mm_.memory().IsRam(PhysAddr(AlignDown(pa.value(), g.page_size())), g.page_size())) {
    ctx_.WarnOnce(KHOSIM_SITE, "kho_restore_page: address is not online memory");
    return nullptr;
  }
  struct page* page = mm_.PhysToPage(PhysAddr(AlignDown(pa.value(), g.page_size())));
  const uint64_t info = page->private_data;
  if (!IsAligned(pa.value(), g.page_size()) || (info >> 32) != abi::kKhoPageMagic) {
    ctx_.WarnOnce(KHOSIM_SITE, "kho_restore_page: no preserved block starts here");
    return nullptr;
  }
  const unsigned order = static_cast<unsigned>(info & 0xffffffffu);
  // kho-v1 kernels refused blocks above MAX_PAGE_ORDER (the limit was
  // dropped with the hugetlb work); the tag stays, as it did there.
  if (profile_ == KhoProfile::kV1 && order > g.max_page_order) {
    ctx_.WarnOnce(KHOSIM_SITE, "kho_restore_page: order above MAX_PAGE_ORDER");
    return nullptr;
  }
  const uint64_t nr = uint64_t{1} << order;
  page->private_data = 0;
  // Marked on a folio's head (its tails answer through compound_head), on
  // every page of a page block; freeing clears it.
  page->flags |= 1ul << PG_kho_restored;
  if (is_folio) {
    atomic_set(&page->_refcount, 1);
    if (order > 0) {
      page->flags |= 1ul << PG_head;
      page->compound_order = static_cast<unsigned char>(order);
      for (uint64_t i = 1; i < nr; ++i) {
        page[i].compound_head = reinterpret_cast<unsigned long>(page) | 1;
        atomic_set(&page[i]._refcount, 0);
      }
    }
  } else {
    for (uint64_t i = 0; i < nr; ++i) {
      atomic_set(&page[i]._refcount, 1);
      page[i].flags |= 1ul << PG_kho_restored;
    }
  }
  mm_.pages().AdjustManagedPages(static_cast<int64_t>(nr));
  return page;
}

struct folio* Kho::RestoreFolio(PhysAddr pa) {
  return reinterpret_cast<struct folio*>(RestorePage(pa, /*is_folio=*/true));
}

struct page* Kho::RestorePages(PhysAddr pa, uint64_t nr_pages) {
  const PageGeometry& g = mm_.geometry();
  const uint64_t start = g.PhysToPfn(pa).value();
  const uint64_t end = start + nr_pages;
  struct page* first = nullptr;
  // The same split as preservation, without the NUMA bound (upstream's
  // restore walk does not apply it).
  for (uint64_t pfn = start; pfn < end;) {
    const unsigned order = SplitOrder(pfn, end, /*numa_bounded=*/false);
    struct page* page = RestorePage(g.PfnToPhys(Pfn(pfn)), /*is_folio=*/false);
    if (page == nullptr) return nullptr;
    if (first == nullptr) first = page;
    pfn += uint64_t{1} << order;
  }
  return first;
}

bool Kho::IsPreservedHead(PhysAddr pa, unsigned* order) const {
  const uint64_t page = mm_.geometry().page_size();
  if (pa.IsNull() || !IsAligned(pa.value(), page) || !mm_.memory().IsRam(pa, page)) return false;
  const uint64_t info = mm_.PhysToPage(pa)->private_data;
  if ((info >> 32) != abi::kKhoPageMagic) return false;
  if (order != nullptr) *order = static_cast<unsigned>(info & 0xffffffffu);
  return true;
}

void Kho::RestoreFree(void* mem) {
  if (mem == nullptr) return;
  struct folio* folio = RestoreFolio(mm_.memory().Phys(mem));
  if (folio == nullptr) {
    ctx_.Warn(KHOSIM_SITE, "kho_restore_free: restore failed");
    return;
  }
  folio_put(folio);
}

uint64_t Kho::UnrestoredBlocks() const {
  uint64_t n = 0;
  for (PhysAddr pa : retrieved_heads_) {
    n += (mm_.PhysToPage(pa)->private_data >> 32) == abi::kKhoPageMagic;
  }
  return n;
}

// ---------------------------------------------------------------------------
// Subtrees

int Kho::AddSubtree(absl::string_view name, const void* blob, uint64_t size) {
  if (out_fdt_.IsNull()) {
    ctx_.Warn(KHOSIM_SITE, "kho_add_subtree without a root FDT");
    return -EINVAL;
  }
  absl::MutexLock lock(&fdt_mu_);
  return kho::AddSubtree(mm_.memory().Virt(out_fdt_), name, mm_.memory().Phys(blob).value(), size,
                         subtree_layout());
}

void Kho::RemoveSubtree(const void* blob) {
  if (out_fdt_.IsNull()) return;
  absl::MutexLock lock(&fdt_mu_);
  kho::RemoveSubtree(mm_.memory().Virt(out_fdt_), mm_.memory().Phys(blob).value(),
                     subtree_layout());
}

int Kho::RetrieveSubtree(absl::string_view name, uint64_t* phys, uint64_t* size) const {
  if (!is_kho_boot()) return -ENOENT;
  if (phys == nullptr) return -EINVAL;
  return kho::RetrieveSubtree(mm_.memory().Virt(PhysAddr(in_fdt_phys_)), name, phys, size,
                              subtree_layout());
}

std::vector<KhoDebugView::Blob> Kho::ListSubtrees(PhysAddr fdt) const {
  std::vector<KhoDebugView::Blob> out;
  const SubtreeLayout layout = subtree_layout();
  for (const SubtreeInfo& info : kho::ListSubtrees(mm_.memory().Virt(fdt), layout)) {
    // Like debugfs, skip nodes without a usable preserved-data/blob-size
    // (kho-v1: without `fdt`). A kho-v1 blob's size is not handed over;
    // it is shown as 0 rather than read from a blob nobody may have
    // restored yet.
    if (!info.has_data || (layout == SubtreeLayout::kBlobSize && !info.has_size)) continue;
    out.push_back({info.name, info.phys, info.size});
  }
  return out;
}

KhoDebugView Kho::DebugView() const {
  KhoDebugView view;
  for (const abi::KhoScratch& s : scratch_) {
    view.scratch_phys.push_back(s.addr);
    view.scratch_len.push_back(s.size);
  }
  if (!out_fdt_.IsNull()) {
    absl::MutexLock lock(&fdt_mu_);
    const uint8_t* p = mm_.memory().Virt(out_fdt_);
    view.out_fdt.assign(p, p + FdtTotalSize(p));
    view.out_subtrees = ListSubtrees(out_fdt_);
  }
  if (is_kho_boot()) {
    const uint8_t* p = mm_.memory().Virt(PhysAddr(in_fdt_phys_));
    view.in_fdt.assign(p, p + FdtTotalSize(p));
    view.in_subtrees = ListSubtrees(PhysAddr(in_fdt_phys_));
  }
  return view;
}

std::string KhoDebugView::ToString() const {
  std::string out = "kho/out/scratch_phys:";
  for (uint64_t v : scratch_phys) absl::StrAppend(&out, absl::StrFormat(" 0x%x", v));
  absl::StrAppend(&out, "\nkho/out/scratch_len:");
  for (uint64_t v : scratch_len) absl::StrAppend(&out, absl::StrFormat(" 0x%x", v));
  absl::StrAppend(&out, absl::StrFormat("\nkho/out/fdt: %d bytes", out_fdt.size()));
  for (const Blob& b : out_subtrees) {
    absl::StrAppend(
        &out, absl::StrFormat("\nkho/out/sub_fdts/%s: 0x%x (%d bytes)", b.name, b.phys, b.size));
  }
  if (!in_fdt.empty()) {
    absl::StrAppend(&out, absl::StrFormat("\nkho/in/fdt: %d bytes", in_fdt.size()));
    for (const Blob& b : in_subtrees) {
      absl::StrAppend(
          &out, absl::StrFormat("\nkho/in/sub_fdts/%s: 0x%x (%d bytes)", b.name, b.phys, b.size));
    }
  }
  return out;
}

}  // namespace khosim::kho

// Kho's outgoing side: preserving and unpreserving pages, folios,
// kho_alloc_preserve blobs and vmalloc areas in the tracker.
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
// Preservation

bool Kho::ScratchOverlap(PhysAddr pa, uint64_t len) const {
  for (const abi::KhoScratch& s : scratch_) {
    if (s.size != 0 && pa.value() < s.addr + s.size && s.addr < pa.value() + len) return true;
  }
  return false;
}

unsigned Kho::SplitOrder(uint64_t pfn, uint64_t end_pfn, bool numa_bounded) const {
  const unsigned align_order = pfn == 0 ? 63u : static_cast<unsigned>(std::countr_zero(pfn));
  const unsigned len_order = static_cast<unsigned>(std::bit_width(end_pfn - pfn) - 1);
  unsigned order = std::min(align_order, len_order);
  // The NUMA bound came with the radix era; the kho-v1 split had none.
  if (numa_bounded && profile_ != KhoProfile::kV1) {
    const auto& layout = mm_.memory().layout();
    const PageGeometry& g = mm_.geometry();
    const int nid = layout.NodeOf(g.PfnToPhys(Pfn(pfn)));
    while (order > 0 && layout.NodeOf(g.PfnToPhys(Pfn(pfn + (uint64_t{1} << order) - 1))) != nid) {
      --order;
    }
  }
  return order;
}

int Kho::PreserveOrder(uint64_t pfn, unsigned order) {
  if (!tracker_->ready()) {
    ctx_.Warn(KHOSIM_SITE, "KHO preservation without an initialized tree");
    return -EINVAL;
  }
  return tracker_->Add(mm_.geometry().PfnToPhys(Pfn(pfn)), order);
}

void Kho::UnpreserveRange(uint64_t start_pfn, uint64_t end_pfn) {
  if (!tracker_->ready()) return;
  for (uint64_t pfn = start_pfn; pfn < end_pfn;) {
    const unsigned order = SplitOrder(pfn, end_pfn, /*numa_bounded=*/true);
    if (tracker_->Del(mm_.geometry().PfnToPhys(Pfn(pfn)), order) == -ENOENT) {
      ctx_.Warn(KHOSIM_SITE, "unpreserve of a block whose tree path does not exist");
    }
    pfn += uint64_t{1} << order;
  }
}

int Kho::PreserveFolio(struct folio* folio) {
  const PhysAddr pa = mm_.PageToPhys(&folio->page);
  const unsigned order = folio_order(folio);
  if (ScratchOverlap(pa, mm_.geometry().page_size() << order)) {
    ctx_.Warn(KHOSIM_SITE, "preserving memory inside KHO boot memory");
    if (config_.debug) return -EINVAL;
  }
  return PreserveOrder(mm_.geometry().PhysToPfn(pa).value(), order);
}

void Kho::UnpreserveFolio(struct folio* folio) {
  if (!tracker_->ready()) return;
  if (tracker_->Del(mm_.PageToPhys(&folio->page), folio_order(folio)) == -ENOENT) {
    ctx_.Warn(KHOSIM_SITE, "unpreserve of a folio whose tree path does not exist");
  }
}

int Kho::PreservePages(struct page* page, uint64_t nr_pages) {
  const uint64_t start = mm_.memmap().PageToPfn(page).value();
  const uint64_t end = start + nr_pages;
  if (ScratchOverlap(mm_.geometry().PfnToPhys(Pfn(start)), nr_pages << mm_.geometry().page_shift)) {
    ctx_.Warn(KHOSIM_SITE, "preserving memory inside KHO boot memory");
    if (config_.debug) return -EINVAL;
  }
  for (uint64_t pfn = start; pfn < end;) {
    const unsigned order = SplitOrder(pfn, end, /*numa_bounded=*/true);
    if (int err = PreserveOrder(pfn, order); err != 0) {
      UnpreserveRange(start, pfn);
      return err;
    }
    pfn += uint64_t{1} << order;
  }
  return 0;
}

void Kho::UnpreservePages(struct page* page, uint64_t nr_pages) {
  const uint64_t start = mm_.memmap().PageToPfn(page).value();
  UnpreserveRange(start, start + nr_pages);
}

bool Kho::IsPreserved(PhysAddr pa, uint64_t nr_pages) {
  if (!tracker_->ready() || nr_pages == 0) return false;
  const PageGeometry& g = mm_.geometry();
  const unsigned max_order = 64 - g.page_shift;
  uint64_t pfn = g.PhysToPfn(pa).value();
  const uint64_t end = pfn + nr_pages;
  while (pfn < end) {
    bool covered = false;
    for (unsigned order = 0; order <= max_order && !covered; ++order) {
      const uint64_t head = pfn & ~((uint64_t{1} << order) - 1);
      if (tracker_->Contains(g.PfnToPhys(Pfn(head)), order)) {
        covered = true;
        pfn = head + (uint64_t{1} << order);
      }
    }
    if (!covered) return false;
  }
  return true;
}

void* Kho::AllocPreserve(uint64_t size) {
  if (size == 0) return ERR_PTR(-EINVAL);
  const unsigned order = mm_.geometry().GetOrder(size);
  if (order > mm_.geometry().max_page_order) return ERR_PTR(-E2BIG);
  if (ctx_.ShouldFail("kho_alloc_preserve")) return ERR_PTR(-ENOMEM);
  struct folio* folio = folio_alloc(GFP_KERNEL | __GFP_ZERO, order);
  if (folio == nullptr) return ERR_PTR(-ENOMEM);
  if (int err = PreserveFolio(folio); err != 0) {
    folio_put(folio);
    return ERR_PTR(err);
  }
  return folio_address(folio);
}

void Kho::UnpreserveFree(void* mem) {
  if (mem == nullptr) return;
  struct folio* folio = virt_to_folio(mem);
  UnpreserveFolio(folio);
  folio_put(folio);
}

// ---------------------------------------------------------------------------
// vmalloc

namespace {

uint16_t VmFlagsToKho(unsigned long vm_flags) {
  uint16_t flags = 0;
  if (vm_flags & VM_ALLOC) flags |= abi::kKhoVmallocAlloc;
  if (vm_flags & VM_ALLOW_HUGE_VMAP) flags |= abi::kKhoVmallocHugeVmap;
  return flags;
}

constexpr unsigned long kSupportedVmFlags = VM_ALLOC | VM_ALLOW_HUGE_VMAP;

}  // namespace

int Kho::PreserveVmalloc(void* ptr, abi::KhoVmalloc* preservation) {
  const vm_struct* vm = mm_.vmalloc().FindArea(ptr);
  if (vm == nullptr) return -EINVAL;
  if (vm->flags & ~kSupportedVmFlags) return -EOPNOTSUPP;
  const PageGeometry& g = mm_.geometry();
  const uint64_t per_chunk = abi::KhoVmallocEntriesPerChunk(g.page_size());
  const unsigned order = vm->page_order;
  *preservation = abi::KhoVmalloc{};
  uint64_t* chunk = nullptr;
  auto new_chunk = [&](uint64_t* prev) -> uint64_t* {
    struct page* p = mm_.pages().Alloc(GFP_KERNEL | __GFP_ZERO, 0);
    if (p == nullptr) return nullptr;
    if (PreservePages(p, 1) != 0) {
      atomic_set(&p->_refcount, 0);
      mm_.pages().Free(p, 0);
      return nullptr;
    }
    const PhysAddr pa = mm_.PageToPhys(p);
    if (prev != nullptr) prev[0] = pa.value();
    return static_cast<uint64_t*>(mm_.PageAddress(p));
  };
  chunk = new_chunk(nullptr);
  if (chunk == nullptr) return -ENOMEM;
  preservation->first = mm_.memory().Phys(chunk).value();
  uint64_t idx = 0;
  int err = 0;
  for (unsigned i = 0; i < vm->nr_pages; i += 1u << order) {
    err = PreservePages(vm->pages[i], uint64_t{1} << order);
    if (err != 0) break;
    chunk[1 + idx++] = mm_.PageToPhys(vm->pages[i]).value();
    if (idx == per_chunk) {
      chunk = new_chunk(chunk);
      if (chunk == nullptr) {
        err = -ENOMEM;
        break;
      }
      idx = 0;
    }
  }
  if (err != 0) {
    UnpreserveVmalloc(preservation);
    return err;
  }
  preservation->total_pages = vm->nr_pages;
  preservation->flags = VmFlagsToKho(vm->flags);
  preservation->order = static_cast<uint16_t>(order);
  return 0;
}

void Kho::UnpreserveVmalloc(abi::KhoVmalloc* preservation) {
  const PageGeometry& g = mm_.geometry();
  const uint64_t per_chunk = abi::KhoVmallocEntriesPerChunk(g.page_size());
  uint64_t chunk_pa = preservation->first;
  while (chunk_pa != 0) {
    auto* chunk = static_cast<uint64_t*>(static_cast<void*>(mm_.memory().Virt(PhysAddr(chunk_pa))));
    const uint64_t pfn = g.PhysToPfn(PhysAddr(chunk_pa)).value();
    UnpreserveRange(pfn, pfn + 1);
    for (uint64_t i = 0; i < per_chunk && chunk[1 + i] != 0; ++i) {
      const uint64_t entry_pfn = g.PhysToPfn(PhysAddr(chunk[1 + i])).value();
      UnpreserveRange(entry_pfn, entry_pfn + (uint64_t{1} << preservation->order));
    }
    const uint64_t next = chunk[0];
    struct page* p = mm_.PhysToPage(PhysAddr(chunk_pa));
    atomic_set(&p->_refcount, 0);
    mm_.pages().Free(p, 0);
    chunk_pa = next;
  }
  preservation->first = 0;
}

void* Kho::RestoreVmalloc(const abi::KhoVmalloc* preservation) {
  const PageGeometry& g = mm_.geometry();
  if (preservation->flags & ~(abi::kKhoVmallocAlloc | abi::kKhoVmallocHugeVmap)) return nullptr;
  const uint64_t total = preservation->total_pages;
  const unsigned order = preservation->order;
  if (order > 63 - g.page_shift) return nullptr;
  // The count is the previous kernel's word: never size anything from it
  // beyond what this machine's RAM could hold.
  if (total > (mm_.memory().layout().total_ram() >> g.page_shift)) return nullptr;
  const uint64_t contig = uint64_t{1} << order;
  const uint64_t per_chunk = abi::KhoVmallocEntriesPerChunk(g.page_size());
  std::vector<struct page*> pages;
  pages.reserve(total);
  uint64_t chunk_pa = preservation->first;
  while (chunk_pa != 0) {
    // The chunk is read before it is restored: refuse one that is not RAM.
    if (!IsAligned(chunk_pa, g.page_size()) ||
        !mm_.memory().IsRam(PhysAddr(chunk_pa), g.page_size())) {
      return nullptr;
    }
    const auto* chunk = reinterpret_cast<const uint64_t*>(mm_.memory().Virt(PhysAddr(chunk_pa)));
    for (uint64_t i = 0; i < per_chunk && chunk[1 + i] != 0; ++i) {
      if (pages.size() + contig > total) return nullptr;
      struct page* page = RestorePages(PhysAddr(chunk[1 + i]), contig);
      if (page == nullptr) return nullptr;
      for (uint64_t j = 0; j < contig; ++j) pages.push_back(page + j);
    }
    struct page* chunk_page = RestorePages(PhysAddr(chunk_pa), 1);
    if (chunk_page == nullptr) return nullptr;
    chunk_pa = chunk[0];
    __free_page(chunk_page);
  }
  if (pages.size() != total || total == 0) return nullptr;
  unsigned long vm_flags = VM_MAP_PUT_PAGES;
  if (preservation->flags & abi::kKhoVmallocAlloc) vm_flags |= VM_ALLOC;
  if (preservation->flags & abi::kKhoVmallocHugeVmap) vm_flags |= VM_ALLOW_HUGE_VMAP;
  return mm_.vmalloc().Map(pages.data(), static_cast<unsigned>(total), order, vm_flags);
}

}  // namespace khosim::kho

// Vmalloc: areas in a per-kernel host address window.
//
// Lifecycle of an area: reserve window space (first fit, one guard page
// after each area), allocate or adopt its pages, alias-map them in runs of
// physically consecutive pages, and on Free undo all three. The window
// itself is reserved PROT_NONE when the kernel's buddy allocator comes up
// and released when the kernel dies; pages still held by areas then belong
// to whatever the next kernel decides about physical memory.
#include "khosim/mm/vmalloc.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/linux/atomic.h"

namespace khosim::mm {

Vmalloc::Vmalloc(KernelContext& ctx, hw::PhysicalMemory& memory, Memmap& memmap,
                 PageAllocator& allocator)
    : ctx_(ctx), memory_(memory), memmap_(memmap), allocator_(allocator) {
  // Room for every page of RAM to be vmapped once, plus slack for guards,
  // up to 16 TiB: the host's 128 TiB of user address space must also hold
  // a 64 TiB machine's direct map and memmap, in whatever gaps the host's
  // mmap leaves. The largest vmalloc a kernel makes (a folio array) is
  // 1/256 of the memory it describes, far below the cap.
  window_size_ =
      AlignUp(64 * kGiB + std::min<uint64_t>(2 * memory.layout().total_ram(), 16 * kTiB), kGiB);
  window_ = static_cast<uint8_t*>(hw::PhysicalMemory::ReserveAliasSpace(window_size_));
}

Vmalloc::~Vmalloc() { hw::PhysicalMemory::ReleaseAliasSpace(window_, window_size_); }

void* Vmalloc::ReserveVaLocked(uint64_t size) {
  for (auto it = free_va_.begin(); it != free_va_.end(); ++it) {
    if (it->second < size) continue;
    const uint64_t offset = it->first;
    const uint64_t remaining = it->second - size;
    free_va_.erase(it);
    if (remaining > 0) free_va_[offset + size] = remaining;
    return window_ + offset;
  }
  if (next_offset_ + size > window_size_) return nullptr;
  void* va = window_ + next_offset_;
  next_offset_ += size;
  return va;
}

void Vmalloc::MapPages(Area& area) {
  const uint64_t page = ctx_.geometry().page_size();
  auto* va = static_cast<uint8_t*>(area.vm.addr);
  size_t i = 0;
  while (i < area.pages.size()) {
    const uint64_t first_pfn = memmap_.PageToPfn(area.pages[i]).value();
    size_t run = 1;
    while (i + run < area.pages.size() &&
           memmap_.PageToPfn(area.pages[i + run]).value() == first_pfn + run) {
      ++run;
    }
    memory_.MapAlias(va + i * page, PhysAddr(first_pfn * page), run * page);
    i += run;
  }
}

void* Vmalloc::Alloc(uint64_t size, gfp_t gfp, unsigned long vm_flags) {
  if (size == 0) return nullptr;
  if (ctx_.ShouldFail("vmalloc")) return nullptr;
  const PageGeometry& g = ctx_.geometry();
  unsigned page_order = 0;
  if ((vm_flags & VM_ALLOW_HUGE_VMAP) && size >= (g.page_size() << g.pageblock_order)) {
    page_order = g.pageblock_order;
  }
  const uint64_t block_bytes = g.page_size() << page_order;
  const uint64_t bytes = AlignUp(size, block_bytes);
  Area area;
  area.owns_pages = true;
  const uint64_t nr_pages = bytes >> g.page_shift;
  area.pages.reserve(nr_pages);
  for (uint64_t done = 0; done < nr_pages; done += uint64_t{1} << page_order) {
    struct page* head = allocator_.Alloc(gfp & ~(__GFP_COMP | __GFP_ZERO), page_order);
    if (head == nullptr) {
      for (struct page* p : area.pages) {
        atomic_set(&p->_refcount, 0);
        p->flags &= ~(1ul << PG_vmalloc);
        allocator_.Free(p, 0);
      }
      return nullptr;
    }
    // Split: every page is an independent order-0 page with one reference,
    // which is how vfree later releases them.
    for (uint64_t i = 0; i < (uint64_t{1} << page_order); ++i) {
      struct page* p = head + i;
      atomic_set(&p->_refcount, 1);
      p->flags |= 1ul << PG_vmalloc;
      area.pages.push_back(p);
    }
    if (gfp & __GFP_ZERO) {
      memory_.Zero(g.PfnToPhys(memmap_.PageToPfn(head)), block_bytes);
    }
  }
  absl::MutexLock lock(&mu_);
  const uint64_t guard = (vm_flags & VM_NO_GUARD) ? 0 : g.page_size();
  // Huge areas are aligned to their block size within the window.
  void* va = ReserveVaLocked(bytes + guard + (page_order ? block_bytes : 0));
  if (va == nullptr) {
    for (struct page* p : area.pages) {
      atomic_set(&p->_refcount, 0);
      p->flags &= ~(1ul << PG_vmalloc);
      allocator_.Free(p, 0);
    }
    return nullptr;
  }
  auto* aligned = reinterpret_cast<uint8_t*>(AlignUp(reinterpret_cast<uintptr_t>(va), block_bytes));
  area.vm =
      vm_struct{aligned, bytes, vm_flags, nullptr, static_cast<unsigned>(nr_pages), page_order};
  MapPages(area);
  auto [it, inserted] = areas_.emplace(reinterpret_cast<uintptr_t>(aligned), std::move(area));
  it->second.vm.pages = it->second.pages.data();
  // Remember the reservation's true start for Free.
  reservations_[reinterpret_cast<uintptr_t>(aligned)] = {
      static_cast<uint64_t>(static_cast<uint8_t*>(va) - window_),
      bytes + guard + (page_order ? block_bytes : 0)};
  if (bytes >= ctx_.env().TraceAllocThreshold()) {
    ctx_.Trace("alloc", "vmalloc", {{"size", absl::StrCat(bytes)}});
  }
  return aligned;
}

void* Vmalloc::Map(struct page** pages, unsigned int count, unsigned int page_order,
                   unsigned long vm_flags) {
  if (count == 0 || pages == nullptr) return nullptr;
  const PageGeometry& g = ctx_.geometry();
  const uint64_t block = uint64_t{1} << page_order;
  if (count % block != 0) return nullptr;
  for (unsigned i = 0; i < count; ++i) {
    if (pages[i] == nullptr || !memmap_.Contains(pages[i])) return nullptr;
    if (i % block != 0 &&
        memmap_.PageToPfn(pages[i]).value() != memmap_.PageToPfn(pages[i - 1]).value() + 1) {
      ctx_.Warn(KHOSIM_SITE, "vmap: pages of one block are not contiguous");
      return nullptr;
    }
  }
  Area area;
  // The area owns its pages (vfree releases them) when it is an allocation
  // area or the caller hands them over; the hand-over flag is not kept.
  area.owns_pages = (vm_flags & (VM_ALLOC | VM_MAP_PUT_PAGES)) != 0;
  vm_flags &= ~static_cast<unsigned long>(VM_MAP_PUT_PAGES);
  area.pages.assign(pages, pages + count);
  const uint64_t bytes = uint64_t{count} << g.page_shift;
  const uint64_t block_bytes = g.page_size() << page_order;
  absl::MutexLock lock(&mu_);
  const uint64_t guard = (vm_flags & VM_NO_GUARD) ? 0 : g.page_size();
  const uint64_t reserve = bytes + guard + (page_order ? block_bytes : 0);
  void* va = ReserveVaLocked(reserve);
  if (va == nullptr) return nullptr;
  auto* aligned = reinterpret_cast<uint8_t*>(AlignUp(reinterpret_cast<uintptr_t>(va), block_bytes));
  area.vm = vm_struct{aligned, bytes, vm_flags, nullptr, count, page_order};
  MapPages(area);
  auto [it, inserted] = areas_.emplace(reinterpret_cast<uintptr_t>(aligned), std::move(area));
  it->second.vm.pages = it->second.pages.data();
  reservations_[reinterpret_cast<uintptr_t>(aligned)] = {
      static_cast<uint64_t>(static_cast<uint8_t*>(va) - window_), reserve};
  return aligned;
}

void Vmalloc::Free(const void* addr) {
  if (addr == nullptr) return;
  Area area;
  std::pair<uint64_t, uint64_t> reservation;
  {
    absl::MutexLock lock(&mu_);
    auto it = areas_.find(reinterpret_cast<uintptr_t>(addr));
    if (it == areas_.end()) {
      ctx_.Warn(KHOSIM_SITE, absl::StrFormat("vfree: %p is not a vmalloc area", addr));
      return;
    }
    area = std::move(it->second);
    areas_.erase(it);
    auto r = reservations_.find(reinterpret_cast<uintptr_t>(addr));
    reservation = r->second;
    reservations_.erase(r);
    hw::PhysicalMemory::UnmapAlias(area.vm.addr, area.vm.size);
    // Return the window space, merging with free neighbours.
    uint64_t offset = reservation.first;
    uint64_t size = reservation.second;
    auto next = free_va_.lower_bound(offset);
    if (next != free_va_.end() && next->first == offset + size) {
      size += next->second;
      next = free_va_.erase(next);
    }
    if (next != free_va_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        offset = prev->first;
        size += prev->second;
        free_va_.erase(prev);
      }
    }
    if (offset + size == next_offset_) {
      next_offset_ = offset;
    } else {
      free_va_[offset] = size;
    }
  }
  if (!area.owns_pages) return;
  for (struct page* p : area.pages) {
    p->flags &= ~(1ul << PG_vmalloc);
    if (atomic_fetch_sub(1, &p->_refcount) == 1) allocator_.Free(p, 0);
  }
}

bool Vmalloc::IsVmallocAddr(const void* addr) const {
  const auto* p = static_cast<const uint8_t*>(addr);
  return p >= window_ && p < window_ + window_size_;
}

const vm_struct* Vmalloc::FindArea(const void* addr) const {
  absl::MutexLock lock(&mu_);
  const auto key = reinterpret_cast<uintptr_t>(addr);
  auto it = areas_.upper_bound(key);
  if (it == areas_.begin()) return nullptr;
  --it;
  if (key >= it->first + it->second.vm.size) return nullptr;
  return &it->second.vm;
}

struct page* Vmalloc::ToPage(const void* addr) const {
  const vm_struct* vm = FindArea(addr);
  if (vm == nullptr) return nullptr;
  const uint64_t index = (static_cast<const uint8_t*>(addr) - static_cast<uint8_t*>(vm->addr)) >>
                         ctx_.geometry().page_shift;
  return vm->pages[index];
}

uint64_t Vmalloc::AreaCount() const {
  absl::MutexLock lock(&mu_);
  return areas_.size();
}

}  // namespace khosim::mm

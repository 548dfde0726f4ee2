// Mm: bring-up of one kernel's memory substrate.
//
// Lifecycle (called by the Kernel in this order):
//   SetupArch   memblock learns RAM from the machine's memory map, reserves
//               this kernel's image and makes the early allocations a kernel
//               makes before its memmap exists.
//   InitMemmap  reserves the memmap's physical footprint node by node (one
//               buffer per node, as sparse_init does) and creates the host
//               struct page array.
//   FreeAll     memblock_free_all: leaves the scratch-only phase, then hands
//               every free range to the buddy allocator after scrubbing what
//               an earlier kernel left in it.
// After FreeAll the page allocator and vmalloc are live and memblock is
// bookkeeping only.
#include "khosim/mm/mm.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace khosim::mm {
namespace {

// Bytes of physical memory one memory section spans (SECTION_SIZE_BITS:
// 27 for 4K and 16K pages, 29 for 64K pages on arm64).
uint64_t SectionBytes(const PageGeometry& geometry) {
  return geometry.page_shift == 16 ? (uint64_t{1} << 29) : (uint64_t{1} << 27);
}

}  // namespace

Mm::Mm(KernelContext& ctx, hw::PhysicalMemory& memory, MmConfig config)
    : ctx_(ctx), memory_(memory), config_(config), memblock_(ctx) {
  ctx_.set_slot(KernelSlot::kMm, this);
  hugetlb_ = std::make_unique<Hugetlb>(*this);
}

void* Mm::SlabAlloc(size_t size, bool zero) {
  // malloc(0) may return NULL; the kernel returns ZERO_SIZE_PTR, which is
  // not NULL either.
  void* p = zero ? std::calloc(1, size == 0 ? 1 : size) : std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) return nullptr;
  absl::MutexLock lock(&slab_mu_);
  slab_.insert(p);
  return p;
}

void Mm::SlabFree(const void* p) {
  if (p == nullptr) return;
  {
    absl::MutexLock lock(&slab_mu_);
    if (slab_.erase(p) == 0) {
      ctx_.Warn(KHOSIM_SITE, "kfree of memory this kernel's slab never handed out");
      return;
    }
  }
  std::free(const_cast<void*>(p));
}

size_t Mm::SlabObjects() const {
  absl::MutexLock lock(&slab_mu_);
  return slab_.size();
}

Mm::~Mm() {
  {
    absl::MutexLock lock(&slab_mu_);
    for (const void* p : slab_) std::free(const_cast<void*>(p));
    slab_.clear();
  }
  // Vmalloc unmaps its aliases before the memmap goes away.
  vmalloc_.reset();
  allocator_.reset();
  memmap_.reset();
  ctx_.set_slot(KernelSlot::kMm, nullptr);
}

Mm& Mm::Current() {
  auto* mm = static_cast<Mm*>(RequireKernelContext().slot(KernelSlot::kMm));
  if (mm == nullptr) RequireKernelContext().Panic(KHOSIM_SITE, "mm used before it exists");
  return *mm;
}

void Mm::SetupArch() {
  hugetlb_->ParseCmdline(ctx_.cmdline().text());
  for (const hw::RamRange& range : memory_.layout().ranges()) {
    memblock_.Add(range.start, range.size, range.nid);
  }
  if (config_.image_size > 0) {
    if (!memblock_.IsMemory(config_.image_base, config_.image_size)) {
      ctx_.Panic(KHOSIM_SITE,
                 absl::StrCat("kernel image at ", config_.image_base.ToString(), " is not in RAM"));
    }
    memblock_.Reserve(config_.image_base, config_.image_size);
  }
}

void Mm::InitMemmap() {
  // Early allocations a kernel makes before its memmap: page tables,
  // per-cpu areas, the log buffer. Node-local, like the real ones.
  if (config_.early_alloc_bytes_per_node > 0) {
    for (int nid = 0; nid < memory_.layout().num_nodes(); ++nid) {
      EarlyAllocOrPanic(config_.early_alloc_bytes_per_node, geometry().page_size(), nid);
    }
  }
  if (config_.low_early_alloc_bytes > 0) {
    const PhysAddr pa = memblock_.Alloc({.size = config_.low_early_alloc_bytes,
                                         .align = geometry().page_size(),
                                         .max_addr = PhysAddr(kLowAddressLimit)});
    if (pa.IsNull()) {
      ctx_.Panic(KHOSIM_SITE, absl::StrFormat("Failed to allocate %d bytes below 4 GiB",
                                              config_.low_early_alloc_bytes));
    }
    ZeroPhys(pa, config_.low_early_alloc_bytes);
  }
  ctx_.SetPhase(BootPhase::kMmInit);
  if (config_.reserve_memmap_footprint) {
    const uint64_t section = SectionBytes(geometry());
    const uint64_t section_map = AlignUp(
        (section >> geometry().page_shift) * kKernelStructPageBytes, geometry().page_size());
    for (int nid = 0; nid < memory_.layout().num_nodes(); ++nid) {
      // Count the sections with memory on this node.
      uint64_t present = 0;
      uint64_t last_section = ~uint64_t{0};
      for (const hw::RamRange& r : memory_.layout().ranges()) {
        if (r.nid != nid) continue;
        for (uint64_t s = r.start.value() / section; s * section < r.end().value(); ++s) {
          if (s != last_section) ++present;
          last_section = s;
        }
      }
      if (present == 0) continue;
      MemblockAllocRequest request{.size = present * section_map,
                                   .align = std::min<uint64_t>(section_map, 2 * kMiB),
                                   .nid = nid,
                                   .exact_nid = true};
      if (!memblock_.Alloc(request).IsNull()) continue;
      // No room for one buffer: fall back to a section at a time, any node.
      for (uint64_t i = 0; i < present; ++i) {
        EarlyAllocOrPanic(section_map, geometry().page_size(), nid);
      }
    }
  }
  memmap_ = std::make_unique<Memmap>(memory_.layout().end().value() >> geometry().page_shift);
  allocator_ = std::make_unique<PageAllocator>(ctx_, memory_, *memmap_, config_.free_memory_policy);
}

void Mm::FreeAll() {
  memblock_.SetScratchOnly(false);
  // Gigantic pages come from memblock (never scratch, never preserved
  // memory, which KHO has reserved by now) before the rest goes to the
  // buddy.
  hugetlb_->ReserveBootmem();
  uint64_t released = 0;
  memblock_.ForEachFreeRange(kNumaNoNode, [&](PhysAddr start, PhysAddr end, int nid) {
    // Whatever an earlier kernel left here is gone before this kernel can
    // read it.
    if (config_.free_memory_policy == FreeMemoryPolicy::kInaccessible) {
      memory_.Discard(start, end - start);
      memory_.SetAccessible(start, end - start, false);
    } else {
      memory_.PoisonResident(start, end - start);
    }
    allocator_->AddFreeRange(geometry().PhysToPfn(start), geometry().PhysToPfn(end), nid);
    released += end - start;
  });
  vmalloc_ = std::make_unique<Vmalloc>(ctx_, memory_, *memmap_, *allocator_);
  free_all_done_ = true;
  ctx_.SetPhase(BootPhase::kBuddy);
  ctx_.Trace("mm", "memblock_free_all", {{"released_bytes", absl::StrCat(released)}});
}

struct page* Mm::PhysToPage(PhysAddr pa) const {
  return memmap_->PfnToPage(geometry().PhysToPfn(pa));
}

PhysAddr Mm::PageToPhys(const struct page* page) const {
  return geometry().PfnToPhys(memmap_->PageToPfn(page));
}

void* Mm::PageAddress(const struct page* page) const { return memory_.Virt(PageToPhys(page)); }

struct page* Mm::VirtToPage(const void* va) const {
  if (memory_.IsDirectMap(va)) return PhysToPage(memory_.Phys(va));
  if (vmalloc_ != nullptr && vmalloc_->IsVmallocAddr(va)) return vmalloc_->ToPage(va);
  return nullptr;
}

PhysAddr Mm::EarlyAllocOrPanic(uint64_t size, uint64_t align, int nid, bool exact_nid) {
  if (free_all_done_) {
    ctx_.Panic(KHOSIM_SITE, "memblock allocation after memblock_free_all");
  }
  const PhysAddr pa =
      memblock_.Alloc({.size = size, .align = align, .nid = nid, .exact_nid = exact_nid});
  if (pa.IsNull()) {
    ctx_.Panic(KHOSIM_SITE,
               absl::StrFormat("Failed to allocate %d bytes align=0x%x nid=%d%s", size, align, nid,
                               memblock_.scratch_only() ? " (scratch only)" : ""));
  }
  ZeroPhys(pa, size);
  return pa;
}

int Mm::PlaceKexecSegment(uint64_t size, uint64_t align, PhysAddr* out) {
  const PageGeometry& g = geometry();
  const uint64_t nr_pages = AlignUp(size, g.page_size()) >> g.page_shift;
  const uint64_t align_pages = std::max<uint64_t>(1, align >> g.page_shift);
  std::vector<PhysRange> windows = kexec_windows_;
  if (windows.empty()) windows.push_back({PhysAddr(0), memory_.layout().end()});
  bool found = false;
  Pfn best;
  for (const PhysRange& w : windows) {
    Pfn pfn;
    if (allocator_->FindFreeRun(nr_pages, align_pages, g.PhysToPfn(w.start), g.PhysToPfn(w.end),
                                &pfn) &&
        (!found || pfn > best)) {
      best = pfn;
      found = true;
    }
  }
  if (!found || !allocator_->AllocRange(best, nr_pages)) return -EADDRNOTAVAIL;
  *out = g.PfnToPhys(best);
  ctx_.Trace("kexec", "segment", {{"base", out->ToString()}, {"size", absl::StrCat(size)}});
  return 0;
}

void Mm::ZeroPhys(PhysAddr pa, uint64_t len) { memory_.Zero(pa, len); }

}  // namespace khosim::mm

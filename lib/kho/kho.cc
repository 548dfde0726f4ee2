// Kho: boot memory, preservation, retrieval and restore.
//
// Lifecycle of one preserved block, A -> B:
//   A: Preserve* adds it to the outgoing tracker of the boot's profile
//      (kho-v4: a radix key, nodes allocated on demand, never freed; kho-v1:
//      a bit in a per-order bitmap page). The tracker's handle sits in the
//      root FDT, which is a preserved page itself (kho-v4: the radix root,
//      written once at init; kho-v1: the chunk list that Finalize builds
//      when the next image is loaded). The FDT's address travels in the
//      handover record, the scratch table in a kexec segment inside boot
//      memory.
//   B: Populate validates the root FDT (its compatible must be exactly this
//      kernel's profile) and the scratch table, marks boot memory and makes
//      early allocations use only it. MemoryInit walks the tracker (hostile
//      input: every page checked) and reserves each block (noinit), tagging
//      its head page. memblock_free_all then frees everything else, tracker
//      pages included, and scrubs it. RestoreFolio / RestorePages turn a
//      tagged head into live pages exactly once.
// Kho never looks inside the tracker: PreservationTracker is the contract.
//
// This file: profiles, boot-memory sizing, construction. The boot steps are
// kho_boot.cc, preservation (pages, folios, vmalloc) kho_preserve.cc,
// restore and subtrees kho_restore.cc.
#include "khosim/kho/kho.h"

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
#include "khosim/kho/kho_fdt.h"
#include "khosim/kho/range_preservation_tracker.h"
#include "khosim/linux/atomic.h"
#include "khosim/linux/err.h"
#include "khosim/linux/mm.h"

namespace khosim::kho {

absl::string_view KhoProfileName(KhoProfile profile) {
  switch (profile) {
    case KhoProfile::kV1:
      return abi::kKhoCompatV1;
    case KhoProfile::kRangeV1:
      return abi::kKhoRangeCompatible;
    case KhoProfile::kV4:
      break;
  }
  return abi::kKhoCompatV4;
}

bool ParseKhoProfile(absl::string_view name, KhoProfile* profile) {
  if (name == abi::kKhoCompatV1) {
    *profile = KhoProfile::kV1;
  } else if (name == abi::kKhoCompatV4) {
    *profile = KhoProfile::kV4;
  } else if (name == abi::kKhoRangeCompatible) {
    *profile = KhoProfile::kRangeV1;
  } else {
    return false;
  }
  return true;
}

int ParseScratchSizing(absl::string_view value, ScratchSizing* out) {
  if (value.empty()) return -EINVAL;
  if (value.back() == '%') {
    const absl::string_view digits = value.substr(0, value.size() - 1);
    // An unsigned int has at most 10 digits.
    if (digits.empty() || digits.size() > 10) return -EINVAL;
    uint32_t scale = 0;
    if (!absl::SimpleAtoi(digits, &scale)) return -EINVAL;
    for (char c : digits) {
      if (c < '0' || c > '9') return -EINVAL;
    }
    *out = ScratchSizing{.scale_percent = scale};
    return 0;
  }
  uint64_t sizes[3];
  uint64_t total = 0;
  absl::string_view rest = value;
  for (int i = 0; i < 3; ++i) {
    if (i > 0) {
      if (rest.empty() || rest.front() != ',') return -EINVAL;
      rest.remove_prefix(1);
    }
    const size_t used = MemParsePrefix(rest, &sizes[i]);
    if (used == 0) return -EINVAL;
    rest.remove_prefix(used);
    total += sizes[i];
  }
  if (!rest.empty() || total == 0) return -EINVAL;
  *out = ScratchSizing{
      .scale_percent = 0, .lowmem = sizes[0], .global = sizes[1], .pernode = sizes[2]};
  return 0;
}

// Tracker pages (radix nodes, kho-v1 bitmaps and chunks): memblock before
// the buddy allocator is up (extended scratch walks in early boot), the page
// allocator after.
class Kho::NodeMemory : public RadixNodeMemory {
 public:
  explicit NodeMemory(mm::Mm& mm) : mm_(mm) {}
  PhysAddr AllocNode() override {
    if (mm_.buddy_ready()) {
      struct page* page = mm_.pages().Alloc(GFP_KERNEL | __GFP_ZERO, 0);
      return page == nullptr ? PhysAddr() : mm_.PageToPhys(page);
    }
    const PhysAddr pa = mm_.memblock().Alloc({.size = mm_.geometry().page_size()});
    if (!pa.IsNull()) mm_.ZeroPhys(pa, mm_.geometry().page_size());
    return pa;
  }
  void FreeNode(PhysAddr page) override {
    if (mm_.buddy_ready()) {
      struct page* p = mm_.PhysToPage(page);
      atomic_set(&p->_refcount, 0);
      mm_.pages().Free(p, 0);
    } else {
      mm_.memblock().Free(page, mm_.geometry().page_size());
    }
  }
  uint8_t* MapNode(PhysAddr page) override {
    const uint64_t size = mm_.geometry().page_size();
    if (page.IsNull() || !IsAligned(page.value(), size) || !mm_.memory().IsRam(page, size)) {
      return nullptr;
    }
    return mm_.memory().Virt(page);
  }

 private:
  mm::Mm& mm_;
};

Kho::Kho(KernelContext& ctx, mm::Mm& mm, KhoConfig config)
    : ctx_(ctx),
      mm_(mm),
      config_(std::move(config)),
      profile_(config_.profile),
      incoming_handover_(IncomingHandover(ctx.boot_params())) {
  enabled_ = ctx_.cmdline().GetBool("kho", config_.enabled_by_default);
  if (std::optional<std::string> p = ctx_.cmdline().Get("khosim.kho_profile")) {
    if (!ParseKhoProfile(*p, &profile_)) {
      ctx_.Log(absl::StrCat("KHO: warning: unknown khosim.kho_profile=", *p, ", using ",
                            KhoProfileName(profile_)));
    }
  }
  node_memory_ = std::make_unique<NodeMemory>(mm_);
  const unsigned page_shift = mm_.geometry().page_shift;
  if (profile_ == KhoProfile::kV1) {
    tracker_ = std::make_unique<BitmapTracker>(page_shift, *node_memory_);
    ctx_.Log("KHO: profile kho-v1: bitmap tracker serialized at finalize, no blob-size");
  } else if (profile_ == KhoProfile::kRangeV1) {
    tracker_ = std::make_unique<RangePreservationTracker>(page_shift, *node_memory_);
    ctx_.Log("KHO: profile kho-range-v1: extent chain serialized at finalize");
  } else {
    tracker_ = std::make_unique<RadixTracker>(page_shift, *node_memory_);
  }
  ctx_.set_slot(KernelSlot::kKho, this);
}

RadixTree* Kho::out_tree() {
  auto* radix = dynamic_cast<RadixTracker*>(tracker_.get());
  return radix != nullptr && radix->ready() ? &radix->tree() : nullptr;
}

Kho::~Kho() { ctx_.set_slot(KernelSlot::kKho, nullptr); }

Kho& Kho::Current() {
  auto* kho = static_cast<Kho*>(RequireKernelContext().slot(KernelSlot::kKho));
  if (kho == nullptr) RequireKernelContext().Panic(KHOSIM_SITE, "KHO used before it exists");
  return *kho;
}

}  // namespace khosim::kho

// KhoXarray's checks and its incoming side: Restore validates a previous
// kernel's map before anything is read or taken, Adopt makes it this
// kernel's own, Validate checks either direction (see the header for every
// check). The map itself is kho_xarray.cc.
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/base/errno_status.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/spinlock_guard.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_xarray.h"
#include "khosim/mm/mm.h"

namespace khosim::kho {
namespace {

mm::Mm& CurrentMm() { return mm::Mm::Current(); }

}  // namespace

// ---------------------------------------------------------------------------
// Checks

bool KhoXarray::NodeIsPreserved(uint64_t pa, bool incoming) {
  if (incoming) {
    unsigned order = 0;
    return Kho::Current().IsPreservedHead(PhysAddr(pa), &order) && order == 0;
  }
  return Kho::Current().IsPreserved(PhysAddr(pa), 1);
}

int KhoXarray::CheckLocked(std::string* why, std::vector<NodeUse>* nodes) const {
  auto fail = [&](std::string message) {
    *why = std::move(message);
    return -EINVAL;
  };
  if (xa_.desc.root == 0) {
    return xa_.desc.count == 0 ? 0 : fail(absl::StrFormat("count %d with no root", xa_.desc.count));
  }
  if (xa_.desc.count == 0) return fail("a root with count 0");
  mm::Mm& mm = CurrentMm();
  const uint64_t page = mm.geometry().page_size();
  const uint64_t slots_per_node = abi::KhoXarraySlots(xa_.desc.page_shift);
  absl::flat_hash_set<uint64_t> seen;
  const bool incoming = xa_.mode == KHO_XA_INCOMING;
  // Proves |pa| is a node page before anything reads it.
  auto admit = [&](uint64_t pa, int level) -> int {
    if (!IsAligned(pa, page) || !mm.memory().IsRam(PhysAddr(pa), page)) {
      return fail(absl::StrFormat("level-%d node 0x%x is not a page of RAM", level, pa));
    }
    if (!NodeIsPreserved(pa, incoming)) {
      return fail(absl::StrFormat("level-%d node 0x%x is not a preserved page", level, pa));
    }
    if (!seen.insert(pa).second) {
      return fail(absl::StrFormat("level-%d node 0x%x is reached twice", level, pa));
    }
    return 0;
  };
  const int top = static_cast<int>(xa_.desc.depth) - 1;
  if (int err = admit(xa_.desc.root, top); err != 0) return err;
  const uint64_t root = xa_.desc.root;
  std::vector<std::pair<uint64_t, int>> stack = {{root, top}};
  uint64_t entries = 0;
  while (!stack.empty()) {
    const auto [pa, level] = stack.back();
    stack.pop_back();
    const uint64_t usable = SlotsAt(level);
    uint64_t used = 0;
    for (uint64_t i = 0; i < slots_per_node; ++i) {
      const uint64_t word = Word(pa, i);
      if (word == 0) continue;
      if (i >= usable) {
        return fail(
            absl::StrFormat("root slot %d is beyond the %d-bit key width", i, xa_.desc.key_bits));
      }
      ++used;
      if (level == 0) {
        ++entries;
        continue;
      }
      if (int err = admit(word, level - 1); err != 0) return err;
      stack.push_back({word, level - 1});
    }
    if (used == 0) return fail(absl::StrFormat("level-%d node 0x%x is empty", level, pa));
    if (xa_.mode == KHO_XA_OUTGOING && UseCount(pa) != used) {
      return fail(absl::StrFormat("node 0x%x has use count %d but %d slots in use", pa,
                                  UseCount(pa), used));
    }
    if (nodes != nullptr) nodes->push_back({pa, used});
  }
  if (entries != xa_.desc.count) {
    return fail(
        absl::StrFormat("leaves hold %d entries, descriptor says %d", entries, xa_.desc.count));
  }
  return 0;
}

absl::Status KhoXarray::Validate() const {
  SpinLockGuard lock(&xa_.lock);
  if (xa_.mode == KHO_XA_UNUSED) return absl::OkStatus();
  if (xa_.desc.magic != abi::kKhoXarrayMagic || xa_.desc.version != abi::kKhoXarrayVersion ||
      xa_.desc.page_shift != CurrentMm().geometry().page_shift ||
      xa_.desc.depth != abi::KhoXarrayDepth(xa_.desc.key_bits, xa_.desc.page_shift)) {
    return KernelErrorToStatus(-EINVAL, "kho_xarray: descriptor does not match the map's shape");
  }
  std::string why;
  if (CheckLocked(&why, nullptr) != 0) return KernelErrorToStatus(-EINVAL, "kho_xarray: " + why);
  if (xa_.home != nullptr && std::memcmp(xa_.home, &xa_.desc, sizeof(xa_.desc)) != 0) {
    return KernelErrorToStatus(-EINVAL, "kho_xarray: the descriptor at home is out of date");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Incoming

int KhoXarray::RejectLocked(const std::string& why) {
  KernelContext& ctx = RequireKernelContext();
  ctx.Log(absl::StrCat("kho_xarray: rejecting incoming map: ", why));
  ctx.Trace("kho", "xarray_restore_rejected", {{"why", why}});
  xa_.mode = KHO_XA_UNUSED;
  xa_.desc = abi::KhoXarrayDesc{};
  SetShapeLocked();
  xa_.home = nullptr;
  BumpGenerationLocked();
  return -EINVAL;
}

int KhoXarray::Restore(const abi::KhoXarrayDesc& desc) {
  SpinLockGuard lock(&xa_.lock);
  if (xa_.mode != KHO_XA_UNUSED && xa_.desc.root != 0) return -EBUSY;
  KernelContext& ctx = RequireKernelContext();
  abi::KhoXarrayDesc d;
  std::memcpy(&d, &desc, sizeof(d));
  if (d.magic != abi::kKhoXarrayMagic) {
    return RejectLocked(absl::StrFormat("bad magic 0x%x", d.magic));
  }
  if (d.version != abi::kKhoXarrayVersion) {
    return RejectLocked(absl::StrFormat("unsupported version %d", d.version));
  }
  if (d.reserved0 != 0 || d.reserved1 != 0 || d.reserved2 != 0) {
    return RejectLocked("reserved fields are not zero");
  }
  const unsigned page_shift = CurrentMm().geometry().page_shift;
  if (d.page_shift != page_shift) {
    return RejectLocked(absl::StrFormat("written with page_shift %d, this kernel uses %d",
                                        d.page_shift, page_shift));
  }
  if (d.key_bits < 1 || d.key_bits > abi::kKhoXarrayMaxKeyBits) {
    return RejectLocked(absl::StrFormat("key width %d", d.key_bits));
  }
  if (d.depth != abi::KhoXarrayDepth(d.key_bits, page_shift)) {
    return RejectLocked(absl::StrFormat("depth %d does not fit a %d-bit key", d.depth, d.key_bits));
  }
  xa_.mode = KHO_XA_INCOMING;
  xa_.desc = d;
  SetShapeLocked();
  xa_.home = nullptr;
  std::string why;
  std::vector<NodeUse> nodes;
  if (CheckLocked(&why, &nodes) != 0) return RejectLocked(why);
  BumpGenerationLocked();
  ctx.Trace("kho", "xarray_restore",
            {{"entries", absl::StrCat(xa_.desc.count)}, {"nodes", absl::StrCat(nodes.size())}});
  return 0;
}

int KhoXarray::Adopt(abi::KhoXarrayDesc* home) {
  SpinLockGuard lock(&xa_.lock);
  if (xa_.mode != KHO_XA_INCOMING) return -EINVAL;
  KernelContext& ctx = RequireKernelContext();
  std::string why;
  std::vector<NodeUse> nodes;
  if (CheckLocked(&why, &nodes) != 0) {
    ctx.Log(absl::StrCat("kho_xarray: cannot adopt: ", why));
    return -EINVAL;
  }
  mm::Mm& mm = CurrentMm();
  Kho& kho = Kho::Current();
  // Preserve first: it is the step that can fail, and it leaves the pages
  // untouched, so undoing it is exact.
  size_t preserved = 0;
  int err = 0;
  for (; preserved < nodes.size(); ++preserved) {
    err = kho.PreservePages(mm.PhysToPage(PhysAddr(nodes[preserved].pa)), 1);
    if (err != 0) break;
  }
  if (err != 0) {
    for (size_t i = 0; i < preserved; ++i)
      kho.UnpreservePages(mm.PhysToPage(PhysAddr(nodes[i].pa)), 1);
    return err;
  }
  for (const NodeUse& node : nodes) {
    struct folio* folio = kho.RestoreFolio(PhysAddr(node.pa));
    KHOSIM_BUG_ON(ctx, folio == nullptr, "kho_xarray: a checked node failed to restore");
    UseCount(node.pa) = node.used;
  }
  xa_.mode = KHO_XA_OUTGOING;
  xa_.home = home;
  Publish();
  ctx.Trace("kho", "xarray_adopt",
            {{"entries", absl::StrCat(xa_.desc.count)}, {"nodes", absl::StrCat(nodes.size())}});
  return 0;
}

}  // namespace khosim::kho

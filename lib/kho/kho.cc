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
namespace {

constexpr uint64_t kExtendedScratchBlock = uint64_t{1} << 30;  // KHO_EXT_BLKSIZE
constexpr uint64_t kScratchSegmentAlign = 64 * kKiB;

}  // namespace

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

// ---------------------------------------------------------------------------
// Boot

std::vector<SetupData> HandoverSetupData(const abi::KhoData& handover) {
  if (handover.fdt_addr == 0 && handover.fdt_size == 0 && handover.scratch_addr == 0 &&
      handover.scratch_size == 0) {
    return {};
  }
  SetupData entry{.type = abi::kSetupKexecKho, .payload = std::vector<uint8_t>(sizeof(handover))};
  std::memcpy(entry.payload.data(), &handover, sizeof(handover));
  return {std::move(entry)};
}

abi::KhoData IncomingHandover(const BootParams& params) {
  abi::KhoData handover = {};
  const absl::Span<const uint8_t> payload = params.SetupDataOf(abi::kSetupKexecKho);
  if (payload.size() == sizeof(handover)) std::memcpy(&handover, payload.data(), sizeof(handover));
  return handover;
}

void Kho::Populate() {
  const abi::KhoData& kd = incoming_handover_;
  if (kd.fdt_addr == 0) return;
  auto reject = [&](const std::string& why) {
    ctx_.Log(absl::StrCat("KHO: disabling KHO revival: ", why));
    ctx_.Trace("kho", "populate_rejected", {{"why", why}});
  };
  const hw::PhysicalMemory& memory = mm_.memory();
  if (kd.fdt_size == 0 || !memory.IsRam(PhysAddr(kd.fdt_addr), kd.fdt_size)) {
    return reject("root FDT outside RAM");
  }
  uint64_t map = 0;
  std::string why;
  RootCheck failed = RootCheck::kPassed;
  if (ValidateIncomingRoot(memory.Virt(PhysAddr(kd.fdt_addr)), kd.fdt_size, compatible(), &map,
                           &why, &failed) != 0) {
    if (failed == RootCheck::kIncompatible || failed == RootCheck::kNoCompatible) {
      // Upstream's line, with fdt_node_check_compatible's result: 1 for
      // another string, -FDT_ERR_NOTFOUND (-1) for no compatible at all.
      ctx_.Log(absl::StrFormat("KHO: setup: handover FDT (0x%x) is incompatible with '%s': %d",
                               kd.fdt_addr, compatible(),
                               failed == RootCheck::kIncompatible ? 1 : -1));
    }
    return reject(why);
  }
  if (kd.scratch_size == 0 || kd.scratch_size % sizeof(abi::KhoScratch) != 0 ||
      !memory.IsRam(PhysAddr(kd.scratch_addr), kd.scratch_size)) {
    return reject("malformed scratch table");
  }
  std::vector<abi::KhoScratch> table(kd.scratch_size / sizeof(abi::KhoScratch));
  std::memcpy(table.data(), memory.Virt(PhysAddr(kd.scratch_addr)), kd.scratch_size);
  for (const abi::KhoScratch& s : table) {
    if (s.size != 0 && (!IsAligned(s.addr, mm_.geometry().page_size()) ||
                        !IsAligned(s.size, mm_.geometry().page_size()) ||
                        !memory.IsRam(PhysAddr(s.addr), s.size))) {
      return reject(absl::StrFormat("scratch region 0x%x+0x%x is not RAM", s.addr, s.size));
    }
  }
  for (const abi::KhoScratch& s : table) {
    if (s.size != 0)
      mm_.memblock().MarkMemoryFlags(PhysAddr(s.addr), s.size, mm::kMemblockKhoScratch);
  }
  mm_.memblock().Reserve(PhysAddr(kd.scratch_addr), kd.scratch_size);
  mm_.memblock().SetScratchOnly(true);
  scratch_ = std::move(table);
  scratch_table_ = PhysAddr(kd.scratch_addr);
  in_fdt_phys_ = kd.fdt_addr;
  in_memory_map_ = map;
  ctx_.Log(absl::StrFormat("KHO: found kexec handover data (fdt 0x%x, %d scratch regions)",
                           kd.fdt_addr, scratch_.size()));
  ctx_.Trace("kho", "populate", {{"fdt", absl::StrFormat("0x%x", kd.fdt_addr)}});
}

void Kho::ExtendScratch() {
  if (!config_.extended_scratch || !is_kho_boot()) return;
  // Every 1 GiB block that holds a preserved byte or a tracker page is busy;
  // all other blocks of RAM become usable early memory.
  absl::btree_set<uint64_t> busy;
  const PageGeometry& g = mm_.geometry();
  const int err = tracker_->WalkIncoming(
      PhysAddr(in_memory_map_),
      [&](PhysAddr pa, unsigned order) {
        const uint64_t end = pa.value() + (g.page_size() << order);
        for (uint64_t b = pa.value() / kExtendedScratchBlock;
             b <= (end - 1) / kExtendedScratchBlock; ++b) {
          busy.insert(b);
        }
        return 0;
      },
      [&](PhysAddr page) {
        busy.insert(page.value() / kExtendedScratchBlock);
        return 0;
      });
  if (err != 0) {
    ctx_.Log(absl::StrCat("KHO: extended scratch skipped: tree walk failed ", err));
    return;
  }
  uint64_t recovered = 0;
  for (const hw::RamRange& r : mm_.memory().layout().ranges()) {
    for (uint64_t b = r.start.value() / kExtendedScratchBlock;
         b * kExtendedScratchBlock < r.end().value(); ++b) {
      if (busy.contains(b)) continue;
      const uint64_t start = std::max(b * kExtendedScratchBlock, r.start.value());
      const uint64_t end = std::min((b + 1) * kExtendedScratchBlock, r.end().value());
      mm_.memblock().MarkMemoryFlags(PhysAddr(start), end - start, mm::kMemblockKhoScratch);
      recovered += end - start;
    }
  }
  extended_scratch_bytes_ = recovered;
  ctx_.Log(absl::StrFormat("KHO: extended scratch by %d MiB (%d busy 1 GiB blocks)",
                           recovered >> 20, busy.size()));
  ctx_.Trace("kho", "extend_scratch",
             {{"recovered", absl::StrCat(recovered)}, {"busy_blocks", absl::StrCat(busy.size())}});
}

void Kho::MemoryInit() {
  if (is_kho_boot()) {
    // Boot memory pageblocks are CMA in every kernel of the chain.
    const PageGeometry& g = mm_.geometry();
    for (const abi::KhoScratch& s : scratch_) {
      for (uint64_t pa = s.addr; pa < s.addr + s.size; pa += g.page_size() << g.pageblock_order) {
        mm_.pages().SetPageblockType(g.PhysToPfn(PhysAddr(pa)), mm::MigrateType::kCma);
      }
    }
    if (RetrieveMemory() != 0) in_fdt_phys_ = 0;
    return;
  }
  if (enabled_) ReserveScratch();
}

int Kho::RetrieveMemory() {
  const PageGeometry& g = mm_.geometry();
  uint64_t blocks = 0;
  uint64_t nodes = 0;
  // One memblock reservation per run the tracker reports: per block for
  // the radix tree and kho-v1 (as upstream), per record for kho-range-v1.
  // Every head is still tagged on its own: restore checks each one.
  const int err = tracker_->WalkIncomingExtents(
      PhysAddr(in_memory_map_),
      [&](PhysAddr start, uint64_t nr_blocks, unsigned order) {
        const uint64_t block_size = g.page_size() << order;
        if (nr_blocks == 0 || nr_blocks > (~uint64_t{0} - start.value()) / block_size) {
          return -EINVAL;
        }
        const uint64_t size = block_size * nr_blocks;
        if (!mm_.memory().IsRam(start, size)) return -EINVAL;
        if (ScratchOverlap(start, size)) {
          ctx_.Warn(KHOSIM_SITE,
                    "preserved block inside boot memory: the previous kernel preserved "
                    "memory this kernel's early allocations may have overwritten");
        }
        // memblock_reserve + memblock_reserved_mark_noinit, in one step.
        mm_.memblock().Reserve(start, size, mm::kMemblockRsrvNoInit);
        for (uint64_t i = 0; i < nr_blocks; ++i) {
          const PhysAddr pa(start.value() + i * block_size);
          mm_.PhysToPage(pa)->private_data = abi::KhoPageInfo(order);
          retrieved_heads_.push_back(pa);
        }
        blocks += nr_blocks;
        return 0;
      },
      [&](PhysAddr) {
        ++nodes;
        return 0;
      });
  retrieved_blocks_ = blocks;
  ctx_.Trace("kho", "retrieve",
             {{"blocks", absl::StrCat(blocks)},
              {"nodes", absl::StrCat(nodes)},
              {"ret", absl::StrCat(err)}});
  if (err != 0) {
    ctx_.Log(absl::StrCat("KHO: failed to retrieve preserved memory: ", err));
    return err;
  }
  return 0;
}

void Kho::ReserveScratch() {
  ScratchSizing sizing;
  if (std::optional<std::string> param = ctx_.cmdline().Get("kho_scratch")) {
    ScratchSizing parsed;
    if (ParseScratchSizing(*param, &parsed) == 0) {
      sizing = parsed;
    } else {
      ctx_.Log(absl::StrCat("KHO: malformed kho_scratch=", *param, " (-EINVAL), using default"));
    }
  }
  const PageGeometry& g = mm_.geometry();
  const uint64_t align = abi::ScratchAlignmentBytes(g.page_shift, g.max_page_order);
  mm::Memblock& mb = mm_.memblock();
  const int nodes = mm_.memory().layout().num_nodes();
  uint64_t lowmem = sizing.lowmem;
  uint64_t global = sizing.global;
  auto scaled = [&](uint64_t bytes) { return bytes * sizing.scale_percent / 100; };
  if (sizing.scale_percent != 0) {
    lowmem = AlignUp(scaled(mb.ReservedKernSize(PhysAddr(mm::kLowAddressLimit))), align);
    global = AlignUp(scaled(mb.ReservedKernSize()) - lowmem, align);
  }
  std::vector<abi::KhoScratch> table;
  std::vector<uint64_t> sizes = {lowmem, global};
  for (int nid = 0; nid < nodes; ++nid) {
    if (mm_.memory().layout().node_ram(nid) == 0) continue;
    sizes.push_back(AlignUp(sizing.scale_percent != 0
                                ? scaled(mb.ReservedKernSize(PhysAddr(~uint64_t{0}), nid))
                                : sizing.pernode,
                            align));
  }
  const uint64_t table_bytes = sizes.size() * sizeof(abi::KhoScratch);
  const PhysAddr table_pa = mb.Alloc({.size = table_bytes, .align = g.page_size()});
  bool ok = !table_pa.IsNull();
  for (size_t i = 0; ok && i < sizes.size(); ++i) {
    abi::KhoScratch s{0, sizes[i]};
    if (s.size != 0) {
      mm::MemblockAllocRequest req{.size = s.size, .align = align};
      if (i == 0) req.max_addr = PhysAddr(mm::kLowAddressLimit);
      if (i >= 2) {
        // Node ids of the per-node regions follow the nodes with memory.
        int nid = -1;
        size_t seen = 1;
        for (int n = 0; n < nodes && seen < i; ++n) {
          if (mm_.memory().layout().node_ram(n) != 0 && ++seen == i) nid = n;
        }
        req.nid = nid;
        req.exact_nid = true;
      }
      const PhysAddr pa = mb.Alloc(req);
      if (pa.IsNull()) {
        ok = false;
        break;
      }
      s.addr = pa.value();
    }
    table.push_back(s);
  }
  if (!ok) {
    for (const abi::KhoScratch& s : table) {
      if (s.size != 0) mb.Free(PhysAddr(s.addr), s.size);
    }
    if (!table_pa.IsNull()) mb.Free(table_pa, table_bytes);
    ctx_.Log("KHO: Failed to reserve scratch area, disabling kexec handover");
    ctx_.Trace("kho", "scratch_failed");
    enabled_ = false;
    return;
  }
  std::memcpy(mm_.memory().Virt(table_pa), table.data(), table_bytes);
  scratch_ = std::move(table);
  scratch_table_ = table_pa;
  scratch_reserved_here_ = true;
  for (const abi::KhoScratch& s : scratch_) {
    if (s.size != 0) mb.MarkMemoryFlags(PhysAddr(s.addr), s.size, mm::kMemblockKhoScratch);
  }
  ctx_.Trace("kho", "scratch_reserved", {{"regions", absl::StrCat(scratch_.size())}});
}

void Kho::ReleaseScratchAsCma() {
  const PageGeometry& g = mm_.geometry();
  const uint64_t pageblock = g.page_size() << g.pageblock_order;
  for (const abi::KhoScratch& s : scratch_) {
    if (s.size == 0) continue;
    for (uint64_t pa = s.addr; pa < s.addr + s.size; pa += pageblock) {
      mm_.pages().SetPageblockType(g.PhysToPfn(PhysAddr(pa)), mm::MigrateType::kCma);
    }
    mm_.memblock().Free(PhysAddr(s.addr), s.size);
    const int nid = mm_.memory().layout().NodeOf(PhysAddr(s.addr));
    mm_.pages().AddFreeRange(g.PhysToPfn(PhysAddr(s.addr)), g.PhysToPfn(PhysAddr(s.addr + s.size)),
                             nid);
  }
}

bool Kho::ReadIncomingMetadata() {
  uint64_t phys = 0;
  uint64_t size = 0;
  if (RetrieveSubtree(abi::kKexecMetadataName, &phys, &size) != 0) return false;
  if (size < sizeof(abi::KexecMetadata) || !mm_.memory().IsRam(PhysAddr(phys), size)) return false;
  abi::KexecMetadata md;
  std::memcpy(&md, mm_.memory().Virt(PhysAddr(phys)), sizeof(md));
  RestoreFree(mm_.memory().Virt(PhysAddr(phys)));
  if (md.version != abi::kKexecMetadataVersion) return false;
  md.previous_release[abi::kKexecReleaseLength - 1] = '\0';
  previous_release_ = md.previous_release;
  in_kexec_count_ = md.kexec_count;
  ctx_.Log(absl::StrFormat("KHO: previous kernel %s, kexec count %d", previous_release_,
                           in_kexec_count_));
  return true;
}

int Kho::Init() {
  if (!enabled_) return 0;
  auto disable = [&](int err, absl::string_view what) {
    ctx_.Log(absl::StrCat("KHO: init failed (", what, "): ", err));
    enabled_ = false;
    return err;
  };
  if (int err = tracker_->Init(); err != 0) {
    return disable(err, absl::StrCat(tracker_->name(), " root"));
  }
  void* fdt = AllocPreserve(mm_.geometry().page_size());
  if (IS_ERR(fdt)) return disable(static_cast<int>(PTR_ERR(fdt)), "root FDT");
  out_fdt_ = mm_.memory().Phys(fdt);
  // kho-v4: the radix root, for good. kho-v1: 0 until the first Finalize.
  const PhysAddr map = tracker_->handover();
  if (int err = CreateRootFdt(fdt, mm_.geometry().page_size(), compatible(), map.value());
      err != 0) {
    return disable(err, "root FDT");
  }
  {
    absl::MutexLock lock(&fdt_mu_);
    published_map_ = map;
  }
  // kexec-metadata came with blob-size (kho-v3): a kho-v1 kernel neither
  // reads nor publishes it.
  if (HasBlobSubtrees()) {
    const bool has_metadata = is_kho_boot() && ReadIncomingMetadata();
    void* blob = AllocPreserve(sizeof(abi::KexecMetadata));
    if (IS_ERR(blob)) return disable(static_cast<int>(PTR_ERR(blob)), "kexec-metadata");
    abi::KexecMetadata md = {};
    md.version = abi::kKexecMetadataVersion;
    std::snprintf(md.previous_release, sizeof(md.previous_release), "%s", config_.release.c_str());
    md.kexec_count = has_metadata ? static_cast<uint32_t>(in_kexec_count_ + 1) : 0;
    std::memcpy(blob, &md, sizeof(md));
    metadata_blob_ = blob;
    if (int err = AddSubtree(abi::kKexecMetadataName, blob, sizeof(md)); err != 0) {
      return disable(err, "kexec-metadata subtree");
    }
  }
  // Only boot memory this kernel reserved itself is still held by memblock.
  // Inherited boot memory went to the buddy allocator at memblock_free_all,
  // also when retrieval failed and this boot continued without KHO data.
  if (scratch_reserved_here_) ReleaseScratchAsCma();
  std::vector<PhysRange> windows;
  for (const abi::KhoScratch& s : scratch_) {
    if (s.size != 0) windows.push_back({PhysAddr(s.addr), PhysAddr(s.addr + s.size)});
  }
  mm_.SetKexecSegmentWindows(std::move(windows));
  ctx_.Trace("kho", "init", {{"fdt", out_fdt_.ToString()}, {"root", map.ToString()}});
  return 0;
}

int Kho::Finalize() {
  if (!enabled_ || out_fdt_.IsNull()) return -EOPNOTSUPP;
  absl::MutexLock lock(&fdt_mu_);
  PhysAddr map;
  if (int err = tracker_->PrepareHandover(&map); err != 0) {
    ctx_.Log(absl::StrCat("KHO: failed to serialize preserved memory: ", err));
    return err;
  }
  if (map != published_map_) {
    if (int err = SetPreservedMemoryMap(mm_.memory().Virt(out_fdt_), map.value()); err != 0) {
      return err;
    }
    published_map_ = map;
  }
  if (tracker_->serializes()) {
    const TrackerStats stats = tracker_->Stats();
    ctx_.Trace("kho", "finalize",
               {{"map", map.ToString()},
                {"chunks", absl::StrCat(stats.chunks)},
                {"bitmaps", absl::StrCat(stats.bitmaps)}});
  }
  return 0;
}

int Kho::PrepareHandover(abi::KhoData* out) {
  if (!enabled_ || !tracker_->ready()) return 0;
  // kho-v1 serializes here, as the selftest's "echo 1 > kho/out/finalize"
  // right before kexec_file_load did; the kernel's "kho_finalize" reboot
  // hook serializes again, so preservations made after the load (a
  // cancelled kexec keeps the image loaded) still cross. A failure fails
  // the load.
  if (int err = Finalize(); err != 0) return err;
  const uint64_t bytes = scratch_.size() * sizeof(abi::KhoScratch);
  PhysAddr segment;
  if (int err = mm_.PlaceKexecSegment(bytes, kScratchSegmentAlign, &segment); err != 0) {
    return err;
  }
  std::memcpy(mm_.memory().Virt(segment), scratch_.data(), bytes);
  *out = abi::KhoData{out_fdt_.value(), mm_.geometry().page_size(), segment.value(), bytes};
  return 0;
}

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
    for (uint64_t i = 0; i < nr; ++i) atomic_set(&page[i]._refcount, 1);
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

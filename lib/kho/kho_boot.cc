// Kho's boot steps (see khosim/kho/kho.h for their order): accepting the
// incoming handover, extended scratch, the retrieval of preserved memory,
// boot-memory sizing and reservation on a cold boot, kho_init, and the
// handover record for the next kernel.
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
namespace {

constexpr uint64_t kExtendedScratchBlock = uint64_t{1} << 30;  // KHO_EXT_BLKSIZE
constexpr uint64_t kScratchSegmentAlign = 64 * kKiB;

}  // namespace

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

}  // namespace khosim::kho

// The three KHO trackers on the workloads behind upstream's published
// figures, each through a whole machine: kernel A preserves the workload's
// blocks, kernel B retrieves them while it boots. Next to every workload, a
// physical-limit reference on the very same blocks, measured in the same
// run, so that each figure reads as "N times the limit".
//
// Rows:
//   workload/<workload>/<profile>     profile: kho-v4 (radix tree),
//                                     kho-v1 (bitmaps + chunk list),
//                                     kho-range-v1 (extent chain)
//     One iteration cold-boots a machine of the profile, takes the blocks
//     out of kernel A's page allocator (untimed), then times, in order:
//       preserve_s      kho_preserve_pages() of every block, one call each
//                       (each block is aligned to its order: one key)
//       serialize_s     Kho::Finalize(): kho-v1's chunk list, kho-range-v1's
//                       extent chain; the radix tree has nothing to build
//       unpreserve_s    kho_unpreserve_pages() of every block (then every
//                       block is preserved again, untimed)
//       extend_scratch_s  kernel B's kho_extend_scratch boot step (workloads
//                       with extended scratch on; 0 otherwise)
//       retrieve_s      kernel B's kho_memory_init boot step: the tracker
//                       walk (hostile input), memblock_reserve and the head
//                       page tag of every block
//       free_all_s      kernel B's memblock_free_all (what the preserved,
//                       never-initialized ranges leave to the page allocator)
//     The row's time is retrieve_s (manual time): the figure upstream
//     measured for two of the workloads.
//     Counters: keys (blocks), preserved_GiB, meta_B (what the handover
//     carries: radix node pages, or bitmap and chunk pages, or chain pages,
//     at page size each), meta_pages, radix_nodes, bitmaps, chunks,
//     range_records, walk_nodes (metadata pages kernel B's walk visited),
//     retrieved_blocks (the workload's blocks; KHO's own blocks are
//     subtracted and checked), extended_scratch_GiB.
//   limit/<workload>/flat_bitmap
//     The physical limit on the same blocks (taken from a kho-v4 machine
//     once), host memory only, no simulator:
//       preserve_s      set one bit per block in a flat bitmap per order
//                       covering all of RAM
//       unpreserve_s    clear the bits again
//       retrieve_s      scan every word of the orders' bitmaps and, for each
//                       set bit, write 8 bytes into that block's 64-byte
//                       head entry of a memmap-shaped host array (touched
//                       once untimed, so no host page fault is measured):
//                       reading the metadata once and touching every head
//                       struct page once, the least any retrieve can do
//       retrieve_cold_s the same pass with the head entries not yet in host
//                       memory (dropped untimed before it): what the
//                       simulator's lazily materialized memmap adds, since
//                       kernel B's first write to a struct page page faults
//       meta_B          the flat bitmaps' bytes (orders present)
//     The row's time is its retrieve_s.
//
// Workloads (docs/performance.md cites the published figure of each):
//   order0_48g       48 GiB of order-0 pages, contiguous, on 64 GiB (the
//                    ">2 s to reserve 48 GiB of order-0 pages" figure)
//   mixed_8g         ~1000 folios of each order 0..10 (~7.8 GiB) from the
//                    buddy allocator in shuffled order, on 16 GiB (the
//                    maple-tree experiment)
//   memfd_2x1g       two 1 GiB memfds of 4 KiB pages: 2 x (262144 data pages
//                    + 1049 folio-array and LUO pages) = 526386 order-0
//                    preservations from the buddy allocator, on 64 GiB with
//                    extended scratch (the 21.8 ms / 69 radix node figure)
//   hugepages_557    557 small blocks (479 order-0, 60 order-4, 18
//                    order-6: 10.1 MiB) on 64 GiB with a pool of 50 x 1 GiB
//                    hugepages, extended scratch on (the 88 us / 47 node
//                    figure; the published order mix is not known)
//   thp_1t           1 TiB in 2 MiB folios (524288 order-9 blocks),
//                    contiguous, on 1152 GiB
//   scattered_128m   one order-0 page every 128 MiB of RAM, on 64 GiB: the
//                    radix tree's worst case, one leaf per page
// By default every workload runs at its published size except order0_48g
// (4 GiB: order0_4g) and thp_1t (64 GiB: thp_64g), whose full sizes take
// KHOSIM_BENCH_LARGE (about a minute and several GB of host memory each).
//
// Every row runs a fixed number of iterations (about --benchmark_min_time
// of wall time for the workload, at least one; the limit row as many as
// its workload's rows), each workload/ row on a fresh machine destroyed at
// the end of the row, so the large machines do not stay resident.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_util.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr unsigned kPageShift = 12;
constexpr uint64_t kPagesPer128M = (128 * kMiB) >> kPageShift;

bool Large() { return std::getenv("KHOSIM_BENCH_LARGE") != nullptr; }

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Block {
  uint64_t pfn;
  unsigned order;
};

// Takes a workload's blocks out of the booted kernel A's page allocator;
// false with a message if memory is not where the workload needs it.
using TakeFn = bool (*)(Machine& m, std::vector<Block>* blocks, std::string* error);

struct Workload {
  std::string name;
  uint64_t ram = 64 * kGiB;
  std::string cmdline;  // appended to "kho=on"
  bool extended_scratch = false;
  // Wall seconds of one iteration on a 2-core host, for the iteration count.
  double seconds_per_iteration = 1;
  TakeFn take = nullptr;
  // Parameters of the contiguous workloads.
  unsigned order = 0;
  uint64_t count = 0;
};

// [lo, hi) pfn ranges of RAM outside the boot memory (scratch) regions,
// highest first: preserved memory must not lie in scratch, which kernel B
// allocates from before it has retrieved anything.
std::vector<std::pair<uint64_t, uint64_t>> PfnsOutsideScratch(Machine& m) {
  std::vector<std::pair<uint64_t, uint64_t>> scratch;
  for (const abi::KhoScratch& s : m.kernel().kho().scratch()) {
    if (s.size != 0) scratch.push_back({s.addr >> kPageShift, (s.addr + s.size) >> kPageShift});
  }
  std::sort(scratch.begin(), scratch.end());
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  uint64_t cursor = 0;
  for (const auto& [lo, hi] : scratch) {
    if (lo > cursor) gaps.push_back({cursor, lo});
    cursor = std::max(cursor, hi);
  }
  const uint64_t end = m.config().ram >> kPageShift;
  if (cursor < end) gaps.push_back({cursor, end});
  std::reverse(gaps.begin(), gaps.end());
  return gaps;
}

// |count| blocks of |order|, consecutive, in runs of up to 1 GiB (or one
// block, if larger) taken from the highest free memory outside scratch:
// one run where RAM has room for it, several around the scratch regions
// otherwise.
bool TakeContiguous(Machine& m, unsigned order, uint64_t count, std::vector<Block>* blocks,
                    std::string* error) {
  mm::PageAllocator& allocator = m.kernel().mm().pages();
  const uint64_t block_pages = uint64_t{1} << order;
  const uint64_t run_blocks = std::max<uint64_t>(1, (kGiB >> kPageShift) / block_pages);
  std::vector<std::pair<uint64_t, uint64_t>> runs;  // (first pfn, blocks)
  uint64_t taken = 0;
  for (const auto& [lo, hi] : PfnsOutsideScratch(m)) {
    while (taken < count) {
      const uint64_t n = std::min(run_blocks, count - taken);
      Pfn start;
      if (!allocator.FindFreeRun(n * block_pages, block_pages, Pfn(lo), Pfn(hi), &start) ||
          !allocator.AllocRange(start, n * block_pages)) {
        break;
      }
      runs.push_back({start.value(), n});
      taken += n;
    }
  }
  if (taken != count) {
    *error =
        absl::StrFormat("only %d of %d order-%d blocks fit outside scratch", taken, count, order);
    return false;
  }
  // Ascending, as one allocation of the whole set would be laid out.
  std::sort(runs.begin(), runs.end());
  blocks->reserve(count);
  for (const auto& [first, n] : runs) {
    for (uint64_t i = 0; i < n; ++i) blocks->push_back({first + i * block_pages, order});
  }
  return true;
}

// Blocks of the given orders from the buddy allocator, in the given order,
// as a kernel's folio allocations would be placed.
bool TakeFromBuddy(const std::vector<unsigned>& orders, std::vector<Block>* blocks,
                   std::string* error) {
  blocks->reserve(orders.size());
  for (unsigned order : orders) {
    struct page* page = alloc_pages(GFP_KERNEL, order);
    if (page == nullptr) {
      *error =
          absl::StrFormat("alloc_pages(order %d) failed after %d blocks", order, blocks->size());
      return false;
    }
    blocks->push_back({page_to_pfn(page), order});
  }
  return true;
}

std::vector<unsigned> Shuffled(std::vector<unsigned> orders, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::shuffle(orders.begin(), orders.end(), rng);
  return orders;
}

bool TakeMixed(Machine&, std::vector<Block>* blocks, std::string* error) {
  std::vector<unsigned> orders;
  for (unsigned order = 0; order <= 10; ++order) orders.insert(orders.end(), 1000, order);
  return TakeFromBuddy(Shuffled(std::move(orders), 0x6d6170), blocks, error);
}

// Per memfd: its 262144 data pages as they are faulted in, then the 1049
// pages of the folio array and LUO's own state allocated at preserve.
bool TakeMemfds(Machine&, std::vector<Block>* blocks, std::string* error) {
  constexpr uint64_t kDataPages = kGiB >> kPageShift;
  constexpr uint64_t kMetadataPages = 526386 / 2 - kDataPages;
  std::vector<unsigned> orders(2 * (kDataPages + kMetadataPages), 0);
  return TakeFromBuddy(orders, blocks, error);
}

bool TakeSmall557(Machine&, std::vector<Block>* blocks, std::string* error) {
  std::vector<unsigned> orders;
  orders.insert(orders.end(), 479, 0);
  orders.insert(orders.end(), 60, 4);
  orders.insert(orders.end(), 18, 6);
  return TakeFromBuddy(Shuffled(std::move(orders), 557), blocks, error);
}

// One page at the same offset in every 128 MiB of RAM where it is free and
// outside scratch.
bool TakeScattered(Machine& m, std::vector<Block>* blocks, std::string* error) {
  mm::PageAllocator& allocator = m.kernel().mm().pages();
  const kho::Kho& kho = m.kernel().kho();
  const uint64_t end_pfn = m.config().ram >> kPageShift;
  for (uint64_t pfn = kPagesPer128M / 2 + 17; pfn < end_pfn; pfn += kPagesPer128M) {
    if (kho.ScratchOverlap(PhysAddr(pfn << kPageShift), uint64_t{1} << kPageShift)) continue;
    if (allocator.AllocRange(Pfn(pfn), 1)) blocks->push_back({pfn, 0});
  }
  if (blocks->size() < end_pfn / kPagesPer128M / 2) {
    *error = absl::StrFormat("only %d of %d slots had a free page", blocks->size(),
                             end_pfn / kPagesPer128M);
    return false;
  }
  return true;
}

bool TakeWorkloadContiguous(Machine& m, const Workload& w, std::vector<Block>* blocks,
                            std::string* error) {
  return TakeContiguous(m, w.order, w.count, blocks, error);
}

const std::vector<Workload>& Workloads() {
  static const auto* workloads = [] {
    const bool large = Large();
    auto* list = new std::vector<Workload>;
    list->push_back(Workload{.name = large ? "order0_48g" : "order0_4g",
                             .seconds_per_iteration = large ? 40.0 : 4.0,
                             .order = 0,
                             .count = (large ? 48 : 4) * kGiB >> kPageShift});
    list->push_back(Workload{
        .name = "mixed_8g", .ram = 16 * kGiB, .seconds_per_iteration = 1, .take = TakeMixed});
    list->push_back(Workload{.name = "memfd_2x1g",
                             .extended_scratch = true,
                             .seconds_per_iteration = 3,
                             .take = TakeMemfds});
    list->push_back(Workload{.name = "hugepages_557",
                             .cmdline = "hugepagesz=1G hugepages=50",
                             .extended_scratch = true,
                             .seconds_per_iteration = 1,
                             .take = TakeSmall557});
    list->push_back(Workload{.name = large ? "thp_1t" : "thp_64g",
                             .ram = large ? 1152 * kGiB : 80 * kGiB,
                             .seconds_per_iteration = large ? 40.0 : 3.0,
                             .order = 9,
                             .count = (large ? 1024 : 64) * kGiB >> (kPageShift + 9)});
    list->push_back(
        Workload{.name = "scattered_128m", .seconds_per_iteration = 1, .take = TakeScattered});
    return list;
  }();
  return *workloads;
}

bool Take(Machine& m, const Workload& w, std::vector<Block>* blocks, std::string* error) {
  blocks->clear();
  const bool taken =
      w.take != nullptr ? w.take(m, blocks, error) : TakeWorkloadContiguous(m, w, blocks, error);
  if (!taken) return false;
  const kho::Kho& kho = m.kernel().kho();
  for (const Block& b : *blocks) {
    if (kho.ScratchOverlap(PhysAddr(b.pfn << kPageShift), uint64_t{1} << (kPageShift + b.order))) {
      *error = absl::StrFormat("block at pfn 0x%x lies in scratch", b.pfn);
      return false;
    }
  }
  return true;
}

MachineConfig ConfigFor(const Workload& w, kho::KhoProfile profile) {
  MachineConfig config{.ram = w.ram, .nodes = 1, .seed = 23};
  config.cmdline = absl::StrCat("kho=on ", w.cmdline);
  // The image is rewritten by every kexec: a small one keeps that fixed
  // cost out of the way (it is not part of any timed step).
  config.kernel_image_size = 4 * kMiB;
  config.kho.profile = profile;
  config.kho.extended_scratch = w.extended_scratch;
  return config;
}

// Phase or count name -> value, summed over iterations.
using Counts = std::map<std::string, double>;

double StepSeconds(const Kernel& kernel, absl::string_view name) {
  double seconds = 0;
  for (const BootStepTime& step : kernel.boot_steps()) {
    if (step.name == name) seconds += step.seconds;
  }
  return seconds;
}

int PreserveAll(const std::vector<Block>& blocks) {
  for (const Block& b : blocks) {
    if (int err = kho_preserve_pages(pfn_to_page(b.pfn), uint64_t{1} << b.order); err != 0)
      return err;
  }
  return 0;
}

// One whole iteration on |m|; false with |error| set on any failure.
bool RunOnce(Machine& m, const Workload& w, Counts* c, std::string* error) {
  m.Boot();
  m.trace().Clear();
  kho::Kho& kho = m.kernel().kho();
  std::vector<Block> blocks;
  if (!Take(m, w, &blocks, error)) return false;

  // KHO's own blocks (root FDT, kexec-metadata) kernel B also retrieves.
  uint64_t own_blocks = 0;
  kho.tracker()->ForEachBlock(
      [&](PhysAddr, unsigned) {
        ++own_blocks;
        return 0;
      },
      nullptr);
  const kho::TrackerStats empty = kho.tracker()->Stats();

  auto start = Clock::now();
  if (int err = PreserveAll(blocks); err != 0) {
    *error = absl::StrCat("kho_preserve_pages: ", err);
    return false;
  }
  (*c)["preserve_s"] += Since(start);

  start = Clock::now();
  if (int err = kho.Finalize(); err != 0) {
    *error = absl::StrCat("Kho::Finalize: ", err);
    return false;
  }
  (*c)["serialize_s"] += Since(start);
  const kho::TrackerStats stats = kho.tracker()->Stats();
  // A kho-v1 bitmap page or radix node that existed before the workload
  // (KHO's own blocks) is part of the handover too; count what the
  // structure holds for everything, as kernel B receives it.
  (*c)["meta_pages"] += static_cast<double>(stats.metadata_pages);
  (*c)["meta_B"] += static_cast<double>(stats.metadata_bytes);
  (*c)["meta_pages_before"] += static_cast<double>(empty.metadata_pages);
  (*c)["radix_nodes"] += static_cast<double>(stats.radix_nodes);
  (*c)["bitmaps"] += static_cast<double>(stats.bitmaps);
  (*c)["chunks"] += static_cast<double>(stats.chunks);
  (*c)["range_records"] += static_cast<double>(stats.range_records);

  start = Clock::now();
  for (const Block& b : blocks) kho_unpreserve_pages(pfn_to_page(b.pfn), uint64_t{1} << b.order);
  (*c)["unpreserve_s"] += Since(start);
  if (int err = PreserveAll(blocks); err != 0) {
    *error = absl::StrCat("kho_preserve_pages after unpreserve: ", err);
    return false;
  }

  m.trace().Clear();
  if (absl::Status s = m.Kexec(); !s.ok()) {
    *error = absl::StrCat("kexec: ", s.message());
    return false;
  }
  Kernel& b = m.kernel();
  const uint64_t retrieved = b.kho().retrieved_blocks();
  if (retrieved != blocks.size() + own_blocks) {
    *error = absl::StrFormat("kernel B retrieved %d blocks, kernel A preserved %d (+%d own)",
                             retrieved, blocks.size(), own_blocks);
    return false;
  }
  (*c)["retrieve_s"] += StepSeconds(b, "kho_memory_init");
  (*c)["extend_scratch_s"] += StepSeconds(b, "kho_extend_scratch");
  (*c)["free_all_s"] += StepSeconds(b, "memblock_free_all");
  (*c)["retrieved_blocks"] += static_cast<double>(retrieved - own_blocks);
  (*c)["walk_nodes"] += bench::RetrieveWalkNodes(m);
  (*c)["extended_scratch_GiB"] += static_cast<double>(b.kho().extended_scratch_bytes()) / kGiB;
  uint64_t bytes = 0;
  for (const Block& block : blocks) bytes += uint64_t{1} << (block.order + kPageShift);
  (*c)["keys"] += static_cast<double>(blocks.size());
  (*c)["preserved_GiB"] += static_cast<double>(bytes) / kGiB;
  return true;
}

void ReportAverages(benchmark::State& state, const Counts& counts) {
  for (const auto& [name, value] : counts) {
    state.counters[name] = benchmark::Counter(value, benchmark::Counter::kAvgIterations);
  }
}

void BM_Workload(benchmark::State& state, const Workload* w, kho::KhoProfile profile) {
  auto machine = std::make_unique<Machine>(ConfigFor(*w, profile));
  Counts counts;
  for (auto _ : state) {
    Counts c;
    std::string error;
    if (!RunOnce(*machine, *w, &c, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.SetIterationTime(c["retrieve_s"]);
    for (const auto& [name, value] : c) counts[name] += value;
  }
  ReportAverages(state, counts);
  state.SetItemsProcessed(static_cast<int64_t>(counts["retrieved_blocks"]));
}

// ---------------------------------------------------------------------------
// The physical limit

// A memmap-shaped host array: 64 bytes per page frame, reserved without
// backing so that only the head entries a workload touches cost memory.
class HeadEntries {
 public:
  static constexpr uint64_t kEntryBytes = 64;

  explicit HeadEntries(uint64_t frames) : bytes_(frames * kEntryBytes) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  ~HeadEntries() {
    if (base_ != nullptr) munmap(base_, bytes_);
  }
  HeadEntries(const HeadEntries&) = delete;
  HeadEntries& operator=(const HeadEntries&) = delete;

  bool ok() const { return base_ != nullptr; }
  // Drops every materialized page: the next write to an entry faults.
  void Discard() { madvise(base_, bytes_, MADV_DONTNEED); }
  uint64_t* entry(uint64_t pfn) { return reinterpret_cast<uint64_t*>(base_ + pfn * kEntryBytes); }

 private:
  uint64_t bytes_;
  uint8_t* base_ = nullptr;
};

struct FlatBitmaps {
  // Per order present: one bit per block of that order in RAM.
  std::map<unsigned, std::vector<uint64_t>> words;

  FlatBitmaps(const std::vector<Block>& blocks, uint64_t ram) {
    for (const Block& b : blocks) {
      if (words.count(b.order) == 0) {
        const uint64_t bits = ram >> (kPageShift + b.order);
        words[b.order].assign((bits + 63) / 64, 0);
      }
    }
  }
  uint64_t bytes() const {
    uint64_t total = 0;
    for (const auto& [order, w] : words) total += w.size() * sizeof(uint64_t);
    return total;
  }
};

// Reports every set bit of every order's bitmap and writes its block's head
// entry; returns the number of blocks found.
uint64_t ScanAndTag(const FlatBitmaps& bitmaps, HeadEntries& heads) {
  uint64_t found = 0;
  for (const auto& [order, words] : bitmaps.words) {
    for (uint64_t i = 0; i < words.size(); ++i) {
      for (uint64_t word = words[i]; word != 0; word &= word - 1) {
        const uint64_t pfn = ((i * 64) + static_cast<uint64_t>(__builtin_ctzll(word))) << order;
        *heads.entry(pfn) = order + 1;
        ++found;
      }
    }
  }
  return found;
}

void BM_Limit(benchmark::State& state, const Workload* w) {
  std::vector<Block> blocks;
  {
    Machine m(ConfigFor(*w, kho::KhoProfile::kV4));
    m.Boot();
    std::string error;
    if (!Take(m, *w, &blocks, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
  }
  FlatBitmaps bitmaps(blocks, w->ram);
  // Every block's slot in its order's bitmap, looked up once (the radix
  // tree computes its key per call too, but that is part of its cost).
  std::vector<std::pair<uint64_t*, uint64_t>> slots;
  slots.reserve(blocks.size());
  for (const Block& b : blocks) {
    const uint64_t index = b.pfn >> b.order;
    slots.push_back({&bitmaps.words[b.order][index / 64], uint64_t{1} << (index % 64)});
  }
  HeadEntries heads(w->ram >> kPageShift);
  if (!heads.ok()) {
    state.SkipWithError("mmap of the head entries failed");
    return;
  }
  for (const Block& b : blocks) *heads.entry(b.pfn) = 0;  // fault in, untimed

  Counts counts;
  uint64_t sink = 0;
  for (auto _ : state) {
    auto start = Clock::now();
    for (const auto& [word, bit] : slots) *word |= bit;
    const double set = Since(start);
    benchmark::ClobberMemory();

    // Cold: the head entries are not materialized, as the simulator's
    // memmap is not when kernel B starts; warm: they are.
    heads.Discard();
    start = Clock::now();
    const uint64_t found_cold = ScanAndTag(bitmaps, heads);
    const double scan_cold = Since(start);
    benchmark::ClobberMemory();
    start = Clock::now();
    const uint64_t found = ScanAndTag(bitmaps, heads);
    const double scan = Since(start);
    benchmark::ClobberMemory();
    sink += found + found_cold;

    start = Clock::now();
    for (const auto& [word, bit] : slots) *word &= ~bit;
    const double clear = Since(start);
    benchmark::ClobberMemory();

    if (found != blocks.size() || found_cold != blocks.size()) {
      state.SkipWithError("the flat bitmap lost a block (two blocks of one order overlap)");
      return;
    }
    state.SetIterationTime(scan);
    counts["preserve_s"] += set;
    counts["retrieve_s"] += scan;
    counts["retrieve_cold_s"] += scan_cold;
    counts["unpreserve_s"] += clear;
    counts["keys"] += static_cast<double>(blocks.size());
    counts["meta_B"] += static_cast<double>(bitmaps.bytes());
  }
  benchmark::DoNotOptimize(sink);
  ReportAverages(state, counts);
  state.SetItemsProcessed(static_cast<int64_t>(counts["keys"]));
}

void RegisterAll(double min_time) {
  const std::pair<const char*, kho::KhoProfile> profiles[] = {
      {"kho-v4", kho::KhoProfile::kV4},
      {"kho-v1", kho::KhoProfile::kV1},
      {"kho-range-v1", kho::KhoProfile::kRangeV1},
  };
  for (const Workload& w : Workloads()) {
    for (const auto& [profile_name, profile] : profiles) {
      benchmark::RegisterBenchmark(absl::StrCat("workload/", w.name, "/", profile_name).c_str(),
                                   BM_Workload, &w, profile)
          ->UseManualTime()
          ->Iterations(bench::SetupBoundIterations(min_time, w.seconds_per_iteration))
          ->Unit(benchmark::kMillisecond);
    }
    // As many iterations as the workload rows: each also drops and faults
    // in the head entries (the cold pass), which takes far longer than the
    // timed warm scan the library would otherwise count towards min_time.
    benchmark::RegisterBenchmark(absl::StrCat("limit/", w.name, "/flat_bitmap").c_str(), BM_Limit,
                                 &w)
        ->UseManualTime()
        ->Iterations(bench::SetupBoundIterations(min_time, w.seconds_per_iteration))
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_page_size", "4 KiB"}, {"khosim_bench_large", khosim::Large() ? "yes" : "no"}},
      [](double min_time) { khosim::RegisterAll(min_time); });
}

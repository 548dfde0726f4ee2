// The range tracker (khosim proposal kho-range-v1) next to the radix tracker
// (kho-v2+), both as standalone structures over the same private page pool
// and the very same blocks, measured in the same run. No Kho, no machine
// (except to place one workload's folios, untimed): these rows compare the
// data structures, as kho_tracker_bench's btree rows do.
//
// Every row name reads <operation>/<workload>/<structure>:
//   operation  preserve      Add every block into an empty structure (radix:
//                            an Init()ed tree; its node pages come from the
//                            pool and are zeroed as the kernel's are)
//              unpreserve    Del every block of a full structure
//              serialize     range: PrepareHandover of the full set (also
//                            frees the previous chain). The radix tree is
//                            handed over in place and has no such step.
//              walk          kernel B: the incoming walk reporting every
//                            block (radix: Walk + DecodeKey per key; range:
//                            the static Walk, chain checks included), each
//                            to a trivial sink
//              walk_extents  range only: the incoming walk reporting one
//                            callback per record, for a kernel B that
//                            reserves a whole run with one memblock call
//   workload   order0|order9|order18 /dense|/sparse: kho_tracker_bench's
//                            shapes (1 GiB of 4 KiB pages, 32 GiB of 2 MiB,
//                            32 x 1 GiB; sparse: one block per 128 MiB, or
//                            per 2 GiB at order 18, random offsets, inserted
//                            in random order)
//              order0/dense48g      48 GiB of consecutive 4 KiB pages (the
//                                   ">2 s to reserve 48 GiB" figure)
//              order0/alternate     every other 4 KiB page of 1 GiB: the
//                                   range format's worst case (one record
//                                   per block), the radix tree's best
//              mixed8g/buddy        ~8 GiB in folios of random order, 1000
//                                   per order 0..10 (the maple-tree
//                                   experiment), taken from the page
//                                   allocator of a booted 16 GiB machine in
//                                   shuffled order
//              mixed8g/shuffled     the same folios laid out one after the
//                                   other in shuffled order, each aligned to
//                                   its size: neighbours rarely share an
//                                   order, so almost no run forms (the
//                                   range format's bad case)
//   structure  radix | range
//
// Counters on every row of a workload (computed once, untimed):
//   keys            blocks per iteration; keys/s the rate over timed time
//   meta_B          bytes kernel B is handed: radix node pages, or range
//                   chain pages (page size each)
//   meta_B_per_GiB  meta_B per preserved GiB
//   range_extents   runs the range tracker holds (= its records here)
//   range_live_B    host bytes of the range tracker's btree maps
//   bitmap_limit_B  one bit per block of every order present, over all of
//                   RAM (64 GiB): the flat-bitmap physical limit
//   kho_v1_B        what kho-v1 would serialize for the same blocks: one
//                   4 KiB bitmap per order and 32768-block window touched,
//                   plus the chunk pages listing them (255 per chunk, a new
//                   chunk per order)
// Times are the benchmark thread's CPU time. Ratios are row over row in
// one run; docs/kho-range-tracker.md has a measured set.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_util.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/kho/range_tracker.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr unsigned kPageShift = 12;
constexpr uint64_t kPageSize = uint64_t{1} << kPageShift;
// The RAM the flat bitmap limit covers, and the region the shapes use (as in
// kho_tracker_bench).
constexpr uint64_t kRam = 64 * kGiB;
constexpr uint64_t kRegionStart = 4 * kGiB;
constexpr uint64_t kRegionEnd = 56 * kGiB;
constexpr uint64_t kSparseStride = 128 * kMiB;

// Metadata pages for both structures, at addresses above every workload.
// Freed pages are reused, so only a row's first iteration grows host memory.
class PagePool : public kho::RadixNodeMemory {
 public:
  static constexpr uint64_t kBase = 60 * kGiB;

  PhysAddr AllocNode() override {
    uint64_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = pages_.size();
      pages_.push_back(std::make_unique<uint8_t[]>(kPageSize));
    }
    std::memset(pages_[index].get(), 0, kPageSize);
    return PhysAddr(kBase + (index << kPageShift));
  }
  void FreeNode(PhysAddr page) override { free_.push_back((page.value() - kBase) >> kPageShift); }
  uint8_t* MapNode(PhysAddr page) override {
    if (page.value() < kBase || (page.value() & (kPageSize - 1)) != 0) return nullptr;
    const uint64_t index = (page.value() - kBase) >> kPageShift;
    return index < pages_.size() ? pages_[index].get() : nullptr;
  }

 private:
  std::vector<std::unique_ptr<uint8_t[]>> pages_;
  std::vector<uint64_t> free_;
};

struct Block {
  uint64_t pfn;
  unsigned order;
};

// A regular workload is |count| blocks of |order| from |first_pfn|, one
// every |stride| blocks (generated, so 48 GiB of pages need no list); the
// others list their blocks in insertion order.
struct Workload {
  std::string name;
  uint64_t first_pfn = 0;
  uint64_t count = 0;
  unsigned order = 0;
  uint64_t stride = 1;
  std::vector<Block> blocks;

  uint64_t size() const { return blocks.empty() ? count : blocks.size(); }
  template <typename F>
  void ForEach(F&& fn) const {
    if (blocks.empty()) {
      for (uint64_t i = 0; i < count; ++i)
        fn(PhysAddr((first_pfn + ((i * stride) << order)) << kPageShift), order);
    } else {
      for (const Block& b : blocks) fn(PhysAddr(b.pfn << kPageShift), b.order);
    }
  }
};

Workload Dense(std::string name, unsigned order, uint64_t count, uint64_t stride = 1) {
  return Workload{.name = std::move(name),
                  .first_pfn = kRegionStart >> kPageShift,
                  .count = count,
                  .order = order,
                  .stride = stride};
}

// kho_tracker_bench's sparse shapes: one block per stride at a random
// aligned offset, in random order.
Workload Sparse(unsigned order) {
  Workload w{.name = absl::StrCat("order", order, "/sparse")};
  const uint64_t block_bytes = kPageSize << order;
  const uint64_t stride = std::max(kSparseStride, 2 * block_bytes);
  std::mt19937_64 rng(0x6b686f + order);
  for (uint64_t base = kRegionStart; base + stride <= kRegionEnd; base += stride) {
    const uint64_t slot = rng() % (stride / block_bytes);
    w.blocks.push_back({(base + slot * block_bytes) >> kPageShift, order});
  }
  std::shuffle(w.blocks.begin(), w.blocks.end(), rng);
  return w;
}

// 1000 of each order 0..10, in shuffled order (~7.8 GiB).
std::vector<unsigned> MixedOrders() {
  std::vector<unsigned> orders;
  for (unsigned order = 0; order <= 10; ++order) orders.insert(orders.end(), 1000, order);
  std::mt19937_64 rng(0x6d6170);
  std::shuffle(orders.begin(), orders.end(), rng);
  return orders;
}

// Placement by the simulated buddy allocator (lowest suitable block, split
// halves kept for later requests), as folio allocations in a kernel would
// be placed. Non-compound allocations, so no tail struct page is written.
Workload MixedBuddy() {
  Workload w{.name = "mixed8g/buddy"};
  Machine m(MachineConfig{.ram = 16 * kGiB, .nodes = 1, .seed = 7});
  m.Boot();
  for (unsigned order : MixedOrders()) {
    struct page* page = alloc_pages(GFP_KERNEL, order);
    if (page == nullptr) {
      w.blocks.clear();
      w.name = "mixed8g/buddy: allocation failed";
      return w;
    }
    w.blocks.push_back({page_to_pfn(page), order});
  }
  return w;
}

Workload MixedShuffled() {
  Workload w{.name = "mixed8g/shuffled"};
  uint64_t pfn = kRegionStart >> kPageShift;
  for (unsigned order : MixedOrders()) {
    const uint64_t size = uint64_t{1} << order;
    pfn = (pfn + size - 1) & ~(size - 1);
    w.blocks.push_back({pfn, order});
    pfn += size;
  }
  return w;
}

const std::vector<Workload>& Workloads() {
  static const auto* workloads = new std::vector<Workload>{
      Dense("order0/dense", 0, uint64_t{1} << 18),
      Sparse(0),
      Dense("order9/dense", 9, uint64_t{1} << 14),
      Sparse(9),
      Dense("order18/dense", 18, 32),
      Sparse(18),
      Dense("order0/dense48g", 0, 48 * kGiB >> kPageShift),
      Dense("order0/alternate", 0, uint64_t{1} << 17, 2),
      MixedBuddy(),
      MixedShuffled(),
  };
  return *workloads;
}

// ---------------------------------------------------------------------------
// Metadata, per workload, computed once

struct Metadata {
  double gib = 0;  // preserved
  uint64_t radix_nodes = 0;
  uint64_t range_pages = 0;
  uint64_t range_extents = 0;
  uint64_t range_live_bytes = 0;
  uint64_t bitmap_limit_bytes = 0;
  uint64_t kho_v1_bytes = 0;
};

Metadata ComputeMetadata(const Workload& w) {
  Metadata m;
  PagePool pool;
  kho::RadixTree radix(kho::RadixGeometry::For(kPageShift), pool);
  radix.Init();
  kho::RangeTracker range(kPageShift, pool);
  std::set<unsigned> orders;
  std::set<std::pair<unsigned, uint64_t>> v1_bitmaps;  // (order, 32768-block window)
  uint64_t bytes = 0;
  w.ForEach([&](PhysAddr pa, unsigned order) {
    radix.AddBlock(pa, order);
    range.Add(pa, order);
    orders.insert(order);
    v1_bitmaps.insert({order, ((pa.value() >> kPageShift) >> order) >> 15});
    bytes += kPageSize << order;
  });
  PhysAddr handle;
  range.PrepareHandover(&handle);
  const kho::RangeTrackerStats stats = range.Stats();
  m.gib = static_cast<double>(bytes) / kGiB;
  m.radix_nodes = radix.NodeCount();
  m.range_pages = stats.serialized_pages;
  m.range_extents = stats.extents;
  m.range_live_bytes = stats.live_bytes;
  std::map<unsigned, uint64_t> bitmaps_per_order;
  for (const auto& [order, window] : v1_bitmaps) ++bitmaps_per_order[order];
  uint64_t v1_pages = 0;
  for (const auto& [order, n] : bitmaps_per_order) v1_pages += n + (n + 254) / 255;
  m.kho_v1_bytes = v1_pages * kPageSize;
  for (unsigned order : orders) m.bitmap_limit_bytes += ((kRam >> (kPageShift + order)) + 7) / 8;
  radix.Destroy();
  range.Destroy();
  return m;
}

const Metadata& MetadataFor(const Workload& w) {
  static auto* cache = new std::map<std::string, Metadata>();
  auto it = cache->find(w.name);
  if (it == cache->end()) it = cache->emplace(w.name, ComputeMetadata(w)).first;
  return it->second;
}

void SetCounters(benchmark::State& state, const Workload& w, uint64_t meta_bytes) {
  const Metadata& m = MetadataFor(w);
  const double keys = static_cast<double>(w.size());
  state.SetItemsProcessed(static_cast<int64_t>(keys * static_cast<double>(state.iterations())));
  state.counters["keys"] = keys;
  state.counters["keys/s"] = benchmark::Counter(keys * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
  state.counters["meta_B"] = static_cast<double>(meta_bytes);
  state.counters["meta_B_per_GiB"] = static_cast<double>(meta_bytes) / m.gib;
  state.counters["range_extents"] = static_cast<double>(m.range_extents);
  state.counters["range_live_B"] = static_cast<double>(m.range_live_bytes);
  state.counters["bitmap_limit_B"] = static_cast<double>(m.bitmap_limit_bytes);
  state.counters["kho_v1_B"] = static_cast<double>(m.kho_v1_bytes);
}

void SetRadixCounters(benchmark::State& state, const Workload& w) {
  SetCounters(state, w, MetadataFor(w).radix_nodes * kPageSize);
}
void SetRangeCounters(benchmark::State& state, const Workload& w) {
  SetCounters(state, w, MetadataFor(w).range_pages * kPageSize);
}

bool CheckWorkload(benchmark::State& state, const Workload& w) {
  if (w.size() != 0) return true;
  state.SkipWithError(w.name.c_str());
  return false;
}

// ---------------------------------------------------------------------------
// radix

void BM_RadixPreserve(benchmark::State& state, const Workload* w) {
  if (!CheckWorkload(state, *w)) return;
  PagePool pool;
  for (auto _ : state) {
    state.PauseTiming();
    auto tree = std::make_unique<kho::RadixTree>(kho::RadixGeometry::For(kPageShift), pool);
    tree->Init();
    state.ResumeTiming();
    w->ForEach([&](PhysAddr pa, unsigned order) { tree->AddBlock(pa, order); });
    state.PauseTiming();
    tree->Destroy();
    tree.reset();
    state.ResumeTiming();
  }
  SetRadixCounters(state, *w);
}

void BM_RadixUnpreserve(benchmark::State& state, const Workload* w) {
  if (!CheckWorkload(state, *w)) return;
  PagePool pool;
  kho::RadixTree tree(kho::RadixGeometry::For(kPageShift), pool);
  tree.Init();
  w->ForEach([&](PhysAddr pa, unsigned order) { tree.AddBlock(pa, order); });
  for (auto _ : state) {
    w->ForEach([&](PhysAddr pa, unsigned order) { tree.DelBlock(pa, order); });
    state.PauseTiming();
    w->ForEach([&](PhysAddr pa, unsigned order) { tree.AddBlock(pa, order); });
    state.ResumeTiming();
  }
  tree.Destroy();
  SetRadixCounters(state, *w);
}

void BM_RadixWalk(benchmark::State& state, const Workload* w) {
  if (!CheckWorkload(state, *w)) return;
  PagePool pool;
  kho::RadixTree tree(kho::RadixGeometry::For(kPageShift), pool);
  tree.Init();
  w->ForEach([&](PhysAddr pa, unsigned order) { tree.AddBlock(pa, order); });
  // Kernel B adopts the root it finds in the FDT.
  kho::RadixTree incoming(kho::RadixGeometry::For(kPageShift), pool);
  incoming.Adopt(tree.root());
  uint64_t sink = 0;
  for (auto _ : state) {
    const int ret = incoming.Walk(
        [&](uint64_t key) {
          PhysAddr pa;
          unsigned order;
          if (!kho::DecodeKey(incoming.geometry(), key, &pa, &order)) return -EINVAL;
          sink += pa.value() + order;
          return 0;
        },
        [&](PhysAddr node, int) {
          sink += node.value();
          return 0;
        });
    if (ret != 0) state.SkipWithError("radix walk failed");
  }
  benchmark::DoNotOptimize(sink);
  tree.Destroy();
  SetRadixCounters(state, *w);
}

// ---------------------------------------------------------------------------
// range

void BM_RangePreserve(benchmark::State& state, const Workload* w) {
  if (!CheckWorkload(state, *w)) return;
  PagePool pool;
  for (auto _ : state) {
    state.PauseTiming();
    auto tracker = std::make_unique<kho::RangeTracker>(kPageShift, pool);
    state.ResumeTiming();
    w->ForEach([&](PhysAddr pa, unsigned order) { tracker->Add(pa, order); });
    state.PauseTiming();
    tracker.reset();
    state.ResumeTiming();
  }
  SetRangeCounters(state, *w);
}

void BM_RangeUnpreserve(benchmark::State& state, const Workload* w) {
  if (!CheckWorkload(state, *w)) return;
  PagePool pool;
  kho::RangeTracker tracker(kPageShift, pool);
  w->ForEach([&](PhysAddr pa, unsigned order) { tracker.Add(pa, order); });
  for (auto _ : state) {
    w->ForEach([&](PhysAddr pa, unsigned order) { tracker.Del(pa, order); });
    state.PauseTiming();
    w->ForEach([&](PhysAddr pa, unsigned order) { tracker.Add(pa, order); });
    state.ResumeTiming();
  }
  SetRangeCounters(state, *w);
}

void BM_RangeSerialize(benchmark::State& state, const Workload* w) {
  if (!CheckWorkload(state, *w)) return;
  PagePool pool;
  kho::RangeTracker tracker(kPageShift, pool);
  w->ForEach([&](PhysAddr pa, unsigned order) { tracker.Add(pa, order); });
  for (auto _ : state) {
    PhysAddr handle;
    if (tracker.PrepareHandover(&handle) != 0) state.SkipWithError("PrepareHandover failed");
    benchmark::DoNotOptimize(handle);
  }
  tracker.Destroy();
  SetRangeCounters(state, *w);
}

void BM_RangeWalk(benchmark::State& state, const Workload* w) {
  if (!CheckWorkload(state, *w)) return;
  PagePool pool;
  kho::RangeTracker tracker(kPageShift, pool);
  w->ForEach([&](PhysAddr pa, unsigned order) { tracker.Add(pa, order); });
  PhysAddr handle;
  tracker.PrepareHandover(&handle);
  uint64_t sink = 0;
  for (auto _ : state) {
    const int ret = kho::RangeTracker::Walk(
        handle, kPageShift, pool,
        [&](PhysAddr pa, unsigned order) {
          sink += pa.value() + order;
          return 0;
        },
        [&](PhysAddr page) {
          sink += page.value();
          return 0;
        });
    if (ret != 0) state.SkipWithError("range walk failed");
  }
  benchmark::DoNotOptimize(sink);
  tracker.Destroy();
  SetRangeCounters(state, *w);
}

void BM_RangeWalkExtents(benchmark::State& state, const Workload* w) {
  if (!CheckWorkload(state, *w)) return;
  PagePool pool;
  kho::RangeTracker tracker(kPageShift, pool);
  w->ForEach([&](PhysAddr pa, unsigned order) { tracker.Add(pa, order); });
  PhysAddr handle;
  tracker.PrepareHandover(&handle);
  uint64_t sink = 0;
  for (auto _ : state) {
    const int ret = kho::RangeTracker::WalkExtents(
        handle, kPageShift, pool,
        [&](PhysAddr start, uint64_t nr_blocks, unsigned order) {
          sink += start.value() + nr_blocks + order;
          return 0;
        },
        [&](PhysAddr page) {
          sink += page.value();
          return 0;
        });
    if (ret != 0) state.SkipWithError("range walk failed");
  }
  benchmark::DoNotOptimize(sink);
  tracker.Destroy();
  SetRangeCounters(state, *w);
}

// ---------------------------------------------------------------------------

void RegisterAll() {
  using Fn = void (*)(benchmark::State&, const Workload*);
  const std::pair<const char*, std::vector<std::pair<const char*, Fn>>> operations[] = {
      {"preserve", {{"radix", BM_RadixPreserve}, {"range", BM_RangePreserve}}},
      {"unpreserve", {{"radix", BM_RadixUnpreserve}, {"range", BM_RangeUnpreserve}}},
      {"serialize", {{"range", BM_RangeSerialize}}},
      {"walk", {{"radix", BM_RadixWalk}, {"range", BM_RangeWalk}}},
      {"walk_extents", {{"range", BM_RangeWalkExtents}}},
  };
  for (const auto& [operation, structures] : operations) {
    for (const Workload& w : Workloads()) {
      for (const auto& [structure, fn] : structures) {
        const std::string name = absl::StrCat(operation, "/", w.name, "/", structure);
        benchmark::RegisterBenchmark(name.c_str(), fn, &w)->Unit(benchmark::kMicrosecond);
      }
    }
  }
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_page_size", "4 KiB"},
       {"khosim_bitmap_limit_ram", absl::StrFormat("%d GiB", khosim::kRam / khosim::kGiB)}},
      [](double) { khosim::RegisterAll(); });
}

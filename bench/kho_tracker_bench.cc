// What it costs to preserve and unpreserve memory with KHO's trackers (the
// kho-v2+ radix tree and the legacy kho-v1 bitmaps), and what their
// metadata weighs, next to two references measured in the same run on the
// very same keys.
//
// Every row name reads <operation>/<shape>/<structure>:
//   operation  preserve | unpreserve | finalize (bitmap_v1 only: building
//              the chunk list the handover needs; radix has no such step)
//   shape      order0 | order9 | order18, dense (consecutive blocks) or
//              sparse (one block per 128 MiB, or per 2 GiB at order 18, at a
//              random aligned offset, inserted in random order: the radix
//              worst case, one leaf page per order-0 key)
//   structure  radix         kho_preserve_pages / kho_unpreserve_pages on a
//                            freshly booted kho=on machine (the tracker
//                            under test; each call is exactly one key)
//              bitmap_v1     the same calls on a machine booted with the
//                            kho-v1 profile (per-order bitmap pages); its
//                            finalize rows time Kho::Finalize() after the
//                            shape was preserved
//              bitmap_limit  setting / clearing the same keys' bits in a flat
//                            std::vector<uint64_t> bitmap of every block of
//                            that order in RAM: the physical limit of "one
//                            bit per key"
//              btree         absl::btree_set<uint64_t> insert / erase of the
//                            same encoded keys: a general ordered set
//
// The radix and bitmap_v1 preserve rows boot the machine again (cold boot,
// untimed) before every iteration, so each iteration preserves into an
// empty tracker and pays for its metadata pages, as a real kernel does; the
// unpreserve rows boot once and re-preserve (untimed) after every
// iteration. Blocks are taken with
// PageAllocator::AllocRange, so no allocation cost is measured, and their
// memory is never written (untouched simulated memory costs no host memory).
// Tracker preserve rows run a fixed iteration count derived from
// --benchmark_min_time (see SetupBoundIterations); the others let the
// library choose. Times and rates are the benchmark thread's CPU time (the
// library default), which a busy host cannot inflate by preempting the run;
// the JSON output also has real_time.
//
// Counters (all rows): keys/s and pages/s (rates over the timed part; the
// items_per_second column equals keys/s), keys (per iteration). Metadata:
//   radix         node_pages: tree pages this shape added (root, interior
//                 nodes and leaves, beyond the empty tracker's own path);
//                 meta_B_per_GiB: node_pages * page size per preserved GiB
//   bitmap_v1     node_pages: bitmap pages this shape added; chunk_pages:
//                 the chunk list a finalize then builds (untimed in the
//                 preserve and unpreserve rows); meta_B_per_GiB: (node_pages
//                 + chunk_pages) * page size per preserved GiB: what the
//                 handover carries
//   bitmap_limit  meta_B_per_GiB: the flat bitmap's bytes per preserved GiB
//                 (it is proportional to RAM, not to what is preserved)
//   btree         meta_B_per_GiB: host bytes the set allocated, per GiB
// Ratios a reader wants are row over row in the same run, e.g.
// preserve/order0/dense/radix keys/s / preserve/order0/dense/bitmap_limit
// keys/s, and preserve/order0/dense/bitmap_v1 over .../radix. See
// bench/README.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "bench_util.h"
#include "khosim/base/counting_allocator.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

// The simulated machine: only touched memory costs host memory and the
// memmap is materialized lazily, so 64 GiB of RAM is cheap to boot.
constexpr uint64_t kRam = 64 * kGiB;
constexpr uint64_t kPageShift = 12;
// Where the shapes live: free after a cold boot of this machine (boot memory
// and the tree's own pages sit in the top GiBs, early allocations low).
constexpr uint64_t kRegionStart = 4 * kGiB;
constexpr uint64_t kRegionEnd = 56 * kGiB;
// One leaf covers 32768 blocks of its order: 128 MiB of order-0 pages.
constexpr uint64_t kSparseStride = 128 * kMiB;
// The btree rows insert into enough sets per iteration to see at least this
// many keys, so the untimed reset between iterations stays negligible.
constexpr uint64_t kMinBaselineKeys = 1 << 16;

enum class Layout { kDense, kSparse };

struct Shape {
  unsigned order;
  Layout layout;
  uint64_t dense_keys;  // consecutive blocks (dense only)
  // Wall time of one radix preserve iteration, cold boot and block setup
  // included (measured; it sets that row's iteration count, see
  // SetupBoundIterations).
  double preserve_wall_seconds;

  std::string Name() const {
    return absl::StrCat("order", order, layout == Layout::kDense ? "/dense" : "/sparse");
  }
  uint64_t block_pages() const { return uint64_t{1} << order; }
  uint64_t block_bytes() const { return uint64_t{1} << (order + kPageShift); }
};

// The shapes of the suite: 1 GiB of order-0 pages, 32 GiB of 2 MiB blocks,
// 32 x 1 GiB, and the sparse form of each order.
const std::vector<Shape>& Shapes() {
  static const auto* shapes = new std::vector<Shape>{
      {0, Layout::kDense, uint64_t{1} << 18, 40e-3},
      {0, Layout::kSparse, 0, 7e-3},
      {9, Layout::kDense, uint64_t{1} << 14, 4e-3},
      {9, Layout::kSparse, 0, 2e-3},
      {18, Layout::kDense, 32, 2e-3},
      {18, Layout::kSparse, 0, 2e-3},
  };
  return *shapes;
}

// Head pfns of the shape's blocks, in insertion order (deterministic).
std::vector<uint64_t> BlockPfns(const Shape& shape) {
  std::vector<uint64_t> pfns;
  const uint64_t first = kRegionStart >> kPageShift;
  if (shape.layout == Layout::kDense) {
    pfns.reserve(shape.dense_keys);
    for (uint64_t i = 0; i < shape.dense_keys; ++i) pfns.push_back(first + (i << shape.order));
    return pfns;
  }
  const uint64_t stride = std::max(kSparseStride, 2 * shape.block_bytes());
  std::mt19937_64 rng(0x6b686f + shape.order);
  for (uint64_t base = kRegionStart; base + stride <= kRegionEnd; base += stride) {
    const uint64_t slot = rng() % (stride / shape.block_bytes());
    pfns.push_back((base + slot * shape.block_bytes()) >> kPageShift);
  }
  std::shuffle(pfns.begin(), pfns.end(), rng);
  return pfns;
}

MachineConfig TrackerMachineConfig(kho::KhoProfile profile) {
  MachineConfig config{.ram = kRam, .nodes = 1, .seed = 7};
  config.cmdline = "kho=on";
  config.kho.profile = profile;
  return config;
}

// One machine per profile for the whole binary; every preserve iteration
// cold-boots it. Two warm-up boots fault in the host memory later boots
// reuse, so that the first row does not pay for it. Only one of them has a
// kernel current at a time: each row activates its own.
Machine& TrackerMachine(kho::KhoProfile profile) {
  static Machine* machines[2] = {};
  Machine*& machine = machines[profile == kho::KhoProfile::kV1 ? 1 : 0];
  if (machine == nullptr) {
    machine = new Machine(TrackerMachineConfig(profile));
    machine->Boot();
    machine->Boot();
  }
  machine->Activate();
  return *machine;
}

// The outgoing tracker's metadata pages (radix nodes, or bitmap and chunk
// pages) and, for bitmap_v1, the chunk pages among them.
struct Metadata {
  uint64_t pages = 0;
  uint64_t chunks = 0;
};

Metadata TrackerMetadata(kho::KhoProfile profile) {
  const kho::TrackerStats stats = TrackerMachine(profile).kernel().kho().tracker()->Stats();
  return {stats.metadata_pages, stats.chunks};
}

// Cold-boots the machine and takes the shape's blocks out of the page
// allocator (one AllocRange over a dense shape's span, one per sparse block).
// Fills |pages| with each block's head page and returns false with an error
// message on failure.
bool BootAndTakeBlocks(kho::KhoProfile profile, const Shape& shape,
                       const std::vector<uint64_t>& pfns, std::vector<struct page*>* pages,
                       std::string* error) {
  Machine& m = TrackerMachine(profile);
  m.Boot();
  m.trace().Clear();
  if (!kho_is_enabled()) {
    *error = "KHO is not enabled after boot";
    return false;
  }
  mm::PageAllocator& allocator = m.kernel().mm().pages();
  if (shape.layout == Layout::kDense) {
    if (!allocator.AllocRange(Pfn(pfns.front()), pfns.size() << shape.order)) {
      *error = absl::StrFormat("dense range at pfn 0x%x is not free", pfns.front());
      return false;
    }
  } else {
    for (uint64_t pfn : pfns) {
      if (!allocator.AllocRange(Pfn(pfn), shape.block_pages())) {
        *error = absl::StrFormat("block at pfn 0x%x is not free", pfn);
        return false;
      }
    }
  }
  pages->clear();
  pages->reserve(pfns.size());
  for (uint64_t pfn : pfns) pages->push_back(pfn_to_page(pfn));
  return true;
}

bool PreserveAll(const std::vector<struct page*>& pages, uint64_t nr_pages) {
  for (struct page* page : pages) {
    if (kho_preserve_pages(page, nr_pages) != 0) return false;
  }
  return true;
}

void SetRates(benchmark::State& state, const Shape& shape, uint64_t keys_per_iteration) {
  const double keys = static_cast<double>(state.iterations()) * keys_per_iteration;
  state.SetItemsProcessed(static_cast<int64_t>(keys));
  state.counters["keys/s"] = benchmark::Counter(keys, benchmark::Counter::kIsRate);
  state.counters["pages/s"] = benchmark::Counter(keys * static_cast<double>(shape.block_pages()),
                                                 benchmark::Counter::kIsRate);
}

// Counters shared by every structure: the shape's size per iteration and
// the structure's metadata bytes per preserved GiB.
void SetShapeCounters(benchmark::State& state, const Shape& shape, uint64_t keys,
                      double metadata_bytes) {
  const double preserved_gib =
      static_cast<double>(keys) * static_cast<double>(shape.block_bytes()) / kGiB;
  state.counters["keys"] = static_cast<double>(keys);
  state.counters["meta_B_per_GiB"] = metadata_bytes / preserved_gib;
}

// Sets node_pages (metadata pages the shape added to the booted tracker:
// radix nodes, or bitmap pages) and, for bitmap_v1, chunk_pages: the whole
// chunk list an untimed finalize then builds (KHO's own root FDT page adds
// an order-0 entry to it); meta_B_per_GiB counts both.
void SetTrackerCounters(benchmark::State& state, kho::KhoProfile profile, const Shape& shape,
                        uint64_t keys, const Metadata& empty) {
  kho::Kho& kho = TrackerMachine(profile).kernel().kho();
  const kho::TrackerStats now = kho.tracker()->Stats();
  // Live pages only: a finalize row has built chunk lists already.
  const uint64_t added = (now.metadata_pages - now.chunks) - (empty.pages - empty.chunks);
  uint64_t chunks = 0;
  if (kho.tracker()->serializes()) {
    if (kho.Finalize() != 0) {
      state.SkipWithError("Kho::Finalize failed");
      return;
    }
    chunks = kho.tracker()->Stats().chunks;
    state.counters["chunk_pages"] = static_cast<double>(chunks);
  }
  state.counters["node_pages"] = static_cast<double>(added);
  SetShapeCounters(state, shape, keys, static_cast<double>((added + chunks) << kPageShift));
}

// ---------------------------------------------------------------------------
// radix and bitmap_v1: the trackers under test, through the kernel face

void BM_TrackerPreserve(benchmark::State& state, Shape shape, kho::KhoProfile profile) {
  const std::vector<uint64_t> pfns = BlockPfns(shape);
  std::vector<struct page*> pages;
  std::string error;
  Metadata empty;
  for (auto _ : state) {
    state.PauseTiming();
    if (!BootAndTakeBlocks(profile, shape, pfns, &pages, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    empty = TrackerMetadata(profile);
    state.ResumeTiming();
    if (!PreserveAll(pages, shape.block_pages())) {
      state.SkipWithError("kho_preserve_pages failed");
      return;
    }
  }
  SetRates(state, shape, pfns.size());
  SetTrackerCounters(state, profile, shape, pfns.size(), empty);
}

// Unpreserving frees no metadata page, so the tracker is the same after a
// paused re-preserve: one boot serves every iteration.
void BM_TrackerUnpreserve(benchmark::State& state, Shape shape, kho::KhoProfile profile) {
  const std::vector<uint64_t> pfns = BlockPfns(shape);
  std::vector<struct page*> pages;
  std::string error;
  if (!BootAndTakeBlocks(profile, shape, pfns, &pages, &error)) {
    state.SkipWithError(error.c_str());
    return;
  }
  const Metadata empty = TrackerMetadata(profile);
  if (!PreserveAll(pages, shape.block_pages())) {
    state.SkipWithError("kho_preserve_pages failed");
    return;
  }
  for (auto _ : state) {
    for (struct page* page : pages) kho_unpreserve_pages(page, shape.block_pages());
    state.PauseTiming();
    if (kho_is_preserved(page_to_phys(pages.front()), shape.block_pages()) ||
        !PreserveAll(pages, shape.block_pages())) {
      state.SkipWithError("unpreserve left a block preserved, or re-preserving failed");
      return;
    }
    state.ResumeTiming();
  }
  SetRates(state, shape, pfns.size());
  SetTrackerCounters(state, profile, shape, pfns.size(), empty);
}

// bitmap_v1 only: the chunk list a kho-v1 handover needs, built from the
// shape's bitmaps. Re-running frees the previous list, so one boot serves
// every iteration.
void BM_TrackerFinalize(benchmark::State& state, Shape shape, kho::KhoProfile profile) {
  const std::vector<uint64_t> pfns = BlockPfns(shape);
  std::vector<struct page*> pages;
  std::string error;
  if (!BootAndTakeBlocks(profile, shape, pfns, &pages, &error)) {
    state.SkipWithError(error.c_str());
    return;
  }
  const Metadata empty = TrackerMetadata(profile);
  if (!PreserveAll(pages, shape.block_pages())) {
    state.SkipWithError("kho_preserve_pages failed");
    return;
  }
  Machine& m = TrackerMachine(profile);
  kho::Kho& kho = m.kernel().kho();
  // Each run records a kho/finalize event; the trace would grow with the
  // iteration count.
  m.trace().SetEnabled("kho", false);
  for (auto _ : state) {
    if (kho.Finalize() != 0) {
      state.SkipWithError("Kho::Finalize failed");
      return;
    }
  }
  m.trace().SetEnabled("kho", true);
  SetRates(state, shape, pfns.size());
  SetTrackerCounters(state, profile, shape, pfns.size(), empty);
}

void BM_RadixPreserve(benchmark::State& state, Shape shape) {
  BM_TrackerPreserve(state, shape, kho::KhoProfile::kV4);
}
void BM_RadixUnpreserve(benchmark::State& state, Shape shape) {
  BM_TrackerUnpreserve(state, shape, kho::KhoProfile::kV4);
}
void BM_BitmapV1Preserve(benchmark::State& state, Shape shape) {
  BM_TrackerPreserve(state, shape, kho::KhoProfile::kV1);
}
void BM_BitmapV1Unpreserve(benchmark::State& state, Shape shape) {
  BM_TrackerUnpreserve(state, shape, kho::KhoProfile::kV1);
}
void BM_BitmapV1Finalize(benchmark::State& state, Shape shape) {
  BM_TrackerFinalize(state, shape, kho::KhoProfile::kV1);
}

// ---------------------------------------------------------------------------
// bitmap_limit: one bit per key in a flat bitmap, nothing else

struct FlatBitmap {
  std::vector<uint64_t> words;
  std::vector<uint64_t> bits;  // the keys' bit indices: pfn >> order

  FlatBitmap(const Shape& shape, const std::vector<uint64_t>& pfns)
      : words(((kRam >> (kPageShift + shape.order)) + 63) / 64) {
    bits.reserve(pfns.size());
    for (uint64_t pfn : pfns) bits.push_back(pfn >> shape.order);
  }
  double bytes() const { return static_cast<double>(words.size() * sizeof(uint64_t)); }
};

// Setting a bit that is already set costs the same as setting a clear one,
// so iterations need no reset (and no paused timer).
void BM_BitmapPreserve(benchmark::State& state, Shape shape) {
  FlatBitmap bitmap(shape, BlockPfns(shape));
  uint64_t* words = bitmap.words.data();
  for (auto _ : state) {
    for (uint64_t bit : bitmap.bits) words[bit >> 6] |= uint64_t{1} << (bit & 63);
    benchmark::DoNotOptimize(words);
    benchmark::ClobberMemory();
  }
  SetRates(state, shape, bitmap.bits.size());
  SetShapeCounters(state, shape, bitmap.bits.size(), bitmap.bytes());
}

void BM_BitmapUnpreserve(benchmark::State& state, Shape shape) {
  FlatBitmap bitmap(shape, BlockPfns(shape));
  uint64_t* words = bitmap.words.data();
  for (uint64_t bit : bitmap.bits) words[bit >> 6] |= uint64_t{1} << (bit & 63);
  for (auto _ : state) {
    for (uint64_t bit : bitmap.bits) words[bit >> 6] &= ~(uint64_t{1} << (bit & 63));
    benchmark::DoNotOptimize(words);
    benchmark::ClobberMemory();
  }
  SetRates(state, shape, bitmap.bits.size());
  SetShapeCounters(state, shape, bitmap.bits.size(), bitmap.bytes());
}

// ---------------------------------------------------------------------------
// btree: absl::btree_set of the encoded keys

// Counts the bytes a container holds, for the btree's metadata counter.
struct ByteCount {
  int64_t live = 0;
};

using KeySet = absl::btree_set<uint64_t, std::less<uint64_t>, CountingAllocator<uint64_t>>;

std::vector<uint64_t> EncodedKeys(const Shape& shape) {
  const kho::RadixGeometry geometry = kho::RadixGeometry::For(kPageShift);
  std::vector<uint64_t> keys;
  for (uint64_t pfn : BlockPfns(shape)) {
    keys.push_back(kho::EncodeKey(geometry, PhysAddr(pfn << kPageShift), shape.order));
  }
  return keys;
}

// Several sets per iteration when a shape has few keys, so the untimed
// clear between iterations does not dominate what is timed.
struct SetBatch {
  ByteCount count;
  std::vector<KeySet> sets;

  explicit SetBatch(uint64_t keys) {
    const uint64_t n = std::max<uint64_t>(1, kMinBaselineKeys / keys);
    for (uint64_t i = 0; i < n; ++i) sets.emplace_back(CountingAllocator<uint64_t>(&count.live));
  }
};

void BM_BtreePreserve(benchmark::State& state, Shape shape) {
  const std::vector<uint64_t> keys = EncodedKeys(shape);
  SetBatch batch(keys.size());
  double bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (KeySet& set : batch.sets) set.clear();
    state.ResumeTiming();
    for (KeySet& set : batch.sets) {
      for (uint64_t key : keys) set.insert(key);
    }
  }
  bytes = static_cast<double>(batch.count.live) / static_cast<double>(batch.sets.size());
  SetRates(state, shape, keys.size() * batch.sets.size());
  SetShapeCounters(state, shape, keys.size(), bytes);
}

void BM_BtreeUnpreserve(benchmark::State& state, Shape shape) {
  const std::vector<uint64_t> keys = EncodedKeys(shape);
  SetBatch batch(keys.size());
  double bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (KeySet& set : batch.sets) set.insert(keys.begin(), keys.end());
    bytes = static_cast<double>(batch.count.live) / static_cast<double>(batch.sets.size());
    state.ResumeTiming();
    for (KeySet& set : batch.sets) {
      for (uint64_t key : keys) set.erase(key);
    }
  }
  SetRates(state, shape, keys.size() * batch.sets.size());
  SetShapeCounters(state, shape, keys.size(), bytes);
}

// ---------------------------------------------------------------------------

void RegisterAll(double min_time) {
  using Fn = void (*)(benchmark::State&, Shape);
  const std::pair<const char*, std::vector<std::pair<const char*, Fn>>> operations[] = {
      {"preserve",
       {{"radix", BM_RadixPreserve},
        {"bitmap_v1", BM_BitmapV1Preserve},
        {"bitmap_limit", BM_BitmapPreserve},
        {"btree", BM_BtreePreserve}}},
      {"unpreserve",
       {{"radix", BM_RadixUnpreserve},
        {"bitmap_v1", BM_BitmapV1Unpreserve},
        {"bitmap_limit", BM_BitmapUnpreserve},
        {"btree", BM_BtreeUnpreserve}}},
      {"finalize", {{"bitmap_v1", BM_BitmapV1Finalize}}},
  };
  for (const auto& [operation, structures] : operations) {
    for (const Shape& shape : Shapes()) {
      for (const auto& [structure, fn] : structures) {
        const std::string name = absl::StrCat(operation, "/", shape.Name(), "/", structure);
        auto* row =
            benchmark::RegisterBenchmark(name.c_str(), fn, shape)->Unit(benchmark::kMicrosecond);
        if (fn == BM_RadixPreserve || fn == BM_BitmapV1Preserve) {
          row->Iterations(
              khosim::bench::SetupBoundIterations(min_time, shape.preserve_wall_seconds));
        }
      }
    }
  }
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_machine",
        absl::StrFormat("%d GiB RAM, 1 node, 4 KiB pages, kho=on", khosim::kRam / khosim::kGiB)}},
      [](double min_time) { khosim::RegisterAll(min_time); });
}

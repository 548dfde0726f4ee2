// What KHO's two serialized containers cost per entry: block sets
// (kho_block: the page chains LUO keeps its sessions, files and PCI devices
// in) and the KHO xarray (a sparse u64 -> u64 map whose nodes are preserved
// pages), on both sides of a kexec, next to host containers measured in the
// same run on the very same entries.
//
// Every row name reads <operation>/<shape>/<structure>, the shape being
// <entry or pattern>/n:<entries>:
//
// Block sets (shape entry8/n:N or entry64/n:N)
//   entry8    8-byte entries, a pci_dev_ser {u32 domain; u16 bdf; u16
//             refcount}: 510 per 4 KiB block, so 10^6 entries take 1961
//             blocks, within KHO_MAX_BLOCKS (10000). N = 10^2 .. 10^6.
//   entry64   64-byte entries, LUO's luo_file_ser {char compatible[48]; u64
//             serialized_data; u64 token}: 63 per block, at most 630,000
//             entries per set, so N = 10^2 .. 10^5 (10^6 would need 15874
//             blocks: -ENOSPC).
//   bs_grow/<shape>/kho_block      BlockSet::Grow(i + 1) before each entry
//                                  i, from an empty set: what LUO does at
//                                  every create / preserve
//   bs_append/<shape>/kho_block    Iterator::ReserveEntry + write, over a
//                                  set grown to N (serialization at reboot)
//   bs_append/<shape>/vector       std::vector<entry>::push_back from empty
//   bs_append/<shape>/btree_map    absl::btree_map<u64, entry> emplace of
//                                  (i, entry) from empty
//   bs_iterate/<shape>/...         Iterator::ReadEntry over every entry, and
//                                  a range-for over the vector and the map
//   bs_restore/<shape>/kho_block   kernel B: Restore(head_pa) after a
//                                  Machine::Kexec, ReadEntry over every
//                                  entry, Destroy (restore and free)
//
// KHO xarray (shape <pattern>/n:N; the entry for the i-th index is
// MakeValue(i))
//   dense      indices 0 .. N-1, ascending          key_bits 40 (depth 5)
//   stride64   every 64th index (8 per leaf)         key_bits 40
//   stride512  every 512th index (one per leaf)      key_bits 40
//   random40   uniform 40-bit indices, fixed seed,   key_bits 40
//              distinct, in generation order
//   random64   uniform 64-bit indices, fixed seed    key_bits 64 (depth 8)
//   Each pattern runs at N = 10^3 up to what fits the host (see
//   Patterns()); KHOSIM_BENCH_LARGE=1 adds the sizes that take gigabytes.
//   xa_store/<shape>/...          Store of every index into an empty map
//                                 (kho_xarray); std::map / absl::btree_map
//                                 emplace of the same pairs
//   xa_load/<shape>/...           Load (find) of every index, same order
//   xa_iterate/<shape>/...        ForEach(0) over every entry; range-for
//   xa_iterate_from/<shape>/...   ForEach(start) stopped at its first
//                                 entry, from 1024 random starts in
//                                 [0, largest index]; lower_bound
//   xa_restore/<shape>/kho_xarray       kernel B: Restore(desc), the
//                                       checked walk of every node (it
//                                       takes nothing: iterations repeat it
//                                       on one kexec)
//   xa_read_in_place/<shape>/kho_xarray kernel B: ForEach over the restored
//                                       (incoming) map, in place
//   xa_adopt/<shape>/kho_xarray         kernel B: Restore + Adopt
//   xa_convert/<shape>/kho_xarray       kernel B: Restore + Convert (copy
//                                       into a btree_map, restore-free
//                                       every node)
//   node_alloc/page/alloc_preserve_write  kho_alloc_preserve(PAGE_SIZE) and
//                                       a first write to the page: what every
//                                       xarray node and block costs the
//                                       simulator before it is used
//
// Setup. One 64 GiB kho=on machine for the binary. Rows of one shape are
// registered next to each other and share what they build: the store row
// leaves its map to the load / iterate rows of the same shape, one kexec
// serves restore and read_in_place, adopt hands its map over again for the
// next kexec. Building an xarray from scratch starts with a power cycle:
// the suite discards every simulated RAM page (what a real cold boot does
// to DRAM contents) and cold-boots, so host memory stays bounded by the
// largest map and no boot has to scrub what earlier rows left behind.
// Rows whose every iteration needs a kexec (bs_restore, xa_adopt,
// xa_convert) run a fixed iteration count derived from
// --benchmark_min_time (SetupBoundIterations); the others let the library
// choose. Rows that reset their structure between iterations (bs_grow,
// bs_append of the host containers, xa_store) fill several structures per
// iteration when N is small, at least 2^14 entries, so that the paused
// reset does not dominate.
//
// Counters: items_per_second and entries/s are entries (or seeks) per second
// of the timed part; s/entry its inverse (seconds per entry); entries: N.
// B_per_entry: kho_block blocks * 4096 / N; kho_xarray node pages * 4096 /
// N (node_pages gives the count); vector capacity * entry size / N; the
// host maps' bytes requested from the allocator / N (counted by the
// allocator; malloc's own rounding and headers are not included).
// See bench/README.md for the ratios.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "bench_util.h"
#include "khosim/abi/block.h"
#include "khosim/abi/kho_xarray.h"
#include "khosim/base/counting_allocator.h"
#include "khosim/kho/block_set.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_xarray.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"
#include "khosim/mm/mm.h"
#include "khosim/mm/page_alloc.h"

namespace khosim {
namespace {

using kho::BlockSet;
using kho::KhoXarray;

constexpr uint64_t kRam = 64 * kGiB;
constexpr uint64_t kPageSize = 4096;
// A small image keeps the fixed part of every kexec small.
constexpr uint64_t kImageBytes = 4 * kMiB;
// Rows that reset their structure between iterations fill at least this
// many entries per iteration.
constexpr uint64_t kMinBatchEntries = 1 << 14;
// xa_iterate_from: seeks per iteration.
constexpr uint64_t kSeeks = 1024;
constexpr char kXarraySubtree[] = "bench-xarray";
constexpr char kBlockSubtree[] = "bench-blocks";

// KHOSIM_BENCH_LARGE (any value) registers the xarray sizes that take
// gigabytes of host memory or minutes (see Patterns()).
bool LargeSizes() { return std::getenv("KHOSIM_BENCH_LARGE") != nullptr; }

uint64_t BatchFor(uint64_t n) { return std::max<uint64_t>(1, kMinBatchEntries / n); }

// ---------------------------------------------------------------------------
// The machine, and what its running kernel holds for the rows

MachineConfig BenchMachineConfig() {
  MachineConfig config{.ram = kRam, .nodes = 1, .seed = 23};
  config.cmdline = "kho=on";
  config.kernel_image_size = kImageBytes;
  return config;
}

// Bumped by every boot and kexec the suite performs: a held structure
// belongs to the kernel of one epoch (generations restart at a cold boot).
uint64_t& Epoch() {
  static uint64_t epoch = 0;
  return epoch;
}

// One machine for the whole binary; a warm-up kexec faults in the host
// memory every later kexec reuses (the next image, boot memory).
Machine& BenchMachine() {
  static Machine* machine = [] {
    auto* m = new Machine(BenchMachineConfig());
    m->Boot();
    (void)m->Kexec();
    m->trace().Clear();
    ++Epoch();
    return m;
  }();
  return *machine;
}

// The block set the rows of one entry8/entry64 shape share (outgoing,
// grown to n and written).
struct HeldBlocks {
  uint64_t entry_size = 0;
  uint64_t n = 0;
  uint64_t epoch = 0;
  std::unique_ptr<BlockSet> set;
};

HeldBlocks& Blocks() {
  static auto* held = new HeldBlocks;
  return *held;
}

struct PatternSpec;

// The xarray the rows of one pattern/n shape share: an outgoing map in the
// running kernel, or the descriptor kernel B found for an incoming one
// whose nodes nobody has taken yet.
struct HeldXarray {
  const PatternSpec* spec = nullptr;
  uint64_t n = 0;
  uint64_t epoch = 0;
  bool incoming = false;
  std::unique_ptr<KhoXarray> map;  // outgoing
  abi::KhoXarrayDesc desc = {};    // incoming
  uint64_t node_pages = 0;

  bool Holds(const PatternSpec& s, uint64_t count, bool in) const {
    return epoch == Epoch() && spec == &s && n == count && incoming == in;
  }
  void Forget() {
    spec = nullptr;
    epoch = 0;
    map.reset();
  }
};

HeldXarray& Xarray() {
  static auto* held = new HeldXarray;
  return *held;
}

// Discards every simulated RAM page and cold-boots. Host objects of the old
// kernel (a BlockSet's block list, a KhoXarray) only hold host state, so
// forgetting them is safe.
void PowerCycle() {
  Machine& m = BenchMachine();
  Blocks().set.reset();
  Xarray().Forget();
  for (const hw::RamRange& range : m.memory().layout().ranges()) {
    m.memory().Discard(range.start, range.size);
  }
  m.Boot();
  m.trace().Clear();
  ++Epoch();
}

bool KexecNow(std::string* error) {
  Machine& m = BenchMachine();
  const absl::Status status = m.Kexec();
  m.trace().Clear();
  if (!status.ok()) {
    *error = status.ToString();
    return false;
  }
  ++Epoch();
  return true;
}

// The running kernel's free pages and KHO tracker nodes at one moment.
struct PageMark {
  uint64_t free_pages;
  uint64_t tracker_nodes;
};

PageMark MarkPages() {
  Kernel& kernel = BenchMachine().kernel();
  return PageMark{kernel.mm().pages().FreePages(), kernel.kho().out_tree()->NodeCount()};
}

// Pages allocated since |before|, less the tracker's own node pages: the
// node pages (or blocks) a container took. Cheaper than walking the
// container, which for a sparse xarray reads every slot of every interior
// node.
uint64_t PagesSince(const PageMark& before) {
  const PageMark now = MarkPages();
  return (before.free_pages - now.free_pages) - (now.tracker_nodes - before.tracker_nodes);
}

// A preserved blob of |size| bytes whose first |published| bytes are
// registered as subtree |name|.
void* NewSubtreeBlob(const char* name, uint64_t size, std::string* error, uint64_t published = 0) {
  void* blob = kho_alloc_preserve(size);
  if (IS_ERR_OR_NULL(blob)) {
    *error = absl::StrCat("kho_alloc_preserve(", size, ") failed");
    return nullptr;
  }
  if (int err = kho_add_subtree(name, blob, published != 0 ? published : size); err != 0) {
    *error = absl::StrCat("kho_add_subtree(", name, ") = ", err);
    return nullptr;
  }
  return blob;
}

// Kernel B: copies subtree |name| (exactly |size| bytes) to |out| and gives
// its page back.
bool TakeSubtree(const char* name, void* out, uint64_t size, std::string* error) {
  phys_addr_t phys = 0;
  size_t got = 0;
  if (int err = kho_retrieve_subtree(name, &phys, &got); err != 0 || got != size) {
    *error = absl::StrFormat("kho_retrieve_subtree(%s) = %d, size %d", name, err, got);
    return false;
  }
  std::memcpy(out, phys_to_virt(phys), size);
  kho_restore_free(phys_to_virt(phys));
  return true;
}

// ---------------------------------------------------------------------------
// Counters

void SetEntryRates(benchmark::State& state, uint64_t per_iteration) {
  const double entries =
      static_cast<double>(state.iterations()) * static_cast<double>(per_iteration);
  state.SetItemsProcessed(static_cast<int64_t>(entries));
  state.counters["entries/s"] = benchmark::Counter(entries, benchmark::Counter::kIsRate);
  state.counters["s/entry"] =
      benchmark::Counter(entries, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void SetFootprint(benchmark::State& state, uint64_t n, double bytes) {
  state.counters["entries"] = static_cast<double>(n);
  state.counters["B_per_entry"] = bytes / static_cast<double>(n);
}

// Counts the bytes a host container holds.
struct ByteCount {
  int64_t live = 0;
};

// A host container with its own byte count (heap-allocated: the allocator
// points at the count).
template <typename C>
struct Counted {
  ByteCount count;
  C c{typename C::allocator_type(&count.live)};
};

// ---------------------------------------------------------------------------
// Block sets

struct PciDevEntry {  // pci_dev_ser
  uint32_t domain;
  uint16_t bdf;
  uint16_t refcount;
};
static_assert(sizeof(PciDevEntry) == 8);

struct FileEntry {  // luo_file_ser
  char compatible[48];
  uint64_t serialized_data;
  uint64_t token;
};
static_assert(sizeof(FileEntry) == 64);

template <typename E>
E MakeEntry(uint64_t i);

template <>
PciDevEntry MakeEntry<PciDevEntry>(uint64_t i) {
  return PciDevEntry{static_cast<uint32_t>(i >> 16), static_cast<uint16_t>(i), 1};
}

template <>
FileEntry MakeEntry<FileEntry>(uint64_t i) {
  FileEntry e = {};
  std::memcpy(e.compatible, "memfd-v2", sizeof("memfd-v2"));
  e.serialized_data = (uint64_t{1} << 32) + i * kPageSize;
  e.token = i;
  return e;
}

// Entry i reads back as i.
uint64_t KeyOf(const PciDevEntry& e) { return (uint64_t{e.domain} << 16) | e.bdf; }
uint64_t KeyOf(const FileEntry& e) { return e.token; }

// What iterating n entries must sum to.
uint64_t KeySum(uint64_t n) { return n * (n - 1) / 2; }

template <typename E>
bool WriteEntries(BlockSet& set, uint64_t n) {
  BlockSet::Iterator it(set);
  for (uint64_t i = 0; i < n; ++i) {
    void* slot = it.ReserveEntry();
    if (slot == nullptr) return false;
    const E entry = MakeEntry<E>(i);
    std::memcpy(slot, &entry, sizeof(E));
  }
  return true;
}

// Sums KeyOf over every entry the iterator reads; *count gets how many.
template <typename E>
uint64_t ReadEntries(BlockSet& set, uint64_t* count) {
  BlockSet::Iterator it(set);
  uint64_t sum = 0;
  uint64_t n = 0;
  while (const void* slot = it.ReadEntry()) {
    E entry;
    std::memcpy(&entry, slot, sizeof(E));
    sum += KeyOf(entry);
    ++n;
  }
  *count = n;
  return sum;
}

// An outgoing set of n written entries in the running kernel, shared by the
// rows of one shape.
template <typename E>
BlockSet* WrittenSet(uint64_t n, std::string* error) {
  HeldBlocks& held = Blocks();
  BenchMachine();
  if (held.set != nullptr && held.epoch == Epoch() && held.entry_size == sizeof(E) && held.n == n) {
    return held.set.get();
  }
  if (held.set != nullptr && held.epoch == Epoch()) held.set->Destroy();
  held.set.reset();
  auto set = std::make_unique<BlockSet>(sizeof(E));
  if (int err = set->Grow(n); err != 0) {
    *error = absl::StrFormat("Grow(%d) = %d", n, err);
    set->Destroy();
    return nullptr;
  }
  if (!WriteEntries<E>(*set, n)) {
    *error = "ReserveEntry ran out of slots";
    set->Destroy();
    return nullptr;
  }
  held.entry_size = sizeof(E);
  held.n = n;
  held.epoch = Epoch();
  held.set = std::move(set);
  return held.set.get();
}

template <typename E>
void BM_BlockGrow(benchmark::State& state, uint64_t n) {
  BenchMachine();
  std::vector<std::unique_ptr<BlockSet>> sets;
  for (uint64_t k = 0; k < BatchFor(n); ++k) sets.push_back(std::make_unique<BlockSet>(sizeof(E)));
  auto destroy_all = [&] {
    for (auto& set : sets) set->Destroy();
  };
  for (auto _ : state) {
    state.PauseTiming();
    destroy_all();
    state.ResumeTiming();
    for (auto& set : sets) {
      for (uint64_t i = 0; i < n; ++i) {
        if (int err = set->Grow(i + 1); err != 0) {
          state.SkipWithError(absl::StrFormat("Grow(%d) = %d", i + 1, err).c_str());
          destroy_all();
          return;
        }
      }
    }
  }
  const uint64_t blocks = sets.front()->nblocks();
  destroy_all();
  SetEntryRates(state, n * sets.size());
  state.counters["blocks"] = static_cast<double>(blocks);
  SetFootprint(state, n, static_cast<double>(blocks * kPageSize));
}

template <typename E>
void BM_BlockAppend(benchmark::State& state, uint64_t n) {
  std::string error;
  BlockSet* set = WrittenSet<E>(n, &error);
  if (set == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  // Rewriting from the first slot costs what the first write did.
  for (auto _ : state) {
    if (!WriteEntries<E>(*set, n)) {
      state.SkipWithError("ReserveEntry ran out of slots");
      return;
    }
    benchmark::ClobberMemory();
  }
  SetEntryRates(state, n);
  state.counters["blocks"] = static_cast<double>(set->nblocks());
  SetFootprint(state, n, static_cast<double>(set->nblocks() * kPageSize));
}

template <typename E>
using EntryVector = std::vector<E, khosim::CountingAllocator<E>>;
template <typename E>
using EntryMap = absl::btree_map<uint64_t, E, std::less<uint64_t>,
                                 khosim::CountingAllocator<std::pair<const uint64_t, E>>>;

template <typename E>
void BM_VectorAppend(benchmark::State& state, uint64_t n) {
  std::vector<std::unique_ptr<Counted<EntryVector<E>>>> vectors;
  for (uint64_t k = 0; k < BatchFor(n); ++k) {
    vectors.push_back(std::make_unique<Counted<EntryVector<E>>>());
  }
  for (auto _ : state) {
    state.PauseTiming();
    // Start from no capacity at all: the growth is part of push_back.
    for (auto& v : vectors) EntryVector<E>(v->c.get_allocator()).swap(v->c);
    state.ResumeTiming();
    for (auto& v : vectors) {
      for (uint64_t i = 0; i < n; ++i) v->c.push_back(MakeEntry<E>(i));
    }
    benchmark::ClobberMemory();
  }
  SetEntryRates(state, n * vectors.size());
  SetFootprint(state, n, static_cast<double>(vectors.front()->count.live));
}

template <typename E>
void BM_BtreeAppend(benchmark::State& state, uint64_t n) {
  std::vector<std::unique_ptr<Counted<EntryMap<E>>>> maps;
  for (uint64_t k = 0; k < BatchFor(n); ++k)
    maps.push_back(std::make_unique<Counted<EntryMap<E>>>());
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& m : maps) m->c.clear();
    state.ResumeTiming();
    for (auto& m : maps) {
      for (uint64_t i = 0; i < n; ++i) m->c.emplace(i, MakeEntry<E>(i));
    }
  }
  SetEntryRates(state, n * maps.size());
  SetFootprint(state, n, static_cast<double>(maps.front()->count.live));
}

template <typename E>
void BM_BlockIterate(benchmark::State& state, uint64_t n) {
  std::string error;
  BlockSet* set = WrittenSet<E>(n, &error);
  if (set == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  for (auto _ : state) {
    uint64_t count = 0;
    const uint64_t sum = ReadEntries<E>(*set, &count);
    if (count != n || sum != KeySum(n)) {
      state.SkipWithError("the set does not read back what was written");
      return;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetEntryRates(state, n);
  state.counters["blocks"] = static_cast<double>(set->nblocks());
  SetFootprint(state, n, static_cast<double>(set->nblocks() * kPageSize));
}

template <typename E>
void BM_VectorIterate(benchmark::State& state, uint64_t n) {
  Counted<EntryVector<E>> v;
  for (uint64_t i = 0; i < n; ++i) v.c.push_back(MakeEntry<E>(i));
  for (auto _ : state) {
    uint64_t sum = 0;
    for (const E& entry : v.c) sum += KeyOf(entry);
    if (sum != KeySum(n)) {
      state.SkipWithError("bad sum");
      return;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetEntryRates(state, n);
  SetFootprint(state, n, static_cast<double>(v.count.live));
}

template <typename E>
void BM_BtreeIterate(benchmark::State& state, uint64_t n) {
  auto m = std::make_unique<Counted<EntryMap<E>>>();
  for (uint64_t i = 0; i < n; ++i) m->c.emplace(i, MakeEntry<E>(i));
  for (auto _ : state) {
    uint64_t sum = 0;
    for (const auto& [key, entry] : m->c) sum += KeyOf(entry);
    if (sum != KeySum(n)) {
      state.SkipWithError("bad sum");
      return;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetEntryRates(state, n);
  SetFootprint(state, n, static_cast<double>(m->count.live));
}

// Hands a written set of n entries to the next kernel: its head address in
// a subtree, then a kexec. *head_pa: the head kernel B found.
template <typename E>
bool HandOverSet(uint64_t n, uint64_t* head_pa, std::string* error) {
  BlockSet* set = WrittenSet<E>(n, error);
  if (set == nullptr) return false;
  auto* root = static_cast<uint64_t*>(NewSubtreeBlob(kBlockSubtree, sizeof(uint64_t), error));
  if (root == nullptr) return false;
  *root = set->head_pa();
  Blocks().set.reset();  // kernel A's host list; the blocks cross
  if (!KexecNow(error)) return false;
  return TakeSubtree(kBlockSubtree, head_pa, sizeof(uint64_t), error);
}

template <typename E>
void BM_BlockRestore(benchmark::State& state, uint64_t n) {
  std::string error;
  uint64_t blocks = 0;
  for (auto _ : state) {
    state.PauseTiming();
    uint64_t head_pa = 0;
    if (!HandOverSet<E>(n, &head_pa, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.ResumeTiming();
    BlockSet in(sizeof(E));
    if (int err = in.Restore(head_pa); err != 0) {
      state.SkipWithError(absl::StrCat("Restore = ", err).c_str());
      return;
    }
    uint64_t count = 0;
    const uint64_t sum = ReadEntries<E>(in, &count);
    blocks = in.nblocks();
    in.Destroy();
    if (count != n || sum != KeySum(n)) {
      state.SkipWithError("kernel B does not read back what kernel A wrote");
      return;
    }
  }
  SetEntryRates(state, n);
  state.counters["blocks"] = static_cast<double>(blocks);
  SetFootprint(state, n, static_cast<double>(blocks * kPageSize));
}

// ---------------------------------------------------------------------------
// KHO xarray: index patterns

struct PatternSpec {
  const char* name;
  unsigned key_bits;
  uint64_t stride;       // index of entry i = i * stride; 0: random
  unsigned random_bits;  // random patterns: uniform indices below 2^bits
  uint64_t max_n;        // largest N by default
  uint64_t large_max_n;  // largest N with KHOSIM_BENCH_LARGE
};

// Sizes: 10^3 .. max_n by default, .. large_max_n with KHOSIM_BENCH_LARGE.
// What bounds each pattern (4 KiB nodes, so a leaf covers 512 indices; a
// node page costs the simulator about 5 us, see node_alloc):
//   dense      N / 512 leaves. 10^8 is 195,313 leaves (800 MB), and its
//              std::map reference 4.8 GB; 10^7 and 10^8 take minutes with
//              their references: large-only.
//   stride64   N / 8 leaves. 10^7 is 1.25 M leaves (5 GB): large-only;
//              10^8 would be 50 GB and does not exist.
//   stride512  one leaf per entry. 10^6 is 4 GB and 10 s: large-only;
//              10^7 would be 40 GB.
//   random40   a leaf per entry plus a level-1 node per entry until the
//              2^22 level-1 prefixes fill up: 10^6 is 1.9 M pages (7.8 GB):
//              large-only; 10^7 would be 55 GB.
//   random64   levels 0 to 3 each hold a node per entry (4.9 per entry in
//              all): 10^5 is 2 GB and its rows 15 s: large-only; 10^6
//              would be 18 GB, beyond what a 24 GiB host can give.
const std::vector<PatternSpec>& Patterns() {
  // clang-format off
  static const auto* patterns = new std::vector<PatternSpec>{
      // name, key_bits, stride, random_bits, max_n, large_max_n
      {"dense", 40, 1, 0, 1'000'000, 100'000'000},
      {"stride64", 40, 64, 0, 1'000'000, 10'000'000},
      {"stride512", 40, 512, 0, 100'000, 1'000'000},
      {"random40", 40, 0, 40, 100'000, 1'000'000},
      {"random64", 64, 0, 64, 10'000, 100'000},
  };
  // clang-format on
  return *patterns;
}

class Indices {
 public:
  Indices(const PatternSpec& spec, uint64_t n) : n_(n), stride_(spec.stride) {
    if (stride_ != 0) {
      max_ = (n - 1) * stride_;
      return;
    }
    // Distinct uniform indices; a smaller N is a prefix of a larger one.
    std::mt19937_64 rng(0x6b6f7861 + spec.random_bits);
    absl::flat_hash_set<uint64_t> seen;
    seen.reserve(n);
    random_.reserve(n);
    const unsigned shift = 64 - spec.random_bits;
    while (random_.size() < n) {
      const uint64_t index = rng() >> shift;
      if (seen.insert(index).second) random_.push_back(index);
    }
    max_ = *std::max_element(random_.begin(), random_.end());
  }
  uint64_t operator[](uint64_t i) const { return stride_ != 0 ? i * stride_ : random_[i]; }
  uint64_t size() const { return n_; }
  uint64_t max_index() const { return max_; }

 private:
  uint64_t n_;
  uint64_t stride_;
  uint64_t max_ = 0;
  std::vector<uint64_t> random_;
};

const Indices& IndicesFor(const PatternSpec& spec, uint64_t n) {
  static const PatternSpec* cached_spec = nullptr;
  static uint64_t cached_n = 0;
  static auto* cached = new std::unique_ptr<Indices>;
  if (cached_spec != &spec || cached_n != n) {
    cached->reset();
    *cached = std::make_unique<Indices>(spec, n);
    cached_spec = &spec;
    cached_n = n;
  }
  return **cached;
}

// Node pages a pattern is expected to need (for iteration budgets only):
// distinct prefixes at every level of the map.
double ExpectedNodes(const PatternSpec& spec, uint64_t n) {
  const unsigned slot_bits = abi::KhoXarraySlotBits(12);
  const unsigned depth = abi::KhoXarrayDepth(spec.key_bits, 12);
  const double count = static_cast<double>(n);
  double nodes = 0;
  for (unsigned level = 0; level < depth; ++level) {
    const unsigned covered = std::min(spec.key_bits, (level + 1) * slot_bits);
    if (level + 1 == depth) {
      nodes += 1;
    } else if (spec.stride != 0) {
      nodes +=
          std::floor((count - 1) * static_cast<double>(spec.stride) / std::ldexp(1, covered)) + 1;
    } else {
      const double prefixes = std::ldexp(1, static_cast<int>(spec.random_bits - covered));
      nodes += -prefixes * std::expm1(-count / prefixes);
    }
  }
  return nodes;
}

int StoreAll(KhoXarray& xa, const Indices& indices) {
  for (uint64_t i = 0; i < indices.size(); ++i) {
    if (int err = xa.Store(indices[i], KhoXarray::MakeValue(i)); err != 0) return err;
  }
  return 0;
}

// An outgoing map of the shape in the running kernel, its descriptor
// mirrored into a preserved subtree blob. Builds it after a power cycle
// unless it is held already.
KhoXarray* OutgoingXarray(const PatternSpec& spec, uint64_t n, std::string* error) {
  HeldXarray& held = Xarray();
  if (held.Holds(spec, n, false)) return held.map.get();
  PowerCycle();
  const Indices& indices = IndicesFor(spec, n);
  auto* home = static_cast<abi::KhoXarrayDesc*>(
      NewSubtreeBlob(kXarraySubtree, sizeof(abi::KhoXarrayDesc), error));
  if (home == nullptr) return nullptr;
  auto map = std::make_unique<KhoXarray>();
  if (int err = map->Init(spec.key_bits, home); err != 0) {
    *error = absl::StrCat("Init = ", err);
    return nullptr;
  }
  const PageMark mark = MarkPages();
  if (int err = StoreAll(*map, indices); err != 0) {
    *error = absl::StrCat("Store = ", err);
    map->Destroy();
    return nullptr;
  }
  held.node_pages = PagesSince(mark);
  held.map = std::move(map);
  held.spec = &spec;
  held.n = n;
  held.incoming = false;
  held.epoch = Epoch();
  return held.map.get();
}

// Kernel B's view of the shape's map: the descriptor of an incoming map
// nobody has restored yet (kexecs the held outgoing map, building it first
// if needed).
bool IncomingXarray(const PatternSpec& spec, uint64_t n, abi::KhoXarrayDesc* desc,
                    std::string* error) {
  HeldXarray& held = Xarray();
  if (!held.Holds(spec, n, true)) {
    if (OutgoingXarray(spec, n, error) == nullptr) return false;
    const uint64_t node_pages = held.node_pages;
    held.Forget();  // kernel A's host object; the nodes cross
    if (!KexecNow(error)) return false;
    if (!TakeSubtree(kXarraySubtree, &held.desc, sizeof(held.desc), error)) return false;
    if (held.desc.count != n) {
      *error = absl::StrFormat("kernel B found a map of %d entries", held.desc.count);
      return false;
    }
    held.spec = &spec;
    held.n = n;
    held.incoming = true;
    held.epoch = Epoch();
    held.node_pages = node_pages;
  }
  *desc = held.desc;
  return true;
}

void SetXarrayCounters(benchmark::State& state, uint64_t per_iteration, uint64_t n,
                       uint64_t node_pages) {
  SetEntryRates(state, per_iteration);
  state.counters["node_pages"] = static_cast<double>(node_pages);
  SetFootprint(state, n, static_cast<double>(node_pages * kPageSize));
}

// Random starts in [0, largest index] for xa_iterate_from.
std::vector<uint64_t> SeekStarts(const Indices& indices) {
  std::mt19937_64 rng(0x7365656b);
  std::uniform_int_distribution<uint64_t> uniform(0, indices.max_index());
  std::vector<uint64_t> starts(kSeeks);
  for (uint64_t& start : starts) start = uniform(rng);
  return starts;
}

// kho_xarray rows --------------------------------------------------------

void DropHostMaps();

// The first row of a shape: a power cycle, and the previous shape's host
// map goes too.
void BM_XaStore(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  std::string error;
  DropHostMaps();
  const Indices& indices = IndicesFor(*spec, n);
  PowerCycle();
  const uint64_t batch = BatchFor(n);
  // One descriptor home per map; the first is the subtree later rows hand
  // over.
  auto* homes = static_cast<abi::KhoXarrayDesc*>(NewSubtreeBlob(
      kXarraySubtree, batch * sizeof(abi::KhoXarrayDesc), &error, sizeof(abi::KhoXarrayDesc)));
  if (homes == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  std::vector<std::unique_ptr<KhoXarray>> maps;
  for (uint64_t k = 0; k < batch; ++k) maps.push_back(std::make_unique<KhoXarray>());
  PageMark mark = {};
  for (auto _ : state) {
    state.PauseTiming();
    for (uint64_t k = 0; k < batch; ++k) {
      maps[k]->Destroy();
      if (maps[k]->Init(spec->key_bits, &homes[k]) != 0) {
        state.SkipWithError("Init failed");
        return;
      }
    }
    mark = MarkPages();
    state.ResumeTiming();
    for (auto& map : maps) {
      if (int err = StoreAll(*map, indices); err != 0) {
        state.SkipWithError(absl::StrCat("Store = ", err).c_str());
        return;
      }
    }
  }
  const uint64_t node_pages = PagesSince(mark) / batch;
  for (uint64_t k = 1; k < batch; ++k) maps[k]->Destroy();
  // The first map stays for the load and iterate rows of this shape.
  HeldXarray& held = Xarray();
  held.Forget();
  held.map = std::move(maps.front());
  held.spec = spec;
  held.n = n;
  held.incoming = false;
  held.epoch = Epoch();
  held.node_pages = node_pages;
  SetXarrayCounters(state, n * batch, n, node_pages);
}

void BM_XaLoad(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  std::string error;
  const Indices& indices = IndicesFor(*spec, n);
  KhoXarray* xa = OutgoingXarray(*spec, n, &error);
  if (xa == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  for (auto _ : state) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t entry = 0;
      if (!xa->Load(indices[i], &entry)) {
        state.SkipWithError("an index is missing");
        return;
      }
      sum += entry;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetXarrayCounters(state, n, n, Xarray().node_pages);
}

// ForEach(start) over every entry; false if the count is not n.
bool IterateAll(const KhoXarray& xa, uint64_t n, uint64_t* sum) {
  uint64_t count = 0;
  uint64_t total = 0;
  xa.ForEach(0, [&](uint64_t index, uint64_t entry) {
    total += index ^ entry;
    ++count;
    return true;
  });
  *sum = total;
  return count == n;
}

void BM_XaIterate(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  std::string error;
  KhoXarray* xa = OutgoingXarray(*spec, n, &error);
  if (xa == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  for (auto _ : state) {
    uint64_t sum = 0;
    if (!IterateAll(*xa, n, &sum)) {
      state.SkipWithError("ForEach did not visit every entry");
      return;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetXarrayCounters(state, n, n, Xarray().node_pages);
}

void BM_XaIterateFrom(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  std::string error;
  const std::vector<uint64_t> starts = SeekStarts(IndicesFor(*spec, n));
  KhoXarray* xa = OutgoingXarray(*spec, n, &error);
  if (xa == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  for (auto _ : state) {
    uint64_t sum = 0;
    uint64_t found = 0;
    for (uint64_t start : starts) {
      xa->ForEach(start, [&](uint64_t index, uint64_t entry) {
        sum += index ^ entry;
        ++found;
        return false;
      });
    }
    if (found != starts.size()) {
      state.SkipWithError("a seek found nothing");
      return;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetXarrayCounters(state, starts.size(), n, Xarray().node_pages);
}

void BM_XaRestore(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  std::string error;
  abi::KhoXarrayDesc desc;
  if (!IncomingXarray(*spec, n, &desc, &error)) {
    state.SkipWithError(error.c_str());
    return;
  }
  // Restore takes nothing, so every iteration checks the same pages.
  for (auto _ : state) {
    KhoXarray in;
    if (int err = in.Restore(desc); err != 0) {
      state.SkipWithError(absl::StrCat("Restore = ", err).c_str());
      return;
    }
    benchmark::DoNotOptimize(&in);
  }
  BenchMachine().trace().Clear();
  SetXarrayCounters(state, n, n, Xarray().node_pages);
}

void BM_XaReadInPlace(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  std::string error;
  abi::KhoXarrayDesc desc;
  if (!IncomingXarray(*spec, n, &desc, &error)) {
    state.SkipWithError(error.c_str());
    return;
  }
  KhoXarray in;
  if (int err = in.Restore(desc); err != 0) {
    state.SkipWithError(absl::StrCat("Restore = ", err).c_str());
    return;
  }
  for (auto _ : state) {
    uint64_t sum = 0;
    if (!IterateAll(in, n, &sum)) {
      state.SkipWithError("ForEach did not visit every entry");
      return;
    }
    benchmark::DoNotOptimize(sum);
  }
  // |in| is dropped without Destroy: the nodes stay unrestored for the
  // adopt and convert rows.
  SetXarrayCounters(state, n, n, Xarray().node_pages);
}

// The adopted map goes straight back to being the held outgoing map, so
// the next iteration (or row) only needs a kexec.
void BM_XaAdopt(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  std::string error;
  uint64_t node_pages = 0;
  for (auto _ : state) {
    state.PauseTiming();
    abi::KhoXarrayDesc desc;
    if (!IncomingXarray(*spec, n, &desc, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    node_pages = Xarray().node_pages;
    auto* home = static_cast<abi::KhoXarrayDesc*>(
        NewSubtreeBlob(kXarraySubtree, sizeof(abi::KhoXarrayDesc), &error));
    if (home == nullptr) {
      state.SkipWithError(error.c_str());
      return;
    }
    auto map = std::make_unique<KhoXarray>();
    state.ResumeTiming();
    if (int err = map->Restore(desc); err != 0) {
      state.SkipWithError(absl::StrCat("Restore = ", err).c_str());
      return;
    }
    if (int err = map->Adopt(home); err != 0) {
      state.SkipWithError(absl::StrCat("Adopt = ", err).c_str());
      return;
    }
    state.PauseTiming();
    HeldXarray& held = Xarray();
    held.incoming = false;
    held.map = std::move(map);
    state.ResumeTiming();
  }
  SetXarrayCounters(state, n, n, node_pages);
}

void BM_XaConvert(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  std::string error;
  uint64_t node_pages = 0;
  absl::btree_map<uint64_t, uint64_t> out;
  for (auto _ : state) {
    state.PauseTiming();
    out.clear();
    abi::KhoXarrayDesc desc;
    if (!IncomingXarray(*spec, n, &desc, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    node_pages = Xarray().node_pages;
    Xarray().Forget();  // converting consumes the nodes
    KhoXarray in;
    state.ResumeTiming();
    if (int err = in.Restore(desc); err != 0) {
      state.SkipWithError(absl::StrCat("Restore = ", err).c_str());
      return;
    }
    in.Convert(&out);
    if (out.size() != n) {
      state.SkipWithError("Convert lost entries");
      return;
    }
  }
  out.clear();
  malloc_trim(0);
  SetXarrayCounters(state, n, n, node_pages);
}

// What one node page (or block) costs the simulator before the container
// does anything with it: kho_alloc_preserve, and the first write, which
// faults the page into the host's memfd (kho_alloc_preserve zeroes by
// punching the page out of it).
void BM_NodeAlloc(benchmark::State& state) {
  constexpr uint64_t kPages = 1024;
  BenchMachine();
  std::vector<void*> pages(kPages);
  for (auto _ : state) {
    for (void*& page : pages) {
      page = kho_alloc_preserve(kPageSize);
      if (IS_ERR_OR_NULL(page)) {
        state.SkipWithError("kho_alloc_preserve failed");
        return;
      }
      *static_cast<volatile uint64_t*>(page) = 1;
    }
    state.PauseTiming();
    for (void* page : pages) kho_unpreserve_free(page);
    state.ResumeTiming();
  }
  SetEntryRates(state, kPages);
}

// Host map rows --------------------------------------------------------------

using StdMap = std::map<uint64_t, uint64_t, std::less<uint64_t>,
                        khosim::CountingAllocator<std::pair<const uint64_t, uint64_t>>>;
using BtreeMap = absl::btree_map<uint64_t, uint64_t, std::less<uint64_t>,
                                 khosim::CountingAllocator<std::pair<const uint64_t, uint64_t>>>;

// The host map the rows of one shape share (one per map type).
template <typename Map>
struct HeldHostMap {
  const PatternSpec* spec = nullptr;
  uint64_t n = 0;
  std::unique_ptr<Counted<Map>> map;
};

template <typename Map>
HeldHostMap<Map>& HostHeld() {
  static auto* held = new HeldHostMap<Map>;
  return *held;
}

// At most one host map is held at a time (the rows of a shape run one
// structure after the other), so that the largest shapes need host memory
// for one map only.
void DropHostMaps() {
  const bool held = HostHeld<StdMap>().map != nullptr || HostHeld<BtreeMap>().map != nullptr;
  HostHeld<StdMap>().map.reset();
  HostHeld<BtreeMap>().map.reset();
  // A 10^8-entry std::map leaves gigabytes of small free chunks in malloc's
  // arena; hand them back so that later shapes do not pay for them.
  if (held) malloc_trim(0);
}

template <typename Map>
void FillHostMap(Map& map, const Indices& indices) {
  for (uint64_t i = 0; i < indices.size(); ++i) map.emplace(indices[i], KhoXarray::MakeValue(i));
}

template <typename Map>
Counted<Map>& HostMap(const PatternSpec& spec, uint64_t n) {
  HeldHostMap<Map>& held = HostHeld<Map>();
  if (held.map != nullptr && held.spec == &spec && held.n == n) return *held.map;
  DropHostMaps();  // the previous map's memory goes first
  held.map = std::make_unique<Counted<Map>>();
  FillHostMap(held.map->c, IndicesFor(spec, n));
  held.spec = &spec;
  held.n = n;
  return *held.map;
}

template <typename Map>
void BM_HostStore(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  const Indices& indices = IndicesFor(*spec, n);
  HeldHostMap<Map>& held = HostHeld<Map>();
  DropHostMaps();
  std::vector<std::unique_ptr<Counted<Map>>> maps;
  for (uint64_t k = 0; k < BatchFor(n); ++k) maps.push_back(std::make_unique<Counted<Map>>());
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& map : maps) map->c.clear();
    state.ResumeTiming();
    for (auto& map : maps) FillHostMap(map->c, indices);
  }
  const double bytes = static_cast<double>(maps.front()->count.live);
  held.map = std::move(maps.front());
  held.spec = spec;
  held.n = n;
  SetEntryRates(state, n * maps.size());
  SetFootprint(state, n, bytes);
}

template <typename Map>
void BM_HostLoad(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  const Indices& indices = IndicesFor(*spec, n);
  Counted<Map>& map = HostMap<Map>(*spec, n);
  for (auto _ : state) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; ++i) {
      auto it = map.c.find(indices[i]);
      if (it == map.c.end()) {
        state.SkipWithError("an index is missing");
        return;
      }
      sum += it->second;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetEntryRates(state, n);
  SetFootprint(state, n, static_cast<double>(map.count.live));
}

template <typename Map>
void BM_HostIterate(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  Counted<Map>& map = HostMap<Map>(*spec, n);
  for (auto _ : state) {
    uint64_t sum = 0;
    uint64_t count = 0;
    for (const auto& [index, entry] : map.c) {
      sum += index ^ entry;
      ++count;
    }
    if (count != n) {
      state.SkipWithError("bad count");
      return;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetEntryRates(state, n);
  SetFootprint(state, n, static_cast<double>(map.count.live));
}

template <typename Map>
void BM_HostIterateFrom(benchmark::State& state, const PatternSpec* spec, uint64_t n) {
  const std::vector<uint64_t> starts = SeekStarts(IndicesFor(*spec, n));
  Counted<Map>& map = HostMap<Map>(*spec, n);
  for (auto _ : state) {
    uint64_t sum = 0;
    for (uint64_t start : starts) {
      auto it = map.c.lower_bound(start);
      if (it == map.c.end()) {
        state.SkipWithError("a seek found nothing");
        return;
      }
      sum += it->first ^ it->second;
    }
    benchmark::DoNotOptimize(sum);
  }
  SetEntryRates(state, starts.size());
  SetFootprint(state, n, static_cast<double>(map.count.live));
}

// ---------------------------------------------------------------------------
// Registration

// Wall time of one iteration of the kexec rows, setup included (measured on
// a 2-core host): they set the fixed iteration counts. A kexec costs about
// 1.5 ms plus 0.3 us per preserved page; an xarray node page about 5 us to
// allocate and 5 us to check and adopt or convert.
double KexecSeconds(double pages) { return 1.5e-3 + 0.3e-6 * pages; }
double BlockRestoreWallSeconds(uint64_t entry_size, uint64_t n) {
  const double blocks =
      std::ceil(static_cast<double>(n) /
                static_cast<double>(abi::KhoBlockEntriesPerBlock(kPageSize, entry_size)));
  return KexecSeconds(blocks) + 6e-6 * blocks + 20e-9 * static_cast<double>(n);
}
// Restore + Adopt, then a kexec of the adopted map.
double AdoptWallSeconds(const PatternSpec& spec, uint64_t n) {
  const double nodes = ExpectedNodes(spec, n);
  return KexecSeconds(nodes) + 5e-6 * nodes + 5e-9 * static_cast<double>(n);
}
// Restore + Convert, then a power cycle, a build and a kexec.
double ConvertWallSeconds(const PatternSpec& spec, uint64_t n) {
  const double nodes = ExpectedNodes(spec, n);
  return 3e-3 + KexecSeconds(nodes) + 10e-6 * nodes + 160e-9 * static_cast<double>(n);
}

std::vector<uint64_t> Decades(uint64_t first, uint64_t last) {
  std::vector<uint64_t> sizes;
  for (uint64_t n = first; n <= last; n *= 10) sizes.push_back(n);
  return sizes;
}

template <typename E>
void RegisterBlockRows(double min_time, const char* entry_name, uint64_t max_n) {
  using Fn = void (*)(benchmark::State&, uint64_t);
  const std::pair<const char*, std::vector<std::pair<const char*, Fn>>> operations[] = {
      {"bs_grow", {{"kho_block", BM_BlockGrow<E>}}},
      {"bs_append",
       {{"kho_block", BM_BlockAppend<E>},
        {"vector", BM_VectorAppend<E>},
        {"btree_map", BM_BtreeAppend<E>}}},
      {"bs_iterate",
       {{"kho_block", BM_BlockIterate<E>},
        {"vector", BM_VectorIterate<E>},
        {"btree_map", BM_BtreeIterate<E>}}},
      {"bs_restore", {{"kho_block", BM_BlockRestore<E>}}},
  };
  for (uint64_t n : Decades(100, max_n)) {
    for (const auto& [operation, structures] : operations) {
      for (const auto& [structure, fn] : structures) {
        const std::string name = absl::StrCat(operation, "/", entry_name, "/n:", n, "/", structure);
        auto* row =
            benchmark::RegisterBenchmark(name.c_str(), fn, n)->Unit(benchmark::kMicrosecond);
        if (fn == BM_BlockRestore<E>) {
          row->Iterations(
              khosim::bench::SetupBoundIterations(min_time, BlockRestoreWallSeconds(sizeof(E), n)));
        }
      }
    }
  }
}

void RegisterXarrayRows(double min_time, bool large) {
  using Fn = void (*)(benchmark::State&, const PatternSpec*, uint64_t);
  struct Row {
    const char* operation;
    const char* structure;
    Fn fn;
  };
  // Per shape, one structure after the other: the kho_xarray rows in
  // kernel A (store first: it builds the map the others read), then in
  // kernel B in this order (restore and read_in_place share one kexec,
  // adopt hands its map over again, convert consumes it), then each host
  // map's rows (store first).
  const Row rows[] = {
      {"xa_store", "kho_xarray", BM_XaStore},
      {"xa_load", "kho_xarray", BM_XaLoad},
      {"xa_iterate", "kho_xarray", BM_XaIterate},
      {"xa_iterate_from", "kho_xarray", BM_XaIterateFrom},
      {"xa_restore", "kho_xarray", BM_XaRestore},
      {"xa_read_in_place", "kho_xarray", BM_XaReadInPlace},
      {"xa_adopt", "kho_xarray", BM_XaAdopt},
      {"xa_convert", "kho_xarray", BM_XaConvert},
      {"xa_store", "std_map", BM_HostStore<StdMap>},
      {"xa_load", "std_map", BM_HostLoad<StdMap>},
      {"xa_iterate", "std_map", BM_HostIterate<StdMap>},
      {"xa_iterate_from", "std_map", BM_HostIterateFrom<StdMap>},
      {"xa_store", "btree_map", BM_HostStore<BtreeMap>},
      {"xa_load", "btree_map", BM_HostLoad<BtreeMap>},
      {"xa_iterate", "btree_map", BM_HostIterate<BtreeMap>},
      {"xa_iterate_from", "btree_map", BM_HostIterateFrom<BtreeMap>},
  };
  benchmark::RegisterBenchmark("node_alloc/page/alloc_preserve_write", BM_NodeAlloc)
      ->Unit(benchmark::kMicrosecond);
  for (const PatternSpec& spec : Patterns()) {
    for (uint64_t n : Decades(1000, large ? spec.large_max_n : spec.max_n)) {
      for (const Row& row : rows) {
        const std::string name =
            absl::StrCat(row.operation, "/", spec.name, "/n:", n, "/", row.structure);
        auto* bench = benchmark::RegisterBenchmark(name.c_str(), row.fn, &spec, n)
                          ->Unit(benchmark::kMicrosecond);
        if (row.fn == BM_XaAdopt) {
          bench->Iterations(
              khosim::bench::SetupBoundIterations(min_time, AdoptWallSeconds(spec, n)));
        } else if (row.fn == BM_XaConvert) {
          bench->Iterations(
              khosim::bench::SetupBoundIterations(min_time, ConvertWallSeconds(spec, n)));
        }
      }
    }
  }
}

void RegisterAll(double min_time, bool large) {
  RegisterBlockRows<PciDevEntry>(min_time, "entry8", 1'000'000);
  RegisterBlockRows<FileEntry>(min_time, "entry64", 100'000);
  RegisterXarrayRows(min_time, large);
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  const bool large = khosim::LargeSizes();
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_machine",
        absl::StrFormat("%d GiB RAM, 1 node, 4 KiB pages, kho=on, %d MiB image",
                        khosim::kRam / khosim::kGiB, khosim::kImageBytes / khosim::kMiB)},
       {"large_sizes", large ? "on (KHOSIM_BENCH_LARGE)" : "off"}},
      [large](double min_time) { khosim::RegisterAll(min_time, large); });
}

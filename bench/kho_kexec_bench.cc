// What KHO costs on the far side of a kexec: kernel B's retrieval of the
// preserved set while it boots, restoring the retrieved blocks, and the
// vmalloc preservation format end to end.
//
// Rows:
//   kexec/baseline/nothing_preserved
//       Machine::Kexec() with only KHO's own two blocks (the root FDT and
//       kexec-metadata) preserved: the fixed cost of a kexec on this machine.
//   kexec/dense/pages:N (N = 2^10 .. 2^18), kexec/scattered/pages:N (.. 2^14)
//       Machine::Kexec() with N order-0 pages preserved, consecutive from
//       1 GiB, or one page at a random offset in each of N equal slots of
//       [4 GiB, 7 GiB). Kernel B walks the tree (hostile input, every node
//       checked), memblock-reserves each block and tags its head page.
//       retrieve cost = time(row) - time(kexec/baseline) of the same run.
//   kexec/baseline/nothing_preserved/bitmap_v1,
//   kexec/dense/bitmap_v1/pages:N, kexec/scattered/bitmap_v1/pages:N
//       The same kexecs on a machine whose kernels run the kho-v1 profile:
//       kernel B follows the chunk list and scans every bitmap, reserving
//       one block per set bit. KHO's own blocks are just the root FDT. The
//       image is loaded untimed first (a kexec that a reboot hook cancels),
//       which also runs kernel A's finalize, so the timed kexec holds what
//       the radix rows hold: kernel B's boot and retrieval.
//       retrieve cost = time(row) - time(the bitmap_v1 baseline).
//   restore/orderK/blocks:N
//       kho_restore_folio() over every retrieved head of N preserved blocks
//       of order K (0 or 9), in kernel B.
//   vmalloc/preserve/pages:N, vmalloc/restore/pages:N   (N = 2^10 .. 2^16)
//       kho_preserve_vmalloc() of an N-page vmalloc area in kernel A;
//       kho_restore_vmalloc() of it in kernel B (pages restored and mapped).
//
// Every iteration cold-boots the machine and builds its preserved set with
// the timer paused (PauseTiming/ResumeTiming); only the operation named by
// the row is timed, and every row runs a fixed iteration count derived from
// --benchmark_min_time (see SetupBoundIterations). Preserved memory is never
// written: untouched simulated memory costs no host memory, so a 1 GiB
// preserved set costs only its tree pages and struct pages. Times and rates
// are the benchmark thread's CPU time (the library default): a busy host
// preempting the run adds whole scheduler ticks (about 4 ms) to real time,
// which would swamp the small differences the kexec rows are read for. The
// JSON output also has real_time.
//
// Counters: items_per_second is blocks (or pages) per second of the timed
// part; kexec rows add retrieved_blocks (Kho::retrieved_blocks() in kernel
// B, KHO's own blocks included: two for radix, one for bitmap_v1), blocks/s
// (retrieved blocks per second of the whole kexec: a lower bound of the
// retrieve rate) and walk_nodes (tracker pages kernel B walked: tree nodes,
// or chunks and bitmaps). See bench/README.md for the subtraction.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "bench_util.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/vmalloc.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr uint64_t kRam = 8 * kGiB;
constexpr uint64_t kPageShift = 12;
// The next kernel's image is written into memory by every kexec; a small
// one keeps the fixed part of a kexec (and its noise) small next to what
// the preserved set adds. The baseline row uses the same machine.
constexpr uint64_t kImageBytes = 4 * kMiB;
// Free after a cold boot of this machine: boot memory sits just below
// 4 GiB and at the top of RAM, early allocations at the bottom.
constexpr uint64_t kDenseStart = 1 * kGiB;
constexpr uint64_t kScatterStart = 4 * kGiB;
constexpr uint64_t kScatterEnd = 7 * kGiB;
constexpr char kVmallocSubtree[] = "bench-vmalloc";

MachineConfig KexecMachineConfig(kho::KhoProfile profile) {
  MachineConfig config{.ram = kRam, .nodes = 1, .seed = 11};
  config.cmdline = "kho=on";
  config.kernel_image_size = kImageBytes;
  config.kho.profile = profile;
  return config;
}

// Set before an untimed kexec that only loads the next image: the reboot
// hook every kernel of the bitmap_v1 machine has cancels it once.
bool cancel_next_kexec = false;

// One machine per profile for the whole binary (the radix one unless a row
// says otherwise). Two warm-up rounds of what every iteration does (cold
// boot, kexec) fault in the host memory later kexecs reuse (the next
// image's pages, boot memory), so that no row, the baseline least of all,
// pays for that in its first iteration. The last machine asked for is the
// current one.
Machine& KexecMachine(kho::KhoProfile profile = kho::KhoProfile::kV4) {
  static Machine* machines[2] = {};
  Machine*& machine = machines[profile == kho::KhoProfile::kV1 ? 1 : 0];
  if (machine == nullptr) {
    machine = new Machine(KexecMachineConfig(profile));
    if (profile == kho::KhoProfile::kV1) {
      KernelModule canceller{.name = "bench-load-only"};
      canceller.reboot_hooks.push_back({"bench_load_only", [](const RebootInfo&) {
                                          if (!cancel_next_kexec) return 0;
                                          cancel_next_kexec = false;
                                          return -EAGAIN;
                                        }});
      if (!machine->AddModule(std::move(canceller)).ok()) std::abort();
    }
    for (int i = 0; i < 2; ++i) {
      machine->Boot();
      (void)machine->Kexec();
    }
  }
  machine->Activate();
  return *machine;
}

// Loads the next image (kexec_file_load; kho-v1 finalizes here) without
// kexecing: a kexec whose reboot hooks cancel it.
bool LoadImageOnly(kho::KhoProfile profile, std::string* error) {
  cancel_next_kexec = true;
  const absl::Status status = KexecMachine(profile).Kexec();
  if (cancel_next_kexec || status.ok()) {
    cancel_next_kexec = false;
    *error = "the load-only kexec was not cancelled: " + status.ToString();
    return false;
  }
  return true;
}

// A fresh kernel A: cold boot, empty trace (it would grow every iteration).
bool ColdBoot(std::string* error, kho::KhoProfile profile = kho::KhoProfile::kV4) {
  Machine& m = KexecMachine(profile);
  m.Boot();
  m.trace().Clear();
  if (!kho_is_enabled()) {
    *error = "KHO is not enabled after boot";
    return false;
  }
  return true;
}

enum class Layout { kDense, kScattered };

// Head pfns of |n| order-0 pages in |layout|, ascending.
std::vector<uint64_t> PagePfns(Layout layout, uint64_t n) {
  std::vector<uint64_t> pfns;
  pfns.reserve(n);
  if (layout == Layout::kDense) {
    for (uint64_t i = 0; i < n; ++i) pfns.push_back((kDenseStart >> kPageShift) + i);
    return pfns;
  }
  const uint64_t first = kScatterStart >> kPageShift;
  const uint64_t slot = ((kScatterEnd - kScatterStart) >> kPageShift) / n;
  std::mt19937_64 rng(0x6b6578 + n);
  for (uint64_t i = 0; i < n; ++i) pfns.push_back(first + i * slot + rng() % slot);
  return pfns;
}

// Takes [first, first + nr_pages) out of kernel A's page allocator.
bool TakeRange(uint64_t first_pfn, uint64_t nr_pages, std::string* error,
               kho::KhoProfile profile = kho::KhoProfile::kV4) {
  if (nr_pages == 0) return true;
  if (!KexecMachine(profile).kernel().mm().pages().AllocRange(Pfn(first_pfn), nr_pages)) {
    *error = absl::StrFormat("pfns 0x%x+0x%x are not free", first_pfn, nr_pages);
    return false;
  }
  return true;
}

// Preserves one block of 2^order pages at each pfn (one key each).
bool PreserveBlocks(const std::vector<uint64_t>& pfns, unsigned order, std::string* error) {
  for (uint64_t pfn : pfns) {
    if (int err = kho_preserve_pages(pfn_to_page(pfn), 1ul << order); err != 0) {
      *error = absl::StrFormat("kho_preserve_pages(pfn 0x%x, order %d) = %d", pfn, order, err);
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Retrieval: Machine::Kexec() with N preserved order-0 pages.

void RunKexec(benchmark::State& state, Layout layout, uint64_t n,
              kho::KhoProfile profile = kho::KhoProfile::kV4) {
  const std::vector<uint64_t> pfns = n == 0 ? std::vector<uint64_t>() : PagePfns(layout, n);
  // KHO's own blocks: the root FDT, and kexec-metadata from kho-v3 on.
  const uint64_t own = profile == kho::KhoProfile::kV1 ? 1 : 2;
  std::string error;
  uint64_t retrieved = 0;
  for (auto _ : state) {
    state.PauseTiming();
    bool ready = ColdBoot(&error, profile) &&
                 (pfns.empty() ||
                  TakeRange(pfns.front(), pfns.back() - pfns.front() + 1, &error, profile)) &&
                 PreserveBlocks(pfns, 0, &error);
    // kho-v1 serializes when the image is loaded: keep that out of the
    // timed kexec, which is to hold kernel B's side only.
    if (ready && profile == kho::KhoProfile::kV1) ready = LoadImageOnly(profile, &error);
    if (!ready) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.ResumeTiming();
    const absl::Status status = KexecMachine(profile).Kexec();
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
    retrieved = KexecMachine(profile).kernel().kho().retrieved_blocks();
  }
  if (retrieved != n + own) {
    state.SkipWithError(
        absl::StrFormat("retrieved %d blocks, expected %d", retrieved, n + own).c_str());
    return;
  }
  const double blocks = static_cast<double>(state.iterations()) * static_cast<double>(retrieved);
  state.SetItemsProcessed(static_cast<int64_t>(blocks));
  state.counters["pages"] = static_cast<double>(n);
  state.counters["retrieved_blocks"] = static_cast<double>(retrieved);
  state.counters["blocks/s"] = benchmark::Counter(blocks, benchmark::Counter::kIsRate);
  state.counters["walk_nodes"] = bench::RetrieveWalkNodes(KexecMachine(profile));
}

void BM_KexecBaseline(benchmark::State& state, kho::KhoProfile profile) {
  RunKexec(state, Layout::kDense, 0, profile);
}

void BM_KexecRetrieve(benchmark::State& state, Layout layout, kho::KhoProfile profile) {
  RunKexec(state, layout, static_cast<uint64_t>(state.range(0)), profile);
}

// ---------------------------------------------------------------------------
// Restore: kho_restore_folio() over the retrieved heads.

void BM_RestoreFolio(benchmark::State& state, unsigned order) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  const uint64_t first = kDenseStart >> kPageShift;
  std::vector<uint64_t> pfns;
  std::vector<phys_addr_t> heads;
  for (uint64_t i = 0; i < n; ++i) {
    pfns.push_back(first + (i << order));
    heads.push_back(static_cast<phys_addr_t>(pfns.back() << kPageShift));
  }
  std::string error;
  for (auto _ : state) {
    state.PauseTiming();
    if (!ColdBoot(&error) || !TakeRange(first, n << order, &error) ||
        !PreserveBlocks(pfns, order, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    if (const absl::Status status = KexecMachine().Kexec(); !status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
    state.ResumeTiming();
    for (phys_addr_t pa : heads) {
      struct folio* folio = kho_restore_folio(pa);
      if (folio == nullptr) {
        state.SkipWithError("kho_restore_folio returned NULL");
        return;
      }
      benchmark::DoNotOptimize(folio);
    }
  }
  // The restored folios are left as they are: the next cold boot drops them.
  const double blocks = static_cast<double>(state.iterations()) * static_cast<double>(n);
  state.SetItemsProcessed(static_cast<int64_t>(blocks));
  state.counters["blocks"] = static_cast<double>(n);
  state.counters["pages/s"] =
      benchmark::Counter(blocks * static_cast<double>(1ull << order), benchmark::Counter::kIsRate);
}

// ---------------------------------------------------------------------------
// vmalloc: kho_preserve_vmalloc in A, kho_restore_vmalloc in B.

// A vmalloc area of |n| pages and a preserved descriptor for it, published
// as a subtree so that kernel B can find it.
bool PrepareVmalloc(uint64_t n, bool preserve, void** area, struct kho_vmalloc** desc,
                    std::string* error) {
  if (!ColdBoot(error)) return false;
  *area = vmalloc(n << kPageShift);
  if (*area == nullptr) {
    *error = absl::StrCat("vmalloc of ", n, " pages failed");
    return false;
  }
  void* mem = kho_alloc_preserve(sizeof(struct kho_vmalloc));
  if (IS_ERR(mem)) {
    *error = "kho_alloc_preserve failed";
    return false;
  }
  *desc = static_cast<struct kho_vmalloc*>(mem);
  if (!preserve) return true;
  if (int err = kho_preserve_vmalloc(*area, *desc); err != 0) {
    *error = absl::StrCat("kho_preserve_vmalloc = ", err);
    return false;
  }
  if (int err = kho_add_subtree(kVmallocSubtree, *desc, sizeof(struct kho_vmalloc)); err != 0) {
    *error = absl::StrCat("kho_add_subtree = ", err);
    return false;
  }
  return true;
}

void SetPageRates(benchmark::State& state, uint64_t n) {
  const double pages = static_cast<double>(state.iterations()) * static_cast<double>(n);
  state.SetItemsProcessed(static_cast<int64_t>(pages));
  state.counters["pages"] = static_cast<double>(n);
  state.counters["pages/s"] = benchmark::Counter(pages, benchmark::Counter::kIsRate);
}

void BM_VmallocPreserve(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  std::string error;
  for (auto _ : state) {
    state.PauseTiming();
    void* area = nullptr;
    struct kho_vmalloc* desc = nullptr;
    if (!PrepareVmalloc(n, /*preserve=*/false, &area, &desc, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.ResumeTiming();
    if (kho_preserve_vmalloc(area, desc) != 0) {
      state.SkipWithError("kho_preserve_vmalloc failed");
      return;
    }
  }
  SetPageRates(state, n);
}

void BM_VmallocRestore(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  std::string error;
  for (auto _ : state) {
    state.PauseTiming();
    void* area = nullptr;
    struct kho_vmalloc* desc = nullptr;
    if (!PrepareVmalloc(n, /*preserve=*/true, &area, &desc, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    if (const absl::Status status = KexecMachine().Kexec(); !status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
    phys_addr_t phys = 0;
    if (kho_retrieve_subtree(kVmallocSubtree, &phys, nullptr) != 0) {
      state.SkipWithError("kernel B cannot find the vmalloc descriptor");
      return;
    }
    const auto* incoming = static_cast<const struct kho_vmalloc*>(phys_to_virt(phys));
    state.ResumeTiming();
    void* restored = kho_restore_vmalloc(incoming);
    if (restored == nullptr) {
      state.SkipWithError("kho_restore_vmalloc returned NULL");
      return;
    }
    benchmark::DoNotOptimize(restored);
  }
  SetPageRates(state, n);
}

void RegisterAll(double min_time) {
  auto row = [&](const std::string& name, auto fn, double wall_seconds, auto... args) {
    return benchmark::RegisterBenchmark(name.c_str(), fn, args...)
        ->Iterations(khosim::bench::SetupBoundIterations(min_time, wall_seconds));
  };
  // The radix rows keep their names from before the bitmap_v1 rows existed.
  for (const kho::KhoProfile profile : {kho::KhoProfile::kV4, kho::KhoProfile::kV1}) {
    const std::string v1 = profile == kho::KhoProfile::kV1 ? "/bitmap_v1" : "";
    // bitmap_v1 iterations also load the image in a cancelled kexec.
    const double load = profile == kho::KhoProfile::kV1 ? 1e-3 : 0;
    row("kexec/baseline/nothing_preserved" + v1, BM_KexecBaseline, 1e-3 + load, profile)
        ->Unit(benchmark::kMillisecond);
    for (int64_t n = 1 << 10; n <= 1 << 18; n *= 4) {
      row("kexec/dense" + v1, BM_KexecRetrieve, 1e-3 + load + 0.3e-6 * n, Layout::kDense, profile)
          ->ArgName("pages")
          ->Arg(n)
          ->Unit(benchmark::kMillisecond);
    }
    // Scattered pages stop at 2^14: each is a memblock region of its own in
    // kernel B, and every memblock_reserve rebuilds the region array, so the
    // retrieve is quadratic in the number of separate blocks (2^16 pages
    // take about 20 s per kexec, 2^18 over 7 minutes; see bench/README.md).
    for (int64_t n = 1 << 10; n <= 1 << 14; n *= 4) {
      row("kexec/scattered" + v1, BM_KexecRetrieve,
          3e-3 + load + 5.5e-9 * static_cast<double>(n * n), Layout::kScattered, profile)
          ->ArgName("pages")
          ->Arg(n)
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (int64_t n : {1 << 12, 1 << 16}) {
    row("restore/order0", BM_RestoreFolio, 1e-3 + 0.3e-6 * n, 0u)
        ->ArgName("blocks")
        ->Arg(n)
        ->Unit(benchmark::kMicrosecond);
  }
  for (int64_t n : {1 << 6, 1 << 9}) {
    row("restore/order9", BM_RestoreFolio, 2e-3 + 25e-6 * n, 9u)
        ->ArgName("blocks")
        ->Arg(n)
        ->Unit(benchmark::kMicrosecond);
  }
  for (int64_t n = 1 << 10; n <= 1 << 16; n *= 4) {
    row("vmalloc/preserve", BM_VmallocPreserve, 1e-3 + 0.5e-6 * n)
        ->ArgName("pages")
        ->Arg(n)
        ->Unit(benchmark::kMicrosecond);
  }
  for (int64_t n = 1 << 10; n <= 1 << 16; n *= 4) {
    row("vmalloc/restore", BM_VmallocRestore, 2e-3 + 1e-6 * n)
        ->ArgName("pages")
        ->Arg(n)
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_machine",
        absl::StrFormat("%d GiB RAM, 1 node, 4 KiB pages, kho=on, %d MiB image",
                        khosim::kRam / khosim::kGiB, khosim::kImageBytes / khosim::kMiB)}},
      [](double min_time) { khosim::RegisterAll(min_time); });
}

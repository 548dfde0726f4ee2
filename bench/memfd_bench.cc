// What preserving guest RAM in a memfd costs with each memfd handler
// profile: "memfd-v2" (the upstream flat folio array) and "memfd-sparse-v1"
// (a KHO xarray of the populated pages, docs/memfd-sparse.md): PRESERVE_FD,
// the unpreserve that closing the session does, and RETRIEVE_FD in kernel
// B, for a fully written memfd and for a sparse one, per GiB of file size,
// with the metadata the handover carries. Row names read
// <operation>/<shape>/MiB:<size>/<implementation>.
//
// Rows (MiB = 64, 256; also 1024 and 4096 with KHOSIM_BENCH_LARGE):
//   populate/<shape>/MiB:N/pwrite
//       Baseline: writing the file's data, one 4 KiB pwrite(2) per written
//       page, into a fresh memfd (each page a new folio, zeroed, charged):
//       what building the guest RAM cost, measured in the same run.
//   preserve/<shape>/MiB:N/memfd_v2, .../memfd_sparse
//       LIVEUPDATE_SESSION_PRESERVE_FD of the memfd. memfd-v2 pins every
//       page of the size (allocating the holes), preserves each folio and
//       writes the folio array; the sparse profile pins and preserves the
//       cached folios and stores each in the map. The file is rebuilt and
//       the session closed (untimed) around every iteration.
//   unpreserve/<shape>/MiB:N/<profile>
//       close(2) of the session holding the preserved memfd.
//   retrieve/<shape>/MiB:N/<profile>
//       Kernel B: LIVEUPDATE_SESSION_RETRIEVE_FD (restore the metadata,
//       then restore, charge and insert every folio). Every iteration needs
//       a fresh machine, file, preserve and kexec (untimed).
//   freeze/<shape>/MiB:N/<profile>
//       The reboot hook that serializes LUO for the kexec (every session
//       and file frozen, records written) with the one preserved file:
//       what preservation leaves for the blackout. Fresh machine, file and
//       preserve per iteration (untimed).
// Shapes: dense (every page written), sparse1pct (one page in a hundred).
// hugetlb rows ("hugemfd-v1", docs/hugetlb-luo.md): profile hugemfd_2M or
// hugemfd_1G, shape dense only, sizes 64 and 256 MiB (2M) and 1024 MiB
// (both); the file is fallocated whole from the pool (hugetlbfs has no
// write(2); pool pages are zeroed when allocated), and populate/.../fallocate
// is that baseline.
// Counters: s_per_GiB (time per GiB of file size); preserved_pages (data
// pages handed over) and metadata_B_per_GiB (the handler's record and
// array or map pages, per GiB of size), both measured from the KHO tracker
// after a preserve; written_pages.
//
// Machine: 8 GiB (16 GiB with KHOSIM_BENCH_LARGE), one node, 4 KiB pages,
// "kho=on liveupdate=on"; the hugemfd rows add 600 2 MiB and 2 1 GiB pool
// pages and the hugetlb handler.
#include <fcntl.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_util.h"
#include "benchmark/benchmark.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/memfd.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr uint64_t kPage = 4096;

bool LargeSizes() { return std::getenv("KHOSIM_BENCH_LARGE") != nullptr; }

enum class Shape { kDense, kSparse1Pct };
const char* ShapeName(Shape shape) { return shape == Shape::kDense ? "dense" : "sparse1pct"; }
bool Written(Shape shape, uint64_t page) { return shape == Shape::kDense || page % 100 == 0; }

// One machine, booted, with a "vmm" process; rebuilt when a row needs a
// clean kernel.
enum class Profile { kV2, kSparse, kHugemfd2M, kHugemfd1G };
const char* ProfileName(Profile profile) {
  switch (profile) {
    case Profile::kV2:
      return "memfd_v2";
    case Profile::kSparse:
      return "memfd_sparse";
    case Profile::kHugemfd2M:
      return "hugemfd_2M";
    case Profile::kHugemfd1G:
      return "hugemfd_1G";
  }
  return "";
}
bool Hugetlb(Profile profile) {
  return profile == Profile::kHugemfd2M || profile == Profile::kHugemfd1G;
}

class Host {
 public:
  explicit Host(Profile profile = Profile::kV2) : profile_(profile) {
    MachineConfig config{.ram = (LargeSizes() ? 16 : 8) * kGiB, .seed = 3};
    config.cmdline = "kho=on liveupdate=on";
    if (Hugetlb(profile)) {
      config.cmdline += " hugepagesz=2M hugepages=600 hugepagesz=1G hugepages=2";
    }
    config.build = KernelBuild{{kMemfdModule}};
    if (profile == Profile::kSparse) config.build->modules.push_back(kMemfdSparseModule);
    if (Hugetlb(profile)) config.build->modules.push_back(kHugetlbModule);
    machine_ = std::make_unique<Machine>(config);
    machine_->Boot();
    StartUserspace();
  }
  void StartUserspace() {
    machine_->Activate();
    p_ = &machine_->kernel().vfs().CreateProcess("vmm");
    dev_ = luo::OpenLiveupdate(*p_);
  }
  bool Kexec() {
    if (!machine_->Kexec().ok()) return false;
    StartUserspace();
    return true;
  }
  fs::Process& p() { return *p_; }
  int dev() const { return dev_; }
  Machine& machine() { return *machine_; }
  kho::Kho& kho() { return machine_->kernel().kho(); }

  // Pages the running kernel's KHO tracker holds for the next kernel.
  uint64_t PreservedPages() {
    const kho::RadixGeometry& g = kho().out_tree()->geometry();
    uint64_t pages = 0;
    kho().out_tree()->Walk([&](uint64_t key) {
      PhysAddr pa;
      unsigned order = 0;
      if (kho::DecodeKey(g, key, &pa, &order)) pages += uint64_t{1} << order;
      return 0;
    });
    return pages;
  }

  // A memfd of |bytes| with the pages |shape| says written (a hugetlb one
  // fallocated whole); -errno on error.
  int BuildMemfd(uint64_t bytes, Shape shape) {
    if (Hugetlb(profile_)) return BuildHugeMemfd(profile_, bytes);
    const int fd = fs::MemfdCreate(*p_, "guest-ram", 0);
    if (fd < 0) return fd;
    if (int err = p_->Ftruncate(fd, static_cast<loff_t>(bytes)); err != 0) return err;
    std::vector<uint8_t> page(kPage, 0xa5);
    for (uint64_t i = 0; i < bytes / kPage; ++i) {
      if (!Written(shape, i)) continue;
      page[0] = static_cast<uint8_t>(i);
      if (p_->Pwrite(fd, page.data(), kPage, static_cast<loff_t>(i * kPage)) !=
          static_cast<ssize_t>(kPage)) {
        return -EIO;
      }
    }
    return fd;
  }

  int BuildHugeMemfd(Profile profile, uint64_t bytes) {
    const unsigned int size = profile == Profile::kHugemfd1G ? MFD_HUGE_1GB : MFD_HUGE_2MB;
    const int fd = fs::MemfdCreate(*p_, "guest-ram", MFD_HUGETLB | size);
    if (fd < 0) return fd;
    if (int err = p_->Ftruncate(fd, static_cast<loff_t>(bytes)); err != 0) return err;
    if (int err = p_->Fallocate(fd, 0, 0, static_cast<loff_t>(bytes)); err != 0) return err;
    return fd;
  }

 private:
  Profile profile_;
  std::unique_ptr<Machine> machine_;
  fs::Process* p_ = nullptr;
  int dev_ = -1;
};

uint64_t WrittenPages(uint64_t bytes, Shape shape) {
  uint64_t n = 0;
  for (uint64_t i = 0; i < bytes / kPage; ++i) n += Written(shape, i) ? 1 : 0;
  return n;
}

// What one preservation of the file took: data pages (folios) and the
// handler's metadata pages, measured from the KHO tracker.
struct Preserved {
  uint64_t data_pages = 0;
  uint64_t metadata_pages = 0;
};

void SetCounters(benchmark::State& state, uint64_t bytes, Shape shape, const Preserved* preserved) {
  const double gib = static_cast<double>(bytes) / static_cast<double>(kGiB);
  state.counters["s_per_GiB"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * gib,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["written_pages"] = static_cast<double>(WrittenPages(bytes, shape));
  if (preserved != nullptr) {
    state.counters["preserved_pages"] = static_cast<double>(preserved->data_pages);
    state.counters["metadata_B_per_GiB"] =
        static_cast<double>(preserved->metadata_pages * kPage) / gib;
  }
}

void BM_PopulateHuge(benchmark::State& state, Profile profile, uint64_t bytes) {
  Host host(profile);
  for (auto _ : state) {
    state.PauseTiming();
    const unsigned int size = profile == Profile::kHugemfd1G ? MFD_HUGE_1GB : MFD_HUGE_2MB;
    const int fd = fs::MemfdCreate(host.p(), "guest-ram", MFD_HUGETLB | size);
    if (fd < 0 || host.p().Ftruncate(fd, static_cast<loff_t>(bytes)) != 0) {
      state.SkipWithError("hugetlb memfd setup failed");
      return;
    }
    state.ResumeTiming();
    const int err = host.p().Fallocate(fd, 0, 0, static_cast<loff_t>(bytes));
    state.PauseTiming();
    if (err != 0) {
      state.SkipWithError(absl::StrCat("fallocate failed: ", err).c_str());
      return;
    }
    host.p().Close(fd);
    state.ResumeTiming();
  }
  SetCounters(state, bytes, Shape::kDense, nullptr);
}

void BM_Populate(benchmark::State& state, Shape shape, uint64_t bytes) {
  Host host;
  for (auto _ : state) {
    state.PauseTiming();
    const int fd = fs::MemfdCreate(host.p(), "guest-ram", 0);
    if (fd < 0 || host.p().Ftruncate(fd, static_cast<loff_t>(bytes)) != 0) {
      state.SkipWithError("memfd setup failed");
      return;
    }
    std::vector<uint8_t> page(kPage, 0xa5);
    state.ResumeTiming();
    for (uint64_t i = 0; i < bytes / kPage; ++i) {
      if (!Written(shape, i)) continue;
      benchmark::DoNotOptimize(
          host.p().Pwrite(fd, page.data(), kPage, static_cast<loff_t>(i * kPage)));
    }
    state.PauseTiming();
    host.p().Close(fd);
    state.ResumeTiming();
  }
  SetCounters(state, bytes, shape, nullptr);
}

// preserve and unpreserve rebuild the file before every iteration
// (untimed): memfd-v2 fills a sparse file's holes for good.
void BM_PreserveOrUnpreserve(benchmark::State& state, Profile profile, Shape shape, uint64_t bytes,
                             bool time_unpreserve) {
  Host host(profile);
  Preserved preserved;
  for (auto _ : state) {
    state.PauseTiming();
    const int fd = host.BuildMemfd(bytes, shape);
    const int s = luo::CreateSession(host.p(), host.dev(), "vm0");
    if (fd < 0 || s < 0) {
      state.SkipWithError("memfd or session setup failed");
      return;
    }
    const uint64_t before = host.PreservedPages();
    if (!time_unpreserve) state.ResumeTiming();
    const int err = luo::PreserveFd(host.p(), s, fd, 1);
    if (!time_unpreserve) state.PauseTiming();
    if (err != 0) {
      state.SkipWithError(absl::StrCat("PRESERVE_FD failed: ", err).c_str());
      return;
    }
    // Less the folios and LUO's own file block for the session.
    preserved.data_pages = fs::ShmemInode::FromFile(host.p().PeekFile(fd))->CachedPages();
    preserved.metadata_pages = host.PreservedPages() - before - preserved.data_pages - 1;
    if (time_unpreserve) state.ResumeTiming();
    host.p().Close(s);
    if (time_unpreserve) state.PauseTiming();
    host.p().Close(fd);
    state.ResumeTiming();
  }
  SetCounters(state, bytes, shape, &preserved);
}

void BM_Retrieve(benchmark::State& state, Profile profile, Shape shape, uint64_t bytes) {
  for (auto _ : state) {
    state.PauseTiming();
    auto host = std::make_unique<Host>(profile);
    const int fd = host->BuildMemfd(bytes, shape);
    const int s = luo::CreateSession(host->p(), host->dev(), "vm0");
    if (fd < 0 || luo::PreserveFd(host->p(), s, fd, 1) != 0 || !host->Kexec()) {
      state.SkipWithError("preserve or kexec failed");
      return;
    }
    const int r = luo::RetrieveSession(host->p(), host->dev(), "vm0");
    state.ResumeTiming();
    const int got = luo::RetrieveFd(host->p(), r, 1);
    state.PauseTiming();
    if (got < 0) {
      state.SkipWithError(absl::StrCat("RETRIEVE_FD failed: ", got).c_str());
      return;
    }
    host.reset();
    state.ResumeTiming();
  }
  SetCounters(state, bytes, shape, nullptr);
}

void BM_Freeze(benchmark::State& state, Profile profile, Shape shape, uint64_t bytes) {
  for (auto _ : state) {
    state.PauseTiming();
    auto host = std::make_unique<Host>(profile);
    const int fd = host->BuildMemfd(bytes, shape);
    const int s = luo::CreateSession(host->p(), host->dev(), "vm0");
    if (fd < 0 || luo::PreserveFd(host->p(), s, fd, 1) != 0) {
      state.SkipWithError("preserve failed");
      return;
    }
    Kernel& kernel = host->machine().kernel();
    ScopedKernelContext scope(&kernel.ctx());
    state.ResumeTiming();
    const int err = kernel.RunRebootHooks(RebootInfo{});
    state.PauseTiming();
    if (err != 0) {
      state.SkipWithError(absl::StrCat("reboot hooks failed: ", err).c_str());
      return;
    }
    host.reset();
    state.ResumeTiming();
  }
  SetCounters(state, bytes, shape, nullptr);
}

void RegisterHugetlb(double min_time) {
  struct Row {
    Profile profile;
    uint64_t mib;
  };
  std::vector<Row> rows = {{Profile::kHugemfd2M, 64},
                           {Profile::kHugemfd2M, 256},
                           {Profile::kHugemfd2M, 1024},
                           {Profile::kHugemfd1G, 1024}};
  for (const Row& row : rows) {
    const uint64_t bytes = row.mib * kMiB;
    const std::string impl = ProfileName(row.profile);
    const std::string suffix = absl::StrFormat("dense/MiB:%d", row.mib);
    benchmark::RegisterBenchmark(absl::StrCat("populate/", suffix, "/", impl, "_fallocate").c_str(),
                                 BM_PopulateHuge, row.profile, bytes)
        ->Unit(benchmark::kMillisecond);
    // Booting a host with its pools dominates the untimed setup.
    const double build = 0.05 + static_cast<double>(bytes / kPage) * 2e-8;
    for (bool unpreserve : {false, true}) {
      benchmark::RegisterBenchmark(
          absl::StrCat(unpreserve ? "unpreserve/" : "preserve/", suffix, "/", impl).c_str(),
          BM_PreserveOrUnpreserve, row.profile, Shape::kDense, bytes, unpreserve)
          ->Iterations(bench::SetupBoundIterations(min_time, build))
          ->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark(absl::StrCat("freeze/", suffix, "/", impl).c_str(), BM_Freeze,
                                 row.profile, Shape::kDense, bytes)
        ->Iterations(bench::SetupBoundIterations(min_time, 0.3 + build))
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(absl::StrCat("retrieve/", suffix, "/", impl).c_str(), BM_Retrieve,
                                 row.profile, Shape::kDense, bytes)
        ->Iterations(bench::SetupBoundIterations(min_time, 0.3 + build))
        ->Unit(benchmark::kMillisecond);
  }
}

void RegisterAll(double min_time) {
  std::vector<uint64_t> mib = {64, 256};
  if (LargeSizes()) {
    mib.push_back(1024);
    mib.push_back(4096);
  }
  for (Shape shape : {Shape::kDense, Shape::kSparse1Pct}) {
    for (uint64_t m : mib) {
      const uint64_t bytes = m * kMiB;
      const std::string suffix = absl::StrFormat("%s/MiB:%d", ShapeName(shape), m);
      benchmark::RegisterBenchmark(absl::StrCat("populate/", suffix, "/pwrite").c_str(),
                                   BM_Populate, shape, bytes)
          ->Unit(benchmark::kMillisecond);
      // Every iteration builds the file (about 4 us per written page),
      // preserves it (about 1 us per page of size) and, for retrieve, kexecs.
      const double build = static_cast<double>(bytes / kPage) * 1e-6 +
                           static_cast<double>(WrittenPages(bytes, shape)) * 4e-6;
      for (Profile profile : {Profile::kV2, Profile::kSparse}) {
        const std::string impl = ProfileName(profile);
        for (bool unpreserve : {false, true}) {
          benchmark::RegisterBenchmark(
              absl::StrCat(unpreserve ? "unpreserve/" : "preserve/", suffix, "/", impl).c_str(),
              BM_PreserveOrUnpreserve, profile, shape, bytes, unpreserve)
              ->Iterations(bench::SetupBoundIterations(min_time, build))
              ->Unit(benchmark::kMillisecond);
        }
        const double wall = 0.3 + build;
        benchmark::RegisterBenchmark(absl::StrCat("freeze/", suffix, "/", impl).c_str(), BM_Freeze,
                                     profile, shape, bytes)
            ->Iterations(bench::SetupBoundIterations(min_time, wall))
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(absl::StrCat("retrieve/", suffix, "/", impl).c_str(),
                                     BM_Retrieve, profile, shape, bytes)
            ->Iterations(bench::SetupBoundIterations(min_time, wall))
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  RegisterHugetlb(min_time);
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_machine", absl::StrFormat("%d GiB RAM, 1 node, 4 KiB pages, kho=on liveupdate=on",
                                          khosim::LargeSizes() ? 16 : 8)}},
      [](double min_time) { khosim::RegisterAll(min_time); });
}

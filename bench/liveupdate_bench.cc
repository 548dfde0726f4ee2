// A whole live update of a reference host, phase by phase: what each step
// of the update costs in time and in counted work, so that a reviewer can
// see where the blackout goes and what scales with what.
//
// Reference host (one row per KHO profile that can host LUO: kho-v4 and
// kho-range-v1, selected with khosim.kho_profile=):
//   64 GiB, one node, 4 KiB pages, kho=on liveupdate=on, pools of eight
//   1 GiB pages and 2048 2 MiB pages; handlers memfd-v2 and hugemfd-v1.
//   8 VMs, each a LUO session "vm<i>" holding
//     - guest RAM in hugetlb: 2 GiB of 1 GiB pages (vm0..3) or 1 GiB of
//       2 MiB pages (vm4..7), one 64-byte record written per 4 KiB page
//       in every 256th page, and
//     - 256 MiB of memfd RAM (device memory, ROM, ...) with one page in 64
//       written (memfd-v2 fills the rest at preserve);
//   300 service sessions "svc<i>" (the systemd fd-store pattern), each one
//   16 KiB memfd of state.
//   With KHOSIM_BENCH_LARGE: 32 VMs and 1000 service sessions on 256 GiB.
//
// One iteration = build the host (untimed), then the update:
//   preserve_s          every PRESERVE_FD (VMs still running)
//   load_s              kexec_file_load: KHO's handover preparation
//   freeze_s            kernel A's reboot hooks: LUO freezes every file and
//                       serializes sessions and FLBs
//   teardown_s          kernel A's objects destroyed, image copied
//   b_scratch_only_s    kernel B from kho_populate to memblock_free_all:
//                       the phase that may only allocate from scratch
//   b_tracker_retrieve_s  of which kho_memory_init: walking the tracker and
//                       reserving every preserved block
//   b_hugetlb_early_s   of which the hugetlb FLB's early read
//   b_initcalls_s       kernel B's initcalls (LUO early/late startup, the
//                       handlers' registration, KHO's init)
//   luo_deserialize_s   the first open of /dev/liveupdate in kernel B
//   retrieve_memfd_s, retrieve_hugemfd_s   every RETRIEVE_FD, by handler
//   finish_s            every SESSION_FINISH
//   blackout_s          freeze_s through the last retrieve: the time the
//                       VMs cannot run. The row's time is this (manual
//                       time), so the JSON's real_time is the blackout.
// Counted work: sessions, files, preserved_blocks and preserved_pages and
// tracker_pages (kernel A's tracker after every preserve), migrated_bytes
// (folios copied out of scratch for long-term pins), retrieved_blocks and
// tracker_nodes_visited (kernel B's walk), restored_file_pages (pages in
// the retrieved files), unrestored_blocks_after_finish (must be 1: the
// previous root FDT).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_util.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/memfd.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr uint64_t kPage = 4096;

bool Large() { return std::getenv("KHOSIM_BENCH_LARGE") != nullptr; }

struct HostShape {
  int vms = 8;
  int services = 300;
  uint64_t ram = 64 * kGiB;
};

HostShape Shape() {
  if (Large()) return HostShape{.vms = 32, .services = 1000, .ram = 256 * kGiB};
  return HostShape{};
}

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Counter name -> seconds (names ending in _s) or a count.
using Phases = std::map<std::string, double>;

double Blackout(const Phases& p) {
  double sum = 0;
  for (const char* phase : {"freeze_s", "teardown_s", "b_scratch_only_s", "b_initcalls_s",
                            "luo_deserialize_s", "retrieve_memfd_s", "retrieve_hugemfd_s"}) {
    auto it = p.find(phase);
    if (it != p.end()) sum += it->second;
  }
  return sum;
}

class ReferenceHost {
 public:
  explicit ReferenceHost(const std::string& extra_cmdline) {
    const HostShape shape = Shape();
    MachineConfig config{.ram = shape.ram, .seed = 17};
    config.cmdline = absl::StrFormat(
        "kho=on liveupdate=on hugepagesz=1G hugepages=%d hugepagesz=2M hugepages=%d %s", shape.vms,
        shape.vms * 256, extra_cmdline);
    config.build = KernelBuild{{kMemfdModule, kHugetlbModule}};
    machine_ = std::make_unique<Machine>(config);
    machine_->Boot();
    StartUserspace();
  }

  Machine& m() { return *machine_; }
  fs::Process& vmm() { return *vmm_; }
  int dev() const { return dev_; }

  void StartUserspace() {
    machine_->Activate();
    vmm_ = &machine_->kernel().vfs().CreateProcess("vmm");
    vmm_->SetRlimitNofile(1 << 20);
    dev_ = -1;
  }
  void OpenDevice() { dev_ = luo::OpenLiveupdate(*vmm_); }

  // Builds every VM's and service's files and preserves them; returns the
  // PRESERVE_FD time, or a negative errno.
  double BuildAndPreserve(int* err) {
    const HostShape shape = Shape();
    OpenDevice();
    double preserve = 0;
    for (int vm = 0; vm < shape.vms && *err == 0; ++vm) {
      const int s = luo::CreateSession(*vmm_, dev_, absl::StrCat("vm", vm));
      const bool gigantic = vm < shape.vms / 2;
      const int ram = HugeMemfd(gigantic ? 2 * kGiB : kGiB, gigantic);
      const int dev_mem = Memfd(256 * kMiB, 64);
      if (s < 0 || ram < 0 || dev_mem < 0) {
        *err = -EIO;
        break;
      }
      const auto start = Clock::now();
      *err = luo::PreserveFd(*vmm_, s, ram, 1);
      if (*err == 0) *err = luo::PreserveFd(*vmm_, s, dev_mem, 2);
      preserve += Since(start);
    }
    for (int svc = 0; svc < shape.services && *err == 0; ++svc) {
      const int s = luo::CreateSession(*vmm_, dev_, absl::StrCat("svc", svc));
      const int state = Memfd(4 * kPage, 1);
      if (s < 0 || state < 0) {
        *err = -EIO;
        break;
      }
      const auto start = Clock::now();
      *err = luo::PreserveFd(*vmm_, s, state, 1);
      preserve += Since(start);
    }
    return preserve;
  }

 private:
  int HugeMemfd(uint64_t bytes, bool gigantic) {
    const int fd =
        fs::MemfdCreate(*vmm_, "guest-ram", MFD_HUGETLB | (gigantic ? MFD_HUGE_1GB : MFD_HUGE_2MB));
    if (fd < 0 || vmm_->Ftruncate(fd, static_cast<loff_t>(bytes)) != 0) return -EIO;
    std::unique_ptr<fs::ShmemMapping> map;
    if (fs::ShmemMmap(*vmm_, fd, bytes, /*writable=*/true, &map) != 0) return -EIO;
    for (uint64_t page = 0; page < bytes / kPage; page += 256) {
      void* addr = nullptr;
      if (map->Fault(page, /*write=*/true, &addr) != 0) return -EIO;
      std::memset(addr, static_cast<int>(page & 0xff), 64);
    }
    return fd;
  }

  int Memfd(uint64_t bytes, uint64_t stride) {
    const int fd = fs::MemfdCreate(*vmm_, "state", 0);
    if (fd < 0 || vmm_->Ftruncate(fd, static_cast<loff_t>(bytes)) != 0) return -EIO;
    std::vector<uint8_t> page(kPage, 0x5a);
    for (uint64_t i = 0; i < bytes / kPage; i += stride) {
      if (vmm_->Pwrite(fd, page.data(), kPage, static_cast<loff_t>(i * kPage)) !=
          static_cast<ssize_t>(kPage)) {
        return -EIO;
      }
    }
    return fd;
  }

  std::unique_ptr<Machine> machine_;
  fs::Process* vmm_ = nullptr;
  int dev_ = -1;
};

// Kernel A's tracker: blocks, pages and metadata pages (radix nodes, or the
// range chain a serialization builds now: an untimed Kho::Finalize(), which
// the kexec load repeats anyway).
void CountTracker(kho::Kho& kho, Phases* p) {
  if (kho.tracker()->serializes()) (void)kho.Finalize();
  uint64_t blocks = 0;
  uint64_t pages = 0;
  kho.tracker()->ForEachBlock(
      [&](PhysAddr, unsigned order) {
        ++blocks;
        pages += uint64_t{1} << order;
        return 0;
      },
      nullptr);
  (*p)["preserved_blocks"] = static_cast<double>(blocks);
  (*p)["preserved_pages"] = static_cast<double>(pages);
  (*p)["tracker_pages"] = static_cast<double>(kho.tracker()->Stats().metadata_pages);
}

// One whole update; false (and the error in |error|) on failure.
bool RunUpdate(const std::string& cmdline, Phases* p, std::string* error) {
  const HostShape shape = Shape();
  ReferenceHost host(cmdline);
  int err = 0;
  (*p)["preserve_s"] = host.BuildAndPreserve(&err);
  if (err != 0) {
    *error = absl::StrCat("build or PRESERVE_FD failed: ", err);
    return false;
  }
  (*p)["sessions"] = shape.vms + shape.services;
  (*p)["files"] = 2 * shape.vms + shape.services;
  CountTracker(host.m().kernel().kho(), p);
  (*p)["migrated_bytes"] = static_cast<double>(fs::ShmemSb::Current()->MigratedBytes());

  host.m().trace().Clear();
  if (absl::Status s = host.m().Kexec(); !s.ok()) {
    *error = std::string(s.message());
    return false;
  }
  const KexecTimes& t = host.m().last_kexec_times();
  (*p)["load_s"] = t.load_s;
  (*p)["freeze_s"] = t.reboot_hooks_s;
  (*p)["teardown_s"] = t.teardown_s;
  bool scratch_only = false;
  for (const BootStepTime& step : host.m().kernel().boot_steps()) {
    if (step.name == "kho_populate") scratch_only = true;
    if (scratch_only) (*p)["b_scratch_only_s"] += step.seconds;
    if (step.name == "memblock_free_all") scratch_only = false;
    if (step.name == "kho_memory_init") (*p)["b_tracker_retrieve_s"] = step.seconds;
    if (step.name == "hugetlb_luo_early") (*p)["b_hugetlb_early_s"] = step.seconds;
    if (step.name.rfind("initcall:", 0) == 0) (*p)["b_initcalls_s"] += step.seconds;
  }
  (*p)["retrieved_blocks"] = static_cast<double>(host.m().kernel().kho().retrieved_blocks());
  (*p)["tracker_nodes_visited"] = bench::RetrieveWalkNodes(host.m());

  host.StartUserspace();
  auto start = Clock::now();
  host.OpenDevice();
  (*p)["luo_deserialize_s"] = Since(start);
  if (host.dev() < 0) {
    *error = absl::StrCat("open /dev/liveupdate failed: ", host.dev());
    return false;
  }
  std::vector<int> sessions;
  for (int vm = 0; vm < shape.vms; ++vm) {
    const int r = luo::RetrieveSession(host.vmm(), host.dev(), absl::StrCat("vm", vm));
    start = Clock::now();
    const int ram = luo::RetrieveFd(host.vmm(), r, 1);
    (*p)["retrieve_hugemfd_s"] += Since(start);
    start = Clock::now();
    const int dev_mem = luo::RetrieveFd(host.vmm(), r, 2);
    (*p)["retrieve_memfd_s"] += Since(start);
    if (r < 0 || ram < 0 || dev_mem < 0) {
      *error = absl::StrCat("retrieve of vm", vm, " failed: ", r, " ", ram, " ", dev_mem);
      return false;
    }
    sessions.push_back(r);
  }
  for (int svc = 0; svc < shape.services; ++svc) {
    const int r = luo::RetrieveSession(host.vmm(), host.dev(), absl::StrCat("svc", svc));
    start = Clock::now();
    const int state = luo::RetrieveFd(host.vmm(), r, 1);
    (*p)["retrieve_memfd_s"] += Since(start);
    if (r < 0 || state < 0) {
      *error = absl::StrCat("retrieve of svc", svc, " failed");
      return false;
    }
    sessions.push_back(r);
  }
  (*p)["restored_file_pages"] = static_cast<double>(fs::ShmemSb::Current()->CachedPages());
  start = Clock::now();
  for (int r : sessions) {
    if (int e = luo::FinishSession(host.vmm(), r); e != 0) {
      *error = absl::StrCat("SESSION_FINISH failed: ", e);
      return false;
    }
  }
  (*p)["finish_s"] = Since(start);
  (*p)["unrestored_blocks_after_finish"] =
      static_cast<double>(host.m().kernel().kho().UnrestoredBlocks());
  return true;
}

void BM_LiveUpdate(benchmark::State& state, std::string cmdline) {
  Phases total;
  for (auto _ : state) {
    Phases p;
    std::string error;
    if (!RunUpdate(cmdline, &p, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    p["blackout_s"] = Blackout(p);
    state.SetIterationTime(p["blackout_s"]);
    for (const auto& [name, value] : p) total[name] += value;
  }
  for (const auto& [name, value] : total) {
    state.counters[name] = benchmark::Counter(value, benchmark::Counter::kAvgIterations);
  }
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  const khosim::HostShape shape = khosim::Shape();
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_reference_host",
        absl::StrFormat("%d GiB, %d VMs (hugetlb + memfd RAM), %d service sessions",
                        shape.ram / khosim::kGiB, shape.vms, shape.services)}},
      [](double min_time) {
        // Each iteration builds and updates a whole host (about a second).
        // kho-v1 cannot host LUO (no blob-size subtrees), so it has no row.
        for (const char* profile : {"kho-v4", "kho-range-v1"}) {
          benchmark::RegisterBenchmark(absl::StrCat("liveupdate/reference_host/", profile).c_str(),
                                       khosim::BM_LiveUpdate,
                                       absl::StrCat("khosim.kho_profile=", profile))
              ->UseManualTime()
              ->Iterations(khosim::bench::SetupBoundIterations(min_time, 1.0))
              ->Unit(benchmark::kMillisecond);
        }
      });
}

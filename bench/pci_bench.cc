// What PCI preservation costs against the number of PCI functions: the
// outgoing kernel's pci_liveupdate_preserve of every endpoint, and the
// incoming kernel's enumeration (pci_subsys_init) with nothing preserved
// and with everything preserved. Each row stands next to a limit measured
// in the same run on the same machine:
//   - preserve: appending one 8-byte entry per device to a KHO block set,
//     which is all the record needs;
//   - enumeration: the config-space reads the core made, each timed as a
//     bare hardware read (the simulated bus itself).
//
// The machine: N functions (N = 2, 16, 256, 2048, 10^4 rounded to whole
// root ports) as root ports with one endpoint each, 128 ports per segment,
// segments numbered from 0; 512 MiB of RAM, kho=on liveupdate=on, the
// pci-passthrough driver built in. Rows:
//   preserve/functions:N/pci          per endpoint, all endpoints in turn
//                                     (one passthrough file keeps the FLB
//                                     alive; its path is preserved first)
//   preserve/functions:N/block_append per entry, N/2 entries appended
//   enumerate/functions:N/cold        pci_subsys_init of a kernel B with
//                                     nothing preserved, per function
//   enumerate/functions:N/incoming    the same with every endpoint preserved
//                                     (FLB retrieve + lookup per device)
//   enumerate/functions:N/config_reads  the reads alone, per function
#include <fcntl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_util.h"
#include "benchmark/benchmark.h"
#include "khosim/drivers/pci.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/kho_block.h"
#include "khosim/linux/pci_liveupdate.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr int kPortsPerSegment = 128;  // 16 slots x 8 functions

// |functions| / 2 root ports, each above one endpoint.
hw::PciTopology Topology(int functions) {
  hw::PciTopology t;
  const int ports = std::max(1, functions / 2);
  for (int p = 0; p < ports; ++p) {
    if (p % kPortsPerSegment == 0) {
      t.segments.push_back(hw::PciSegmentSpec{.domain = static_cast<uint16_t>(t.segments.size())});
    }
    const int i = p % kPortsPerSegment;
    hw::PciFunctionSpec port =
        hw::PciRootPort(absl::StrCat("rp", p), static_cast<uint8_t>(i / 8), {});
    port.function = static_cast<uint8_t>(i % 8);
    port.children.push_back(hw::PciEndpoint(absl::StrCat("ep", p)));
    t.segments.back().functions.push_back(std::move(port));
  }
  return t;
}

MachineConfig Config(int functions) {
  MachineConfig config{.ram = 512 * kMiB, .seed = 9};
  config.cmdline = "kho=on liveupdate=on";
  config.build = KernelBuild{{kMemfdModule, kPciPassthroughModule}};
  config.pci = Topology(functions);
  return config;
}

// A booted machine whose first endpoint is preserved through a passthrough
// file (so the FLB "pci" exists); the session stays open.
std::unique_ptr<Machine> WithFlb(int functions) {
  auto m = std::make_unique<Machine>(Config(functions));
  m->Boot();
  drivers::PciCore& core = *m->kernel().pci();
  struct pci_dev* first = core.FindFunction(*m->pci().Find("ep0"));
  core.SetDriverOverride(first, PCI_PASSTHROUGH_DRIVER_NAME);
  if (core.Bind(first) != 0) std::abort();
  fs::Process& p = m->kernel().vfs().CreateProcess("vmm");
  const int dev = luo::OpenLiveupdate(p);
  const int s = luo::CreateSession(p, dev, "vm0");
  const int fd =
      p.Open(absl::StrCat("/dev/" PCI_PASSTHROUGH_DRIVER_NAME "/", pci_name(first)), O_RDWR);
  if (luo::PreserveFd(p, s, fd, 1) != 0) std::abort();
  return m;
}

std::vector<struct pci_dev*> Endpoints(Machine& m) {
  std::vector<struct pci_dev*> out;
  for (struct pci_dev* dev : m.kernel().pci()->devices()) {
    if (!pci_is_bridge(dev)) out.push_back(dev);
  }
  return out;
}

void BM_Preserve(benchmark::State& state) {
  const int functions = static_cast<int>(state.range(0));
  double devices = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::unique_ptr<Machine> m = WithFlb(functions);
    std::vector<struct pci_dev*> eps = Endpoints(*m);
    state.ResumeTiming();
    for (size_t i = 1; i < eps.size(); ++i) {
      if (pci_liveupdate_preserve(eps[i]) != 0) std::abort();
    }
    state.PauseTiming();
    devices += static_cast<double>(eps.size() - 1);
    m.reset();
    state.ResumeTiming();
  }
  state.counters["per_device"] =
      benchmark::Counter(devices, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_BlockAppend(benchmark::State& state) {
  const int functions = static_cast<int>(state.range(0));
  double entries = 0;
  Machine m(Config(2));
  m.Boot();
  const u64 n = std::max(1, functions / 2);
  for (auto _ : state) {
    struct kho_block_set set;
    kho_block_set_init(&set, 8);
    struct kho_block_set_it it;
    for (u64 i = 0; i < n; ++i) {
      if (kho_block_set_grow(&set, i + 1) != 0) std::abort();
      if (i == 0) kho_block_set_it_init(&it, &set);
      auto* e = static_cast<uint64_t*>(kho_block_set_it_reserve_entry(&it));
      *e = i;
    }
    state.PauseTiming();
    kho_block_set_destroy(&set);
    entries += static_cast<double>(n);
    state.ResumeTiming();
  }
  state.counters["per_device"] =
      benchmark::Counter(entries, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Kernel B's pci_subsys_init, from its boot steps.
double EnumerationSeconds(Machine& m) {
  for (const BootStepTime& step : m.kernel().boot_steps()) {
    if (step.name == "initcall:pci_subsys_init") return step.seconds;
  }
  std::abort();
}

void BM_Enumerate(benchmark::State& state, bool preserve_all) {
  const int functions = static_cast<int>(state.range(0));
  double total = 0;
  double reads = 0;
  double enumerated = 0;
  for (auto _ : state) {
    std::unique_ptr<Machine> m = WithFlb(functions);
    if (preserve_all) {
      std::vector<struct pci_dev*> eps = Endpoints(*m);
      for (size_t i = 1; i < eps.size(); ++i) {
        if (pci_liveupdate_preserve(eps[i]) != 0) std::abort();
      }
    }
    const uint64_t before = m->pci().config_reads();
    if (!m->Kexec().ok()) std::abort();
    const double seconds = EnumerationSeconds(*m);
    state.SetIterationTime(seconds);
    total += seconds;
    // Reads of B's enumeration: everything B read, less what the rest of
    // its boot read (nothing else reads config space).
    reads += static_cast<double>(m->pci().config_reads() - before);
    enumerated += static_cast<double>(m->kernel().pci()->devices().size());
    if (preserve_all && !m->kernel().pci()->devices().back()->liveupdate.was_incoming) std::abort();
  }
  state.counters["per_function"] =
      benchmark::Counter(enumerated, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["config_reads_per_function"] = reads / enumerated;
}

// The bare hardware reads an enumeration of this machine makes.
void BM_ConfigReads(benchmark::State& state) {
  const int functions = static_cast<int>(state.range(0));
  Machine m(Config(functions));
  m.Boot();
  hw::PciHardware& hw = m.pci();
  const uint64_t before = hw.config_reads();
  if (!m.Kexec().ok()) std::abort();
  const uint64_t reads = hw.config_reads() - before;
  std::vector<const struct pci_dev*> devs(m.kernel().pci()->devices().begin(),
                                          m.kernel().pci()->devices().end());
  double enumerated = 0;
  for (auto _ : state) {
    uint64_t sink = 0;
    for (uint64_t r = 0; r < reads; ++r) {
      const struct pci_dev* d = devs[r % devs.size()];
      sink += hw.ConfigRead(static_cast<uint16_t>(d->bus->domain_nr), d->bus->number,
                            static_cast<uint8_t>(d->devfn), PCI_VENDOR_ID, 4);
    }
    benchmark::DoNotOptimize(sink);
    enumerated += static_cast<double>(devs.size());
  }
  state.counters["per_function"] =
      benchmark::Counter(enumerated, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void RegisterAll(double min_time) {
  const std::vector<int64_t> sizes = {2, 16, 256, 2048, 10000};
  for (int64_t n : sizes) {
    const int64_t iterations = n >= 2048 ? 2 : 10;
    benchmark::RegisterBenchmark(absl::StrFormat("preserve/functions:%d/pci", n).c_str(),
                                 BM_Preserve)
        ->Arg(n)
        ->Iterations(iterations)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(absl::StrFormat("preserve/functions:%d/block_append", n).c_str(),
                                 BM_BlockAppend)
        ->Arg(n)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(min_time);
    for (bool all : {false, true}) {
      benchmark::RegisterBenchmark(
          absl::StrFormat("enumerate/functions:%d/%s", n, all ? "incoming" : "cold").c_str(),
          [all](benchmark::State& s) { BM_Enumerate(s, all); })
          ->Arg(n)
          ->Iterations(iterations)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark(absl::StrFormat("enumerate/functions:%d/config_reads", n).c_str(),
                                 BM_ConfigReads)
        ->Arg(n)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(min_time);
  }
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_machine",
        "512 MiB RAM, 4 KiB pages, kho=on liveupdate=on, root ports with one endpoint each"}},
      [](double min_time) { khosim::RegisterAll(min_time); });
}

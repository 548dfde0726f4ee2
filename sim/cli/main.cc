// khosim: run a built-in scenario on a simulated machine and report what
// happened. With no arguments it runs the default scenario.
//
//   khosim [--scenario=kexec-scrub] [--ram=4G] [--nodes=2] [--page_size=4096]
//          [--seed=1] [--kexecs=2] [--cmdline="..."] [--trace_json=FILE] [--dmesg]
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "khosim/base/panic.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

ABSL_FLAG(std::string, scenario, "kexec-scrub", "scenario to run (kexec-scrub, boot)");
ABSL_FLAG(std::string, ram, "4G", "simulated RAM (K/M/G/T suffixes)");
ABSL_FLAG(int, nodes, 2, "NUMA nodes");
ABSL_FLAG(uint64_t, page_size, 4096, "page size: 4096, 16384 or 65536");
ABSL_FLAG(uint64_t, seed, 1, "seed of the machine's random generator");
ABSL_FLAG(int, kexecs, 2, "number of kexecs after the cold boot");
ABSL_FLAG(std::string, cmdline, "", "kernel command line");
ABSL_FLAG(std::string, trace_json, "", "write the event trace as JSON to this file");
ABSL_FLAG(bool, dmesg, false, "print each kernel's log");

namespace {

bool ParseSize(const std::string& text, uint64_t* out) {
  if (text.empty()) return false;
  uint64_t mult = 1;
  std::string digits = text;
  switch (text.back()) {
    case 'K':
    case 'k':
      mult = khosim::kKiB;
      break;
    case 'M':
    case 'm':
      mult = khosim::kMiB;
      break;
    case 'G':
    case 'g':
      mult = khosim::kGiB;
      break;
    case 'T':
    case 't':
      mult = khosim::kTiB;
      break;
    default:
      break;
  }
  if (mult != 1) digits.pop_back();
  uint64_t value = 0;
  if (!absl::SimpleAtoi(digits, &value)) return false;
  *out = value * mult;
  return true;
}

void PrintKernel(khosim::Machine& m) {
  khosim::Kernel& k = m.kernel();
  std::printf("  generation %llu  phase %s  free %llu MiB  managed %llu MiB  warns %llu\n",
              static_cast<unsigned long long>(k.generation()),
              std::string(khosim::BootPhaseName(k.phase())).c_str(),
              static_cast<unsigned long long>(k.mm().pages().FreePages() *
                                              k.ctx().geometry().page_size() / khosim::kMiB),
              static_cast<unsigned long long>(k.mm().pages().ManagedPages() *
                                              k.ctx().geometry().page_size() / khosim::kMiB),
              static_cast<unsigned long long>(k.WarnCount()));
  if (absl::GetFlag(FLAGS_dmesg)) {
    for (const std::string& line : k.ctx().LogLines()) std::printf("    | %s\n", line.c_str());
  }
}

// Boot, write a pattern into freshly allocated folios, kexec, and show that
// the next kernel reads none of it back: with nothing preserved, every byte
// of the previous boot is scrubbed.
int RunKexecScrub(khosim::Machine& m, int kexecs) {
  m.Boot();
  std::printf("cold boot\n");
  PrintKernel(m);
  for (int round = 0; round < kexecs; ++round) {
    std::vector<phys_addr_t> written;
    for (int i = 0; i < 64; ++i) {
      struct folio* f = folio_alloc(GFP_KERNEL, static_cast<unsigned>(m.RandomBelow(4)));
      if (f == nullptr) return 1;
      std::memset(folio_address(f), 0x5a, folio_size(f));
      written.push_back(folio_phys(f));
    }
    absl::Status s = m.Kexec();
    if (!s.ok()) {
      std::printf("kexec failed: %s\n", s.ToString().c_str());
      return 1;
    }
    uint64_t survived = 0;
    for (phys_addr_t pa : written) {
      const auto* p = static_cast<const uint8_t*>(phys_to_virt(pa));
      for (uint64_t i = 0; i < PAGE_SIZE; ++i) survived += p[i] == 0x5a;
    }
    std::printf("kexec %d: %zu folios written in the previous boot, %llu bytes survived\n",
                round + 1, written.size(), static_cast<unsigned long long>(survived));
    PrintKernel(m);
    if (survived != 0) return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Runs a khosim scenario on a simulated machine.");
  absl::ParseCommandLine(argc, argv);
  khosim::MachineConfig config;
  if (!ParseSize(absl::GetFlag(FLAGS_ram), &config.ram)) {
    std::fprintf(stderr, "bad --ram\n");
    return 2;
  }
  config.nodes = absl::GetFlag(FLAGS_nodes);
  config.page_size = absl::GetFlag(FLAGS_page_size);
  config.seed = absl::GetFlag(FLAGS_seed);
  config.cmdline = absl::GetFlag(FLAGS_cmdline);
  auto machine = khosim::Machine::Create(config);
  if (!machine.ok()) {
    std::fprintf(stderr, "%s\n", machine.status().ToString().c_str());
    return 2;
  }
  khosim::Machine& m = **machine;
  std::printf("khosim: %s RAM, %d node(s), %llu-byte pages, seed %llu\n",
              absl::GetFlag(FLAGS_ram).c_str(), config.nodes,
              static_cast<unsigned long long>(config.page_size),
              static_cast<unsigned long long>(config.seed));
  int rc = 0;
  try {
    const std::string scenario = absl::GetFlag(FLAGS_scenario);
    if (scenario == "boot") {
      m.Boot();
      PrintKernel(m);
    } else if (scenario == "kexec-scrub") {
      rc = RunKexecScrub(m, absl::GetFlag(FLAGS_kexecs));
    } else {
      std::fprintf(stderr, "unknown scenario %s\n", scenario.c_str());
      return 2;
    }
  } catch (const khosim::KernelPanic& panic) {
    std::printf("Kernel panic at %s: %s\n", panic.site().c_str(), panic.what());
    rc = 1;
  }
  if (!absl::GetFlag(FLAGS_trace_json).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_trace_json)) << m.trace().ToJson() << "\n";
  }
  std::printf("host memory: %llu KiB of simulated DRAM resident, %zu trace events\n",
              static_cast<unsigned long long>(m.memory().ResidentBytes() / khosim::kKiB),
              m.trace().size());
  std::printf(rc == 0 ? "PASS\n" : "FAIL\n");
  return rc;
}

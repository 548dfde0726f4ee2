// khosim: run a built-in scenario on a simulated machine and report what
// happened. With no arguments it runs the default scenario.
//
//   khosim [--scenario=kho|kexec-scrub] [--ram=4G] [--nodes=2] [--page_size=4096]
//          [--seed=1] [--kexecs=3] [--cmdline="..."] [--trace_json=FILE] [--dmesg]
//          [--kho_debugfs]
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
#include "khosim/machine/machine.h"
#include "khosim/machine/scenarios.h"

ABSL_FLAG(std::string, scenario, "kho",
          "scenario: kho (preserve, kexec, restore, verify) or kexec-scrub");
ABSL_FLAG(std::string, ram, "4G", "simulated RAM (K/M/G/T suffixes)");
ABSL_FLAG(int, nodes, 2, "NUMA nodes");
ABSL_FLAG(uint64_t, page_size, 4096, "page size: 4096, 16384 or 65536");
ABSL_FLAG(uint64_t, seed, 1, "seed of the machine's random generator");
ABSL_FLAG(int, kexecs, 3, "number of kexecs after the cold boot");
ABSL_FLAG(std::string, cmdline, "kho=on", "kernel command line");
ABSL_FLAG(std::string, preserve, "64M", "bytes the kho scenario preserves per boot");
ABSL_FLAG(bool, kho_debugfs, false, "print the last kernel's kho debugfs view");
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
  uint64_t preserve_bytes = 0;
  if (!ParseSize(absl::GetFlag(FLAGS_preserve), &preserve_bytes)) {
    std::fprintf(stderr, "bad --preserve\n");
    return 2;
  }
  khosim::ScenarioResult result;
  try {
    const std::string scenario = absl::GetFlag(FLAGS_scenario);
    if (scenario == "kho") {
      result = khosim::RunKhoScenario(m, absl::GetFlag(FLAGS_kexecs), preserve_bytes);
    } else if (scenario == "kexec-scrub") {
      result = khosim::RunKexecScrubScenario(m, absl::GetFlag(FLAGS_kexecs));
    } else {
      std::fprintf(stderr, "unknown scenario %s\n", scenario.c_str());
      return 2;
    }
  } catch (const khosim::KernelPanic& panic) {
    result.Check(false, std::string("Kernel panic at ") + panic.site() + ": " + panic.what());
  }
  for (const std::string& line : result.lines) std::printf("%s\n", line.c_str());
  if (m.has_kernel() && absl::GetFlag(FLAGS_dmesg)) {
    for (const std::string& line : m.kernel().ctx().LogLines()) {
      std::printf("    | %s\n", line.c_str());
    }
  }
  if (m.has_kernel() && absl::GetFlag(FLAGS_kho_debugfs)) {
    std::printf("%s\n", m.kernel().kho().DebugView().ToString().c_str());
  }
  const int rc = result.passed ? 0 : 1;
  if (!absl::GetFlag(FLAGS_trace_json).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_trace_json)) << m.trace().ToJson() << "\n";
  }
  std::printf("host memory: %llu KiB of simulated DRAM resident, %zu trace events\n",
              static_cast<unsigned long long>(m.memory().ResidentBytes() / khosim::kKiB),
              m.trace().size());
  std::printf(rc == 0 ? "PASS\n" : "FAIL\n");
  return rc;
}

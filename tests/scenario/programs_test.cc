// The KHO-only programs, and a countdown over the KHO one: every
// allocation of a full preserve -> kexec -> restore run failed in turn.
#include "khosim/scenario/programs.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/kho/kho.h"
#include "khosim/machine/countdown.h"
#include "khosim/scenario/runner.h"
#include "khosim/scenario/scenario.h"

namespace khosim::scenario {
namespace {

using ::testing::IsEmpty;

std::string Lines(const ProgramResult& r) {
  std::string out;
  for (const std::string& line : r.lines) out += line + "\n";
  return out;
}

TEST(ProgramsTest, KexecScrubPasses) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  const ProgramResult r = RunKexecScrubProgram(m, 2);
  EXPECT_TRUE(r.passed) << Lines(r);
}

TEST(ProgramsTest, KhoPassesAlongAChain) {
  Machine m(MachineConfig{.ram = 2 * kGiB, .nodes = 2, .cmdline = "kho=on"});
  const ProgramResult r = RunKhoProgram(m, 3, 16 * kMiB);
  EXPECT_TRUE(r.passed) << Lines(r);
  EXPECT_EQ(m.kernel().generation(), 4u);
}

// On these seeds kernel B reuses the deliberately unpreserved page for
// data holding a 0x5a byte; counting that byte value reported a false
// loss. What matters is whether kernel A's content is still there.
TEST(ProgramsTest, AReusedPageHoldingTheFillByteIsNoLoss) {
  for (uint64_t seed : {8878413u, 100082u}) {
    absl::StatusOr<Scenario> s = ResolveScenario("kho");
    ASSERT_TRUE(s.ok()) << s.status();
    s->machine.seed = seed;
    const RunReport r = RunScenario(*s);
    EXPECT_EQ(r.outcome, Outcome::kPassed) << "seed " << seed << ": " << r.message;
  }
}

TEST(ProgramsTest, KhoScenarioNoticesMissingKho) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  const ProgramResult r = RunKhoProgram(m, 1, 1 * kMiB);
  EXPECT_FALSE(r.passed);
}

TEST(ProgramsTest, KhoCountdownKeepsEveryKernelConsistent) {
  MachineConfig config{.ram = 512 * kMiB, .seed = 9, .cmdline = "kho=on"};
  config.kernel_image_size = 8 * kMiB;
  config.early_alloc_bytes_per_node = 4 * kMiB;
  CountdownResult result = RunCountdown(
      config, "", [](Machine& m) { (void)RunKhoProgram(m, 1, 256 * kKiB); },
      [](Machine& m, const CountdownRun& run, std::vector<std::string>* violations) {
        if (run.panicked) {
          // Only early allocations may panic a boot.
          if (run.panic_message.find("Failed to allocate") == std::string::npos) {
            violations->push_back("unexpected panic: " + run.panic_message);
          }
          return;
        }
        if (!m.has_kernel()) return;
        Kernel& k = m.kernel();
        if (!k.mm().memblock().Validate().ok()) violations->push_back("memblock invalid");
        if (!k.mm().pages().Validate().ok()) violations->push_back("buddy invalid");
        if (kho::RadixTree* tree = k.kho().out_tree(); tree != nullptr && !tree->Validate().ok()) {
          violations->push_back("outgoing radix tree invalid");
        }
        if (k.WarnCount() != 0) {
          for (const auto& [site, n] : k.ctx().WarnsBySite()) {
            violations->push_back("WARN at " + site);
          }
        }
      },
      5000);
  EXPECT_TRUE(result.completed);
  EXPECT_THAT(result.Violations(), IsEmpty());
  EXPECT_GT(result.runs.size(), 20u);
}

}  // namespace
}  // namespace khosim::scenario

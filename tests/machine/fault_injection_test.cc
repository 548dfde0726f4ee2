#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/countdown.h"
#include "khosim/machine/fault_injector.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(FaultInjectorTest, NthHitOfAPointFailsOnce) {
  FaultInjector f([] { return 0; });
  f.FailNth("alloc_pages", 3);
  std::vector<bool> got;
  for (int i = 0; i < 5; ++i) got.push_back(f.Hit("alloc_pages"));
  EXPECT_THAT(got, ElementsAre(false, false, true, false, false));
  EXPECT_FALSE(f.Hit("memblock"));
  EXPECT_EQ(f.Hits("alloc_pages"), 5u);
  EXPECT_EQ(f.TotalHits(), 6u);
  EXPECT_THAT(f.InjectedPoints(), ElementsAre("alloc_pages"));
}

TEST(FaultInjectorTest, NthIsCountedFromWhenThePlanIsSet) {
  FaultInjector f([] { return 0; });
  f.Hit("x");
  f.Hit("x");
  f.FailNth("x", 1);
  EXPECT_TRUE(f.Hit("x"));
}

TEST(FaultInjectorTest, NthAnyCountsEveryPoint) {
  FaultInjector f([] { return 0; });
  f.FailNthAny(2);
  EXPECT_FALSE(f.Hit("a"));
  EXPECT_TRUE(f.Hit("b"));
  EXPECT_FALSE(f.Hit("a"));
}

TEST(FaultInjectorTest, OnceFailsTheNextHitOnly) {
  FaultInjector f([] { return 0; });
  f.FailOnce("memblock");
  EXPECT_FALSE(f.Hit("alloc_pages"));
  EXPECT_TRUE(f.Hit("memblock"));
  EXPECT_FALSE(f.Hit("memblock"));
}

TEST(FaultInjectorTest, ProbabilityIsSeededAndRoughlyRight) {
  auto run = [](uint64_t seed) {
    std::mt19937_64 rng(seed);
    FaultInjector f([&] { return rng(); });
    f.FailWithProbability("p", 0.25);
    std::vector<bool> got;
    for (int i = 0; i < 4000; ++i) got.push_back(f.Hit("p"));
    return got;
  };
  const std::vector<bool> a = run(1);
  EXPECT_EQ(a, run(1));
  EXPECT_NE(a, run(2));
  const auto failures = std::count(a.begin(), a.end(), true);
  EXPECT_GT(failures, 850);
  EXPECT_LT(failures, 1150);
}

TEST(FaultInjectorTest, ClearRemovesPlans) {
  FaultInjector f([] { return 0; });
  f.FailOnce("x");
  f.Clear();
  EXPECT_FALSE(f.Hit("x"));
}

TEST(MachineFaultTest, AllocPagesFaultPointReachesTheKernelFace) {
  Machine m(MachineConfig{.ram = 256 * kMiB});
  m.Boot();
  m.faults().FailNth("alloc_pages", 2);
  EXPECT_NE(folio_alloc(GFP_KERNEL, 0), nullptr);
  EXPECT_EQ(folio_alloc(GFP_KERNEL, 0), nullptr);
  EXPECT_NE(folio_alloc(GFP_KERNEL, 0), nullptr);
  EXPECT_NE(alloc_pages(GFP_KERNEL | __GFP_NOFAIL, 0), nullptr);
  EXPECT_THAT(m.trace().Names("fault"), ElementsAre("fault/alloc_pages"));
}

// Boot with every early allocation failing in turn: each failure is either
// absorbed (the memmap falls back to per-section buffers) or panics the boot
// with the allocation that failed, and a successful boot is always sound.
TEST(CountdownTest, EveryBootAllocationFailureIsHandled) {
  MachineConfig config{.ram = 1 * kGiB, .nodes = 2, .seed = 3};
  CountdownResult result = RunCountdown(
      config, "",
      [](Machine& m) {
        m.Boot();
        ASSERT_TRUE(m.Kexec().ok());
      },
      [](Machine& m, const CountdownRun& run, std::vector<std::string>* violations) {
        if (run.panicked) {
          if (run.panic_message.find("Failed to allocate") == std::string::npos) {
            violations->push_back("unexpected panic: " + run.panic_message);
          }
          if (!run.injected) violations->push_back("panic without an injected fault");
          return;
        }
        mm::Mm& mm = m.kernel().mm();
        if (!mm.memblock().Validate().ok()) violations->push_back("memblock invalid");
        if (!mm.pages().Validate().ok()) violations->push_back("buddy invalid");
        if (mm.pages().FreePages() * 4096 + mm.memblock().TotalReserved() != 1 * kGiB) {
          violations->push_back("pages lost");
        }
      });
  EXPECT_TRUE(result.completed);
  EXPECT_THAT(result.Violations(), IsEmpty());
  // Two boots x (one early allocation + one memmap buffer per node).
  EXPECT_GE(result.runs.size(), 9u);
  int absorbed = 0;
  for (const CountdownRun& run : result.runs) absorbed += run.injected && !run.panicked;
  EXPECT_GE(absorbed, 2) << "memmap buffer failures fall back per section";
}

// A workload that handles allocation failure must leave no page behind at
// any failure point.
TEST(CountdownTest, AllocatingWorkloadLeaksNothingAtAnyFailurePoint) {
  MachineConfig config{.ram = 256 * kMiB, .seed = 4};
  CountdownResult result = RunCountdown(
      config, "alloc_pages",
      [](Machine& m) {
        m.Boot();
        std::vector<struct folio*> held;
        for (unsigned i = 0; i < 40; ++i) {
          struct folio* f = folio_alloc(GFP_KERNEL, i % 5);
          if (f == nullptr) break;
          held.push_back(f);
        }
        for (struct folio* f : held) folio_put(f);
      },
      [](Machine& m, const CountdownRun&, std::vector<std::string>* violations) {
        mm::Mm& mm = m.kernel().mm();
        if (mm.pages().FreePages() * 4096 + mm.memblock().TotalReserved() != 256 * kMiB) {
          violations->push_back("leaked pages");
        }
        if (!mm.pages().Validate().ok()) violations->push_back("buddy invalid");
      });
  EXPECT_TRUE(result.completed);
  EXPECT_EQ(result.runs.size(), 41u);
  EXPECT_THAT(result.Violations(), IsEmpty());
}

}  // namespace
}  // namespace khosim

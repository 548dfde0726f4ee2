// Same seed and inputs -> the identical trace; a different seed -> a
// different run.
#include "gtest/gtest.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

std::vector<TraceEvent> RunWorkload(uint64_t seed) {
  Machine m(
      MachineConfig{.ram = 512 * kMiB, .nodes = 2, .seed = seed, .trace_alloc_threshold = 4096});
  m.faults().FailWithProbability("alloc_pages", 0.05);
  m.Boot();
  for (int round = 0; round < 3; ++round) {
    std::vector<struct folio*> held;
    for (int i = 0; i < 200; ++i) {
      const unsigned order = static_cast<unsigned>(m.RandomBelow(6));
      struct folio* f = folio_alloc_node(GFP_KERNEL, order, static_cast<int>(m.RandomBelow(2)));
      if (f != nullptr) held.push_back(f);
      if (!held.empty() && m.RandomBelow(3) == 0) {
        const size_t victim = m.RandomBelow(held.size());
        folio_put(held[victim]);
        held.erase(held.begin() + static_cast<long>(victim));
      }
    }
    EXPECT_TRUE(m.Kexec().ok());
  }
  return m.trace().Events();
}

TEST(DeterminismTest, SameSeedGivesTheIdenticalTrace) {
  const std::vector<TraceEvent> a = RunWorkload(21);
  const std::vector<TraceEvent> b = RunWorkload(21);
  ASSERT_GT(a.size(), 100u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << i << ": " << a[i].ToString();
}

TEST(DeterminismTest, DifferentSeedsDiverge) { EXPECT_NE(RunWorkload(21), RunWorkload(22)); }

TEST(DeterminismTest, TraceExportsAsJson) {
  Machine m(MachineConfig{.ram = 256 * kMiB});
  m.Boot();
  const std::string json = m.trace().ToJson();
  EXPECT_EQ(json.front(), '[');
  EXPECT_NE(json.find("\"cat\":\"phase\",\"name\":\"running\""), std::string::npos) << json;
}

}  // namespace
}  // namespace khosim

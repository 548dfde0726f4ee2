// The fault point table against the parser, the docs and the code: every
// point is nameable in a scenario, listed in docs/scenarios.md, and
// reached by a run (the default scenario touches every subsystem).
#include "khosim/machine/fault_points.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "khosim/linux/module.h"
#include "khosim/scenario/runner.h"
#include "khosim/scenario/scenario.h"

namespace khosim::scenario {
namespace {

std::string Fault(const std::string& point) {
  return absl::StrCat("faults: [{point: ", point, ", once: true}]\nboots: [{}]\n");
}

TEST(FaultPointsTest, EveryPointIsNameableAndDocumented) {
  std::ifstream in(KHOSIM_SOURCE_DIR "/docs/scenarios.md");
  ASSERT_TRUE(in) << "docs/scenarios.md";
  std::stringstream docs;
  docs << in.rdbuf();
  for (const FaultPointInfo& point : FaultPoints()) {
    EXPECT_TRUE(ParseScenario(Fault(point.name), "t.yaml").ok()) << point.name;
    EXPECT_NE(docs.str().find(absl::StrCat("| `", point.name, "` |")), std::string::npos)
        << point.name << " is not in docs/scenarios.md's table";
  }
  EXPECT_FALSE(ParseScenario(Fault("no_such_point"), "t.yaml").ok());
}

TEST(FaultPointsTest, EveryPointIsReached) {
  absl::StatusOr<Scenario> s = ResolveScenario("default");
  ASSERT_TRUE(s.ok()) << s.status();
  Runner runner(*s);
  const RunReport r = runner.Run();
  ASSERT_EQ(r.outcome, Outcome::kPassed) << r.message;
  Machine& m = *runner.machine();
  // Built-in code has no module: a loadable one is what reaches it.
  m.Activate();
  static struct module loadable = {};
  m.faults().FailOnce("try_module_get");
  EXPECT_FALSE(try_module_get(&loadable));
  EXPECT_TRUE(try_module_get(&loadable));
  module_put(&loadable);
  for (const FaultPointInfo& point : FaultPoints()) {
    EXPECT_GT(m.faults().Hits(point.name), 0u) << point.name << " was never hit";
  }
}

}  // namespace
}  // namespace khosim::scenario

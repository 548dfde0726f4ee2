// Countdown fault injection: run a scenario again and again on fresh
// machines, failing the 1st, 2nd, 3rd ... hit of a fault point (or of any
// point), and check caller-supplied invariants after every run. It stops at
// the first run in which the planned fault was never reached: the scenario
// then ran to completion with every earlier failure point exercised.
//
//   CountdownResult r = RunCountdown(config, "", scenario, invariants);
//   EXPECT_TRUE(r.completed);
//   EXPECT_THAT(r.Violations(), IsEmpty());
#ifndef KHOSIM_MACHINE_COUNTDOWN_H_
#define KHOSIM_MACHINE_COUNTDOWN_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "khosim/machine/machine.h"

namespace khosim {

struct CountdownRun {
  uint64_t failing_hit = 0;    // k: the hit planned to fail
  bool injected = false;       // the planned hit was reached and failed
  std::string injected_point;  // which point it was
  bool panicked = false;       // the scenario ended in a KernelPanic
  std::string panic_message;
  std::vector<std::string> violations;  // what the invariants reported
};

struct CountdownResult {
  std::vector<CountdownRun> runs;
  bool completed = false;  // a run reached the end without an injection
  std::vector<std::string> Violations() const;
};

// |scenario| drives a freshly constructed, not yet booted machine; a
// KernelPanic it raises is recorded, not propagated. |invariants| inspects
// the machine afterwards and appends violations. |point| empty = any point.
CountdownResult RunCountdown(
    const MachineConfig& config, absl::string_view point,
    const std::function<void(Machine&)>& scenario,
    const std::function<void(Machine&, const CountdownRun&, std::vector<std::string>*)>& invariants,
    uint64_t max_runs = 100000);

}  // namespace khosim

#endif  // KHOSIM_MACHINE_COUNTDOWN_H_

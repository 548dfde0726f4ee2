// RunCountdown: see the header for the contract.
#include "khosim/machine/countdown.h"

#include "absl/strings/str_cat.h"
#include "khosim/base/panic.h"

namespace khosim {

std::vector<std::string> CountdownResult::Violations() const {
  std::vector<std::string> out;
  for (const CountdownRun& run : runs) {
    for (const std::string& v : run.violations) {
      out.push_back(absl::StrCat("hit ", run.failing_hit, " (", run.injected_point, "): ", v));
    }
  }
  return out;
}

CountdownResult RunCountdown(
    const MachineConfig& config, absl::string_view point,
    const std::function<void(Machine&)>& scenario,
    const std::function<void(Machine&, const CountdownRun&, std::vector<std::string>*)>& invariants,
    uint64_t max_runs) {
  CountdownResult result;
  for (uint64_t k = 1; k <= max_runs; ++k) {
    Machine machine(config);
    if (point.empty()) {
      machine.faults().FailNthAny(k);
    } else {
      machine.faults().FailNth(point, k);
    }
    CountdownRun run;
    run.failing_hit = k;
    try {
      scenario(machine);
    } catch (const KernelPanic& panic) {
      run.panicked = true;
      run.panic_message = panic.what();
    }
    const std::vector<std::string> injected = machine.faults().InjectedPoints();
    run.injected = !injected.empty();
    if (run.injected) run.injected_point = injected.front();
    invariants(machine, run, &run.violations);
    const bool done = !run.injected;
    result.runs.push_back(std::move(run));
    if (done) {
      result.completed = true;
      break;
    }
  }
  return result;
}

}  // namespace khosim

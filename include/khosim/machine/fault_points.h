// Every named fault point of the simulated kernel: where a FaultInjector
// plan (khosim/machine/fault_injector.h) or a scenario's `faults:` can make
// a call fail, and what the failing call returns. One table, read by the
// scenario parser (the names `faults[].point` accepts) and checked against
// docs/scenarios.md and against the code (each point is reached by a run).
#ifndef KHOSIM_MACHINE_FAULT_POINTS_H_
#define KHOSIM_MACHINE_FAULT_POINTS_H_

#include <vector>

namespace khosim {

struct FaultPointInfo {
  const char* name;
  const char* fails;  // what a failing hit does, one line
};

// In the order docs/scenarios.md lists them.
const std::vector<FaultPointInfo>& FaultPoints();

}  // namespace khosim

#endif  // KHOSIM_MACHINE_FAULT_POINTS_H_

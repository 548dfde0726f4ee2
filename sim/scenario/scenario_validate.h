// Cross-field checks of a parsed scenario: who holds which file in which
// boot (a file preserved in boot 2 must exist there, tokens unique per
// session, a retrieved file preserved again only after its session is
// finished), the hugetlb pools each boot's command line must give the
// hugetlb files it creates, and what a 'program' scenario may not have.
// Failures throw ScenarioError with the position of the field at fault.
#ifndef KHOSIM_SIM_SCENARIO_SCENARIO_VALIDATE_H_
#define KHOSIM_SIM_SCENARIO_SCENARIO_VALIDATE_H_

#include "khosim/scenario/scenario.h"
#include "yaml_field.h"

namespace khosim::scenario {

void ValidateScenario(const Scenario& s, const Field& root);

}  // namespace khosim::scenario

#endif  // KHOSIM_SIM_SCENARIO_SCENARIO_VALIDATE_H_

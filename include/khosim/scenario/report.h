// Rendering a RunReport: the human summary `khosim run` prints and the JSON
// document `khosim run --json` prints (its schema is
// docs/schemas/run-report.schema.json; "format" names its version).
#ifndef KHOSIM_SCENARIO_REPORT_H_
#define KHOSIM_SCENARIO_REPORT_H_

#include <string>
#include <vector>

#include "khosim/scenario/runner.h"

namespace khosim::scenario {

inline constexpr char kReportFormat[] = "khosim-run-report/1";

// Per boot what was preserved, retrieved, finished, leaked; the files
// verified; the per-phase cost table; every WARN; the first divergence;
// and a last line "PASS" or "FAIL (<outcome>): <message>".
std::string FormatTextReport(const RunReport& report);
// "memfd (memfd-v2), hugetlb (hugemfd-v1), vfio-pci", or "none": a module
// without a file handler of its own (a driver) shows its name.
std::string HandlersText(const std::vector<HandlerInfo>& handlers);
std::string ReportToJson(const RunReport& report);

}  // namespace khosim::scenario

#endif  // KHOSIM_SCENARIO_REPORT_H_

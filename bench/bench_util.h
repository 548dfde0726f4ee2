// Helpers shared by the benchmark suites.
#ifndef KHOSIM_BENCH_BENCH_UTIL_H_
#define KHOSIM_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "khosim/machine/machine.h"

namespace khosim::bench {

// --benchmark_min_time as given on the command line, else the library's
// default. Read before benchmark::Initialize() consumes the flag.
inline double MinTimeFlag(int argc, char** argv) {
  double min_time = 0.5;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg(argv[i]);
    if (!absl::ConsumePrefix(&arg, "--benchmark_min_time=")) continue;
    absl::ConsumeSuffix(&arg, "s");  // newer releases take "0.2s"
    double value = 0;
    if (absl::SimpleAtod(arg, &value) && value > 0) min_time = value;
  }
  return min_time;
}

// The library counts only timed seconds towards --benchmark_min_time, so a
// row whose every iteration needs an untimed setup (a cold boot, a
// preserved set, a kexec) would spend most of its wall time paused. Such
// rows run a fixed number of iterations instead: about min_time of wall
// time, from the row's measured wall time per iteration.
inline int64_t SetupBoundIterations(double min_time, double wall_seconds_per_iteration) {
  return std::max<int64_t>(1, std::llround(min_time / wall_seconds_per_iteration));
}

// Debian's Abseil is built without NDEBUG, which leaves Mutex deadlock
// detection on: every lock and unlock then also updates a global lock graph
// (about a tenth of a preserve call). Release kernels have no lockdep
// either, so it is off unless KHOSIM_BENCH_DEADLOCK_DETECTION is set; the
// choice is recorded in the benchmark context.
inline void ConfigureDeadlockDetection() {
  const bool on = std::getenv("KHOSIM_BENCH_DEADLOCK_DETECTION") != nullptr;
  if (!on) absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::AddCustomContext("absl_deadlock_detection", on ? "library default" : "off");
}

// The body of every suite's main(): reads --benchmark_min_time, initializes
// the library (an unknown flag exits 1), configures deadlock detection,
// records |context| (key, value) in the output, registers the suite's rows
// with the min time, runs them and shuts down.
inline int RunSuite(int argc, char** argv,
                    const std::vector<std::pair<std::string, std::string>>& context,
                    const std::function<void(double min_time)>& register_rows) {
  const double min_time = MinTimeFlag(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ConfigureDeadlockDetection();
  for (const auto& [key, value] : context) benchmark::AddCustomContext(key, value);
  register_rows(min_time);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

// The "nodes" argument of the last kho/retrieve trace event of |m|: the
// tracker pages kernel B's retrieval walk visited. -1 if there is none.
inline double RetrieveWalkNodes(Machine& m) {
  double nodes = -1;
  for (const TraceEvent& event : m.trace().Events("kho")) {
    if (event.name != "retrieve") continue;
    for (const auto& [key, value] : event.args) {
      uint64_t n = 0;
      if (key == "nodes" && absl::SimpleAtoi(value, &n)) nodes = static_cast<double>(n);
    }
  }
  return nodes;
}

}  // namespace khosim::bench

#endif  // KHOSIM_BENCH_BENCH_UTIL_H_

// FakeKernelEnv: a KernelEnv for unit tests of one lib/ component without a
// Machine (construct a KernelContext over it). Records trace events as
// "category/name", fails the points a test names, and draws randomness
// from a fixed seed. Not thread-safe: one test thread.
#ifndef KHOSIM_TESTING_FAKE_KERNEL_ENV_H_
#define KHOSIM_TESTING_FAKE_KERNEL_ENV_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "khosim/base/kernel_context.h"

namespace khosim::testing {

class FakeKernelEnv : public KernelEnv {
 public:
  bool ShouldFail(absl::string_view point) override {
    ++hits[std::string(point)];
    auto it = fail_at.find(std::string(point));
    if (it != fail_at.end() && it->second == hits[std::string(point)]) return true;
    return fail_all.count(std::string(point)) > 0;
  }
  void Trace(uint64_t, absl::string_view category, absl::string_view name, TraceArgs) override {
    events.push_back(std::string(category) + "/" + std::string(name));
  }
  uint64_t Random() override { return rng(); }
  uint64_t TraceAllocThreshold() const override { return 1 << 20; }

  std::map<std::string, uint64_t> hits;
  std::map<std::string, uint64_t> fail_at;  // point -> failing hit (1-based)
  std::map<std::string, bool> fail_all;     // point -> every hit fails
  std::vector<std::string> events;
  std::mt19937_64 rng{42};
};

}  // namespace khosim::testing

#endif  // KHOSIM_TESTING_FAKE_KERNEL_ENV_H_

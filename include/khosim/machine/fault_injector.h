// FaultInjector: named fault points and the plans that make them fail.
//
// Every allocation path in lib/ asks KernelContext::ShouldFail(point) once
// per hit ("alloc_pages", "memblock", "vmalloc"; later layers add
// "kho_alloc_preserve", handler callbacks, copy_to_user, ...). A plan says
// which hits fail:
//   FailNth(point, n)          the n-th hit of |point| (1-based) fails once
//   FailNthAny(n)              the n-th hit of any point fails once
//   FailWithProbability(p, q)  each hit of |p| fails with probability q,
//                              drawn from the machine's seeded generator
//   FailOnce(point)            the next hit of |point| fails
// Hits are counted per point and globally from the moment the plan is set
// (or since ResetCounts), so countdown runs are reproducible.
#ifndef KHOSIM_MACHINE_FAULT_INJECTOR_H_
#define KHOSIM_MACHINE_FAULT_INJECTOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace khosim {

class FaultInjector {
 public:
  explicit FaultInjector(std::function<uint64_t()> random) : random_(std::move(random)) {}

  void FailNth(absl::string_view point, uint64_t n);
  void FailNthAny(uint64_t n);
  void FailWithProbability(absl::string_view point, double probability);
  void FailOnce(absl::string_view point);
  // Removes every plan; hit counters keep counting.
  void Clear();
  void ResetCounts();

  // One hit of |point|; true if it must fail.
  bool Hit(absl::string_view point);

  uint64_t Hits(absl::string_view point) const;
  uint64_t TotalHits() const;
  uint64_t Injected() const;
  // Names of the points that failed, in order.
  std::vector<std::string> InjectedPoints() const;

 private:
  struct Plan {
    enum Kind { kNth, kNthAny, kProbability, kOnce } kind;
    std::string point;
    uint64_t n = 0;
    double probability = 0;
    bool spent = false;
  };

  std::function<uint64_t()> random_;
  mutable absl::Mutex mu_;
  std::vector<Plan> plans_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t, std::less<>> hits_ ABSL_GUARDED_BY(mu_);
  uint64_t total_hits_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> injected_ ABSL_GUARDED_BY(mu_);
};

}  // namespace khosim

#endif  // KHOSIM_MACHINE_FAULT_INJECTOR_H_

// FaultInjector: plans are checked in the order they were set; the first
// plan that claims a hit makes it fail. Hit counters are per point and
// global so that "the n-th allocation of any kind" is expressible.
#include "khosim/machine/fault_injector.h"

#include "absl/strings/string_view.h"

namespace khosim {

void FaultInjector::FailNth(absl::string_view point, uint64_t n) {
  absl::MutexLock lock(&mu_);
  plans_.push_back(Plan{Plan::kNth, std::string(point), hits_[std::string(point)] + n});
}

void FaultInjector::FailNthAny(uint64_t n) {
  absl::MutexLock lock(&mu_);
  plans_.push_back(Plan{Plan::kNthAny, "", total_hits_ + n});
}

void FaultInjector::FailWithProbability(absl::string_view point, double probability) {
  absl::MutexLock lock(&mu_);
  Plan plan{Plan::kProbability, std::string(point)};
  plan.probability = probability;
  plans_.push_back(plan);
}

void FaultInjector::FailOnce(absl::string_view point) {
  absl::MutexLock lock(&mu_);
  plans_.push_back(Plan{Plan::kOnce, std::string(point)});
}

void FaultInjector::Clear() {
  absl::MutexLock lock(&mu_);
  plans_.clear();
}

void FaultInjector::ResetCounts() {
  absl::MutexLock lock(&mu_);
  hits_.clear();
  total_hits_ = 0;
  injected_.clear();
}

bool FaultInjector::Hit(absl::string_view point) {
  absl::MutexLock lock(&mu_);
  auto it = hits_.find(point);
  if (it == hits_.end()) it = hits_.emplace(std::string(point), 0).first;
  const uint64_t point_hit = ++it->second;
  const uint64_t any_hit = ++total_hits_;
  bool fail = false;
  for (Plan& plan : plans_) {
    if (plan.spent) continue;
    switch (plan.kind) {
      case Plan::kNth:
        if (plan.point == point && plan.n == point_hit) fail = plan.spent = true;
        break;
      case Plan::kNthAny:
        if (plan.n == any_hit) fail = plan.spent = true;
        break;
      case Plan::kOnce:
        if (plan.point == point) fail = plan.spent = true;
        break;
      case Plan::kProbability:
        if (plan.point == point) {
          // 53 random bits -> [0, 1).
          const double draw = static_cast<double>(random_() >> 11) * 0x1.0p-53;
          fail = draw < plan.probability;
        }
        break;
    }
    if (fail) break;
  }
  if (fail) injected_.emplace_back(point);
  return fail;
}

uint64_t FaultInjector::Hits(absl::string_view point) const {
  absl::MutexLock lock(&mu_);
  auto it = hits_.find(point);
  return it == hits_.end() ? 0 : it->second;
}

uint64_t FaultInjector::TotalHits() const {
  absl::MutexLock lock(&mu_);
  return total_hits_;
}

uint64_t FaultInjector::Injected() const {
  absl::MutexLock lock(&mu_);
  return injected_.size();
}

std::vector<std::string> FaultInjector::InjectedPoints() const {
  absl::MutexLock lock(&mu_);
  return injected_;
}

}  // namespace khosim

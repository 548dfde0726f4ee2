// EventTrace: the machine's record of what happened, in order.
//
// Events carry a sequence number, the generation (boot) that emitted them,
// a category ("phase", "alloc", "fault", "warn", "panic", "kexec", and
// later "kho", "luo", "handler", ...), a name and preformatted arguments.
// There are no timestamps: the same seed and inputs give the identical
// trace, which is what determinism tests compare.
#ifndef KHOSIM_MACHINE_EVENT_TRACE_H_
#define KHOSIM_MACHINE_EVENT_TRACE_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"

namespace khosim {

struct TraceEvent {
  uint64_t seq = 0;
  uint64_t generation = 0;
  std::string category;
  std::string name;
  TraceArgs args;

  // "gen/category/name k=v k=v"
  std::string ToString() const;
  bool operator==(const TraceEvent&) const = default;
};

class EventTrace {
 public:
  void Record(uint64_t generation, absl::string_view category, absl::string_view name,
              TraceArgs args);
  std::vector<TraceEvent> Events() const;
  // Events of one category, in order.
  std::vector<TraceEvent> Events(absl::string_view category) const;
  // "category/name" of each event of |category| (all if empty), in order:
  // the form golden orderings are written in.
  std::vector<std::string> Names(absl::string_view category = {}) const;
  void Clear();
  size_t size() const;
  // [{"seq":..,"gen":..,"cat":..,"name":..,"args":{..}}, ...]
  std::string ToJson() const;
  // Disabled categories are dropped at Record time. Every category is
  // enabled until disabled here.
  void SetEnabled(absl::string_view category, bool enabled);
  // Whether Record would keep an event of |category| (lock-free while no
  // category is disabled).
  bool Enabled(absl::string_view category) const;

 private:
  mutable absl::Mutex mu_;
  std::vector<TraceEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> disabled_ ABSL_GUARDED_BY(mu_);
  // disabled_.size(), readable without mu_.
  std::atomic<size_t> disabled_count_{0};
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace khosim

#endif  // KHOSIM_MACHINE_EVENT_TRACE_H_

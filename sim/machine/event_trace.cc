// EventTrace: an append-only, sequence-numbered event log with JSON export.
#include "khosim/machine/event_trace.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace khosim {
namespace {

void AppendJsonString(std::string& out, absl::string_view s) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

}  // namespace

std::string TraceEvent::ToString() const {
  std::string out = absl::StrCat(generation, "/", category, "/", name);
  for (const auto& [key, value] : args) absl::StrAppend(&out, " ", key, "=", value);
  return out;
}

void EventTrace::Record(uint64_t generation, absl::string_view category, absl::string_view name,
                        TraceArgs args) {
  absl::MutexLock lock(&mu_);
  if (std::find(disabled_.begin(), disabled_.end(), category) != disabled_.end()) return;
  events_.push_back(TraceEvent{next_seq_++, generation, std::string(category), std::string(name),
                               std::move(args)});
}

std::vector<TraceEvent> EventTrace::Events() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

std::vector<TraceEvent> EventTrace::Events(absl::string_view category) const {
  absl::MutexLock lock(&mu_);
  std::vector<TraceEvent> out;
  for (const TraceEvent& e : events_) {
    if (e.category == category) out.push_back(e);
  }
  return out;
}

std::vector<std::string> EventTrace::Names(absl::string_view category) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const TraceEvent& e : events_) {
    if (category.empty() || e.category == category) out.push_back(e.category + "/" + e.name);
  }
  return out;
}

void EventTrace::Clear() {
  absl::MutexLock lock(&mu_);
  events_.clear();
}

size_t EventTrace::size() const {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

void EventTrace::SetEnabled(absl::string_view category, bool enabled) {
  absl::MutexLock lock(&mu_);
  auto it = std::find(disabled_.begin(), disabled_.end(), category);
  if (enabled && it != disabled_.end()) disabled_.erase(it);
  if (!enabled && it == disabled_.end()) disabled_.emplace_back(category);
  disabled_count_.store(disabled_.size(), std::memory_order_release);
}

bool EventTrace::Enabled(absl::string_view category) const {
  if (disabled_count_.load(std::memory_order_acquire) == 0) return true;
  absl::MutexLock lock(&mu_);
  return std::find(disabled_.begin(), disabled_.end(), category) == disabled_.end();
}

std::string EventTrace::ToJson() const {
  absl::MutexLock lock(&mu_);
  std::string out = "[";
  for (size_t i = 0; i < events_.size(); ++i) {
    const TraceEvent& e = events_[i];
    if (i > 0) out += ",";
    absl::StrAppend(&out, "\n  {\"seq\":", e.seq, ",\"gen\":", e.generation, ",\"cat\":");
    AppendJsonString(out, e.category);
    out += ",\"name\":";
    AppendJsonString(out, e.name);
    out += ",\"args\":{";
    for (size_t j = 0; j < e.args.size(); ++j) {
      if (j > 0) out += ",";
      AppendJsonString(out, e.args[j].first);
      out += ":";
      AppendJsonString(out, e.args[j].second);
    }
    out += "}}";
  }
  out += events_.empty() ? "]" : "\n]";
  return out;
}

}  // namespace khosim

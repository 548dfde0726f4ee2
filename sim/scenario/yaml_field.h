// The YAML reader behind the scenario parser: a Field is a YAML node with
// the field path that leads to it, so that every failure can say
// "<file>:<line>:<col>: <field>: <what>"; a MapReader reads a mapping whose
// keys must all be known, with a "did you mean" hint for the rest. A failure
// throws ScenarioError, which ParseScenario turns into an absl::Status.
#ifndef KHOSIM_SIM_SCENARIO_YAML_FIELD_H_
#define KHOSIM_SIM_SCENARIO_YAML_FIELD_H_

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "khosim/scenario/scenario.h"

namespace khosim::scenario {

// A parse or validation failure; |unsupported| marks a valid request this
// build cannot serve (reported as Unimplemented).
struct ScenarioError {
  SourcePos pos;
  std::string message;
  bool unsupported = false;
};

[[noreturn]] void Fail(const SourcePos& pos, std::string message, bool unsupported = false);

// Levenshtein distance, for the "did you mean" hints.
size_t EditDistance(absl::string_view a, absl::string_view b);

// A YAML node and the field path that leads to it.
class Field {
 public:
  Field(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  bool IsNull() const { return !node_.IsDefined() || node_.IsNull(); }

  SourcePos Pos() const {
    SourcePos pos;
    pos.field = path_;
    const YAML::Mark mark = node_.IsDefined() ? node_.Mark() : YAML::Mark::null_mark();
    if (!mark.is_null()) {
      pos.line = mark.line + 1;
      pos.column = mark.column + 1;
    }
    return pos;
  }
  [[noreturn]] void Fail(std::string message, bool unsupported = false) const {
    scenario::Fail(Pos(), std::move(message), unsupported);
  }

  std::string Shown() const {
    if (node_.IsScalar()) return absl::StrCat("\"", node_.Scalar(), "\"");
    if (node_.IsSequence()) return "a list";
    if (node_.IsMap()) return "a mapping";
    return "nothing";
  }

  std::string Scalar() const {
    if (!node_.IsScalar()) Fail(absl::StrCat("expected a value, got ", Shown()));
    return node_.Scalar();
  }
  std::string String() const { return Scalar(); }

  uint64_t Uint() const {
    const std::string text = Scalar();
    uint64_t v = 0;
    bool ok = false;
    if (absl::StartsWithIgnoreCase(text, "0x")) {
      ok = text.size() > 2 && absl::SimpleHexAtoi(absl::string_view(text).substr(2), &v);
    } else {
      ok = !text.empty() && text[0] != '-' && text[0] != '+' && absl::SimpleAtoi(text, &v);
    }
    if (!ok) Fail(absl::StrCat("expected a non-negative integer (e.g. 7 or 0x1a), got ", Shown()));
    return v;
  }

  uint64_t Size() const {
    const std::string text = Scalar();
    absl::string_view s = absl::StripAsciiWhitespace(text);
    static const std::pair<const char*, uint64_t> kUnits[] = {
        {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
        {"K", 1ull << 10},   {"M", 1ull << 20},   {"G", 1ull << 30},   {"T", 1ull << 40},
        {"k", 1ull << 10},   {"m", 1ull << 20},   {"g", 1ull << 30},   {"t", 1ull << 40}};
    uint64_t mult = 1;
    for (const auto& [unit, m] : kUnits) {
      if (absl::EndsWith(s, unit)) {
        mult = m;
        s.remove_suffix(strlen(unit));
        s = absl::StripTrailingAsciiWhitespace(s);
        break;
      }
    }
    uint64_t v = 0;
    bool ok = false;
    if (absl::StartsWithIgnoreCase(s, "0x")) {
      ok = s.size() > 2 && absl::SimpleHexAtoi(s.substr(2), &v);
    } else {
      ok = !s.empty() && s[0] != '-' && s[0] != '+' && absl::SimpleAtoi(s, &v);
    }
    if (!ok || (v != 0 && v > ~uint64_t{0} / mult)) {
      Fail(absl::StrCat("expected a size (e.g. 4096, 64M, 2 GiB), got ", Shown()));
    }
    return v * mult;
  }

  bool Bool() const {
    const std::string text = absl::AsciiStrToLower(Scalar());
    if (text == "true" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "no" || text == "off") return false;
    Fail(absl::StrCat("expected true or false, got ", Shown()));
  }

  double Probability() const {
    double v = 0;
    if (!absl::SimpleAtod(Scalar(), &v) || !(v >= 0 && v <= 1)) {
      Fail(absl::StrCat("expected a probability between 0 and 1, got ", Shown()));
    }
    return v;
  }

  // One of |choices|; the message lists them.
  std::string Choice(const std::vector<std::string>& choices) const {
    const std::string v = Scalar();
    if (std::find(choices.begin(), choices.end(), v) != choices.end()) return v;
    Fail(absl::StrCat("expected one of ", absl::StrJoin(choices, ", "), "; got ", Shown()));
  }

  std::vector<Field> List() const {
    std::vector<Field> out;
    if (IsNull()) return out;
    if (!node_.IsSequence()) Fail(absl::StrCat("expected a list, got ", Shown()));
    for (size_t i = 0; i < node_.size(); ++i) {
      out.emplace_back(node_[i], absl::StrCat(path_, "[", i, "]"));
    }
    return out;
  }

 private:
  YAML::Node node_;
  std::string path_;
};

// A mapping whose keys must all be known: Get() marks a key used, Done()
// rejects the rest with a "did you mean" hint.
class MapReader {
 public:
  MapReader(const Field& field, std::vector<std::string> allowed)
      : field_(field), allowed_(std::move(allowed)) {
    if (!field.node().IsMap()) field.Fail(absl::StrCat("expected a mapping, got ", field.Shown()));
    for (auto it = field.node().begin(); it != field.node().end(); ++it) {
      const Field key(it->first, field.path());
      const std::string name = key.Scalar();
      const std::string path = field.path().empty() ? name : absl::StrCat(field.path(), ".", name);
      if (!entries_.emplace(name, Field(it->second, path)).second) {
        Field(it->first, path).Fail("duplicate field");
      }
      keys_.emplace_back(name, Field(it->first, path));
    }
  }

  bool Has(const std::string& key) const { return entries_.count(key) != 0; }
  // The field, or a null field (IsNull) with the right path when absent.
  Field Get(const std::string& key) {
    used_.insert(key);
    auto it = entries_.find(key);
    if (it != entries_.end()) return it->second;
    return Field(YAML::Node(), field_.path().empty() ? key : absl::StrCat(field_.path(), ".", key));
  }
  Field Require(const std::string& key) {
    Field f = Get(key);
    if (!Has(key)) field_.Fail(absl::StrCat("missing required field '", key, "'"));
    return f;
  }
  void Done() const {
    for (const auto& [name, key] : keys_) {
      if (std::find(allowed_.begin(), allowed_.end(), name) != allowed_.end()) continue;
      std::string hint;
      size_t best = 3;
      for (const std::string& a : allowed_) {
        const size_t d = EditDistance(name, a);
        if (d < best) {
          best = d;
          hint = absl::StrCat(" (did you mean '", a, "'?)");
        }
      }
      if (hint.empty()) hint = absl::StrCat(" (known: ", absl::StrJoin(allowed_, ", "), ")");
      key.Fail(absl::StrCat("unknown field '", name, "'", hint));
    }
  }
  const Field& field() const { return field_; }

 private:
  Field field_;
  std::vector<std::string> allowed_;
  std::map<std::string, Field> entries_;
  std::vector<std::pair<std::string, Field>> keys_;
  std::set<std::string> used_;
};

}  // namespace khosim::scenario

#endif  // KHOSIM_SIM_SCENARIO_YAML_FIELD_H_

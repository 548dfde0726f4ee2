// Scenario parsing and validation (see the header).
//
// yaml-cpp gives the syntax tree with a line/column mark on every node; this
// file walks it with a small reader that knows the field path it is at, so
// every message can say "<file>:<line>:<col>: <field>: <what>". yaml-cpp
// reports syntax errors by throwing, and the walk does the same internally
// (ScenarioError); both are turned into an absl::Status at the API edge.
// After the walk, Validate() checks what spans fields: references between
// files and boots, token uniqueness, and features this build lacks.
#include "khosim/scenario/scenario.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "khosim/abi/hugetlb_luo.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/abi/luo.h"
#include "khosim/abi/memfd_luo.h"
#include "khosim/machine/builtin_modules.h"

namespace khosim::scenario {
namespace {

// A parse or validation failure; |unsupported| marks a valid request this
// build cannot serve (reported as Unimplemented).
struct ScenarioError {
  SourcePos pos;
  std::string message;
  bool unsupported = false;
};

[[noreturn]] void Fail(const SourcePos& pos, std::string message, bool unsupported = false) {
  throw ScenarioError{pos, std::move(message), unsupported};
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

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

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// The value of the last |key|=value word of |cmdline|, as the kernel's
// command line parser takes it.
std::optional<std::string> CmdlineValue(absl::string_view cmdline, absl::string_view key) {
  std::optional<std::string> value;
  for (absl::string_view word : absl::StrSplit(cmdline, ' ', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&word, key) && absl::ConsumePrefix(&word, "=")) {
      value = std::string(word);
    }
  }
  return value;
}

// A list of module names: exactly the modules this kernel build has (an
// empty list builds none).
KernelBuild ParseHandlers(const Field& field) {
  const ModuleRegistry& registry = ModuleRegistry::Builtin();
  if (!field.node().IsSequence()) {
    field.Fail(absl::StrCat("expected a list of file handlers (e.g. [memfd, memfd-sparse]; known: ",
                            registry.Names(), "), got ", field.Shown()));
  }
  KernelBuild build;
  for (const Field& f : field.List()) {
    if (absl::Status s = registry.AddToBuild(f.Scalar(), &build); !s.ok()) {
      f.Fail(std::string(s.message()));
    }
  }
  return build;
}

MachineSpec ParseMachine(const Field& field) {
  MachineSpec m;
  if (field.IsNull()) return m;
  MapReader r(field, {"ram", "nodes", "page_size", "seed", "scrub", "handlers"});
  if (r.Has("ram")) {
    const Field f = r.Get("ram");
    m.ram = f.Size();
    if (m.ram < 256ull << 20) f.Fail("at least 256M of RAM is needed");
    if (m.ram > 64ull << 40) f.Fail("at most 64T of RAM");
  }
  if (r.Has("nodes")) {
    const Field f = r.Get("nodes");
    const uint64_t n = f.Uint();
    if (n < 1 || n > 64) f.Fail("expected 1 to 64 nodes");
    m.nodes = static_cast<int>(n);
  }
  if (r.Has("page_size")) {
    const Field f = r.Get("page_size");
    m.page_size = f.Size();
    if (m.page_size != 4096 && m.page_size != 16384 && m.page_size != 65536) {
      f.Fail(absl::StrCat("expected 4K, 16K or 64K, got ", f.Shown()));
    }
  }
  if (r.Has("seed")) m.seed = r.Get("seed").Uint();
  if (r.Has("scrub")) {
    m.scrub = r.Get("scrub").Choice({"poison", "inaccessible"}) == "poison"
                  ? mm::FreeMemoryPolicy::kPoison
                  : mm::FreeMemoryPolicy::kInaccessible;
  }
  if (r.Has("handlers")) m.handlers = ParseHandlers(r.Get("handlers"));
  r.Done();
  return m;
}

ContentSpec ParseContent(const Field& field) {
  ContentSpec c;
  if (field.IsNull()) return c;
  if (field.node().IsScalar()) {  // shorthand: "content: zeros"
    const std::string kind = field.Choice({"random", "zeros"});
    c.kind = kind == "random" ? ContentKind::kRandom : ContentKind::kZeros;
    return c;
  }
  MapReader r(field, {"generator", "seed", "pattern", "extents", "stride", "length"});
  const Field gen = r.Require("generator");
  const std::string kind = gen.Choice({"random", "pattern", "zeros", "sparse", "sampled"});
  c.kind = kind == "random"    ? ContentKind::kRandom
           : kind == "pattern" ? ContentKind::kPattern
           : kind == "zeros"   ? ContentKind::kZeros
           : kind == "sparse"  ? ContentKind::kSparse
                               : ContentKind::kSampled;
  const bool has_data_extents = c.kind == ContentKind::kSparse || c.kind == ContentKind::kSampled;
  if (r.Has("seed")) {
    const Field f = r.Get("seed");
    if (c.kind != ContentKind::kRandom && !has_data_extents) {
      f.Fail(
          absl::StrCat("a seed applies to the random, sparse and sampled generators, not ", kind));
    }
    c.seed = f.Uint();
  }
  if (r.Has("pattern")) {
    const Field f = r.Get("pattern");
    if (c.kind != ContentKind::kPattern && !has_data_extents) {
      f.Fail(absl::StrCat("a pattern applies to the pattern, sparse and sampled generators, not ",
                          kind));
    }
    c.pattern = f.String();
    if (c.pattern.empty()) f.Fail("the pattern is empty");
  } else if (c.kind == ContentKind::kPattern) {
    r.field().Fail("missing required field 'pattern' for generator pattern");
  }
  for (const char* key : {"stride", "length"}) {
    if (!r.Has(key)) continue;
    const Field f = r.Get(key);
    if (c.kind != ContentKind::kSampled) {
      f.Fail(absl::StrCat(key, " applies to the sampled generator only"));
    }
    const uint64_t v = f.Size();
    if (v == 0) f.Fail(absl::StrCat("a ", key, " of 0"));
    if (absl::string_view(key) == "stride") {
      c.stride = v;
    } else {
      c.length = v;
    }
  }
  if (c.kind == ContentKind::kSampled && c.stride == 0) {
    r.field().Fail("missing required field 'stride' for generator sampled");
  }
  if (r.Has("extents")) {
    const Field f = r.Get("extents");
    if (!has_data_extents) f.Fail("extents apply to the sparse and sampled generators only");
    for (const Field& e : f.List()) {
      MapReader er(e, {"offset", "length"});
      c.extents.push_back(Extent{er.Require("offset").Size(), er.Require("length").Size()});
      if (c.extents.back().length == 0) e.Fail("an extent of length 0");
      er.Done();
    }
  } else if (c.kind == ContentKind::kSparse) {
    r.field().Fail("missing required field 'extents' for generator sparse");
  }
  r.Done();
  return c;
}

FileSpec ParseFile(const std::string& name, const Field& field, const MachineSpec& machine) {
  FileSpec f;
  f.name = name;
  f.pos = field.Pos();
  MapReader r(field, {"kind", "size", "page_size", "content"});
  const Field kind = r.Require("kind");
  f.kind = kind.Choice({"memfd", "hugetlb"}) == "memfd" ? FileKind::kMemfd : FileKind::kHugetlb;
  const Field size = r.Require("size");
  f.size = size.Size();
  if (f.size == 0) size.Fail("a file of size 0 has nothing to verify; give it a size");
  const std::vector<uint64_t> huge_sizes = HugePageSizes(machine.page_size);
  if (r.Has("page_size")) {
    const Field ps = r.Get("page_size");
    f.page_size = ps.Size();
    if (f.kind == FileKind::kHugetlb &&
        std::find(huge_sizes.begin(), huge_sizes.end(), f.page_size) == huge_sizes.end()) {
      ps.Fail(absl::StrFormat("expected %s or %s (the huge page sizes with %s base pages), got %s",
                              CmdlineSize(huge_sizes[0]), CmdlineSize(huge_sizes[1]),
                              FormatBytes(machine.page_size), ps.Shown()));
    }
    if (!IsPowerOfTwo(f.page_size)) ps.Fail("a page size is a power of two");
  } else if (f.kind == FileKind::kHugetlb) {
    // What MFD_HUGETLB without a size flag gives on a default command line.
    f.page_size = huge_sizes[0];
  }
  f.content = ParseContent(r.Get("content"));
  r.Done();

  // Content is written (and sampled) in base pages for both kinds.
  const uint64_t page = machine.page_size;
  if (f.kind == FileKind::kMemfd && f.page_size != 0 && f.page_size != machine.page_size) {
    r.Get("page_size")
        .Fail(absl::StrFormat("a memfd uses the machine's base pages (%s); larger folios are not "
                              "supported by this build (kind: hugetlb has 2M and 1G pages)",
                              FormatBytes(machine.page_size)),
              /*unsupported=*/true);
  }
  if (f.kind == FileKind::kHugetlb && f.size % f.page_size != 0) {
    size.Fail(absl::StrFormat(
        "%s is not a whole number of %s huge pages (a hugetlb file's size is; ftruncate would "
        "fail with -EINVAL)",
        FormatBytes(f.size), FormatBytes(f.page_size)));
  }
  if (f.size % page != 0) {
    size.Fail(absl::StrFormat("%d bytes is not a multiple of the page size (%s)", f.size,
                              FormatBytes(page)));
  }
  if (f.content.kind == ContentKind::kSampled) {
    // A copy: Get returns a temporary Field, and node() refers into it.
    const YAML::Node content = r.Get("content").node();
    const std::string where = absl::StrCat(field.path(), ".content.");
    const Field stride(content["stride"], where + "stride");
    const bool length_given = content["length"].IsDefined();
    if (!length_given) f.content.length = page;
    if (f.content.length > f.content.stride || f.content.stride % f.content.length != 0) {
      (length_given ? Field(content["length"], where + "length") : stride)
          .Fail(absl::StrFormat(
              "the block length (%s%s) must divide the stride (%s)", FormatBytes(f.content.length),
              length_given ? "" : ", the page size", FormatBytes(f.content.stride)));
    }
    // The blocks become a list of extents: keep it to what a run can hold.
    constexpr uint64_t kMaxBlocks = uint64_t{1} << 24;
    const uint64_t blocks = f.size / f.content.stride + (f.size % f.content.stride != 0 ? 1 : 0);
    if (blocks > kMaxBlocks) {
      stride.Fail(absl::StrFormat("%d blocks for a file of %s; at most %d (use a larger stride)",
                                  blocks, FormatBytes(f.size), kMaxBlocks));
    }
  }
  for (size_t i = 0; i < f.content.extents.size(); ++i) {
    const Extent& e = f.content.extents[i];
    if (e.offset > f.size || e.length > f.size - e.offset) {
      Field(YAML::Node(), absl::StrCat(field.path(), ".content.extents[", i, "]"))
          .Fail(absl::StrFormat("extent [%d, +%d) is past the end of the file (%d bytes)", e.offset,
                                e.length, f.size));
    }
  }
  return f;
}

FileRef ParseFileRef(const Field& field, bool incoming) {
  FileRef ref;
  ref.pos = field.Pos();
  std::vector<std::string> allowed = {"token", "file"};
  allowed.push_back(incoming ? "verify" : "omit");
  MapReader r(field, allowed);
  ref.token = r.Require("token").Uint();
  ref.file = r.Require("file").String();
  if (incoming && r.Has("verify")) {
    const std::string v = r.Get("verify").Choice({"full", "sample", "none"});
    ref.verify = v == "full"     ? VerifyMode::kFull
                 : v == "sample" ? VerifyMode::kSample
                                 : VerifyMode::kNone;
  }
  if (!incoming && r.Has("omit")) ref.omit = r.Get("omit").Bool();
  r.Done();
  return ref;
}

SessionSpec ParseSession(const Field& field) {
  SessionSpec s;
  s.pos = field.Pos();
  MapReader r(field, {"name", "retrieve", "finish", "preserve"});
  const Field name = r.Require("name");
  s.name = name.String();
  if (s.name.empty() || s.name.size() >= abi::kLiveupdateSessionNameLength) {
    name.Fail(
        absl::StrFormat("a session name is 1 to %d bytes", abi::kLiveupdateSessionNameLength - 1));
  }
  if (r.Has("retrieve")) {
    s.retrieve.emplace();
    for (const Field& f : r.Get("retrieve").List()) s.retrieve->push_back(ParseFileRef(f, true));
  }
  if (r.Has("finish")) {
    const Field f = r.Get("finish");
    s.finish = f.Bool();
    if (!s.retrieve) f.Fail("finish applies to a retrieved session; add 'retrieve'");
  }
  if (r.Has("preserve")) {
    s.preserve.emplace();
    for (const Field& f : r.Get("preserve").List()) s.preserve->push_back(ParseFileRef(f, false));
  }
  if (!s.retrieve && !s.preserve) {
    field.Fail(
        "a session needs 'retrieve' (from the previous kernel), 'preserve' (for the next), or "
        "both");
  }
  r.Done();
  return s;
}

BootSpec ParseBoot(const Field& field) {
  BootSpec b;
  b.pos = field.Pos();
  if (field.IsNull()) return b;
  MapReader r(field, {"cmdline", "kho", "luo", "handlers", "processes"});
  if (r.Has("cmdline")) b.cmdline = r.Get("cmdline").String();
  if (r.Has("handlers")) {
    b.handlers = ParseHandlers(r.Get("handlers"));
    b.handlers_pos = r.Get("handlers").Pos();
  }
  if (r.Has("kho")) {
    const Field f = r.Get("kho");
    const std::string v =
        f.Choice({abi::kKhoCompatV1, abi::kKhoCompatV2, abi::kKhoCompatV3, abi::kKhoCompatV4});
    if (v != abi::kKhoCompatV1 && v != abi::kKhoCompatV4) {
      f.Fail(absl::StrCat("KHO ABI profile ", v, " is not supported by this build (supported: ",
                          abi::kKhoCompatV1, ", ", abi::kKhoCompatV4, ")"),
             /*unsupported=*/true);
    }
    if (absl::StrContains(b.cmdline, "khosim.kho_profile=")) {
      f.Fail("give the KHO profile either here or as khosim.kho_profile= in cmdline");
    }
    b.kho_profile = v;
    b.kho_profile_pos = f.Pos();
  } else if (std::optional<std::string> v = CmdlineValue(b.cmdline, "khosim.kho_profile")) {
    // The kernel reads it from the command line; the report and the checks
    // below need it too. An unknown value is the kernel's to warn about
    // (it keeps its build's profile).
    if (*v == abi::kKhoCompatV1 || *v == abi::kKhoCompatV4) {
      b.kho_profile = *v;
      b.kho_profile_pos = r.Get("cmdline").Pos();
    }
  }
  if (r.Has("luo")) {
    b.luo_profile = r.Get("luo").Choice({"7.2", "7.3"}) == "7.2" ? luo::LuoProfile::k7_2
                                                                 : luo::LuoProfile::k7_3;
    if (absl::StrContains(b.cmdline, "khosim.luo_profile=")) {
      r.Get("luo").Fail("give the LUO profile either here or as khosim.luo_profile= in cmdline");
    }
  }
  for (const Field& p : r.Get("processes").List()) {
    ProcessSpec ps;
    ps.pos = p.Pos();
    MapReader pr(p, {"name", "sessions"});
    ps.name = pr.Require("name").String();
    if (ps.name.empty()) pr.Get("name").Fail("a process name is not empty");
    for (const Field& s : pr.Get("sessions").List()) {
      ps.sessions.push_back(ParseSession(s));
      // A kho-v1 kernel cannot host LUO (its subtrees carry no blob size):
      // LUO stays disabled there and every session call would fail.
      if (b.kho_profile == abi::kKhoCompatV1) {
        s.Fail(absl::StrFormat(
            "LUO is disabled on a kho-v1 kernel (%s: %s), so this boot can have no sessions; use "
            "kho: kho-v4, or a 'program: {name: kho}' scenario for KHO-only workloads",
            b.kho_profile_pos.field.empty() ? std::string("kho") : b.kho_profile_pos.field,
            b.kho_profile));
      }
    }
    pr.Done();
    b.processes.push_back(std::move(ps));
  }
  r.Done();
  return b;
}

FaultSpec ParseFault(const Field& field, int boots) {
  FaultSpec f;
  f.pos = field.Pos();
  MapReader r(field, {"point", "nth", "once", "probability", "boot", "kexec"});
  const int modes = r.Has("nth") + r.Has("once") + r.Has("probability");
  if (modes != 1) field.Fail("a fault needs exactly one of 'nth', 'once', 'probability'");
  if (r.Has("point")) {
    const Field p = r.Get("point");
    f.point = p.String();
    const std::vector<std::string> known = KnownFaultPoints();
    if (std::find(known.begin(), known.end(), f.point) == known.end()) {
      p.Fail(absl::StrCat("unknown fault point \"", f.point,
                          "\" (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  if (r.Has("nth")) {
    const Field n = r.Get("nth");
    f.nth = n.Uint();
    if (f.nth == 0) n.Fail("nth counts from 1");
    f.kind = f.point.empty() ? FaultSpec::kNthAny : FaultSpec::kNth;
  } else {
    if (f.point.empty())
      field.Fail("missing required field 'point' (only 'nth' may fail any point)");
    if (r.Has("once")) {
      const Field o = r.Get("once");
      if (!o.Bool()) o.Fail("once: false plans nothing; remove the fault");
      f.kind = FaultSpec::kOnce;
    } else {
      f.kind = FaultSpec::kProbability;
      f.probability = r.Get("probability").Probability();
    }
  }
  if (r.Has("boot") && r.Has("kexec")) field.Fail("give 'boot' or 'kexec', not both");
  if (r.Has("boot")) {
    const Field b = r.Get("boot");
    f.arm = {FaultArm::kBoot, static_cast<int>(b.Uint())};
    if (f.arm.index < 1 || f.arm.index > boots) {
      b.Fail(absl::StrFormat("there are boots 1 to %d", boots));
    }
  }
  if (r.Has("kexec")) {
    const Field k = r.Get("kexec");
    f.arm = {FaultArm::kKexec, static_cast<int>(k.Uint())};
    if (f.arm.index < 1 || f.arm.index >= boots) {
      k.Fail(boots > 1 ? absl::StrFormat("there are kexecs 1 to %d", boots - 1)
                       : std::string("this scenario has no kexec"));
    }
  }
  r.Done();
  return f;
}

ProgramSpec ParseProgram(const Field& field) {
  ProgramSpec p;
  MapReader r(field, {"name", "preserve_per_boot", "skip_preserve_folio"});
  p.name = r.Require("name").Choice({"kho", "kexec-scrub"});
  if (r.Has("preserve_per_boot")) {
    const Field f = r.Get("preserve_per_boot");
    if (p.name != "kho") f.Fail("applies to program kho only");
    p.preserve_per_boot = f.Size();
  }
  if (r.Has("skip_preserve_folio")) {
    const Field f = r.Get("skip_preserve_folio");
    if (p.name != "kho") f.Fail("applies to program kho only");
    p.skip_preserve_folio = f.Bool();
  }
  r.Done();
  return p;
}

// A hugetlb pool as a boot's command line asks for it.
struct PoolRequest {
  uint64_t size = 0;
  bool registered = false;  // an hstate exists: MFD_HUGETLB of this size works
  uint64_t pages = 0;       // hugepages=
};

// The pools |cmdline| gives, one per HugePageSizes(page_size) entry, read
// as mm::Hugetlb::ParseCmdline reads them: hugepagesz= selects and
// registers a size, hugepages= sets the count of the selected one (of the
// default size, the PMD size unless default_hugepagesz= says otherwise,
// before any hugepagesz=); the default size is always registered; words
// about unsupported sizes are ignored.
std::vector<PoolRequest> PoolsOf(absl::string_view cmdline, uint64_t page_size) {
  std::vector<PoolRequest> pools;
  for (uint64_t size : HugePageSizes(page_size)) pools.push_back({.size = size});
  pools[0].registered = true;
  int default_pool = 0;
  int selected = -1;  // -2: an unsupported hugepagesz=, whose hugepages= is ignored
  for (absl::string_view word : absl::StrSplit(cmdline, ' ', absl::SkipEmpty())) {
    const size_t eq = word.find('=');
    if (eq == absl::string_view::npos) continue;
    const absl::string_view key = word.substr(0, eq);
    const absl::string_view value = word.substr(eq + 1);
    if (key == "hugepagesz" || key == "default_hugepagesz") {
      uint64_t bytes = 0;
      int found = -1;
      for (size_t i = 0; i < pools.size(); ++i) {
        if (MemParse(value, &bytes) && bytes == pools[i].size) found = static_cast<int>(i);
      }
      if (found < 0) {
        if (key == "hugepagesz") selected = -2;
        continue;
      }
      (key == "hugepagesz" ? selected : default_pool) = found;
      pools[static_cast<size_t>(found)].registered = true;
    } else if (key == "hugepages") {
      uint64_t n = 0;
      if (selected == -2 || !absl::SimpleAtoi(value, &n)) continue;
      pools[static_cast<size_t>(selected < 0 ? default_pool : selected)].pages = n;
    }
  }
  return pools;
}

using Creation = std::pair<const FileRef*, const FileSpec*>;

// Boot |bi| creates |created| (in order): the hugetlb pools its command
// line asks for must hold every huge page of its hugetlb files, since
// preservation allocates the holes too. After a kexec the pool is what the
// kernel allocated at boot (hugepages= less the pages the previous kernel's
// hugetlb files hold, which the hugetlb handler leaves out) plus the pages
// of files a finished session held but nobody retrieved; retrieved files
// bring their own pages.
void CheckHugetlbPools(const Scenario& s, size_t bi, const std::vector<Creation>& created) {
  const BootSpec& boot = s.boots[bi];
  const std::vector<PoolRequest> pools = PoolsOf(boot.EffectiveCmdline(), s.machine.page_size);
  std::map<uint64_t, uint64_t> left_out;  // by huge page size
  std::map<uint64_t, uint64_t> returned;
  if (bi > 0 && s.HandlersOf(bi).Has(kHugetlbModule)) {
    for (const ProcessSpec& p : s.boots[bi - 1].processes) {
      for (const SessionSpec& out : p.sessions) {
        if (!out.preserve) continue;
        const SessionSpec* in = nullptr;
        for (const ProcessSpec& q : boot.processes) {
          for (const SessionSpec& sess : q.sessions) {
            if (sess.name == out.name && sess.retrieve) in = &sess;
          }
        }
        for (const FileRef& ref : *out.preserve) {
          const FileSpec* file = s.FindFile(ref.file);
          if (ref.omit || file->kind != FileKind::kHugetlb) continue;
          const uint64_t pages = file->size / file->page_size;
          left_out[file->page_size] += pages;
          if (in == nullptr || !in->finish) continue;
          const bool retrieved =
              std::any_of(in->retrieve->begin(), in->retrieve->end(),
                          [&](const FileRef& r) { return r.token == ref.token; });
          if (!retrieved) returned[file->page_size] += pages;
        }
      }
    }
  }
  const std::string cmdline_field = boot.pos.field.empty()
                                        ? absl::StrCat("boots[", bi, "].cmdline")
                                        : absl::StrCat(boot.pos.field, ".cmdline");
  std::map<uint64_t, uint64_t> used;
  for (const Creation& creation : created) {
    const FileRef* ref = creation.first;
    const FileSpec* file = creation.second;
    if (file->kind != FileKind::kHugetlb) continue;
    const PoolRequest& pool = *std::find_if(pools.begin(), pools.end(), [&](const PoolRequest& p) {
      return p.size == file->page_size;
    });
    const uint64_t pages = file->size / file->page_size;
    const uint64_t needed = used[file->page_size] += pages;
    const uint64_t kept = std::min(pool.pages, left_out[file->page_size]);
    const uint64_t available = pool.pages - kept + returned[file->page_size];
    if (pool.registered && needed <= available) continue;
    // The least hugepages= that leaves |needed| pages after the left-out ones.
    const uint64_t minimum = needed + left_out[file->page_size] - returned[file->page_size];
    const std::string size = CmdlineSize(file->page_size);
    const std::string what = absl::StrFormat(
        "file \"%s\" (hugetlb, %s pages) is created in boot %d and needs %d huge page(s)%s",
        file->name, FormatBytes(file->page_size), bi + 1, pages,
        needed > pages ? absl::StrFormat(", %d with the files created before it", needed) : "");
    if (!pool.registered || pool.pages == 0) {
      Fail(ref->pos, absl::StrFormat("%s, but boot %d's command line (\"%s\") configures no %s "
                                     "hugetlb pool; add \"hugepagesz=%s hugepages=%d\" to %s",
                                     what, bi + 1, boot.EffectiveCmdline(),
                                     FormatBytes(file->page_size), size, minimum, cmdline_field));
    }
    Fail(ref->pos,
         absl::StrFormat("%s, but boot %d's %s pool has %d (hugepagesz=%s hugepages=%d%s); raise "
                         "hugepages= for %s in %s to at least %d",
                         what, bi + 1, FormatBytes(file->page_size), available, size, pool.pages,
                         kept != 0 || returned[file->page_size] != 0
                             ? absl::StrFormat(", less %d left out for the previous kernel's "
                                               "preserved pages, plus %d returned at finish",
                                               kept, returned[file->page_size])
                             : "",
                         size, cmdline_field, minimum));
  }
}

// Cross-field checks: who holds which file in which boot.
void Validate(const Scenario& s, const Field& root) {
  if (s.program) {
    if (!s.files.empty()) Fail(root.Pos(), "a scenario with 'program' has no 'files'");
    for (const BootSpec& b : s.boots) {
      if (!b.processes.empty()) {
        Fail(b.pos, "a scenario with 'program' runs no processes of its own");
      }
      // The program kexecs by itself, always into the machine's build.
      if (b.handlers) {
        Fail(b.handlers_pos,
             "a scenario with 'program' builds every kernel with machine.handlers; per-boot "
             "handlers need processes");
      }
    }
    return;
  }
  // Files held by some process at the end of the previous boot's userspace,
  // and at the end of this one: a file reaches boot N+1 only through a
  // preserve in boot N and a retrieve in boot N+1.
  std::set<std::string> ever_created;
  for (size_t bi = 0; bi < s.boots.size(); ++bi) {
    const BootSpec& boot = s.boots[bi];
    std::set<std::string> process_names;
    std::map<std::string, std::string> holder;  // file -> process, this boot
    std::set<std::string> outgoing_sessions;
    std::set<std::string> retrieved_sessions;
    std::vector<Creation> created;
    for (const ProcessSpec& p : boot.processes) {
      if (!process_names.insert(p.name).second) {
        Fail(p.pos, absl::StrCat("two processes named \"", p.name, "\" in this boot"));
      }
      for (const SessionSpec& sess : p.sessions) {
        if (sess.retrieve) {
          if (bi == 0) {
            Fail(sess.pos, "the cold boot has no previous kernel to retrieve sessions from");
          }
          if (!retrieved_sessions.insert(sess.name).second) {
            Fail(sess.pos,
                 absl::StrCat("session \"", sess.name, "\" is retrieved twice in this boot"));
          }
          std::set<uint64_t> tokens;
          for (const FileRef& ref : *sess.retrieve) {
            if (s.FindFile(ref.file) == nullptr) {
              Fail(ref.pos, absl::StrCat("no file \"", ref.file, "\" in 'files'"));
            }
            if (!tokens.insert(ref.token).second) {
              Fail(ref.pos,
                   absl::StrFormat("token 0x%x is retrieved twice from this session", ref.token));
            }
            auto [it, fresh] = holder.emplace(ref.file, p.name);
            if (!fresh) {
              Fail(ref.pos, absl::StrCat("file \"", ref.file, "\" is already held by process \"",
                                         it->second, "\" in this boot"));
            }
          }
        }
        if (sess.preserve) {
          if (!outgoing_sessions.insert(sess.name).second) {
            Fail(sess.pos,
                 absl::StrCat("session \"", sess.name, "\" is created twice in this boot"));
          }
          std::set<uint64_t> tokens;
          for (const FileRef& ref : *sess.preserve) {
            const FileSpec* file = s.FindFile(ref.file);
            if (file == nullptr)
              Fail(ref.pos, absl::StrCat("no file \"", ref.file, "\" in 'files'"));
            if (!tokens.insert(ref.token).second) {
              Fail(ref.pos,
                   absl::StrFormat("token 0x%x is preserved twice in this session", ref.token));
            }
            auto it = holder.find(ref.file);
            if (it != holder.end() && it->second != p.name) {
              Fail(ref.pos, absl::StrCat("file \"", ref.file, "\" is held by process \"",
                                         it->second, "\", not \"", p.name, "\", in this boot"));
            }
            if (it == holder.end()) {
              if (ever_created.count(ref.file) != 0) {
                Fail(ref.pos, absl::StrCat("file \"", ref.file,
                                           "\" was created in an earlier boot; retrieve it in this "
                                           "boot before preserving it again"));
              }
              holder.emplace(ref.file, p.name);
              created.emplace_back(&ref, file);
            }
            if (sess.retrieve && !sess.finish) {
              for (const FileRef& in : *sess.retrieve) {
                if (in.file == ref.file) {
                  Fail(ref.pos,
                       "a retrieved file can be preserved again only after its session "
                       "is finished (finish: true)");
                }
              }
            }
          }
        }
      }
    }
    CheckHugetlbPools(s, bi, created);
    for (const auto& [file, process] : holder) ever_created.insert(file);
  }
}

Scenario ParseRoot(const YAML::Node& doc, absl::string_view source) {
  Scenario s;
  s.source = std::string(source);
  const Field root(doc, "");
  if (root.IsNull()) Fail(SourcePos{1, 1, ""}, "the scenario is empty");
  MapReader r(root,
              {"version", "name", "description", "machine", "files", "boots", "faults", "program"});
  if (r.Has("version")) {
    const Field v = r.Get("version");
    if (v.Uint() != 1) v.Fail("this build reads scenario format version 1", true);
  }
  if (r.Has("name")) s.name = r.Get("name").String();
  if (r.Has("description")) s.description = r.Get("description").String();
  s.machine = ParseMachine(r.Get("machine"));
  const Field files = r.Get("files");
  if (!files.IsNull()) {
    MapReader fr(files, {});
    for (auto it = files.node().begin(); it != files.node().end(); ++it) {
      const std::string name = Field(it->first, files.path()).Scalar();
      s.files.push_back(ParseFile(name, fr.Get(name), s.machine));
    }
  }
  const Field boots = r.Require("boots");
  for (const Field& b : boots.List()) s.boots.push_back(ParseBoot(b));
  if (s.boots.empty()) boots.Fail("at least one boot (the cold boot) is needed");
  if (s.boots.size() > 65) boots.Fail("at most 64 kexecs");
  for (const Field& f : r.Get("faults").List()) {
    s.faults.push_back(ParseFault(f, static_cast<int>(s.boots.size())));
  }
  if (r.Has("program")) s.program = ParseProgram(r.Get("program"));
  r.Done();
  if (s.name.empty()) s.name = std::string(source);
  Validate(s, root);
  return s;
}

constexpr char kDefaultScenario[] =
    R"yaml(# The default: five VMs, each VM's files in one LUO session, across two live
# updates. Three VMs' guest RAM lives in memfds; vm3's in a hugetlb memfd of
# 2 MiB pages and vm4's in one 1 GiB page (the kernels are built with the
# hugetlb handler, and their command lines give the pools). In each update
# the running VMMs preserve their sessions, the kernel kexecs, and new VMMs
# retrieve the sessions, verify the bytes, finish them, and (in boot 2)
# preserve the same memory again for the next update. The next kernel
# leaves the preserved huge pages out of its pools, so they are not
# allocated twice. Nothing of an old kernel may be left unclaimed.
version: 1
name: default
description: five VMs with memfd and hugetlb guest RAM in LUO sessions across two kexecs
machine: {ram: 6G, nodes: 2, page_size: 4K, seed: 1, scrub: poison, handlers: [memfd, hugetlb]}
files:
  vm0-ram: {kind: memfd, size: 96M, content: {generator: random}}
  vm1-ram: {kind: memfd, size: 96M, content: {generator: random}}
  vm1-rom: {kind: memfd, size: 2M, content: {generator: pattern, pattern: "OVMF"}}
  vm2-ram:
    kind: memfd
    size: 64M
    content:
      generator: sparse
      extents: [{offset: 0, length: 8M}, {offset: 32M, length: 4M}, {offset: 60M, length: 4M}]
  vm3-ram: {kind: hugetlb, page_size: 2M, size: 32M, content: {generator: random}}
  vm4-ram:                      # one 1 GiB page, touched here and there
    kind: hugetlb
    page_size: 1G
    size: 1G
    content: {generator: sampled, stride: 2M, extents: [{offset: 0, length: 8M}]}
boots:
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=24 hugepagesz=1G hugepages=1
    processes:
      - name: vmm-vm0
        sessions: [{name: vm0, preserve: [{token: 0x10, file: vm0-ram}]}]
      - name: vmm-vm1
        sessions:
          - name: vm1
            preserve: [{token: 0x10, file: vm1-ram}, {token: 0x11, file: vm1-rom}]
      - name: vmm-vm2
        sessions: [{name: vm2, preserve: [{token: 0x10, file: vm2-ram}]}]
      - name: vmm-vm3
        sessions: [{name: vm3, preserve: [{token: 0x10, file: vm3-ram}]}]
      - name: vmm-vm4
        sessions: [{name: vm4, preserve: [{token: 0x10, file: vm4-ram}]}]
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=24 hugepagesz=1G hugepages=1
    processes:
      - name: vmm-vm0
        sessions:
          - name: vm0
            retrieve: [{token: 0x10, file: vm0-ram}]
            preserve: [{token: 0x10, file: vm0-ram}]
      - name: vmm-vm1
        sessions:
          - name: vm1
            retrieve: [{token: 0x10, file: vm1-ram}, {token: 0x11, file: vm1-rom, verify: sample}]
            preserve: [{token: 0x10, file: vm1-ram}, {token: 0x11, file: vm1-rom}]
      - name: vmm-vm2
        sessions:
          - name: vm2
            retrieve: [{token: 0x10, file: vm2-ram, verify: sample}]
            preserve: [{token: 0x10, file: vm2-ram}]
      - name: vmm-vm3
        sessions:
          - name: vm3
            retrieve: [{token: 0x10, file: vm3-ram}]
            preserve: [{token: 0x10, file: vm3-ram}]
      - name: vmm-vm4
        sessions:
          - name: vm4
            retrieve: [{token: 0x10, file: vm4-ram, verify: sample}]
            preserve: [{token: 0x10, file: vm4-ram}]
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=24 hugepagesz=1G hugepages=1
    processes:
      - name: vmm-vm0
        sessions: [{name: vm0, retrieve: [{token: 0x10, file: vm0-ram}]}]
      - name: vmm-vm1
        sessions:
          - name: vm1
            retrieve: [{token: 0x10, file: vm1-ram}, {token: 0x11, file: vm1-rom}]
      - name: vmm-vm2
        sessions: [{name: vm2, retrieve: [{token: 0x10, file: vm2-ram}]}]
      - name: vmm-vm3
        sessions: [{name: vm3, retrieve: [{token: 0x10, file: vm3-ram}]}]
      - name: vmm-vm4
        sessions: [{name: vm4, retrieve: [{token: 0x10, file: vm4-ram, verify: sample}]}]
)yaml";

constexpr char kSessionsScenario[] =
    R"yaml(# LUO sessions without files across two kexecs, the second into a kernel
# with the 7.2 LUO rules: sessions are created, carried, retrieved and
# finished; nothing may leak.
version: 1
name: sessions
description: empty LUO sessions across a 7.3 -> 7.3 -> 7.2 chain of kexecs
machine: {ram: 1G, nodes: 1, seed: 3}
boots:
  - processes:
      - name: agent
        sessions: [{name: a, preserve: []}, {name: b, preserve: []}]
  - processes:
      - name: agent
        sessions:
          - {name: a, retrieve: [], preserve: []}
          - {name: b, retrieve: []}
  - luo: "7.2"
    processes:
      - name: agent
        sessions: [{name: a, retrieve: []}]
)yaml";

constexpr char kKhoScenario[] =
    R"yaml(# KHO only: each boot preserves 64 MiB of random-order folios, a vmalloc
# index of them and a checksummed record in a KHO subtree, then kexecs; the
# next kernel restores and verifies every byte and checks that a folio it
# was not told about is gone. Three hops.
version: 1
name: kho
description: KHO folios, a vmalloc index and a subtree across three kexecs
machine: {ram: 4G, nodes: 2, seed: 1}
boots: [{cmdline: kho=on}, {cmdline: kho=on}, {cmdline: kho=on}, {cmdline: kho=on}]
program: {name: kho, preserve_per_boot: 64M}
)yaml";

constexpr char kKexecScrubScenario[] =
    R"yaml(# Without KHO nothing survives a kexec: folios written in one boot must read
# back as scrubbed in the next, twice.
version: 1
name: kexec-scrub
description: nothing written in one boot is readable in the next
machine: {ram: 1G, nodes: 1, seed: 1}
boots: [{cmdline: ""}, {cmdline: ""}, {cmdline: ""}]
program: {name: kexec-scrub}
)yaml";

constexpr char kDataLossScenario[] =
    R"yaml(# A deliberate data loss: the VMM forgets to preserve its ROM file, and the
# next kernel's VMM expects it. `khosim run data-loss` must fail (exit 1).
version: 1
name: data-loss
description: a VM's second file is not preserved; the next boot must notice
machine: {ram: 1G, nodes: 1, seed: 5}
files:
  ram: {kind: memfd, size: 16M}
  rom: {kind: memfd, size: 1M, content: {generator: pattern, pattern: "ROM!"}}
boots:
  - processes:
      - name: vmm
        sessions:
          - name: vm0
            preserve: [{token: 1, file: ram}, {token: 2, file: rom, omit: true}]
  - processes:
      - name: vmm
        sessions:
          - name: vm0
            retrieve: [{token: 1, file: ram}, {token: 2, file: rom}]
)yaml";

const std::vector<std::pair<std::string, const char*>>& Builtins() {
  static const auto* builtins =
      new std::vector<std::pair<std::string, const char*>>{{"default", kDefaultScenario},
                                                           {"sessions", kSessionsScenario},
                                                           {"kho", kKhoScenario},
                                                           {"kexec-scrub", kKexecScrubScenario},
                                                           {"data-loss", kDataLossScenario}};
  return *builtins;
}

}  // namespace

absl::string_view FileKindName(FileKind kind) {
  return kind == FileKind::kMemfd ? "memfd" : "hugetlb";
}

std::vector<uint64_t> HugePageSizes(uint64_t page_size) {
  // One page-table level maps page_size / 8 entries.
  const int level_bits = __builtin_ctzll(page_size) - 3;
  return {page_size << level_bits, page_size << (2 * level_bits)};
}

std::string CmdlineSize(uint64_t bytes) {
  static const std::pair<char, int> kUnits[] = {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}};
  for (const auto& [unit, shift] : kUnits) {
    if (bytes != 0 && bytes % (uint64_t{1} << shift) == 0) {
      return absl::StrCat(bytes >> shift, std::string(1, unit));
    }
  }
  return absl::StrCat(bytes);
}

std::vector<HandlerInfo> BuiltHandlers(const KernelBuild& build) {
  std::vector<HandlerInfo> out;
  for (const KernelModule* m : ModuleRegistry::Builtin().Modules(build)) {
    out.push_back({m->name, m->compatibles.empty() ? "" : m->compatibles.front()});
  }
  return out;
}

KernelBuild Scenario::HandlersOf(size_t index) const {
  return index < boots.size() && boots[index].handlers ? *boots[index].handlers : machine.handlers;
}

std::string BootSpec::EffectiveCmdline() const {
  std::string out = cmdline;
  auto add = [&out](absl::string_view word) {
    if (!out.empty()) out += ' ';
    absl::StrAppend(&out, word);
  };
  // Only a `kho:` field adds the word; one given in cmdline is there already.
  if (kho_profile != abi::kKhoFdtCompatible && !absl::StrContains(cmdline, "khosim.kho_profile=")) {
    add(absl::StrCat("khosim.kho_profile=", kho_profile));
  }
  if (luo_profile == luo::LuoProfile::k7_2) add("khosim.luo_profile=7.2");
  return out;
}

const FileSpec* Scenario::FindFile(absl::string_view name) const {
  for (const FileSpec& f : files) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

uint64_t Scenario::FileBytes() const {
  uint64_t total = 0;
  for (const FileSpec& f : files) total += f.size;
  return total;
}

absl::StatusOr<Scenario> ParseScenario(absl::string_view text, absl::string_view source) {
  try {
    const YAML::Node doc = YAML::Load(std::string(text));
    return ParseRoot(doc, source);
  } catch (const YAML::Exception& e) {
    // e.msg is yaml-cpp's message without the position.
    return absl::InvalidArgumentError(absl::StrFormat("%s:%d:%d: YAML syntax: %s", source,
                                                      e.mark.line + 1, e.mark.column + 1, e.msg));
  } catch (const ScenarioError& e) {
    std::string where(source);
    if (e.pos.line > 0) absl::StrAppend(&where, ":", e.pos.line, ":", e.pos.column);
    const std::string message =
        absl::StrCat(where, ": ", e.pos.field.empty() ? "" : e.pos.field + ": ", e.message);
    return e.unsupported ? absl::UnimplementedError(message) : absl::InvalidArgumentError(message);
  }
}

absl::StatusOr<Scenario> LoadScenarioFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the scenario file"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseScenario(text.str(), path);
}

std::vector<std::string> BuiltinScenarioNames() {
  std::vector<std::string> names;
  for (const auto& [name, text] : Builtins()) names.push_back(name);
  return names;
}

std::optional<std::string> BuiltinScenarioText(absl::string_view name) {
  for (const auto& [n, text] : Builtins()) {
    if (n == name) return std::string(text);
  }
  return std::nullopt;
}

absl::StatusOr<Scenario> ResolveScenario(absl::string_view name_or_path) {
  if (std::optional<std::string> text = BuiltinScenarioText(name_or_path)) {
    return ParseScenario(*text, absl::StrCat("builtin:", name_or_path));
  }
  if (absl::StrContains(name_or_path, '/') || absl::EndsWith(name_or_path, ".yaml") ||
      absl::EndsWith(name_or_path, ".yml")) {
    return LoadScenarioFile(std::string(name_or_path));
  }
  return absl::NotFoundError(absl::StrCat(
      "no built-in scenario \"", name_or_path, "\" (built-ins: ",
      absl::StrJoin(BuiltinScenarioNames(), ", "), "; a file path needs a '/' or a .yaml suffix)"));
}

std::vector<std::string> KnownFaultPoints() {
  return {"alloc_pages",
          "memblock",
          "vmalloc",
          "kmalloc",
          "kho_alloc_preserve",
          "alloc_file",
          "get_unused_fd",
          "mem_cgroup_charge",
          "shmem_add_to_page_cache",
          "shmem_inode_acct_blocks",
          "try_module_get"};
}

std::string FormatBytes(uint64_t bytes) {
  static const char* kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4; ++i) {
    const uint64_t unit = uint64_t{1} << (10 * (4 - i));
    if (bytes < unit) continue;
    if (bytes % unit == 0) return absl::StrCat(bytes / unit, " ", kUnits[i]);
    return absl::StrFormat("%.1f %s", static_cast<double>(bytes) / unit, kUnits[i]);
  }
  return absl::StrCat(bytes, bytes == 1 ? " byte" : " bytes");
}

}  // namespace khosim::scenario

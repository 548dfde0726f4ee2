// Scenario parsing (see khosim/scenario/scenario.h): a walk of the YAML
// tree with a reader that knows the field path it is at (yaml_field.h), then
// the checks that span fields (scenario_validate.h). yaml-cpp reports
// syntax errors by throwing, and the walk does the same; both become an
// absl::Status at the API edge.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/abi/luo.h"
#include "khosim/scenario/programs.h"
#include "khosim/scenario/scenario.h"
#include "scenario_validate.h"
#include "yaml_field.h"

namespace khosim::scenario {
namespace {

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

// One PCI function and what sits below it:
//   {root_port: NAME, slot: N, function: N, below: [...]}
//   {switch: NAME, below: [...]}        (one downstream port per entry)
//   {endpoint: NAME, slot: N, function: N, vendor: N, device: N, vfs: N}
hw::PciFunctionSpec ParsePciFunction(const Field& field) {
  MapReader r(field, {"root_port", "switch", "endpoint", "slot", "function", "vendor", "device",
                      "vfs", "below"});
  int kinds = 0;
  for (const char* k : {"root_port", "switch", "endpoint"}) kinds += r.Has(k) ? 1 : 0;
  if (kinds != 1) field.Fail("a PCI function is exactly one of root_port, switch or endpoint");
  std::vector<hw::PciFunctionSpec> below;
  if (r.Has("below")) {
    for (const Field& f : r.Get("below").List()) below.push_back(ParsePciFunction(f));
  }
  hw::PciFunctionSpec spec;
  if (r.Has("root_port")) {
    spec = hw::PciRootPort(r.Get("root_port").String(), 0, std::move(below));
  } else if (r.Has("switch")) {
    spec = hw::PciSwitch(r.Get("switch").String(), std::move(below));
  } else {
    if (r.Has("below")) r.Get("below").Fail("an endpoint has nothing below it");
    spec = hw::PciEndpoint(r.Get("endpoint").String());
    if (r.Has("vendor")) spec.vendor = static_cast<uint16_t>(r.Get("vendor").Uint());
    if (r.Has("device")) spec.device = static_cast<uint16_t>(r.Get("device").Uint());
    if (r.Has("vfs")) spec.total_vfs = static_cast<uint16_t>(r.Get("vfs").Uint());
  }
  if (r.Has("slot")) spec.slot = static_cast<uint8_t>(r.Get("slot").Uint());
  if (r.Has("function")) spec.function = static_cast<uint8_t>(r.Get("function").Uint());
  r.Done();
  return spec;
}

// `pci: example` (hw::PciExampleTopology) or a list of the functions on
// segment 0's root bus.
hw::PciTopology ParsePci(const Field& field) {
  hw::PciTopology t;
  if (field.node().IsScalar()) {
    field.Choice({"example"});
    return hw::PciExampleTopology();
  }
  hw::PciSegmentSpec segment;
  for (const Field& f : field.List()) segment.functions.push_back(ParsePciFunction(f));
  t.segments.push_back(std::move(segment));
  if (absl::Status s = t.Validate(); !s.ok()) field.Fail(std::string(s.message()));
  return t;
}

MachineSpec ParseMachine(const Field& field) {
  MachineSpec m;
  if (field.IsNull()) return m;
  MapReader r(field, {"ram", "nodes", "page_size", "seed", "scrub", "handlers", "pci"});
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
  if (r.Has("pci")) m.pci = ParsePci(r.Get("pci"));
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
  MapReader r(field, {"kind", "size", "page_size", "content", "device", "dma", "driver"});
  const Field kind = r.Require("kind");
  const std::string kind_name = kind.Choice({"memfd", "hugetlb", "device", "iommufd"});
  if (kind_name == "iommufd") {
    f.kind = FileKind::kIommufd;
    for (const char* key : {"size", "page_size", "content", "device", "dma", "driver"}) {
      if (r.Has(key)) r.Get(key).Fail(absl::StrCat(key, " does not apply to an iommufd"));
    }
    r.Done();
    return f;
  }
  if (kind_name == "device") {
    f.kind = FileKind::kDevice;
    f.device = r.Has("device") ? r.Get("device").String() : name;
    const hw::PciTopology& pci = machine.pci;
    const char* what = nullptr;
    const hw::PciFunctionSpec* spec = nullptr;
    std::vector<const std::vector<hw::PciFunctionSpec>*> todo;
    for (const hw::PciSegmentSpec& seg : pci.segments) todo.push_back(&seg.functions);
    while (!todo.empty() && spec == nullptr) {
      const std::vector<hw::PciFunctionSpec>* list = todo.back();
      todo.pop_back();
      for (const hw::PciFunctionSpec& fn : *list) {
        if (fn.name == f.device) spec = &fn;
        todo.push_back(&fn.children);
      }
    }
    if (spec == nullptr) {
      what = pci.empty() ? "the machine has no PCI hardware (machine.pci)"
                         : "no PCI function of that name in machine.pci";
    } else if (spec->kind != hw::PciKind::kEndpoint) {
      what = "a bridge cannot be passed through; name an endpoint";
    }
    if (what != nullptr) {
      (r.Has("device") ? r.Get("device") : kind)
          .Fail(absl::StrCat("device \"", f.device, "\": ", what));
    }
    for (const char* key : {"size", "page_size", "content"}) {
      if (r.Has(key)) r.Get(key).Fail(absl::StrCat(key, " does not apply to a device"));
    }
    if (r.Has("driver")) f.driver = r.Get("driver").Choice({"pci-passthrough", "vfio-pci"});
    if (r.Has("dma")) {
      const Field dma = r.Get("dma");
      MapReader d(dma, {"file", "iova", "iommufd"});
      f.dma = DmaSpec{.file = d.Require("file").String(),
                      .iova = d.Require("iova").Size(),
                      .iommufd = d.Has("iommufd") ? d.Get("iommufd").String() : "",
                      .pos = dma.Pos()};
      d.Done();
    }
    r.Done();
    return f;
  }
  if (r.Has("device")) r.Get("device").Fail("device applies to kind: device only");
  if (r.Has("dma")) r.Get("dma").Fail("dma applies to kind: device only");
  if (r.Has("driver")) r.Get("driver").Fail("driver applies to kind: device only");
  f.kind = kind_name == "memfd" ? FileKind::kMemfd : FileKind::kHugetlb;
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
    if (!khosim::IsPowerOfTwo(f.page_size)) ps.Fail("a page size is a power of two");
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
  p.name = r.Require("name").Choice(ProgramNames());
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
  ValidateScenario(s, root);
  return s;
}

}  // namespace

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
  // Only a regular file of a sane size: a FIFO or /dev/zero would be read
  // without end, and a directory is no scenario (symbolic links are
  // followed to what they name).
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot read the scenario file"));
  }
  if (!std::filesystem::is_regular_file(st)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file (",
                     std::filesystem::is_directory(st) ? "a directory" : "a device, FIFO or socket",
                     "); a scenario is a YAML file"));
  }
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": cannot read the scenario file"));
  if (size > kMaxScenarioFileBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %d bytes; a scenario file is at most %d",
                                                      path, size, kMaxScenarioFileBytes));
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the scenario file"));
  // Read at most the bound, even if the file grew since it was measured.
  std::string text(kMaxScenarioFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxScenarioFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: grew past %d bytes while read", path, kMaxScenarioFileBytes));
  }
  return ParseScenario(text, path);
}

}  // namespace khosim::scenario

// Scenario files: what parses, the defaults, and the precise errors for
// malformed, invalid and unsupported ones (line, column and field named).
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/scenario/scenario.h"

namespace khosim::scenario {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The error of parsing |text| as "t.yaml" (code kOk when it parses).
struct Error {
  absl::StatusCode status_code;
  std::string text;
  absl::StatusCode code() const { return status_code; }
  const std::string& message() const { return text; }
};
Error ParseError(const std::string& text) {
  absl::StatusOr<Scenario> s = ParseScenario(text, "t.yaml");
  if (s.ok()) return {absl::StatusCode::kOk, ""};
  return {s.status().code(), std::string(s.status().message())};
}

TEST(ScenarioParseTest, EveryBuiltinParses) {
  ASSERT_FALSE(BuiltinScenarioNames().empty());
  EXPECT_EQ(BuiltinScenarioNames().front(), "default");
  for (const std::string& name : BuiltinScenarioNames()) {
    absl::StatusOr<Scenario> s = ResolveScenario(name);
    ASSERT_TRUE(s.ok()) << name << ": " << s.status();
    EXPECT_EQ(s->name, name);
    EXPECT_FALSE(s->description.empty()) << name;
    EXPECT_EQ(s->source, "builtin:" + name);
  }
}

TEST(ScenarioParseTest, DefaultScenarioShape) {
  absl::StatusOr<Scenario> s = ResolveScenario("default");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->kexecs(), 2);
  EXPECT_EQ(s->boots[0].processes.size(), 5u);
  // A few hundred MiB of memfd guest RAM, hugetlb guest RAM of both sizes.
  uint64_t memfd_bytes = 0;
  std::vector<uint64_t> huge_sizes;
  for (const FileSpec& f : s->files) {
    if (f.kind == FileKind::kMemfd) memfd_bytes += f.size;
    if (f.kind == FileKind::kHugetlb) huge_sizes.push_back(f.page_size);
  }
  EXPECT_GE(memfd_bytes, 256 * kMiB);
  EXPECT_LE(memfd_bytes, 512 * kMiB);
  EXPECT_EQ(huge_sizes, (std::vector<uint64_t>{2 * kMiB, kGiB}));
  EXPECT_TRUE(s->HandlersOf(0).Has(kHugetlbModule));
}

TEST(ScenarioParseTest, MinimalScenarioTakesDefaults) {
  absl::StatusOr<Scenario> s = ParseScenario("boots: [{}]\n", "t.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "t.yaml");
  EXPECT_EQ(s->machine.ram, 4 * kGiB);
  EXPECT_EQ(s->machine.page_size, 4096u);
  EXPECT_EQ(s->kexecs(), 0);
  EXPECT_EQ(s->boots[0].cmdline, "kho=on liveupdate=on");
  EXPECT_EQ(s->boots[0].kho_profile, "kho-v4");
}

TEST(ScenarioParseTest, SizesIntegersAndProfiles) {
  absl::StatusOr<Scenario> s = ParseScenario(R"(
machine: {ram: 2 GiB, page_size: 16K, seed: 0x2a, scrub: inaccessible}
files:
  a: {kind: memfd, size: 64K, content: {generator: sparse, extents: [{offset: 16K, length: 100}]}}
boots:
  - processes: [{name: p, sessions: [{name: s, preserve: [{token: 0x1A, file: a}]}]}]
  - luo: "7.2"
    processes: [{name: p, sessions: [{name: s, retrieve: [{token: 26, file: a, verify: sample}], finish: false}]}]
faults: [{point: alloc_pages, nth: 3, kexec: 1}]
)",
                                             "t.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->machine.ram, 2 * kGiB);
  EXPECT_EQ(s->machine.page_size, 16384u);
  EXPECT_EQ(s->machine.seed, 42u);
  EXPECT_EQ(s->machine.scrub, mm::FreeMemoryPolicy::kInaccessible);
  EXPECT_EQ(s->files[0].content.extents[0].offset, 16384u);
  EXPECT_EQ(s->boots[0].processes[0].sessions[0].preserve->at(0).token, 0x1au);
  EXPECT_EQ(s->boots[1].luo_profile, luo::LuoProfile::k7_2);
  EXPECT_EQ(s->boots[1].EffectiveCmdline(), "kho=on liveupdate=on khosim.luo_profile=7.2");
  EXPECT_FALSE(s->boots[1].processes[0].sessions[0].finish);
  EXPECT_EQ(s->boots[1].processes[0].sessions[0].retrieve->at(0).verify, VerifyMode::kSample);
  EXPECT_EQ(s->faults[0].arm.kind, FaultArm::kKexec);
  EXPECT_EQ(s->faults[0].kind, FaultSpec::kNth);
}

TEST(ScenarioParseTest, YamlSyntaxErrorNamesTheLine) {
  const Error st = ParseError("boots:\n  - cmdline: [unclosed\n");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), StartsWith("t.yaml:"));
  EXPECT_THAT(st.message(), HasSubstr("YAML syntax"));
}

TEST(ScenarioParseTest, UnknownFieldSuggestsTheKnownOne) {
  const Error st = ParseError("machine:\n  rma: 4G\nboots: [{}]\n");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "t.yaml:2:3: machine.rma: unknown field 'rma' (did you mean 'ram'?)");
}

TEST(ScenarioParseTest, BadValueNamesLineAndField) {
  EXPECT_EQ(ParseError("machine: {ram: lots}\nboots: [{}]\n").message(),
            "t.yaml:1:16: machine.ram: expected a size (e.g. 4096, 64M, 2 GiB), got \"lots\"");
  EXPECT_EQ(ParseError("machine: {page_size: 8K}\nboots: [{}]\n").message(),
            "t.yaml:1:22: machine.page_size: expected 4K, 16K or 64K, got \"8K\"");
  EXPECT_EQ(ParseError("boots:\n  - processes:\n      - name: p\n        sessions:\n"
                       "          - {name: s, preserve: [{token: abc, file: f}]}\n")
                .message(),
            "t.yaml:5:42: boots[0].processes[0].sessions[0].preserve[0].token: expected a "
            "non-negative integer (e.g. 7 or 0x1a), got \"abc\"");
}

TEST(ScenarioParseTest, MissingAndDuplicateFields) {
  EXPECT_EQ(ParseError("machine: {ram: 1G}\n").message(),
            "t.yaml:1:1: missing required field 'boots'");
  EXPECT_EQ(ParseError("files: {a: {size: 4K}}\nboots: [{}]\n").message(),
            "t.yaml:1:12: files.a: missing required field 'kind'");
  EXPECT_EQ(ParseError("boots: [{}]\nboots: [{}]\n").message(),
            "t.yaml:2:1: boots: duplicate field");
  EXPECT_EQ(ParseError("boots: []\n").message(),
            "t.yaml:1:8: boots: at least one boot (the cold boot) is needed");
}

TEST(ScenarioParseTest, UnsupportedFeaturesSayNotSupportedByThisBuild) {
  const Error kho = ParseError("boots: [{kho: kho-v2}, {}]\n");
  EXPECT_EQ(kho.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(kho.message(),
            "t.yaml:1:15: boots[0].kho: KHO ABI profile kho-v2 is not supported by this build "
            "(supported: kho-v1, kho-v4)");
  EXPECT_EQ(ParseError("boots: [{kho: kho-v9}]\n").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseError("version: 2\nboots: [{}]\n").code(), absl::StatusCode::kUnimplemented);
}

TEST(ScenarioParseTest, KhoProfilePerBoot) {
  absl::StatusOr<Scenario> s = ParseScenario(R"(
boots: [{cmdline: kho=on, kho: kho-v1}, {cmdline: kho=on, kho: kho-v4},
        {cmdline: kho=on khosim.kho_profile=kho-v1}, {cmdline: kho=on, kho: kho-v1, luo: "7.2"}]
program: {name: kho, preserve_per_boot: 1M}
)",
                                             "t.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->boots[0].kho_profile, "kho-v1");
  EXPECT_EQ(s->boots[0].EffectiveCmdline(), "kho=on khosim.kho_profile=kho-v1");
  EXPECT_EQ(s->boots[1].kho_profile, "kho-v4");
  EXPECT_EQ(s->boots[1].EffectiveCmdline(), "kho=on");
  // Given in cmdline: the profile is known, the word is not added twice.
  EXPECT_EQ(s->boots[2].kho_profile, "kho-v1");
  EXPECT_EQ(s->boots[2].EffectiveCmdline(), "kho=on khosim.kho_profile=kho-v1");
  EXPECT_EQ(s->boots[3].EffectiveCmdline(),
            "kho=on khosim.kho_profile=kho-v1 khosim.luo_profile=7.2");
}

TEST(ScenarioParseTest, KhoProfileClashAndKhoV1Sessions) {
  EXPECT_EQ(
      ParseError("boots: [{cmdline: kho=on khosim.kho_profile=kho-v1, kho: kho-v4}]\n").message(),
      "t.yaml:1:58: boots[0].kho: give the KHO profile either here or as "
      "khosim.kho_profile= in cmdline");
  // LUO is disabled on kho-v1: a session there is an error naming the boot
  // and the field that chose the profile.
  EXPECT_EQ(ParseError("files: {a: {kind: memfd, size: 64K}}\n"
                       "boots:\n"
                       "  - kho: kho-v1\n"
                       "    processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, "
                       "file: a}]}]}]\n"
                       "  - {}\n")
                .message(),
            "t.yaml:4:38: boots[0].processes[0].sessions[0]: LUO is disabled on a kho-v1 kernel "
            "(boots[0].kho: kho-v1), so this boot can have no sessions; use kho: kho-v4, or a "
            "'program: {name: kho}' scenario for KHO-only workloads");
  EXPECT_THAT(ParseError("boots:\n"
                         "  - cmdline: kho=on liveupdate=on khosim.kho_profile=kho-v1\n"
                         "    processes: [{name: p, sessions: [{name: s, retrieve: []}]}]\n")
                  .message(),
              HasSubstr("(boots[0].cmdline: kho-v1)"));
  // A kho-v1 boot may run processes without sessions.
  EXPECT_TRUE(ParseScenario("boots: [{kho: kho-v1, processes: [{name: p}]}]\n", "t.yaml").ok());
}

TEST(ScenarioParseTest, CrossBootReferencesAreChecked) {
  EXPECT_EQ(ParseError("boots:\n  - processes: [{name: p, sessions: [{name: s, retrieve: []}]}]\n")
                .message(),
            "t.yaml:2:38: boots[0].processes[0].sessions[0]: the cold boot has no previous kernel "
            "to retrieve sessions from");
  EXPECT_EQ(ParseError("boots:\n  - processes: [{name: p, sessions: [{name: s, preserve: "
                       "[{token: 1, file: nope}]}]}]\n")
                .message(),
            "t.yaml:2:59: boots[0].processes[0].sessions[0].preserve[0]: no file \"nope\" in "
            "'files'");
  const std::string twice = R"(files: {a: {kind: memfd, size: 4K}}
boots:
  - processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: a}]}]}]
  - processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: a}]}]}]
)";
  EXPECT_THAT(
      ParseError(twice).message(),
      HasSubstr("t.yaml:4:59: boots[1].processes[0].sessions[0].preserve[0]: file \"a\" was "
                "created in an earlier boot; retrieve it in this boot"));
  const std::string dup = R"(files: {a: {kind: memfd, size: 4K}, b: {kind: memfd, size: 4K}}
boots:
  - processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: a}, {token: 1, file: b}]}]}]
)";
  EXPECT_THAT(ParseError(dup).message(), HasSubstr("token 0x1 is preserved twice in this session"));
}

TEST(ScenarioParseTest, FileChecks) {
  EXPECT_THAT(ParseError("files: {a: {kind: memfd, size: 5000}}\nboots: [{}]\n").message(),
              HasSubstr("files.a.size: 5000 bytes is not a multiple of the page size (4 KiB)"));
  EXPECT_THAT(ParseError("files: {a: {kind: memfd, size: 4K, content: {generator: pattern}}}\n"
                         "boots: [{}]\n")
                  .message(),
              HasSubstr("files.a.content: missing required field 'pattern' for generator pattern"));
  EXPECT_THAT(ParseError("files: {a: {kind: memfd, size: 4K, content: {generator: sparse, "
                         "extents: [{offset: 4K, length: 1}]}}}\nboots: [{}]\n")
                  .message(),
              HasSubstr("files.a.content.extents[0]: extent [4096, +1) is past the end"));
  EXPECT_EQ(ParseError("files: {a: {kind: memfd, size: 4K, page_size: 2M}}\nboots: [{}]\n").code(),
            absl::StatusCode::kUnimplemented);
}

TEST(ScenarioParseTest, FaultPlans) {
  EXPECT_THAT(ParseError("boots: [{}]\nfaults: [{point: alloc_page, once: true}]\n").message(),
              HasSubstr("faults[0].point: unknown fault point \"alloc_page\" (known: alloc_pages"));
  EXPECT_THAT(
      ParseError("boots: [{}]\nfaults: [{point: alloc_pages, nth: 1, kexec: 1}]\n").message(),
      HasSubstr("faults[0].kexec: this scenario has no kexec"));
  EXPECT_THAT(ParseError("boots: [{}]\nfaults: [{point: alloc_pages}]\n").message(),
              HasSubstr("faults[0]: a fault needs exactly one of 'nth', 'once', 'probability'"));
  EXPECT_THAT(ParseError("boots: [{}]\nfaults: [{point: vmalloc, probability: 2}]\n").message(),
              HasSubstr("expected a probability between 0 and 1"));
}

TEST(ScenarioParseTest, HandlersForTheMachineAndPerBoot) {
  absl::StatusOr<Scenario> s = ParseScenario(R"(
machine: {handlers: [memfd-sparse]}
boots:
  - {}
  - handlers: [memfd, memfd-sparse]
  - handlers: []
)",
                                             "t.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->machine.handlers.Has(kMemfdModule));
  EXPECT_TRUE(s->machine.handlers.Has(kMemfdSparseModule));
  EXPECT_FALSE(s->boots[0].handlers.has_value());
  // Boot 1 takes the machine's; the others their own.
  EXPECT_EQ(ModuleRegistry::Builtin().Format(s->HandlersOf(0)), "memfd-sparse");
  EXPECT_EQ(ModuleRegistry::Builtin().Format(s->HandlersOf(1)), "memfd, memfd-sparse");
  EXPECT_EQ(ModuleRegistry::Builtin().Format(s->HandlersOf(2)), "none");
  // Without any: memfd-v2 only, as the machine's default build.
  absl::StatusOr<Scenario> d = ParseScenario("boots: [{}]\n", "t.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(ModuleRegistry::Builtin().Format(d->HandlersOf(0)), "memfd");
  ASSERT_EQ(BuiltHandlers(d->HandlersOf(0)).size(), 1u);
  EXPECT_EQ(BuiltHandlers(d->HandlersOf(0))[0].compatible, "memfd-v2");
}

TEST(ScenarioParseTest, HandlerErrorsNameLineAndField) {
  EXPECT_EQ(
      ParseError("boots: [{}, {handlers: [memfd, memfd-sprase]}]\n").message(),
      "t.yaml:1:32: boots[1].handlers[1]: unknown file handler \"memfd-sprase\" (known: "
      "memfd, memfd-sparse, hugetlb, pci-passthrough, iommufd, vfio-pci, vfio-pci-liveupdate)");
  EXPECT_EQ(ParseError("machine: {handlers: [memfd-sparse-v1]}\nboots: [{}]\n").message(),
            "t.yaml:1:22: machine.handlers[0]: unknown file handler \"memfd-sparse-v1\" (known: "
            "memfd, memfd-sparse, hugetlb, pci-passthrough, iommufd, vfio-pci, "
            "vfio-pci-liveupdate; memfd-sparse-v1 is built by "
            "memfd-sparse)");
  EXPECT_EQ(ParseError("machine: {handlers: [hugemfd-v1]}\nboots: [{}]\n").message(),
            "t.yaml:1:22: machine.handlers[0]: unknown file handler \"hugemfd-v1\" (known: "
            "memfd, memfd-sparse, hugetlb, pci-passthrough, iommufd, vfio-pci, "
            "vfio-pci-liveupdate; hugemfd-v1 is built by hugetlb)");
  EXPECT_EQ(ParseError("boots: [{handlers: [memfd, memfd]}]\n").message(),
            "t.yaml:1:28: boots[0].handlers[1]: file handler memfd is listed twice");
  EXPECT_EQ(ParseError("boots: [{handlers: memfd}]\n").message(),
            "t.yaml:1:20: boots[0].handlers: expected a list of file handlers (e.g. [memfd, "
            "memfd-sparse]; known: memfd, memfd-sparse, hugetlb, pci-passthrough, iommufd, "
            "vfio-pci, vfio-pci-liveupdate), got "
            "\"memfd\"");
  EXPECT_THAT(ParseError("machine: {ram: 1G}\nboots: [{cmdline: kho=on}, {cmdline: kho=on, "
                         "handlers: [memfd]}]\nprogram: {name: kho}\n")
                  .message(),
              HasSubstr("boots[1].handlers: a scenario with 'program' builds every kernel with "
                        "machine.handlers"));
}

TEST(ScenarioParseTest, HandlerListForTheCommandLine) {
  const ModuleRegistry& registry = ModuleRegistry::Builtin();
  absl::StatusOr<KernelBuild> both = registry.ParseBuild("memfd, memfd-sparse");
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_TRUE(both->Has(kMemfdModule) && both->Has(kMemfdSparseModule));
  absl::StatusOr<KernelBuild> none = registry.ParseBuild("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(ModuleRegistry::Builtin().Format(*none), "none");
  absl::StatusOr<KernelBuild> huge = registry.ParseBuild("memfd,hugetlb");
  ASSERT_TRUE(huge.ok()) << huge.status();
  EXPECT_TRUE(huge->Has(kMemfdModule) && huge->Has(kHugetlbModule) &&
              !huge->Has(kMemfdSparseModule));
  EXPECT_EQ(ModuleRegistry::Builtin().Format(*huge), "memfd, hugetlb");
  EXPECT_EQ(registry.ParseBuild("memfd,hugetlbfs").status().message(),
            "unknown file handler \"hugetlbfs\" (known: memfd, memfd-sparse, hugetlb, "
            "pci-passthrough, iommufd, vfio-pci, vfio-pci-liveupdate)");
  EXPECT_EQ(registry.ParseBuild("memfd,memfd").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ScenarioParseTest, HugetlbFiles) {
  absl::StatusOr<Scenario> s = ParseScenario(R"(
machine: {handlers: [memfd, hugetlb]}
files:
  a: {kind: hugetlb, page_size: 1G, size: 2G, content: {generator: sampled, stride: 2M}}
  b: {kind: hugetlb, size: 4M}
boots:
  - cmdline: kho=on liveupdate=on hugepages=2 hugepagesz=1G hugepages=2
    processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: a}, {token: 2, file: b}]}]}]
)",
                                             "t.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->files[0].kind, FileKind::kHugetlb);
  EXPECT_EQ(s->files[0].page_size, kGiB);
  EXPECT_EQ(s->files[0].content.length, 4096u) << "sampled blocks are base pages";
  EXPECT_EQ(s->files[1].page_size, 2 * kMiB) << "the default: the PMD size";
  EXPECT_TRUE(s->HandlersOf(0).Has(kHugetlbModule));
  EXPECT_EQ(ModuleRegistry::Builtin().Format(s->HandlersOf(0)), "memfd, hugetlb");
  EXPECT_EQ(BuiltHandlers(s->HandlersOf(0))[1].compatible, "hugemfd-v1");
  EXPECT_EQ(HugePageSizes(16384), (std::vector<uint64_t>{32 * kMiB, 64 * kGiB}));
  EXPECT_EQ(CmdlineSize(2 * kMiB), "2M");
  EXPECT_EQ(CmdlineSize(kGiB), "1G");
}

TEST(ScenarioParseTest, HugetlbFileErrorsNameLineAndField) {
  EXPECT_EQ(
      ParseError("files:\n  g: {kind: hugetlb, page_size: 4K, size: 2M}\nboots: [{}]\n").message(),
      "t.yaml:2:33: files.g.page_size: expected 2M or 1G (the huge page sizes with 4 KiB "
      "base pages), got \"4K\"");
  EXPECT_EQ(ParseError("machine: {page_size: 16K}\nfiles:\n  g: {kind: hugetlb, page_size: 2M, "
                       "size: 32M}\nboots: [{}]\n")
                .message(),
            "t.yaml:3:33: files.g.page_size: expected 32M or 64G (the huge page sizes with 16 KiB "
            "base pages), got \"2M\"");
  EXPECT_EQ(ParseError("files:\n  g: {kind: hugetlb, page_size: 1G, size: 1536M}\nboots: [{}]\n")
                .message(),
            "t.yaml:2:43: files.g.size: 1.5 GiB is not a whole number of 1 GiB huge pages (a "
            "hugetlb file's size is; ftruncate would fail with -EINVAL)");
  EXPECT_THAT(ParseError("files:\n  g: {kind: hugetlb, size: 3M}\nboots: [{}]\n").message(),
              HasSubstr("files.g.size: 3 MiB is not a whole number of 2 MiB huge pages"));
  // A memfd still has base pages only.
  EXPECT_THAT(
      ParseError("files: {a: {kind: memfd, size: 4M, page_size: 2M}}\nboots: [{}]\n").message(),
      HasSubstr("larger folios are not supported by this build (kind: hugetlb has 2M "
                "and 1G pages)"));
}

// The boot that creates a hugetlb file must have a pool for it.
TEST(ScenarioParseTest, HugetlbPoolsAreChecked) {
  const std::string no_pool = R"(machine: {handlers: [memfd, hugetlb]}
files: {g: {kind: hugetlb, size: 8M}}
boots:
  - processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: g}]}]}]
)";
  EXPECT_EQ(ParseError(no_pool).message(),
            "t.yaml:4:59: boots[0].processes[0].sessions[0].preserve[0]: file \"g\" (hugetlb, "
            "2 MiB pages) is created in boot 1 and needs 4 huge page(s), but boot 1's command "
            "line (\"kho=on liveupdate=on\") configures no 2 MiB hugetlb pool; add "
            "\"hugepagesz=2M hugepages=4\" to boots[0].cmdline");
  // hugepages= before any hugepagesz= is the default (2 MiB) size's: no
  // 1 GiB pool (and no 1 GiB hstate) here.
  const std::string no_1g = R"(files: {g: {kind: hugetlb, page_size: 1G, size: 1G}}
boots:
  - cmdline: kho=on liveupdate=on hugepages=1
    processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: g}]}]}]
)";
  EXPECT_THAT(ParseError(no_1g).message(),
              HasSubstr("configures no 1 GiB hugetlb pool; add \"hugepagesz=1G hugepages=1\""));
  const std::string too_small = R"(files:
  g: {kind: hugetlb, size: 8M}
  h: {kind: hugetlb, size: 4M}
boots:
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=5
    processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: g}, {token: 2, file: h}]}]}]
)";
  EXPECT_EQ(ParseError(too_small).message(),
            "t.yaml:6:80: boots[0].processes[0].sessions[0].preserve[1]: file \"h\" (hugetlb, "
            "2 MiB pages) is created in boot 1 and needs 2 huge page(s), 6 with the files created "
            "before it, but boot 1's 2 MiB pool has 5 (hugepagesz=2M hugepages=5); raise "
            "hugepages= for 2M in boots[0].cmdline to at least 6");
  // After a kexec the pool is hugepages= less what the previous kernel's
  // files hold, plus what a finished session held but nobody retrieved:
  // 12 - 12 + 4 here.
  const std::string after_kexec = R"(files:
  a: {kind: hugetlb, size: 16M}
  b: {kind: hugetlb, size: 8M}
  c: {kind: hugetlb, size: SIZE}
boots:
  - cmdline: kho=on liveupdate=on hugepages=12
    processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: a}, {token: 2, file: b}]}]}]
  - cmdline: kho=on liveupdate=on hugepages=12
    processes: [{name: p, sessions: [{name: s, retrieve: [{token: 1, file: a}], preserve: [{token: 1, file: a}, {token: 3, file: c}]}]}]
)";
  std::string fits = after_kexec;
  fits.replace(fits.find("SIZE"), 4, "8M");
  std::string too_big = after_kexec;
  too_big.replace(too_big.find("SIZE"), 4, "10M");
  // Without the hugetlb handler kernel 2 does not read the previous
  // kernel's counts and leaves nothing out (that run fails at PRESERVE_FD).
  EXPECT_EQ(ParseError(too_big).code(), absl::StatusCode::kOk);
  const std::string with_handler = "machine: {handlers: [memfd, hugetlb]}\n";
  EXPECT_EQ(ParseError(with_handler + fits).code(), absl::StatusCode::kOk)
      << ParseError(with_handler + fits).message();
  EXPECT_THAT(ParseError(with_handler + too_big).message(),
              HasSubstr("boots[1].processes[0].sessions[0].preserve[1]: file \"c\" (hugetlb, "
                        "2 MiB pages) is created in boot 2 and needs 5 huge page(s), but boot 2's "
                        "2 MiB pool has 4 (hugepagesz=2M hugepages=12, less 12 left out for the "
                        "previous kernel's preserved pages, plus 4 returned at finish); raise "
                        "hugepages= for 2M in boots[1].cmdline to at least 13"));
}

TEST(ScenarioParseTest, SampledGenerator) {
  absl::StatusOr<Scenario> s = ParseScenario(R"(
files:
  a: {kind: memfd, size: 64M, content: {generator: sampled, stride: 2M, extents: [{offset: 0, length: 1M}]}}
  b: {kind: memfd, size: 64M, content: {generator: sampled, stride: 1M, length: 64K, seed: 3, pattern: "xy"}}
boots: [{}]
)",
                                             "t.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->files[0].content.kind, ContentKind::kSampled);
  EXPECT_EQ(s->files[0].content.stride, 2 * kMiB);
  EXPECT_EQ(s->files[0].content.length, 4096u);  // the page size by default
  EXPECT_EQ(s->files[0].content.extents.size(), 1u);
  EXPECT_EQ(s->files[1].content.length, 64 * 1024u);
  EXPECT_EQ(s->files[1].content.pattern, "xy");

  EXPECT_EQ(ParseError("files: {a: {kind: memfd, size: 4M, content: {generator: sampled}}}\n"
                       "boots: [{}]\n")
                .message(),
            "t.yaml:1:45: files.a.content: missing required field 'stride' for generator sampled");
  EXPECT_EQ(ParseError("files: {a: {kind: memfd, size: 4M, content: {generator: sampled, stride: "
                       "1M, length: 12K}}}\nboots: [{}]\n")
                .message(),
            "t.yaml:1:86: files.a.content.length: the block length (12 KiB) must divide the "
            "stride (1 MiB)");
  EXPECT_EQ(ParseError("files: {a: {kind: memfd, size: 4M, content: {generator: sampled, stride: "
                       "2K}}}\nboots: [{}]\n")
                .message(),
            "t.yaml:1:74: files.a.content.stride: the block length (4 KiB, the page size) must "
            "divide the stride (2 KiB)");
  EXPECT_EQ(ParseError("files: {a: {kind: memfd, size: 4M, content: {generator: random, stride: "
                       "2M}}}\nboots: [{}]\n")
                .message(),
            "t.yaml:1:73: files.a.content.stride: stride applies to the sampled generator only");
  EXPECT_THAT(ParseError("files: {a: {kind: memfd, size: 128G, content: {generator: sampled, "
                         "stride: 4K}}}\nboots: [{}]\n")
                  .message(),
              HasSubstr("files.a.content.stride: 33554432 blocks for a file of 128 GiB; at most "
                        "16777216 (use a larger stride)"));
}

TEST(ScenarioParseTest, ResolveNamesAndPaths) {
  EXPECT_EQ(ResolveScenario("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(ResolveScenario("nope").status().message()),
              HasSubstr("built-ins: default"));
  EXPECT_EQ(ResolveScenario("/nonexistent/x.yaml").status().code(), absl::StatusCode::kNotFound);
}

TEST(ScenarioParseTest, FormatBytes) {
  EXPECT_EQ(FormatBytes(0), "0 bytes");
  EXPECT_EQ(FormatBytes(1), "1 byte");
  EXPECT_EQ(FormatBytes(4096), "4 KiB");
  EXPECT_EQ(FormatBytes(3 * kMiB / 2), "1.5 MiB");
  EXPECT_EQ(FormatBytes(4 * kGiB), "4 GiB");
}

TEST(ScenarioParseTest, DevicesNameEndpointsOfThePciHardware) {
  absl::StatusOr<Scenario> s = ParseScenario(
      "machine: {handlers: [memfd, pci-passthrough], pci: example}\n"
      "files: {nvme0: {kind: device}, nic: {kind: device, device: nvme1}}\n"
      "boots: [{processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: "
      "nic}]}]}]}]\n",
      "t.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->machine.pci.FunctionCount(), 8u);
  EXPECT_EQ(s->FindFile("nvme0")->device, "nvme0");
  EXPECT_EQ(s->FindFile("nic")->device, "nvme1");
  EXPECT_EQ(s->FindFile("nic")->kind, FileKind::kDevice);
  EXPECT_THAT(ParseError("files: {d: {kind: device}}\nboots: [{}]\n").message(),
              HasSubstr("device \"d\": the machine has no PCI hardware"));
  EXPECT_THAT(
      ParseError("machine: {pci: example}\nfiles: {sw0: {kind: device}}\nboots: [{}]\n").message(),
      HasSubstr("a bridge cannot be passed through"));
  EXPECT_THAT(
      ParseError("machine: {pci: example}\nfiles: {nvme0: {kind: device, size: 4M}}\nboots: [{}]\n")
          .message(),
      HasSubstr("size does not apply to a device"));
  EXPECT_THAT(ParseError("machine: {pci: example}\nfiles: {nvme0: {kind: device}}\n"
                         "boots: [{processes: [{name: p, sessions: [{name: s, preserve: "
                         "[{token: 1, file: nvme0}]}]}]}]\n")
                  .message(),
              HasSubstr("needs the pci-passthrough module"));
  EXPECT_THAT(ParseError("machine: {pci: [{endpoint: a}, {endpoint: a}]}\nboots: [{}]\n").message(),
              HasSubstr("named twice"));
  EXPECT_THAT(
      ParseError("machine: {pci: [{switch: s, below: [{endpoint: e}]}]}\nboots: [{}]\n").message(),
      HasSubstr("must sit below a root or downstream port"));
  absl::StatusOr<Scenario> tree = ParseScenario(
      "machine: {pci: [{root_port: rp, slot: 3, below: [{endpoint: gpu, vendor: 0x10de, vfs: "
      "2}]}]}\n"
      "boots: [{}]\n",
      "t.yaml");
  ASSERT_TRUE(tree.ok()) << tree.status();
  const hw::PciFunctionSpec& rp = tree->machine.pci.segments[0].functions[0];
  EXPECT_EQ(rp.slot, 3);
  EXPECT_EQ(rp.children[0].vendor, 0x10de);
  EXPECT_EQ(rp.children[0].total_vfs, 2);
}

// A symlink to /dev/zero or a FIFO would be read without end; a directory
// is not a scenario; a huge file is refused before it is read.
TEST(ScenarioParseTest, OnlyRegularFilesOfASaneSizeAreRead) {
  char tmpl[] = "/tmp/khosim-scenario-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string zero = dir + "/zero.yaml";
  const std::string fifo = dir + "/fifo.yaml";
  const std::string big = dir + "/big.yaml";
  ASSERT_EQ(symlink("/dev/zero", zero.c_str()), 0);
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  {
    std::ofstream out(big);
    out << "# " << std::string(kMaxScenarioFileBytes, 'x') << "\n";
  }
  for (const std::string& path : {zero, fifo, dir}) {
    const absl::StatusOr<Scenario> s = LoadScenarioFile(path);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << path;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("not a regular file")) << path;
  }
  EXPECT_THAT(std::string(LoadScenarioFile(big).status().message()),
              HasSubstr("a scenario file is at most"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace khosim::scenario

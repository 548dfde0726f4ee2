// Scenario files: what parses, the defaults, and the precise errors for
// malformed, invalid and unsupported ones (line, column and field named).
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
  EXPECT_EQ(s->boots[0].processes.size(), 3u);
  EXPECT_GE(s->FileBytes(), 256 * kMiB);  // a few hundred MiB of guest RAM
  EXPECT_LE(s->FileBytes(), 512 * kMiB);
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
  const Error kho = ParseError("boots: [{kho: kho-v1}, {}]\n");
  EXPECT_EQ(kho.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(kho.message(),
            "t.yaml:1:15: boots[0].kho: KHO ABI profile kho-v1 is not supported by this build "
            "(supported: kho-v4)");
  const Error huge = ParseError("files:\n  g: {kind: hugetlb, size: 2M}\nboots: [{}]\n");
  EXPECT_EQ(huge.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(huge.message(), StartsWith("t.yaml:2:13: files.g.kind: kind hugetlb is not supported "
                                         "by this build"));
  EXPECT_EQ(ParseError("boots: [{kho: kho-v9}]\n").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseError("version: 2\nboots: [{}]\n").code(), absl::StatusCode::kUnimplemented);
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
  EXPECT_FALSE(s->machine.handlers.memfd);
  EXPECT_TRUE(s->machine.handlers.memfd_sparse);
  EXPECT_FALSE(s->boots[0].handlers.has_value());
  // Boot 1 takes the machine's; the others their own.
  EXPECT_EQ(FormatHandlers(s->HandlersOf(0)), "memfd-sparse");
  EXPECT_EQ(FormatHandlers(s->HandlersOf(1)), "memfd, memfd-sparse");
  EXPECT_EQ(FormatHandlers(s->HandlersOf(2)), "none");
  // Without any: memfd-v2 only, as the machine's default build.
  absl::StatusOr<Scenario> d = ParseScenario("boots: [{}]\n", "t.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(FormatHandlers(d->HandlersOf(0)), "memfd");
  ASSERT_EQ(BuiltHandlers(d->HandlersOf(0)).size(), 1u);
  EXPECT_EQ(BuiltHandlers(d->HandlersOf(0))[0].compatible, "memfd-v2");
}

TEST(ScenarioParseTest, HandlerErrorsNameLineAndField) {
  EXPECT_EQ(ParseError("boots: [{}, {handlers: [memfd, memfd-sprase]}]\n").message(),
            "t.yaml:1:32: boots[1].handlers[1]: unknown file handler \"memfd-sprase\" (known: "
            "memfd, memfd-sparse)");
  EXPECT_EQ(ParseError("machine: {handlers: [memfd-sparse-v1]}\nboots: [{}]\n").message(),
            "t.yaml:1:22: machine.handlers[0]: unknown file handler \"memfd-sparse-v1\" (known: "
            "memfd, memfd-sparse; memfd-sparse-v1 is built by memfd-sparse)");
  EXPECT_EQ(ParseError("boots: [{handlers: [memfd, memfd]}]\n").message(),
            "t.yaml:1:28: boots[0].handlers[1]: file handler memfd is listed twice");
  EXPECT_EQ(ParseError("boots: [{handlers: memfd}]\n").message(),
            "t.yaml:1:20: boots[0].handlers: expected a list of file handlers (e.g. [memfd, "
            "memfd-sparse]; known: memfd, memfd-sparse), got \"memfd\"");
  EXPECT_THAT(ParseError("machine: {ram: 1G}\nboots: [{cmdline: kho=on}, {cmdline: kho=on, "
                         "handlers: [memfd]}]\nprogram: {name: kho}\n")
                  .message(),
              HasSubstr("boots[1].handlers: a scenario with 'program' builds every kernel with "
                        "machine.handlers"));
}

TEST(ScenarioParseTest, HandlerListForTheCommandLine) {
  absl::StatusOr<KernelHandlers> both = ParseHandlerList("memfd, memfd-sparse");
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_TRUE(both->memfd && both->memfd_sparse);
  absl::StatusOr<KernelHandlers> none = ParseHandlerList("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(FormatHandlers(*none), "none");
  EXPECT_EQ(ParseHandlerList("memfd,hugetlb").status().message(),
            "unknown file handler \"hugetlb\" (known: memfd, memfd-sparse)");
  EXPECT_EQ(ParseHandlerList("memfd,memfd").status().code(), absl::StatusCode::kInvalidArgument);
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

}  // namespace
}  // namespace khosim::scenario

// The runner end to end on small scenarios: round trips pass with nothing
// leaked, and every way of losing data is reported as such, naming what
// diverged; panics and failed operations are told apart; inspection and the
// machine image show the handover state.
#include "khosim/scenario/runner.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/abi/luo.h"
#include "khosim/fs/shmem.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/scenario/content.h"
#include "khosim/scenario/inspect.h"
#include "khosim/scenario/report.h"

namespace khosim::scenario {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

// Two VMs, three files (random, pattern, sparse), two kexecs: boot 2
// verifies and preserves again, boot 3 verifies.
constexpr char kSmall[] = R"(
name: small
machine: {ram: 1G, nodes: 2, seed: 9}
files:
  ram0: {kind: memfd, size: 4M}
  ram1: {kind: memfd, size: 2M, content: {generator: pattern, pattern: "xyz"}}
  sparse: {kind: memfd, size: 1M, content: {generator: sparse, extents: [{offset: 64K, length: 8K}]}}
boots:
  - processes:
      - {name: vmm0, sessions: [{name: vm0, preserve: [{token: 1, file: ram0}]}]}
      - {name: vmm1, sessions: [{name: vm1, preserve: [{token: 1, file: ram1}, {token: 2, file: sparse}]}]}
  - processes:
      - name: vmm0
        sessions: [{name: vm0, retrieve: [{token: 1, file: ram0}], preserve: [{token: 1, file: ram0}]}]
      - name: vmm1
        sessions:
          - {name: vm1, retrieve: [{token: 1, file: ram1, verify: sample}, {token: 2, file: sparse}]}
  - processes:
      - {name: vmm0, sessions: [{name: vm0, retrieve: [{token: 1, file: ram0}]}]}
)";

Scenario Parse(const std::string& text) {
  absl::StatusOr<Scenario> s = ParseScenario(text, "test.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : Scenario{};
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(RunnerTest, SmallRoundTripPassesWithNothingLeaked) {
  const Scenario s = Parse(kSmall);
  const RunReport r = RunScenario(s);
  ASSERT_EQ(r.outcome, Outcome::kPassed) << FormatTextReport(r);
  EXPECT_EQ(r.kexecs_done, 2u);
  ASSERT_EQ(r.boots.size(), 3u);
  EXPECT_EQ(r.boots[0].sessions_preserved, 2u);
  EXPECT_EQ(r.boots[0].files_preserved, 3u);
  EXPECT_EQ(r.boots[0].file_bytes_preserved, 7 * kMiB);
  EXPECT_GE(r.boots[0].kho_pages_preserved, 7 * kMiB / 4096);
  EXPECT_EQ(r.boots[1].files_retrieved, 3u);
  EXPECT_EQ(r.boots[1].sessions_finished, 2u);
  EXPECT_EQ(r.boots[1].leaked_blocks, 0u);
  EXPECT_EQ(r.boots[1].sessions_preserved, 1u);
  EXPECT_EQ(r.boots[2].leaked_blocks, 0u);
  EXPECT_TRUE(r.boots[2].kho_boot);
  EXPECT_EQ(r.files.size(), 4u);
  for (const FileCheck& f : r.files) EXPECT_TRUE(f.ok) << f.file;
  EXPECT_EQ(r.files[0].hash, r.files[3].hash);  // ram0 in boots 2 and 3
  EXPECT_EQ(r.bytes_verified, 4 * kMiB + 64 * 4096 + 1 * kMiB + 4 * kMiB);
  EXPECT_TRUE(r.warns.empty());
  std::vector<std::string> phases;
  for (const PhaseCost& c : r.phases) phases.push_back(absl::StrCat(c.boot, " ", c.name));
  EXPECT_THAT(phases, Contains("1 write"));
  EXPECT_THAT(phases, Contains("1 kexec 1"));
  EXPECT_THAT(phases, Contains("2 verify"));
  EXPECT_THAT(phases, Contains("3 finish"));
  EXPECT_THAT(FormatTextReport(r), HasSubstr("\nPASS\n"));
}

TEST(RunnerTest, SameSeedSameRun) {
  const Scenario s = Parse(kSmall);
  Runner a(s);
  Runner b(s);
  const RunReport ra = a.Run();
  const RunReport rb = b.Run();
  ASSERT_EQ(ra.files.size(), rb.files.size());
  for (size_t i = 0; i < ra.files.size(); ++i) EXPECT_EQ(ra.files[i].hash, rb.files[i].hash);
  EXPECT_EQ(a.machine()->trace().Names(), b.machine()->trace().Names());
}

TEST(RunnerTest, AnOmittedFileIsDataLossNamingIt) {
  const Scenario s = Parse(
      Replace(kSmall, "{token: 2, file: sparse}]}]}", "{token: 2, file: sparse, omit: true}]}]}"));
  const RunReport r = RunScenario(s);
  EXPECT_EQ(r.outcome, Outcome::kDataLoss);
  EXPECT_EQ(ExitCode(r.outcome), 1);
  ASSERT_TRUE(r.divergence.has_value());
  EXPECT_EQ(r.divergence->file, "sparse");
  EXPECT_EQ(r.divergence->session, "vm1");
  EXPECT_EQ(r.divergence->token, 2u);
  EXPECT_EQ(r.message,
            "boot 2: session \"vm1\" has no file with token 0x2 (expected file sparse; "
            "RETRIEVE_FD: -ENOENT); the scenario told boot 1 not to preserve it (omit)");
  EXPECT_THAT(r.boots[0].notes, Contains(HasSubstr("deliberately not preserved")));
}

TEST(RunnerTest, AMissingSessionIsDataLoss) {
  const Scenario s = Parse(
      Replace(kSmall, "{name: vmm0, sessions: [{name: vm0, preserve: [{token: 1, file: ram0}]}]}",
              "{name: vmm0, sessions: [{name: other, preserve: [{token: 1, file: ram0}]}]}"));
  const RunReport r = RunScenario(s);
  EXPECT_EQ(r.outcome, Outcome::kDataLoss);
  EXPECT_EQ(r.message,
            "boot 2: session \"vm0\" is not among the incoming sessions (RETRIEVE_SESSION: "
            "-ENOENT); boot 1 did not create session \"vm0\"");
}

// Scribbles on page 3 of |file| after it was preserved.
void Scribble(HookContext& hook, absl::string_view file) {
  struct file* f = hook.file(file);
  ASSERT_NE(f, nullptr);
  fs::ShmemInode* inode = fs::ShmemInode::FromFile(f);
  ASSERT_NE(inode, nullptr);
  struct folio* folio = inode->PeekFolio(3);
  ASSERT_NE(folio, nullptr);
  auto* p = static_cast<uint8_t*>(folio_address(folio));
  const uint64_t in_folio = (3 - folio->page.index) * 4096;
  p[in_folio + 5] ^= 0xff;
}

TEST(RunnerTest, AChangedPageIsTheFirstDivergence) {
  const Scenario s = Parse(kSmall);
  uint8_t before = 0;
  {
    // The expected byte, from a clean run's generator.
    Content c(*s.FindFile("ram0"), s.machine.seed);
    c.Fill(3 * 4096 + 5, &before, 1);
  }
  RunOptions options;
  options.before_kexec = [](HookContext& hook) {
    if (hook.boot == 1) Scribble(hook, "ram0");
  };
  Runner runner(s, options);
  const RunReport r = runner.Run();
  EXPECT_EQ(r.outcome, Outcome::kDataLoss);
  ASSERT_TRUE(r.divergence.has_value());
  EXPECT_EQ(r.divergence->offset, 3 * 4096u + 5);
  EXPECT_EQ(r.divergence->expected, before);
  EXPECT_EQ(r.divergence->found, before ^ 0xff);
  EXPECT_EQ(r.divergence->pages_differing, 1u);
  EXPECT_THAT(r.message, HasSubstr("boot 2: file ram0 (session \"vm0\", token 0x1): first "
                                   "divergence at byte 0x3005 (page 3)"));
}

TEST(RunnerTest, SampledVerificationStillFindsTheDivergence) {
  const Scenario s = Parse(kSmall);
  RunOptions options;
  options.before_kexec = [](HookContext& hook) {
    if (hook.boot == 1) Scribble(hook, "ram1");  // verified with verify: sample
  };
  Runner runner(s, options);
  const RunReport r = runner.Run();
  EXPECT_EQ(r.outcome, Outcome::kDataLoss);
  ASSERT_TRUE(r.divergence.has_value());
  EXPECT_EQ(r.divergence->file, "ram1");
  EXPECT_EQ(r.divergence->offset, 3 * 4096u + 5);
}

TEST(RunnerTest, ACorruptLuoRecordPanicsTheNextKernel) {
  const Scenario s = Parse(kSmall);
  RunOptions options;
  options.before_kexec = [](HookContext& hook) {
    const abi::LuoSer* ser = hook.machine.kernel().luo().outgoing_record();
    ASSERT_NE(ser, nullptr);
    std::memcpy(const_cast<char*>(ser->compatible), "luo-v0", 6);
  };
  Runner runner(s, options);
  const RunReport r = runner.Run();
  EXPECT_EQ(r.outcome, Outcome::kPanic);
  EXPECT_EQ(ExitCode(r.outcome), 3);
  EXPECT_THAT(r.message, HasSubstr("kernel panic in boot 2"));
}

TEST(RunnerTest, AnInjectedFaultFailsTheOperationThatHitIt) {
  const Scenario s =
      Parse(absl::StrCat(kSmall, "faults: [{point: kho_alloc_preserve, once: true, boot: 1}]\n"));
  const RunReport r = RunScenario(s);
  EXPECT_EQ(r.outcome, Outcome::kFailed) << r.message;
  EXPECT_EQ(ExitCode(r.outcome), 4);
  // LUO's first kho_alloc_preserve is the new session's record.
  EXPECT_EQ(r.message, "boot 1: process vmm0: CREATE_SESSION \"vm0\": -ENOMEM");
  EXPECT_THAT(r.faults_injected, Contains("kho_alloc_preserve"));
}

TEST(RunnerTest, LuoProfilePerBoot) {
  absl::StatusOr<Scenario> s = ResolveScenario("sessions");
  ASSERT_TRUE(s.ok());
  const RunReport r = RunScenario(*s);
  ASSERT_EQ(r.outcome, Outcome::kPassed) << r.message;
  ASSERT_EQ(r.boots.size(), 3u);
  EXPECT_EQ(r.boots[1].luo_profile, "7.3");
  EXPECT_EQ(r.boots[2].luo_profile, "7.2");
  EXPECT_THAT(r.boots[2].cmdline, HasSubstr("khosim.luo_profile=7.2"));
}

// Boot 1 runs the default build (memfd-v2 only), boots 2 and 3 a build
// with both memfd handlers: the sparse one, registered first, preserves.
constexpr char kUpgrade[] = R"(
name: upgrade
machine: {ram: 1G, nodes: 1, seed: 4}
files:
  ram: {kind: memfd, size: 8M, content: {generator: sampled, stride: 1M, extents: [{offset: 0, length: 64K}]}}
  fw: {kind: memfd, size: 64K, content: {generator: pattern, pattern: "FW"}}
boots:
  - processes: [{name: vmm, sessions: [{name: vm, preserve: [{token: 1, file: ram}, {token: 2, file: fw}]}]}]
  - handlers: [memfd, memfd-sparse]
    processes:
      - name: vmm
        sessions:
          - name: vm
            retrieve: [{token: 1, file: ram}, {token: 2, file: fw}]
            preserve: [{token: 1, file: ram}, {token: 2, file: fw}]
  - handlers: [memfd, memfd-sparse]
    processes: [{name: vmm, sessions: [{name: vm, retrieve: [{token: 1, file: ram, verify: sample}, {token: 2, file: fw}]}]}]
)";

TEST(RunnerTest, EachBootGetsItsHandlersAndTheReportNamesThem) {
  const Scenario s = Parse(kUpgrade);
  const RunReport r = RunScenario(s);
  ASSERT_EQ(r.outcome, Outcome::kPassed) << FormatTextReport(r);
  ASSERT_EQ(r.boots.size(), 3u);
  ASSERT_EQ(r.boots[0].handlers.size(), 1u);
  EXPECT_EQ(r.boots[0].handlers[0].compatible, "memfd-v2");
  ASSERT_EQ(r.boots[1].handlers.size(), 2u);
  EXPECT_EQ(r.boots[1].handlers[1].name, "memfd-sparse");
  // What each kexec carried, under which handler.
  ASSERT_EQ(r.boots[0].preserved_files.size(), 2u);
  EXPECT_EQ(r.boots[0].preserved_files[0].file, "ram");
  EXPECT_EQ(r.boots[0].preserved_files[0].session, "vm");
  EXPECT_EQ(r.boots[0].preserved_files[0].size, 8 * kMiB);
  for (const PreservedFile& f : r.boots[0].preserved_files) EXPECT_EQ(f.handler, "memfd-v2");
  ASSERT_EQ(r.boots[1].preserved_files.size(), 2u);
  for (const PreservedFile& f : r.boots[1].preserved_files) {
    EXPECT_EQ(f.handler, "memfd-sparse-v1") << f.file;
  }
  EXPECT_TRUE(r.boots[2].preserved_files.empty());
  // Each retrieved file names the handler it came in under; the content
  // is the same either way.
  ASSERT_EQ(r.files.size(), 4u);
  EXPECT_EQ(r.files[0].handler, "memfd-v2");
  EXPECT_EQ(r.files[2].handler, "memfd-sparse-v1");
  EXPECT_EQ(r.files[0].hash, r.files[2].hash);
  const std::string text = FormatTextReport(r);
  EXPECT_THAT(text,
              HasSubstr("  handlers      memfd (memfd-v2), memfd-sparse (memfd-sparse-v1)\n"));
  EXPECT_THAT(text, HasSubstr("\nfiles preserved\n"));
  EXPECT_THAT(text,
              HasSubstr("  2    ram          vm         0x1         8 MiB  memfd-sparse-v1\n"));
  const nlohmann::json doc = nlohmann::json::parse(ReportToJson(r));
  EXPECT_EQ(doc["boots"][1]["handlers"].size(), 2u);
  EXPECT_EQ(doc["boots"][1]["preserved_files"][0]["handler"], "memfd-sparse-v1");
  EXPECT_EQ(doc["files"][2]["handler"], "memfd-sparse-v1");
}

TEST(RunnerTest, AKernelWithoutTheHandlerFailsToOpenLuoNamingIt) {
  const Scenario s = Parse(
      Replace(Replace(kUpgrade, "  - handlers: [memfd, memfd-sparse]\n    processes: [{name: vmm",
                      "  - handlers: [memfd]\n    processes: [{name: vmm"),
              "name: upgrade", "name: downgrade"));
  ASSERT_FALSE(s.boots[2].handlers->Has(kMemfdSparseModule));
  const RunReport r = RunScenario(s);
  EXPECT_EQ(r.outcome, Outcome::kFailed);
  EXPECT_EQ(ExitCode(r.outcome), 4);
  EXPECT_FALSE(r.divergence.has_value());
  EXPECT_EQ(r.message,
            "boot 3: process vmm: open(/dev/liveupdate): -EIO (LUO could not read the incoming "
            "sessions (-ENOENT): boot 2 preserved 2 file(s) with memfd-sparse-v1, and this kernel "
            "is built without that handler (its handlers: memfd (memfd-v2)); every open fails in "
            "this kernel, so nothing boot 2 preserved can be retrieved)");
}

TEST(RunnerTest, AMissingHandlerIsNotReportedAsALeak) {
  // Boot 3 runs nothing: the leak check is the first to open the device.
  std::string text = kUpgrade;
  text = text.substr(0, text.rfind("  - handlers:")) + "  - handlers: [memfd]\n";
  const RunReport r = RunScenario(Parse(text));
  EXPECT_EQ(r.outcome, Outcome::kFailed);
  EXPECT_THAT(r.message, HasSubstr("boot 3: the leak check's open(/dev/liveupdate): -EIO (LUO "
                                   "could not read the incoming sessions (-ENOENT): boot 2 "
                                   "preserved 2 file(s) with memfd-sparse-v1"));
  EXPECT_FALSE(r.boots.back().leaked_blocks.has_value());
}

TEST(RunnerTest, TheSparseProfileKeepsHolesAndMemfdV2FillsThem) {
  constexpr char kSampled[] = R"(
machine: {ram: 1G, nodes: 1, seed: 6}
files:
  ram: {kind: memfd, size: 64M, content: {generator: sampled, stride: 2M}}
boots:
  - processes: [{name: vmm, sessions: [{name: vm, preserve: [{token: 1, file: ram}]}]}]
  - processes: [{name: vmm, sessions: [{name: vm, retrieve: [{token: 1, file: ram, verify: sample}]}]}]
)";
  Scenario s = Parse(kSampled);
  const RunReport v2 = RunScenario(s);
  s.machine.handlers = KernelBuild{{kMemfdModule, kMemfdSparseModule}};
  const RunReport sparse = RunScenario(s);
  ASSERT_EQ(v2.outcome, Outcome::kPassed) << v2.message;
  ASSERT_EQ(sparse.outcome, Outcome::kPassed) << sparse.message;
  EXPECT_EQ(v2.boots[0].preserved_files[0].handler, "memfd-v2");
  EXPECT_EQ(sparse.boots[0].preserved_files[0].handler, "memfd-sparse-v1");
  // 32 pages of data: memfd-v2 hands over all 16384 pages of the file.
  EXPECT_GE(v2.boots[0].kho_pages_preserved, 16384u);
  EXPECT_LT(sparse.boots[0].kho_pages_preserved, 1024u);
  EXPECT_EQ(v2.files[0].hash, sparse.files[0].hash);
}

TEST(RunnerTest, SampledVerificationDoesNotReadTheHoles) {
  // memfd-v2 hands over zeroed pages for the holes; reading each of them
  // would back it with host memory. Sampling must not.
  const Scenario s = Parse(R"(
machine: {ram: 2G, nodes: 1, seed: 6}
files:
  ram: {kind: memfd, size: 512M, content: {generator: sampled, stride: 2M}}
boots:
  - processes: [{name: vmm, sessions: [{name: vm, preserve: [{token: 1, file: ram}]}]}]
  - processes: [{name: vmm, sessions: [{name: vm, retrieve: [{token: 1, file: ram, verify: sample}]}]}]
)");
  const RunReport r = RunScenario(s);
  ASSERT_EQ(r.outcome, Outcome::kPassed) << r.message;
  EXPECT_GE(r.boots[0].kho_pages_preserved, 512 * kMiB / 4096);
  EXPECT_LT(r.host_resident_bytes, 128 * kMiB);
}

// Guest RAM in hugetlb memfds of 2 MiB and 1 GiB pages next to a memfd,
// across two kexecs.
constexpr char kHuge[] = R"(
name: huge
machine: {ram: 4G, nodes: 1, seed: 4, handlers: [memfd, hugetlb]}
files:
  ram2m: {kind: hugetlb, page_size: 2M, size: 16M, content: {generator: sampled, stride: 1M, extents: [{offset: 0, length: 3M}]}}
  ram1g: {kind: hugetlb, page_size: 1G, size: 1G, content: {generator: sampled, stride: 64M}}
  fw: {kind: memfd, size: 1M, content: {generator: pattern, pattern: "OVMF"}}
boots:
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=10 hugepagesz=1G hugepages=1
    processes: [{name: vmm, sessions: [{name: vm, preserve: [{token: 1, file: ram2m}, {token: 2, file: ram1g}, {token: 3, file: fw}]}]}]
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=10 hugepagesz=1G hugepages=1
    processes:
      - name: vmm
        sessions:
          - name: vm
            retrieve: [{token: 1, file: ram2m}, {token: 2, file: ram1g, verify: sample}, {token: 3, file: fw}]
            preserve: [{token: 1, file: ram2m}, {token: 2, file: ram1g}, {token: 3, file: fw}]
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=10 hugepagesz=1G hugepages=1
    processes: [{name: vmm, sessions: [{name: vm, retrieve: [{token: 1, file: ram2m}, {token: 2, file: ram1g, verify: sample}, {token: 3, file: fw}]}]}]
)";

TEST(RunnerTest, HugetlbGuestRamRoundTripsWithPoolsAndNothingLeaked) {
  const RunReport r = RunScenario(Parse(kHuge));
  ASSERT_EQ(r.outcome, Outcome::kPassed) << FormatTextReport(r);
  ASSERT_EQ(r.boots.size(), 3u);
  ASSERT_EQ(r.boots[0].preserved_files.size(), 3u);
  EXPECT_EQ(r.boots[0].preserved_files[0].handler, "hugemfd-v1");
  EXPECT_EQ(r.boots[0].preserved_files[1].handler, "hugemfd-v1");
  EXPECT_EQ(r.boots[0].preserved_files[2].handler, "memfd-v2");
  // Every huge page is handed over whole: 8 + 1 blocks for 1 GiB + 16 MiB.
  EXPECT_GE(r.boots[0].kho_bytes_preserved, kGiB + 16 * kMiB + 1 * kMiB);
  EXPECT_LT(r.boots[0].kho_blocks_preserved, 9u + 256u + 64u);
  EXPECT_EQ(r.boots[1].leaked_blocks, 0u);
  EXPECT_EQ(r.boots[2].leaked_blocks, 0u);
  ASSERT_EQ(r.files.size(), 6u);
  for (const FileCheck& f : r.files) EXPECT_TRUE(f.ok) << f.file;
  EXPECT_EQ(r.files[0].handler, "hugemfd-v1");
  EXPECT_EQ(r.files[0].hash, r.files[3].hash);
  EXPECT_EQ(r.files[1].hash, r.files[4].hash);
  EXPECT_TRUE(r.warns.empty());
  // Boot 1 takes 8 of 10 2 MiB pages and the one 1 GiB page. Boots 2 and 3
  // allocate only what the previous kernel did not hand over; the
  // retrieved pages complete the pools.
  ASSERT_EQ(r.boots[0].hugetlb_pools.size(), 2u);
  const HugetlbPool& pmd1 = r.boots[0].hugetlb_pools[0];
  EXPECT_EQ(pmd1.name, "hugepages-2048kB");
  EXPECT_EQ(pmd1.page_size, 2 * kMiB);
  EXPECT_EQ(pmd1.requested, 10u);
  EXPECT_EQ(pmd1.preserved, 0u);
  EXPECT_EQ(pmd1.nr_huge_pages, 10u);
  EXPECT_EQ(pmd1.free_huge_pages, 2u);
  for (int boot : {1, 2}) {
    ASSERT_EQ(r.boots[boot].hugetlb_pools.size(), 2u);
    const HugetlbPool& pmd = r.boots[boot].hugetlb_pools[0];
    EXPECT_EQ(pmd.preserved, 8u);
    EXPECT_EQ(pmd.nr_huge_pages, 10u);
    EXPECT_EQ(pmd.free_huge_pages, 2u);
    const HugetlbPool& pud = r.boots[boot].hugetlb_pools[1];
    EXPECT_EQ(pud.page_size, kGiB);
    EXPECT_EQ(pud.requested, 1u);
    EXPECT_EQ(pud.preserved, 1u);
    EXPECT_EQ(pud.nr_huge_pages, 1u);
    EXPECT_EQ(pud.free_huge_pages, 0u);
  }
  // Sampled content in a 1 GiB page costs host memory for what is written
  // and read, not for the page.
  EXPECT_LT(r.host_resident_bytes, 128 * kMiB);
  const std::string text = FormatTextReport(r);
  EXPECT_THAT(text, HasSubstr("  handlers      memfd (memfd-v2), hugetlb (hugemfd-v1)\n"));
  EXPECT_THAT(text, HasSubstr("  hugetlb pools 2 MiB: 10 page(s), 2 free (hugepages=10; 8 left "
                              "out at boot for the previous kernel's preserved pages); 1 GiB: 1 "
                              "page(s), 0 free (hugepages=1; 1 left out at boot"));
  EXPECT_THAT(text, HasSubstr("  1    ram1g        vm         0x2         1 GiB  hugemfd-v1\n"));
  const nlohmann::json doc = nlohmann::json::parse(ReportToJson(r));
  EXPECT_EQ(doc["boots"][1]["hugetlb_pools"][1]["name"], "hugepages-1048576kB");
  EXPECT_EQ(doc["boots"][1]["hugetlb_pools"][1]["preserved"], 1);
  EXPECT_EQ(doc["boots"][1]["hugetlb_pools"][0]["free_huge_pages"], 2);
  EXPECT_EQ(doc["boots"][0]["handlers"][1]["name"], "hugetlb");
}

TEST(RunnerTest, AChangedHugePageIsTheFirstDivergence) {
  // A byte of a preserved 2 MiB page changes after preserve.
  const Scenario s = Parse(kHuge);
  Runner runner(s, RunOptions{.before_kexec = [](HookContext& hook) {
                  if (hook.boot != 1) return;
                  struct file* f = hook.file("ram2m");
                  ASSERT_NE(f, nullptr);
                  struct folio* folio = fs::ShmemInode::FromFile(f)->PeekFolio(512 + 7);
                  ASSERT_NE(folio, nullptr);
                  EXPECT_EQ(folio->page.index, 512u) << "the second 2 MiB folio";
                  static_cast<uint8_t*>(folio_address(folio))[7 * 4096 + 5] ^= 0xff;
                }});
  const RunReport r = runner.Run();
  ASSERT_EQ(r.outcome, Outcome::kDataLoss) << FormatTextReport(r);
  ASSERT_TRUE(r.divergence.has_value());
  EXPECT_EQ(r.divergence->file, "ram2m");
  EXPECT_EQ(r.divergence->offset, 2 * kMiB + 7 * 4096 + 5);
}

// A kexec into a kernel without the hugetlb handler: exit 4, naming it.
TEST(RunnerTest, AKernelWithoutTheHugetlbHandlerFailsNamingHugemfd) {
  const Scenario s = Parse(Replace(kHuge,
                                   "  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=10 "
                                   "hugepagesz=1G hugepages=1\n    processes:\n      - name: vmm",
                                   "  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=10 "
                                   "hugepagesz=1G hugepages=1\n    handlers: [memfd]\n    "
                                   "processes:\n      - name: vmm"));
  ASSERT_FALSE(s.HandlersOf(1).Has(kHugetlbModule));
  const RunReport r = RunScenario(s);
  EXPECT_EQ(r.outcome, Outcome::kFailed);
  EXPECT_EQ(ExitCode(r.outcome), 4);
  EXPECT_THAT(r.message,
              HasSubstr("boot 2: process vmm: open(/dev/liveupdate): -EIO (LUO could not read the "
                        "incoming sessions (-ENOENT): boot 1 preserved 2 file(s) with hugemfd-v1, "
                        "and this kernel is built without that handler (its handlers: memfd "
                        "(memfd-v2))"));
}

// The creating kernel without it: PRESERVE_FD finds no handler.
TEST(RunnerTest, PreservingAHugetlbFileWithoutTheHandlerNamesIt) {
  const Scenario s =
      Parse(Replace(kHuge, "handlers: [memfd, hugetlb]", "handlers: [memfd, memfd-sparse]"));
  const RunReport r = RunScenario(s);
  EXPECT_EQ(r.outcome, Outcome::kFailed);
  EXPECT_EQ(r.message,
            "boot 1: process vmm: PRESERVE_FD of ram2m in session \"vm\" (token 0x1): -ENOENT (no "
            "LUO file handler accepted the hugetlb file: this kernel is built without the hugetlb "
            "handler (hugemfd-v1); add hugetlb to its handlers)");
}

// The pool model of the parser (ScenarioParseTest.HugetlbPoolsAreChecked)
// at its limit: boot 2's pool is empty at boot (the previous kernel's
// files hold all 12 pages) and gets 4 back when the session holding the
// unretrieved file b is finished; the new file c takes exactly those.
TEST(RunnerTest, PagesOfAnUnretrievedHugetlbFileReturnToThePoolAtFinish) {
  const RunReport r = RunScenario(Parse(R"(
machine: {ram: 1G, nodes: 1, seed: 8, handlers: [memfd, hugetlb]}
files:
  a: {kind: hugetlb, size: 16M, content: {generator: sampled, stride: 1M}}
  b: {kind: hugetlb, size: 8M}
  c: {kind: hugetlb, size: 8M, content: {generator: pattern, pattern: "c"}}
boots:
  - cmdline: kho=on liveupdate=on hugepages=12
    processes: [{name: p, sessions: [{name: s, preserve: [{token: 1, file: a}, {token: 2, file: b}]}]}]
  - cmdline: kho=on liveupdate=on hugepages=12
    processes: [{name: p, sessions: [{name: s, retrieve: [{token: 1, file: a}], preserve: [{token: 1, file: a}, {token: 3, file: c}]}]}]
  - cmdline: kho=on liveupdate=on hugepages=12
    processes: [{name: p, sessions: [{name: s, retrieve: [{token: 1, file: a}, {token: 3, file: c}]}]}]
)"));
  ASSERT_EQ(r.outcome, Outcome::kPassed) << FormatTextReport(r);
  ASSERT_EQ(r.boots[1].hugetlb_pools.size(), 1u);
  EXPECT_EQ(r.boots[1].hugetlb_pools[0].preserved, 12u);
  EXPECT_EQ(r.boots[1].hugetlb_pools[0].nr_huge_pages, 12u);
  EXPECT_EQ(r.boots[1].hugetlb_pools[0].free_huge_pages, 0u);
  EXPECT_EQ(r.boots[1].leaked_blocks, 0u);
  EXPECT_EQ(r.boots[2].leaked_blocks, 0u);
}

TEST(RunnerTest, ProgramScenarios) {
  const Scenario kho = Parse(R"(
machine: {ram: 1G}
boots: [{cmdline: kho=on}, {cmdline: kho=on}]
program: {name: kho, preserve_per_boot: 2M}
)");
  EXPECT_EQ(RunScenario(kho).outcome, Outcome::kPassed);
  const Scenario skip = Parse(R"(
machine: {ram: 1G}
boots: [{cmdline: kho=on}, {cmdline: kho=on}]
program: {name: kho, preserve_per_boot: 2M, skip_preserve_folio: true}
)");
  const RunReport r = RunScenario(skip);
  EXPECT_EQ(r.outcome, Outcome::kDataLoss);
  EXPECT_EQ(r.message, "program kho: boot 2: folio 0 did not restore at its order");
}

TEST(RunnerTest, InspectAtAKexecShowsTheHandoverAndWritesAnImage) {
  const Scenario s = Parse(kSmall);
  Runner runner(s, RunOptions{.stop = StopPoint{1, true}});
  const RunReport r = runner.Run();
  ASSERT_EQ(r.outcome, Outcome::kPassed) << r.message;
  Machine& m = *runner.machine();
  const abi::KhoData handover = runner.stop_handover();
  ASSERT_NE(handover.fdt_addr, 0u);
  const std::string text = InspectText(m, handover);
  EXPECT_THAT(text, HasSubstr("outgoing root FDT"));
  EXPECT_THAT(text, HasSubstr("compatible = \"kho-v4\""));
  EXPECT_THAT(text, HasSubstr("LUO/"));
  EXPECT_THAT(text, HasSubstr("blob-size = <u64 0x20>"));  // sizeof(LuoSer)
  EXPECT_THAT(text, HasSubstr("preserved-data = <u64 0x"));
  EXPECT_THAT(text, HasSubstr("\"vm1\": 2 file(s)"));
  EXPECT_THAT(text, HasSubstr("frozen for kexec"));
  EXPECT_THAT(text, HasSubstr("session \"vm0\": 1 file(s), file chain 0x"));
  EXPECT_THAT(text, HasSubstr("token 0x2  memfd-v2"));

  const std::string path = ::testing::TempDir() + "/khosim-image";
  absl::StatusOr<ImageStats> stats = WriteMachineImage(m, handover, "kho=on", path);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(stats->bytes, 7 * kMiB);
  std::ifstream in(path, std::ios::binary);
  ImageHeader header;
  in.read(reinterpret_cast<char*>(&header), sizeof(header));
  EXPECT_EQ(std::memcmp(header.magic, kImageMagic, 8), 0);
  EXPECT_EQ(header.handover.fdt_addr, handover.fdt_addr);
  EXPECT_EQ(header.nr_ranges, stats->ranges);
  uint8_t fdt_magic[4];
  in.seekg(static_cast<std::streamoff>(handover.fdt_addr));
  in.read(reinterpret_cast<char*>(fdt_magic), 4);
  EXPECT_EQ(fdt_magic[0], 0xd0);
  EXPECT_EQ(fdt_magic[1], 0x0d);
  EXPECT_EQ(fdt_magic[2], 0xfe);
  EXPECT_EQ(fdt_magic[3], 0xed);
  unlink(path.c_str());
}

TEST(RunnerTest, JsonReportCarriesTheSummary) {
  const Scenario s = Parse(
      Replace(kSmall, "{token: 2, file: sparse}]}]}", "{token: 2, file: sparse, omit: true}]}]}"));
  const nlohmann::json doc = nlohmann::json::parse(ReportToJson(RunScenario(s)));
  EXPECT_EQ(doc["format"], kReportFormat);
  EXPECT_EQ(doc["outcome"], "data_loss");
  EXPECT_EQ(doc["exit_code"], 1);
  EXPECT_EQ(doc["divergence"]["file"], "sparse");
  EXPECT_TRUE(doc["divergence"]["offset"].is_null());
  EXPECT_EQ(doc["boots"][0]["preserved"]["files"], 2);
  EXPECT_EQ(doc["boots"][0]["handlers"][0]["name"], "memfd");
  EXPECT_EQ(doc["boots"][0]["handlers"][0]["compatible"], "memfd-v2");
  EXPECT_EQ(doc["boots"][0]["preserved_files"].size(), 2u);
  EXPECT_EQ(doc["boots"][0]["preserved_files"][0]["handler"], "memfd-v2");
  EXPECT_TRUE(doc["files"].empty());  // the retrieve failed: nothing verified
}

constexpr char kDevice[] = R"(version: 1
name: device
machine: {ram: 512M, nodes: 1, seed: 3, handlers: [memfd, pci-passthrough], pci: example}
files:
  ram0: {kind: memfd, size: 4M}
  nvme1: {kind: device}
boots:
  - processes:
      - {name: vmm0, sessions: [{name: vm0, preserve: [{token: 1, file: ram0}, {token: 2, file: nvme1}]}]}
  - processes:
      - {name: vmm0, sessions: [{name: vm0, retrieve: [{token: 1, file: ram0}, {token: 2, file: nvme1}]}]}
)";

const DeviceState* FindDevice(const BootReport& b, const std::string& name) {
  for (const DeviceState& d : b.devices) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

TEST(RunnerTest, APassedThroughDeviceComesBackIncomingAndMastering) {
  const Scenario s = Parse(kDevice);
  Runner runner(s);
  const RunReport r = runner.Run();
  ASSERT_EQ(r.outcome, Outcome::kPassed) << r.message;
  ASSERT_EQ(r.boots.size(), 2u);
  const DeviceState* a = FindDevice(r.boots[0], "nvme1");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->bdf, "0000:04:00.0");
  EXPECT_EQ(a->driver, "pci-passthrough");
  EXPECT_TRUE(a->bus_master);
  EXPECT_EQ(a->outgoing_refcount, 1);
  EXPECT_EQ(FindDevice(r.boots[0], "sw0")->outgoing_refcount, 1);
  EXPECT_EQ(FindDevice(r.boots[0], "nvme0")->outgoing_refcount, 0);
  const DeviceState* b = FindDevice(r.boots[1], "nvme1");
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->was_incoming);
  EXPECT_EQ(b->incoming_refcount, 0);  // finished
  EXPECT_TRUE(b->bus_master);
  EXPECT_FALSE(FindDevice(r.boots[1], "accel0")->was_incoming);
  ASSERT_EQ(r.files.size(), 2u);
  EXPECT_EQ(r.files[1].verify, "device");
  EXPECT_EQ(r.files[1].handler, "pci-passthrough-v2");
  EXPECT_TRUE(r.files[1].ok);
  const nlohmann::json doc = nlohmann::json::parse(ReportToJson(r));
  EXPECT_EQ(doc["boots"][1]["devices"].size(), 8u);
}

TEST(RunnerTest, ADeviceThatStoppedMasteringIsALoss) {
  const Scenario s = Parse(kDevice);
  RunOptions options;
  options.before_kexec = [](HookContext& hook) {
    // The device is reset behind everyone's back before the update.
    hw::PciFunction* f = hook.machine.pci().Find("nvme1");
    hook.machine.pci().ConfigWrite(0, 4, 0, f->exp_cap() + PCI_EXP_DEVCTL, 2,
                                   PCI_EXP_DEVCTL_BCR_FLR);
  };
  Runner runner(s, options);
  const RunReport r = runner.Run();
  EXPECT_EQ(r.outcome, Outcome::kDataLoss);
  EXPECT_THAT(r.message, HasSubstr("boot 2: device nvme1 (session \"vm0\", token 0x2): "
                                   "0000:04:00.0 stopped mastering"));
}

// A run stops at its first failure; the kernel's books are still checked
// there, and the result is in the failing boot's notes.
TEST(RunnerTest, AnInjectedFailureIsFollowedByTheInvariantChecks) {
  const Scenario s =
      Parse(std::string(kSmall) + "faults: [{point: kho_alloc_preserve, once: true, boot: 2}]\n");
  Runner runner(s);
  const RunReport r = runner.Run();
  ASSERT_EQ(r.outcome, Outcome::kFailed) << r.message;
  ASSERT_EQ(r.boots.size(), 2u);
  EXPECT_THAT(
      r.boots[1].notes,
      ::testing::Contains("after the failure: memblock, the page allocator and LUO validate"));
  EXPECT_THAT(r.faults_injected, ::testing::ElementsAre("kho_alloc_preserve"));
}

}  // namespace
}  // namespace khosim::scenario

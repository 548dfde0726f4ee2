// The module registry and kernel builds: what a kernel has built in decides
// which initcalls, early hooks and reboot hooks run, in which order, and a
// machine takes out-of-tree modules the same way as the built-in table.
#include "khosim/machine/kernel_module.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/base/errno_status.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

KernelModule Module(std::string name, std::vector<std::string> compatibles = {}) {
  return KernelModule{.name = std::move(name),
                      .compatibles = std::move(compatibles),
                      .initcalls = {{InitcallLevel::kLate, "noop", [] { return 0; }}}};
}

std::vector<std::string> Names(const std::vector<const KernelModule*>& modules) {
  std::vector<std::string> out;
  for (const KernelModule* m : modules) out.push_back(m->name);
  return out;
}

// The steps of the running kernel's boot whose names start with |prefix|.
std::vector<std::string> Steps(Machine& m, const std::string& prefix) {
  std::vector<std::string> out;
  for (const BootStepTime& step : m.kernel().boot_steps()) {
    if (step.name.rfind(prefix, 0) == 0) out.push_back(step.name);
  }
  return out;
}

TEST(ModuleRegistryTest, TheBuiltinTableListsEveryInTreeHandler) {
  const ModuleRegistry& builtin = ModuleRegistry::Builtin();
  EXPECT_EQ(
      builtin.Names(),
      "memfd, memfd-sparse, hugetlb, pci-passthrough, iommufd, vfio-pci, vfio-pci-liveupdate");
  EXPECT_EQ(builtin.DefaultBuild(), KernelBuild{{kMemfdModule}});
  ASSERT_NE(builtin.Find(kHugetlbModule), nullptr);
  EXPECT_THAT(builtin.Find(kHugetlbModule)->compatibles, ElementsAre("hugemfd-v1"));
  EXPECT_THAT(builtin.Find(kHugetlbModule)->flbs, ElementsAre("hugetlb-v1"));
  EXPECT_EQ(builtin.Find("memfd-v2"), nullptr) << "modules are found by name, not compatible";
}

TEST(ModuleRegistryTest, AddRefusesWhatWouldBeAmbiguous) {
  ModuleRegistry registry = ModuleRegistry::Builtin();
  EXPECT_EQ(registry.Add(Module("")).message(), "a kernel module needs a name");
  EXPECT_EQ(registry.Add(Module("memfd")).message(), "a kernel module named memfd exists already");
  EXPECT_EQ(registry.Add(Module("mine", {"memfd-v2"})).message(),
            "kernel module mine: compatible memfd-v2 is taken already");
  EXPECT_EQ(registry.Add(KernelModule{.name = "idle"}).message(),
            "kernel module idle has no initcall and no hook: nothing runs");
  EXPECT_TRUE(registry.Add(Module("mine", {"mine-v1"})).ok());
  EXPECT_EQ(registry.Names(),
            "memfd, memfd-sparse, hugetlb, pci-passthrough, iommufd, vfio-pci, "
            "vfio-pci-liveupdate, mine");
}

TEST(ModuleRegistryTest, BuildsParseFormatAndNameTheirErrors) {
  const ModuleRegistry& registry = ModuleRegistry::Builtin();
  absl::StatusOr<KernelBuild> build = registry.ParseBuild(" hugetlb , memfd ");
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(registry.Format(*build), "memfd, hugetlb") << "listed in table order";
  EXPECT_EQ(registry.Format(KernelBuild{}), "none");
  EXPECT_EQ(registry.ParseBuild("memfd,hugemfd-v1").status().message(),
            "unknown file handler \"hugemfd-v1\" (known: memfd, memfd-sparse, hugetlb, "
            "pci-passthrough, iommufd, vfio-pci, vfio-pci-liveupdate; "
            "hugemfd-v1 is built by hugetlb)");
  EXPECT_EQ(registry.ParseBuild("hugetlb,hugetlb").status().message(),
            "file handler hugetlb is listed twice");
}

TEST(ModuleRegistryTest, ResolveMovesAModuleAheadOfWhatItRunsBefore) {
  const ModuleRegistry& registry = ModuleRegistry::Builtin();
  EXPECT_THAT(
      Names(registry.Resolve(KernelBuild{{kMemfdModule, kMemfdSparseModule, kHugetlbModule}})),
      ElementsAre("memfd-sparse", "memfd", "hugetlb"));
  EXPECT_THAT(Names(registry.Resolve(KernelBuild{{kHugetlbModule, kMemfdModule}})),
              ElementsAre("memfd", "hugetlb"));
}

TEST(KernelBuildTest, OnlyTheBuiltModulesRunAndInRegistrationOrder) {
  MachineConfig config{.ram = 4 * kGiB, .cmdline = "kho=on liveupdate=on"};
  config.build = KernelBuild{{kMemfdModule, kMemfdSparseModule, kHugetlbModule}};
  Machine m(config);
  m.Boot();
  // The sparse handler registers before memfd-v2, so LUO asks it first.
  EXPECT_THAT(Steps(m, "initcall:memfd"),
              ElementsAre("initcall:memfd_sparse_luo_init", "initcall:memfd_luo_init"));
  EXPECT_THAT(Steps(m, "hugetlb_luo_early"), ElementsAre("hugetlb_luo_early"));
  ASSERT_TRUE(m.Kexec(KexecOptions{.build = KernelBuild{{kMemfdModule}}}).ok());
  EXPECT_THAT(Steps(m, "initcall:memfd"), ElementsAre("initcall:memfd_luo_init"));
  EXPECT_THAT(Steps(m, "hugetlb_luo_early"), ::testing::IsEmpty());
  EXPECT_TRUE(m.kernel().HasModule(kMemfdModule));
  EXPECT_FALSE(m.kernel().HasModule(kHugetlbModule));
}

TEST(KernelBuildTest, TheEarlyHookRunsBeforeTheBuddyAllocatorIsFilled) {
  MachineConfig config{.ram = 1 * kGiB};
  Machine m(config);
  std::vector<std::string> seen;
  KernelModule early{.name = "early"};
  early.early_hooks.push_back(
      {BootHook::kBeforeMemblockFreeAll, "early_probe",
       [&seen] { seen.push_back(std::string(BootPhaseName(RequireKernelContext().phase()))); }});
  ASSERT_TRUE(m.AddModule(std::move(early)).ok());
  m.Boot();
  EXPECT_THAT(seen, ElementsAre("mm_init"));
  std::vector<std::string> steps;
  for (const BootStepTime& step : m.kernel().boot_steps()) steps.push_back(step.name);
  const auto at = std::find(steps.begin(), steps.end(), "early_probe");
  ASSERT_NE(at, steps.end());
  EXPECT_EQ(*(at - 1), "kho_memory_init");
  EXPECT_EQ(*(at + 1), "memblock_free_all");
}

// An out-of-tree handler: registered through the same module type as the
// built-in ones, it is built into every kernel of the machine, takes a
// file before memfd-v2 when it says so, and a build that leaves it out
// boots without it.
struct liveupdate_file_ops never_ops = {
    .can_preserve = [](struct liveupdate_file_handler*, struct file*) { return false; },
    .preserve = [](struct liveupdate_file_op_args*) { return -EINVAL; },
    .unpreserve = [](struct liveupdate_file_op_args*) {},
    .retrieve = [](struct liveupdate_file_op_args*) { return -EINVAL; },
    .finish = [](struct liveupdate_file_op_args*) {},
};
struct liveupdate_file_handler never_handler = {.ops = &never_ops, .compatible = "never-v1"};

TEST(KernelBuildTest, AnAddedModuleIsBuiltIntoEveryKernelUnlessABuildLeavesItOut) {
  Machine m(MachineConfig{.ram = 1 * kGiB, .cmdline = "kho=on liveupdate=on"});
  int registered = 0;
  ASSERT_TRUE(m.AddModule({.name = "never",
                           .compatibles = {"never-v1"},
                           .initcalls = {{InitcallLevel::kLate, "never_init",
                                          [&registered] {
                                            ++registered;
                                            return liveupdate_register_file_handler(&never_handler);
                                          }}},
                           .runs_before = {kMemfdModule}})
                  .ok());
  EXPECT_EQ(m.DefaultBuild(), (KernelBuild{{kMemfdModule, "never"}}));
  m.Boot();
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(registered, 2);
  EXPECT_THAT(Steps(m, "initcall:"), ::testing::IsSupersetOf({"initcall:never_init"}));
  std::vector<std::string> handlers;
  for (const std::string& step : Steps(m, "initcall:")) {
    if (step == "initcall:never_init" || step == "initcall:memfd_luo_init")
      handlers.push_back(step);
  }
  EXPECT_THAT(handlers, ElementsAre("initcall:never_init", "initcall:memfd_luo_init"));
  ASSERT_TRUE(m.Kexec(KexecOptions{.build = KernelBuild{{kMemfdModule}}}).ok());
  EXPECT_EQ(registered, 2) << "a kernel built without it does not run it";
  EXPECT_FALSE(m.kernel().HasModule("never"));
}

TEST(KernelBuildTest, AModuleRebootHookCancelsTheKexecWithItsErrno) {
  Machine m(MachineConfig{.ram = 1 * kGiB});
  KernelModule veto{.name = "veto"};
  veto.reboot_hooks.push_back({"veto", [](const RebootInfo&) { return -EAGAIN; }});
  ASSERT_TRUE(m.AddModule(std::move(veto)).ok());
  EXPECT_EQ(m.AddModule(Module("veto")).message(), "a kernel module named veto exists already");
  m.Boot();
  const absl::Status status = m.Kexec();
  EXPECT_EQ(StatusErrno(status), EAGAIN);
  EXPECT_THAT(status.message(), HasSubstr("reboot hooks cancelled the kexec"));
  EXPECT_EQ(m.kernel().generation(), 1u) << "kernel A keeps running";
  EXPECT_EQ(m.kernel().phase(), BootPhase::kRunning);
}

}  // namespace
}  // namespace khosim

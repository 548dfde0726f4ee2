#include "khosim/machine/machine.h"

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/base/errno_status.h"
#include "khosim/base/panic.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/mm.h"

namespace khosim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(MachineTest, ColdBootRunsThePhasesInOrder) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  m.Boot();
  EXPECT_EQ(m.kernel().generation(), 1u);
  EXPECT_EQ(m.kernel().phase(), BootPhase::kRunning);
  EXPECT_THAT(m.trace().Names("phase"),
              ElementsAre("phase/mm_init", "phase/buddy", "phase/initcalls", "phase/running"));
}

TEST(MachineTest, InitcallsRunByLevelThenRegistrationOrderOnEveryBoot) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  std::vector<std::string> order;
  // Each initcall records its name and the generation it ran in.
  auto call = [&order](std::string name, int ret) {
    return [&order, name, ret] {
      order.push_back(name + std::to_string(RequireKernelContext().generation()));
      return ret;
    };
  };
  ASSERT_TRUE(m.AddModule({.name = "test",
                           .initcalls = {{InitcallLevel::kLate, "late", call("late", 0)},
                                         {InitcallLevel::kFs, "fs1", call("fs1", 0)},
                                         {InitcallLevel::kCore, "core", call("core", 0)},
                                         {InitcallLevel::kFs, "fs2", call("fs2", -ENOMEM)}}})
                  .ok());
  m.Boot();
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_THAT(order,
              ElementsAre("core1", "fs11", "fs21", "late1", "core2", "fs12", "fs22", "late2"));
  EXPECT_THAT(m.kernel().ctx().LogLines(),
              ::testing::Contains(HasSubstr("initcall fs2 returned -12")));
}

TEST(MachineTest, KexecBumpsGenerationAndDestroysTheOldKernel) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  m.Boot();
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(m.kernel().generation(), 2u);
  EXPECT_EQ(m.kexec_count(), 1u);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(m.kernel().generation(), 3u);
  // Without KHO the handover record is empty.
  EXPECT_EQ(m.last_handover().fdt_addr, 0u);
  EXPECT_EQ(m.last_handover().scratch_size, 0u);
  // Kernel B's image sits where kernel A placed it, inside RAM and reserved.
  EXPECT_TRUE(m.kernel().mm().memblock().IsReserved(m.kernel().ctx().boot_params().image_base,
                                                    m.config().kernel_image_size));
  EXPECT_EQ(m.memory().Virt(m.kernel().ctx().boot_params().image_base)[0], 0x4b);
}

TEST(MachineTest, FailingRebootHookCancelsTheKexecAndKeepsKernelARunning) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  m.Boot();
  std::vector<std::string> calls;
  m.kernel().RegisterRebootHook("first", [&](const RebootInfo& info) {
    calls.push_back(info.preserve_context ? "first:jump" : "first");
    return 0;
  });
  m.kernel().RegisterRebootHook("veto", [&](const RebootInfo&) {
    calls.push_back("veto");
    return -EINVAL;
  });
  m.kernel().RegisterRebootHook("never", [&](const RebootInfo&) {
    calls.push_back("never");
    return 0;
  });
  struct folio* f = folio_alloc(GFP_KERNEL, 0);
  std::memset(folio_address(f), 0x3c, PAGE_SIZE);
  absl::Status s = m.Kexec(KexecOptions{.preserve_context = true});
  EXPECT_EQ(StatusErrno(s), EINVAL);
  EXPECT_THAT(calls, ElementsAre("first:jump", "veto"));
  EXPECT_EQ(m.kernel().generation(), 1u);
  EXPECT_EQ(m.kernel().phase(), BootPhase::kRunning);
  EXPECT_EQ(static_cast<uint8_t*>(folio_address(f))[0], 0x3c) << "kernel A is untouched";
  folio_put(f);
}

TEST(MachineTest, PanicReachesTheCallerAsKernelPanic) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  m.Boot();
  try {
    BUG_ON(PAGE_SIZE == 4096);
    FAIL() << "BUG_ON did not unwind";
  } catch (const KernelPanic& panic) {
    EXPECT_THAT(panic.what(), HasSubstr("PAGE_SIZE == 4096"));
    EXPECT_THAT(panic.site(), HasSubstr("machine_test.cc"));
  }
  EXPECT_EQ(m.kernel().phase(), BootPhase::kDead);
  EXPECT_TRUE(m.kernel().ctx().panicked());
  EXPECT_FALSE(m.Kexec().ok()) << "a dead kernel cannot kexec";
  m.Boot();  // power cycle
  EXPECT_EQ(m.kernel().phase(), BootPhase::kRunning);
}

TEST(MachineTest, WarnsAreCountedPerSite) {
  Machine m(MachineConfig{.ram = 512 * kMiB});
  m.Boot();
  for (int i = 0; i < 3; ++i) {
    WARN_ON(i >= 0);
    WARN_ON_ONCE(i >= 0);
  }
  EXPECT_EQ(m.kernel().WarnCount(), 4u);
  EXPECT_EQ(m.kernel().WarnCount("i >= 0"), 4u);
  EXPECT_EQ(m.kernel().ctx().WarnsBySite().size(), 2u);
}

TEST(MachineTest, EarlyAllocationThatCannotFitPanicsTheBoot) {
  Machine m(MachineConfig{.ram = 256 * kMiB, .early_alloc_bytes_per_node = 512 * kMiB});
  try {
    m.Boot();
    FAIL() << "boot should have panicked";
  } catch (const KernelPanic& panic) {
    EXPECT_THAT(panic.what(), HasSubstr("Failed to allocate"));
  }
  EXPECT_EQ(m.kernel().phase(), BootPhase::kDead);
}

TEST(MachineTest, CreateRejectsInvalidConfigurations) {
  EXPECT_FALSE(Machine::Create(MachineConfig{.ram = 1 * kGiB, .page_size = 8192}).ok());
  EXPECT_FALSE(Machine::Create(MachineConfig{.ram = 8 * kMiB}).ok()) << "image does not fit";
}

TEST(MachineTest, ActivateSelectsWhichMachineKernelFaceCallsReach) {
  Machine a(MachineConfig{.ram = 512 * kMiB, .page_size = 4096});
  Machine b(MachineConfig{.ram = 512 * kMiB, .page_size = 16384});
  a.Boot();
  b.Boot();
  EXPECT_EQ(PAGE_SIZE, 16384u);
  a.Activate();
  EXPECT_EQ(PAGE_SIZE, 4096u);
}

}  // namespace
}  // namespace khosim

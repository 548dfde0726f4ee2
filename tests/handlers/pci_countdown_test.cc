// Countdown fault injection over the whole PCI preservation flow: kernel A
// preserves two devices through pci-passthrough, kexec, kernel B retrieves
// and finishes them. Every hit of every point on the way fails once, each
// on a fresh machine; after each run the PCI core's books must balance:
// bridge refcounts equal the preserved endpoints below them, nothing is
// incoming once its session finished, a preserved device kept mastering,
// and every errno is one the call documents.
#include <fcntl.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "drivers/pci_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/drivers/pci.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/hw/pci.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/linux/pci_liveupdate.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/countdown.h"

namespace khosim::testing {
namespace {

using ::testing::IsEmpty;

constexpr const char* kDevices[] = {"nvme0", "nvme1"};

std::vector<std::string> errors;  // unexpected errnos seen by the scenario
bool finished[2];                 // kernel B finished session i
bool preserved[2];                // kernel A preserved device i
bool mastering[2];                // and it was a bus master when A went down

void Check(long ret, absl::string_view what, std::set<int> allowed) {
  if (ret >= 0 || allowed.count(static_cast<int>(-ret)) != 0) return;
  errors.push_back(absl::StrCat(what, " returned ", ret));
}

struct pci_dev* DevOf(Machine& m, const char* name) {
  return m.kernel().pci()->FindFunction(*m.pci().Find(name));
}

int BindAndOpen(Machine& m, fs::Process& p, const char* name) {
  struct pci_dev* dev = DevOf(m, name);
  if (dev == nullptr) return -ENODEV;  // a failed config read hid it
  m.kernel().pci()->SetDriverOverride(dev, PCI_PASSTHROUGH_DRIVER_NAME);
  const int bound = m.kernel().pci()->Bind(dev);
  Check(bound, "bind", {ENOMEM, EIO, ENODEV});
  if (bound != 0) return bound;
  return p.Open(absl::StrCat("/dev/" PCI_PASSTHROUGH_DRIVER_NAME "/", pci_name(dev)), O_RDWR);
}

void Flow(Machine& m) {
  errors.clear();
  for (int i = 0; i < 2; ++i) finished[i] = preserved[i] = mastering[i] = false;
  m.Boot();
  m.Activate();
  if (!liveupdate_enabled()) return;
  fs::Process& a = m.kernel().vfs().CreateProcess("vmm");
  const int dev = luo::OpenLiveupdate(a);
  Check(dev, "open", {ENOMEM, EMFILE});
  for (int i = 0; i < 2; ++i) {
    const int s = luo::CreateSession(a, dev, kDevices[i]);
    Check(s, "create", {ENOMEM, EMFILE, EFAULT, EBADF});
    const int fd = BindAndOpen(m, a, kDevices[i]);
    Check(fd, "open device", {ENOMEM, EMFILE, ENODEV, EIO, ENOENT});
    if (fd >= 0) Check(a.Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 1ul), "master", {});
    const int ret = luo::PreserveFd(a, s, fd, 1);
    Check(ret, "preserve", {ENOMEM, EFAULT, EBADF, ENOSPC});
    preserved[i] = ret == 0;
  }
  // A failed config access can leave the command register as it was
  // (pci_set_master reports nothing): what counts is what A left.
  for (int i = 0; i < 2; ++i) mastering[i] = m.pci().Find(kDevices[i])->bus_master();
  if (!m.Kexec().ok()) return;
  m.Activate();
  if (!liveupdate_enabled()) return;
  fs::Process& b = m.kernel().vfs().CreateProcess("vmm");
  const int dev_b = luo::OpenLiveupdate(b);
  Check(dev_b, "open B", {ENOMEM, EMFILE, EIO});
  for (int i = 0; i < 2; ++i) {
    if (struct pci_dev* d = DevOf(m, kDevices[i])) {
      m.kernel().pci()->SetDriverOverride(d, PCI_PASSTHROUGH_DRIVER_NAME);
      // -ENODEV: the driver's own registration failed.
      Check(m.kernel().pci()->Bind(d), "bind B", {ENOMEM, EIO, ENODEV});
    }
    const int r = luo::RetrieveSession(b, dev_b, kDevices[i]);
    Check(r, "retrieve session", {ENOMEM, EMFILE, EFAULT, EBADF, ENOENT});
    const int fd = luo::RetrieveFd(b, r, 1);
    // -ENODEV: a config read failed at enumeration and hid the device.
    Check(fd, "retrieve fd", {ENOMEM, EMFILE, EFAULT, EBADF, ENOENT, ENODEV, EINVAL});
    const int fin = luo::FinishSession(b, r);
    Check(fin, "finish", {EFAULT, EBADF, EBUSY});
    finished[i] = fin == 0 && r >= 0;
  }
}

// Refcount of |dev|'s entry on one side, 0 without one.
int RefOf(const struct pci_dev* dev, bool incoming) {
  const struct pci_dev_ser* ser = incoming ? dev->liveupdate.incoming : dev->liveupdate.outgoing;
  return ser == nullptr ? 0 : ser->refcount;
}

// Whether hardware function |bridge| is above |f|.
bool Below(const hw::PciFunction& f, const hw::PciFunction& bridge) {
  for (const hw::PciFunction* up = f.parent(); up != nullptr; up = up->parent()) {
    if (up == &bridge) return true;
  }
  return false;
}

void Invariants(Machine& m, const CountdownRun& run, std::vector<std::string>* out) {
  for (const std::string& e : errors) out->push_back(e);
  if (run.panicked) {
    out->push_back(absl::StrCat("panic: ", run.panic_message));
    return;
  }
  if (!m.has_kernel() || m.kernel().phase() != BootPhase::kRunning) return;
  m.Activate();
  drivers::PciCore* core = m.kernel().pci();
  const bool kernel_b = m.kexec_count() != 0;
  if (core->OutstandingRefs() != 0) {
    out->push_back(absl::StrCat(core->OutstandingRefs(), " pci_dev reference(s) never put"));
  }
  // Every bridge's count is the number of endpoints below it that hold
  // one: preserved ones in kernel A; in kernel B those A preserved whose
  // session did not finish, found by this kernel or not.
  m.pci().ForEach([&](hw::PciFunction& f) {
    struct pci_dev* dev = f.is_bridge() ? core->FindFunction(f) : nullptr;
    if (dev == nullptr) return;
    int expect = 0;
    for (int i = 0; i < 2; ++i) {
      const bool holds = preserved[i] && !(kernel_b && finished[i]);
      expect += holds && Below(*m.pci().Find(kDevices[i]), f);
    }
    if (RefOf(dev, kernel_b) != expect || RefOf(dev, !kernel_b) != 0) {
      out->push_back(absl::StrCat(pci_name(dev), " counts ", RefOf(dev, false), " out / ",
                                  RefOf(dev, true), " in, expected ", expect,
                                  kernel_b ? " in" : " out"));
    }
  });
  if (!kernel_b) return;
  // Both sessions finished: nothing the previous kernel preserved is left
  // unclaimed but the root FDT, which KHO keeps for the whole boot.
  if (finished[0] && finished[1] && m.kernel().luo().IncomingSessions().empty()) {
    kho::Kho& kho = m.kernel().kho();
    unsigned order = 0;
    const uint64_t held =
        kho.IsPreservedHead(PhysAddr(kho.incoming_handover().fdt_addr), &order) ? 1 : 0;
    if (kho.UnrestoredBlocks() > held) {
      out->push_back(absl::StrCat(kho.UnrestoredBlocks() - held, " preserved block(s) leaked"));
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (preserved[i] && mastering[i] && !m.pci().Find(kDevices[i])->bus_master()) {
      out->push_back(absl::StrCat(kDevices[i], " was preserved mastering and lost it"));
    }
    struct pci_dev* dev = DevOf(m, kDevices[i]);
    if (dev != nullptr && finished[i] && pci_liveupdate_is_incoming(dev)) {
      out->push_back(absl::StrCat(kDevices[i], " still incoming after its finish"));
    }
  }
}

class PciCountdownTest : public ::testing::TestWithParam<const char*> {};

TEST_P(PciCountdownTest, EveryFailureLeavesThePciBooksBalanced) {
  MachineConfig config = SmallPciMachine(5);
  const CountdownResult r = RunCountdown(config, GetParam(), Flow, Invariants, 2000);
  EXPECT_TRUE(r.completed);
  EXPECT_THAT(r.Violations(), IsEmpty());
  EXPECT_GT(r.runs.size(), 1u) << "the point was never hit";
}

INSTANTIATE_TEST_SUITE_P(Points, PciCountdownTest,
                         ::testing::Values("kmalloc", "kho_alloc_preserve", "alloc_pages",
                                           "pci_config_read", "pci_config_write"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace khosim::testing

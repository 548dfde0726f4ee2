// Countdown fault injection over the whole DMA flow: kernel A maps a guest
// memfd for nvme0's engine, preserves memfd and device, kexec, kernel B
// retrieves and finishes, the engine writing all along. Every hit of a
// point fails once, each on a fresh machine. Whatever fails, a correct
// stack must never let the device fault or write stray memory: a refused
// preservation stops the device at shutdown instead. And when the session
// finished, every value the engine wrote is in its slot and nothing the
// previous kernel preserved is left but the root FDT.
#include <fcntl.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "drivers/dma_countdown.h"
#include "drivers/pci_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/fs/shmem.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/countdown.h"

namespace khosim::testing {
namespace {

using ::testing::IsEmpty;

using dma_countdown::Bind;
using dma_countdown::Check;
using dma_countdown::CheckRing;
using dma_countdown::Invariants;
using dma_countdown::kIova;
using dma_countdown::kSize;
using dma_countdown::Nvme0;
using dma_countdown::state;

void Flow(Machine& m) {
  state = {};
  m.Boot();
  m.Activate();
  fs::Process& a = m.kernel().vfs().CreateProcess("vmm");
  if (Bind(m) != 0) return;
  const int dev =
      a.Open(absl::StrCat("/dev/" PCI_PASSTHROUGH_DRIVER_NAME "/", pci_name(Nvme0(m))), O_RDWR);
  Check(dev, "open device", {ENOMEM, EMFILE, ENODEV});
  if (dev < 0) return;
  Check(a.Ioctl(dev, PCI_PASSTHROUGH_SET_MASTER, 1ul), "master", {});
  // A failed config access can leave bus mastering off (pci_set_master
  // reports nothing): the device then never runs, which is no fault.
  state.mastering = m.pci().Find("nvme0")->bus_master();
  const int memfd = fs::MemfdCreate(a, "guest-ram", 0);
  Check(memfd, "memfd", {ENOMEM, EMFILE});
  if (memfd < 0) return;
  Check(a.Ftruncate(memfd, kSize), "ftruncate", {ENOMEM});
  struct pci_passthrough_dma_map map = {
      .size = sizeof(map), .fd = memfd, .offset = 0, .length = kSize, .iova = kIova};
  const long mapped = a.Ioctl(dev, PCI_PASSTHROUGH_DMA_MAP_FILE, &map);
  // -ENODEV: the IOMMU could not come up (its root table) or never probed
  // the device (a failed config read at enumeration).
  Check(mapped, "dma map", {ENOMEM, EFAULT, ENOSPC, ENODEV});
  if (mapped != 0) return;
  m.dma_engine("nvme0")->Submit(hw::DmaDescriptor{
      .op = hw::DmaOp::kCounter, .dst = kIova, .len = kSize, .pattern = 1, .repeat = true});
  state.dma_started = true;
  m.RunDevices("a");
  if (!liveupdate_enabled()) return;  // LUO's own start failed
  const int lu = luo::OpenLiveupdate(a);
  Check(lu, "open liveupdate", {ENOMEM, EMFILE});
  const int s = luo::CreateSession(a, lu, "vm0");
  Check(s, "create", {ENOMEM, EMFILE, EFAULT, EBADF});
  Check(luo::PreserveFd(a, s, memfd, 2), "preserve memfd", {ENOMEM, EFAULT, EBADF, ENOSPC});
  const int pd = luo::PreserveFd(a, s, dev, 1);
  // -ENOENT: the memfd's own preservation failed first.
  Check(pd, "preserve device", {ENOMEM, EFAULT, EBADF, ENOSPC, ENOENT});
  state.device_preserved = pd == 0;
  m.RunDevices("a");
  if (!m.Kexec().ok()) {
    m.RunDevices("a");
    return;
  }
  state.kexeced = true;
  m.Activate();
  fs::Process& b = m.kernel().vfs().CreateProcess("vmm");
  m.RunDevices("b");
  if (!state.device_preserved || Bind(m) != 0) return;
  if (!liveupdate_enabled()) return;
  const int lu_b = luo::OpenLiveupdate(b);
  // -EIO: LUO could not read the previous kernel's sessions.
  Check(lu_b, "open liveupdate B", {ENOMEM, EMFILE, EIO});
  const int r = luo::RetrieveSession(b, lu_b, "vm0");
  Check(r, "retrieve session", {ENOMEM, EMFILE, EFAULT, EBADF, ENOENT});
  const int memfd_b = luo::RetrieveFd(b, r, 2);
  Check(memfd_b, "retrieve memfd", {ENOMEM, EMFILE, EFAULT, EBADF, ENOENT, EIO});
  m.RunDevices("b");
  Check(luo::RetrieveFd(b, r, 1), "retrieve device",
        {ENOMEM, EMFILE, EFAULT, EBADF, ENOENT, ENODEV, EIO});
  const int fin = luo::FinishSession(b, r);
  Check(fin, "finish", {EFAULT, EBADF, EBUSY});
  m.RunDevices("b");
  state.finished = fin == 0 && r >= 0;
  if (state.finished && memfd_b >= 0) {
    state.ring = CheckRing(b, memfd_b, m.dma_engine("nvme0")->next_counter());
  }
}

class IommuCountdownTest : public ::testing::TestWithParam<const char*> {};

TEST_P(IommuCountdownTest, NoFailureMakesTheDeviceFaultOrWriteStrayMemory) {
  MachineConfig config = SmallPciMachine(5);
  config.dma_quantum = 16 * kKiB;
  const CountdownResult r = RunCountdown(config, GetParam(), Flow, Invariants, 3000);
  EXPECT_TRUE(r.completed);
  EXPECT_THAT(r.Violations(), IsEmpty());
  EXPECT_GT(r.runs.size(), 1u) << "the point was never hit";
}

INSTANTIATE_TEST_SUITE_P(Points, IommuCountdownTest,
                         ::testing::Values("kmalloc", "kho_alloc_preserve", "alloc_pages",
                                           "copy_from_user", "pci_config_read"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace khosim::testing

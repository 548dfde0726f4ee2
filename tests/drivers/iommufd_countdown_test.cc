// Countdown fault injection over the iommufd flow: kernel A maps a sealed
// guest memfd through an IOAS and a marked HWPT for nvme0's engine,
// preserves memfd, iommufd and device, kexec, kernel B retrieves all three,
// binds the device to the retrieved iommufd, restores the HWPT, moves the
// device to a fresh HWPT and finishes, the engine writing all along. Every
// hit of a point fails once, each on a fresh machine. Whatever fails, the
// device never faults or writes stray memory (a refused preservation stops
// it at shutdown instead), and a finished session leaves every value in its
// slot and nothing preserved but the root FDT.
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
#include "khosim/drivers/iommufd_client.h"
#include "khosim/fs/shmem.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/memfd.h"
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

// Kernel A up to the kexec; false when the flow ends early.
bool KernelA(Machine& m, fs::Process& a) {
  if (Bind(m) != 0) return false;
  const int dev =
      a.Open(absl::StrCat("/dev/" PCI_PASSTHROUGH_DRIVER_NAME "/", pci_name(Nvme0(m))), O_RDWR);
  Check(dev, "open device", {ENOMEM, EMFILE, ENODEV});
  if (dev < 0) return false;
  Check(a.Ioctl(dev, PCI_PASSTHROUGH_SET_MASTER, 1ul), "master", {});
  state.mastering = m.pci().Find("nvme0")->bus_master();
  const int iommufd = static_cast<int>(iommufd::OpenIommufd(a));
  // -ENOENT: iommufd_init failed, so there is no /dev/iommu.
  Check(iommufd, "open iommufd", {ENOMEM, EMFILE, ENOENT});
  const int memfd = fs::MemfdCreate(a, "guest-ram", MFD_ALLOW_SEALING);
  Check(memfd, "memfd", {ENOMEM, EMFILE});
  if (iommufd < 0 || memfd < 0) return false;
  Check(a.Ftruncate(memfd, kSize), "ftruncate", {ENOMEM});
  Check(a.Fcntl(memfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK), "seal", {});
  const long ioas = iommufd::IoasAlloc(a, iommufd);
  Check(ioas, "ioas alloc", {EFAULT});
  if (ioas < 0) return false;
  const long mapped =
      iommufd::MapFile(a, iommufd, static_cast<uint32_t>(ioas), memfd, 0, kSize, kIova);
  Check(mapped, "map file", {ENOMEM, EFAULT});
  if (mapped != 0) return false;
  struct pci_passthrough_bind_iommufd bind = {.size = sizeof(bind), .iommufd = iommufd};
  const long bound = a.Ioctl(dev, PCI_PASSTHROUGH_BIND_IOMMUFD, &bind);
  // -ENODEV: the IOMMU could not come up or never probed the device.
  Check(bound, "bind iommufd", {ENOMEM, EFAULT, ENODEV});
  if (bound != 0) return false;
  const long hwpt = iommufd::HwptAlloc(a, iommufd, bind.out_devid, static_cast<uint32_t>(ioas));
  Check(hwpt, "hwpt alloc", {ENOMEM, EFAULT});
  if (hwpt < 0) return false;
  struct pci_passthrough_attach_pt attach = {.size = sizeof(attach),
                                             .pt_id = static_cast<uint32_t>(hwpt)};
  const long attached = a.Ioctl(dev, PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT, &attach);
  Check(attached, "attach", {ENOMEM, EFAULT});
  if (attached != 0) return false;
  m.dma_engine("nvme0")->Submit(hw::DmaDescriptor{
      .op = hw::DmaOp::kCounter, .dst = kIova, .len = kSize, .pattern = 1, .repeat = true});
  state.dma_started = true;
  m.RunDevices("a");
  Check(iommufd::MarkPreserve(a, iommufd, static_cast<uint32_t>(hwpt), 4), "mark", {EFAULT});
  if (!liveupdate_enabled()) return false;  // LUO's own start failed
  const int lu = luo::OpenLiveupdate(a);
  Check(lu, "open liveupdate", {ENOMEM, EMFILE});
  const int s = luo::CreateSession(a, lu, "vm0");
  Check(s, "create", {ENOMEM, EMFILE, EFAULT, EBADF});
  Check(luo::PreserveFd(a, s, memfd, 2), "preserve memfd", {ENOMEM, EFAULT, EBADF, ENOSPC});
  // -ENOENT: the memfd was not preserved; -EINVAL: the HWPT was not marked.
  Check(luo::PreserveFd(a, s, iommufd, 3), "preserve iommufd",
        {ENOMEM, EFAULT, EBADF, ENOSPC, ENOENT, EINVAL});
  const int pd = luo::PreserveFd(a, s, dev, 1);
  Check(pd, "preserve device", {ENOMEM, EFAULT, EBADF, ENOSPC, ENOENT, EINVAL});
  state.device_preserved = pd == 0;
  m.RunDevices("a");
  return true;
}

// Kernel B: the VMM takes everything back; whether the session finished.
void KernelB(Machine& m, fs::Process& b) {
  if (!state.device_preserved || Bind(m) != 0) return;
  if (!liveupdate_enabled()) return;
  const int lu = luo::OpenLiveupdate(b);
  // -EIO: LUO could not read the previous kernel's sessions.
  Check(lu, "open liveupdate B", {ENOMEM, EMFILE, EIO});
  const int r = luo::RetrieveSession(b, lu, "vm0");
  Check(r, "retrieve session", {ENOMEM, EMFILE, EFAULT, EBADF, ENOENT});
  const std::set<int> retrieve_errnos = {ENOMEM, EMFILE, EFAULT, EBADF, ENOENT, ENODEV, EIO};
  const int memfd = luo::RetrieveFd(b, r, 2);
  Check(memfd, "retrieve memfd", retrieve_errnos);
  m.RunDevices("b");
  const int dev = luo::RetrieveFd(b, r, 1);
  Check(dev, "retrieve device", retrieve_errnos);
  const int iommufd = luo::RetrieveFd(b, r, 3);
  Check(iommufd, "retrieve iommufd", retrieve_errnos);
  if (dev >= 0 && iommufd >= 0) {
    struct pci_passthrough_bind_iommufd bind = {.size = sizeof(bind), .iommufd = iommufd};
    const long bound = b.Ioctl(dev, PCI_PASSTHROUGH_BIND_IOMMUFD, &bind);
    // -ENODEV: this kernel's IOMMU never probed the device (a failed
    // config read at enumeration): it was not restored either.
    Check(bound, "bind B", {ENOMEM, EFAULT, ENODEV});
    long restored = bound;
    if (bound == 0) {
      restored = iommufd::RestoreHwpt(b, iommufd, 4);
      Check(restored, "restore", {ENOMEM, EFAULT});
    }
    m.RunDevices("b");
    if (restored > 0 && memfd >= 0) {
      // Each step's errno, or the id it made.
      const long ioas = iommufd::IoasAlloc(b, iommufd);
      long err = ioas < 0 ? ioas : 0;
      const auto ioas_id = static_cast<uint32_t>(ioas);
      if (err == 0) err = iommufd::MapFile(b, iommufd, ioas_id, memfd, 0, kSize, kIova);
      const long hwpt = err == 0 ? iommufd::HwptAlloc(b, iommufd, bind.out_devid, ioas_id) : err;
      if (hwpt < 0) err = hwpt;
      struct pci_passthrough_attach_pt attach = {.size = sizeof(attach),
                                                 .pt_id = static_cast<uint32_t>(hwpt)};
      if (err == 0) err = b.Ioctl(dev, PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT, &attach);
      if (err == 0) err = iommufd::Destroy(b, iommufd, static_cast<uint32_t>(restored));
      Check(err, "move to a fresh HWPT", {ENOMEM, EFAULT});
    }
  }
  const int fin = luo::FinishSession(b, r);
  Check(fin, "finish", {EFAULT, EBADF, EBUSY});
  m.RunDevices("b");
  state.finished = fin == 0 && r >= 0;
  if (state.finished && memfd >= 0) {
    state.ring = CheckRing(b, memfd, m.dma_engine("nvme0")->next_counter());
  }
}

void Flow(Machine& m) { dma_countdown::KexecFlow(m, KernelA, KernelB); }

class IommufdCountdownTest : public ::testing::TestWithParam<const char*> {};

TEST_P(IommufdCountdownTest, NoFailureMakesTheDeviceFaultOrWriteStrayMemory) {
  MachineConfig config = SmallPciMachine(5);
  config.build->modules.push_back(kIommufdModule);
  config.dma_quantum = 16 * kKiB;
  const CountdownResult r = RunCountdown(config, GetParam(), Flow, Invariants, 3000);
  EXPECT_TRUE(r.completed);
  EXPECT_THAT(r.Violations(), IsEmpty());
  EXPECT_GT(r.runs.size(), 1u) << "the point was never hit";
}

INSTANTIATE_TEST_SUITE_P(Points, IommufdCountdownTest,
                         ::testing::Values("kmalloc", "kho_alloc_preserve", "alloc_pages",
                                           "copy_from_user", "pci_config_read"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace khosim::testing

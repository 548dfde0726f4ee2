// Countdown fault injection over the whole VMM flow with VFIO: kernel A
// opens nvme0's cdev, binds it to an iommufd with a sealed guest memfd
// mapped through a marked HWPT, starts the engine, preserves memfd,
// iommufd and device; kexec; kernel B retrieves all three, binds the
// device to the retrieved iommufd, restores the HWPT, moves the device to
// a fresh HWPT and finishes. Every hit of a point fails once, each on a
// fresh machine. Whatever fails, the device never faults or writes stray
// memory (a refused preservation stops it at shutdown instead), and a
// finished session leaves every value in its slot and nothing preserved
// but the root FDT.
#include <fcntl.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "drivers/dma_countdown.h"
#include "drivers/pci_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/drivers/iommufd_client.h"
#include "khosim/drivers/vfio.h"
#include "khosim/fs/shmem.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/countdown.h"
#include "khosim/uapi/vfio.h"

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

long VfioBind(fs::Process& p, int dev, int iommufd, uint32_t* devid) {
  struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind), .iommufd = iommufd};
  const long ret = p.Ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind);
  *devid = bind.out_devid;
  return ret;
}

long VfioAttach(fs::Process& p, int dev, uint32_t pt_id) {
  struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof(attach), .pt_id = pt_id};
  return p.Ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
}

// Bus mastering on through the config region; 0 or the errno.
long Master(fs::Process& p, int dev) {
  uint16_t cmd = 0;
  const auto at = static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET + PCI_COMMAND);
  if (const ssize_t n = p.Pread(dev, &cmd, 2, at); n != 2) return n < 0 ? n : -EIO;
  cmd |= PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY;
  const ssize_t n = p.Pwrite(dev, &cmd, 2, at);
  return n == 2 ? 0 : (n < 0 ? n : -EIO);
}

// Kernel A up to the kexec; false when the flow ends early.
bool KernelA(Machine& m, fs::Process& a) {
  if (Bind(m, VFIO_PCI_DRIVER_NAME) != 0) return false;
  const int index = vfio_pci_device_index(Nvme0(m));
  if (index < 0) return false;
  const int dev = a.Open(absl::StrCat("/dev/vfio/devices/vfio", index), O_RDWR);
  Check(dev, "open cdev", {ENOMEM, EMFILE, ENOENT});
  const int iommufd = static_cast<int>(iommufd::OpenIommufd(a));
  Check(iommufd, "open iommufd", {ENOMEM, EMFILE, ENOENT});
  const int memfd = fs::MemfdCreate(a, "guest-ram", MFD_ALLOW_SEALING);
  Check(memfd, "memfd", {ENOMEM, EMFILE});
  if (dev < 0 || iommufd < 0 || memfd < 0) return false;
  Check(a.Ftruncate(memfd, kSize), "ftruncate", {ENOMEM});
  Check(a.Fcntl(memfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK), "seal", {});
  const long ioas = iommufd::IoasAlloc(a, iommufd);
  Check(ioas, "ioas alloc", {EFAULT});
  if (ioas < 0) return false;
  const long mapped =
      iommufd::MapFile(a, iommufd, static_cast<uint32_t>(ioas), memfd, 0, kSize, kIova);
  Check(mapped, "map file", {ENOMEM, EFAULT});
  if (mapped != 0) return false;
  uint32_t devid = 0;
  // -ENODEV: the IOMMU could not come up or never probed the device; -EIO:
  // enabling the device failed a config access.
  const long bound = VfioBind(a, dev, iommufd, &devid);
  Check(bound, "bind iommufd", {ENOMEM, EFAULT, ENODEV, EIO});
  if (bound != 0) return false;
  const long hwpt = iommufd::HwptAlloc(a, iommufd, devid, static_cast<uint32_t>(ioas));
  Check(hwpt, "hwpt alloc", {ENOMEM, EFAULT});
  if (hwpt < 0) return false;
  const long attached = VfioAttach(a, dev, static_cast<uint32_t>(hwpt));
  Check(attached, "attach", {ENOMEM, EFAULT});
  if (attached != 0) return false;
  Check(Master(a, dev), "master", {EFAULT});
  state.mastering = m.pci().Find("nvme0")->bus_master();
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
  // -ENOENT also: vfio-pci's handler failed to register.
  const int pd = luo::PreserveFd(a, s, dev, 1);
  Check(pd, "preserve device", {ENOMEM, EFAULT, EBADF, ENOSPC, ENOENT, EINVAL});
  state.device_preserved = pd == 0;
  m.RunDevices("a");
  return true;
}

// Kernel B: the VMM takes everything back; whether the session finished.
void KernelB(Machine& m, fs::Process& b) {
  if (!state.device_preserved || Bind(m, VFIO_PCI_DRIVER_NAME) != 0) return;
  if (!liveupdate_enabled()) return;
  const int lu = luo::OpenLiveupdate(b);
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
    uint32_t devid = 0;
    const long bound = VfioBind(b, dev, iommufd, &devid);
    Check(bound, "bind B", {ENOMEM, EFAULT, ENODEV, EIO});
    long restored = bound;
    if (bound == 0) {
      restored = iommufd::RestoreHwpt(b, iommufd, 4);
      Check(restored, "restore", {ENOMEM, EFAULT});
    }
    m.RunDevices("b");
    if (restored > 0 && memfd >= 0) {
      const long ioas = iommufd::IoasAlloc(b, iommufd);
      long err = ioas < 0 ? ioas : 0;
      const auto ioas_id = static_cast<uint32_t>(ioas);
      if (err == 0) err = iommufd::MapFile(b, iommufd, ioas_id, memfd, 0, kSize, kIova);
      const long hwpt = err == 0 ? iommufd::HwptAlloc(b, iommufd, devid, ioas_id) : err;
      if (hwpt < 0) err = hwpt;
      if (err == 0) err = VfioAttach(b, dev, static_cast<uint32_t>(hwpt));
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

class VfioCountdownTest : public ::testing::TestWithParam<const char*> {};

TEST_P(VfioCountdownTest, NoFailureMakesTheDeviceFaultOrWriteStrayMemory) {
  MachineConfig config = SmallPciMachine(5);
  config.build->modules.push_back(kIommufdModule);
  config.build->modules.push_back(kVfioPciModule);
  config.build->modules.push_back(kVfioPciLiveupdateModule);
  config.dma_quantum = 16 * kKiB;
  const CountdownResult r = RunCountdown(config, GetParam(), Flow, Invariants, 3000);
  EXPECT_TRUE(r.completed);
  EXPECT_THAT(r.Violations(), IsEmpty());
  EXPECT_GT(r.runs.size(), 1u) << "the point was never hit";
}

INSTANTIATE_TEST_SUITE_P(Points, VfioCountdownTest,
                         ::testing::Values("kmalloc", "kho_alloc_preserve", "alloc_pages",
                                           "copy_from_user", "copy_to_user", "pci_config_read",
                                           "pci_config_write"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace khosim::testing

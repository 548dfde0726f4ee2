// vfio-pci-v1 across a kexec: ports of upstream's vfio_pci_liveupdate_uapi
// and _kexec tests with the engine writing into guest memory from before
// PRESERVE_FD to after FINISH, the kernel-config switch, both interrupt
// policies, an unclaimed device, and two VMs behind one switch of which
// only one is preserved.
#include <sys/eventfd.h>

#include <string>

#include "drivers/vfio_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/drivers/iommu.h"
#include "khosim/linux/kho/abi/vfio_pci.h"
#include "khosim/linux/pci_liveupdate.h"

namespace khosim::testing {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The selftest's tokens and sizes (devices.md section 8).
constexpr uint64_t kDeviceToken = 1;
constexpr uint64_t kMemfdToken = 2;
constexpr uint64_t kIommufdToken = 3;
constexpr uint64_t kHwptToken = 4;
constexpr uint64_t kSize = 16 * kMiB;

class VfioLiveupdateTest : public VfioFixture {
 protected:
  // Stage 1 of vfio_pci_liveupdate_kexec_test: the engine streams into a
  // sealed memfd through a marked HWPT; memfd, iommufd and device are
  // preserved in "device-<bdf>".
  void PreserveVmm(const std::string& name, uint64_t size) {
    memfd_ = SealedMemfd(size);
    vmm_ = SetUpVfioVmm(name, memfd_, size, &dev_);
    StartCounter(name, kGuestIova, size);
    Run(10);
    ASSERT_EQ(MarkPreserve(vmm_.iommufd, vmm_.hwpt, kHwptToken), 0);
    session_ = Create(SessionName(name));
    ASSERT_GE(session_, 0);
    ASSERT_EQ(luo::PreserveFd(p(), session_, memfd_, kMemfdToken), 0);
    ASSERT_EQ(luo::PreserveFd(p(), session_, vmm_.iommufd, kIommufdToken), 0);
    ASSERT_EQ(luo::PreserveFd(p(), session_, dev_, kDeviceToken), 0);
    Run(10);
  }
  std::string SessionName(const std::string& name) {
    return absl::StrCat("device-", pci_name(Dev(name)));
  }
  uint64_t Next(const std::string& name = "nvme0") { return Engine(name).next_counter(); }

  int dev_ = -1;
  int memfd_ = -1;
  int session_ = -1;
  Vmm vmm_;
};

// vfio_pci_liveupdate_uapi_test, and the order of iommufd_liveupdate_kexec_test.
TEST_F(VfioLiveupdateTest, OnlyABoundCdevCanBePreserved) {
  const int s = Create("uapi");
  // The legacy interface: container, group, and a device fd from the group.
  const int container = p().Open("/dev/vfio/vfio", O_RDWR);
  ASSERT_GE(container, 0);
  const int group = p().Open(GroupPath("nvme1"), O_RDWR);
  ASSERT_GE(group, 0);
  ASSERT_EQ(p().Ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), 0);
  ASSERT_EQ(p().Ioctl(container, VFIO_SET_IOMMU, static_cast<unsigned long>(VFIO_TYPE1v2_IOMMU)),
            0);
  const std::string bdf = pci_name(Dev("nvme1"));
  const long legacy = p().Ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf.c_str());
  ASSERT_GE(legacy, 0);
  EXPECT_EQ(luo::PreserveFd(p(), s, container, 10), -ENOENT);
  EXPECT_EQ(luo::PreserveFd(p(), s, group, 11), -ENOENT);
  EXPECT_EQ(luo::PreserveFd(p(), s, static_cast<int>(legacy), 12), -ENOENT);
  // A cdev before VFIO_DEVICE_BIND_IOMMUFD is not a device yet.
  const int unbound = OpenCdev("nvme0");
  ASSERT_GE(unbound, 0);
  EXPECT_EQ(luo::PreserveFd(p(), s, unbound, 13), -ENOENT);
  ASSERT_EQ(p().Close(unbound), 0);

  // The cdev bound and attached: device before iommufd, iommufd before
  // memfd both fail; memfd -> iommufd -> device succeeds.
  const int memfd = SealedMemfd(kSize);
  int dev = -1;
  const Vmm v = SetUpVfioVmm("nvme0", memfd, kSize, &dev);
  ASSERT_EQ(MarkPreserve(v.iommufd, v.hwpt, kHwptToken), 0);
  EXPECT_EQ(luo::PreserveFd(p(), s, dev, kDeviceToken), -ENOENT);
  EXPECT_EQ(luo::PreserveFd(p(), s, v.iommufd, kIommufdToken), -ENOENT);
  ASSERT_EQ(luo::PreserveFd(p(), s, memfd, kMemfdToken), 0);
  ASSERT_EQ(luo::PreserveFd(p(), s, v.iommufd, kIommufdToken), 0);
  ASSERT_EQ(luo::PreserveFd(p(), s, dev, kDeviceToken), 0);
  // Preserved: the device stays on its HWPT.
  EXPECT_EQ(VfioDetach(dev), -EBUSY);
  EXPECT_EQ(VfioAttach(dev, v.ioas), -EBUSY);
  // Close the session and do it all again under the same name.
  ASSERT_EQ(p().Close(s), 0);
  EXPECT_EQ(VfioDetach(dev), 0);
  ASSERT_EQ(VfioAttach(dev, v.hwpt), v.hwpt);
  const int again = Create("uapi");
  EXPECT_EQ(luo::PreserveFd(p(), again, memfd, kMemfdToken), 0);
  EXPECT_EQ(luo::PreserveFd(p(), again, v.iommufd, kIommufdToken), 0);
  EXPECT_EQ(luo::PreserveFd(p(), again, dev, kDeviceToken), 0);
}

// vfio_pci_liveupdate_kexec_test, stage 2, exactly; the device never stops.
TEST_F(VfioLiveupdateTest, TheSelftestFlowWithDmaRunningThroughout) {
  PreserveVmm("nvme0", kSize);
  const uint64_t before_kexec = m().dma_bytes();
  Kexec();
  // Not a quantum lost: after A's hooks, A's shutdown, each step of B's boot.
  EXPECT_EQ(m().dma_bytes() - before_kexec,
            (2 + m().kernel().boot_steps().size()) * m().config().dma_quantum);
  ASSERT_EQ(BindVfio("nvme0"), 0);
  // LUO owns the device: its cdev and its group refuse it.
  EXPECT_EQ(OpenCdev("nvme0"), -EBUSY);
  const int group = p().Open(GroupPath("nvme0"), O_RDWR);
  ASSERT_GE(group, 0);
  const int container = p().Open("/dev/vfio/vfio", O_RDWR);
  ASSERT_EQ(p().Ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), 0);
  ASSERT_EQ(p().Ioctl(container, VFIO_SET_IOMMU, static_cast<unsigned long>(VFIO_TYPE1v2_IOMMU)),
            0);
  const std::string bdf = pci_name(Dev("nvme0"));
  EXPECT_EQ(p().Ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf.c_str()), -EBUSY);
  ASSERT_EQ(p().Close(group), 0);
  ASSERT_EQ(p().Close(container), 0);

  const int in = Retrieve(SessionName("nvme0"));
  ASSERT_GE(in, 0);
  const int memfd = luo::RetrieveFd(p(), in, kMemfdToken);
  ASSERT_GE(memfd, 0);
  EXPECT_EQ(luo::FinishSession(p(), in), -EBUSY);  // the device is not retrieved
  const int dev = luo::RetrieveFd(p(), in, kDeviceToken);
  ASSERT_GE(dev, 0);
  EXPECT_EQ(luo::FinishSession(p(), in), -EBUSY);  // not bound to an iommufd
  // Unbound, the retrieved file is a cdev before BIND.
  EXPECT_EQ(SetMaster(dev, true), -EINVAL);
  EXPECT_EQ(VfioBind(dev, OpenIommufd()), -EPERM);  // a fresh iommufd
  Run(10);
  const int iommufd = luo::RetrieveFd(p(), in, kIommufdToken);
  ASSERT_GE(iommufd, 0);
  const long dev_id = VfioBind(dev, iommufd);
  ASSERT_GT(dev_id, 0);
  const long restored = RestoreHwpt(iommufd, kHwptToken);
  ASSERT_GT(restored, 0);
  Run(10);
  EXPECT_EQ(CheckRing(memfd, kSize, Next()), "");  // through the restored mappings
  const auto ioas = static_cast<uint32_t>(IoasAlloc(iommufd));
  ASSERT_EQ(MapFile(iommufd, ioas, memfd, 0, kSize, kGuestIova), 0);
  const long hwpt = HwptAlloc(iommufd, static_cast<uint32_t>(dev_id), ioas);
  ASSERT_EQ(VfioAttach(dev, static_cast<uint32_t>(hwpt)), hwpt);
  ASSERT_EQ(Destroy(iommufd, static_cast<uint32_t>(restored)), 0);
  ASSERT_EQ(luo::FinishSession(p(), in), 0);
  Run(10);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_EQ(CheckRing(memfd, kSize, Next()), "");
  EXPECT_EQ((Next() - kCounterBase) * 8, m().dma_bytes());
  // Finished: the PCI core lets go, and the cdev no longer refuses the
  // device (it opens unbound; the retrieved file keeps the binding).
  EXPECT_FALSE(Dev("nvme0")->liveupdate.incoming);
  EXPECT_GE(OpenCdev("nvme0"), 0);
}

// Kernel B's file goes through a second live update the same way.
TEST_F(VfioLiveupdateTest, TwoLiveUpdatesInARow) {
  for (int update = 0; update < 2; ++update) {
    if (update == 0) {
      PreserveVmm("nvme0", kSize);
    } else {
      ASSERT_EQ(MarkPreserve(vmm_.iommufd, vmm_.hwpt, kHwptToken), 0);
      session_ = Create(SessionName("nvme0"));
      ASSERT_EQ(luo::PreserveFd(p(), session_, memfd_, kMemfdToken), 0);
      ASSERT_EQ(luo::PreserveFd(p(), session_, vmm_.iommufd, kIommufdToken), 0);
      ASSERT_EQ(luo::PreserveFd(p(), session_, dev_, kDeviceToken), 0);
    }
    Kexec();
    ASSERT_EQ(BindVfio("nvme0"), 0);
    const int in = Retrieve(SessionName("nvme0"));
    memfd_ = luo::RetrieveFd(p(), in, kMemfdToken);
    dev_ = luo::RetrieveFd(p(), in, kDeviceToken);
    vmm_.iommufd = luo::RetrieveFd(p(), in, kIommufdToken);
    ASSERT_GE(vmm_.iommufd, 0);
    vmm_.dev_id = static_cast<uint32_t>(VfioBind(dev_, vmm_.iommufd));
    const long restored = RestoreHwpt(vmm_.iommufd, kHwptToken);
    ASSERT_GT(restored, 0);
    vmm_.ioas = static_cast<uint32_t>(IoasAlloc(vmm_.iommufd));
    ASSERT_EQ(MapFile(vmm_.iommufd, vmm_.ioas, memfd_, 0, kSize, kGuestIova), 0);
    vmm_.hwpt = static_cast<uint32_t>(HwptAlloc(vmm_.iommufd, vmm_.dev_id, vmm_.ioas));
    ASSERT_EQ(VfioAttach(dev_, vmm_.hwpt), vmm_.hwpt);
    ASSERT_EQ(Destroy(vmm_.iommufd, static_cast<uint32_t>(restored)), 0);
    ASSERT_EQ(luo::FinishSession(p(), in), 0);
    Run(10);
  }
  EXPECT_EQ(m().kernel().generation(), 3u);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_EQ(CheckRing(memfd_, kSize, Next()), "");
  EXPECT_EQ((Next() - kCounterBase) * 8, m().dma_bytes());
}

// The record is upstream's six bytes.
TEST_F(VfioLiveupdateTest, TheRecordIsDomainAndBdf) {
  PreserveVmm("nvme0", kSize);
  Kexec();
  // Retrieving the session deserializes it; the device is not retrieved.
  ASSERT_GE(Retrieve(SessionName("nvme0")), 0);
  uint64_t data = 0;
  for (const luo::Luo::SessionInfo& session : m().kernel().luo().IncomingSessions()) {
    for (const luo::Luo::FileInfo& f : session.files) {
      if (f.token == kDeviceToken) {
        EXPECT_EQ(f.compatible, VFIO_PCI_LUO_FH_COMPATIBLE);
        data = f.data;
      }
    }
  }
  ASSERT_NE(data, 0u);
  const auto* ser =
      reinterpret_cast<const vfio_pci_core_device_ser*>(m().memory().Virt(PhysAddr(data)));
  EXPECT_EQ(ser->domain, 0u);
  EXPECT_EQ(ser->bdf, pci_dev_id(Dev("nvme0")));
}

// CONFIG_VFIO_PCI_LIVEUPDATE off: a kernel without the handler refuses to
// preserve a device, and a kernel B without it cannot take one over.
class VfioNoLiveupdateTest : public VfioLiveupdateTest {
 protected:
  static KernelBuild WithoutHandler(KernelBuild build) {
    std::erase(build.modules, std::string(kVfioPciLiveupdateModule));
    return build;
  }
};

TEST_F(VfioNoLiveupdateTest, AKernelWithoutTheSwitchCannotPreserveADevice) {
  KexecOptions options;
  options.build = WithoutHandler(*m().config().build);
  Kexec(options);
  const int memfd = SealedMemfd(kSize);
  int dev = -1;
  const Vmm v = SetUpVfioVmm("nvme0", memfd, kSize, &dev);
  ASSERT_EQ(MarkPreserve(v.iommufd, v.hwpt, kHwptToken), 0);
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, memfd, kMemfdToken), 0);
  ASSERT_EQ(luo::PreserveFd(p(), s, v.iommufd, kIommufdToken), 0);
  EXPECT_EQ(luo::PreserveFd(p(), s, dev, kDeviceToken), -ENOENT);
}

TEST_F(VfioNoLiveupdateTest, KernelAHadItKernelBDoesNot) {
  PreserveVmm("nvme0", kSize);
  KexecOptions options;
  options.build = WithoutHandler(*m().config().build);
  Kexec(options);
  ASSERT_EQ(BindVfio("nvme0"), 0);
  // LUO cannot read a session holding a file nobody here handles, and the
  // error is latched: /dev/liveupdate itself fails, for every session.
  EXPECT_EQ(LiveupdateFd(), -EIO);
  EXPECT_THAT(m().kernel().ctx().LogLines(),
              Contains(HasSubstr("no registered handler for compatible 'vfio-pci-v1'")));
  // The cdev opens (nothing here knows the device is LUO's), but the
  // device's DMA still belongs to the previous kernel's iommufd: no fresh
  // iommufd may take it, and it keeps writing into memory KHO keeps.
  const int dev = OpenCdev("nvme0");
  ASSERT_GE(dev, 0);
  EXPECT_EQ(VfioBind(dev, OpenIommufd()), -EPERM);
  Run(20);
  EXPECT_THAT(Events(), IsEmpty());
}

// Upstream: an interrupt-enabled device makes freeze fail and kernel A
// keeps running, its device file working again.
TEST_F(VfioLiveupdateTest, MsixEnabledRefusesTheKexec) {
  PreserveVmm("nvme0", kSize);
  const int efd = p().Eventfd(0, EFD_NONBLOCK);
  ASSERT_EQ(SetMsix(dev_, {efd}), 0);
  Hw("nvme0").RaiseMsix(0);
  EXPECT_EQ(ReadEventfd(efd), 1u);  // the device's interrupt reaches the VMM
  const absl::Status refused = m().Kexec();
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(m().kernel().ctx().LogLines(), Contains(HasSubstr("Interrupts are still enabled")));
  EXPECT_EQ(m().kernel().generation(), 1u);
  EXPECT_EQ(SetMaster(dev_, true), 0);  // unfrozen
  ASSERT_EQ(DisableMsix(dev_), 0);
  Kexec();
  EXPECT_EQ(m().kernel().generation(), 2u);
  EXPECT_THAT(Events(), IsEmpty());
}

// khosim.vfio_liveupdate_irqs=replay: freeze disables MSI-X, a vector the
// device raises during the blackout is lost, and kernel B fires every
// vector once when the VMM enables MSI-X on the retrieved device.
TEST_F(VfioLiveupdateTest, ReplayedInterruptsCoverWhatTheBlackoutLost) {
  const std::string cmdline = m().config().cmdline + " khosim.vfio_liveupdate_irqs=replay";
  KexecOptions a;
  a.cmdline = cmdline;
  Kexec(a);
  PreserveVmm("nvme0", kSize);
  const int efd0 = p().Eventfd(0, EFD_NONBLOCK);
  const int efd1 = p().Eventfd(0, EFD_NONBLOCK);
  ASSERT_EQ(SetMsix(dev_, {efd0, efd1}), 0);
  KexecOptions b;
  b.cmdline = cmdline;
  Kexec(b);
  hw::PciFunction& fn = Hw("nvme0");
  EXPECT_FALSE(fn.msix_enabled());
  const uint64_t lost = fn.msix_lost();
  fn.RaiseMsix(1);  // the device completes work while nobody listens
  EXPECT_EQ(fn.msix_lost(), lost + 1);
  ASSERT_EQ(BindVfio("nvme0"), 0);
  const int in = Retrieve(SessionName("nvme0"));
  const int dev = luo::RetrieveFd(p(), in, kDeviceToken);
  const int iommufd = luo::RetrieveFd(p(), in, kIommufdToken);
  ASSERT_GT(VfioBind(dev, iommufd), 0);
  const int new0 = p().Eventfd(0, EFD_NONBLOCK);
  const int new1 = p().Eventfd(0, EFD_NONBLOCK);
  ASSERT_EQ(SetMsix(dev, {new0, new1}), 0);
  EXPECT_EQ(ReadEventfd(new0), 1u);
  EXPECT_EQ(ReadEventfd(new1), 1u);
  // Once: a later enable is an ordinary one.
  ASSERT_EQ(DisableMsix(dev), 0);
  ASSERT_EQ(SetMsix(dev, {new0, new1}), 0);
  EXPECT_EQ(ReadEventfd(new0), 0u);
  fn.RaiseMsix(0);
  EXPECT_EQ(ReadEventfd(new0), 1u);
  EXPECT_THAT(Events(), IsEmpty());
}

// The bind of a retrieved device fails after iommufd took it (enabling the
// device fails a config read): the device must stay on its restored
// domain, still translating, and a second bind must work. (It used to be
// detached, and its DMA faulted: "context entry not present".)
TEST_F(VfioLiveupdateTest, AFailedBindLeavesTheRestoredDeviceRunning) {
  PreserveVmm("nvme0", kSize);
  Kexec();
  ASSERT_EQ(BindVfio("nvme0"), 0);
  const int in = Retrieve(SessionName("nvme0"));
  const int memfd = luo::RetrieveFd(p(), in, kMemfdToken);
  const int dev = luo::RetrieveFd(p(), in, kDeviceToken);
  const int iommufd = luo::RetrieveFd(p(), in, kIommufdToken);
  ASSERT_GE(iommufd, 0);
  m().faults().FailOnce("pci_config_read");
  EXPECT_EQ(VfioBind(dev, iommufd), -EIO);
  Run(10);
  EXPECT_THAT(Events(), IsEmpty());
  ASSERT_GT(VfioBind(dev, iommufd), 0);
  ASSERT_GT(RestoreHwpt(iommufd, kHwptToken), 0);
  Run(10);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_EQ(CheckRing(memfd, kSize, Next()), "");
}

// A device preserved without its DMA (bound, never attached to a HWPT):
// nothing keeps its DMA safe across the kexec, so freeze resets it and
// leaves its Command register at INTx Disable (v5's base support). Kernel B
// still hands it out, and any iommufd may take it: no IOMMU state came in.
TEST_F(VfioLiveupdateTest, ADeviceWithoutPreservedDmaIsStoppedAtFreeze) {
  const int dev = OpenCdev("nvme0");
  ASSERT_GT(VfioBind(dev, OpenIommufd()), 0);
  ASSERT_EQ(SetMaster(dev, true), 0);
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, dev, kDeviceToken), 0);
  const uint64_t resets = Hw("nvme0").reset_count();
  Kexec();
  EXPECT_EQ(Hw("nvme0").reset_count(), resets + 1);
  EXPECT_EQ(Hw("nvme0").Peek(PCI_COMMAND, 2), static_cast<uint32_t>(PCI_COMMAND_INTX_DISABLE));
  ASSERT_EQ(BindVfio("nvme0"), 0);
  EXPECT_TRUE(pci_liveupdate_is_incoming(Dev("nvme0")));
  const int in = Retrieve("vm0");
  const int retrieved = luo::RetrieveFd(p(), in, kDeviceToken);
  ASSERT_GE(retrieved, 0);
  ASSERT_GT(VfioBind(retrieved, OpenIommufd()), 0);
  ASSERT_EQ(luo::FinishSession(p(), in), 0);
  EXPECT_THAT(Events(), IsEmpty());
}

// A device the VMM never reclaims (docs/devices.md, "Unclaimed devices"):
// the session cannot finish, the device stays LUO's and keeps writing into
// memory that KHO keeps reserved; nothing faults and nothing is lost.
TEST_F(VfioLiveupdateTest, AnUnclaimedDeviceHoldsTheSession) {
  PreserveVmm("nvme0", kSize);
  Kexec();
  ASSERT_EQ(BindVfio("nvme0"), 0);
  const int in = Retrieve(SessionName("nvme0"));
  ASSERT_GE(in, 0);
  const int memfd = luo::RetrieveFd(p(), in, kMemfdToken);
  ASSERT_GE(memfd, 0);
  EXPECT_EQ(luo::FinishSession(p(), in), -EBUSY);
  ASSERT_EQ(p().Close(in), 0);  // release tries to finish, and cannot
  Run(20);
  EXPECT_EQ(OpenCdev("nvme0"), -EBUSY);
  EXPECT_TRUE(Dev("nvme0")->liveupdate.incoming != nullptr);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_EQ(CheckRing(memfd, kSize, Next()), "");
}

// Two VMs with a device each behind the same switch, updated together;
// vm1's device is not preserved: shutdown stops its DMA (the only DMA
// event), and kernel B's vfio-pci resets it when vm1 opens it again.
TEST_F(VfioLiveupdateTest, TwoVmsOneDeviceNotPreserved) {
  // nvme0 and nvme1 sit below two downstream ports of one switch.
  ASSERT_EQ(pci_upstream_bridge(pci_upstream_bridge(Dev("nvme0"))),
            pci_upstream_bridge(pci_upstream_bridge(Dev("nvme1"))));
  PreserveVmm("nvme0", kSize);
  const int memfd1 = SealedMemfd(kSize);
  int dev1 = -1;
  SetUpVfioVmm("nvme1", memfd1, kSize, &dev1);
  StartCounter("nvme1", kGuestIova, kSize);
  Run(10);
  ASSERT_GT(Engine("nvme1").bytes_written(), 0u);
  Kexec();
  ASSERT_THAT(Events(), ElementsAre(HasSubstr("nvme1")));
  EXPECT_THAT(Events()[0], HasSubstr("stopped"));
  EXPECT_FALSE(Hw("nvme1").bus_master());
  const uint64_t nvme1_bytes = Engine("nvme1").bytes_written();
  Run(10);
  EXPECT_EQ(Engine("nvme1").bytes_written(), nvme1_bytes);
  // vm1 starts afresh: its device opens and is reset (its queue dropped).
  ASSERT_EQ(BindVfio("nvme1"), 0);
  ASSERT_EQ(BindVfio("nvme0"), 0);
  const uint64_t resets = Hw("nvme1").reset_count();
  const int dev = OpenCdev("nvme1");
  ASSERT_GE(dev, 0);
  ASSERT_GT(VfioBind(dev, OpenIommufd()), 0);
  EXPECT_EQ(Hw("nvme1").reset_count(), resets + 1);
  Run(1);
  EXPECT_EQ(Engine("nvme1").state(), hw::DmaEngine::State::kIdle);
  // vm0's device went on throughout.
  const int in = Retrieve(SessionName("nvme0"));
  const int memfd = luo::RetrieveFd(p(), in, kMemfdToken);
  Run(10);
  EXPECT_EQ(CheckRing(memfd, kSize, Next("nvme0")), "");
  EXPECT_EQ(Events().size(), 1u);
}

}  // namespace
}  // namespace khosim::testing

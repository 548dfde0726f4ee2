// VFIO in one kernel: the device cdev and its bind/attach rules, the
// legacy group and container, the config region, reset, MSI-X triggers,
// and what the last close does to the device.
#include <sys/eventfd.h>

#include <string>

#include "drivers/vfio_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace khosim::testing {
namespace {

using ::testing::IsEmpty;

constexpr uint64_t kSize = 1 * kMiB;

class VfioTest : public VfioFixture {
 protected:
  // A container with the type1 IOMMU and |name|'s group in it; the fds.
  struct Legacy {
    int container = -1;
    int group = -1;
  };
  Legacy OpenLegacy(const std::string& name) {
    Legacy l;
    l.container = p().Open("/dev/vfio/vfio", O_RDWR);
    l.group = p().Open(GroupPath(name), O_RDWR);
    EXPECT_GE(l.group, 0);
    EXPECT_EQ(p().Ioctl(l.group, VFIO_GROUP_SET_CONTAINER, &l.container), 0);
    EXPECT_EQ(
        p().Ioctl(l.container, VFIO_SET_IOMMU, static_cast<unsigned long>(VFIO_TYPE1v2_IOMMU)), 0);
    return l;
  }
  long GetDeviceFd(int group, const std::string& name) {
    const std::string bdf = pci_name(Dev(name));
    return p().Ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf.c_str());
  }
};

TEST_F(VfioTest, NodesAreNumberedInProbeOrder) {
  ASSERT_EQ(BindVfio("nvme1"), 0);
  ASSERT_EQ(BindVfio("nvme0"), 0);
  EXPECT_EQ(Index("nvme1"), 0);
  EXPECT_EQ(Index("nvme0"), 1);
  EXPECT_EQ(vfio_pci_device_index(Dev("accel0")), -ENODEV);
  EXPECT_GE(p().Open("/dev/vfio/devices/vfio1", O_RDWR), 0);
  EXPECT_GE(p().Open("/dev/vfio/0", O_RDWR), 0);
  EXPECT_EQ(p().Open("/dev/vfio/0", O_RDWR), -EBUSY);  // one group opener
}

TEST_F(VfioTest, BindRules) {
  const int dev = OpenCdev("nvme0");
  ASSERT_GE(dev, 0);
  // Unbound: nothing but BIND.
  struct vfio_device_info info = {.argsz = sizeof(info)};
  EXPECT_EQ(p().Ioctl(dev, VFIO_DEVICE_GET_INFO, &info), -EINVAL);
  EXPECT_EQ(SetMaster(dev, true), -EINVAL);
  struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind), .flags = 1, .iommufd = 0};
  EXPECT_EQ(p().Ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind), -EINVAL);  // flags
  bind = {.argsz = 8, .iommufd = 0};
  EXPECT_EQ(p().Ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind), -EINVAL);  // argsz
  EXPECT_EQ(VfioBind(dev, -1), -EINVAL);
  EXPECT_EQ(VfioBind(dev, 999), -EBADF);
  const int memfd = SealedMemfd(kSize);
  EXPECT_EQ(VfioBind(dev, memfd), -EBADFD);  // not an iommufd
  const int iommufd = OpenIommufd();
  ASSERT_GT(VfioBind(dev, iommufd), 0);
  EXPECT_EQ(VfioBind(dev, iommufd), -EINVAL);  // bound already
  // A second cdev file of the same device cannot take it.
  const int other = OpenCdev("nvme0");
  ASSERT_GE(other, 0);
  EXPECT_EQ(VfioBind(other, OpenIommufd()), -EBUSY);
  // Nor can the group while the cdev has it.
  EXPECT_EQ(p().Open(GroupPath("nvme0"), O_RDWR), -EBUSY);
  ASSERT_EQ(p().Ioctl(dev, VFIO_DEVICE_GET_INFO, &info), 0);
  EXPECT_EQ(info.flags, static_cast<uint32_t>(VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET));
  EXPECT_EQ(info.num_regions, static_cast<uint32_t>(VFIO_PCI_NUM_REGIONS));
  EXPECT_EQ(info.num_irqs, static_cast<uint32_t>(VFIO_PCI_NUM_IRQS));
  // Attach: an unknown id, then the IOAS (an automatic HWPT).
  EXPECT_EQ(VfioAttach(dev, 77), -ENOENT);
  const auto ioas = static_cast<uint32_t>(IoasAlloc(iommufd));
  const long hwpt = VfioAttach(dev, ioas);
  EXPECT_GT(hwpt, 0);
  EXPECT_NE(hwpt, ioas);
  EXPECT_EQ(VfioDetach(dev), 0);
  ASSERT_EQ(p().Close(dev), 0);
  // Closed: the other file may bind now.
  EXPECT_GT(VfioBind(other, OpenIommufd()), 0);
}

TEST_F(VfioTest, LegacyGroupAndContainer) {
  const int container = p().Open("/dev/vfio/vfio", O_RDWR);
  ASSERT_GE(container, 0);
  EXPECT_EQ(p().Ioctl(container, VFIO_GET_API_VERSION, 0ul), VFIO_API_VERSION);
  EXPECT_EQ(
      p().Ioctl(container, VFIO_CHECK_EXTENSION, static_cast<unsigned long>(VFIO_TYPE1v2_IOMMU)),
      1);
  EXPECT_EQ(p().Ioctl(container, VFIO_CHECK_EXTENSION, 8ul), 0);
  // No group yet.
  EXPECT_EQ(p().Ioctl(container, VFIO_SET_IOMMU, static_cast<unsigned long>(VFIO_TYPE1v2_IOMMU)),
            -EINVAL);
  const int group = p().Open(GroupPath("nvme0"), O_RDWR);
  ASSERT_GE(group, 0);
  struct vfio_group_status status = {.argsz = sizeof(status)};
  ASSERT_EQ(p().Ioctl(group, VFIO_GROUP_GET_STATUS, &status), 0);
  EXPECT_EQ(status.flags, static_cast<uint32_t>(VFIO_GROUP_FLAGS_VIABLE));
  EXPECT_EQ(GetDeviceFd(group, "nvme0"), -EINVAL);  // no container
  const int memfd = SealedMemfd(kSize);
  EXPECT_EQ(p().Ioctl(group, VFIO_GROUP_SET_CONTAINER, &memfd), -EINVAL);
  ASSERT_EQ(p().Ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), 0);
  EXPECT_EQ(p().Ioctl(group, VFIO_GROUP_SET_CONTAINER, &container), -EBUSY);
  ASSERT_EQ(p().Ioctl(group, VFIO_GROUP_GET_STATUS, &status), 0);
  EXPECT_EQ(status.flags,
            static_cast<uint32_t>(VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET));
  EXPECT_EQ(GetDeviceFd(group, "nvme0"), -EINVAL);  // no IOMMU type
  EXPECT_EQ(p().Ioctl(container, VFIO_SET_IOMMU, 8ul), -ENODEV);
  ASSERT_EQ(p().Ioctl(container, VFIO_SET_IOMMU, static_cast<unsigned long>(VFIO_TYPE1v2_IOMMU)),
            0);
  EXPECT_EQ(GetDeviceFd(group, "nvme1"), -ENODEV);
  const long dev = GetDeviceFd(group, "nvme0");
  ASSERT_GE(dev, 0);
  // Opened: the device works, but it is not a cdev.
  EXPECT_EQ(SetMaster(static_cast<int>(dev), true), 0);
  EXPECT_EQ(VfioBind(static_cast<int>(dev), OpenIommufd()), -EINVAL);
  EXPECT_EQ(VfioAttach(static_cast<int>(dev), 1), -EINVAL);
  // The cdev cannot bind while the group is in use.
  const int cdev = OpenCdev("nvme0");
  EXPECT_EQ(VfioBind(cdev, OpenIommufd()), -EBUSY);
  EXPECT_EQ(p().Ioctl(group, VFIO_GROUP_UNSET_CONTAINER, 0ul), -EBUSY);
  ASSERT_EQ(p().Close(static_cast<int>(dev)), 0);
  ASSERT_EQ(p().Ioctl(group, VFIO_GROUP_UNSET_CONTAINER, 0ul), 0);
  ASSERT_EQ(p().Close(group), 0);
  EXPECT_GT(VfioBind(cdev, OpenIommufd()), 0);
}

// The config region: reads pass through, Command's Memory, Bus Master and
// INTx Disable bits are written, everything else is dropped.
TEST_F(VfioTest, ConfigRegion) {
  int dev = -1;
  SetUpVfioVmm("nvme0", SealedMemfd(kSize), kSize, &dev);
  uint32_t id = 0;
  ASSERT_EQ(p().Pread(dev, &id, 4, static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET)), 4);
  EXPECT_EQ(id, Hw("nvme0").Peek(0, 4));
  EXPECT_TRUE(Hw("nvme0").bus_master());
  EXPECT_EQ(SetMaster(dev, false), 0);
  EXPECT_FALSE(Hw("nvme0").bus_master());
  uint32_t bar = 0x12345000;
  ASSERT_EQ(p().Pwrite(dev, &bar, 4, static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET + 0x10)), 4);
  uint32_t after = 0;
  ASSERT_EQ(p().Pread(dev, &after, 4, static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET + 0x10)), 4);
  EXPECT_NE(after, bar);
  // Unaligned, oversized, past the space, or another region.
  EXPECT_EQ(p().Pread(dev, &id, 4, static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET + 2)), -EINVAL);
  EXPECT_EQ(p().Pread(dev, &id, 3, static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET)), -EINVAL);
  EXPECT_EQ(p().Pread(dev, &id, 4, static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET + 4096)), -EINVAL);
  EXPECT_EQ(p().Pread(dev, &id, 4, 0), -EINVAL);
}

// Opening resets the function; VFIO_DEVICE_RESET too; the last close
// stops and resets it.
TEST_F(VfioTest, ResetsAtOpenOnRequestAndAtClose) {
  int dev = -1;
  const int memfd = SealedMemfd(kSize);
  ASSERT_EQ(BindVfio("nvme0"), 0);
  const uint64_t probed = Hw("nvme0").reset_count();
  SetUpVfioVmm("nvme0", memfd, kSize, &dev);
  EXPECT_EQ(Hw("nvme0").reset_count(), probed + 1);  // the bind opened it
  StartCounter("nvme0", kGuestIova, kSize);
  Run(5);
  EXPECT_EQ(Engine("nvme0").state(), hw::DmaEngine::State::kRunning);
  const uint64_t resets = Hw("nvme0").reset_count();
  ASSERT_EQ(p().Ioctl(dev, VFIO_DEVICE_RESET, 0ul), 0);
  EXPECT_EQ(Hw("nvme0").reset_count(), resets + 1);
  Run(1);
  EXPECT_EQ(Engine("nvme0").state(), hw::DmaEngine::State::kIdle);
  EXPECT_EQ(SetMaster(dev, true), 0);
  StartCounter("nvme0", kGuestIova, kSize);
  Run(5);
  ASSERT_EQ(p().Close(dev), 0);
  EXPECT_EQ(Hw("nvme0").reset_count(), resets + 2);
  Run(1);
  EXPECT_EQ(Engine("nvme0").state(), hw::DmaEngine::State::kIdle);
  EXPECT_FALSE(Hw("nvme0").bus_master());
  EXPECT_THAT(Events(), IsEmpty());
}

// The driver lets go while a VMM holds the device: the device is closed
// (stopped and reset) at once, the files answer -ENODEV, the nodes are
// gone, and the last close frees what is left.
TEST_F(VfioTest, UnbindingTheDriverWithFilesOpen) {
  int dev = -1;
  SetUpVfioVmm("nvme0", SealedMemfd(kSize), kSize, &dev);
  const int unbound = OpenCdev("nvme0");
  ASSERT_GE(unbound, 0);
  const std::string cdev = CdevPath("nvme0");
  core().Unbind(Dev("nvme0"));
  EXPECT_FALSE(Hw("nvme0").bus_master());
  EXPECT_EQ(SetMaster(dev, true), -ENODEV);
  EXPECT_EQ(VfioBind(unbound, OpenIommufd()), -ENODEV);
  EXPECT_EQ(p().Open(cdev, O_RDWR), -ENOENT);
  EXPECT_EQ(p().Close(dev), 0);
  EXPECT_EQ(p().Close(unbound), 0);
  // Bound again, it is a new device with the same number.
  ASSERT_EQ(BindVfio("nvme0"), 0);
  EXPECT_EQ(CdevPath("nvme0"), cdev);
  EXPECT_GT(VfioBind(OpenCdev("nvme0"), OpenIommufd()), 0);
}

TEST_F(VfioTest, MsixTriggers) {
  int dev = -1;
  SetUpVfioVmm("nvme0", SealedMemfd(kSize), kSize, &dev);
  struct vfio_irq_info info = {.argsz = sizeof(info), .index = VFIO_PCI_MSIX_IRQ_INDEX};
  ASSERT_EQ(p().Ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &info), 0);
  EXPECT_EQ(info.count, Hw("nvme0").msix_table_size());
  EXPECT_EQ(info.flags, static_cast<uint32_t>(VFIO_IRQ_INFO_EVENTFD));
  info.index = VFIO_PCI_NUM_IRQS;
  EXPECT_EQ(p().Ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &info), -EINVAL);

  const int efd = p().Eventfd(0, EFD_NONBLOCK);
  const int memfd = SealedMemfd(kSize);
  EXPECT_EQ(SetMsix(dev, {memfd}), -EINVAL);  // not an eventfd
  EXPECT_FALSE(Hw("nvme0").msix_enabled());
  EXPECT_EQ(SetMsix(dev, {efd}, info.count), -EINVAL);  // past the table
  EXPECT_EQ(DisableMsix(dev), -EINVAL);                 // not enabled
  ASSERT_EQ(SetMsix(dev, {-1, efd}), 0);
  EXPECT_TRUE(Hw("nvme0").msix_enabled());
  Engine("nvme0").Submit(
      hw::DmaDescriptor{.op = hw::DmaOp::kFill, .dst = kGuestIova, .len = 4096, .irq_vector = 1});
  Run(40);
  EXPECT_EQ(ReadEventfd(efd), 1u);
  // DATA_NONE fires the vectors' eventfds (a test's interrupt).
  struct vfio_irq_set fire = {.argsz = sizeof(fire),
                              .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                              .index = VFIO_PCI_MSIX_IRQ_INDEX,
                              .start = 0,
                              .count = 2};
  ASSERT_EQ(p().Ioctl(dev, VFIO_DEVICE_SET_IRQS, &fire), 0);
  EXPECT_EQ(ReadEventfd(efd), 1u);
  fire.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK;
  EXPECT_EQ(p().Ioctl(dev, VFIO_DEVICE_SET_IRQS, &fire), -ENOTTY);
  fire.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
  EXPECT_EQ(p().Ioctl(dev, VFIO_DEVICE_SET_IRQS, &fire), -EINVAL);
  ASSERT_EQ(DisableMsix(dev), 0);
  EXPECT_FALSE(Hw("nvme0").msix_enabled());
  // The last close disables what the VMM left enabled.
  ASSERT_EQ(SetMsix(dev, {efd}), 0);
  ASSERT_EQ(p().Close(dev), 0);
  EXPECT_FALSE(Hw("nvme0").msix_enabled());
}

}  // namespace
}  // namespace khosim::testing

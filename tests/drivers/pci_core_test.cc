// The PCI core of one kernel: enumeration and bus numbers, capabilities,
// ARI and ACS, the driver model, config faults, and shutdown at kexec when
// nothing is preserved.
#include <fcntl.h>

#include <string>
#include <vector>

#include "drivers/pci_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/drivers/pci.h"
#include "khosim/linux/pci.h"

namespace khosim::testing {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Names(const drivers::PciCore& core) {
  std::vector<std::string> out;
  for (const struct pci_dev* dev : core.devices()) out.push_back(pci_name(dev));
  return out;
}

using PciCoreTest = PciFixture;

TEST_F(PciCoreTest, EnumeratesTheMachineAndNumbersBridgesDepthFirst) {
  EXPECT_THAT(Names(core()),
              ElementsAre("0000:00:01.0", "0000:00:02.0", "0000:01:00.0", "0000:02:00.0",
                          "0000:02:01.0", "0000:03:00.0", "0000:04:00.0", "0000:05:00.0"));
  EXPECT_STREQ(pci_name(Dev("nvme1")), "0000:04:00.0");
  EXPECT_STREQ(pci_name(Dev("accel0")), "0000:05:00.0");
  EXPECT_EQ(Hw("rp0").Peek(PCI_SECONDARY_BUS, 1), 1u);
  EXPECT_EQ(Hw("rp0").Peek(PCI_SUBORDINATE_BUS, 1), 4u);
  EXPECT_EQ(Hw("sw0.d1").Peek(PCI_PRIMARY_BUS, 1), 2u);
  struct pci_dev* nvme0 = Dev("nvme0");
  EXPECT_EQ(nvme0->vendor, 0x1b36);
  EXPECT_EQ(nvme0->class_, 0x010802u);
  EXPECT_EQ(pci_pcie_type(nvme0), PCI_EXP_TYPE_ENDPOINT);
  EXPECT_EQ(pci_upstream_bridge(nvme0), Dev("sw0.d0"));
  EXPECT_EQ(nvme0->msix_cap, Hw("nvme0").msix_cap());
  EXPECT_TRUE(pci_is_bridge(Dev("sw0")));
  EXPECT_EQ(core().FindByName("0000:02:01.0"), Dev("sw0.d1"));
}

class HotplugBusesTest : public PciFixture {
  MachineConfig Config() override {
    MachineConfig config = PciFixture::Config();
    config.cmdline += " pci=hpbussize=2";
    return config;
  }
};

TEST_F(HotplugBusesTest, ReservesBusNumbersBelowEveryPort) {
  EXPECT_STREQ(pci_name(Dev("nvme0")), "0000:03:00.0");
  EXPECT_STREQ(pci_name(Dev("nvme1")), "0000:06:00.0");
  EXPECT_STREQ(pci_name(Dev("accel0")), "0000:0b:00.0");
  EXPECT_EQ(Hw("rp0").Peek(PCI_SUBORDINATE_BUS, 1), 10u);
}

TEST_F(PciCoreTest, AriForwardingFollowsTheDeviceBelowThePort) {
  // accel0 is an SR-IOV PF with ARI; the switch's upstream port has none.
  EXPECT_NE(Dev("accel0")->ari_cap, 0);
  EXPECT_TRUE(Dev("rp1")->ari_enabled);
  EXPECT_NE(Hw("rp1").Peek(Hw("rp1").exp_cap() + PCI_EXP_DEVCTL2, 2) & PCI_EXP_DEVCTL2_ARI, 0u);
  EXPECT_FALSE(Dev("rp0")->ari_enabled);
}

TEST_F(PciCoreTest, AcsGetsTheKernelDefaultOnEveryPort) {
  const uint16_t expect = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;
  for (const char* port : {"rp0", "rp1", "sw0.d0", "sw0.d1"}) {
    EXPECT_EQ(Hw(port).Peek(Hw(port).acs_cap() + PCI_ACS_CTRL, 2), expect) << port;
  }
}

TEST_F(PciCoreTest, DriversBindOnlyWhereTheOverrideNamesThem) {
  EXPECT_EQ(core().Bind(Dev("nvme0")), -ENODEV);
  EXPECT_EQ(BindPassthrough("nvme0"), 0);
  EXPECT_EQ(core().Bind(Dev("nvme0")), -EBUSY);
  EXPECT_TRUE(m().kernel().vfs().HasDevice("pci-passthrough/0000:03:00.0"));
  const int fd = p().Open(Node("nvme0"), O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(p().Open(Node("nvme0"), O_RDWR), -EBUSY);
  EXPECT_EQ(p().Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 2ul), -EINVAL);
  EXPECT_EQ(p().Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 1ul), 0);
  EXPECT_TRUE(Hw("nvme0").bus_master());
  // pci_enable_device made every bridge above it a bus master.
  EXPECT_TRUE(Hw("sw0.d0").bus_master());
  EXPECT_TRUE(Hw("rp0").bus_master());
  EXPECT_FALSE(Hw("rp1").bus_master());
  EXPECT_EQ(p().Close(fd), 0);
  core().Unbind(Dev("nvme0"));
  EXPECT_FALSE(m().kernel().vfs().HasDevice("pci-passthrough/0000:03:00.0"));
}

// Unbinding while a file is open leaves the file working until its close
// (ASan checks that nothing is used after it is freed).
TEST_F(PciCoreTest, UnbindingUnderAnOpenFileKeepsItsStateUntilTheClose) {
  const int fd = OpenDevice("nvme1");
  ASSERT_GE(fd, 0);
  core().Unbind(Dev("nvme1"));
  EXPECT_EQ(Dev("nvme1")->driver, nullptr);
  EXPECT_EQ(p().Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 0ul), -ENODEV);
  EXPECT_EQ(p().Close(fd), 0);
  EXPECT_EQ(BindPassthrough("nvme1"), 0);
  const int again = p().Open(Node("nvme1"), O_RDWR);
  EXPECT_GE(again, 0);
}

TEST_F(PciCoreTest, AReferenceNeverPutIsCounted) {
  EXPECT_EQ(core().OutstandingRefs(), 0);
  struct pci_dev* dev = pci_get_domain_bus_and_slot(0, 3, PCI_DEVFN(0, 0));
  ASSERT_EQ(dev, Dev("nvme0"));
  EXPECT_EQ(core().OutstandingRefs(), 1);
  pci_dev_put(dev);
  EXPECT_EQ(core().OutstandingRefs(), 0);
  EXPECT_EQ(pci_get_domain_bus_and_slot(0, 9, 0), nullptr);
}

TEST_F(PciCoreTest, AFailedConfigReadReportsAndReadsAllOnes) {
  m().faults().FailOnce("pci_config_read");
  u16 vendor = 0;
  EXPECT_EQ(pci_read_config_word(Dev("nvme0"), PCI_VENDOR_ID, &vendor), PCIBIOS_DEVICE_NOT_FOUND);
  EXPECT_EQ(vendor, 0xffff);
  EXPECT_EQ(pci_read_config_word(Dev("nvme0"), PCI_VENDOR_ID, &vendor), PCIBIOS_SUCCESSFUL);
  EXPECT_EQ(vendor, 0x1b36);
  EXPECT_EQ(pci_read_config_word(Dev("nvme0"), PCI_COMMAND + 1, &vendor),
            PCIBIOS_BAD_REGISTER_NUMBER);
}

TEST_F(PciCoreTest, KexecShutdownClearsBusMasteringWhenNothingIsPreserved) {
  const int fd = OpenDevice("nvme0");
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(Hw("nvme0").bus_master());
  Kexec();
  EXPECT_FALSE(Hw("nvme0").bus_master());
  EXPECT_FALSE(Hw("sw0.d0").bus_master());
  EXPECT_FALSE(Hw("rp0").bus_master());
  EXPECT_FALSE(Dev("nvme0")->is_busmaster);
  EXPECT_FALSE(Dev("nvme0")->liveupdate.was_incoming);
  EXPECT_EQ(m().kernel().WarnCount(), 0u);
}

TEST_F(PciCoreTest, VfsAKernelEnabledAreFoundByTheNextKernel) {
  struct pci_dev* pf = Dev("accel0");
  ASSERT_TRUE(pf->is_physfn);
  ASSERT_EQ(pci_write_config_word(pf, pf->sriov_cap + PCI_SRIOV_NUM_VF, 4), 0);
  ASSERT_EQ(pci_write_config_word(pf, pf->sriov_cap + PCI_SRIOV_CTRL,
                                  PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE),
            0);
  Kexec();
  struct pci_dev* vf = core().FindByName("0000:05:00.3");
  ASSERT_NE(vf, nullptr);
  EXPECT_TRUE(vf->is_virtfn);
  EXPECT_EQ(vf->physfn, Dev("accel0"));
  EXPECT_EQ(vf->device, 0x0011);
  EXPECT_EQ(vf->vendor, 0x8086);
  EXPECT_EQ(core().devices().size(), 12u);
}

TEST_F(PciCoreTest, AColdBootPowersTheHardwareOn) {
  const int fd = OpenDevice("nvme0");
  ASSERT_GE(fd, 0);
  const uint64_t resets = Hw("nvme0").reset_count();
  m().Boot();
  EXPECT_FALSE(Hw("nvme0").bus_master());
  EXPECT_EQ(Hw("nvme0").reset_count(), resets + 1);
}

}  // namespace
}  // namespace khosim::testing

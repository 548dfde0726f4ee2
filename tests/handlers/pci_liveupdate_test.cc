// PCI preservation across kexec ("PCI: liveupdate" v9 through the
// pci-passthrough driver): bus mastering through the kexec, path
// refcounts, bus numbers, the refusal path, every errno of preserve, every
// panic of the incoming kernel, and the FLB's bytes.
#include "khosim/linux/pci_liveupdate.h"

#include <fcntl.h>

#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "drivers/pci_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/base/panic.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/block.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/linux/mm.h"

namespace khosim::testing {
namespace {

using ::testing::HasSubstr;

bool LogHas(Machine& m, absl::string_view needle) {
  for (const std::string& line : m.kernel().ctx().LogLines()) {
    if (absl::StrContains(line, needle)) return true;
  }
  return false;
}

class PciLiveUpdateTest : public PciFixture {
 protected:
  // The running kernel's outgoing pci_ser, or nullptr.
  struct pci_ser* OutgoingSer() {
    for (const luo::Luo::FlbInfo& flb : m().kernel().luo().Flbs()) {
      if (flb.compatible == PCI_LUO_FLB_COMPATIBLE && flb.outgoing_data != 0) {
        return static_cast<struct pci_ser*>(phys_to_virt(flb.outgoing_data));
      }
    }
    return nullptr;
  }
  // Kexec that must panic kernel B; the panic's message.
  std::string KexecPanics(KexecOptions options = {}) {
    try {
      (void)m().Kexec(std::move(options));
    } catch (const KernelPanic& panic) {
      return panic.what();
    }
    ADD_FAILURE() << "kernel B did not panic";
    return "";
  }
};

TEST_F(PciLiveUpdateTest, APreservedDeviceKeepsMasteringAndComesBackIncoming) {
  const int nvme1 = OpenDevice("nvme1");
  const int accel = OpenDevice("accel0");
  ASSERT_GE(nvme1, 0);
  ASSERT_GE(accel, 0);
  PreserveDevice("vm0", "nvme0");
  EXPECT_EQ(OutRef("nvme0"), 1);
  EXPECT_EQ(OutRef("sw0.d0"), 1);
  EXPECT_EQ(OutRef("sw0"), 1);
  EXPECT_EQ(OutRef("rp0"), 1);
  EXPECT_EQ(OutRef("sw0.d1"), 0);
  ASSERT_NE(OutgoingSer(), nullptr);
  EXPECT_EQ(OutgoingSer()->version, 1u);
  EXPECT_EQ(OutgoingSer()->nr_devices, 4u);

  Kexec();
  // Hardware: the preserved path kept bus mastering; everything else lost it.
  for (const char* kept : {"nvme0", "sw0.d0", "sw0", "rp0"}) {
    EXPECT_TRUE(Hw(kept).bus_master()) << kept;
  }
  for (const char* cleared : {"nvme1", "sw0.d1", "accel0", "rp1"}) {
    EXPECT_FALSE(Hw(cleared).bus_master()) << cleared;
  }
  // The same address, incoming, and held for LUO.
  EXPECT_STREQ(pci_name(Dev("nvme0")), "0000:03:00.0");
  EXPECT_TRUE(pci_liveupdate_is_incoming(Dev("nvme0")));
  EXPECT_TRUE(Dev("nvme0")->liveupdate.was_incoming);
  EXPECT_FALSE(pci_liveupdate_is_incoming(Dev("nvme1")));
  EXPECT_EQ(InRef("rp0"), 1);
  EXPECT_TRUE(LogHas(m(), "Device was preserved by previous kernel across Live Update"));
  EXPECT_EQ(BindPassthrough("nvme0"), 0);
  EXPECT_EQ(p().Open(Node("nvme0"), O_RDWR), -EBUSY);

  const int s = Retrieve("vm0");
  ASSERT_GE(s, 0);
  const int fd = luo::RetrieveFd(p(), s, 1);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(p().Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 1ul), 0);
  EXPECT_EQ(luo::FinishSession(p(), s), 0);
  EXPECT_FALSE(pci_liveupdate_is_incoming(Dev("nvme0")));
  EXPECT_TRUE(Dev("nvme0")->liveupdate.was_incoming);
  EXPECT_EQ(InRef("nvme0"), 0);
  EXPECT_EQ(InRef("rp0"), 0);
  EXPECT_TRUE(Hw("nvme0").bus_master());
  EXPECT_TRUE(LogHas(m(), "Device is finished participating in Live Update"));
  EXPECT_EQ(m().kernel().WarnCount(), 0u);
  EXPECT_EQ(core().OutstandingRefs(), 0);  // retrieve and finish looked the device up
}

class PciSmallPagesTest : public PciLiveUpdateTest {
  MachineConfig Config() override {
    MachineConfig config = PciLiveUpdateTest::Config();
    config.page_size = 16384;
    return config;
  }
};

TEST_F(PciSmallPagesTest, SixteenKiBPagesHoldTheirOwnBlockCapacity) {
  PreserveDevice("vm0", "nvme0");
  const struct pci_ser* ser = OutgoingSer();
  ASSERT_NE(ser, nullptr);
  EXPECT_EQ(ser->devices % 16384, 0u);
  const auto* block = static_cast<const struct kho_block_header_ser*>(phys_to_virt(ser->devices));
  EXPECT_EQ(block->count, 4u);
  Kexec();
  EXPECT_TRUE(pci_liveupdate_is_incoming(Dev("nvme0")));
  ASSERT_EQ(BindPassthrough("nvme0"), 0);
  const int s = Retrieve("vm0");
  ASSERT_GE(luo::RetrieveFd(p(), s, 1), 0);
  EXPECT_EQ(luo::FinishSession(p(), s), 0);
}

// Three endpoints behind one switch.
class PciSwitchTest : public PciLiveUpdateTest {
  MachineConfig Config() override {
    MachineConfig config = PciLiveUpdateTest::Config();
    hw::PciSegmentSpec segment;
    segment.functions.push_back(hw::PciRootPort(
        "rp0", 1,
        {hw::PciSwitch("sw0",
                       {hw::PciEndpoint("e0"), hw::PciEndpoint("e1"), hw::PciEndpoint("e2")})}));
    config.pci = hw::PciTopology{.segments = {segment}};
    return config;
  }
};

TEST_F(PciSwitchTest, ABridgeCountsThePreservedEndpointsBelowIt) {
  const int s0 = PreserveDevice("s0", "e0");
  EXPECT_EQ(OutRef("sw0"), 1);
  const int s1 = PreserveDevice("s1", "e1");
  EXPECT_EQ(OutRef("sw0"), 2);
  EXPECT_EQ(OutRef("rp0"), 2);
  PreserveDevice("s2", "e2");
  EXPECT_EQ(OutRef("sw0"), 3);
  EXPECT_EQ(OutRef("rp0"), 3);
  EXPECT_EQ(OutRef("sw0.d1"), 1);
  EXPECT_EQ(OutgoingSer()->nr_devices, 8u);  // 3 endpoints, 3 ports, sw0, rp0

  // Unpreserving e1 (its session closes) frees its slot and its port's;
  // preserving it again takes the same slots before the set grows.
  struct pci_dev_ser* e1_slot = Dev("e1")->liveupdate.outgoing;
  struct pci_dev_ser* d1_slot = Dev("sw0.d1")->liveupdate.outgoing;
  ASSERT_EQ(p().Close(s1), 0);
  EXPECT_EQ(OutRef("e1"), 0);
  EXPECT_EQ(OutRef("sw0.d1"), 0);
  EXPECT_EQ(OutRef("sw0"), 2);
  EXPECT_EQ(OutgoingSer()->nr_devices, 6u);
  EXPECT_EQ(e1_slot->refcount, 0);
  ASSERT_EQ(pci_liveupdate_preserve(Dev("e1")), 0);
  EXPECT_EQ(Dev("e1")->liveupdate.outgoing, e1_slot);
  EXPECT_EQ(Dev("sw0.d1")->liveupdate.outgoing, d1_slot);
  pci_liveupdate_unpreserve(Dev("e1"));
  EXPECT_EQ(OutRef("sw0"), 2);

  Kexec();
  EXPECT_EQ(InRef("sw0"), 2);
  EXPECT_EQ(InRef("rp0"), 2);
  EXPECT_EQ(InRef("e1"), 0);
  EXPECT_FALSE(pci_liveupdate_is_incoming(Dev("sw0.d1")));
  // Finishing one endpoint drops one reference on every bridge above it.
  for (const char* dev : {"e0", "e2"}) EXPECT_EQ(BindPassthrough(dev), 0);
  const int r0 = Retrieve("s0");
  ASSERT_GE(luo::RetrieveFd(p(), r0, 1), 0);
  ASSERT_EQ(luo::FinishSession(p(), r0), 0);
  EXPECT_EQ(InRef("sw0"), 1);
  EXPECT_TRUE(pci_liveupdate_is_incoming(Dev("sw0")));
  const int r2 = Retrieve("s2");
  ASSERT_GE(luo::RetrieveFd(p(), r2, 1), 0);
  ASSERT_EQ(luo::FinishSession(p(), r2), 0);
  EXPECT_FALSE(pci_liveupdate_is_incoming(Dev("sw0")));
  EXPECT_FALSE(pci_liveupdate_is_incoming(Dev("rp0")));
  EXPECT_EQ(m().kernel().WarnCount(), 0u);
  (void)s0;
}

constexpr char kRenumber[] = "kho=on liveupdate=on pci=assign-busses,hpbussize=2";

TEST_F(PciLiveUpdateTest, WithoutAnIncomingDeviceTheNextKernelMayRenumber) {
  Kexec({.cmdline = kRenumber});
  EXPECT_STREQ(pci_name(Dev("nvme1")), "0000:06:00.0");
  EXPECT_STREQ(pci_name(Dev("accel0")), "0000:0b:00.0");
}

TEST_F(PciLiveUpdateTest, AnIncomingDeviceKeepsEveryBridgesBusNumbers) {
  PreserveDevice("vm0", "nvme0");
  Kexec({.cmdline = kRenumber});
  // Not only the preserved path: every bridge keeps its numbers.
  EXPECT_STREQ(pci_name(Dev("nvme0")), "0000:03:00.0");
  EXPECT_STREQ(pci_name(Dev("nvme1")), "0000:04:00.0");
  EXPECT_STREQ(pci_name(Dev("accel0")), "0000:05:00.0");
}

TEST_F(PciLiveUpdateTest, APreservedBridgeThatLostItsBusNumbersHidesItsSubtree) {
  PreserveDevice("vm0", "nvme1");
  // Firmware (or a stray reset) clears the preserved port's bus numbers.
  hw::PciHardware& hw = m().pci();
  hw.ConfigWrite(0, 2, PCI_DEVFN(1, 0), PCI_SUBORDINATE_BUS, 1, 0);
  hw.ConfigWrite(0, 2, PCI_DEVFN(1, 0), PCI_SECONDARY_BUS, 1, 0);
  Kexec({.cmdline = kRenumber});
  EXPECT_TRUE(LogHas(m(),
                     "Not assigning bus numbers, preserved bridge 0000:02:01.0 lost its "
                     "bus number configuration"));
  EXPECT_EQ(Dev("nvme1"), nullptr);
  EXPECT_EQ(Hw("sw0.d1").Peek(PCI_SECONDARY_BUS, 1), 0u);
  EXPECT_TRUE(pci_liveupdate_is_incoming(Dev("sw0.d1")));
  EXPECT_STREQ(pci_name(Dev("nvme0")), "0000:03:00.0");
  const int s = Retrieve("vm0");
  ASSERT_GE(s, 0);
  EXPECT_EQ(luo::RetrieveFd(p(), s, 1), -ENODEV);
}

TEST_F(PciLiveUpdateTest, AcsAndAriForwardingOfIncomingPortsAreAdopted) {
  PreserveDevice("vm0", "accel0");
  // Kernel A's own choices, different from the next kernel's defaults.
  hw::PciFunction& rp1 = Hw("rp1");
  hw::PciFunction& rp0 = Hw("rp0");
  m().pci().ConfigWrite(0, 0, PCI_DEVFN(2, 0), rp1.acs_cap() + PCI_ACS_CTRL, 2, PCI_ACS_SV);
  m().pci().ConfigWrite(0, 0, PCI_DEVFN(1, 0), rp0.acs_cap() + PCI_ACS_CTRL, 2, PCI_ACS_SV);
  m().pci().ConfigWrite(0, 0, PCI_DEVFN(2, 0), rp1.exp_cap() + PCI_EXP_DEVCTL2, 2, 0);
  Kexec();
  EXPECT_EQ(rp1.Peek(rp1.acs_cap() + PCI_ACS_CTRL, 2), unsigned{PCI_ACS_SV});
  EXPECT_EQ(rp1.Peek(rp1.exp_cap() + PCI_EXP_DEVCTL2, 2) & PCI_EXP_DEVCTL2_ARI, 0u);
  EXPECT_FALSE(Dev("rp1")->ari_enabled);
  // rp0 was not preserved: the next kernel writes its own default.
  EXPECT_EQ(rp0.Peek(rp0.acs_cap() + PCI_ACS_CTRL, 2),
            unsigned{PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF});
}

TEST_F(PciLiveUpdateTest, PreserveErrnos) {
  // No file of a linked handler preserved: no outgoing FLB.
  EXPECT_EQ(pci_liveupdate_preserve(Dev("nvme1")), -ENOENT);
  PreserveDevice("vm0", "nvme0");
  EXPECT_EQ(pci_liveupdate_preserve(Dev("nvme0")), -EBUSY);
  EXPECT_EQ(OutRef("rp0"), 1);  // the failed call took nothing
  EXPECT_EQ(pci_liveupdate_preserve(Dev("nvme1")), 0);
  EXPECT_EQ(OutRef("sw0"), 2);
  pci_liveupdate_unpreserve(Dev("nvme1"));
  EXPECT_EQ(OutRef("sw0"), 1);
  // Unpreserving what is not preserved changes nothing.
  pci_liveupdate_unpreserve(Dev("nvme1"));
  EXPECT_EQ(OutRef("sw0"), 1);
  EXPECT_TRUE(LogHas(m(), "Cannot unpreserve device that is not preserved"));
}

TEST_F(PciLiveUpdateTest, AFailureUpThePathUndoesTheDevicesBelow) {
  PreserveDevice("vm0", "nvme0");
  // rp0 alone is frozen (as if its shutdown had run): the walk up from
  // nvme1 adds nvme1 and its port, references sw0, then fails at rp0.
  Dev("rp0")->liveupdate.frozen = true;
  EXPECT_EQ(pci_liveupdate_preserve(Dev("nvme1")), -EINVAL);
  EXPECT_EQ(OutRef("nvme1"), 0);
  EXPECT_EQ(OutRef("sw0.d1"), 0);
  EXPECT_EQ(OutRef("sw0"), 1);
  EXPECT_EQ(OutRef("rp0"), 1);
  EXPECT_EQ(OutgoingSer()->nr_devices, 4u);
  EXPECT_EQ(m().kernel().WarnCount("after it is frozen"), 1u);
  Dev("rp0")->liveupdate.frozen = false;
}

TEST_F(PciLiveUpdateTest, AVirtualFunctionCannotBePreserved) {
  struct pci_dev* pf = Dev("accel0");
  ASSERT_EQ(pci_write_config_word(pf, pf->sriov_cap + PCI_SRIOV_NUM_VF, 2), 0);
  ASSERT_EQ(pci_write_config_word(pf, pf->sriov_cap + PCI_SRIOV_CTRL, PCI_SRIOV_CTRL_VFE), 0);
  Kexec();
  struct pci_dev* vf = core().FindByName("0000:05:00.1");
  ASSERT_NE(vf, nullptr);
  core().SetDriverOverride(vf, PCI_PASSTHROUGH_DRIVER_NAME);
  ASSERT_EQ(core().Bind(vf), 0);
  const int s = Create("vm0");
  const int fd = p().Open("/dev/pci-passthrough/0000:05:00.1", O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(luo::PreserveFd(p(), s, fd, 1), -EINVAL);
  EXPECT_TRUE(LogHas(m(), "Cannot preserve Virtual Functions"));
}

// A driver whose shutdown tries to change preservation after the freeze.
int frozen_preserve_ret = 0;
struct pci_dev* frozen_target = nullptr;
struct pci_dev* frozen_preserved = nullptr;

int late_probe(struct pci_dev*, const struct pci_device_id*) { return 0; }
void late_shutdown(struct pci_dev*) {
  frozen_preserve_ret = pci_liveupdate_preserve(frozen_target);
  pci_liveupdate_unpreserve(frozen_preserved);
}
struct pci_driver late_driver = {
    .name = "late-shutdown",
    .id_table = nullptr,
    .probe = late_probe,
    .remove = nullptr,
    .shutdown = late_shutdown,
};

TEST_F(PciLiveUpdateTest, AfterTheFreezeNothingIsPreservedOrUnpreserved) {
  PreserveDevice("vm0", "nvme0");
  // rp1 shuts down after every device below rp0 (reverse enumeration
  // order), so nvme0 and nvme1 are frozen by then.
  ASSERT_EQ(pci_register_driver(&late_driver), 0);
  core().SetDriverOverride(Dev("rp1"), "late-shutdown");
  ASSERT_EQ(core().Bind(Dev("rp1")), 0);
  frozen_target = Dev("nvme1");
  frozen_preserved = Dev("nvme0");
  frozen_preserve_ret = 0;
  Kexec();
  EXPECT_EQ(frozen_preserve_ret, -EINVAL);
  EXPECT_TRUE(pci_liveupdate_is_incoming(Dev("nvme0")));
  EXPECT_FALSE(pci_liveupdate_is_incoming(Dev("nvme1")));
}

TEST_F(PciLiveUpdateTest, AnIncompatibleVersionPanicsTheNextKernel) {
  PreserveDevice("vm0", "nvme0");
  OutgoingSer()->version = 2;
  EXPECT_THAT(KexecPanics(), HasSubstr("Incoming PCI FLB version (v2) is incompatible with this "
                                       "kernel (v1)"));
}

TEST_F(PciLiveUpdateTest, ABlockChainThatDoesNotRestorePanics) {
  PreserveDevice("vm0", "nvme0");
  OutgoingSer()->devices = 7 * 4096;  // a page nobody preserved
  EXPECT_THAT(KexecPanics(), HasSubstr("Failed to restore devices KHO block set (-22)"));
}

TEST_F(PciLiveUpdateTest, ADeviceListedTwicePanics) {
  PreserveDevice("vm0", "nvme0");
  auto* entries = reinterpret_cast<struct pci_dev_ser*>(
      static_cast<struct kho_block_header_ser*>(phys_to_virt(OutgoingSer()->devices)) + 1);
  entries[1] = entries[0];
  EXPECT_THAT(KexecPanics(),
              HasSubstr("Failed to insert PCI device 0000:03:00.0 into xarray (-16)"));
}

TEST_F(PciLiveUpdateTest, AHandoverPageThePreviousKernelDroppedPanics) {
  PreserveDevice("vm0", "nvme0");
  // The FLB's record is no longer preserved: the next kernel cannot trust
  // it, and DMA from the device it named may be running.
  kho_unpreserve_pages(virt_to_page(OutgoingSer()), 1);
  EXPECT_THAT(KexecPanics(), HasSubstr("Failed to retrieve incoming FLB data (-22)"));
}

TEST_F(PciLiveUpdateTest, ADeviceNobodyFinishedPanicsAtTheFlbsFinish) {
  PreserveDevice("vm0", "nvme0");
  // A driver bug: nvme1 preserved at the PCI level with no file to finish it.
  ASSERT_EQ(pci_liveupdate_preserve(Dev("nvme1")), 0);
  Kexec();
  ASSERT_EQ(BindPassthrough("nvme0"), 0);
  const int s = Retrieve("vm0");
  ASSERT_GE(luo::RetrieveFd(p(), s, 1), 0);
  try {
    (void)luo::FinishSession(p(), s);
    ADD_FAILURE() << "finish did not panic";
  } catch (const KernelPanic& panic) {
    // nvme1, its port, and sw0 and rp0 (whose counts nvme0's finish only
    // halved).
    EXPECT_THAT(panic.what(), HasSubstr("4 preserved device(s) were never finished!"));
  }
  EXPECT_TRUE(LogHas(m(), "0000:04:00.0 was never finished!"));
}

TEST_F(PciLiveUpdateTest, FinishNeedsTheDeviceRetrieved) {
  PreserveDevice("vm0", "nvme0");
  Kexec();
  EXPECT_EQ(BindPassthrough("nvme0"), 0);
  const int s = Retrieve("vm0");
  ASSERT_GE(s, 0);
  EXPECT_EQ(luo::FinishSession(p(), s), -EBUSY);
  EXPECT_TRUE(pci_liveupdate_is_incoming(Dev("nvme0")));
  ASSERT_GE(luo::RetrieveFd(p(), s, 1), 0);
  EXPECT_EQ(luo::FinishSession(p(), s), 0);
}

}  // namespace
}  // namespace khosim::testing

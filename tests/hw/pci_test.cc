// The PCI hardware model: routing through programmed bridges, write masks,
// resets, SR-IOV and ARI, and state that only a power-on clears.
#include "khosim/hw/pci.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/linux/pci_regs.h"

namespace khosim::hw {
namespace {

using ::testing::HasSubstr;

constexpr uint8_t kRoot = 0;

std::unique_ptr<PciHardware> Example() {
  absl::StatusOr<std::unique_ptr<PciHardware>> hw = PciHardware::Create(PciExampleTopology());
  EXPECT_TRUE(hw.ok()) << hw.status();
  return *std::move(hw);
}

void SetBuses(PciHardware& hw, uint8_t bus, uint8_t devfn, uint8_t primary, uint8_t secondary,
              uint8_t subordinate) {
  hw.ConfigWrite(0, bus, devfn, PCI_PRIMARY_BUS, 1, primary);
  hw.ConfigWrite(0, bus, devfn, PCI_SECONDARY_BUS, 1, secondary);
  hw.ConfigWrite(0, bus, devfn, PCI_SUBORDINATE_BUS, 1, subordinate);
}

// Bus numbers as an enumerating kernel assigns them: rp0 1..4, sw0 2..4,
// its ports 3 and 4, rp1 5.
void Number(PciHardware& hw) {
  SetBuses(hw, kRoot, PCI_DEVFN(1, 0), 0, 1, 4);
  SetBuses(hw, 1, PCI_DEVFN(0, 0), 1, 2, 4);
  SetBuses(hw, 2, PCI_DEVFN(0, 0), 2, 3, 3);
  SetBuses(hw, 2, PCI_DEVFN(1, 0), 2, 4, 4);
  SetBuses(hw, kRoot, PCI_DEVFN(2, 0), 0, 5, 5);
}

TEST(PciHardwareTest, OnlyTheRootBusAnswersBeforeBridgesAreNumbered) {
  auto hw = Example();
  EXPECT_EQ(hw->ConfigRead(0, kRoot, PCI_DEVFN(1, 0), PCI_VENDOR_ID, 2), 0x8086u);
  EXPECT_EQ(hw->ConfigRead(0, kRoot, PCI_DEVFN(1, 0), PCI_HEADER_TYPE, 1),
            unsigned{PCI_HEADER_TYPE_BRIDGE});
  EXPECT_EQ(hw->ConfigRead(0, kRoot, PCI_DEVFN(3, 0), PCI_VENDOR_ID, 2), 0xffffu);
  EXPECT_EQ(hw->ConfigRead(0, 1, PCI_DEVFN(0, 0), PCI_VENDOR_ID, 2), 0xffffu);
  EXPECT_EQ(hw->ConfigRead(7, kRoot, PCI_DEVFN(1, 0), PCI_VENDOR_ID, 4), 0xffffffffu);
}

TEST(PciHardwareTest, AccessesFollowTheBusNumbersSoftwareProgrammed) {
  auto hw = Example();
  Number(*hw);
  EXPECT_EQ(hw->Route(0, 3, PCI_DEVFN(0, 0)), hw->Find("nvme0"));
  EXPECT_EQ(hw->Route(0, 4, PCI_DEVFN(0, 0)), hw->Find("nvme1"));
  EXPECT_EQ(hw->Route(0, 5, PCI_DEVFN(0, 0)), hw->Find("accel0"));
  EXPECT_EQ(hw->ConfigRead(0, 3, PCI_DEVFN(0, 0), PCI_VENDOR_ID, 2), 0x1b36u);
  EXPECT_EQ(hw->ConfigRead(0, 5, PCI_DEVFN(0, 0), PCI_DEVICE_ID, 2), 0x0b25u);
  // Renumbering moves the devices: nvme1 now answers at bus 9.
  SetBuses(*hw, 2, PCI_DEVFN(1, 0), 2, 9, 9);
  SetBuses(*hw, 1, PCI_DEVFN(0, 0), 1, 2, 9);
  SetBuses(*hw, kRoot, PCI_DEVFN(1, 0), 0, 1, 9);
  EXPECT_EQ(hw->Route(0, 9, PCI_DEVFN(0, 0)), hw->Find("nvme1"));
  EXPECT_EQ(hw->Route(0, 4, PCI_DEVFN(0, 0)), nullptr);
}

TEST(PciHardwareTest, ReadOnlyBitsKeepTheirValuesAndErrorBitsClearOnOne) {
  auto hw = Example();
  Number(*hw);
  hw->ConfigWrite(0, 3, 0, PCI_VENDOR_ID, 2, 0x1234);
  EXPECT_EQ(hw->ConfigRead(0, 3, 0, PCI_VENDOR_ID, 2), 0x1b36u);
  hw->ConfigWrite(0, 3, 0, PCI_COMMAND, 2, 0xffff);
  EXPECT_EQ(hw->ConfigRead(0, 3, 0, PCI_COMMAND, 2),
            unsigned{PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
                     PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE});
  EXPECT_TRUE(hw->Find("nvme0")->bus_master());
  // BAR 0 sizing: all-ones reads back the size mask of a 16 KiB BAR.
  hw->ConfigWrite(0, 3, 0, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
  EXPECT_EQ(hw->ConfigRead(0, 3, 0, PCI_BASE_ADDRESS_0, 4), 0xffffc004u);
  // A malformed access reads all-ones and writes nothing.
  EXPECT_EQ(hw->ConfigRead(0, 3, 0, PCI_COMMAND + 1, 2), 0xffffu);
  EXPECT_EQ(hw->ConfigRead(0, 3, 0, 4096, 4), 0xffffffffu);
}

TEST(PciHardwareTest, FunctionLevelResetClearsTheFunctionOnly) {
  auto hw = Example();
  Number(*hw);
  PciFunction* nvme0 = hw->Find("nvme0");
  PciFunction* nvme1 = hw->Find("nvme1");
  hw->ConfigWrite(0, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  hw->ConfigWrite(0, 4, 0, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
  hw->ConfigWrite(0, 3, 0, nvme0->msix_cap() + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
  const uint64_t resets = nvme0->reset_count();
  hw->ConfigWrite(0, 3, 0, nvme0->exp_cap() + PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_BCR_FLR);
  EXPECT_EQ(nvme0->reset_count(), resets + 1);
  EXPECT_FALSE(nvme0->bus_master());
  EXPECT_EQ(nvme0->Peek(nvme0->msix_cap() + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_ENABLE, 0u);
  EXPECT_EQ(nvme0->Peek(nvme0->exp_cap() + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR, 0u);
  EXPECT_TRUE(nvme1->bus_master());
}

TEST(PciHardwareTest, SecondaryBusResetClearsEverythingBelowTheBridge) {
  auto hw = Example();
  Number(*hw);
  hw->ConfigWrite(0, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
  hw->ConfigWrite(0, 5, 0, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
  hw->ConfigWrite(0, kRoot, PCI_DEVFN(1, 0), PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_BUS_RESET);
  hw->ConfigWrite(0, kRoot, PCI_DEVFN(1, 0), PCI_BRIDGE_CONTROL, 2, 0);
  // The switch lost its bus numbers: nothing below rp0 answers any more;
  // rp0 itself and everything under rp1 keep their state.
  EXPECT_EQ(hw->Find("sw0")->Peek(PCI_SECONDARY_BUS, 1), 0u);
  EXPECT_EQ(hw->Route(0, 3, 0), nullptr);
  EXPECT_FALSE(hw->Find("nvme0")->bus_master());
  EXPECT_EQ(hw->Find("rp0")->Peek(PCI_SECONDARY_BUS, 1), 1u);
  EXPECT_TRUE(hw->Find("accel0")->bus_master());
}

TEST(PciHardwareTest, VfEnableCreatesVirtualFunctionsAtTheirRoutingIds) {
  auto hw = Example();
  Number(*hw);
  PciFunction* pf = hw->Find("accel0");
  const uint16_t sriov = pf->sriov_cap();
  ASSERT_NE(sriov, 0);
  EXPECT_EQ(hw->ConfigRead(0, 5, 0, sriov, 4) & 0xffff, unsigned{PCI_EXT_CAP_ID_SRIOV});
  EXPECT_EQ(hw->ConfigRead(0, 5, 0, sriov + PCI_SRIOV_TOTAL_VF, 2), 4u);
  hw->ConfigWrite(0, 5, 0, sriov + PCI_SRIOV_NUM_VF, 2, 3);
  hw->ConfigWrite(0, 5, 0, sriov + PCI_SRIOV_CTRL, 2, PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
  ASSERT_EQ(pf->vfs().size(), 3u);
  PciFunction* vf2 = hw->Route(0, 5, PCI_DEVFN(0, 3));
  ASSERT_NE(vf2, nullptr);
  EXPECT_EQ(vf2->name(), "accel0.vf2");
  EXPECT_EQ(vf2->physfn(), pf);
  EXPECT_EQ(hw->ConfigRead(0, 5, PCI_DEVFN(0, 3), PCI_VENDOR_ID, 2), 0xffffu);
  // NumVFs is frozen while VFs exist; disabling removes them.
  hw->ConfigWrite(0, 5, 0, sriov + PCI_SRIOV_NUM_VF, 2, 1);
  EXPECT_EQ(pf->Peek(sriov + PCI_SRIOV_NUM_VF, 2), 3u);
  hw->ConfigWrite(0, 5, 0, sriov + PCI_SRIOV_CTRL, 2, 0);
  EXPECT_TRUE(pf->vfs().empty());
  EXPECT_EQ(hw->Route(0, 5, PCI_DEVFN(0, 3)), nullptr);
}

TEST(PciHardwareTest, BelowAPortOnlyDeviceZeroAnswersWithoutAriForwarding) {
  PciFunctionSpec pf = PciEndpoint("pf");
  pf.total_vfs = 2;
  pf.vf_offset = 8;  // VF 0 at device 1
  PciTopology t{.segments = {{.functions = {PciRootPort("rp", 1, {pf})}}}};
  auto hw = *PciHardware::Create(t);
  SetBuses(*hw, kRoot, PCI_DEVFN(1, 0), 0, 1, 1);
  const uint16_t sriov = hw->Find("pf")->sriov_cap();
  hw->ConfigWrite(0, 1, 0, sriov + PCI_SRIOV_NUM_VF, 2, 2);
  hw->ConfigWrite(0, 1, 0, sriov + PCI_SRIOV_CTRL, 2, PCI_SRIOV_CTRL_VFE);
  EXPECT_EQ(hw->Route(0, 1, PCI_DEVFN(1, 0)), nullptr);
  PciFunction* rp = hw->Find("rp");
  hw->ConfigWrite(0, kRoot, PCI_DEVFN(1, 0), rp->exp_cap() + PCI_EXP_DEVCTL2, 2,
                  PCI_EXP_DEVCTL2_ARI);
  ASSERT_NE(hw->Route(0, 1, PCI_DEVFN(1, 0)), nullptr);
  EXPECT_EQ(hw->Route(0, 1, PCI_DEVFN(1, 0))->name(), "pf.vf0");
}

TEST(PciHardwareTest, PortsCarryAcsAndTheirControlIsWritableWithinTheCapability) {
  auto hw = Example();
  PciFunction* rp = hw->Find("rp0");
  ASSERT_NE(rp->acs_cap(), 0);
  EXPECT_EQ(hw->Find("sw0")->acs_cap(), 0);  // an upstream port has none
  hw->ConfigWrite(0, kRoot, PCI_DEVFN(1, 0), rp->acs_cap() + PCI_ACS_CTRL, 2, 0xffff);
  EXPECT_EQ(rp->Peek(rp->acs_cap() + PCI_ACS_CTRL, 2), rp->Peek(rp->acs_cap() + PCI_ACS_CAP, 2));
}

TEST(PciHardwareTest, OnlyPowerOnResetsEverything) {
  auto hw = Example();
  Number(*hw);
  hw->ConfigWrite(0, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
  // Nothing else clears state: it is what the next kernel finds.
  EXPECT_TRUE(hw->Find("nvme0")->bus_master());
  hw->PowerOn();
  EXPECT_FALSE(hw->Find("nvme0")->bus_master());
  EXPECT_EQ(hw->Find("rp0")->Peek(PCI_SECONDARY_BUS, 1), 0u);
}

TEST(PciTopologyTest, RejectsWhatHardwareCannotBe) {
  const auto invalid = [](PciTopology t) { return std::string(t.Validate().message()); };
  EXPECT_THAT(invalid({.segments = {{.functions = {PciEndpoint("a"), PciEndpoint("a", 1)}}}}),
              HasSubstr("named twice"));
  EXPECT_THAT(invalid({.segments = {{.functions = {PciEndpoint("a"), PciEndpoint("b")}}}}),
              HasSubstr("is taken"));
  EXPECT_THAT(invalid({.segments = {{.functions = {PciEndpoint("a", 0, 1)}}}}),
              HasSubstr("no function 0"));
  EXPECT_THAT(
      invalid({.segments = {{.functions = {PciRootPort("r", 0, {PciRootPort("s", 0, {})})}}}}),
      HasSubstr("root bus"));
  PciFunctionSpec big = PciEndpoint("big");
  big.total_vfs = 300;
  EXPECT_THAT(invalid({.segments = {{.functions = {big}}}}), HasSubstr("do not fit"));
  EXPECT_THAT(invalid({.segments = {{.domain = 1}, {.domain = 1}}}), HasSubstr("twice"));
  EXPECT_TRUE(PciExampleTopology().Validate().ok());
  EXPECT_EQ(PciExampleTopology().FunctionCount(), 8u);
}

}  // namespace
}  // namespace khosim::hw

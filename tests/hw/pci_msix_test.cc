// MSI-X as hardware: the reset state, lost signals while MSI-X is off,
// pending bits behind a vector mask or the Function Mask and their delivery
// on unmask, mask writes that need memory decoding, resets, VFs, and DMA
// completions that raise a vector.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/hw/dma_engine.h"
#include "khosim/hw/pci.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/linux/pci_regs.h"

namespace khosim::hw {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint8_t kBus = 0;
constexpr uint8_t kDevfn = 0;

class PciMsixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PciFunctionSpec spec = PciEndpoint("dev");
    spec.total_vfs = 2;
    PciTopology topology;
    topology.segments.push_back({.domain = 0, .root_bus = kBus, .functions = {spec}});
    pci_ = *PciHardware::Create(topology);
    dev_ = pci_->Find("dev");
    pci_->SetMsixSink([this](const MsixMessage& m) {
      messages_.push_back(
          m.kind == MsixMessage::Kind::kSent
              ? absl::StrCat("sent ", m.function->name(), " ", m.vector)
              : absl::StrCat("lost ", m.function->name(), " ", m.vector, ": ", m.reason));
    });
    Command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  }
  void Command(uint16_t value) { pci_->ConfigWrite(0, kBus, kDevfn, PCI_COMMAND, 2, value); }
  void Control(uint16_t value) {
    pci_->ConfigWrite(0, kBus, kDevfn, dev_->msix_cap() + PCI_MSIX_FLAGS, 2, value);
  }
  void Flr() {
    pci_->ConfigWrite(0, kBus, kDevfn, dev_->exp_cap() + PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_BCR_FLR);
  }

  std::unique_ptr<PciHardware> pci_;
  PciFunction* dev_ = nullptr;
  std::vector<std::string> messages_;
};

TEST_F(PciMsixTest, ResetLeavesMsixOffAndEveryVectorMasked) {
  EXPECT_EQ(dev_->msix_table_size(), 16);
  EXPECT_FALSE(dev_->msix_enabled());
  EXPECT_FALSE(dev_->msix_function_masked());
  for (uint16_t v = 0; v < 16; ++v) {
    EXPECT_TRUE(dev_->msix_vector_masked(v)) << v;
    EXPECT_FALSE(dev_->msix_pending(v)) << v;
  }
  EXPECT_TRUE(dev_->msix_vector_masked(16));  // past the table
}

TEST_F(PciMsixTest, ASignalWhileMsixIsDisabledIsLost) {
  ASSERT_TRUE(dev_->SetMsixVectorMasked(2, false));
  dev_->RaiseMsix(2);
  EXPECT_THAT(messages_, ElementsAre("lost dev 2: MSI-X disabled"));
  EXPECT_EQ(dev_->msix_lost(), 1u);
  EXPECT_EQ(dev_->msix_sent(), 0u);
  EXPECT_FALSE(dev_->msix_pending(2));
  // Nothing was held back: enabling later sends nothing.
  Control(PCI_MSIX_FLAGS_ENABLE);
  EXPECT_THAT(messages_, ElementsAre("lost dev 2: MSI-X disabled"));
}

TEST_F(PciMsixTest, AMaskedVectorPendsAndIsSentOnceWhenUnmasked) {
  Control(PCI_MSIX_FLAGS_ENABLE);
  dev_->RaiseMsix(3);
  dev_->RaiseMsix(3);  // collapses into the one pending bit
  EXPECT_THAT(messages_, IsEmpty());
  EXPECT_TRUE(dev_->msix_pending(3));
  ASSERT_TRUE(dev_->SetMsixVectorMasked(3, false));
  EXPECT_THAT(messages_, ElementsAre("sent dev 3"));
  EXPECT_FALSE(dev_->msix_pending(3));
  dev_->RaiseMsix(3);  // unmasked: straight out
  EXPECT_THAT(messages_, ElementsAre("sent dev 3", "sent dev 3"));
  EXPECT_EQ(dev_->msix_sent(), 2u);
}

TEST_F(PciMsixTest, TheFunctionMaskHoldsEveryVectorUntilItIsCleared) {
  ASSERT_TRUE(dev_->SetMsixVectorMasked(1, false));
  ASSERT_TRUE(dev_->SetMsixVectorMasked(2, false));
  Control(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
  EXPECT_TRUE(dev_->msix_function_masked());
  dev_->RaiseMsix(2);
  dev_->RaiseMsix(1);
  dev_->RaiseMsix(5);  // also masked by its own bit
  EXPECT_THAT(messages_, IsEmpty());
  Control(PCI_MSIX_FLAGS_ENABLE);
  EXPECT_THAT(messages_, ElementsAre("sent dev 1", "sent dev 2"));
  EXPECT_TRUE(dev_->msix_pending(5));
}

TEST_F(PciMsixTest, APendingBitSurvivesDisablingAndIsSentWhenMsixComesBack) {
  ASSERT_TRUE(dev_->SetMsixVectorMasked(0, false));
  Control(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
  dev_->RaiseMsix(0);
  Control(0);  // off, and no longer function-masked: still nothing to send
  EXPECT_THAT(messages_, IsEmpty());
  EXPECT_TRUE(dev_->msix_pending(0));
  Control(PCI_MSIX_FLAGS_ENABLE);
  EXPECT_THAT(messages_, ElementsAre("sent dev 0"));
}

TEST_F(PciMsixTest, MaskWritesNeedMemoryDecodingAndATableEntry) {
  Command(PCI_COMMAND_MASTER);
  EXPECT_FALSE(dev_->SetMsixVectorMasked(0, false));
  EXPECT_TRUE(dev_->msix_vector_masked(0));
  Command(PCI_COMMAND_MEMORY);
  EXPECT_TRUE(dev_->SetMsixVectorMasked(0, false));
  EXPECT_FALSE(dev_->msix_vector_masked(0));
  EXPECT_FALSE(dev_->SetMsixVectorMasked(16, false));
  Control(PCI_MSIX_FLAGS_ENABLE);
  dev_->RaiseMsix(16);
  EXPECT_THAT(messages_, ElementsAre("lost dev 16: no such vector"));
}

TEST_F(PciMsixTest, FunctionLevelResetPutsMsixBackToReset) {
  ASSERT_TRUE(dev_->SetMsixVectorMasked(1, false));
  Control(PCI_MSIX_FLAGS_ENABLE);
  dev_->RaiseMsix(2);  // pending behind its mask
  dev_->RaiseMsix(1);
  Flr();
  EXPECT_FALSE(dev_->msix_enabled());
  EXPECT_TRUE(dev_->msix_vector_masked(1));
  EXPECT_FALSE(dev_->msix_pending(2));
  EXPECT_EQ(dev_->msix_sent(), 1u);  // counts are observations, not registers
  pci_->ConfigWrite(0, kBus, kDevfn, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
  Control(PCI_MSIX_FLAGS_ENABLE);
  ASSERT_TRUE(dev_->SetMsixVectorMasked(2, false));
  EXPECT_THAT(messages_, ElementsAre("sent dev 1"));  // the pending 2 is gone
}

TEST_F(PciMsixTest, OnlyAResetClearsMsixState) {
  ASSERT_TRUE(dev_->SetMsixVectorMasked(4, false));
  Control(PCI_MSIX_FLAGS_ENABLE);
  dev_->RaiseMsix(6);
  // Nothing but a reset changes it (a kexec touches no hardware)...
  EXPECT_TRUE(dev_->msix_enabled());
  EXPECT_FALSE(dev_->msix_vector_masked(4));
  EXPECT_TRUE(dev_->msix_pending(6));
  // ...and a power-on is one.
  pci_->PowerOn();
  EXPECT_FALSE(dev_->msix_enabled());
  EXPECT_TRUE(dev_->msix_vector_masked(4));
  EXPECT_FALSE(dev_->msix_pending(6));
}

TEST_F(PciMsixTest, VirtualFunctionsHaveTheirOwnTableBehindThePfsMemoryEnable) {
  const uint16_t sriov = dev_->sriov_cap();
  pci_->ConfigWrite(0, kBus, kDevfn, sriov + PCI_SRIOV_NUM_VF, 2, 1);
  pci_->ConfigWrite(0, kBus, kDevfn, sriov + PCI_SRIOV_CTRL, 2, PCI_SRIOV_CTRL_VFE);
  ASSERT_EQ(dev_->vfs().size(), 1u);
  PciFunction& vf = *dev_->vfs()[0];
  EXPECT_EQ(vf.msix_table_size(), 16);
  EXPECT_TRUE(vf.msix_vector_masked(0));
  EXPECT_FALSE(vf.SetMsixVectorMasked(0, false));  // VF MSE is off
  pci_->ConfigWrite(0, kBus, kDevfn, sriov + PCI_SRIOV_CTRL, 2,
                    PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
  EXPECT_TRUE(vf.SetMsixVectorMasked(0, false));
  pci_->ConfigWrite(0, kBus, vf.devfn(), vf.msix_cap() + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
  vf.RaiseMsix(0);
  EXPECT_THAT(messages_, ElementsAre("sent dev.vf0 0"));
  EXPECT_FALSE(dev_->msix_enabled());  // the PF's own state is apart
}

// ---- DMA completions ---------------------------------------------------------

class DmaMsixTest : public PciMsixTest {
 protected:
  void SetUp() override {
    PciMsixTest::SetUp();
    absl::StatusOr<std::unique_ptr<PhysicalMemory>> mem =
        PhysicalMemory::Create(MemoryLayout::Uniform(64 * kMiB, 1, 4096, 0));
    ASSERT_TRUE(mem.ok());
    memory_ = *std::move(mem);
    memory_->ResetAccess();
    // No IOMMU: IOVAs are physical addresses (RAM starts at 2 MiB).
    engine_ = std::make_unique<DmaEngine>(*dev_, *pci_, nullptr, *memory_);
    ASSERT_TRUE(dev_->SetMsixVectorMasked(1, false));
    Control(PCI_MSIX_FLAGS_ENABLE);
  }
  uint64_t Run(uint64_t budget) { return engine_->Run(budget, nullptr, DmaEventSink()); }

  std::unique_ptr<PhysicalMemory> memory_;
  std::unique_ptr<DmaEngine> engine_;
};

TEST_F(DmaMsixTest, ACompletionRaisesItsVectorAfterItsLastByte) {
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x400000, .len = 8192, .irq_vector = 1});
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x500000, .len = 64});  // no interrupt
  EXPECT_EQ(Run(4096), 4096u);
  EXPECT_THAT(messages_, IsEmpty());
  EXPECT_EQ(Run(8192), 4096u + 64);
  EXPECT_THAT(messages_, ElementsAre("sent dev 1"));
  EXPECT_EQ(engine_->completed(), 2u);
}

TEST_F(DmaMsixTest, ACompletionOnAMaskedVectorPends) {
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x400000, .len = 64, .irq_vector = 2});
  Run(4096);
  EXPECT_THAT(messages_, IsEmpty());
  EXPECT_TRUE(dev_->msix_pending(2));
}

TEST_F(DmaMsixTest, ARepeatingCounterRaisesItsVectorAtEveryWrap) {
  engine_->Submit({.op = DmaOp::kCounter,
                   .dst = 0x400000,
                   .len = 256,
                   .pattern = 1,
                   .repeat = true,
                   .irq_vector = 1});
  Run(256 * 3 + 8);
  EXPECT_THAT(messages_, ElementsAre("sent dev 1", "sent dev 1", "sent dev 1"));
  EXPECT_EQ(engine_->completed(), 0u);  // it never ends
}

TEST_F(DmaMsixTest, OutOfRangeVectorsAreMalformedAndAbortedJobsRaiseNothing) {
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x400000, .len = 8, .irq_vector = -2});
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x400000, .len = 8, .irq_vector = 2048});
  EXPECT_EQ(engine_->rejected(), 2u);
  // Beyond RAM: an unsupported request aborts the descriptor.
  engine_->Submit({.op = DmaOp::kFill, .dst = 1ull << 40, .len = 8, .irq_vector = 1});
  Run(4096);
  EXPECT_EQ(engine_->faults(), 1u);
  EXPECT_THAT(messages_, IsEmpty());
}

TEST_F(DmaMsixTest, AHandlerThatResetsTheFunctionStopsTheEngine) {
  pci_->SetMsixSink([this](const MsixMessage&) { Flr(); });
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x400000, .len = 8, .irq_vector = 1});
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x500000, .len = 8});
  EXPECT_EQ(Run(4096), 8u);  // the second descriptor went with the reset
  EXPECT_EQ(engine_->queued(), 0u);
  EXPECT_EQ(engine_->completed(), 1u);
}

}  // namespace
}  // namespace khosim::hw

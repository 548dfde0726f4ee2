// The IOMMU unit and the DMA engine as hardware: register semantics, walks
// of hand-built tables in physical memory, the IOTLB that keeps stale
// entries until invalidated, every fault reason, the oracle's veto on
// table pages, and each descriptor type of the engine with what stops it.
#include "khosim/hw/iommu.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/hw/dma_engine.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/intel_iommu_regs.h"
#include "khosim/linux/pci_regs.h"

namespace khosim::hw {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kRoot = 0x1000000;
constexpr uint64_t kContext = 0x1001000;
constexpr uint64_t kTop = 0x1002000;
constexpr uint8_t kBus = 3;
constexpr uint8_t kDevfn = 0;
constexpr uint16_t kDid = 5;

// Hand-built tables: root, context and top page at 16 MiB, lower tables
// from 32 MiB on (a bump allocator).
class IommuUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<PhysicalMemory>> mem =
        PhysicalMemory::Create(MemoryLayout::Uniform(64 * kMiB, 1, 4096, 0));
    ASSERT_TRUE(mem.ok());
    memory_ = *std::move(mem);
    memory_->ResetAccess();
    unit_ = std::make_unique<IommuUnit>(*memory_, 0, IommuHardware::kIommuMmioBase);
    Put(kRoot, kBus * 2, kContext | 1);
    SetContext(kTop, AGAW_48, CONTEXT_TT_MULTI_LEVEL);
    unit_->WriteReg(DMAR_RTADDR_REG, kRoot);
    unit_->WriteReg(DMAR_GCMD_REG, DMA_GCMD_SRTP);
    unit_->WriteReg(DMAR_GCMD_REG, DMA_GCMD_TE);
  }
  void Put(uint64_t table, unsigned index, uint64_t value) {
    std::memcpy(memory_->Virt(PhysAddr(table + 8 * index)), &value, 8);
  }
  void SetContext(uint64_t top, unsigned aw, unsigned type) {
    Put(kContext, kDevfn * 2 + 1, aw | (uint64_t{kDid} << 8));
    Put(kContext, kDevfn * 2, top | (type << 2) | 1);
  }
  // Maps one leaf of level |leaf| (1: 4 KiB, 2: 2 MiB, 3: 1 GiB) in the
  // 4-level tables rooted at kTop.
  void Map(uint64_t iova, uint64_t pa, unsigned leaf, uint64_t perms) {
    uint64_t table = kTop;
    for (unsigned level = 4; level > leaf; --level) {
      const unsigned index = (iova >> (12 + 9 * (level - 1))) & 511;
      uint64_t pte;
      std::memcpy(&pte, memory_->Virt(PhysAddr(table + 8 * index)), 8);
      if (pte == 0) {
        next_table_ += 0x1000;
        pte = next_table_ | DMA_PTE_READ | DMA_PTE_WRITE;
        Put(table, index, pte);
      }
      table = pte & DMA_PTE_ADDR_MASK;
    }
    Put(table, (iova >> (12 + 9 * (leaf - 1))) & 511,
        pa | perms | (leaf > 1 ? DMA_PTE_LARGE_PAGE : 0));
  }
  Translation Go(uint64_t iova, bool write, DmaMemoryOracle* oracle = nullptr) {
    return unit_->Translate(kBus, kDevfn, iova, write, oracle);
  }
  void FlushIotlb() {
    unit_->WriteReg(ecap_iotlb_offset(unit_->ReadReg(DMAR_ECAP_REG)) + DMAR_IOTLB_REG_OFFSET,
                    DMA_TLB_IVT | DMA_TLB_GLOBAL_FLUSH);
  }

  std::unique_ptr<PhysicalMemory> memory_;
  std::unique_ptr<IommuUnit> unit_;
  uint64_t next_table_ = 0x2000000;
};

TEST_F(IommuUnitTest, RegistersLatchTheRootAndSwitchTranslation) {
  EXPECT_EQ(unit_->root_table(), PhysAddr(kRoot));
  EXPECT_EQ(unit_->ReadReg(DMAR_GSTS_REG), DMA_GSTS_TES | DMA_GSTS_RTPS);
  EXPECT_EQ(cap_mgaw(unit_->ReadReg(DMAR_CAP_REG)), 48u);
  EXPECT_EQ(cap_sagaw(unit_->ReadReg(DMAR_CAP_REG)), 0x6u);
  // RTADDR alone changes nothing until SRTP latches it.
  unit_->WriteReg(DMAR_RTADDR_REG, 0x300000);
  EXPECT_EQ(unit_->root_table(), PhysAddr(kRoot));
  unit_->WriteReg(DMAR_GCMD_REG, 0);
  EXPECT_FALSE(unit_->translation_enabled());
  // Off: requests pass untranslated.
  const Translation t = Go(0x123456, true);
  EXPECT_TRUE(t.ok);
  EXPECT_EQ(t.pa, PhysAddr(0x123456));
  unit_->PowerOn();
  EXPECT_EQ(unit_->ReadReg(DMAR_GSTS_REG), 0u);
  EXPECT_EQ(unit_->root_table(), PhysAddr());
}

TEST_F(IommuUnitTest, WalksFourKiBTwoMiBAndOneGiBLeaves) {
  Map(0x1000, 0x400000, 1, DMA_PTE_READ | DMA_PTE_WRITE);
  Map(0x40200000, 0x800000, 2, DMA_PTE_READ | DMA_PTE_WRITE);
  Map(0x80000000, 0x0, 3, DMA_PTE_READ);
  Translation t = Go(0x1abc, true);
  ASSERT_TRUE(t.ok);
  EXPECT_EQ(t.pa, PhysAddr(0x400abc));
  EXPECT_EQ(t.span, 0x1000u - 0xabc);
  EXPECT_EQ(t.did, kDid);
  t = Go(0x40212345, false);
  ASSERT_TRUE(t.ok);
  EXPECT_EQ(t.pa, PhysAddr(0x812345));
  t = Go(0x80000000 + 0x3456789, false);
  ASSERT_TRUE(t.ok);
  EXPECT_EQ(t.pa, PhysAddr(0x3456789));
  // The 1 GiB leaf is read-only.
  t = Go(0x80000000, true);
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.fault.reason, IommuFaultReason::kWriteNotAllowed);
}

TEST_F(IommuUnitTest, EveryFaultReasonIsRecorded) {
  EXPECT_EQ(Go(0x5000, true).fault.reason, IommuFaultReason::kPteNotPresent);
  EXPECT_EQ(Go(uint64_t{1} << 48, true).fault.reason, IommuFaultReason::kAddressTooWide);
  EXPECT_EQ(unit_->Translate(kBus + 1, kDevfn, 0, true, nullptr).fault.reason,
            IommuFaultReason::kRootNotPresent);
  EXPECT_EQ(unit_->Translate(kBus, kDevfn + 8, 0, true, nullptr).fault.reason,
            IommuFaultReason::kContextNotPresent);
  SetContext(kTop, 4, CONTEXT_TT_MULTI_LEVEL);  // a width the unit lacks
  EXPECT_EQ(Go(0, true).fault.reason, IommuFaultReason::kContextInvalid);
  EXPECT_EQ(unit_->faults().size(), 5u);
  EXPECT_NE(unit_->ReadReg(DMAR_FSTS_REG) & DMA_FSTS_PPF, 0u);
  unit_->WriteReg(DMAR_FSTS_REG, DMA_FSTS_PPF);
  EXPECT_TRUE(unit_->faults().empty());
  // Pass-through contexts translate nothing.
  SetContext(0, AGAW_48, CONTEXT_TT_PASS_THROUGH);
  EXPECT_EQ(Go(0x777000, true).pa, PhysAddr(0x777000));
}

TEST_F(IommuUnitTest, TheIotlbKeepsAStaleTranslationUntilInvalidated) {
  Map(0x1000, 0x400000, 1, DMA_PTE_READ | DMA_PTE_WRITE);
  ASSERT_TRUE(Go(0x1000, true).ok);
  Map(0x1000, 0x500000, 1, DMA_PTE_READ | DMA_PTE_WRITE);  // rewritten, not invalidated
  EXPECT_EQ(Go(0x1000, true).pa, PhysAddr(0x400000));
  EXPECT_EQ(unit_->iotlb_hits(), 1u);
  // A domain-selective flush of another domain keeps it too.
  unit_->WriteReg(ecap_iotlb_offset(unit_->ReadReg(DMAR_ECAP_REG)) + DMAR_IOTLB_REG_OFFSET,
                  DMA_TLB_IVT | DMA_TLB_DSI_FLUSH | DMA_TLB_DID(kDid + 1));
  EXPECT_EQ(Go(0x1000, true).pa, PhysAddr(0x400000));
  FlushIotlb();
  EXPECT_EQ(Go(0x1000, true).pa, PhysAddr(0x500000));
}

class VetoingOracle : public DmaMemoryOracle {
 public:
  DmaCheck CheckTablePage(uint16_t, PhysAddr page) override {
    return page.value() == veto ? DmaCheck{DmaVerdict::kFree, "free memory"} : DmaCheck{};
  }
  DmaCheck CheckAccess(const PciFunction&, uint64_t, PhysAddr page, bool write) override {
    writes.push_back(page.value());
    return page.value() == stray ? DmaCheck{DmaVerdict::kOtherOwner, "kernel memory"} : DmaCheck{};
  }
  uint64_t veto = 0;
  uint64_t stray = 0;
  std::vector<uint64_t> writes;
};

TEST_F(IommuUnitTest, ATablePageTheKernelDisownsIsAFaultNotARead) {
  Map(0x1000, 0x400000, 1, DMA_PTE_READ | DMA_PTE_WRITE);
  VetoingOracle oracle;
  oracle.veto = kContext;
  const Translation t = Go(0x1000, true, &oracle);
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.fault.reason, IommuFaultReason::kTablePageInvalid);
  EXPECT_EQ(t.fault.table, PhysAddr(kContext));
  EXPECT_EQ(t.fault.detail, "free memory");
}

// ---- The DMA engine ---------------------------------------------------------

class DmaEngineTest : public IommuUnitTest {
 protected:
  void SetUp() override {
    IommuUnitTest::SetUp();
    PciTopology topology;
    topology.segments.push_back({.domain = 0, .root_bus = kBus, .functions = {PciEndpoint("dev")}});
    pci_ = *PciHardware::Create(topology);
    pci_->PowerOn();
    dev_ = pci_->Find("dev");
    pci_->ConfigWrite(0, kBus, kDevfn, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    engine_ = std::make_unique<DmaEngine>(*dev_, *pci_, unit_.get(), *memory_);
    Map(0x10000, 0x400000, 1, DMA_PTE_READ | DMA_PTE_WRITE);
    Map(0x11000, 0x401000, 1, DMA_PTE_READ | DMA_PTE_WRITE);
    Map(0x20000, 0x500000, 1, DMA_PTE_READ);
  }
  uint64_t Word(uint64_t pa) {
    uint64_t v;
    std::memcpy(&v, memory_->Virt(PhysAddr(pa)), 8);
    return v;
  }
  DmaEventSink Sink() {
    return [this](const DmaEvent& e) {
      events_.push_back(std::string(DmaEventKindName(e.kind)) + ": " + e.reason);
    };
  }
  std::unique_ptr<PciHardware> pci_;
  PciFunction* dev_ = nullptr;
  std::unique_ptr<DmaEngine> engine_;
  std::vector<std::string> events_;
};

TEST_F(DmaEngineTest, FillCopyAndCounterLandWhereTheTablesSay) {
  std::memset(memory_->Virt(PhysAddr(0x500000)), 0x5a, 4096);
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x10000, .len = 16, .pattern = 0x1122334455667788});
  engine_->Submit({.op = DmaOp::kCopy, .src = 0x20000, .dst = 0x10ff8, .len = 16});
  engine_->Submit({.op = DmaOp::kCounter, .dst = 0x11800, .len = 32, .pattern = 100});
  EXPECT_EQ(engine_->Run(1 << 20, nullptr, Sink()), 16u + 16 + 32);
  EXPECT_EQ(Word(0x400000), 0x1122334455667788u);
  EXPECT_EQ(Word(0x400008), 0x1122334455667788u);
  // The copy crosses an IOVA page boundary: two translations.
  EXPECT_EQ(Word(0x400ff8), 0x5a5a5a5a5a5a5a5au);
  EXPECT_EQ(Word(0x401000), 0x5a5a5a5a5a5a5a5au);
  EXPECT_EQ(Word(0x401800), 100u);
  EXPECT_EQ(Word(0x401818), 103u);
  EXPECT_EQ(engine_->completed(), 3u);
  EXPECT_EQ(engine_->state(), DmaEngine::State::kIdle);
  EXPECT_TRUE(events_.empty());
}

TEST_F(DmaEngineTest, MalformedDescriptorsAreDropped) {
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x10000, .len = 0});
  engine_->Submit({.op = DmaOp::kCounter, .dst = 0x10004, .len = 8});
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x10000, .len = 8, .repeat = true});
  EXPECT_EQ(engine_->rejected(), 3u);
  EXPECT_EQ(engine_->queued(), 0u);
}

TEST_F(DmaEngineTest, AWriteToAReadOnlyMappingFaultsAndHalts) {
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x20000, .len = 8});
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x10000, .len = 8});
  EXPECT_EQ(engine_->Run(4096, nullptr, Sink()), 0u);
  EXPECT_THAT(events_, ElementsAre("fault: write to a read-only mapping"));
  EXPECT_EQ(engine_->state(), DmaEngine::State::kHalted);
  EXPECT_EQ(engine_->Run(4096, nullptr, Sink()), 0u);  // halted until software submits
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x10000, .len = 8});
  EXPECT_EQ(engine_->Run(4096, nullptr, Sink()), 16u);  // both remaining fills
}

TEST_F(DmaEngineTest, StrayWritesLandAndAreReported) {
  VetoingOracle oracle;
  oracle.stray = 0x401000;
  engine_->Submit({.op = DmaOp::kFill, .dst = 0x10ff8, .len = 16, .pattern = ~0ull});
  engine_->Run(4096, &oracle, Sink());
  EXPECT_THAT(events_, ElementsAre("stray_write: kernel memory"));
  EXPECT_EQ(Word(0x401000), ~0ull);  // real hardware corrupts silently
  EXPECT_THAT(oracle.writes, ElementsAre(0x400000, 0x401000));
}

TEST_F(DmaEngineTest, BusMasteringAndResetsStopIt) {
  engine_->Submit({.op = DmaOp::kCounter, .dst = 0x10000, .len = 8192, .repeat = true});
  EXPECT_EQ(engine_->Run(64, nullptr, Sink()), 64u);
  pci_->ConfigWrite(0, kBus, kDevfn, PCI_COMMAND, 2, 0);
  EXPECT_EQ(engine_->Run(64, nullptr, Sink()), 0u);
  EXPECT_EQ(engine_->Run(64, nullptr, Sink()), 0u);
  EXPECT_THAT(events_, ElementsAre("stopped: bus mastering off"));  // once
  pci_->ConfigWrite(0, kBus, kDevfn, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
  EXPECT_EQ(engine_->Run(64, nullptr, Sink()), 64u);
  EXPECT_EQ(engine_->next_counter(), 16u);
  // An FLR drops the queue.
  const uint16_t exp = dev_->exp_cap();
  pci_->ConfigWrite(0, kBus, kDevfn, exp + PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_BCR_FLR);
  EXPECT_EQ(engine_->Run(64, nullptr, Sink()), 0u);
  EXPECT_EQ(engine_->state(), DmaEngine::State::kIdle);
}

}  // namespace
}  // namespace khosim::hw

// MSI-X through the kernel face: pci_alloc_irq_vectors and its errnos,
// request_irq / free_irq, handlers run once per DMA completion with their
// cookie, pci_free_irq_vectors; and across a kexec, where the device's MSI-X
// state is hardware and the irqs are not: completions that reach the next
// kernel before any driver took the vectors over are spurious there, and
// those signalled while the previous kernel had disabled MSI-X are lost.
#include <string>
#include <utility>
#include <vector>

#include "drivers/dma_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/drivers/irq.h"
#include "khosim/linux/interrupt.h"
#include "khosim/linux/pci.h"

namespace khosim::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint64_t kGuestSize = 1 * kMiB;
// One quantum of DMA fills it exactly: one wrap, one interrupt, per
// Machine::RunDevices.
constexpr uint64_t kRingSize = 64 * kKiB;

// Every handler call: (irq, cookie).
std::vector<std::pair<int, void*>>& Calls() {
  static std::vector<std::pair<int, void*>> calls;
  return calls;
}

irqreturn_t Handled(int irq, void* dev) {
  Calls().push_back({irq, dev});
  return IRQ_HANDLED;
}

irqreturn_t NotMine(int irq, void* dev) {
  Calls().push_back({irq, dev});
  return IRQ_NONE;
}

class PciIrqTest : public DmaFixture {
 protected:
  MachineConfig Config() override {
    MachineConfig config = DmaFixture::Config();
    config.ram = 1 * kGiB;
    config.dma_quantum = kRingSize;
    return config;
  }
  void SetUp() override {
    DmaFixture::SetUp();
    Calls().clear();
  }
  // nvme0 bound to pci-passthrough (enabled, mastering), a guest memfd
  // mapped at kGuestIova.
  void OpenWithMemory() {
    dev_ = OpenDevice("nvme0");
    memfd_ = GuestMemfd(kGuestSize);
    ASSERT_EQ(MapForDma(dev_, memfd_, 0, kGuestSize, kGuestIova), 0);
  }
  void Fill(int32_t vector, uint64_t offset = 0) {
    Engine("nvme0").Submit(hw::DmaDescriptor{
        .op = hw::DmaOp::kFill, .dst = kGuestIova + offset, .len = 4096, .irq_vector = vector});
  }
  void StartRing(int32_t vector) {
    Engine("nvme0").Submit(hw::DmaDescriptor{.op = hw::DmaOp::kCounter,
                                             .dst = kGuestIova,
                                             .len = kRingSize,
                                             .pattern = kCounterBase,
                                             .repeat = true,
                                             .irq_vector = vector});
  }
  drivers::IrqTable& Irqs() { return core().irqs(); }
  bool HasLog(const std::string& needle) {
    for (const std::string& line : m().kernel().ctx().LogLines()) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  int dev_ = -1;
  int memfd_ = -1;
};

TEST_F(PciIrqTest, AllocatingVectorsEnablesMsixWithEveryVectorMasked) {
  OpenWithMemory();
  struct pci_dev* dev = Dev("nvme0");
  EXPECT_EQ(pci_msix_vec_count(dev), 16);
  ASSERT_EQ(pci_alloc_irq_vectors(dev, 1, 4, PCI_IRQ_MSIX), 4);
  hw::PciFunction& fn = Hw("nvme0");
  EXPECT_TRUE(fn.msix_enabled());
  EXPECT_FALSE(fn.msix_function_masked());
  for (uint16_t v = 0; v < 16; ++v) EXPECT_TRUE(fn.msix_vector_masked(v)) << v;
  EXPECT_NE(fn.Peek(PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE, 0u);
  std::vector<int> irqs;
  for (unsigned nr = 0; nr < 4; ++nr) irqs.push_back(pci_irq_vector(dev, nr));
  EXPECT_THAT(irqs, ElementsAre(24, 25, 26, 27));
  EXPECT_EQ(pci_irq_vector(dev, 4), -EINVAL);
  // Once per device: a second allocation is a driver bug.
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 1, 4, PCI_IRQ_MSIX), -EINVAL);
  EXPECT_EQ(m().kernel().WarnCount(), 1u);
  pci_free_irq_vectors(dev);
  EXPECT_FALSE(fn.msix_enabled());
  EXPECT_EQ(fn.Peek(PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE, 0u);
  EXPECT_EQ(pci_irq_vector(dev, 0), 0);  // dev->irq: no INTx line
  EXPECT_EQ(pci_irq_vector(dev, 1), -EINVAL);
  EXPECT_EQ(Irqs().size(), 0u);
  pci_free_irq_vectors(dev);  // nothing enabled: nothing to do
}

TEST_F(PciIrqTest, AllocationErrnosFollowUpstream) {
  OpenWithMemory();
  struct pci_dev* dev = Dev("nvme0");
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 4, 2, PCI_IRQ_MSIX), -ERANGE);
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 0, 0, PCI_IRQ_MSIX), -EINVAL);
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 17, 32, PCI_IRQ_MSIX), -ENOSPC);
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 1, 1, PCI_IRQ_INTX), -ENOSPC);
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 1, 1, 0), -ENOSPC);
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 1, 1, PCI_IRQ_MSI), -EINVAL);
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 17, 32, PCI_IRQ_ALL_TYPES), -EINVAL);
  EXPECT_EQ(pci_alloc_irq_vectors(Dev("rp0"), 1, 1, PCI_IRQ_MSIX), -EINVAL);  // no MSI-X
  EXPECT_EQ(pci_msix_vec_count(Dev("rp0")), -EINVAL);
  EXPECT_FALSE(Hw("nvme0").msix_enabled());
  m().faults().FailOnce("kmalloc");
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 1, 4, PCI_IRQ_MSIX), -ENOMEM);
  EXPECT_FALSE(Hw("nvme0").msix_enabled());
  EXPECT_EQ(Irqs().size(), 0u);
  // More than the table asks for gets the table.
  EXPECT_EQ(pci_alloc_irq_vectors(dev, 1, 100, PCI_IRQ_MSIX | PCI_IRQ_AFFINITY), 16);
  EXPECT_EQ(m().kernel().WarnCount(), 0u);
}

TEST_F(PciIrqTest, RequestIrqErrnos) {
  OpenWithMemory();
  struct pci_dev* dev = Dev("nvme0");
  ASSERT_EQ(pci_alloc_irq_vectors(dev, 1, 1, PCI_IRQ_MSIX), 1);
  const unsigned irq = static_cast<unsigned>(pci_irq_vector(dev, 0));
  int a = 0;
  int b = 0;
  EXPECT_EQ(request_irq(IRQ_NOTCONNECTED, Handled, 0, "x", &a), -ENOTCONN);
  EXPECT_EQ(request_irq(irq, Handled, IRQF_SHARED, "x", nullptr), -EINVAL);
  EXPECT_EQ(request_irq(irq + 1, Handled, 0, "x", &a), -EINVAL);  // not allocated
  EXPECT_EQ(request_irq(irq, nullptr, 0, "x", &a), -EINVAL);
  m().faults().FailOnce("kmalloc");
  EXPECT_EQ(request_irq(irq, Handled, 0, "x", &a), -ENOMEM);
  EXPECT_TRUE(Hw("nvme0").msix_vector_masked(0));
  ASSERT_EQ(request_irq(irq, Handled, 0, "a", &a), 0);
  EXPECT_FALSE(Hw("nvme0").msix_vector_masked(0));
  EXPECT_EQ(request_irq(irq, Handled, IRQF_SHARED, "b", &b), -EBUSY);
  EXPECT_TRUE(HasLog("genirq: Flags mismatch irq 24. 00000080 (b) vs. 00000000 (a)"));
  EXPECT_NE(free_irq(irq, &a), nullptr);
  // Sharers must all say so, and agree on IRQF_ONESHOT.
  ASSERT_EQ(request_irq(irq, Handled, IRQF_SHARED, "a", &a), 0);
  EXPECT_EQ(request_irq(irq, Handled, IRQF_SHARED | IRQF_ONESHOT, "b", &b), -EBUSY);
  EXPECT_EQ(request_irq(irq, Handled, IRQF_SHARED, "b", &b), 0);
  EXPECT_NE(free_irq(irq, &a), nullptr);
  EXPECT_FALSE(Hw("nvme0").msix_vector_masked(0));  // b still holds it
  EXPECT_NE(free_irq(irq, &b), nullptr);
  EXPECT_TRUE(Hw("nvme0").msix_vector_masked(0));
}

TEST_F(PciIrqTest, TheHandlerRunsOncePerCompletionWithItsCookie) {
  OpenWithMemory();
  struct pci_dev* dev = Dev("nvme0");
  ASSERT_EQ(pci_alloc_irq_vectors(dev, 2, 2, PCI_IRQ_MSIX), 2);
  const int irq = pci_irq_vector(dev, 1);
  static const char kName[] = "nvme0-q1";
  int cookie = 0;
  ASSERT_EQ(request_irq(irq, Handled, 0, kName, &cookie), 0);
  Fill(1, 0);
  Fill(-1, 4096);  // no interrupt
  Fill(1, 8192);
  Fill(1, 12288);
  Run(1);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_THAT(Calls(), ElementsAre(std::pair{irq, static_cast<void*>(&cookie)},
                                   std::pair{irq, static_cast<void*>(&cookie)},
                                   std::pair{irq, static_cast<void*>(&cookie)}));
  EXPECT_EQ(Irqs().Count(irq), 3u);
  EXPECT_EQ(Irqs().spurious(), 0u);
  // free_irq hands back the name and masks the vector: the next completion
  // pends on the device.
  EXPECT_EQ(free_irq(irq, &cookie), static_cast<const void*>(kName));
  EXPECT_TRUE(Hw("nvme0").msix_vector_masked(1));
  Fill(1);
  Run(1);
  EXPECT_EQ(Calls().size(), 3u);
  EXPECT_TRUE(Hw("nvme0").msix_pending(1));
  EXPECT_EQ(free_irq(irq, &cookie), nullptr);
  EXPECT_EQ(m().kernel().WarnCount("Trying to free already-free IRQ 25"), 1u);
  // Vectors freed: MSI-X is off and a completion is lost on the device.
  pci_free_irq_vectors(dev);
  Fill(1);
  Run(1);
  EXPECT_EQ(Hw("nvme0").msix_lost(), 1u);
  EXPECT_EQ(Calls().size(), 3u);
}

TEST_F(PciIrqTest, ACompletionThatPendedIsHandledWhenTheIrqIsRequested) {
  OpenWithMemory();
  struct pci_dev* dev = Dev("nvme0");
  ASSERT_EQ(pci_alloc_irq_vectors(dev, 1, 1, PCI_IRQ_MSIX), 1);
  Fill(0);
  Run(1);
  EXPECT_TRUE(Hw("nvme0").msix_pending(0));
  int cookie = 0;
  const int irq = pci_irq_vector(dev, 0);
  ASSERT_EQ(request_irq(irq, Handled, 0, "q0", &cookie), 0);  // unmasks: taken at once
  EXPECT_THAT(Calls(), ElementsAre(std::pair{irq, static_cast<void*>(&cookie)}));
  EXPECT_FALSE(Hw("nvme0").msix_pending(0));
}

TEST_F(PciIrqTest, IrqNoneIsCountedAsUnhandledAndSharersAllRun) {
  OpenWithMemory();
  struct pci_dev* dev = Dev("nvme0");
  ASSERT_EQ(pci_alloc_irq_vectors(dev, 1, 1, PCI_IRQ_MSIX), 1);
  const int irq = pci_irq_vector(dev, 0);
  int a = 0;
  int b = 0;
  ASSERT_EQ(request_irq(irq, NotMine, IRQF_SHARED, "a", &a), 0);
  Fill(0);
  Run(1);
  EXPECT_EQ(Irqs().unhandled(), 1u);
  ASSERT_EQ(request_irq(irq, Handled, IRQF_SHARED, "b", &b), 0);
  Fill(0);
  Run(1);
  EXPECT_EQ(Irqs().unhandled(), 1u);
  EXPECT_EQ(Calls().size(), 3u);
  // Freeing the vectors with handlers attached is a driver bug: WARN.
  pci_free_irq_vectors(dev);
  EXPECT_EQ(m().kernel().WarnCount("still requested"), 1u);
  EXPECT_FALSE(Hw("nvme0").msix_enabled());
}

// The device streams into a ring and interrupts at every wrap; kernel A's
// driver took vector 0 and never gave it back (MSI-X on, vector unmasked),
// and preserved the device, so DMA goes on through the kexec. Kernel B has
// no irq for the vector until its own driver allocates one: the wraps that
// complete during B's boot are spurious in B, and counted, not a crash.
TEST_F(PciIrqTest, AfterAKexecAVectorLeftUnmaskedIsSpuriousUntilADriverTakesItOver) {
  OpenWithMemory();
  struct pci_dev* dev = Dev("nvme0");
  ASSERT_EQ(pci_alloc_irq_vectors(dev, 1, 1, PCI_IRQ_MSIX), 1);
  int cookie = 0;
  ASSERT_EQ(request_irq(pci_irq_vector(dev, 0), Handled, 0, "ring", &cookie), 0);
  StartRing(0);
  Run(3);
  EXPECT_EQ(Calls().size(), 3u);
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, memfd_, 2), 0);
  ASSERT_EQ(luo::PreserveFd(p(), s, dev_, 1), 0);
  Kexec();
  // A took the wraps after its reboot hooks and after its device shutdown.
  EXPECT_EQ(Calls().size(), 5u);
  // The hardware kept what A left: MSI-X on, vector 0 unmasked.
  hw::PciFunction& fn = Hw("nvme0");
  EXPECT_TRUE(fn.msix_enabled());
  EXPECT_FALSE(fn.msix_vector_masked(0));
  // Every step of B's boot saw a wrap; B had no irq for any of them.
  EXPECT_EQ(Irqs().spurious(), m().kernel().boot_steps().size());
  EXPECT_EQ(Irqs().size(), 0u);
  EXPECT_TRUE(HasLog("MSI-X vector 0: No irq handler for vector"));
  EXPECT_EQ(m().msix_no_kernel(), 0u);
  EXPECT_EQ(fn.msix_lost(), 0u);
  EXPECT_THAT(Events(), IsEmpty());
  // B's driver takes the vector over: allocation masks it (the wraps pend),
  // request_irq unmasks it and the pending one is taken at once.
  struct pci_dev* dev_b = Dev("nvme0");
  ASSERT_EQ(pci_alloc_irq_vectors(dev_b, 1, 1, PCI_IRQ_MSIX), 1);
  const uint64_t spurious = Irqs().spurious();
  Run(2);
  EXPECT_EQ(Irqs().spurious(), spurious);
  EXPECT_TRUE(fn.msix_pending(0));
  int cookie_b = 0;
  const int irq_b = pci_irq_vector(dev_b, 0);
  ASSERT_EQ(request_irq(irq_b, Handled, 0, "ring", &cookie_b), 0);
  Run(2);
  EXPECT_EQ(Calls().size(), 8u);
  EXPECT_EQ(Calls().back(), (std::pair{irq_b, static_cast<void*>(&cookie_b)}));
  EXPECT_EQ(Irqs().Count(irq_b), 3u);
}

// Kernel A's driver disabled MSI-X before the kexec (as a shutdown path
// does) while the preserved device kept streaming: every wrap from then on
// is lost on the device until kernel B enables MSI-X again.
TEST_F(PciIrqTest, CompletionsWhileMsixIsDisabledAcrossAKexecAreLost) {
  OpenWithMemory();
  struct pci_dev* dev = Dev("nvme0");
  ASSERT_EQ(pci_alloc_irq_vectors(dev, 1, 1, PCI_IRQ_MSIX), 1);
  int cookie = 0;
  const int irq = pci_irq_vector(dev, 0);
  ASSERT_EQ(request_irq(irq, Handled, 0, "ring", &cookie), 0);
  StartRing(0);
  Run(2);
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, memfd_, 2), 0);
  ASSERT_EQ(luo::PreserveFd(p(), s, dev_, 1), 0);
  free_irq(irq, &cookie);
  pci_free_irq_vectors(dev);
  Kexec();
  hw::PciFunction& fn = Hw("nvme0");
  EXPECT_FALSE(fn.msix_enabled());
  EXPECT_EQ(Calls().size(), 2u);
  EXPECT_EQ(fn.msix_lost(), 2 + m().kernel().boot_steps().size());
  EXPECT_EQ(Irqs().spurious(), 0u);
  size_t lost = 0;
  for (const std::string& name : m().trace().Names("irq")) lost += name == "irq/msix_lost";
  EXPECT_EQ(lost, fn.msix_lost());
  EXPECT_THAT(Events(), IsEmpty());
}

// Before the first boot no kernel has set the interrupt controller up: a
// message goes nowhere, and the machine counts it.
TEST(MachineMsixTest, AMessageWithNoKernelRunningIsCountedByTheMachine) {
  MachineConfig config = SmallPciMachine(1);
  config.pci = hw::PciTopology{.segments = {{.functions = {hw::PciEndpoint("ep", 3)}}}};
  Machine machine(std::move(config));
  hw::PciHardware& pci = machine.pci();
  hw::PciFunction& ep = *pci.Find("ep");
  const uint8_t devfn = PCI_DEVFN(3, 0);
  pci.ConfigWrite(0, 0, devfn, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
  pci.ConfigWrite(0, 0, devfn, ep.msix_cap() + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE);
  ASSERT_TRUE(ep.SetMsixVectorMasked(0, false));
  ep.RaiseMsix(0);
  EXPECT_EQ(ep.msix_sent(), 1u);
  EXPECT_EQ(machine.msix_no_kernel(), 1u);
  EXPECT_THAT(machine.trace().Names("irq"), ElementsAre("irq/no_kernel"));
}

}  // namespace
}  // namespace khosim::testing

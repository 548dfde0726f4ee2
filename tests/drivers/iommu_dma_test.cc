// DMA through the IOMMU, in one kernel and across a kexec: a device's
// engine streams a counter into a guest memfd mapped at IOVA 4 GiB through
// the pci-passthrough driver's domain; the VMM preserves memfd and device,
// the machine kexecs while the engine keeps writing, and kernel B adopts
// the preserved tables. Every check is on bytes and on the machine's DMA
// events: no fault, no stray write, every value in its slot.
#include <string>

#include "drivers/dma_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/drivers/iommu.h"
#include "khosim/linux/intel_iommu_regs.h"
#include "khosim/linux/mm.h"

namespace khosim::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kGuestSize = 16 * kMiB;

class IommuDmaTest : public DmaFixture {
 protected:
  void HeadlineFlow();
};

class IommuDma16kTest : public IommuDmaTest {
 protected:
  MachineConfig Config() override {
    MachineConfig config = IommuDmaTest::Config();
    config.page_size = 16 * kKiB;
    return config;
  }
};

TEST_F(IommuDmaTest, TheEngineWritesTheMemfdThroughTheDomain) {
  const int dev = OpenDevice("nvme0");
  const int memfd = GuestMemfd(kGuestSize);
  ASSERT_EQ(MapForDma(dev, memfd, 0, kGuestSize, kGuestIova), 0);
  StartCounter("nvme0", kGuestIova, kGuestSize);
  Run(300);  // more than one pass over the ring: it wraps
  EXPECT_THAT(Events(), IsEmpty());
  const uint64_t next = Engine("nvme0").next_counter();
  EXPECT_GT(next - kCounterBase, kGuestSize / 8);
  EXPECT_EQ(CheckRing(memfd, kGuestSize, next), "");
  EXPECT_TRUE(m().iommu()->Unit(0)->translation_enabled());
}

TEST_F(IommuDmaTest, AnUnmappedIovaFaultsAndHaltsTheEngine) {
  const int dev = OpenDevice("nvme0");
  const int memfd = GuestMemfd(kGuestSize);
  ASSERT_EQ(MapForDma(dev, memfd, 0, kGuestSize, kGuestIova), 0);
  Engine("nvme0").Submit(hw::DmaDescriptor{
      .op = hw::DmaOp::kFill, .dst = kGuestIova + kGuestSize, .len = 4096, .pattern = 0x42});
  Run(2);
  EXPECT_THAT(Events(), ElementsAre(HasSubstr("fault nvme0 gen1 test: no mapping")));
  EXPECT_EQ(Engine("nvme0").state(), hw::DmaEngine::State::kHalted);
  EXPECT_EQ(Engine("nvme0").bytes_written(), 0u);
}

TEST_F(IommuDmaTest, ADeviceWithoutADomainIsBlocked) {
  OpenDevice("nvme0");  // bus mastering on, nothing mapped or attached
  Engine("nvme0").Submit(hw::DmaDescriptor{.op = hw::DmaOp::kFill, .dst = 0x1000, .len = 8});
  Run(1);
  // No device of its bus has a context table yet.
  EXPECT_THAT(Events(), ElementsAre(HasSubstr("root entry not present")));
}

TEST_F(IommuDmaTest, ClearingBusMasteringStopsTheEngineUntilItIsSetAgain) {
  const int dev = OpenDevice("nvme0");
  const int memfd = GuestMemfd(kGuestSize);
  ASSERT_EQ(MapForDma(dev, memfd, 0, kGuestSize, kGuestIova), 0);
  StartCounter("nvme0", kGuestIova, kGuestSize);
  Run(1);
  const uint64_t before = Engine("nvme0").bytes_written();
  ASSERT_EQ(p().Ioctl(dev, PCI_PASSTHROUGH_SET_MASTER, 0ul), 0);
  Run(3);
  EXPECT_EQ(Engine("nvme0").bytes_written(), before);
  EXPECT_THAT(Events(), ElementsAre(HasSubstr("stopped nvme0 gen1 test: bus mastering off")));
  ASSERT_EQ(p().Ioctl(dev, PCI_PASSTHROUGH_SET_MASTER, 1ul), 0);
  Run(1);
  EXPECT_GT(Engine("nvme0").bytes_written(), before);
  EXPECT_EQ(CheckRing(memfd, kGuestSize, Engine("nvme0").next_counter()), "");
}

TEST_F(IommuDmaTest, ClosingTheDeviceUnmapsInvalidatesAndBlocks) {
  const int dev = OpenDevice("nvme0");
  const int memfd = GuestMemfd(kGuestSize);
  ASSERT_EQ(MapForDma(dev, memfd, 0, kGuestSize, kGuestIova), 0);
  StartCounter("nvme0", kGuestIova, kGuestSize);
  Run(2);
  ASSERT_THAT(Events(), IsEmpty());
  // Bus mastering stays on: only the IOMMU stands between the engine and
  // memory now. The IOTLB was invalidated, so nothing stale translates.
  struct pci_dev* pdev = Dev("nvme0");
  ASSERT_EQ(p().Close(dev), 0);
  pci_set_master(pdev);
  Run(1);
  EXPECT_THAT(Events(), ElementsAre(HasSubstr("fault nvme0 gen1 test: context entry not present")));
  EXPECT_TRUE(m().kernel().iommu()->domains().empty());
}

TEST_F(IommuDmaTest, MapErrnos) {
  const int dev = OpenDevice("nvme0");
  const int memfd = GuestMemfd(kGuestSize);
  EXPECT_EQ(MapForDma(dev, memfd, 0, 0, kGuestIova), -EINVAL);
  EXPECT_EQ(MapForDma(dev, memfd, 1, 4096, kGuestIova), -EINVAL);
  EXPECT_EQ(MapForDma(dev, memfd, 0, 4096, kGuestIova + 1), -EINVAL);
  EXPECT_EQ(MapForDma(dev, 999, 0, 4096, kGuestIova), -EBADF);
  EXPECT_EQ(MapForDma(dev, dev, 0, 4096, kGuestIova), -EINVAL);             // not a memfd
  EXPECT_EQ(MapForDma(dev, memfd, kGuestSize, 4096, kGuestIova), -EINVAL);  // past EOF
  ASSERT_EQ(MapForDma(dev, memfd, 0, 8192, kGuestIova), 0);
  EXPECT_EQ(MapForDma(dev, memfd, 4096, 8192, kGuestIova + 4096), -EEXIST);
  EXPECT_EQ(MapForDma(dev, memfd, 0, 4096, uint64_t{1} << 48), -EINVAL);  // past the aperture
}

// The headline: DMA never stops, nothing is lost or misplaced.
void IommuDmaTest::HeadlineFlow() {
  const int dev = OpenDevice("nvme0");
  const int memfd = GuestMemfd(kGuestSize);
  ASSERT_EQ(MapForDma(dev, memfd, 0, kGuestSize, kGuestIova), 0);
  StartCounter("nvme0", kGuestIova, kGuestSize);
  Run(10);
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, memfd, 2), 0);
  ASSERT_EQ(luo::PreserveFd(p(), s, dev, 1), 0);
  Run(10);
  const uint64_t before_kexec = m().dma_bytes();
  Kexec();
  // The engine advanced after A's reboot hooks, after A's device shutdown
  // and after every step of B's boot.
  EXPECT_EQ(m().dma_bytes() - before_kexec,
            (2 + m().kernel().boot_steps().size()) * m().config().dma_quantum);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_TRUE(m().kernel().iommu()->units()[0]->adopted);
  EXPECT_TRUE(m().iommu()->Unit(0)->translation_enabled());
  Run(10);  // before userspace retrieves anything
  ASSERT_EQ(BindPassthrough("nvme0"), 0);
  const int in = Retrieve("vm0");
  ASSERT_GE(in, 0);
  const int memfd_b = luo::RetrieveFd(p(), in, 2);
  ASSERT_GE(memfd_b, 0);
  Run(10);
  const int dev_b = luo::RetrieveFd(p(), in, 1);
  ASSERT_GE(dev_b, 0);
  Run(10);
  ASSERT_EQ(luo::FinishSession(p(), in), 0);
  Run(10);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_EQ(CheckRing(memfd_b, kGuestSize, Engine("nvme0").next_counter()), "");
  EXPECT_EQ(m().kernel().kho().UnrestoredBlocks(), 1u);  // the root FDT KHO keeps
  // Closing the device in kernel B lets go of the adopted domain.
  ASSERT_EQ(p().Close(dev_b), 0);
  EXPECT_TRUE(m().kernel().iommu()->domains().empty());
}

TEST_F(IommuDmaTest, DmaRunsThroughTheKexecIntoAdoptedTables) { HeadlineFlow(); }

// Kernel pages of 16 KiB under 4 KiB IOMMU tables: each table sits at the
// start of a kernel page, each memfd folio is four IOMMU pages.
TEST_F(IommuDma16kTest, DmaRunsThroughTheKexecIntoAdoptedTables) { HeadlineFlow(); }

}  // namespace
}  // namespace khosim::testing

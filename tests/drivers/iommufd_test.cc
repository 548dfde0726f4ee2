// iommufd in one kernel: IOAS, IOAS_MAP_FILE and IOAS_MAP, HWPTs, devices
// bound through the pci-passthrough stand-in for a VFIO cdev, DMA through
// them, and the errno of every refusal.
#include <cstring>
#include <string>

#include "drivers/iommufd_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/drivers/iommu.h"

namespace khosim::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kSize = 4 * kMiB;

class IommufdTest : public IommufdFixture {};

TEST_F(IommufdTest, TheEngineWritesAMemfdMappedThroughAnIoasAndAHwpt) {
  const int dev = OpenDevice("nvme0");
  const int memfd = SealedMemfd(kSize);
  const Vmm v = SetUpVmm(dev, memfd, kSize);
  StartCounter("nvme0", kGuestIova, kSize);
  Run(100);  // several passes over the ring
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_EQ(CheckRing(memfd, kSize, Engine("nvme0").next_counter()), "");
  ASSERT_EQ(m().kernel().iommu()->domains().size(), 1u);
  EXPECT_EQ(m().kernel().iommu()->domains()[0]->mapped_bytes, kSize);
  (void)v;
}

TEST_F(IommufdTest, AMapAfterTheHwptExistsReachesItsDomain) {
  const int dev = OpenDevice("nvme0");
  const int memfd = SealedMemfd(kSize);
  const int fd = OpenIommufd();
  const auto ioas = static_cast<uint32_t>(IoasAlloc(fd));
  const auto dev_id = static_cast<uint32_t>(Bind(dev, fd));
  const auto hwpt = static_cast<uint32_t>(HwptAlloc(fd, dev_id, ioas));
  ASSERT_EQ(Attach(dev, hwpt), hwpt);
  ASSERT_EQ(MapFile(fd, ioas, memfd, 0, kSize, kGuestIova), 0);
  StartCounter("nvme0", kGuestIova, kSize);
  Run(10);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_EQ(CheckRing(memfd, kSize, Engine("nvme0").next_counter()), "");
}

TEST_F(IommufdTest, AttachingToAnIoasMakesAnAutomaticHwptThatGoesWithItsDevice) {
  const int dev = OpenDevice("nvme0");
  const int memfd = SealedMemfd(kSize);
  const int fd = OpenIommufd();
  const auto ioas = static_cast<uint32_t>(IoasAlloc(fd));
  ASSERT_EQ(MapFile(fd, ioas, memfd, 0, kSize, kGuestIova), 0);
  ASSERT_GT(Bind(dev, fd), 0);
  const long hwpt = Attach(dev, ioas);
  ASSERT_GT(hwpt, 0);
  EXPECT_NE(hwpt, ioas);
  EXPECT_EQ(Destroy(fd, ioas), -EBUSY);                         // its HWPT uses it
  EXPECT_EQ(Destroy(fd, static_cast<uint32_t>(hwpt)), -EBUSY);  // the device is attached
  ASSERT_EQ(p().Ioctl(dev, PCI_PASSTHROUGH_DETACH_IOMMUFD_PT, 0ul), 0);
  EXPECT_TRUE(m().kernel().iommu()->domains().empty());
  EXPECT_EQ(Destroy(fd, static_cast<uint32_t>(hwpt)), -ENOENT);
  EXPECT_EQ(Destroy(fd, ioas), 0);
}

TEST_F(IommufdTest, MoveBetweenHwptsKeepsTheEngineRunning) {
  const int dev = OpenDevice("nvme0");
  const int memfd = SealedMemfd(kSize);
  const Vmm v = SetUpVmm(dev, memfd, kSize);
  StartCounter("nvme0", kGuestIova, kSize);
  Run(5);
  const long second = HwptAlloc(v.iommufd, v.dev_id, v.ioas);
  ASSERT_GT(second, 0);
  ASSERT_EQ(Attach(dev, static_cast<uint32_t>(second)), second);
  Run(5);
  ASSERT_EQ(Destroy(v.iommufd, v.hwpt), 0);
  Run(5);
  EXPECT_THAT(Events(), IsEmpty());
  EXPECT_EQ(CheckRing(memfd, kSize, Engine("nvme0").next_counter()), "");
  EXPECT_EQ(m().kernel().iommu()->domains().size(), 1u);
}

TEST_F(IommufdTest, MapFileErrnos) {
  const int memfd = SealedMemfd(kSize);
  const int fd = OpenIommufd();
  const auto ioas = static_cast<uint32_t>(IoasAlloc(fd));
  EXPECT_EQ(MapFile(fd, ioas + 7, memfd, 0, kSize, kGuestIova), -ENOENT);
  EXPECT_EQ(MapFile(fd, ioas, 99, 0, kSize, kGuestIova), -EBADF);
  EXPECT_EQ(MapFile(fd, ioas, fd, 0, kSize, kGuestIova), -EINVAL);  // not a memfd
  EXPECT_EQ(MapFile(fd, ioas, memfd, 0, 0, kGuestIova), -EINVAL);
  EXPECT_EQ(MapFile(fd, ioas, memfd, 100, 4096, kGuestIova), -EINVAL);
  EXPECT_EQ(MapFile(fd, ioas, memfd, 0, 4096, kGuestIova + 1), -EINVAL);
  EXPECT_EQ(MapFile(fd, ioas, memfd, 0, kSize + 4096, kGuestIova), -EINVAL);  // past EOF
  EXPECT_EQ(MapFile(fd, ioas, memfd, 0, 4096, 1ULL << 48), -EINVAL);          // beyond the tables
  struct iommu_ioas_map_file cmd = {.size = sizeof(cmd),
                                    .flags = IOMMU_IOAS_MAP_FIXED_IOVA,  // neither R nor W
                                    .ioas_id = ioas,
                                    .fd = memfd,
                                    .length = 4096,
                                    .iova = kGuestIova};
  EXPECT_EQ(p().Ioctl(fd, IOMMU_IOAS_MAP_FILE, &cmd), -EINVAL);
  cmd.flags = 1u << 7 | IOMMU_IOAS_MAP_READABLE;
  EXPECT_EQ(p().Ioctl(fd, IOMMU_IOAS_MAP_FILE, &cmd), -EOPNOTSUPP);
  ASSERT_EQ(MapFile(fd, ioas, memfd, 0, kSize, kGuestIova), 0);
  EXPECT_EQ(MapFile(fd, ioas, memfd, 0, 4096, kGuestIova + kSize - 4096), -EEXIST);
  EXPECT_EQ(MapFile(fd, ioas, memfd, 0, 8192, kGuestIova - 4096), -EEXIST);
}

TEST_F(IommufdTest, TheExtensibleStructRules) {
  const int fd = OpenIommufd();
  struct {
    struct iommu_ioas_alloc cmd;
    uint32_t extra;
  } big = {.cmd = {.size = sizeof(big)}, .extra = 1};
  EXPECT_EQ(p().Ioctl(fd, IOMMU_IOAS_ALLOC, &big), -E2BIG);
  big.extra = 0;
  EXPECT_EQ(p().Ioctl(fd, IOMMU_IOAS_ALLOC, &big), 0);
  EXPECT_EQ(big.cmd.out_ioas_id, 1u);
  struct iommu_ioas_alloc small = {.size = 8};
  EXPECT_EQ(p().Ioctl(fd, IOMMU_IOAS_ALLOC, &small), -EINVAL);
  EXPECT_EQ(p().Ioctl(fd, _IO(IOMMUFD_TYPE, 0x8a), &small), -ENOTTY);
}

TEST_F(IommufdTest, WithoutAFixedIovaTheLowestFreeRangeIsUsed) {
  const int memfd = SealedMemfd(kSize);
  const int fd = OpenIommufd();
  const auto ioas = static_cast<uint32_t>(IoasAlloc(fd));
  ASSERT_EQ(MapFile(fd, ioas, memfd, 0, 8192, 4096), 0);
  struct iommu_ioas_map_file cmd = {.size = sizeof(cmd),
                                    .flags = IOMMU_IOAS_MAP_READABLE,
                                    .ioas_id = ioas,
                                    .fd = memfd,
                                    .length = 4096};
  ASSERT_EQ(p().Ioctl(fd, IOMMU_IOAS_MAP_FILE, &cmd), 0);
  EXPECT_EQ(cmd.iova, 0u);
  cmd.length = 8192;
  ASSERT_EQ(p().Ioctl(fd, IOMMU_IOAS_MAP_FILE, &cmd), 0);
  EXPECT_EQ(cmd.iova, 12288u);
}

TEST_F(IommufdTest, UnmapTakesWholeAreasOnly) {
  const int dev = OpenDevice("nvme0");
  const int memfd = SealedMemfd(kSize);
  const Vmm v = SetUpVmm(dev, memfd, kSize);
  EXPECT_EQ(Unmap(v.iommufd, v.ioas, kGuestIova, 4096), -EINVAL);  // cuts the area
  EXPECT_EQ(Unmap(v.iommufd, v.ioas, 0, 4096), -ENOENT);
  struct iommu_ioas_unmap all = {.size = sizeof(all), .ioas_id = v.ioas, .length = UINT64_MAX};
  ASSERT_EQ(p().Ioctl(v.iommufd, IOMMU_IOAS_UNMAP, &all), 0);
  EXPECT_EQ(all.length, kSize);
  EXPECT_EQ(m().kernel().iommu()->domains()[0]->mapped_bytes, 0u);
  // The IOTLB was invalidated: the engine faults instead of writing.
  Engine("nvme0").Submit(hw::DmaDescriptor{.op = hw::DmaOp::kFill, .dst = kGuestIova, .len = 8});
  Run(1);
  EXPECT_THAT(Events(), ElementsAre(HasSubstr("fault nvme0 gen1 test: no mapping")));
}

TEST_F(IommufdTest, UserMemoryIsMappedAsPinnedAnonymousPages) {
  const int dev = OpenDevice("nvme0");
  const int fd = OpenIommufd();
  const auto ioas = static_cast<uint32_t>(IoasAlloc(fd));
  struct iommu_ioas_map cmd = {
      .size = sizeof(cmd),
      .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
      .ioas_id = ioas,
      .user_va = 0x7f0000000000,
      .length = kSize,
      .iova = kGuestIova};
  ASSERT_EQ(p().Ioctl(fd, IOMMU_IOAS_MAP, &cmd), 0);
  ASSERT_GT(Bind(dev, fd), 0);
  ASSERT_GT(Attach(dev, ioas), 0);
  StartCounter("nvme0", kGuestIova, kSize);
  Run(10);
  EXPECT_THAT(Events(), IsEmpty());  // mapped by the device's domain: no stray write
  const uint64_t phys = m().kernel().iommu()->IovaToPhys(
      &const_cast<drivers::IommuDomain*>(m().kernel().iommu()->domains()[0])->face, kGuestIova);
  uint64_t first = 0;
  std::memcpy(&first, m().memory().Virt(PhysAddr(phys)), sizeof(first));
  EXPECT_EQ(first, kCounterBase);
}

TEST_F(IommufdTest, BindErrnos) {
  const int dev = OpenDevice("nvme0");
  const int a = OpenIommufd();
  const int b = OpenIommufd();
  const int memfd = SealedMemfd(kSize);
  EXPECT_EQ(Bind(dev, memfd), -EBADFD);
  EXPECT_EQ(Bind(dev, 99), -EBADF);
  ASSERT_GT(Bind(dev, a), 0);
  EXPECT_EQ(Bind(dev, b), -EBUSY);  // this file is bound already
  EXPECT_EQ(MapForDma(dev, memfd, 0, kSize, kGuestIova), -EBUSY);
  EXPECT_EQ(Attach(dev, 42), -ENOENT);
  // Another driver's file for the same device cannot take its DMA: the
  // group is owned by iommufd a.
  EXPECT_EQ(iommu_device_claim_dma_owner(&Dev("nvme0")->dev, this), -EPERM);
}

TEST_F(IommufdTest, ClosingTheDeviceUnbindsAndClosingTheIommufdFreesEverything) {
  const int dev = OpenDevice("nvme0");
  const int memfd = SealedMemfd(kSize, /*seals=*/0);
  const Vmm v = SetUpVmm(dev, memfd, kSize);
  // Pinned for DMA: a write seal is refused.
  EXPECT_EQ(p().Fcntl(memfd, F_ADD_SEALS, F_SEAL_WRITE), -EBUSY);
  ASSERT_EQ(p().Close(dev), 0);
  EXPECT_EQ(Destroy(v.iommufd, v.dev_id), -ENOENT);  // unbound: gone
  EXPECT_EQ(Destroy(v.iommufd, v.hwpt), 0);
  ASSERT_EQ(p().Close(v.iommufd), 0);
  EXPECT_TRUE(m().kernel().iommu()->domains().empty());
  EXPECT_EQ(p().Fcntl(memfd, F_ADD_SEALS, F_SEAL_WRITE), 0);  // unpinned
}

TEST_F(IommufdTest, MarkPreserveErrnos) {
  const int dev = OpenDevice("nvme0");
  const int memfd = SealedMemfd(kSize);
  const Vmm v = SetUpVmm(dev, memfd, kSize);
  EXPECT_EQ(MarkPreserve(v.iommufd, 77, 4), -ENOENT);
  EXPECT_EQ(MarkPreserve(v.iommufd, v.ioas, 4), -ENOENT);  // not a HWPT
  EXPECT_EQ(MarkPreserve(v.iommufd, v.dev_id, 4), -ENOENT);
  ASSERT_EQ(MarkPreserve(v.iommufd, v.hwpt, 4), 0);
  EXPECT_EQ(MarkPreserve(v.iommufd, v.hwpt, 4), -EADDRINUSE);
  const long other = HwptAlloc(v.iommufd, v.dev_id, v.ioas);
  EXPECT_EQ(MarkPreserve(v.iommufd, static_cast<uint32_t>(other), 4), -EADDRINUSE);
  EXPECT_EQ(MarkPreserve(v.iommufd, static_cast<uint32_t>(other), 5), 0);
  // Marked: there is no unmark, so it cannot be destroyed.
  EXPECT_EQ(Destroy(v.iommufd, static_cast<uint32_t>(other)), -EBUSY);
  // Tokens are per iommufd.
  const int second = OpenIommufd();
  const auto ioas2 = static_cast<uint32_t>(IoasAlloc(second));
  const int dev2 = OpenDevice("accel0");
  const auto dev2_id = static_cast<uint32_t>(Bind(dev2, second));
  const auto hwpt2 = static_cast<uint32_t>(HwptAlloc(second, dev2_id, ioas2));
  EXPECT_EQ(MarkPreserve(second, hwpt2, 4), 0);
}

}  // namespace
}  // namespace khosim::testing

// The IOMMU core's live update contract, called as a driver calls it
// (linux/iommu.h): every errno of iommu_preserve_domain and
// iommu_preserve_device, the FLB's bytes (refcounts of units, DELETED
// slots never reused, the domain record), and every panic of kernel B on a
// corrupt record. The outgoing FLB exists because a pci-passthrough file
// (a handler the FLB is linked to) is preserved.
#include <fcntl.h>

#include <string>

#include "absl/strings/match.h"
#include "drivers/dma_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/base/panic.h"
#include "khosim/drivers/iommu.h"
#include "khosim/linux/err.h"
#include "khosim/linux/iommu.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/iommu.h"
#include "khosim/linux/mm.h"

namespace khosim::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

void* Owner(uint64_t token) { return reinterpret_cast<void*>(static_cast<uintptr_t>(token)); }

class IommuLiveUpdateTest : public DmaFixture {
 protected:
  // Session "lu" with nvme1's passthrough file: the IOMMU FLB's outgoing
  // object exists from here on.
  void StartPreserving() { session_ = PreserveDevice("lu", "nvme1"); }
  // A domain with |name| attached and owned, one page mapped.
  struct iommu_domain* OwnedDomain(const std::string& name, uint64_t token) {
    m().Activate();
    struct device* dev = &Dev(name)->dev;
    EXPECT_EQ(iommu_device_claim_dma_owner(dev, Owner(token)), 0);
    struct iommu_domain* d = iommu_paging_domain_alloc(dev);
    EXPECT_FALSE(IS_ERR(d));
    EXPECT_EQ(iommu_attach_device(d, dev), 0);
    struct page* page = alloc_pages(GFP_KERNEL, 0);
    EXPECT_EQ(iommu_map(d, kGuestIova, page_to_phys(page), PAGE_SIZE, IOMMU_READ | IOMMU_WRITE,
                        GFP_KERNEL),
              0);
    return d;
  }
  struct iommu_flb_ser* OutgoingSer() {
    for (const luo::Luo::FlbInfo& flb : m().kernel().luo().Flbs()) {
      if (flb.compatible == IOMMU_LUO_FLB_COMPATIBLE && flb.outgoing_data != 0) {
        return static_cast<struct iommu_flb_ser*>(phys_to_virt(flb.outgoing_data));
      }
    }
    return nullptr;
  }
  template <typename T>
  T* Slot(uint64_t array_phys, unsigned i) {
    auto* hdr = static_cast<struct iommu_array_hdr_ser*>(phys_to_virt(array_phys));
    return reinterpret_cast<T*>(hdr + 1) + i;
  }
  uint64_t Objects(uint64_t array_phys) {
    return static_cast<struct iommu_array_hdr_ser*>(phys_to_virt(array_phys))->nr_objects;
  }
  std::string KexecPanics() {
    try {
      (void)m().Kexec();
    } catch (const KernelPanic& panic) {
      return panic.what();
    }
    ADD_FAILURE() << "kernel B did not panic";
    return "";
  }
  int session_ = -1;
};

TEST_F(IommuLiveUpdateTest, PreserveDomainErrnos) {
  struct iommu_domain* d = OwnedDomain("nvme0", 7);
  EXPECT_EQ(iommu_preserve_domain(d), -ENOENT);  // no linked file preserved yet
  StartPreserving();
  m().Activate();
  EXPECT_EQ(iommu_preserve_domain(nullptr), -EOPNOTSUPP);
  EXPECT_EQ(iommu_preserve_domain(d), 0);
  EXPECT_EQ(iommu_preserve_domain(d), -EBUSY);
  // Preserved tables are frozen until the kexec.
  EXPECT_EQ(iommu_map(d, kGuestIova + PAGE_SIZE, 0x100000, PAGE_SIZE, IOMMU_READ, GFP_KERNEL),
            -EBUSY);
  EXPECT_EQ(iommu_unmap(d, kGuestIova, PAGE_SIZE), 0u);
  EXPECT_EQ(m().kernel().WarnCount("iommu_unmap on a preserved domain"), 1u);
  // Every table page is preserved.
  for (uint64_t table : drivers::IommuCore::FromFace(d)->tables) {
    EXPECT_TRUE(m().kernel().kho().IsPreserved(PhysAddr(table), 1));
  }
  iommu_unpreserve_domain(d);
  EXPECT_EQ(d->preserved_state, nullptr);
  EXPECT_EQ(iommu_preserve_domain(d), 0);  // again, into a new slot
  EXPECT_EQ(Objects(OutgoingSer()->iommu_domain_array_phys), 2u);
}

TEST_F(IommuLiveUpdateTest, PreserveDeviceErrnosInUpstreamOrder) {
  StartPreserving();
  struct iommu_domain* d = OwnedDomain("nvme0", 7);
  struct device* nvme0 = &Dev("nvme0")->dev;
  struct device platform = {.bus = nullptr, .init_name = "platform0", .iommu = nullptr};
  EXPECT_EQ(iommu_preserve_device(d, &platform, 7), -EOPNOTSUPP);  // not PCI
  EXPECT_EQ(iommu_preserve_device(d, nvme0, 7), -EINVAL);          // domain not preserved
  ASSERT_EQ(iommu_preserve_domain(d), 0);
  iommu_device_release_dma_owner(nvme0);
  EXPECT_EQ(iommu_preserve_device(d, nvme0, 7), -EINVAL);  // DMA ownership not claimed
  ASSERT_EQ(iommu_device_claim_dma_owner(nvme0, Owner(7)), 0);
  EXPECT_EQ(iommu_preserve_device(d, nvme0, 7), 0);
  EXPECT_EQ(iommu_preserve_device(d, nvme0, 7), -EBUSY);
  // A device attached elsewhere (here: nowhere) cannot be preserved with d.
  struct device* accel = &Dev("accel0")->dev;
  ASSERT_EQ(iommu_device_claim_dma_owner(accel, Owner(8)), 0);
  EXPECT_EQ(iommu_preserve_device(d, accel, 8), -EINVAL);
  EXPECT_EQ(iommu_device_claim_dma_owner(nvme0, Owner(9)), -EPERM);
}

class IommuMultifunctionTest : public IommuLiveUpdateTest {
 protected:
  MachineConfig Config() override {
    MachineConfig config = IommuLiveUpdateTest::Config();
    hw::PciFunctionSpec f0 = hw::PciEndpoint("mf0", 0, 0);
    hw::PciFunctionSpec f1 = hw::PciEndpoint("mf1", 0, 1);
    config.pci.segments[0].functions.push_back(hw::PciRootPort("rp9", 9, {f0, f1}));
    return config;
  }
};

TEST_F(IommuMultifunctionTest, ADeviceSharingItsGroupIsRefused) {
  StartPreserving();
  m().Activate();
  struct device* mf0 = &Dev("mf0")->dev;
  ASSERT_EQ(iommu_device_claim_dma_owner(mf0, Owner(3)), 0);
  struct iommu_domain* d = iommu_paging_domain_alloc(mf0);
  ASSERT_FALSE(IS_ERR(d));
  EXPECT_EQ(iommu_attach_device(d, mf0), -EINVAL);
  ASSERT_EQ(iommu_preserve_domain(d), 0);
  EXPECT_EQ(iommu_preserve_device(d, mf0, 3), -EOPNOTSUPP);
}

TEST_F(IommuLiveUpdateTest, UnitsAreCountedPerDeviceAndSlotsAreNeverReused) {
  StartPreserving();
  struct iommu_domain* d0 = OwnedDomain("nvme0", 7);
  struct iommu_domain* d1 = OwnedDomain("accel0", 8);
  ASSERT_EQ(iommu_preserve_domain(d0), 0);
  ASSERT_EQ(iommu_preserve_domain(d1), 0);
  ASSERT_EQ(iommu_preserve_device(d0, &Dev("nvme0")->dev, 7), 0);
  ASSERT_EQ(iommu_preserve_device(d1, &Dev("accel0")->dev, 8), 0);
  const struct iommu_flb_ser* ser = OutgoingSer();
  ASSERT_NE(ser, nullptr);
  EXPECT_EQ(ser->version, IOMMU_LUO_FLB_VERSION);
  ASSERT_EQ(Objects(ser->iommu_array_phys), 1u);
  auto* unit = Slot<struct iommu_hw_ser>(ser->iommu_array_phys, 0);
  EXPECT_EQ(unit->hdr.ref_count, 2u);
  EXPECT_EQ(unit->type, uint64_t{IOMMU_INTEL});
  EXPECT_EQ(unit->token, hw::IommuHardware::kIommuMmioBase);
  EXPECT_EQ(unit->intel.root_table, m().kernel().iommu()->units()[0]->root.value());
  EXPECT_TRUE(m().kernel().kho().IsPreserved(PhysAddr(unit->intel.root_table), 1));
  // The device records name their domain's and their unit's slots.
  auto* dev0 = Slot<struct iommu_device_ser>(ser->device_array_phys, 0);
  EXPECT_EQ(dev0->devid, pci_dev_id(Dev("nvme0")));
  EXPECT_EQ(dev0->dma_owner_token, 7u);
  EXPECT_EQ(dev0->domain_iommu_ser.domain_phys, virt_to_phys(d0->preserved_state));
  EXPECT_EQ(dev0->domain_iommu_ser.iommu_phys, virt_to_phys(unit));
  const drivers::IommuDomain* dd = drivers::IommuCore::FromFace(d0);
  EXPECT_EQ(d0->preserved_state->top_table_phys, dd->top.value());
  EXPECT_EQ(d0->preserved_state->top_level, 3u);
  EXPECT_EQ(d0->preserved_state->vasz, 48u);
  EXPECT_EQ(d0->preserved_state->hdr.ref_count, 2u);  // the domain and its device

  iommu_unpreserve_device(d0, &Dev("nvme0")->dev);
  EXPECT_EQ(dev0->hdr.flags, uint32_t{IOMMU_SER_FLAG_DELETED});
  EXPECT_EQ(unit->hdr.ref_count, 1u);
  ASSERT_EQ(iommu_preserve_device(d0, &Dev("nvme0")->dev, 7), 0);
  EXPECT_EQ(Objects(ser->device_array_phys), 3u);
  iommu_unpreserve_device(d0, &Dev("nvme0")->dev);
  iommu_unpreserve_device(d1, &Dev("accel0")->dev);
  // The last device takes the unit, its root and context tables with it.
  EXPECT_EQ(unit->hdr.flags, uint32_t{IOMMU_SER_FLAG_DELETED});
  EXPECT_FALSE(m().kernel().kho().IsPreserved(PhysAddr(unit->intel.root_table), 1));
}

TEST_F(IommuLiveUpdateTest, AnArrayGrowsByPagesWhenFull) {
  StartPreserving();
  struct iommu_domain* d = OwnedDomain("nvme0", 7);
  const uint64_t per_page = (PAGE_SIZE - 16) / sizeof(struct iommu_domain_ser);
  for (uint64_t i = 0; i <= per_page; ++i) {
    ASSERT_EQ(iommu_preserve_domain(d), 0);
    iommu_unpreserve_domain(d);
  }
  const struct iommu_flb_ser* ser = OutgoingSer();
  auto* first =
      static_cast<struct iommu_array_hdr_ser*>(phys_to_virt(ser->iommu_domain_array_phys));
  EXPECT_EQ(first->nr_objects, per_page);
  ASSERT_NE(first->next_array_phys, 0u);
  EXPECT_EQ(Objects(first->next_array_phys), 1u);
  EXPECT_TRUE(m().kernel().kho().IsPreserved(PhysAddr(first->next_array_phys), 1));
}

// ---- Kernel B on a corrupt record -----------------------------------------

class IommuIncomingTest : public IommuLiveUpdateTest {
 protected:
  void SetUp() override {
    IommuLiveUpdateTest::SetUp();
    if (HasFatalFailure()) return;
    const int dev = OpenDevice("nvme0");
    const int memfd = GuestMemfd(kGuestSize);
    ASSERT_EQ(MapForDma(dev, memfd, 0, kGuestSize, kGuestIova), 0);
    const int s = Create("vm0");
    ASSERT_EQ(luo::PreserveFd(p(), s, memfd, 2), 0);
    ASSERT_EQ(luo::PreserveFd(p(), s, dev, 1), 0);
    ser_ = OutgoingSer();
    ASSERT_NE(ser_, nullptr);
    mapped_pa_ = iommu_iova_to_phys(iommu_get_domain_for_dev(&Dev("nvme0")->dev), kGuestIova);
  }
  bool LogHas(absl::string_view needle) {
    for (const std::string& line : m().kernel().ctx().LogLines()) {
      if (absl::StrContains(line, needle)) return true;
    }
    return false;
  }
  uint64_t mapped_pa_ = 0;
  static constexpr uint64_t kGuestSize = 4 * kMiB;
  struct iommu_flb_ser* ser_ = nullptr;
};

TEST_F(IommuIncomingTest, AnIntactRecordRestoresTheDeviceOwnedByItsToken) {
  Kexec();
  struct device* dev = &Dev("nvme0")->dev;
  struct iommu_domain* d = iommu_get_domain_for_dev(dev);
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(drivers::IommuCore::FromFace(d)->restored);
  EXPECT_NE(mapped_pa_, 0u);
  EXPECT_EQ(iommu_iova_to_phys(d, kGuestIova), mapped_pa_);
  EXPECT_TRUE(LogHas("restored its preserved domain"));
  // A fresh owner cannot take the device: the preserved token holds it.
  EXPECT_EQ(iommu_device_claim_dma_owner(dev, Owner(42)), -EPERM);
}

TEST_F(IommuIncomingTest, AVersionMismatchPanics) {
  ser_->version = 2;
  EXPECT_THAT(KexecPanics(), HasSubstr("incoming FLB version 2"));
}

TEST_F(IommuIncomingTest, AMissingArrayPanics) {
  ser_->device_array_phys = 0;
  EXPECT_THAT(KexecPanics(), HasSubstr("without an object array"));
}

TEST_F(IommuIncomingTest, AnArrayPageThatWasNotPreservedPanics) {
  ser_->iommu_domain_array_phys = 0x100000;
  EXPECT_THAT(KexecPanics(), HasSubstr("cannot restore domain array page 0x100000"));
}

TEST_F(IommuIncomingTest, AChainThatLoopsBackPanicsInsteadOfSpinning) {
  auto* hdr = static_cast<struct iommu_array_hdr_ser*>(phys_to_virt(ser_->device_array_phys));
  hdr->next_array_phys = ser_->device_array_phys;
  EXPECT_THAT(KexecPanics(), HasSubstr("cannot restore device array page"));
}

TEST_F(IommuIncomingTest, AnObjectCountBeyondThePagePanicsNamingIt) {
  static_cast<struct iommu_array_hdr_ser*>(phys_to_virt(ser_->iommu_array_phys))->nr_objects = 1000;
  EXPECT_THAT(KexecPanics(), HasSubstr("unit array page"));
}

TEST_F(IommuIncomingTest, ADeviceNamingNoDomainSlotIsNotRestored) {
  Slot<struct iommu_device_ser>(ser_->device_array_phys, 0)->domain_iommu_ser.domain_phys = 8;
  Kexec();
  EXPECT_EQ(iommu_get_domain_for_dev(&Dev("nvme0")->dev), nullptr);
  EXPECT_TRUE(LogHas("names no preserved domain or unit"));
}

TEST_F(IommuIncomingTest, ATopTableThatWasNotPreservedPanics) {
  auto* dev = Slot<struct iommu_device_ser>(ser_->device_array_phys, 0);
  auto* domain =
      static_cast<struct iommu_domain_ser*>(phys_to_virt(dev->domain_iommu_ser.domain_phys));
  domain->top_table_phys = 0x100000;
  EXPECT_THAT(KexecPanics(), HasSubstr("cannot restore top page table page 0x100000"));
}

TEST_F(IommuIncomingTest, AnImpossibleDomainShapeIsRefusedNotFollowed) {
  auto* dev = Slot<struct iommu_device_ser>(ser_->device_array_phys, 0);
  static_cast<struct iommu_domain_ser*>(phys_to_virt(dev->domain_iommu_ser.domain_phys))
      ->top_level = 9;
  Kexec();
  EXPECT_EQ(iommu_get_domain_for_dev(&Dev("nvme0")->dev), nullptr);
  EXPECT_EQ(m().kernel().WarnCount("has level 9"), 1u);
}

}  // namespace
}  // namespace khosim::testing

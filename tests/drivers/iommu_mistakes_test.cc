// The classic mistakes of device live update, each made by a deliberately
// careless driver, and what khosim reports for each: the exact DMA fault,
// stray write or stop, with the kernel and the point in time, every run.
//
// The careless driver is a test module: a LUO file handler for a device
// the pci-passthrough driver already set up for DMA (its domain maps the
// guest memfd). Its preserve does what the test's mode says, and nothing
// checks the memfd.
#include <string>

#include "drivers/dma_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/base/panic.h"
#include "khosim/drivers/iommu.h"
#include "khosim/linux/err.h"
#include "khosim/linux/iommu.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/iommu.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/pci_liveupdate.h"
#include "khosim/luo/luo.h"

namespace khosim::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr uint64_t kGuestSize = 16 * kMiB;

enum class Careless { kForgetsTheIommu, kForgetsThePciDevice, kNothing };
Careless g_mode = Careless::kNothing;

const struct file_operations careless_fops = {};

bool careless_can_preserve(struct liveupdate_file_handler*, struct file* file) {
  return file->f_op == &careless_fops;
}

int careless_preserve(struct liveupdate_file_op_args* args) {
  auto* pdev = static_cast<struct pci_dev*>(args->file->private_data);
  void* record = kho_alloc_preserve(8);
  if (IS_ERR(record)) return static_cast<int>(PTR_ERR(record));
  int err = 0;
  if (g_mode != Careless::kForgetsThePciDevice) err = pci_liveupdate_preserve(pdev);
  struct iommu_domain* domain = iommu_get_domain_for_dev(&pdev->dev);
  if (err == 0 && g_mode != Careless::kForgetsTheIommu) {
    err = iommu_preserve_domain(domain);
    if (err == 0) err = iommu_preserve_device(domain, &pdev->dev, (1ULL << 63) | pci_dev_id(pdev));
  }
  *static_cast<u64*>(record) =
      (static_cast<u64>(pci_domain_nr(pdev->bus)) << 16) | pci_dev_id(pdev);
  args->serialized_data = virt_to_phys(record);
  return err;
}

void careless_unpreserve(struct liveupdate_file_op_args* args) {
  kho_unpreserve_free(phys_to_virt(args->serialized_data));
}
int careless_retrieve(struct liveupdate_file_op_args*) { return -ENODEV; }
bool careless_can_finish(struct liveupdate_file_op_args*) { return true; }
// It does finish the device at the PCI level (the PCI FLB would panic).
void careless_finish(struct liveupdate_file_op_args* args) {
  struct folio* folio = kho_restore_folio(args->serialized_data);
  if (folio == nullptr) return;
  const u64 id = *static_cast<const u64*>(folio_address(folio));
  struct pci_dev* pdev =
      pci_get_domain_bus_and_slot(static_cast<int>(id >> 16), (id >> 8) & 0xff, id & 0xff);
  if (pdev != nullptr) {
    pci_liveupdate_finish(pdev);
    pci_dev_put(pdev);
  }
  folio_put(folio);
}
unsigned long careless_get_id(struct file* file) {
  return reinterpret_cast<unsigned long>(file->private_data);
}

const struct liveupdate_file_ops careless_ops = {
    .can_preserve = careless_can_preserve,
    .preserve = careless_preserve,
    .unpreserve = careless_unpreserve,
    .retrieve = careless_retrieve,
    .can_finish = careless_can_finish,
    .finish = careless_finish,
    .get_id = careless_get_id,
};
struct liveupdate_file_handler careless_handler = {.ops = &careless_ops,
                                                   .compatible = "careless-dma-v1"};

int careless_init() {
  int err = liveupdate_register_file_handler(&careless_handler);
  if (err == 0) err = pci_liveupdate_register_flb(&careless_handler);
  if (err == 0) err = iommu_liveupdate_register_flb(&careless_handler);
  return err;
}

class IommuMistakesTest : public DmaFixture {
 protected:
  std::vector<KernelModule> ExtraModules() override {
    return {KernelModule{.name = "careless-dma",
                         .kind = KernelModule::Kind::kDriver,
                         .description = "a device handler that forgets things",
                         .compatibles = {"careless-dma-v1"},
                         .initcalls = {{InitcallLevel::kDevice, "careless_init", careless_init}}}};
  }
  void TearDown() override { g_mode = Careless::kNothing; }

  // nvme0 streams into the guest memfd through its domain; the VMM puts
  // the device (and, if |preserve_memfd|, the memfd) into session "vm0"
  // with the careless handler, and the machine kexecs.
  void RunTheFlow(Careless mode, bool preserve_memfd) {
    g_mode = mode;
    const int dev = OpenDevice("nvme0");
    memfd_ = GuestMemfd(kGuestSize);
    ASSERT_EQ(MapForDma(dev, memfd_, 0, kGuestSize, kGuestIova), 0);
    StartCounter("nvme0", kGuestIova, kGuestSize);
    Run(5);
    const int s = Create("vm0");
    if (preserve_memfd) {
      ASSERT_EQ(luo::PreserveFd(p(), s, memfd_, 2), 0);
    }
    ASSERT_EQ(PreserveCareless(s), 0);
    Run(5);
    ASSERT_THAT(Events(), IsEmpty());
    Kexec();
  }
  // A careless file for nvme0, installed in the VMM and preserved in
  // session |s| at token 1: 0 or the errno.
  int PreserveCareless(int s) {
    struct file* file = anon_inode_getfile("[careless]", &careless_fops, Dev("nvme0"), O_RDWR);
    const int fd = p().ReserveFd(0);
    p().InstallFd(fd, file);
    return luo::PreserveFd(p(), s, fd, 1);
  }
  int memfd_ = -1;
};

// Without the IOMMU's preservation the unit is switched off at shutdown
// (intel_iommu_shutdown): the still-running device's IOVAs become physical
// addresses, and 4 GiB is no memory on this 2 GiB machine.
TEST_F(IommuMistakesTest, PageTablesNotPreserved) {
  RunTheFlow(Careless::kForgetsTheIommu, /*preserve_memfd=*/true);
  // The ring's next slot, IOVA 4 GiB + 0xb0000, as a physical address.
  EXPECT_THAT(Events(), ElementsAre("fault nvme0 gen1 kexec:shutdown: unsupported request: no "
                                    "memory at 0x1000b0000"));
  EXPECT_EQ(Engine("nvme0").state(), hw::DmaEngine::State::kHalted);
}

// Bus mastering is what keeps a device running: the PCI core clears it at
// shutdown for a device nobody preserved through the PCI FLB.
TEST_F(IommuMistakesTest, BusMasteringClearedAtShutdown) {
  RunTheFlow(Careless::kForgetsThePciDevice, /*preserve_memfd=*/true);
  EXPECT_THAT(Events(), ElementsAre("stopped nvme0 gen1 kexec:shutdown: bus mastering off"));
  // Kernel B still adopted the IOMMU state: only the device stopped.
  EXPECT_TRUE(m().kernel().iommu()->units()[0]->adopted);
}

// The memfd was not preserved: kernel B treats the guest's pages as free
// memory the moment its allocator takes over, and the device keeps
// writing into them.
TEST_F(IommuMistakesTest, MemfdNotPreserved) {
  RunTheFlow(Careless::kNothing, /*preserve_memfd=*/false);
  const std::vector<std::string> events = Events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0], "stray_write nvme0 gen2 memblock_free_all: free memory");
  for (const std::string& e : events) EXPECT_THAT(e, StartsWith("stray_write nvme0 gen2"));
}

// Kernel B frees one of the preserved page-table pages before the IOMMU
// adopts it (a driver that "cleans up" early): the unit's next walk
// through it faults, and the IOMMU's own restore then BUGs on the page.
TEST_F(IommuMistakesTest, ATablePageFreedByKernelB) {
  // The second-level table covering the ring (one level above the leaves).
  g_mode = Careless::kNothing;
  const int dev = OpenDevice("nvme0");
  memfd_ = GuestMemfd(kGuestSize);
  ASSERT_EQ(MapForDma(dev, memfd_, 0, kGuestSize, kGuestIova), 0);
  const drivers::IommuDomain* d = m().kernel().iommu()->domains()[0];
  uint64_t table = d->top.value();
  for (unsigned level = 4; level > 2; --level) {
    const uint64_t index = (kGuestIova >> (12 + 9 * (level - 1))) & 511;
    table = static_cast<const uint64_t*>(phys_to_virt(table))[index] & 0x000ffffffffff000ULL;
  }
  static uint64_t victim;
  victim = table;
  StartCounter("nvme0", kGuestIova, kGuestSize);
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, memfd_, 2), 0);
  ASSERT_EQ(PreserveCareless(s), 0);
  // The IOTLB would hide the freed table for pages it already knows.
  ASSERT_TRUE(m().AddModule({.name = "early-cleanup",
                             .kind = KernelModule::Kind::kDriver,
                             .initcalls = {{InitcallLevel::kCore, "early_cleanup",
                                            [] {
                                              struct page* page = kho_restore_pages(victim, 1);
                                              if (page == nullptr) return -EINVAL;
                                              __free_pages(page, 0);
                                              return 0;
                                            }}}})
                  .ok());
  KernelBuild build = *m().config().build;
  build.modules.push_back("early-cleanup");
  std::string panic;
  try {
    (void)m().Kexec(KexecOptions{.build = build});
  } catch (const KernelPanic& e) {
    panic = e.what();
  }
  EXPECT_THAT(panic, HasSubstr("cannot restore page table page"));
  const std::vector<std::string> events = Events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0],
            "fault nvme0 gen2 initcall:early_cleanup: table page is not a page-table page: free "
            "memory");
}

// A preserved device kernel B cannot match (its record names another
// BDF): the unit keeps walking the preserved tables until the IOMMU FLB's
// finish frees them, and then the device must be blocked first, or the
// unit would walk freed memory. The session finishes without it.
TEST_F(IommuMistakesTest, AnUnclaimedDeviceIsBlockedBeforeItsTablesAreFreed) {
  g_mode = Careless::kNothing;
  const int dev = OpenDevice("nvme0");
  memfd_ = GuestMemfd(kGuestSize);
  ASSERT_EQ(MapForDma(dev, memfd_, 0, kGuestSize, kGuestIova), 0);
  StartCounter("nvme0", kGuestIova, kGuestSize);
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, memfd_, 2), 0);
  ASSERT_EQ(PreserveCareless(s), 0);
  for (const luo::Luo::FlbInfo& flb : m().kernel().luo().Flbs()) {
    if (flb.compatible != IOMMU_LUO_FLB_COMPATIBLE) continue;
    auto* ser = static_cast<struct iommu_flb_ser*>(phys_to_virt(flb.outgoing_data));
    auto* hdr = static_cast<struct iommu_array_hdr_ser*>(phys_to_virt(ser->device_array_phys));
    reinterpret_cast<struct iommu_device_ser*>(hdr + 1)->devid = 0xff00;
  }
  Kexec();
  Run(3);
  // Still translating through the previous kernel's (preserved) tables.
  ASSERT_THAT(Events(), IsEmpty());
  EXPECT_EQ(iommu_get_domain_for_dev(&Dev("nvme0")->dev), nullptr);
  const int in = Retrieve("vm0");
  ASSERT_GE(luo::RetrieveFd(p(), in, 2), 0);
  EXPECT_EQ(luo::RetrieveFd(p(), in, 1), -ENODEV);
  ASSERT_EQ(luo::FinishSession(p(), in), 0);
  Run(1);
  EXPECT_THAT(Events(), ElementsAre(HasSubstr("fault nvme0 gen2 test: context entry not present")));
}

}  // namespace
}  // namespace khosim::testing

// PciFixture plus DMA: a guest memfd mapped for a device through the
// pci-passthrough driver's IOMMU domain, the device's DMA engine writing a
// sequence counter into it, and the checks the DMA tests share: the
// machine's DMA events, and the ring's bytes (every slot holds the newest
// value the engine wrote there, so a missing or misplaced write shows).
#ifndef KHOSIM_TESTS_DRIVERS_DMA_FIXTURE_H_
#define KHOSIM_TESTS_DRIVERS_DMA_FIXTURE_H_

#include <sys/mman.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "drivers/pci_fixture.h"
#include "khosim/fs/shmem.h"
#include "khosim/hw/dma_engine.h"

namespace khosim::testing {

inline constexpr uint64_t kGuestIova = 4 * kGiB;
inline constexpr uint64_t kCounterBase = 1;

class DmaFixture : public PciFixture {
 protected:
  MachineConfig Config() override {
    MachineConfig config = PciFixture::Config();
    config.ram = 2 * kGiB;
    return config;
  }

  // A memfd of |size| bytes; the fd.
  int GuestMemfd(uint64_t size) {
    const int fd = fs::MemfdCreate(p(), "guest-ram", 0);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(p().Ftruncate(fd, static_cast<loff_t>(size)), 0);
    return fd;
  }
  long MapForDma(int dev, int memfd, uint64_t offset, uint64_t length, uint64_t iova) {
    struct pci_passthrough_dma_map map = {
        .size = sizeof(map), .fd = memfd, .offset = offset, .length = length, .iova = iova};
    return p().Ioctl(dev, PCI_PASSTHROUGH_DMA_MAP_FILE, &map);
  }
  hw::DmaEngine& Engine(const std::string& name) { return *m().dma_engine(name); }
  // The engine streams counter values into [iova, iova + size) forever.
  void StartCounter(const std::string& name, uint64_t iova, uint64_t size) {
    Engine(name).Submit(hw::DmaDescriptor{.op = hw::DmaOp::kCounter,
                                          .dst = iova,
                                          .len = size,
                                          .pattern = kCounterBase,
                                          .repeat = true});
  }
  void Run(int quanta) {
    for (int i = 0; i < quanta; ++i) m().RunDevices("test");
  }
  // Every DMA event, one line each ("stray_write nvme0 ... free memory").
  std::vector<std::string> Events() const {
    std::vector<std::string> out;
    for (const DmaRecord& r : machine_const().dma_events()) {
      out.push_back(absl::StrCat(hw::DmaEventKindName(r.event.kind), " ", r.event.device, " gen",
                                 r.generation, " ", r.point, ": ", r.event.reason));
    }
    return out;
  }
  // Checks the ring in the memfd behind |fd| (of |size| bytes) against the
  // engine's count: "" or the first wrong slot.
  std::string CheckRing(int fd, uint64_t size, uint64_t next_value) {
    const uint64_t slots = size / 8;
    const uint64_t written = next_value - kCounterBase;
    std::vector<uint64_t> chunk(64 * 1024 / 8);
    for (uint64_t base = 0; base < slots; base += chunk.size()) {
      const ssize_t n =
          p().Pread(fd, chunk.data(), chunk.size() * 8, static_cast<loff_t>(base * 8));
      if (n != static_cast<ssize_t>(chunk.size() * 8)) return absl::StrCat("pread returned ", n);
      for (uint64_t j = 0; j < chunk.size(); ++j) {
        const uint64_t slot = base + j;
        uint64_t expected = 0;
        if (written > slot) expected = kCounterBase + slot + slots * ((written - 1 - slot) / slots);
        if (chunk[j] != expected) {
          return absl::StrCat("slot ", slot, " holds ", chunk[j], ", expected ", expected);
        }
      }
    }
    return "";
  }

 private:
  const Machine& machine_const() const { return const_cast<DmaFixture*>(this)->m(); }
};

}  // namespace khosim::testing

#endif  // KHOSIM_TESTS_DRIVERS_DMA_FIXTURE_H_

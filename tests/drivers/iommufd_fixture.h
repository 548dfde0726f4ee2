// DmaFixture plus iommufd: the kernels are built with module "iommufd",
// and the helpers speak /dev/iommu's uAPI and the pci-passthrough stand-in
// for the VFIO device cdev (bind to an iommufd, attach to a HWPT). Every
// helper returns what the ioctl returned, or the id it gave back.
#ifndef KHOSIM_TESTS_DRIVERS_IOMMUFD_FIXTURE_H_
#define KHOSIM_TESTS_DRIVERS_IOMMUFD_FIXTURE_H_

#include <fcntl.h>

#include <cstdint>

#include "drivers/dma_fixture.h"
#include "khosim/drivers/iommufd_client.h"
#include "khosim/linux/memfd.h"
#include "khosim/uapi/iommufd.h"

namespace khosim::testing {

inline constexpr unsigned int kLiveupdateSeals = F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK;

class IommufdFixture : public DmaFixture {
 protected:
  MachineConfig Config() override {
    MachineConfig config = DmaFixture::Config();
    config.build->modules.push_back(kIommufdModule);
    return config;
  }

  int OpenIommufd() { return static_cast<int>(iommufd::OpenIommufd(p())); }
  // A memfd of |size| bytes sealed as live update requires (unless
  // |seals| says otherwise).
  int SealedMemfd(uint64_t size, unsigned int seals = kLiveupdateSeals) {
    const int fd = fs::MemfdCreate(p(), "guest-ram", MFD_ALLOW_SEALING);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(p().Ftruncate(fd, static_cast<loff_t>(size)), 0);
    if (seals != 0) {
      EXPECT_EQ(p().Fcntl(fd, F_ADD_SEALS, seals), 0);
    }
    return fd;
  }
  long IoasAlloc(int fd) { return iommufd::IoasAlloc(p(), fd); }
  long MapFile(int fd, uint32_t ioas, int memfd, uint64_t start, uint64_t length, uint64_t iova) {
    return iommufd::MapFile(p(), fd, ioas, memfd, start, length, iova);
  }
  long Unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t length) {
    return iommufd::Unmap(p(), fd, ioas, iova, length);
  }
  long Destroy(int fd, uint32_t id) { return iommufd::Destroy(p(), fd, id); }
  long Bind(int dev, int iommufd) {
    struct pci_passthrough_bind_iommufd cmd = {.size = sizeof(cmd), .iommufd = iommufd};
    const long ret = p().Ioctl(dev, PCI_PASSTHROUGH_BIND_IOMMUFD, &cmd);
    return ret != 0 ? ret : cmd.out_devid;
  }
  long HwptAlloc(int fd, uint32_t dev_id, uint32_t ioas) {
    return iommufd::HwptAlloc(p(), fd, dev_id, ioas);
  }
  // Attaches to an IOAS or HWPT; the HWPT id attached, or the errno.
  long Attach(int dev, uint32_t pt_id) {
    struct pci_passthrough_attach_pt cmd = {.size = sizeof(cmd), .pt_id = pt_id};
    const long ret = p().Ioctl(dev, PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT, &cmd);
    return ret != 0 ? ret : cmd.pt_id;
  }
  long MarkPreserve(int fd, uint32_t hwpt, uint64_t token) {
    return iommufd::MarkPreserve(p(), fd, hwpt, token);
  }
  long RestoreHwpt(int fd, uint64_t token) { return iommufd::RestoreHwpt(p(), fd, token); }

  // The VMM of the selftests, kernel A: |memfd| mapped at kGuestIova in a
  // new IOAS, |dev| bound and attached to a dedicated HWPT. Fills the ids.
  struct Vmm {
    int iommufd = -1;
    uint32_t ioas = 0;
    uint32_t dev_id = 0;
    uint32_t hwpt = 0;
  };
  Vmm SetUpVmm(int dev, int memfd, uint64_t size) {
    Vmm v;
    v.iommufd = OpenIommufd();
    EXPECT_GE(v.iommufd, 0);
    v.ioas = static_cast<uint32_t>(IoasAlloc(v.iommufd));
    EXPECT_EQ(MapFile(v.iommufd, v.ioas, memfd, 0, size, kGuestIova), 0);
    const long dev_id = Bind(dev, v.iommufd);
    EXPECT_GT(dev_id, 0);
    v.dev_id = static_cast<uint32_t>(dev_id);
    const long hwpt = HwptAlloc(v.iommufd, v.dev_id, v.ioas);
    EXPECT_GT(hwpt, 0);
    v.hwpt = static_cast<uint32_t>(hwpt);
    EXPECT_EQ(Attach(dev, v.hwpt), v.hwpt);
    return v;
  }
};

}  // namespace khosim::testing

#endif  // KHOSIM_TESTS_DRIVERS_IOMMUFD_FIXTURE_H_

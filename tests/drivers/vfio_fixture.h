// IommufdFixture with VFIO: the kernels are built with vfio-pci and
// CONFIG_VFIO_PCI_LIVEUPDATE, and the helpers speak VFIO's uAPI: the
// device cdev bound to an iommufd, the legacy group and container, the
// config region (bus mastering) and MSI-X triggers. Every helper returns
// what the ioctl returned, or the id or fd it gave back.
#ifndef KHOSIM_TESTS_DRIVERS_VFIO_FIXTURE_H_
#define KHOSIM_TESTS_DRIVERS_VFIO_FIXTURE_H_

#include <fcntl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "drivers/iommufd_fixture.h"
#include "khosim/drivers/vfio.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/uapi/vfio.h"

namespace khosim::testing {

class VfioFixture : public IommufdFixture {
 protected:
  MachineConfig Config() override {
    MachineConfig config = IommufdFixture::Config();
    config.build->modules.push_back(kVfioPciModule);
    config.build->modules.push_back(kVfioPciLiveupdateModule);
    return config;
  }

  // driver_override + drivers_probe to vfio-pci; 0 or the errno.
  int BindVfio(const std::string& name) {
    struct pci_dev* dev = Dev(name);
    if (dev == nullptr) return -ENODEV;
    core().SetDriverOverride(dev, VFIO_PCI_DRIVER_NAME);
    return core().Bind(dev);
  }
  int Index(const std::string& name) {
    if (Dev(name)->driver == nullptr) {
      EXPECT_EQ(BindVfio(name), 0) << name;
    }
    return vfio_pci_device_index(Dev(name));
  }
  std::string CdevPath(const std::string& name) {
    return absl::StrCat("/dev/vfio/devices/vfio", Index(name));
  }
  std::string GroupPath(const std::string& name) { return absl::StrCat("/dev/vfio/", Index(name)); }
  // The cdev of |name| opened (unbound); the fd or the errno.
  int OpenCdev(const std::string& name) { return p().Open(CdevPath(name), O_RDWR); }

  long VfioBind(int dev, int iommufd) {
    struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind), .iommufd = iommufd};
    const long ret = p().Ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind);
    return ret != 0 ? ret : bind.out_devid;
  }
  long VfioAttach(int dev, uint32_t pt_id) {
    struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof(attach), .pt_id = pt_id};
    const long ret = p().Ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
    return ret != 0 ? ret : attach.pt_id;
  }
  long VfioDetach(int dev) {
    struct vfio_device_detach_iommufd_pt detach = {.argsz = sizeof(detach)};
    return p().Ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach);
  }
  // Bus mastering through the config region, as a VMM's guest does.
  long SetMaster(int dev, bool on) {
    uint16_t cmd = 0;
    const loff_t at = static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET + PCI_COMMAND);
    if (const ssize_t n = p().Pread(dev, &cmd, 2, at); n != 2) return n;
    cmd = on ? (cmd | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY) : (cmd & ~PCI_COMMAND_MASTER);
    const ssize_t n = p().Pwrite(dev, &cmd, 2, at);
    return n == 2 ? 0 : n;
  }
  // VFIO_DEVICE_SET_IRQS on MSI-X: vectors [0, fds.size()) to |fds|.
  long SetMsix(int dev, const std::vector<int32_t>& fds, uint32_t start = 0) {
    std::vector<uint8_t> buf(sizeof(struct vfio_irq_set) + fds.size() * sizeof(int32_t));
    auto* set = reinterpret_cast<struct vfio_irq_set*>(buf.data());
    set->argsz = static_cast<uint32_t>(buf.size());
    set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    set->index = VFIO_PCI_MSIX_IRQ_INDEX;
    set->start = start;
    set->count = static_cast<uint32_t>(fds.size());
    std::memcpy(set->data, fds.data(), fds.size() * sizeof(int32_t));
    return p().Ioctl(dev, VFIO_DEVICE_SET_IRQS, set);
  }
  long DisableMsix(int dev) {
    struct vfio_irq_set set = {.argsz = sizeof(set),
                               .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                               .index = VFIO_PCI_MSIX_IRQ_INDEX};
    return p().Ioctl(dev, VFIO_DEVICE_SET_IRQS, &set);
  }
  // The counter of eventfd |fd| (read: it resets), or 0 when nothing was
  // signalled.
  uint64_t ReadEventfd(int fd) {
    uint64_t value = 0;
    return p().Read(fd, &value, sizeof(value)) == sizeof(value) ? value : 0;
  }

  // The VMM of the VFIO selftest in kernel A: |name|'s cdev bound to a
  // new iommufd, |memfd| mapped at kGuestIova, a dedicated HWPT attached,
  // bus mastering on. Fills |dev|.
  Vmm SetUpVfioVmm(const std::string& name, int memfd, uint64_t size, int* dev) {
    *dev = OpenCdev(name);
    EXPECT_GE(*dev, 0);
    Vmm v;
    v.iommufd = OpenIommufd();
    v.ioas = static_cast<uint32_t>(IoasAlloc(v.iommufd));
    EXPECT_EQ(MapFile(v.iommufd, v.ioas, memfd, 0, size, kGuestIova), 0);
    const long dev_id = VfioBind(*dev, v.iommufd);
    EXPECT_GT(dev_id, 0);
    v.dev_id = static_cast<uint32_t>(dev_id);
    const long hwpt = HwptAlloc(v.iommufd, v.dev_id, v.ioas);
    EXPECT_GT(hwpt, 0);
    v.hwpt = static_cast<uint32_t>(hwpt);
    EXPECT_EQ(VfioAttach(*dev, v.hwpt), v.hwpt);
    EXPECT_EQ(SetMaster(*dev, true), 0);
    return v;
  }
};

}  // namespace khosim::testing

#endif  // KHOSIM_TESTS_DRIVERS_VFIO_FIXTURE_H_

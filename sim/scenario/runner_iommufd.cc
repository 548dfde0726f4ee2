// Runner::Impl, iommufd: a device whose `dma` names an iommufd is set up
// the way the upstream selftests' VMM does it, and taken back the same way
// after a kexec.
//
// The device is pci-passthrough's stand-in for the VFIO cdev, or the VFIO
// cdev itself (driver: vfio-pci), which is started (bus mastering) once
// attached.
// Set-up (the boot that opens the device): IOAS_ALLOC, IOAS_MAP_FILE of the
// sealed memfd at the IOVA, the device bound to the iommufd, a HWPT of its
// own, attached, marked for live update with Scenario::HwptToken. The
// session then preserves memfd, iommufd and device in the order the
// scenario lists them (the kernel refuses a wrong order with -ENOENT).
// Reclaim (a boot that retrieved device and iommufd): bind the device to
// the retrieved iommufd, restore its HWPT, and, with the memfd retrieved
// too, map it into a fresh IOAS and HWPT, move the device there, destroy
// the restored HWPT and mark the new one, so a later kexec preserves it.
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "khosim/drivers/iommufd_client.h"
#include "khosim/drivers/vfio.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/uapi/vfio.h"
#include "runner_impl.h"

namespace khosim::scenario {
namespace {

// The device's VFIO_DEVICE_BIND_IOMMUFD and VFIO_DEVICE_ATTACH_IOMMUFD_PT,
// or pci-passthrough's stand-ins: the device id or 0, or the errno.
long Bind(const FileSpec& device, fs::Process& p, int dev, int iommufd) {
  if (device.driver == VFIO_PCI_DRIVER_NAME) {
    struct vfio_device_bind_iommufd cmd = {.argsz = sizeof(cmd), .iommufd = iommufd};
    const long err = p.Ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &cmd);
    return err != 0 ? err : cmd.out_devid;
  }
  struct pci_passthrough_bind_iommufd cmd = {.size = sizeof(cmd), .iommufd = iommufd};
  const long err = p.Ioctl(dev, PCI_PASSTHROUGH_BIND_IOMMUFD, &cmd);
  return err != 0 ? err : cmd.out_devid;
}

long Attach(const FileSpec& device, fs::Process& p, int dev, uint32_t hwpt) {
  if (device.driver == VFIO_PCI_DRIVER_NAME) {
    struct vfio_device_attach_iommufd_pt cmd = {.argsz = sizeof(cmd), .pt_id = hwpt};
    return p.Ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &cmd);
  }
  struct pci_passthrough_attach_pt cmd = {.size = sizeof(cmd), .pt_id = hwpt};
  return p.Ioctl(dev, PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT, &cmd);
}

// A vfio-pci device's guest starts it: bus mastering through the config
// region (pci-passthrough's was set when its node was opened). 0 or errno.
long Start(const FileSpec& device, fs::Process& p, int dev) {
  if (device.driver != VFIO_PCI_DRIVER_NAME) return 0;
  uint16_t cmd = 0;
  const auto at = static_cast<loff_t>(VFIO_PCI_CONFIG_OFFSET + PCI_COMMAND);
  if (const ssize_t n = p.Pread(dev, &cmd, 2, at); n != 2) return n < 0 ? n : -EIO;
  cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
  const ssize_t n = p.Pwrite(dev, &cmd, 2, at);
  return n == 2 ? 0 : (n < 0 ? n : -EIO);
}

}  // namespace

bool Runner::Impl::MapThroughIommufd(int boot, const FileSpec& device) {
  const DmaSpec& dma = *device.dma;
  const Held& dev = held_.at(device.name);
  auto iommufd = held_.find(dma.iommufd);
  if (iommufd == held_.end() || iommufd->second.process != dev.process) {
    return Stop(Outcome::kFailed,
                absl::StrFormat("boot %d: device %s maps through iommufd %s, which process %s "
                                "does not hold in this boot",
                                boot, device.name, dma.iommufd, dev.process->name()));
  }
  fs::Process& p = *dev.process;
  const int fd = iommufd->second.fd;
  const auto failed = [&](const char* step, long err) {
    return Stop(Outcome::kFailed,
                absl::StrFormat("boot %d: device %s through iommufd %s: %s: %s", boot, device.name,
                                dma.iommufd, step, ErrnoName(err)));
  };
  const long ioas = iommufd::IoasAlloc(p, fd);
  if (ioas < 0) return failed("IOMMU_IOAS_ALLOC", ioas);
  const auto ioas_id = static_cast<uint32_t>(ioas);
  const long map = iommufd::MapFile(p, fd, ioas_id, held_.at(dma.file).fd, 0,
                                    s_.FindFile(dma.file)->size, dma.iova);
  if (map != 0) return failed("IOMMU_IOAS_MAP_FILE", map);
  const long dev_id = Bind(device, p, dev.fd, fd);
  if (dev_id < 0) return failed("bind", dev_id);
  const long hwpt = iommufd::HwptAlloc(p, fd, static_cast<uint32_t>(dev_id), ioas_id);
  if (hwpt < 0) return failed("IOMMU_HWPT_ALLOC", hwpt);
  const auto hwpt_id = static_cast<uint32_t>(hwpt);
  if (const long err = Attach(device, p, dev.fd, hwpt_id); err != 0) return failed("attach", err);
  if (const long err = Start(device, p, dev.fd); err != 0) return failed("bus master", err);
  if (const long err = iommufd::MarkPreserve(p, fd, hwpt_id, s_.HwptToken(device)); err != 0) {
    return failed("IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE", err);
  }
  return true;
}

bool Runner::Impl::ReclaimPhase(int boot, const std::vector<RetrievedFile>& files) {
  // Devices retrieved together with the iommufd they went through.
  std::vector<const FileSpec*> todo;
  for (const RetrievedFile& f : files) {
    const FileSpec& spec = *s_.FindFile(f.ref->file);
    if (spec.kind != FileKind::kDevice || !spec.dma || spec.dma->iommufd.empty()) continue;
    for (const RetrievedFile& g : files) {
      if (g.ref->file == spec.dma->iommufd && g.process == f.process) todo.push_back(&spec);
    }
  }
  if (todo.empty()) return true;
  Phase phase(*this, boot, "reclaim", 0);
  for (const FileSpec* device : todo) {
    const DmaSpec& dma = *device->dma;
    const Held& dev = held_.at(device->name);
    fs::Process& p = *dev.process;
    const int fd = held_.at(dma.iommufd).fd;
    const uint64_t token = s_.HwptToken(*device);
    const auto failed = [&](const char* step, long err) {
      return Stop(Outcome::kFailed,
                  absl::StrFormat("boot %d: device %s, retrieved iommufd %s: %s: %s", boot,
                                  device->name, dma.iommufd, step, ErrnoName(err)));
    };
    const long dev_id = Bind(*device, p, dev.fd, fd);
    if (dev_id < 0) return failed("bind", dev_id);
    const long restored = iommufd::RestoreHwpt(p, fd, token);
    if (restored < 0) return failed("IOMMU_HWPT_LIVEUPDATE_RESTORE", restored);
    auto memfd = held_.find(dma.file);
    if (memfd == held_.end() || memfd->second.process != &p) continue;
    const long ioas = iommufd::IoasAlloc(p, fd);
    if (ioas < 0) return failed("IOMMU_IOAS_ALLOC", ioas);
    const auto ioas_id = static_cast<uint32_t>(ioas);
    const long map = iommufd::MapFile(p, fd, ioas_id, memfd->second.fd, 0,
                                      s_.FindFile(dma.file)->size, dma.iova);
    if (map != 0) return failed("IOMMU_IOAS_MAP_FILE", map);
    const long hwpt = iommufd::HwptAlloc(p, fd, static_cast<uint32_t>(dev_id), ioas_id);
    if (hwpt < 0) return failed("IOMMU_HWPT_ALLOC", hwpt);
    const auto hwpt_id = static_cast<uint32_t>(hwpt);
    if (const long err = Attach(*device, p, dev.fd, hwpt_id); err != 0) {
      return failed("attach", err);
    }
    if (const long err = iommufd::Destroy(p, fd, static_cast<uint32_t>(restored)); err != 0) {
      return failed("IOMMU_DESTROY of the restored HWPT", err);
    }
    if (const long err = iommufd::MarkPreserve(p, fd, hwpt_id, token); err != 0) {
      return failed("IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE", err);
    }
  }
  return true;
}

}  // namespace khosim::scenario

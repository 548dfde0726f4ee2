// Runner::Impl, iommufd: a device whose `dma` names an iommufd is set up
// the way the upstream selftests' VMM does it, and taken back the same way
// after a kexec.
//
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
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/uapi/iommufd.h"
#include "runner_impl.h"

namespace khosim::scenario {
namespace {

// One VMM step on the iommufd or the device: what the ioctl returned, and
// an id it gave back.
struct Step {
  long err = 0;
  uint32_t id = 0;
};

Step IoasAlloc(fs::Process& p, int iommufd) {
  struct iommu_ioas_alloc cmd = {.size = sizeof(cmd)};
  const long err = p.Ioctl(iommufd, IOMMU_IOAS_ALLOC, &cmd);
  return {err, cmd.out_ioas_id};
}

Step MapFile(fs::Process& p, int iommufd, uint32_t ioas, int memfd, uint64_t size, uint64_t iova) {
  struct iommu_ioas_map_file cmd = {
      .size = sizeof(cmd),
      .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
      .ioas_id = ioas,
      .fd = memfd,
      .start = 0,
      .length = size,
      .iova = iova};
  return {p.Ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &cmd), 0};
}

Step Bind(fs::Process& p, int dev, int iommufd) {
  struct pci_passthrough_bind_iommufd cmd = {.size = sizeof(cmd), .iommufd = iommufd};
  const long err = p.Ioctl(dev, PCI_PASSTHROUGH_BIND_IOMMUFD, &cmd);
  return {err, cmd.out_devid};
}

Step HwptAlloc(fs::Process& p, int iommufd, uint32_t dev_id, uint32_t ioas) {
  struct iommu_hwpt_alloc cmd = {.size = sizeof(cmd), .dev_id = dev_id, .pt_id = ioas};
  const long err = p.Ioctl(iommufd, IOMMU_HWPT_ALLOC, &cmd);
  return {err, cmd.out_hwpt_id};
}

Step Attach(fs::Process& p, int dev, uint32_t hwpt) {
  struct pci_passthrough_attach_pt cmd = {.size = sizeof(cmd), .pt_id = hwpt};
  return {p.Ioctl(dev, PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT, &cmd), cmd.pt_id};
}

Step Mark(fs::Process& p, int iommufd, uint32_t hwpt, uint64_t token) {
  struct iommu_hwpt_liveupdate_mark_preserve cmd = {
      .size = sizeof(cmd), .hwpt_id = hwpt, .hwpt_token = token};
  return {p.Ioctl(iommufd, IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, &cmd), 0};
}

Step Restore(fs::Process& p, int iommufd, uint64_t token) {
  struct iommu_hwpt_liveupdate_restore cmd = {.size = sizeof(cmd), .hwpt_token = token};
  const long err = p.Ioctl(iommufd, IOMMU_HWPT_LIVEUPDATE_RESTORE, &cmd);
  return {err, cmd.out_hwpt_id};
}

Step Destroy(fs::Process& p, int iommufd, uint32_t id) {
  struct iommu_destroy cmd = {.size = sizeof(cmd), .id = id};
  return {p.Ioctl(iommufd, IOMMU_DESTROY, &cmd), 0};
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
  const Step ioas = IoasAlloc(p, fd);
  if (ioas.err != 0) return failed("IOMMU_IOAS_ALLOC", ioas.err);
  const Step map =
      MapFile(p, fd, ioas.id, held_.at(dma.file).fd, s_.FindFile(dma.file)->size, dma.iova);
  if (map.err != 0) return failed("IOMMU_IOAS_MAP_FILE", map.err);
  const Step bound = Bind(p, dev.fd, fd);
  if (bound.err != 0) return failed("bind", bound.err);
  const Step hwpt = HwptAlloc(p, fd, bound.id, ioas.id);
  if (hwpt.err != 0) return failed("IOMMU_HWPT_ALLOC", hwpt.err);
  if (const Step s = Attach(p, dev.fd, hwpt.id); s.err != 0) return failed("attach", s.err);
  if (const Step s = Mark(p, fd, hwpt.id, s_.HwptToken(device)); s.err != 0) {
    return failed("IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE", s.err);
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
    const Step bound = Bind(p, dev.fd, fd);
    if (bound.err != 0) return failed("bind", bound.err);
    const Step restored = Restore(p, fd, token);
    if (restored.err != 0) return failed("IOMMU_HWPT_LIVEUPDATE_RESTORE", restored.err);
    auto memfd = held_.find(dma.file);
    if (memfd == held_.end() || memfd->second.process != &p) continue;
    const Step ioas = IoasAlloc(p, fd);
    if (ioas.err != 0) return failed("IOMMU_IOAS_ALLOC", ioas.err);
    const Step map =
        MapFile(p, fd, ioas.id, memfd->second.fd, s_.FindFile(dma.file)->size, dma.iova);
    if (map.err != 0) return failed("IOMMU_IOAS_MAP_FILE", map.err);
    const Step hwpt = HwptAlloc(p, fd, bound.id, ioas.id);
    if (hwpt.err != 0) return failed("IOMMU_HWPT_ALLOC", hwpt.err);
    if (const Step s = Attach(p, dev.fd, hwpt.id); s.err != 0) return failed("attach", s.err);
    if (const Step s = Destroy(p, fd, restored.id); s.err != 0) {
      return failed("IOMMU_DESTROY of the restored HWPT", s.err);
    }
    if (const Step s = Mark(p, fd, hwpt.id, token); s.err != 0) {
      return failed("IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE", s.err);
    }
  }
  return true;
}

}  // namespace khosim::scenario

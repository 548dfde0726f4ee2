// khosim/drivers/iommufd_client.h: the VMM's iommufd calls.
#include <fcntl.h>

#include "khosim/drivers/iommufd_client.h"
#include "khosim/uapi/iommufd.h"

namespace khosim::iommufd {

long OpenIommufd(fs::Process& p) { return p.Open("/dev/iommu", O_RDWR); }

long IoasAlloc(fs::Process& p, int iommufd) {
  struct iommu_ioas_alloc cmd = {.size = sizeof(cmd)};
  const long ret = p.Ioctl(iommufd, IOMMU_IOAS_ALLOC, &cmd);
  return ret != 0 ? ret : cmd.out_ioas_id;
}

long MapFile(fs::Process& p, int iommufd, uint32_t ioas, int memfd, uint64_t start, uint64_t length,
             uint64_t iova) {
  struct iommu_ioas_map_file cmd = {
      .size = sizeof(cmd),
      .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
      .ioas_id = ioas,
      .fd = memfd,
      .start = start,
      .length = length,
      .iova = iova};
  return p.Ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &cmd);
}

long Unmap(fs::Process& p, int iommufd, uint32_t ioas, uint64_t iova, uint64_t length) {
  struct iommu_ioas_unmap cmd = {
      .size = sizeof(cmd), .ioas_id = ioas, .iova = iova, .length = length};
  return p.Ioctl(iommufd, IOMMU_IOAS_UNMAP, &cmd);
}

long HwptAlloc(fs::Process& p, int iommufd, uint32_t dev_id, uint32_t ioas) {
  struct iommu_hwpt_alloc cmd = {.size = sizeof(cmd), .dev_id = dev_id, .pt_id = ioas};
  const long ret = p.Ioctl(iommufd, IOMMU_HWPT_ALLOC, &cmd);
  return ret != 0 ? ret : cmd.out_hwpt_id;
}

long MarkPreserve(fs::Process& p, int iommufd, uint32_t hwpt, uint64_t token) {
  struct iommu_hwpt_liveupdate_mark_preserve cmd = {
      .size = sizeof(cmd), .hwpt_id = hwpt, .hwpt_token = token};
  return p.Ioctl(iommufd, IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, &cmd);
}

long RestoreHwpt(fs::Process& p, int iommufd, uint64_t token) {
  struct iommu_hwpt_liveupdate_restore cmd = {.size = sizeof(cmd), .hwpt_token = token};
  const long ret = p.Ioctl(iommufd, IOMMU_HWPT_LIVEUPDATE_RESTORE, &cmd);
  return ret != 0 ? ret : cmd.out_hwpt_id;
}

long Destroy(fs::Process& p, int iommufd, uint32_t id) {
  struct iommu_destroy cmd = {.size = sizeof(cmd), .id = id};
  return p.Ioctl(iommufd, IOMMU_DESTROY, &cmd);
}

}  // namespace khosim::iommufd

// Userspace's side of /dev/iommu: typed wrappers over the iommufd ioctls
// (khosim/uapi/iommufd.h) that a VMM makes, as luo/client.h is for
// /dev/liveupdate. Each returns what the syscall returns: an fd or an
// object id (> 0), 0, or a negative errno. Tests that probe the ioctl
// rules themselves call Process::Ioctl directly.
#ifndef KHOSIM_DRIVERS_IOMMUFD_CLIENT_H_
#define KHOSIM_DRIVERS_IOMMUFD_CLIENT_H_

#include <cstdint>

#include "khosim/fs/vfs.h"

namespace khosim::iommufd {

long OpenIommufd(fs::Process& p);
// IOMMU_IOAS_ALLOC: the IOAS id.
long IoasAlloc(fs::Process& p, int iommufd);
// IOMMU_IOAS_MAP_FILE of [start, start + length) of |memfd| at the fixed
// |iova|, readable and writeable.
long MapFile(fs::Process& p, int iommufd, uint32_t ioas, int memfd, uint64_t start, uint64_t length,
             uint64_t iova);
long Unmap(fs::Process& p, int iommufd, uint32_t ioas, uint64_t iova, uint64_t length);
// IOMMU_HWPT_ALLOC for device |dev_id| over IOAS |ioas|: the HWPT id.
long HwptAlloc(fs::Process& p, int iommufd, uint32_t dev_id, uint32_t ioas);
long MarkPreserve(fs::Process& p, int iommufd, uint32_t hwpt, uint64_t token);
// IOMMU_HWPT_LIVEUPDATE_RESTORE: the restored HWPT's id.
long RestoreHwpt(fs::Process& p, int iommufd, uint64_t token);
long Destroy(fs::Process& p, int iommufd, uint32_t id);

}  // namespace khosim::iommufd

#endif  // KHOSIM_DRIVERS_IOMMUFD_CLIENT_H_

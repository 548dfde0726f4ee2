// iommufd's handover record (<linux/kho/abi/iommufd.h>, "iommufd: Add live
// update support", newest tree): what a preserved /dev/iommu file's
// luo_file_ser.data points at. One entry per HWPT marked with
// IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, naming the IOMMU core's preserved
// record of its domain (an iommu_domain_ser in the FLB "iommu-liveupdate"
// domain array) and the user's token.
//
//   data -> struct iommufd_ser (kho_alloc_preserve, 8 + 24 * nr_hwpts bytes)
//
// reclaimed is 0 from kernel A; the next kernel sets it when userspace
// restores the HWPT.
#ifndef KHOSIM_LINUX_KHO_ABI_IOMMUFD_H_
#define KHOSIM_LINUX_KHO_ABI_IOMMUFD_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

#define IOMMUFD_LUO_COMPATIBLE "iommufd-v1"

struct iommufd_hwpt_ser {
  u64 domain_data;  // physical address of the domain's iommu_domain_ser
  u64 token;        // the user's hwpt_token
  u8 reclaimed;
  u8 padding[7];
} __packed;

struct iommufd_ser {
  u64 nr_hwpts;
  struct iommufd_hwpt_ser hwpt_array[];
} __packed;

static_assert(sizeof(struct iommufd_hwpt_ser) == 24);
static_assert(offsetof(struct iommufd_hwpt_ser, reclaimed) == 16);
static_assert(offsetof(struct iommufd_ser, hwpt_array) == 8);

#endif  // KHOSIM_LINUX_KHO_ABI_IOMMUFD_H_

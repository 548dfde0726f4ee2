// The /dev/iommu userspace API (upstream include/uapi/linux/iommufd.h, the
// subset khosim models, plus the live update command of "iommufd: Add live
// update support"): ioctl numbers and argument structs. Every struct begins
// with `size` (the caller's sizeof) and follows the extensible-struct rules:
// a size below the command's minimum is -EINVAL, extra bytes must be zero
// (-E2BIG), and the reply is copied back up to min(size, sizeof).
//
// IOMMU_HWPT_LIVEUPDATE_RESTORE is khosim's, not upstream's: upstream's
// newest posting cannot retrieve an iommufd yet (retrieve -EOPNOTSUPP), and
// its 2025 API had IOMMU_HWPT_LU_RESTORE for the same step. It sits outside
// upstream's command range so that it can never alias a future command.
#ifndef KHOSIM_UAPI_IOMMUFD_H_
#define KHOSIM_UAPI_IOMMUFD_H_

#include <linux/ioctl.h>

#include <cstddef>
#include <cstdint>

#define IOMMUFD_TYPE (';')

enum {
  IOMMUFD_CMD_BASE = 0x80,
  IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
  IOMMUFD_CMD_IOAS_ALLOC = 0x81,
  IOMMUFD_CMD_IOAS_MAP = 0x85,
  IOMMUFD_CMD_IOAS_UNMAP = 0x86,
  IOMMUFD_CMD_HWPT_ALLOC = 0x89,
  IOMMUFD_CMD_IOAS_MAP_FILE = 0x8f,
  IOMMUFD_CMD_HWPT_LIVEUPDATE_MARK_PRESERVE = 0x95,
  IOMMUFD_CMD_KHOSIM_HWPT_LIVEUPDATE_RESTORE = 0xc0,
};

// Destroys object |id| (an IOAS or a HWPT). 0; -ENOENT (no such object),
// -EINVAL (a device: unbind it through its driver), -EBUSY (still used: an
// IOAS with HWPTs, a HWPT with attached devices or marked for live update).
struct iommu_destroy {
  uint32_t size;
  uint32_t id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

// A new, empty I/O address space. flags must be 0 (-EOPNOTSUPP).
struct iommu_ioas_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

enum iommufd_ioas_map_flags {
  IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
  IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
  IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

// Maps user memory. The simulator has no process page tables: the range
// [user_va, user_va + length) stands for anonymous memory, which the map
// allocates and pins (fresh pages, what faulting it in would give).
struct iommu_ioas_map {
  uint32_t size;
  uint32_t flags;
  uint32_t ioas_id;
  uint32_t __reserved;
  uint64_t user_va;
  uint64_t length;
  uint64_t iova;  // in with FIXED_IOVA, out otherwise
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

// Maps [start, start + length) of a memfd, pinning its folios. The seals
// the file has now are what live update later checks.
struct iommu_ioas_map_file {
  uint32_t size;
  uint32_t flags;
  uint32_t ioas_id;
  int32_t fd;
  uint64_t start;
  uint64_t length;
  uint64_t iova;  // in with FIXED_IOVA, out otherwise
};
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE)

// Unmaps every mapping inside [iova, iova + length) (iova 0 and length
// UINT64_MAX: all); length returns the bytes unmapped.
struct iommu_ioas_unmap {
  uint32_t size;
  uint32_t ioas_id;
  uint64_t iova;
  uint64_t length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

enum iommu_hwpt_data_type {
  IOMMU_HWPT_DATA_NONE = 0,
};

// A paging HWPT for device |dev_id| holding every mapping of IOAS |pt_id|
// (and every later one). flags, data_type and fault_id must be 0
// (-EOPNOTSUPP).
struct iommu_hwpt_alloc {
  uint32_t size;
  uint32_t flags;
  uint32_t dev_id;
  uint32_t pt_id;
  uint32_t out_hwpt_id;
  uint32_t __reserved;
  uint32_t data_type;
  uint32_t data_len;
  uint64_t data_uptr;
  uint32_t fault_id;
  uint32_t __reserved2;
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

// Marks paging HWPT |hwpt_id| to be preserved, under |hwpt_token|, when the
// iommufd is preserved. There is no unmark. 0; -ENOENT (not a paging
// HWPT), -EADDRINUSE (a marked HWPT of this iommufd has the token),
// -EOPNOTSUPP (a HWPT restored from the previous kernel: move the device
// to a fresh HWPT before the next kexec).
struct iommu_hwpt_liveupdate_mark_preserve {
  uint32_t size;
  uint32_t hwpt_id;
  uint64_t hwpt_token;
};
#define IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE \
  _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_LIVEUPDATE_MARK_PRESERVE)

// khosim: on an iommufd retrieved from LUO, turns the preserved HWPT of
// |hwpt_token| into a HWPT object again (its domain is the one the IOMMU
// core restored, still translating for its devices). flags must be 0.
// 0; -ENOENT (no such token in the record, or the IOMMU core did not
// restore its domain), -EALREADY (restored already), -ENODEV (a device
// attached to the domain is not bound to this iommufd yet), -EINVAL (not
// a retrieved iommufd).
struct iommu_hwpt_liveupdate_restore {
  uint32_t size;
  uint32_t flags;
  uint64_t hwpt_token;
  uint32_t out_hwpt_id;
  uint32_t __reserved;
};
#define IOMMU_HWPT_LIVEUPDATE_RESTORE _IO(IOMMUFD_TYPE, IOMMUFD_CMD_KHOSIM_HWPT_LIVEUPDATE_RESTORE)

static_assert(sizeof(struct iommu_ioas_map) == 40);
static_assert(sizeof(struct iommu_ioas_map_file) == 40);
static_assert(sizeof(struct iommu_ioas_unmap) == 24);
static_assert(sizeof(struct iommu_hwpt_alloc) == 48);
static_assert(sizeof(struct iommu_hwpt_liveupdate_mark_preserve) == 16);
static_assert(IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE == 0x3b95);

#endif  // KHOSIM_UAPI_IOMMUFD_H_

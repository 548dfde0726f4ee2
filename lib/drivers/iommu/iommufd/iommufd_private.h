// iommufd's objects and the calls its files share (see
// khosim/drivers/iommufd.h for the behaviour).
//
// Ownership: an iommufd_ctx belongs to its struct file (private_data) and
// owns every object; a driver's iommufd_device_bind takes a reference on
// the file, so the context outlives its bound devices. Objects hold kernel
// resources (pinned folios, file references, IOMMU domains) which the
// release paths give back; f_free (the kernel died with the file open)
// frees host memory only.
#ifndef KHOSIM_LIB_DRIVERS_IOMMU_IOMMUFD_IOMMUFD_PRIVATE_H_
#define KHOSIM_LIB_DRIVERS_IOMMU_IOMMUFD_IOMMUFD_PRIVATE_H_

#include <map>
#include <memory>
#include <vector>

#include "khosim/linux/fs.h"
#include "khosim/linux/iommu.h"
#include "khosim/linux/iommufd.h"
#include "khosim/linux/kho/abi/iommufd.h"
#include "khosim/linux/mm_types.h"
#include "khosim/linux/types.h"

enum iommufd_object_type {
  IOMMUFD_OBJ_IOAS,
  IOMMUFD_OBJ_HWPT_PAGING,
  IOMMUFD_OBJ_DEVICE,
};

struct iommufd_object {
  explicit iommufd_object(iommufd_object_type t) : type(t) {}
  virtual ~iommufd_object() = default;
  const iommufd_object_type type;
  u32 id = 0;
};

// One mapping of an IOAS: |length| bytes at |iova|, backed page by page by
// |folios| (order-0, pinned).
struct iopt_area {
  u64 iova = 0;
  u64 length = 0;
  int prot = 0;                 // IOMMU_READ | IOMMU_WRITE
  struct file* file = nullptr;  // IOAS_MAP_FILE: the memfd (a reference)
  u64 start = 0;                // offset into the file
  unsigned int seals = 0;       // the file's seals when it was mapped
  bool anon = false;            // IOAS_MAP: the folios are the area's own
  std::vector<struct folio*> folios;
};

struct iommufd_hwpt_paging;

struct iommufd_ioas : iommufd_object {
  iommufd_ioas() : iommufd_object(IOMMUFD_OBJ_IOAS) {}
  std::map<u64, iopt_area> areas;  // by IOVA
  std::vector<iommufd_hwpt_paging*> hwpts;
  // Set while a preserved iommufd carries one of its HWPTs: the mappings
  // must not change before the kexec.
  bool liveupdate_immutable = false;
};

struct iommufd_hwpt_paging : iommufd_object {
  iommufd_hwpt_paging() : iommufd_object(IOMMUFD_OBJ_HWPT_PAGING) {}
  struct iommu_domain* domain = nullptr;
  iommufd_ioas* ioas = nullptr;  // NULL: restored from the previous kernel
  bool auto_domain = false;      // made by an attach to an IOAS
  unsigned int nr_devices = 0;   // attached
  bool liveupdate_marked = false;
  u64 liveupdate_token = 0;
  bool liveupdate_preserved = false;  // its domain is in the outgoing FLB
};

struct iommufd_device : iommufd_object {
  iommufd_device() : iommufd_object(IOMMUFD_OBJ_DEVICE) {}
  struct iommufd_ctx* ictx = nullptr;
  struct device* dev = nullptr;
  iommufd_hwpt_paging* hwpt = nullptr;  // attached to
  void* owner = nullptr;                // the DMA owner it claimed with
  bool preserved = false;               // kernel A: in the outgoing FLB
  // Kernel B: came in preserved; until its HWPT is restored it translates
  // through the restored domain without a HWPT object.
  phys_addr_t restored_domain_ser = 0;
};

// A preserved HWPT of a retrieved iommufd.
struct iommufd_incoming_hwpt {
  u64 token = 0;
  phys_addr_t domain_data = 0;
  struct iommufd_hwpt_ser* ser = nullptr;   // in the restored record; NULL after finish
  bool reclaimed = false;                   // IOMMU_HWPT_LIVEUPDATE_RESTORE done
  iommufd_hwpt_paging* restored = nullptr;  // its object, until destroyed
};

struct iommufd_ctx {
  struct file* file = nullptr;
  // The DMA owner its devices are claimed for: upstream uses the
  // context's kernel address; here a kernel-looking address from the
  // machine's seeded generator, so runs repeat exactly.
  u64 owner_token = 0;
  u32 next_id = 1;
  std::map<u32, std::unique_ptr<iommufd_object>> objects;
  // Kernel B, a file retrieved from LUO: its record (restored, freed at
  // finish) and its preserved HWPTs.
  struct iommufd_ser* incoming = nullptr;
  std::vector<iommufd_incoming_hwpt> incoming_hwpts;
};

// main.cc
u32 iommufd_object_add(struct iommufd_ctx* ictx, std::unique_ptr<iommufd_object> obj);
iommufd_object* iommufd_get_object(struct iommufd_ctx* ictx, u32 id, iommufd_object_type type);
void iommufd_object_remove(struct iommufd_ctx* ictx, u32 id);
struct iommufd_ctx* iommufd_new_ctx(void);
// The file of a context, anon_inode:[iommufd]; ERR_PTR.
struct file* iommufd_new_file(struct iommufd_ctx* ictx, const char* name);
bool iommufd_retrieve_supported(void);

// io_pagetable.cc: the IOAS commands, and a HWPT's domain kept in step
// with its IOAS.
long iommufd_ioas_alloc(struct iommufd_ctx* ictx, void* cmd);
long iommufd_ioas_map(struct iommufd_ctx* ictx, void* cmd);
long iommufd_ioas_map_file(struct iommufd_ctx* ictx, void* cmd);
long iommufd_ioas_unmap(struct iommufd_ctx* ictx, void* cmd);
// Maps every area of |ioas| into |domain|; 0 or the IOMMU core's errno
// (nothing left mapped).
int iopt_fill_domain(iommufd_ioas* ioas, struct iommu_domain* domain);
void iopt_area_release(iopt_area* area);
void iopt_area_free_host(iopt_area* area);

// device.cc: HWPTs and devices.
long iommufd_hwpt_alloc(struct iommufd_ctx* ictx, void* cmd);
// A new paging HWPT of |ioas| for |idev|'s IOMMU, filled; ERR_PTR.
iommufd_hwpt_paging* iommufd_hwpt_paging_alloc(struct iommufd_ctx* ictx, iommufd_ioas* ioas,
                                               struct iommufd_device* idev, bool auto_domain);
void iommufd_hwpt_destroy(struct iommufd_ctx* ictx, iommufd_hwpt_paging* hwpt);

// liveupdate.cc
long iommufd_hwpt_liveupdate_mark_preserve(struct iommufd_ctx* ictx, void* cmd);
long iommufd_hwpt_liveupdate_restore(struct iommufd_ctx* ictx, void* cmd);
// Kernel B: |idev| is a preserved device binding to |ictx|: 0 if ictx is
// the retrieved iommufd holding its domain, else -EPERM.
int iommufd_liveupdate_bind_check(struct iommufd_ctx* ictx, phys_addr_t domain_ser);
int iommufd_liveupdate_register(void);
void iommufd_liveupdate_unregister(void);
bool iommufd_is_file(const struct file* file);

#endif  // KHOSIM_LIB_DRIVERS_IOMMU_IOMMUFD_IOMMUFD_PRIVATE_H_

// The IOMMU core's handover record (<linux/kho/abi/iommu.h>, "iommu: Add
// live update state preservation" v5, with the Intel parts and the
// device's dma_owner_token of the newest tree): the data handle of the FLB
// "iommu-liveupdate" points at one struct iommu_flb_ser, and that at three
// chains of one-page arrays.
//
//   FLB data -> iommu_flb_ser (kho_alloc_preserve)
//                 iommu_array_phys        -> [hdr | iommu_hw_ser ...]     -> next page ...
//                 iommu_domain_array_phys -> [hdr | iommu_domain_ser ...] -> ...
//                 device_array_phys       -> [hdr | iommu_device_ser ...] -> ...
//
// Each array page starts with iommu_array_hdr_ser {next page, objects used
// in this page}; objects follow back to back, (PAGE_SIZE - 16) / size of
// them per page. An object's header counts references (a hardware unit:
// one per preserved device behind it) and carries flags: DELETED marks a
// slot whose object was unpreserved (slots are never reused), INCOMING is
// set by the next kernel on objects it adopted.
//
// Physical addresses name objects across the kexec: a device's
// domain_phys / iommu_phys point at its domain's and its unit's slots.
// The Intel unit record lists the root table and, in a bitmap indexed by
// bus * 2 + (devfn >> 7), every context table page it preserved.
//
// restored_domain is written by the next kernel only (a kernel pointer in
// preserved memory, as upstream has it); kernel A leaves it 0. This
// implementation never reads it back: which domains kernel B restored is
// kept in kernel B's own memory, so a corrupt value cannot be followed.
#ifndef KHOSIM_LINUX_KHO_ABI_IOMMU_H_
#define KHOSIM_LINUX_KHO_ABI_IOMMU_H_

#include <cstddef>

#include "khosim/linux/compiler.h"
#include "khosim/linux/types.h"

#define IOMMU_LUO_FLB_COMPATIBLE "iommu-liveupdate"
#define IOMMU_LUO_FLB_VERSION 1

#define IOMMU_SER_FLAG_DELETED (1U << 0)
#define IOMMU_SER_FLAG_INCOMING (1U << 1)

enum iommu_lu_type {
  IOMMU_INVALID = 0,
  IOMMU_INTEL = 1,
  IOMMU_ARM_SMMUV3 = 2,
};

struct iommu_flb_ser {
  u64 version;
  u64 iommu_array_phys;
  u64 iommu_domain_array_phys;
  u64 device_array_phys;
} __packed;

struct iommu_array_hdr_ser {
  u64 next_array_phys;  // 0: last page of the chain
  u64 nr_objects;       // slots used in this page, DELETED ones included
} __packed;

struct iommu_hdr_ser {
  u32 ref_count;
  u32 flags;
} __packed;

struct iommu_domain_ser {
  struct iommu_hdr_ser hdr;
  u64 top_table_phys;  // the top page-table page
  u64 top_level;       // generic page-table level of the top (0 = leaf): 2, 3 or 4
  u32 vasz;            // IOVA bits the tables cover (39, 48, 57)
  u8 sign_extend;      // first-stage formats only; 0 here
  u8 padding[3];
  u64 restored_domain;  // struct iommu_domain * of the next kernel
} __packed;

struct iommu_dev_map_ser {
  u64 attachment_id;  // VT-d: the domain id on the unit
  u64 domain_phys;    // the device's iommu_domain_ser slot
  u64 iommu_phys;     // the unit's iommu_hw_ser slot
} __packed;

struct iommu_device_intel_ser {
  u8 restored;
  u8 pad[7];
  u64 pasid_table;  // scalable mode only; 0 in legacy mode
  u64 max_pasid;
} __packed;

struct iommu_device_ser {
  struct iommu_hdr_ser hdr;
  u32 devid;  // PCI: (bus << 8) | devfn
  u32 pci_domain_nr;
  u64 dma_owner_token;  // who may claim the device's DMA ownership in the next kernel
  struct iommu_dev_map_ser domain_iommu_ser;
  union {
    struct iommu_device_intel_ser intel;
  };
} __packed;

struct iommu_intel_ser {
  u8 restored;
  u8 pad[7];
  u64 phys_addr;   // the unit's register base
  u64 root_table;  // physical address of the root table
  u64 context_tables_bitmap[8];
} __packed;

struct iommu_hw_ser {
  struct iommu_hdr_ser hdr;
  u64 token;  // VT-d: the register base
  u64 type;   // enum iommu_lu_type
  union {
    struct iommu_intel_ser intel;
  };
} __packed;

static_assert(sizeof(struct iommu_flb_ser) == 32);
static_assert(sizeof(struct iommu_array_hdr_ser) == 16);
static_assert(sizeof(struct iommu_hdr_ser) == 8);
static_assert(sizeof(struct iommu_domain_ser) == 40);
static_assert(offsetof(struct iommu_domain_ser, vasz) == 24);
static_assert(offsetof(struct iommu_domain_ser, restored_domain) == 32);
static_assert(sizeof(struct iommu_dev_map_ser) == 24);
static_assert(sizeof(struct iommu_device_ser) == 72);
static_assert(offsetof(struct iommu_device_ser, dma_owner_token) == 16);
static_assert(offsetof(struct iommu_device_ser, domain_iommu_ser) == 24);
static_assert(sizeof(struct iommu_intel_ser) == 88);
static_assert(sizeof(struct iommu_hw_ser) == 112);

#endif  // KHOSIM_LINUX_KHO_ABI_IOMMU_H_

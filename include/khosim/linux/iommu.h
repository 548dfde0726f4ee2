// Kernel-face IOMMU API (<linux/iommu.h>): paging domains and their
// mappings, attaching devices, DMA ownership, and the live update calls of
// "iommu: Add live update state preservation" (CONFIG_IOMMU_LIVEUPDATE).
// Calls resolve to the running kernel's IOMMU core (khosim/drivers/iommu.h).
//
// Groups: a PCI function is alone in its group unless another function of
// the same slot (not a VF) shares its bus; the API acts on the device's
// group, as upstream's does, and attaching or preserving a device of a
// larger group is refused.
//
// Default domain: a probed device starts blocked (no context entry: every
// DMA faults) until a domain is attached. Kernel B differs for a device the
// previous kernel preserved: at probe it is attached to its restored
// domain, its group owned by the preserved dma_owner_token.
//
// Context: process context, one caller at a time (the machine's thread).
#ifndef KHOSIM_LINUX_IOMMU_H_
#define KHOSIM_LINUX_IOMMU_H_

#include <cstddef>

#include "khosim/linux/device.h"
#include "khosim/linux/gfp.h"
#include "khosim/linux/types.h"

#define IOMMU_READ (1 << 0)
#define IOMMU_WRITE (1 << 1)

#define __IOMMU_DOMAIN_PAGING (1U << 0)
#define IOMMU_DOMAIN_BLOCKED (0U)
#define IOMMU_DOMAIN_UNMANAGED (__IOMMU_DOMAIN_PAGING)

typedef u64 dma_addr_t;

struct iommu_domain_ser;
struct iommu_device_ser;

struct iommu_domain {
  unsigned type;
  u64 pgsize_bitmap;  // leaf sizes the tables support (4 KiB, 2 MiB, 1 GiB)
  struct {
    dma_addr_t aperture_start;
    dma_addr_t aperture_end;  // last IOVA the tables cover
  } geometry;
  // This kernel's preserved record of the domain, NULL unless preserved.
  struct iommu_domain_ser* preserved_state;
};

// ERR_PTR(-ENODEV) when no IOMMU translates |dev| (not PCI, no unit, not
// probed), ERR_PTR(-ENOMEM).
struct iommu_domain* iommu_paging_domain_alloc(struct device* dev);
// WARNs (and leaks nothing) if devices are still attached; a preserved
// domain is unpreserved first.
void iommu_domain_free(struct iommu_domain* domain);

// Maps [iova, iova + size) to [paddr, ...) with IOMMU_READ / IOMMU_WRITE.
// 0; -EINVAL (size 0, iova, paddr or size not 4 KiB aligned, no permission
// bit, beyond the aperture), -EEXIST (part of the range is already
// mapped; nothing is left mapped), -ENOMEM (a table page could not be
// allocated), -EBUSY (the domain is preserved: its tables are frozen until
// the kexec, as iommufd makes a preserved IOAS immutable).
int iommu_map(struct iommu_domain* domain, unsigned long iova, phys_addr_t paddr, size_t size,
              int prot, gfp_t gfp);
// Unmaps and invalidates the IOTLB of every unit the domain is attached
// to; returns the bytes that were mapped (0 for a preserved domain, with a
// WARN). A 2 MiB or 1 GiB leaf is unmapped whole.
size_t iommu_unmap(struct iommu_domain* domain, unsigned long iova, size_t size);
// 0 if |iova| is not mapped.
phys_addr_t iommu_iova_to_phys(struct iommu_domain* domain, dma_addr_t iova);

// 0; -ENODEV (no IOMMU for |dev|), -EINVAL (the group has more than one
// device), -EBUSY (attached to another domain: detach first).
int iommu_attach_device(struct iommu_domain* domain, struct device* dev);
void iommu_detach_device(struct iommu_domain* domain, struct device* dev);
struct iommu_domain* iommu_get_domain_for_dev(struct device* dev);

// DMA ownership of the device's group by |owner| (a user such as iommufd
// or VFIO). 0; -EINVAL (owner NULL), -ENODEV, -EPERM (owned by another
// owner). Nested claims by one owner count.
int iommu_device_claim_dma_owner(struct device* dev, void* owner);
void iommu_device_release_dma_owner(struct device* dev);

// --- Live update (kernel A) --------------------------------------------
// The IOMMU FLB "iommu-liveupdate" must be registered on the file handler
// whose files carry domains and devices (iommufd, VFIO): its outgoing
// state exists while such a file is preserved. 0 or the errno of
// liveupdate_register_flb.
struct liveupdate_file_handler;
int iommu_liveupdate_register_flb(struct liveupdate_file_handler* handler);
void iommu_liveupdate_unregister_flb(struct liveupdate_file_handler* handler);

// Preserves the domain's page-table pages and records it. 0; -EOPNOTSUPP
// (not a paging domain of this core), -EBUSY (already preserved),
// -ENOENT (no outgoing IOMMU FLB: no linked file is being preserved),
// -ENOMEM / the KHO errno of a table page.
int iommu_preserve_domain(struct iommu_domain* domain);
// Drops the record (the slot becomes DELETED) and unpreserves the pages.
// WARNs if a preserved device still uses it.
void iommu_unpreserve_domain(struct iommu_domain* domain);
// Records |dev| attached to |domain|, preserving its unit (once, counted
// per device) and the unit's root and context tables. 0; -EOPNOTSUPP (not
// PCI, or its group has more than one device), -EINVAL (its group's DMA
// ownership not claimed, not attached to |domain|, or |domain| not
// preserved), -EBUSY (already preserved), -ENOENT (no outgoing FLB).
int iommu_preserve_device(struct iommu_domain* domain, struct device* dev, u64 dma_owner_token);
void iommu_unpreserve_device(struct iommu_domain* domain, struct device* dev);

// --- Live update (kernel B) --------------------------------------------
// The domain restored from the preserved record at |domain_ser_phys| (what
// a file's record names), or NULL if that record was not restored.
struct iommu_domain* iommu_get_restored_domain(phys_addr_t domain_ser_phys);

// What a device that came in preserved was restored with: the address of
// its domain's iommu_domain_ser, the preserved dma_owner_token (the
// device's group is owned by it), and whether a driver has claimed DMA
// ownership with that token since (proving it took the device over).
struct iommu_restored_device {
  phys_addr_t domain_ser;
  u64 dma_owner_token;
  bool claimed;
};
// 0; -ENOENT (|dev| did not come in preserved, or its domain could not be
// restored).
int iommu_get_restored_device(struct device* dev, struct iommu_restored_device* out);
// Simulator (iommufd's unbind): a device that came in preserved and was
// bound, but never left its restored domain, goes back to what the IOMMU
// core restored: still translating through that domain, owned by the
// preserved token (the caller keeps that one claim), not claimed by a
// driver, so the retrieved iommufd can bind it again. Nothing for any
// other device.
void iommu_device_unclaim_restored(struct device* dev);
// The number of devices attached to |domain| (a restored domain counts the
// devices the IOMMU core attached at probe).
unsigned int iommu_domain_nr_devices(struct iommu_domain* domain);

#endif  // KHOSIM_LINUX_IOMMU_H_

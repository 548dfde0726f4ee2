// linux/iommu.h: resolves to the running kernel's IommuCore.
#include <cerrno>

#include "khosim/drivers/iommu.h"
#include "khosim/linux/err.h"
#include "khosim/linux/iommu.h"
#include "liveupdate.h"

using khosim::drivers::IommuCore;

namespace {

IommuCore* Core() { return IommuCore::CurrentOrNull(); }

}  // namespace

struct iommu_domain* iommu_paging_domain_alloc(struct device* dev) {
  IommuCore* core = Core();
  return core == nullptr ? static_cast<struct iommu_domain*>(ERR_PTR(-ENODEV))
                         : core->DomainAlloc(dev);
}

void iommu_domain_free(struct iommu_domain* domain) {
  if (IommuCore* core = Core()) core->DomainFree(domain);
}

int iommu_map(struct iommu_domain* domain, unsigned long iova, phys_addr_t paddr, size_t size,
              int prot, gfp_t /*gfp*/) {
  IommuCore* core = Core();
  return core == nullptr ? -ENODEV : core->Map(domain, iova, paddr, size, prot);
}

size_t iommu_unmap(struct iommu_domain* domain, unsigned long iova, size_t size) {
  IommuCore* core = Core();
  return core == nullptr ? 0 : core->Unmap(domain, iova, size);
}

phys_addr_t iommu_iova_to_phys(struct iommu_domain* domain, dma_addr_t iova) {
  IommuCore* core = Core();
  return core == nullptr ? 0 : core->IovaToPhys(domain, iova);
}

int iommu_attach_device(struct iommu_domain* domain, struct device* dev) {
  IommuCore* core = Core();
  return core == nullptr ? -ENODEV : core->Attach(domain, dev);
}

void iommu_detach_device(struct iommu_domain* domain, struct device* dev) {
  if (IommuCore* core = Core()) core->Detach(domain, dev);
}

struct iommu_domain* iommu_get_domain_for_dev(struct device* dev) {
  IommuCore* core = Core();
  return core == nullptr ? nullptr : core->DomainOf(dev);
}

int iommu_device_claim_dma_owner(struct device* dev, void* owner) {
  IommuCore* core = Core();
  return core == nullptr ? -ENODEV : core->ClaimDmaOwner(dev, owner);
}

void iommu_device_release_dma_owner(struct device* dev) {
  if (IommuCore* core = Core()) core->ReleaseDmaOwner(dev);
}

int iommu_liveupdate_register_flb(struct liveupdate_file_handler* handler) {
  return liveupdate_register_flb(handler, &khosim::drivers::iommu_liveupdate_flb);
}

void iommu_liveupdate_unregister_flb(struct liveupdate_file_handler* handler) {
  liveupdate_unregister_flb(handler, &khosim::drivers::iommu_liveupdate_flb);
}

int iommu_preserve_domain(struct iommu_domain* domain) {
  IommuCore* core = Core();
  if (core == nullptr || domain == nullptr || domain->type != IOMMU_DOMAIN_UNMANAGED) {
    return -EOPNOTSUPP;
  }
  return core->liveupdate().PreserveDomain(*IommuCore::FromFace(domain));
}

void iommu_unpreserve_domain(struct iommu_domain* domain) {
  if (IommuCore* core = Core(); core != nullptr && domain != nullptr) {
    core->liveupdate().UnpreserveDomain(*IommuCore::FromFace(domain));
  }
}

int iommu_preserve_device(struct iommu_domain* domain, struct device* dev, u64 dma_owner_token) {
  IommuCore* core = Core();
  if (core == nullptr || dev == nullptr || !dev_is_pci(dev) || dev->iommu == nullptr) {
    return -EOPNOTSUPP;
  }
  return core->liveupdate().PreserveDevice(*IommuCore::FromFace(domain), *dev->iommu,
                                           dma_owner_token);
}

void iommu_unpreserve_device(struct iommu_domain* domain, struct device* dev) {
  IommuCore* core = Core();
  if (core == nullptr || dev == nullptr || !dev_is_pci(dev) || dev->iommu == nullptr) return;
  core->liveupdate().UnpreserveDevice(*IommuCore::FromFace(domain), *dev->iommu);
}

struct iommu_domain* iommu_get_restored_domain(phys_addr_t domain_ser_phys) {
  IommuCore* core = Core();
  if (core == nullptr) return nullptr;
  khosim::drivers::IommuDomain* d = core->liveupdate().RestoredDomain(domain_ser_phys);
  return d == nullptr ? nullptr : &d->face;
}

int iommu_get_restored_device(struct device* dev, struct iommu_restored_device* out) {
  IommuCore* core = Core();
  struct dev_iommu* state = core == nullptr || dev == nullptr ? nullptr : dev->iommu;
  if (state == nullptr || !state->restored || state->domain == nullptr ||
      !state->domain->restored) {
    return -ENOENT;
  }
  *out = {.domain_ser = state->domain->restored_from,
          .dma_owner_token = static_cast<u64>(reinterpret_cast<uintptr_t>(state->owner)),
          .claimed = state->restored_claimed};
  return 0;
}

void iommu_device_unclaim_restored(struct device* dev) {
  struct dev_iommu* state = Core() == nullptr || dev == nullptr ? nullptr : dev->iommu;
  if (state != nullptr && state->restored) state->restored_claimed = false;
}

unsigned int iommu_domain_nr_devices(struct iommu_domain* domain) {
  if (Core() == nullptr || domain == nullptr) return 0;
  unsigned int n = 0;
  for (const auto& [unit, did] : IommuCore::FromFace(domain)->dids) n += did.second;
  return n;
}

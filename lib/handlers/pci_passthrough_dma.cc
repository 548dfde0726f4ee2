// The DMA half of the pci-passthrough driver: the device's own IOMMU
// domain, memfd ranges pinned and mapped into it, and their preservation
// (see khosim/handlers/pci_passthrough.h for the uAPI).
//
// Ownership: the first map claims the device's DMA ownership for the
// owner token {1 << 63 | domain << 16 | bdf}, allocates a paging domain
// and attaches the device; closing the file undoes everything.
// Preservation needs every mapped memfd preserved in the same session
// first (-ENOENT otherwise, as iommufd requires); it preserves the domain
// and the device through the IOMMU core. Retrieval in the next kernel
// takes over the domain the IOMMU core restored at probe, after checking
// that every preserved IOVA still translates to the folio the memfd
// restored.
#include <cerrno>

#include "khosim/handlers/pci_passthrough.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/uaccess.h"
#include "pci_passthrough_internal.h"

namespace {

u64 ppt_owner_token(const struct ppt_device* ppt) {
  return (1ULL << 63) | (static_cast<u64>(pci_domain_nr(ppt->pdev->bus)) << 16) |
         pci_dev_id(ppt->pdev);
}

void* ppt_owner(u64 token) { return reinterpret_cast<void*>(static_cast<uintptr_t>(token)); }

// Pins [offset, offset + length) of |memfd| into |map| (NULL folios array
// on failure).
int ppt_pin(struct ppt_dma_map* map, struct file* memfd, u64 offset, u64 length) {
  const unsigned long max = length / PAGE_SIZE;
  map->folios = static_cast<struct folio**>(kvcalloc(max, sizeof(struct folio*), GFP_KERNEL));
  if (map->folios == nullptr) return -ENOMEM;
  pgoff_t first_offset = 0;
  const long pinned =
      memfd_pin_folios(memfd, static_cast<loff_t>(offset), static_cast<loff_t>(offset + length - 1),
                       map->folios, static_cast<unsigned int>(max), &first_offset);
  if (pinned < 0) {
    kvfree(map->folios);
    map->folios = nullptr;
    return static_cast<int>(pinned);
  }
  map->nr_folios = pinned;
  // Only whole folios of a page each are mapped (memfds hold order-0 folios).
  for (long i = 0; i < pinned; ++i) {
    if (folio_size(map->folios[i]) != PAGE_SIZE || (i == 0 && first_offset != 0)) {
      unpin_folios(map->folios, static_cast<unsigned long>(pinned));
      kvfree(map->folios);
      map->folios = nullptr;
      return -EINVAL;
    }
  }
  return 0;
}

void ppt_unpin(struct ppt_dma_map* map) {
  if (map->folios != nullptr) {
    unpin_folios(map->folios, static_cast<unsigned long>(map->nr_folios));
    kvfree(map->folios);
  }
  if (map->memfd != nullptr) fput(map->memfd);
  *map = {};
}

int ppt_take_ownership(struct ppt_device* ppt) {
  struct device* dev = &ppt->pdev->dev;
  const u64 token = ppt_owner_token(ppt);
  int err = iommu_device_claim_dma_owner(dev, ppt_owner(token));
  if (err != 0) return err;
  struct iommu_domain* domain = iommu_paging_domain_alloc(dev);
  if (IS_ERR(domain)) {
    iommu_device_release_dma_owner(dev);
    return static_cast<int>(PTR_ERR(domain));
  }
  err = iommu_attach_device(domain, dev);
  if (err != 0) {
    iommu_domain_free(domain);
    iommu_device_release_dma_owner(dev);
    return err;
  }
  ppt->domain = domain;
  ppt->owner_token = token;
  return 0;
}

}  // namespace

long ppt_dma_map_file(struct ppt_device* ppt, unsigned long arg) {
  struct pci_passthrough_dma_map req;
  if (copy_from_user(&req, reinterpret_cast<const void __user*>(arg), sizeof(req)) != 0) {
    return -EFAULT;
  }
  if (req.size != sizeof(req) || req.length == 0 ||
      ((req.offset | req.length | req.iova) & (PAGE_SIZE - 1)) != 0) {
    return -EINVAL;
  }
  if (ppt->nr_maps == PCI_PASSTHROUGH_MAX_DMA_MAPS) return -ENOSPC;
  struct file* memfd = fget(static_cast<unsigned int>(req.fd));
  if (memfd == nullptr) return -EBADF;
  if (!shmem_file(memfd)) {
    fput(memfd);
    return -EINVAL;
  }
  int err = ppt->domain == nullptr ? ppt_take_ownership(ppt) : 0;
  struct ppt_dma_map* map = &ppt->maps[ppt->nr_maps];
  if (err == 0) err = ppt_pin(map, memfd, req.offset, req.length);
  if (err != 0) {
    fput(memfd);
    return err;
  }
  map->memfd = memfd;
  map->offset = req.offset;
  map->length = req.length;
  map->iova = req.iova;
  long i = 0;
  for (; i < map->nr_folios; ++i) {
    err = iommu_map(ppt->domain, req.iova + i * PAGE_SIZE, folio_phys(map->folios[i]), PAGE_SIZE,
                    IOMMU_READ | IOMMU_WRITE, GFP_KERNEL);
    if (err != 0) break;
  }
  if (err != 0) {
    if (i > 0) iommu_unmap(ppt->domain, req.iova, i * PAGE_SIZE);
    ppt_unpin(map);
    return err;
  }
  ++ppt->nr_maps;
  return 0;
}

void ppt_dma_release(struct ppt_device* ppt) {
  if (ppt->domain == nullptr) return;
  for (unsigned i = 0; i < ppt->nr_maps; ++i) {
    iommu_unmap(ppt->domain, ppt->maps[i].iova, ppt->maps[i].length);
    ppt_unpin(&ppt->maps[i]);
  }
  ppt->nr_maps = 0;
  iommu_detach_device(ppt->domain, &ppt->pdev->dev);
  iommu_domain_free(ppt->domain);
  iommu_device_release_dma_owner(&ppt->pdev->dev);
  ppt->domain = nullptr;
}

void ppt_dma_free_host(struct ppt_device* ppt) {
  for (unsigned i = 0; i < ppt->nr_maps; ++i) {
    kvfree(ppt->maps[i].folios);
    fput(ppt->maps[i].memfd);
    ppt->maps[i] = {};
  }
  ppt->nr_maps = 0;
  ppt->domain = nullptr;
}

int ppt_dma_preserve(struct ppt_device* ppt, struct liveupdate_session* session,
                     struct pci_passthrough_ser* ser) {
  ser->nr_maps = 0;
  ser->iommu_domain = 0;
  ser->owner_token = 0;
  if (ppt->domain == nullptr) return 0;
  for (unsigned i = 0; i < ppt->nr_maps; ++i) {
    u64 token = 0;
    // The memory a device writes must cross the kexec before the device.
    if (int err = liveupdate_get_token_outgoing(session, ppt->maps[i].memfd, &token); err != 0) {
      pr_warn("pci-passthrough %s: a DMA-mapped memfd is not preserved in this session",
              pci_name(ppt->pdev));
      return err;
    }
    ser->maps[i] = {.memfd_token = token,
                    .offset = ppt->maps[i].offset,
                    .length = ppt->maps[i].length,
                    .iova = ppt->maps[i].iova};
  }
  if (int err = iommu_preserve_domain(ppt->domain); err != 0) return err;
  if (int err = iommu_preserve_device(ppt->domain, &ppt->pdev->dev, ppt->owner_token); err != 0) {
    iommu_unpreserve_domain(ppt->domain);
    return err;
  }
  ser->nr_maps = static_cast<u16>(ppt->nr_maps);
  ser->iommu_domain = virt_to_phys(ppt->domain->preserved_state);
  ser->owner_token = ppt->owner_token;
  return 0;
}

void ppt_dma_unpreserve(struct ppt_device* ppt) {
  if (ppt->domain == nullptr || ppt->domain->preserved_state == nullptr) return;
  iommu_unpreserve_device(ppt->domain, &ppt->pdev->dev);
  iommu_unpreserve_domain(ppt->domain);
}

int ppt_dma_retrieve(struct ppt_device* ppt, struct liveupdate_session* session,
                     const struct pci_passthrough_ser* ser) {
  if (ser->iommu_domain == 0) return 0;
  if (ser->nr_maps > PCI_PASSTHROUGH_MAX_DMA_MAPS) return -EINVAL;
  struct device* dev = &ppt->pdev->dev;
  struct iommu_domain* domain = iommu_get_restored_domain(ser->iommu_domain);
  if (domain == nullptr || iommu_get_domain_for_dev(dev) != domain) {
    pr_err("pci-passthrough %s: its IOMMU domain was not restored", pci_name(ppt->pdev));
    return -ENOENT;
  }
  // The IOMMU core gave the group to the preserved owner token: claiming
  // with it proves the record's token, the extra count is dropped again.
  if (int err = iommu_device_claim_dma_owner(dev, ppt_owner(ser->owner_token)); err != 0) {
    return err;
  }
  iommu_device_release_dma_owner(dev);
  unsigned done = 0;
  int err = 0;
  for (; done < ser->nr_maps && err == 0; ++done) {
    const struct pci_passthrough_dma_ser* m = &ser->maps[done];
    struct ppt_dma_map* map = &ppt->maps[done];
    if (m->length == 0 || ((m->offset | m->length | m->iova) & (PAGE_SIZE - 1)) != 0) {
      err = -EINVAL;
      break;
    }
    struct file* memfd = nullptr;
    if ((err = liveupdate_get_file_incoming(session, m->memfd_token, &memfd)) != 0) break;
    if ((err = ppt_pin(map, memfd, m->offset, m->length)) != 0) {
      fput(memfd);
      break;
    }
    map->memfd = memfd;
    map->offset = m->offset;
    map->length = m->length;
    map->iova = m->iova;
    // The restored tables must map exactly the folios the memfd restored.
    for (long i = 0; i < map->nr_folios && err == 0; ++i) {
      if (iommu_iova_to_phys(domain, m->iova + i * PAGE_SIZE) != folio_phys(map->folios[i])) {
        pr_err("pci-passthrough %s: IOVA %#llx does not map the memfd's folio", pci_name(ppt->pdev),
               static_cast<unsigned long long>(m->iova + i * PAGE_SIZE));
        err = -EINVAL;
      }
    }
    if (err != 0) ppt_unpin(map);
  }
  if (err != 0) {
    for (unsigned i = 0; i < done; ++i) {
      if (ppt->maps[i].memfd != nullptr) ppt_unpin(&ppt->maps[i]);
    }
    return err;
  }
  ppt->domain = domain;
  ppt->owner_token = ser->owner_token;
  ppt->nr_maps = ser->nr_maps;
  return 0;
}

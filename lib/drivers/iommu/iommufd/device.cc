// HWPTs and bound devices: IOMMU_HWPT_ALLOC and the driver-facing calls of
// linux/iommufd.h (bind, attach, detach, unbind, and the device's part of
// live update).
//
// DMA ownership: a device bound in this kernel is owned by its iommufd
// context; a device that came in preserved keeps the preserved owner token,
// which only the retrieved iommufd holding its domain may claim
// (iommufd_liveupdate_bind_check).
#include <cerrno>

#include "iommufd_private.h"
#include "khosim/base/kernel_context.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/uapi/iommufd.h"

namespace {

bool ShouldFailAlloc() {
  khosim::KernelContext* ctx = khosim::CurrentKernelContext();
  return ctx != nullptr && ctx->ShouldFail("kmalloc");
}

void* TokenOwner(u64 token) { return reinterpret_cast<void*>(static_cast<uintptr_t>(token)); }

// Moves |idev| from its current HWPT (or the domain it was restored with)
// to |hwpt| without a moment unattached between DMA quanta.
int AttachTo(struct iommufd_device* idev, iommufd_hwpt_paging* hwpt) {
  if (idev->hwpt == hwpt) return 0;
  struct iommu_domain* old = iommu_get_domain_for_dev(idev->dev);
  if (old != nullptr) iommu_detach_device(old, idev->dev);
  if (int err = iommu_attach_device(hwpt->domain, idev->dev); err != 0) {
    if (old != nullptr && iommu_attach_device(old, idev->dev) != 0) {
      pr_err("iommufd: %s: could not go back to its domain; DMA blocked", dev_name(idev->dev));
    }
    return err;
  }
  if (idev->hwpt != nullptr) --idev->hwpt->nr_devices;
  idev->hwpt = hwpt;
  ++hwpt->nr_devices;
  return 0;
}

}  // namespace

iommufd_hwpt_paging* iommufd_hwpt_paging_alloc(struct iommufd_ctx* ictx, iommufd_ioas* ioas,
                                               struct iommufd_device* idev, bool auto_domain) {
  if (ShouldFailAlloc()) return static_cast<iommufd_hwpt_paging*>(ERR_PTR(-ENOMEM));
  struct iommu_domain* domain = iommu_paging_domain_alloc(idev->dev);
  if (IS_ERR(domain)) return static_cast<iommufd_hwpt_paging*>(static_cast<void*>(domain));
  if (int err = iopt_fill_domain(ioas, domain); err != 0) {
    iommu_domain_free(domain);
    return static_cast<iommufd_hwpt_paging*>(ERR_PTR(err));
  }
  auto hwpt = std::make_unique<iommufd_hwpt_paging>();
  hwpt->domain = domain;
  hwpt->ioas = ioas;
  hwpt->auto_domain = auto_domain;
  iommufd_hwpt_paging* raw = hwpt.get();
  ioas->hwpts.push_back(raw);
  iommufd_object_add(ictx, std::move(hwpt));
  return raw;
}

// Devices are detached (nr_devices 0) and the HWPT is not marked for live
// update, or the whole context is going away.
void iommufd_hwpt_destroy(struct iommufd_ctx* ictx, iommufd_hwpt_paging* hwpt) {
  WARN_ON(hwpt->nr_devices != 0);
  if (hwpt->liveupdate_preserved) iommu_unpreserve_domain(hwpt->domain);
  if (hwpt->ioas != nullptr) {
    std::erase(hwpt->ioas->hwpts, hwpt);
  } else {
    for (iommufd_incoming_hwpt& in : ictx->incoming_hwpts) {
      if (in.restored == hwpt) in.restored = nullptr;
    }
  }
  iommu_domain_free(hwpt->domain);
  iommufd_object_remove(ictx, hwpt->id);
}

long iommufd_hwpt_alloc(struct iommufd_ctx* ictx, void* arg) {
  auto* cmd = static_cast<struct iommu_hwpt_alloc*>(arg);
  if (cmd->flags != 0 || cmd->data_type != IOMMU_HWPT_DATA_NONE || cmd->data_len != 0 ||
      cmd->fault_id != 0) {
    return -EOPNOTSUPP;
  }
  if (cmd->__reserved != 0 || cmd->__reserved2 != 0) return -EOPNOTSUPP;
  auto* idev = static_cast<struct iommufd_device*>(
      iommufd_get_object(ictx, cmd->dev_id, IOMMUFD_OBJ_DEVICE));
  auto* ioas = static_cast<iommufd_ioas*>(iommufd_get_object(ictx, cmd->pt_id, IOMMUFD_OBJ_IOAS));
  if (idev == nullptr || ioas == nullptr) return -ENOENT;
  iommufd_hwpt_paging* hwpt = iommufd_hwpt_paging_alloc(ictx, ioas, idev, false);
  if (IS_ERR(hwpt)) return PTR_ERR(hwpt);
  cmd->out_hwpt_id = hwpt->id;
  return 0;
}

struct iommufd_device* iommufd_device_bind(struct iommufd_ctx* ictx, struct device* dev, u32* id) {
  if (ShouldFailAlloc()) return static_cast<struct iommufd_device*>(ERR_PTR(-ENOMEM));
  void* owner = TokenOwner(ictx->owner_token);
  struct iommu_restored_device restored;
  const bool came_preserved = iommu_get_restored_device(dev, &restored) == 0 && !restored.claimed;
  if (came_preserved) {
    if (int err = iommufd_liveupdate_bind_check(ictx, restored.domain_ser); err != 0) {
      return static_cast<struct iommufd_device*>(ERR_PTR(err));
    }
    owner = TokenOwner(restored.dma_owner_token);
  }
  if (int err = iommu_device_claim_dma_owner(dev, owner); err != 0) {
    return static_cast<struct iommufd_device*>(ERR_PTR(err));
  }
  // A preserved device's restore-time count goes: the claim above holds it.
  if (came_preserved) iommu_device_release_dma_owner(dev);
  auto idev = std::make_unique<iommufd_device>();
  idev->ictx = ictx;
  idev->dev = dev;
  idev->owner = owner;
  idev->restored_domain_ser = came_preserved ? restored.domain_ser : 0;
  struct iommufd_device* raw = idev.get();
  *id = iommufd_object_add(ictx, std::move(idev));
  iommufd_ctx_get(ictx);
  return raw;
}

void iommufd_device_unbind(struct iommufd_device* idev) {
  struct iommufd_ctx* ictx = idev->ictx;
  if (idev->preserved) iommufd_device_unpreserve(idev);
  if (idev->hwpt != nullptr) {
    iommufd_device_detach(idev, IOMMU_NO_PASID);
  } else if (struct iommu_domain* domain = iommu_get_domain_for_dev(idev->dev)) {
    if (idev->restored_domain_ser != 0) {
      // Still on the domain it was restored with (a driver's open failed
      // after the bind, or it let go before restoring): the device may be
      // running, so it stays there, back to how the IOMMU core restored
      // it; the claim it holds stands for the restore-time one again.
      iommu_device_unclaim_restored(idev->dev);
      iommufd_object_remove(ictx, idev->id);
      iommufd_ctx_put(ictx);
      return;
    }
    iommu_detach_device(domain, idev->dev);
  }
  iommu_device_release_dma_owner(idev->dev);
  iommufd_object_remove(ictx, idev->id);
  iommufd_ctx_put(ictx);
}

void iommufd_device_free_host(struct iommufd_device* idev) { fput(idev->ictx->file); }

int iommufd_device_attach(struct iommufd_device* idev, u32 pasid, u32* pt_id) {
  if (pasid != IOMMU_NO_PASID) return -EINVAL;
  struct iommufd_ctx* ictx = idev->ictx;
  if (auto* hwpt = static_cast<iommufd_hwpt_paging*>(
          iommufd_get_object(ictx, *pt_id, IOMMUFD_OBJ_HWPT_PAGING))) {
    return AttachTo(idev, hwpt);
  }
  auto* ioas = static_cast<iommufd_ioas*>(iommufd_get_object(ictx, *pt_id, IOMMUFD_OBJ_IOAS));
  if (ioas == nullptr) return -ENOENT;
  // An IOAS: reuse its automatic HWPT, or make one.
  iommufd_hwpt_paging* hwpt = nullptr;
  for (iommufd_hwpt_paging* candidate : ioas->hwpts) {
    if (candidate->auto_domain) hwpt = candidate;
  }
  const bool fresh = hwpt == nullptr;
  if (fresh) {
    hwpt = iommufd_hwpt_paging_alloc(ictx, ioas, idev, true);
    if (IS_ERR(hwpt)) return static_cast<int>(PTR_ERR(hwpt));
  }
  if (int err = AttachTo(idev, hwpt); err != 0) {
    if (fresh) iommufd_hwpt_destroy(ictx, hwpt);
    return err;
  }
  *pt_id = hwpt->id;
  return 0;
}

void iommufd_device_detach(struct iommufd_device* idev, u32 pasid) {
  if (WARN_ON(pasid != IOMMU_NO_PASID) || idev->hwpt == nullptr) return;
  iommufd_hwpt_paging* hwpt = idev->hwpt;
  iommu_detach_device(hwpt->domain, idev->dev);
  idev->hwpt = nullptr;
  // An automatic HWPT goes with its last device, as upstream's does.
  if (--hwpt->nr_devices == 0 && hwpt->auto_domain && !hwpt->liveupdate_marked) {
    iommufd_hwpt_destroy(idev->ictx, hwpt);
  }
}

struct iommufd_ctx* iommufd_device_to_ictx(struct iommufd_device* idev) {
  return idev->ictx;
}

u32 iommufd_device_to_id(struct iommufd_device* idev) { return idev->id; }

// Upstream's order (iommufd_device_preserve): attached at all, attached to
// a marked HWPT, the iommufd preserved in the session (its LUO token is
// the device's dma_owner_token in the IOMMU FLB), then the IOMMU core.
int iommufd_device_preserve(struct iommufd_device* idev, struct liveupdate_session* session) {
  iommufd_hwpt_paging* hwpt = idev->hwpt;
  if (hwpt == nullptr) return -ENOENT;
  if (!hwpt->liveupdate_marked) return -EINVAL;
  u64 token = 0;
  if (int err = liveupdate_get_token_outgoing(session, idev->ictx->file, &token); err != 0) {
    return err;
  }
  if (int err = iommu_preserve_device(hwpt->domain, idev->dev, token); err != 0) return err;
  idev->preserved = true;
  return 0;
}

void iommufd_device_unpreserve(struct iommufd_device* idev) {
  if (!idev->preserved) return;
  idev->preserved = false;
  if (WARN_ON(idev->hwpt == nullptr)) return;
  iommu_unpreserve_device(idev->hwpt->domain, idev->dev);
}

bool iommufd_device_awaits_bind(struct device* dev) {
  struct iommu_restored_device restored;
  return iommu_get_restored_device(dev, &restored) == 0 && !restored.claimed;
}

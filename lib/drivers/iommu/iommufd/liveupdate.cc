// iommufd's live update: IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, the LUO file
// handler "iommufd-v1" and, in the next kernel, the retrieved iommufd with
// IOMMU_HWPT_LIVEUPDATE_RESTORE (the rules are in khosim/drivers/iommufd.h).
//
// Kernel B treats the record as hostile: nr_hwpts must fit the folio the
// record was preserved in, tokens and domains must be unique and reclaimed
// 0, or the retrieve fails with -EINVAL. A domain_data naming no domain the IOMMU
// core restored only makes that HWPT's restore fail (-ENOENT): the core
// validated the FLB, this record only points into it.
#include "khosim/linux/liveupdate.h"

#include <cerrno>
#include <cstring>
#include <vector>

#include "iommufd_private.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/uapi/iommufd.h"

namespace {

constexpr unsigned int kRequiredSeals = F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK;

struct iommufd_ctx* CtxOf(struct file* file) {
  return static_cast<struct iommufd_ctx*>(file->private_data);
}

std::vector<iommufd_hwpt_paging*> Marked(struct iommufd_ctx* ictx) {
  std::vector<iommufd_hwpt_paging*> out;
  for (auto& [id, obj] : ictx->objects) {
    if (obj->type != IOMMUFD_OBJ_HWPT_PAGING) continue;
    auto* hwpt = static_cast<iommufd_hwpt_paging*>(obj.get());
    if (hwpt->liveupdate_marked) out.push_back(hwpt);
  }
  return out;
}

// Every area of the IOAS maps a sealed memfd preserved in |session|.
int CheckAreasPreserved(struct liveupdate_session* session, const iommufd_ioas& ioas) {
  for (const auto& [iova, area] : ioas.areas) {
    if (area.file == nullptr) return -EINVAL;  // only file-backed mappings cross
    // Sealed when mapped: the pinned folios are the file's for good.
    if ((area.seals & kRequiredSeals) != kRequiredSeals) return -EINVAL;
    if (int err = liveupdate_get_token_outgoing(session, area.file, nullptr); err != 0) {
      return err;
    }
  }
  return 0;
}

void UnpreserveHwpts(struct iommufd_ctx* ictx) {
  for (iommufd_hwpt_paging* hwpt : Marked(ictx)) {
    if (!hwpt->liveupdate_preserved) continue;
    iommu_unpreserve_domain(hwpt->domain);
    hwpt->ioas->liveupdate_immutable = false;
    hwpt->liveupdate_preserved = false;
  }
}

int PreserveHwpt(iommufd_hwpt_paging* hwpt, struct iommufd_hwpt_ser* ser,
                 struct liveupdate_session* session) {
  iommufd_ioas* ioas = hwpt->ioas;
  // One IOAS may back several HWPTs: it is checked by the first.
  const bool made_immutable = !ioas->liveupdate_immutable;
  if (made_immutable) {
    ioas->liveupdate_immutable = true;
    if (int err = CheckAreasPreserved(session, *ioas); err != 0) {
      ioas->liveupdate_immutable = false;
      return err;
    }
  }
  if (int err = iommu_preserve_domain(hwpt->domain); err != 0) {
    if (made_immutable) ioas->liveupdate_immutable = false;
    return err;
  }
  ser->domain_data = virt_to_phys(hwpt->domain->preserved_state);
  ser->token = hwpt->liveupdate_token;
  ser->reclaimed = 0;
  hwpt->liveupdate_preserved = true;
  return 0;
}

bool iommufd_luo_can_preserve(struct liveupdate_file_handler* /*handler*/, struct file* file) {
  return iommufd_is_file(file);
}

int iommufd_luo_preserve(struct liveupdate_file_op_args* args) {
  struct iommufd_ctx* ictx = CtxOf(args->file);
  const std::vector<iommufd_hwpt_paging*> hwpts = Marked(ictx);
  for (const iommufd_hwpt_paging* hwpt : hwpts) {
    if (hwpt->domain == nullptr) return -EINVAL;
  }
  const size_t size = sizeof(struct iommufd_ser) + hwpts.size() * sizeof(struct iommufd_hwpt_ser);
  auto* ser = static_cast<struct iommufd_ser*>(kho_alloc_preserve(size));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));
  ser->nr_hwpts = hwpts.size();
  for (size_t i = 0; i < hwpts.size(); ++i) {
    if (int err = PreserveHwpt(hwpts[i], &ser->hwpt_array[i], args->session); err != 0) {
      UnpreserveHwpts(ictx);
      kho_unpreserve_free(ser);
      return err;
    }
  }
  args->serialized_data = virt_to_phys(ser);
  args->private_data = ser;
  return 0;
}

void iommufd_luo_unpreserve(struct liveupdate_file_op_args* args) {
  UnpreserveHwpts(CtxOf(args->file));
  kho_unpreserve_free(args->private_data);
}

// The record, restored and checked; its folio is the caller's. NULL and
// *err on failure.
struct iommufd_ser* RestoreRecord(u64 phys, int* err) {
  struct folio* folio = kho_restore_folio(phys);
  if (folio == nullptr) {
    *err = -EINVAL;
    return nullptr;
  }
  auto* ser = static_cast<struct iommufd_ser*>(folio_address(folio));
  const size_t room =
      (folio_size(folio) - sizeof(struct iommufd_ser)) / sizeof(struct iommufd_hwpt_ser);
  bool ok = ser->nr_hwpts <= room;
  for (u64 i = 0; ok && i < ser->nr_hwpts; ++i) {
    ok = ser->hwpt_array[i].reclaimed == 0;
    // Kernel A preserves a domain once: two entries naming one would give
    // two HWPT objects one domain to free.
    for (u64 j = 0; ok && j < i; ++j) {
      ok = ser->hwpt_array[j].token != ser->hwpt_array[i].token &&
           ser->hwpt_array[j].domain_data != ser->hwpt_array[i].domain_data;
    }
  }
  if (!ok) {
    pr_err("iommufd: liveupdate: the preserved record at %#llx is corrupt",
           static_cast<unsigned long long>(phys));
    folio_put(folio);
    *err = -EINVAL;
    return nullptr;
  }
  return ser;
}

int iommufd_luo_retrieve(struct liveupdate_file_op_args* args) {
  if (!iommufd_retrieve_supported()) return -EOPNOTSUPP;
  int err = 0;
  struct iommufd_ser* ser = RestoreRecord(args->serialized_data, &err);
  if (ser == nullptr) return err;
  struct iommufd_ctx* ictx = iommufd_new_ctx();
  if (ictx == nullptr) {
    folio_put(virt_to_folio(ser));
    return -ENOMEM;
  }
  ictx->incoming = ser;
  for (u64 i = 0; i < ser->nr_hwpts; ++i) {
    ictx->incoming_hwpts.push_back({.token = ser->hwpt_array[i].token,
                                    .domain_data = ser->hwpt_array[i].domain_data,
                                    .ser = &ser->hwpt_array[i]});
  }
  struct file* file = iommufd_new_file(ictx, "[iommufd]");
  if (IS_ERR(file)) {
    delete ictx;
    folio_put(virt_to_folio(ser));
    return static_cast<int>(PTR_ERR(file));
  }
  args->file = file;
  return 0;
}

// Retrieved, every preserved HWPT restored, and every restored HWPT gone
// again. A restored HWPT maps the previous kernel's pages without pinning
// them (its record names no files): once finish lets the unretrieved
// files go, a device still translating through it would write freed
// memory. Its devices must first move to HWPTs whose IOAS pins the memory
// (the retrieved memfds), as the VFIO selftest's VMM does.
bool iommufd_luo_can_finish(struct liveupdate_file_op_args* args) {
  if (!iommufd_retrieve_supported() || args->retrieve_status <= 0) return false;
  for (const iommufd_incoming_hwpt& in : CtxOf(args->file)->incoming_hwpts) {
    if (!in.reclaimed || in.restored != nullptr) return false;
  }
  return true;
}

void iommufd_luo_finish(struct liveupdate_file_op_args* args) {
  if (WARN_ON(args->file == nullptr)) return;  // can_finish refused it
  struct iommufd_ctx* ictx = CtxOf(args->file);
  for (iommufd_incoming_hwpt& in : ictx->incoming_hwpts) in.ser = nullptr;
  if (ictx->incoming != nullptr) folio_put(virt_to_folio(ictx->incoming));
  ictx->incoming = nullptr;
}

unsigned long iommufd_luo_get_id(struct file* file) {
  return reinterpret_cast<unsigned long>(file->private_data);
}

const struct liveupdate_file_ops iommufd_luo_ops = {
    .can_preserve = iommufd_luo_can_preserve,
    .preserve = iommufd_luo_preserve,
    .unpreserve = iommufd_luo_unpreserve,
    .freeze = nullptr,
    .unfreeze = nullptr,
    .retrieve = iommufd_luo_retrieve,
    .can_finish = iommufd_luo_can_finish,
    .finish = iommufd_luo_finish,
    .get_id = iommufd_luo_get_id,
    .owner = nullptr,
};

struct liveupdate_file_handler iommufd_luo_handler = {
    .ops = &iommufd_luo_ops,
    .compatible = IOMMUFD_LUO_COMPATIBLE,
};

}  // namespace

long iommufd_hwpt_liveupdate_mark_preserve(struct iommufd_ctx* ictx, void* arg) {
  const auto* cmd = static_cast<const struct iommu_hwpt_liveupdate_mark_preserve*>(arg);
  auto* target = static_cast<iommufd_hwpt_paging*>(
      iommufd_get_object(ictx, cmd->hwpt_id, IOMMUFD_OBJ_HWPT_PAGING));
  if (target == nullptr) return -ENOENT;
  for (const iommufd_hwpt_paging* hwpt : Marked(ictx)) {
    if (hwpt->liveupdate_token == cmd->hwpt_token) return -EADDRINUSE;
  }
  if (target->ioas == nullptr) return -EOPNOTSUPP;
  target->liveupdate_marked = true;
  target->liveupdate_token = cmd->hwpt_token;
  return 0;
}

long iommufd_hwpt_liveupdate_restore(struct iommufd_ctx* ictx, void* arg) {
  auto* cmd = static_cast<struct iommu_hwpt_liveupdate_restore*>(arg);
  if (cmd->flags != 0 || cmd->__reserved != 0) return -EOPNOTSUPP;
  if (ictx->incoming_hwpts.empty()) return ictx->incoming == nullptr ? -EINVAL : -ENOENT;
  iommufd_incoming_hwpt* in = nullptr;
  for (iommufd_incoming_hwpt& candidate : ictx->incoming_hwpts) {
    if (candidate.token == cmd->hwpt_token) in = &candidate;
  }
  if (in == nullptr) return -ENOENT;
  if (in->reclaimed) return -EALREADY;
  struct iommu_domain* domain = iommu_get_restored_domain(in->domain_data);
  if (domain == nullptr) return -ENOENT;
  // Every device still translating through the domain must be bound here.
  std::vector<struct iommufd_device*> bound;
  for (auto& [id, obj] : ictx->objects) {
    if (obj->type != IOMMUFD_OBJ_DEVICE) continue;
    auto* idev = static_cast<struct iommufd_device*>(obj.get());
    if (idev->hwpt == nullptr && iommu_get_domain_for_dev(idev->dev) == domain) {
      bound.push_back(idev);
    }
  }
  if (bound.size() < iommu_domain_nr_devices(domain)) return -ENODEV;
  auto hwpt = std::make_unique<iommufd_hwpt_paging>();
  hwpt->domain = domain;
  hwpt->nr_devices = static_cast<unsigned int>(bound.size());
  iommufd_hwpt_paging* raw = hwpt.get();
  cmd->out_hwpt_id = iommufd_object_add(ictx, std::move(hwpt));
  for (struct iommufd_device* idev : bound) idev->hwpt = raw;
  in->restored = raw;
  in->reclaimed = true;
  if (in->ser != nullptr) in->ser->reclaimed = 1;
  return 0;
}

int iommufd_liveupdate_bind_check(struct iommufd_ctx* ictx, phys_addr_t domain_ser) {
  for (const iommufd_incoming_hwpt& in : ictx->incoming_hwpts) {
    if (in.domain_data == domain_ser) return 0;
  }
  return -EPERM;
}

int iommufd_liveupdate_register(void) {
  int err = liveupdate_register_file_handler(&iommufd_luo_handler);
  if (err == -EOPNOTSUPP) return 0;  // LUO is off: iommufd works without it
  if (err != 0) return err;
  err = iommu_liveupdate_register_flb(&iommufd_luo_handler);
  if (err == -EOPNOTSUPP) err = 0;
  if (err != 0) liveupdate_unregister_file_handler(&iommufd_luo_handler);
  return err;
}

void iommufd_liveupdate_unregister(void) {
  iommu_liveupdate_unregister_flb(&iommufd_luo_handler);
  liveupdate_unregister_file_handler(&iommufd_luo_handler);
}

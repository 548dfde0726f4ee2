// vfio-pci's LUO file handler "vfio-pci-v1" (CONFIG_VFIO_PCI_LIVEUPDATE):
// a VFIO device file, opened through its cdev and bound to an iommufd,
// preserved across a kexec with its device kept at the same address.
//
// Kernel A
//   can_preserve  a vfio-pci device file bound to an iommufd through the
//                 cdev, not a VF; anything else (a group or container
//                 fd, a device fd from a group, an unbound cdev) is not
//                 this handler's, so LUO answers -ENOENT;
//   preserve      the record, pci_liveupdate_preserve, and, when the
//                 device is attached to an iommufd HWPT,
//                 iommufd_device_preserve (the iommufd must be preserved
//                 in the session first: -ENOENT; its HWPT marked:
//                 -EINVAL); attach/detach are -EBUSY from then on;
//   freeze        interrupts still enabled: -EINVAL, and the kexec does
//                 not happen (upstream), or, with
//                 khosim.vfio_liveupdate_irqs=replay, disabled here and
//                 replayed in kernel B. A device whose DMA is not
//                 preserved through iommufd is reset and its Command
//                 register left at INTx Disable (v5's base support: the
//                 device itself is not kept running). Then every ioctl,
//                 read and write of the file is -EIO;
//   unfreeze      (a later file's freeze failed) the file works again.
// Kernel B
//   the device's cdev and group refuse it (-EBUSY) until the session
//   finishes, and opening it does not reset it;
//   retrieve      finds the device by segment and BDF (-ENODEV if it is
//                 gone, bound to another driver, or - a hostile record -
//                 not one the PCI core took in preserved; -EBUSY if
//                 another record named it first) and returns an unbound
//                 device file, "[vfio-device-liveupdate]";
//   can_finish    retrieved and bound to an iommufd (for a device that
//                 came in through iommufd, that is the retrieved one);
//   finish        pci_liveupdate_finish; no reset.
// A device preserved but never retrieved keeps the session from finishing
// (v5's can_finish); it stays LUO's, DMA included, into memory KHO keeps
// reserved. See docs/devices.md, "Unclaimed devices".
#include <cerrno>
#include <optional>
#include <string>

#include "khosim/base/kernel_context.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kconfig.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/vfio_pci.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/pci_liveupdate.h"
#include "vfio_pci_priv.h"

namespace {

constexpr char kIrqsParam[] = "khosim.vfio_liveupdate_irqs";

// khosim.vfio_liveupdate_irqs=replay (a proposal the live update group
// discussed): interrupts are disabled at freeze instead of refusing it,
// and kernel B fires every vector once when userspace enables them again.
bool ReplayIrqs() {
  khosim::KernelContext* ctx = khosim::CurrentKernelContext();
  if (ctx == nullptr) return false;
  const std::optional<std::string> value = ctx->cmdline().Get(kIrqsParam);
  return value.has_value() && *value == "replay";
}

struct vfio_pci_core_device* DeviceOf(struct file* file) {
  return to_vfio_pci(vfio_device_from_file(file));
}

bool vfio_pci_liveupdate_can_preserve(struct liveupdate_file_handler* /*handler*/,
                                      struct file* file) {
  if (!vfio_pci_is_device_file(file)) return false;
  struct vfio_device_file* df = vfio_device_file_of(file);
  return !df->from_group && df->access_granted && df->iommufd != nullptr &&
         !DeviceOf(file)->pdev->is_virtfn;
}

int vfio_pci_liveupdate_preserve(struct liveupdate_file_op_args* args) {
  struct vfio_pci_core_device* vdev = DeviceOf(args->file);
  struct pci_dev* pdev = vdev->pdev;
  auto* ser = static_cast<struct vfio_pci_core_device_ser*>(
      kho_alloc_preserve(sizeof(struct vfio_pci_core_device_ser)));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));
  if (int err = pci_liveupdate_preserve(pdev); err != 0) {
    kho_unpreserve_free(ser);
    return err;
  }
  if (vdev->vdev.iommufd_attached) {
    if (int err = iommufd_device_preserve(vdev->vdev.iommufd_device, args->session); err != 0) {
      pci_liveupdate_unpreserve(pdev);
      kho_unpreserve_free(ser);
      return err;
    }
  }
  ser->domain = static_cast<u32>(pci_domain_nr(pdev->bus));
  ser->bdf = pci_dev_id(pdev);
  vdev->vdev.liveupdate_outgoing = true;
  args->serialized_data = virt_to_phys(ser);
  args->private_data = ser;
  return 0;
}

void vfio_pci_liveupdate_unpreserve(struct liveupdate_file_op_args* args) {
  struct vfio_pci_core_device* vdev = DeviceOf(args->file);
  if (vdev->vdev.iommufd_attached) iommufd_device_unpreserve(vdev->vdev.iommufd_device);
  pci_liveupdate_unpreserve(vdev->pdev);
  vdev->vdev.liveupdate_outgoing = false;
  vdev->vdev.liveupdate_frozen = false;
  kho_unpreserve_free(args->private_data);
}

int vfio_pci_liveupdate_freeze(struct liveupdate_file_op_args* args) {
  struct vfio_pci_core_device* vdev = DeviceOf(args->file);
  if (vdev->irq_type != VFIO_PCI_NUM_IRQS) {
    if (!ReplayIrqs()) {
      pr_err("vfio-pci %s: Interrupts are still enabled", pci_name(vdev->pdev));
      return -EINVAL;
    }
    vfio_pci_irqs_disable(vdev);
  }
  if (!vdev->vdev.iommufd_attached) {
    // Nothing preserves the device's DMA: stop it.
    if (vdev->reset_works) pcie_flr(vdev->pdev);
    pci_write_config_word(vdev->pdev, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE);
    vdev->pdev->is_busmaster = 0;
  }
  vdev->vdev.liveupdate_frozen = true;
  return 0;
}

void vfio_pci_liveupdate_unfreeze(struct liveupdate_file_op_args* args) {
  DeviceOf(args->file)->vdev.liveupdate_frozen = false;
}

// The incoming vfio-pci device a record names, or NULL.
struct vfio_pci_core_device* Lookup(const struct vfio_pci_core_device_ser* ser) {
  struct pci_dev* pdev =
      pci_get_domain_bus_and_slot(static_cast<int>(ser->domain), ser->bdf >> 8, ser->bdf & 0xff);
  struct vfio_pci_core_device* vdev = vfio_pci_core_from_pci(pdev);
  pci_dev_put(pdev);
  return vdev;
}

int vfio_pci_liveupdate_retrieve(struct liveupdate_file_op_args* args) {
  struct folio* folio = kho_restore_folio(args->serialized_data);
  if (folio == nullptr) return -EINVAL;
  const auto* ser = static_cast<const struct vfio_pci_core_device_ser*>(folio_address(folio));
  struct vfio_pci_core_device* vdev = Lookup(ser);
  // Upstream matches the address only; a record naming a device the
  // previous kernel did not preserve would hand out a device LUO does not
  // own (docs/hostile-input.md).
  if (vdev == nullptr || !pci_liveupdate_is_incoming(vdev->pdev)) {
    folio_put(folio);
    return -ENODEV;
  }
  if (vdev->vdev.liveupdate_retrieved) {
    folio_put(folio);
    return -EBUSY;
  }
  struct file* file = vfio_device_open_file(&vdev->vdev, "[vfio-device-liveupdate]", false);
  if (IS_ERR(file)) {
    folio_put(folio);
    return static_cast<int>(PTR_ERR(file));
  }
  vdev->liveupdate_replay_irqs = ReplayIrqs();
  vdev->vdev.liveupdate_retrieved = true;
  args->file = file;
  return 0;
}

bool vfio_pci_liveupdate_can_finish(struct liveupdate_file_op_args* args) {
  return args->retrieve_status > 0 && DeviceOf(args->file)->vdev.cdev_opened;
}

// Only after a successful retrieve (can_finish), so the record is restored.
void vfio_pci_liveupdate_finish(struct liveupdate_file_op_args* args) {
  const auto* ser =
      static_cast<const struct vfio_pci_core_device_ser*>(phys_to_virt(args->serialized_data));
  struct vfio_pci_core_device* vdev = DeviceOf(args->file);
  pci_liveupdate_finish(vdev->pdev);
  vdev->vdev.liveupdate_retrieved = false;
  folio_put(virt_to_folio(ser));
}

unsigned long vfio_pci_liveupdate_get_id(struct file* file) {
  return reinterpret_cast<unsigned long>(vfio_device_from_file(file));
}

const struct liveupdate_file_ops vfio_pci_luo_ops = {
    .can_preserve = vfio_pci_liveupdate_can_preserve,
    .preserve = vfio_pci_liveupdate_preserve,
    .unpreserve = vfio_pci_liveupdate_unpreserve,
    .freeze = vfio_pci_liveupdate_freeze,
    .unfreeze = vfio_pci_liveupdate_unfreeze,
    .retrieve = vfio_pci_liveupdate_retrieve,
    .can_finish = vfio_pci_liveupdate_can_finish,
    .finish = vfio_pci_liveupdate_finish,
    .get_id = vfio_pci_liveupdate_get_id,
    .owner = nullptr,
};

struct liveupdate_file_handler vfio_pci_luo_handler = {
    .ops = &vfio_pci_luo_ops,
    .compatible = VFIO_PCI_LUO_FH_COMPATIBLE,
};

}  // namespace

bool vfio_liveupdate_incoming_is_preserved(struct vfio_device* vdev) {
  return khosim_config_enabled(VFIO_PCI_LIVEUPDATE_CONFIG) &&
         pci_liveupdate_is_incoming(to_vfio_pci(vdev)->pdev);
}

int vfio_pci_liveupdate_init(void) {
  if (!khosim_config_enabled(VFIO_PCI_LIVEUPDATE_CONFIG)) return 0;
  if (khosim::KernelContext* ctx = khosim::CurrentKernelContext()) {
    const std::optional<std::string> value = ctx->cmdline().Get(kIrqsParam);
    if (value.has_value() && *value != "refuse" && *value != "replay") {
      pr_warn("vfio-pci: unknown %s=%s, using refuse", kIrqsParam, value->c_str());
    }
  }
  int err = liveupdate_register_file_handler(&vfio_pci_luo_handler);
  if (err == -EOPNOTSUPP) return 0;  // LUO is off
  if (err != 0) return err;
  err = pci_liveupdate_register_flb(&vfio_pci_luo_handler);
  if (err == -EOPNOTSUPP) err = 0;
  if (err != 0) liveupdate_unregister_file_handler(&vfio_pci_luo_handler);
  return err;
}

void vfio_pci_liveupdate_exit(void) {
  if (!khosim_config_enabled(VFIO_PCI_LIVEUPDATE_CONFIG)) return;
  pci_liveupdate_unregister_flb(&vfio_pci_luo_handler);
  liveupdate_unregister_file_handler(&vfio_pci_luo_handler);
}

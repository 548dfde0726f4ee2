// The pci-passthrough driver and its LUO file handler (see
// khosim/handlers/pci_passthrough.h).
//
// Lifecycle of one device:
//   kernel A  probe -> /dev node; the VMM opens it, sets bus mastering,
//             preserves the fd: pci_liveupdate_preserve(dev) + a record.
//             At kexec the PCI core freezes the device and, because it is
//             preserved, leaves bus mastering on.
//   kernel B  enumeration marks the device incoming; probe publishes the
//             node but keeps it for LUO; RETRIEVE_FD opens it; FINISH calls
//             pci_liveupdate_finish and frees the record.
// DMA (the device's IOMMU domain and memfd maps) is pci_passthrough_dma.cc.
#include "khosim/handlers/pci_passthrough.h"

#include <cerrno>
#include <cstddef>
#include <cstdio>

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/pci_passthrough.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/miscdevice.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/pci.h"
#include "khosim/linux/pci_liveupdate.h"
#include "khosim/linux/slab.h"
#include "pci_passthrough_internal.h"

namespace {

// A kernel that dies with the file open runs no release: the host objects
// the DMA maps hold (memfd file references) and the iommufd binding's
// reference go with the struct file.
void ppt_file_free(struct file* file) {
  auto* ppt = reinterpret_cast<struct ppt_device*>(file->private_data);
  ppt_dma_free_host(ppt);
  if (ppt->idev != nullptr) iommufd_device_free_host(ppt->idev);
  ppt->idev = nullptr;
}

int ppt_open(struct inode* /*inode*/, struct file* file) {
  auto* ppt = reinterpret_cast<struct ppt_device*>(file->private_data);
  if (ppt->luo_owned || ppt->opened) return -EBUSY;
  ppt->opened = true;
  file->f_free = ppt_file_free;
  return 0;
}

int ppt_release(struct inode* /*inode*/, struct file* file) {
  auto* ppt = reinterpret_cast<struct ppt_device*>(file->private_data);
  ppt_iommufd_release(ppt);
  ppt_dma_release(ppt);
  file->f_free = nullptr;  // released: nothing left for it (and ppt may go now)
  ppt->opened = false;
  if (ppt->unbound) kfree(ppt);
  return 0;
}

long ppt_ioctl(struct file* file, unsigned int cmd, unsigned long arg) {
  auto* ppt = reinterpret_cast<struct ppt_device*>(file->private_data);
  if (cmd == PCI_PASSTHROUGH_BIND_IOMMUFD || cmd == PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT ||
      cmd == PCI_PASSTHROUGH_DETACH_IOMMUFD_PT) {
    return ppt->unbound ? -ENODEV : ppt_iommufd_ioctl(ppt, cmd, arg);
  }
  if (cmd != PCI_PASSTHROUGH_SET_MASTER && cmd != PCI_PASSTHROUGH_DMA_MAP_FILE) return -ENOTTY;
  if (ppt->unbound) return -ENODEV;
  if (cmd == PCI_PASSTHROUGH_DMA_MAP_FILE) {
    return ppt->idev != nullptr ? -EBUSY : ppt_dma_map_file(ppt, arg);
  }
  if (arg > 1) return -EINVAL;
  if (arg != 0) {
    pci_set_master(ppt->pdev);
  } else {
    pci_clear_master(ppt->pdev);
  }
  return 0;
}

const struct file_operations ppt_fops = {
    .owner = nullptr,
    .open = ppt_open,
    .release = ppt_release,
    .unlocked_ioctl = ppt_ioctl,
};

// ---- The driver ------------------------------------------------------------

int ppt_probe(struct pci_dev* pdev, const struct pci_device_id* /*id*/) {
  auto* ppt = static_cast<struct ppt_device*>(kzalloc(sizeof(struct ppt_device), GFP_KERNEL));
  if (ppt == nullptr) return -ENOMEM;
  ppt->pdev = pdev;
  std::snprintf(ppt->node, sizeof(ppt->node), "%s/%s", PCI_PASSTHROUGH_DRIVER_NAME, pci_name(pdev));
  ppt->misc = {.minor = MISC_DYNAMIC_MINOR, .name = ppt->node, .fops = &ppt_fops};
  // The device must not be released between probe and finish: LUO hands
  // it out (this is the probe-vs-retrieve split drivers must make).
  ppt->luo_owned = pci_liveupdate_is_incoming(pdev);
  int err = pci_enable_device(pdev);
  if (err == 0) err = misc_register(&ppt->misc);
  if (err != 0) {
    kfree(ppt);
    return err;
  }
  pci_set_drvdata(pdev, ppt);
  return 0;
}

// An open file (a VMM's, or one LUO holds for a preserved device) keeps
// the state until it is released; the pci_dev itself lives for the boot.
void ppt_remove(struct pci_dev* pdev) {
  auto* ppt = static_cast<struct ppt_device*>(pci_get_drvdata(pdev));
  misc_deregister(&ppt->misc);
  if (ppt->opened) {
    ppt->unbound = true;
    return;
  }
  kfree(ppt);
}

struct pci_driver ppt_driver = {
    .name = PCI_PASSTHROUGH_DRIVER_NAME,
    .id_table = nullptr,  // driver_override only
    .probe = ppt_probe,
    .remove = ppt_remove,
    .shutdown = nullptr,
};

// ---- The file handler ------------------------------------------------------

bool ppt_can_preserve(struct liveupdate_file_handler* /*handler*/, struct file* file) {
  return file->f_op == &ppt_fops;
}

int ppt_preserve(struct liveupdate_file_op_args* args) {
  auto* ppt = reinterpret_cast<struct ppt_device*>(args->file->private_data);
  auto* ser = static_cast<struct pci_passthrough_ser*>(
      kho_alloc_preserve(sizeof(struct pci_passthrough_ser)));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));
  if (int err = pci_liveupdate_preserve(ppt->pdev); err != 0) {
    kho_unpreserve_free(ser);
    return err;
  }
  if (int err = ppt_dma_preserve(ppt, args->session, ser); err != 0) {
    pci_liveupdate_unpreserve(ppt->pdev);
    kho_unpreserve_free(ser);
    return err;
  }
  if (int err = ppt_iommufd_preserve(ppt, args->session); err != 0) {
    ppt_dma_unpreserve(ppt);
    pci_liveupdate_unpreserve(ppt->pdev);
    kho_unpreserve_free(ser);
    return err;
  }
  ser->domain = static_cast<u32>(pci_domain_nr(ppt->pdev->bus));
  ser->bdf = pci_dev_id(ppt->pdev);
  args->serialized_data = virt_to_phys(ser);
  args->private_data = ser;
  return 0;
}

void ppt_unpreserve(struct liveupdate_file_op_args* args) {
  auto* ppt = reinterpret_cast<struct ppt_device*>(args->file->private_data);
  ppt_iommufd_unpreserve(ppt);
  ppt_dma_unpreserve(ppt);
  pci_liveupdate_unpreserve(ppt->pdev);
  kho_unpreserve_free(args->private_data);
}

// The incoming device a record names, bound to this driver, or NULL.
struct ppt_device* ppt_lookup(const struct pci_passthrough_ser* ser) {
  struct pci_dev* pdev =
      pci_get_domain_bus_and_slot(static_cast<int>(ser->domain), ser->bdf >> 8, ser->bdf & 0xff);
  if (pdev == nullptr) return nullptr;
  struct ppt_device* ppt = pdev->driver == &ppt_driver
                               ? static_cast<struct ppt_device*>(pci_get_drvdata(pdev))
                               : nullptr;
  pci_dev_put(pdev);
  return ppt;
}

// Retrieve restores the record (which checks that the previous kernel
// preserved it) and keeps it until finish; a failed retrieve frees it.
int ppt_retrieve(struct liveupdate_file_op_args* args) {
  struct folio* folio = kho_restore_folio(args->serialized_data);
  if (folio == nullptr) return -EINVAL;
  const auto* ser = static_cast<const struct pci_passthrough_ser*>(folio_address(folio));
  struct ppt_device* ppt = ppt_lookup(ser);
  if (ppt == nullptr) {
    folio_put(folio);
    return -ENODEV;
  }
  if (int err = ppt_dma_retrieve(ppt, args->session, ser); err != 0) {
    folio_put(folio);
    return err;
  }
  struct file* file = anon_inode_getfile("[pci-passthrough]", &ppt_fops, ppt, O_RDWR);
  if (IS_ERR(file)) {
    ppt_dma_release(ppt);
    folio_put(folio);
    return static_cast<int>(PTR_ERR(file));
  }
  ppt->luo_owned = false;
  ppt->opened = true;
  file->f_free = ppt_file_free;
  args->file = file;
  return 0;
}

// Retrieved, and a device that came in through an iommufd taken over by
// the retrieved iommufd (as VFIO: finish before binding fails).
bool ppt_can_finish(struct liveupdate_file_op_args* args) {
  if (args->retrieve_status <= 0) return false;
  auto* ppt = reinterpret_cast<struct ppt_device*>(args->file->private_data);
  return !iommufd_device_awaits_bind(&ppt->pdev->dev);
}

// Only after a successful retrieve (can_finish), so the record is restored.
void ppt_finish(struct liveupdate_file_op_args* args) {
  const auto* ser =
      static_cast<const struct pci_passthrough_ser*>(phys_to_virt(args->serialized_data));
  if (struct ppt_device* ppt = ppt_lookup(ser)) pci_liveupdate_finish(ppt->pdev);
  folio_put(virt_to_folio(ser));
}

unsigned long ppt_get_id(struct file* file) {
  return reinterpret_cast<unsigned long>(file->private_data);
}

const struct liveupdate_file_ops ppt_luo_ops = {
    .can_preserve = ppt_can_preserve,
    .preserve = ppt_preserve,
    .unpreserve = ppt_unpreserve,
    .freeze = nullptr,
    .unfreeze = nullptr,
    .retrieve = ppt_retrieve,
    .can_finish = ppt_can_finish,
    .finish = ppt_finish,
    .get_id = ppt_get_id,
    .owner = nullptr,
};

struct liveupdate_file_handler ppt_luo_handler = {
    .ops = &ppt_luo_ops,
    .compatible = PCI_PASSTHROUGH_LUO_COMPATIBLE,
};

}  // namespace

int pci_passthrough_init(void) {
  int err = liveupdate_register_file_handler(&ppt_luo_handler);
  if (err == 0) {
    // Without PCI live update support the handler still works, minus the
    // device: upstream treats -EOPNOTSUPP as success.
    err = pci_liveupdate_register_flb(&ppt_luo_handler);
    if (err == -EOPNOTSUPP) err = 0;
    // The same for the IOMMU's FLB: without it, DMA maps cannot be preserved.
    if (err == 0) {
      err = iommu_liveupdate_register_flb(&ppt_luo_handler);
      if (err == -EOPNOTSUPP) err = 0;
      if (err != 0) pci_liveupdate_unregister_flb(&ppt_luo_handler);
    }
    if (err != 0) liveupdate_unregister_file_handler(&ppt_luo_handler);
  } else if (err == -EOPNOTSUPP) {
    err = 0;
  }
  if (err != 0) {
    pr_err("pci-passthrough: could not register the file handler: %d", err);
    return err;
  }
  return pci_register_driver(&ppt_driver);
}

void pci_passthrough_exit(void) {
  pci_unregister_driver(&ppt_driver);
  iommu_liveupdate_unregister_flb(&ppt_luo_handler);
  pci_liveupdate_unregister_flb(&ppt_luo_handler);
  liveupdate_unregister_file_handler(&ppt_luo_handler);
}

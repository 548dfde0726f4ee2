// vfio-pci: the PCI driver that hands a function to userspace through
// VFIO. It binds only devices whose driver_override names it (the user's
// choice) and registers each with the VFIO core (cdev and group).
//
// Opening the device (a bound cdev, a group's device fd) enables it and
// resets it (FLR) so the VMM starts from a clean function, unless the
// device came in preserved from the previous kernel and LUO handed it
// out: its DMA is still running and must not be disturbed. The last close
// disables interrupts, turns bus mastering off and resets it again.
//
// Config space is reached as VFIO's config region (pread/pwrite at
// VFIO_PCI_CONFIG_OFFSET + register): reads pass through; of the writes
// only the Command register's Memory, Bus Master and INTx Disable bits
// reach the device (vfio-pci virtualizes the rest; here other writes are
// dropped).
#include <cerrno>
#include <cstring>

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/uaccess.h"
#include "vfio_pci_priv.h"

namespace {

constexpr u64 kOffsetMask = (u64{1} << VFIO_PCI_OFFSET_SHIFT) - 1;
constexpr u16 kCommandWritable = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE;

bool HasFlr(struct pci_dev* pdev) {
  u32 cap = 0;
  return pdev->pcie_cap != 0 &&
         pci_read_config_dword(pdev, pdev->pcie_cap + PCI_EXP_DEVCAP, &cap) == 0 &&
         (cap & PCI_EXP_DEVCAP_FLR) != 0 && cap != 0xffffffff;
}

int vfio_pci_open_device(struct vfio_device* core_vdev) {
  struct vfio_pci_core_device* vdev = to_vfio_pci(core_vdev);
  if (int err = pci_enable_device(vdev->pdev); err != 0) return err;
  vdev->reset_works = HasFlr(vdev->pdev);
  // A device LUO handed out keeps running: no reset (its DMA is the VM's).
  if (!vfio_liveupdate_incoming_is_preserved(core_vdev) && vdev->reset_works) pcie_flr(vdev->pdev);
  vdev->irq_type = VFIO_PCI_NUM_IRQS;
  return 0;
}

void vfio_pci_close_device(struct vfio_device* core_vdev) {
  struct vfio_pci_core_device* vdev = to_vfio_pci(core_vdev);
  vfio_pci_irqs_disable(vdev);
  pci_clear_master(vdev->pdev);
  if (vdev->reset_works) pcie_flr(vdev->pdev);
}

long vfio_pci_ioctl_get_info(struct vfio_pci_core_device* vdev, unsigned long arg) {
  struct vfio_device_info info;
  void __user* ubuf = reinterpret_cast<void __user*>(arg);
  constexpr size_t kMinsz = offsetof(struct vfio_device_info, num_irqs) + sizeof(u32);
  if (copy_from_user(&info, ubuf, kMinsz) != 0) return -EFAULT;
  if (info.argsz < kMinsz) return -EINVAL;
  info.flags = VFIO_DEVICE_FLAGS_PCI | (vdev->reset_works ? VFIO_DEVICE_FLAGS_RESET : 0);
  info.num_regions = VFIO_PCI_NUM_REGIONS;
  info.num_irqs = VFIO_PCI_NUM_IRQS;
  return copy_to_user(ubuf, &info, kMinsz) != 0 ? -EFAULT : 0;
}

long vfio_pci_ioctl(struct vfio_device* core_vdev, unsigned int cmd, unsigned long arg) {
  struct vfio_pci_core_device* vdev = to_vfio_pci(core_vdev);
  switch (cmd) {
    case VFIO_DEVICE_GET_INFO:
      return vfio_pci_ioctl_get_info(vdev, arg);
    case VFIO_DEVICE_GET_IRQ_INFO:
      return vfio_pci_ioctl_get_irq_info(vdev, arg);
    case VFIO_DEVICE_SET_IRQS:
      return vfio_pci_ioctl_set_irqs(vdev, arg);
    case VFIO_DEVICE_RESET:
      return vdev->reset_works ? pcie_flr(vdev->pdev) : -EINVAL;
    default:
      return -ENOTTY;
  }
}

// The config register at *ppos, |count| of 1, 2 or 4 bytes, naturally
// aligned: its offset, or -EINVAL.
long ConfigOffset(size_t count, loff_t* ppos) {
  const auto pos = static_cast<u64>(*ppos);
  if ((pos >> VFIO_PCI_OFFSET_SHIFT) != VFIO_PCI_CONFIG_REGION_INDEX) return -EINVAL;
  const u64 off = pos & kOffsetMask;
  if ((count != 1 && count != 2 && count != 4) || off % count != 0 || off + count > 4096) {
    return -EINVAL;
  }
  return static_cast<long>(off);
}

ssize_t vfio_pci_read(struct vfio_device* core_vdev, char* buf, size_t count, loff_t* ppos) {
  struct pci_dev* pdev = to_vfio_pci(core_vdev)->pdev;
  const long off = ConfigOffset(count, ppos);
  if (off < 0) return off;
  u32 val = 0;
  const int where = static_cast<int>(off);
  if (count == 1) {
    u8 v = 0;
    pci_read_config_byte(pdev, where, &v);
    val = v;
  } else if (count == 2) {
    u16 v = 0;
    pci_read_config_word(pdev, where, &v);
    val = v;
  } else {
    pci_read_config_dword(pdev, where, &val);
  }
  if (copy_to_user(buf, &val, count) != 0) return -EFAULT;
  *ppos += static_cast<loff_t>(count);
  return static_cast<ssize_t>(count);
}

ssize_t vfio_pci_write(struct vfio_device* core_vdev, const char* buf, size_t count, loff_t* ppos) {
  struct pci_dev* pdev = to_vfio_pci(core_vdev)->pdev;
  const long off = ConfigOffset(count, ppos);
  if (off < 0) return off;
  u32 val = 0;
  if (copy_from_user(&val, buf, count) != 0) return -EFAULT;
  if (off == PCI_COMMAND && count >= 2) {
    u16 cmd = 0;
    pci_read_config_word(pdev, PCI_COMMAND, &cmd);
    const u16 want = static_cast<u16>((cmd & ~kCommandWritable) | (val & kCommandWritable));
    if ((want & PCI_COMMAND_MASTER) != 0) {
      pci_set_master(pdev);
    } else {
      pci_clear_master(pdev);
    }
    pci_write_config_word(pdev, PCI_COMMAND, want);
  }
  *ppos += static_cast<loff_t>(count);
  return static_cast<ssize_t>(count);
}

const struct vfio_device_ops vfio_pci_ops = {
    .name = "vfio-pci",
    .open_device = vfio_pci_open_device,
    .close_device = vfio_pci_close_device,
    .ioctl = vfio_pci_ioctl,
    .read = vfio_pci_read,
    .write = vfio_pci_write,
};

int vfio_pci_probe(struct pci_dev* pdev, const struct pci_device_id* /*id*/) {
  auto* vdev = static_cast<struct vfio_pci_core_device*>(
      kzalloc(sizeof(struct vfio_pci_core_device), GFP_KERNEL));
  if (vdev == nullptr) return -ENOMEM;
  vdev->pdev = pdev;
  vdev->vdev.dev = &pdev->dev;
  vdev->vdev.ops = &vfio_pci_ops;
  vdev->irq_type = VFIO_PCI_NUM_IRQS;
  if (int err = vfio_register_group_dev(&vdev->vdev); err != 0) {
    kfree(vdev);
    return err;
  }
  pci_set_drvdata(pdev, vdev);
  return 0;
}

void vfio_pci_remove(struct pci_dev* pdev) {
  auto* vdev = static_cast<struct vfio_pci_core_device*>(pci_get_drvdata(pdev));
  pci_set_drvdata(pdev, nullptr);
  if (vfio_unregister_group_dev(&vdev->vdev)) kfree(vdev);
}

}  // namespace

struct pci_driver vfio_pci_driver = {
    .name = "vfio-pci",
    .id_table = nullptr,  // driver_override only
    .probe = vfio_pci_probe,
    .remove = vfio_pci_remove,
    .shutdown = nullptr,
};

struct vfio_pci_core_device* vfio_pci_core_from_pci(struct pci_dev* pdev) {
  if (pdev == nullptr || pdev->driver != &vfio_pci_driver) return nullptr;
  return static_cast<struct vfio_pci_core_device*>(pci_get_drvdata(pdev));
}

bool vfio_pci_is_device_file(struct file* file) {
  struct vfio_device* vdev = vfio_device_from_file(file);
  return vdev != nullptr && vdev->ops == &vfio_pci_ops;
}

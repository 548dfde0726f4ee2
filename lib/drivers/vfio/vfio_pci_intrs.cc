// vfio-pci interrupts: MSI-X vectors forwarded to userspace eventfds
// (VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS; see khosim/uapi/vfio.h
// for what is modelled). Each enabled vector is a Linux irq of this
// kernel whose handler signals the vector's eventfd ("trigger").
//
// Live update: freeze refuses a device with interrupts enabled, or, with
// khosim.vfio_liveupdate_irqs=replay, disables them (vfio_pci_irqs_disable);
// in the next kernel a retrieved device's first MSI-X enable signals
// every vector's trigger once, for what the blackout lost.
#include <cerrno>
#include <cstddef>

#include "khosim/linux/err.h"
#include "khosim/linux/eventfd.h"
#include "khosim/linux/interrupt.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/uaccess.h"
#include "vfio_pci_priv.h"

namespace {

constexpr char kMsixIrqName[] = "vfio-msix";

irqreturn_t vfio_msihandler(int /*irq*/, void* arg) {
  eventfd_signal(static_cast<struct eventfd_ctx*>(arg));
  return IRQ_HANDLED;
}

u32 IrqCount(struct vfio_pci_core_device* vdev, u32 index) {
  struct pci_dev* pdev = vdev->pdev;
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
    case VFIO_PCI_REQ_IRQ_INDEX:
      return 1;
    case VFIO_PCI_MSI_IRQ_INDEX:
      return pdev->msi_cap != 0 ? 1 : 0;
    case VFIO_PCI_MSIX_IRQ_INDEX: {
      const int n = pci_msix_vec_count(pdev);
      return n > 0 ? static_cast<u32>(n) : 0;
    }
    case VFIO_PCI_ERR_IRQ_INDEX:
      return pci_is_pcie(pdev) ? 1 : 0;
    default:
      return 0;
  }
}

// Points vector |vector| at the eventfd |fd| (-1: none).
int vfio_msi_set_vector_signal(struct vfio_pci_core_device* vdev, int vector, s32 fd) {
  const int irq = pci_irq_vector(vdev->pdev, static_cast<unsigned int>(vector));
  if (irq < 0) return irq;
  if (struct eventfd_ctx* old = vdev->msix_trigger[vector]) {
    free_irq(static_cast<unsigned int>(irq), old);
    eventfd_ctx_put(old);
    vdev->msix_trigger[vector] = nullptr;
  }
  if (fd < 0) return 0;
  struct eventfd_ctx* trigger = eventfd_ctx_fdget(fd);
  if (IS_ERR(trigger)) return static_cast<int>(PTR_ERR(trigger));
  if (int err =
          request_irq(static_cast<unsigned int>(irq), vfio_msihandler, 0, kMsixIrqName, trigger);
      err != 0) {
    eventfd_ctx_put(trigger);
    return err;
  }
  vdev->msix_trigger[vector] = trigger;
  return 0;
}

// Vectors [start, start + count) to |fds|; on failure the ones set are
// cleared again.
int vfio_msi_set_block(struct vfio_pci_core_device* vdev, u32 start, u32 count, const s32* fds) {
  if (start + count > static_cast<u32>(vdev->num_ctx)) return -EINVAL;
  for (u32 i = 0; i < count; ++i) {
    if (int err = vfio_msi_set_vector_signal(vdev, static_cast<int>(start + i), fds[i]); err != 0) {
      for (u32 j = 0; j < i; ++j) vfio_msi_set_vector_signal(vdev, static_cast<int>(start + j), -1);
      return err;
    }
  }
  return 0;
}

int vfio_msi_enable(struct vfio_pci_core_device* vdev, u32 nvec) {
  const int got = pci_alloc_irq_vectors(vdev->pdev, 1, nvec, PCI_IRQ_MSIX);
  if (got < 0) return got;
  if (static_cast<u32>(got) < nvec) {
    pci_free_irq_vectors(vdev->pdev);
    return -ENOSPC;
  }
  vdev->msix_trigger =
      static_cast<struct eventfd_ctx**>(kzalloc(sizeof(struct eventfd_ctx*) * nvec, GFP_KERNEL));
  if (vdev->msix_trigger == nullptr) {
    pci_free_irq_vectors(vdev->pdev);
    return -ENOMEM;
  }
  vdev->num_ctx = static_cast<int>(nvec);
  vdev->irq_type = VFIO_PCI_MSIX_IRQ_INDEX;
  return 0;
}

// The retrieved device's first enable in this kernel: every vector once.
void vfio_pci_liveupdate_replay(struct vfio_pci_core_device* vdev) {
  if (!vdev->liveupdate_replay_irqs) return;
  vdev->liveupdate_replay_irqs = false;
  for (int i = 0; i < vdev->num_ctx; ++i) {
    if (vdev->msix_trigger[i] != nullptr) eventfd_signal(vdev->msix_trigger[i]);
  }
}

long vfio_pci_set_msix_trigger(struct vfio_pci_core_device* vdev, u32 flags, u32 start, u32 count,
                               const u8* data) {
  const bool enabled = vdev->irq_type == VFIO_PCI_MSIX_IRQ_INDEX;
  if (enabled && count == 0 && (flags & VFIO_IRQ_SET_DATA_NONE) != 0) {
    vfio_pci_irqs_disable(vdev);
    return 0;
  }
  if (!enabled && vdev->irq_type != VFIO_PCI_NUM_IRQS) return -EINVAL;
  if ((flags & VFIO_IRQ_SET_DATA_EVENTFD) != 0) {
    const auto* fds = reinterpret_cast<const s32*>(data);
    if (enabled) return vfio_msi_set_block(vdev, start, count, fds);
    if (int err = vfio_msi_enable(vdev, start + count); err != 0) return err;
    if (int err = vfio_msi_set_block(vdev, start, count, fds); err != 0) {
      vfio_pci_irqs_disable(vdev);
      return err;
    }
    vfio_pci_liveupdate_replay(vdev);
    return 0;
  }
  if (!enabled) return -EINVAL;
  if (start + count > static_cast<u32>(vdev->num_ctx)) return -EINVAL;
  for (u32 i = 0; i < count; ++i) {
    struct eventfd_ctx* trigger = vdev->msix_trigger[start + i];
    if (trigger == nullptr) continue;
    if ((flags & VFIO_IRQ_SET_DATA_NONE) != 0 || data[i] != 0) eventfd_signal(trigger);
  }
  return 0;
}

size_t DataSize(u32 flags, u32 count) {
  switch (flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_BOOL:
      return count;
    case VFIO_IRQ_SET_DATA_EVENTFD:
      return sizeof(s32) * count;
    default:
      return 0;
  }
}

bool OneBitOf(u32 flags, u32 mask) {
  const u32 bits = flags & mask;
  return bits != 0 && (bits & (bits - 1)) == 0;
}

}  // namespace

long vfio_pci_ioctl_get_irq_info(struct vfio_pci_core_device* vdev, unsigned long arg) {
  struct vfio_irq_info info;
  void __user* ubuf = reinterpret_cast<void __user*>(arg);
  if (copy_from_user(&info, ubuf, sizeof(info)) != 0) return -EFAULT;
  if (info.argsz < sizeof(info) || info.index >= VFIO_PCI_NUM_IRQS) return -EINVAL;
  info.flags = VFIO_IRQ_INFO_EVENTFD;
  info.count = IrqCount(vdev, info.index);
  if (info.index == VFIO_PCI_INTX_IRQ_INDEX) {
    info.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
  } else if (info.index != VFIO_PCI_MSIX_IRQ_INDEX) {
    info.flags |= VFIO_IRQ_INFO_NORESIZE;
  }
  return copy_to_user(ubuf, &info, sizeof(info)) != 0 ? -EFAULT : 0;
}

long vfio_pci_ioctl_set_irqs(struct vfio_pci_core_device* vdev, unsigned long arg) {
  struct vfio_irq_set hdr;
  const auto* ubuf = reinterpret_cast<const u8 __user*>(arg);
  constexpr size_t kMinsz = offsetof(struct vfio_irq_set, count) + sizeof(u32);
  if (copy_from_user(&hdr, ubuf, kMinsz) != 0) return -EFAULT;
  if (hdr.argsz < kMinsz || hdr.index >= VFIO_PCI_NUM_IRQS ||
      (hdr.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) != 0 ||
      !OneBitOf(hdr.flags, VFIO_IRQ_SET_DATA_TYPE_MASK) ||
      !OneBitOf(hdr.flags, VFIO_IRQ_SET_ACTION_TYPE_MASK)) {
    return -EINVAL;
  }
  const u32 max = IrqCount(vdev, hdr.index);
  if (hdr.start >= max || hdr.count > max - hdr.start) {
    if (!(hdr.count == 0 && (hdr.flags & VFIO_IRQ_SET_DATA_NONE) != 0)) return -EINVAL;
  }
  const size_t size = DataSize(hdr.flags, hdr.count);
  if (hdr.argsz - kMinsz < size) return -EINVAL;
  if (hdr.index != VFIO_PCI_MSIX_IRQ_INDEX ||
      (hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK) != VFIO_IRQ_SET_ACTION_TRIGGER) {
    return -ENOTTY;
  }
  u8* data = nullptr;
  if (size != 0) {
    data = static_cast<u8*>(kzalloc(size, GFP_KERNEL));
    if (data == nullptr) return -ENOMEM;
    if (copy_from_user(data, ubuf + kMinsz, size) != 0) {
      kfree(data);
      return -EFAULT;
    }
  }
  const long ret = vfio_pci_set_msix_trigger(vdev, hdr.flags, hdr.start, hdr.count, data);
  kfree(data);
  return ret;
}

void vfio_pci_irqs_disable(struct vfio_pci_core_device* vdev) {
  if (vdev->irq_type != VFIO_PCI_MSIX_IRQ_INDEX) return;
  for (int i = 0; i < vdev->num_ctx; ++i) vfio_msi_set_vector_signal(vdev, i, -1);
  pci_free_irq_vectors(vdev->pdev);
  kfree(vdev->msix_trigger);
  vdev->msix_trigger = nullptr;
  vdev->num_ctx = 0;
  vdev->irq_type = VFIO_PCI_NUM_IRQS;
}

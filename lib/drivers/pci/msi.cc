// PciMsi (see msi.h) and the kernel face of linux/pci.h's interrupt
// vectors.
//
// Enabling follows upstream's order, so that no vector can fire before its
// irq exists: MSI-X Enable and Function Mask go on together; the irqs are
// allocated; INTx is disabled; every table entry is masked (stale entries
// a previous kernel left unmasked included); Function Mask goes off.
// Vectors stay masked until request_irq starts their irq. Disabling masks
// the allocated vectors, clears Enable, re-enables INTx and frees the irqs.
// Config space is reached through the core (fault points
// "pci_config_read" / "pci_config_write"); the MSI-X table's mask bits
// through hw::PciFunction::SetMsixVectorMasked, which stands for the MMIO
// writes to BAR 0 (no fault point: see docs/msix.md).
#include "msi.h"

#include <cerrno>

#include "absl/strings/str_format.h"
#include "khosim/linux/bug.h"

namespace khosim::drivers {

PciMsi::PciMsi(PciCore& core, IrqTable& irqs) : core_(core), irqs_(irqs) {}

int PciMsi::MsixVecCount(struct pci_dev* dev) const {
  if (dev->msix_cap == 0) return -EINVAL;
  uint32_t control = 0;
  core_.ConfigRead(dev, dev->msix_cap + PCI_MSIX_FLAGS, 2, &control);
  return static_cast<int>((control & PCI_MSIX_FLAGS_QSIZE) + 1);
}

void PciMsi::ClearAndSetControl(struct pci_dev* dev, uint16_t clear, uint16_t set) {
  uint32_t control = 0;
  core_.ConfigRead(dev, dev->msix_cap + PCI_MSIX_FLAGS, 2, &control);
  const uint32_t want = (control & ~uint32_t{clear}) | set;
  core_.ConfigWrite(dev, dev->msix_cap + PCI_MSIX_FLAGS, 2, want & 0xffff);
}

void PciMsi::IntxForMsi(struct pci_dev* dev, bool enable) {
  uint32_t command = 0;
  core_.ConfigRead(dev, PCI_COMMAND, 2, &command);
  const uint32_t want =
      enable ? command & ~uint32_t{PCI_COMMAND_INTX_DISABLE} : command | PCI_COMMAND_INTX_DISABLE;
  if (want != command) core_.ConfigWrite(dev, PCI_COMMAND, 2, want & 0xffff);
}

hw::PciFunction* PciMsi::Function(const struct pci_dev* dev) const {
  return core_.hw().Route(static_cast<uint16_t>(dev->bus->domain_nr), dev->bus->number,
                          static_cast<uint8_t>(dev->devfn));
}

void PciMsi::MaskVector(const struct pci_dev* dev, int vector) {
  hw::PciFunction* fn = Function(dev);
  if (fn != nullptr) fn->SetMsixVectorMasked(static_cast<uint16_t>(vector), true);
}

int PciMsi::MsixCapabilityInit(struct pci_dev* dev, int nvec) {
  ClearAndSetControl(dev, 0, PCI_MSIX_FLAGS_MASKALL | PCI_MSIX_FLAGS_ENABLE);
  Vectors& vectors = devices_[dev];  // enabled from here on, as upstream marks it
  const int tsize = MsixVecCount(dev);
  for (int i = 0; i < nvec; ++i) {
    const int irq = irqs_.AllocMsix(dev, static_cast<uint16_t>(i));
    if (irq < 0) {
      for (unsigned allocated : vectors.irqs) irqs_.FreeDesc(allocated);
      devices_.erase(dev);
      ClearAndSetControl(dev, PCI_MSIX_FLAGS_MASKALL | PCI_MSIX_FLAGS_ENABLE, 0);
      return irq;
    }
    vectors.irqs.push_back(static_cast<unsigned>(irq));
  }
  IntxForMsi(dev, false);
  // Mask every entry of the table, not only the allocated ones: a previous
  // kernel may have left any of them unmasked.
  for (int i = 0; i < tsize; ++i) MaskVector(dev, i);
  ClearAndSetControl(dev, PCI_MSIX_FLAGS_MASKALL, 0);
  core_.ctx().Trace("pci", "msix_enable",
                    {{"dev", pci_name(dev)}, {"vectors", absl::StrFormat("%d", nvec)}});
  return 0;
}

int PciMsi::EnableMsixRange(struct pci_dev* dev, int minvec, int maxvec) {
  if (maxvec < minvec) return -ERANGE;
  if (WARN_ON_ONCE(MsixEnabled(dev))) return -EINVAL;
  int nvec = maxvec;
  if (nvec < 1) return -EINVAL;  // pci_msi_supported
  const int hwsize = MsixVecCount(dev);
  if (hwsize < 0) return hwsize;
  if (nvec > hwsize) nvec = hwsize;
  if (nvec < minvec) return -ENOSPC;
  if (Function(dev) == nullptr) return -ENODEV;
  const int err = MsixCapabilityInit(dev, nvec);
  return err != 0 ? err : nvec;
}

int PciMsi::AllocIrqVectors(struct pci_dev* dev, unsigned min_vecs, unsigned max_vecs,
                            unsigned flags) {
  int nvecs = -ENOSPC;
  if ((flags & PCI_IRQ_MSIX) != 0) {
    // Upstream's MSI-X path takes ints.
    nvecs = EnableMsixRange(dev, static_cast<int>(min_vecs), static_cast<int>(max_vecs));
    if (nvecs > 0) return nvecs;
  }
  // MSI is not modelled: it fails as __pci_enable_msi_range does for a
  // device without an MSI capability.
  if ((flags & PCI_IRQ_MSI) != 0) nvecs = -EINVAL;
  // INTx would need min_vecs == 1 and dev->irq, which is 0: no INTx line.
  return nvecs;
}

void PciMsi::FreeIrqVectors(struct pci_dev* dev) {
  auto it = devices_.find(dev);
  if (it == devices_.end()) return;
  Vectors vectors = std::move(it->second);
  for (size_t i = 0; i < vectors.irqs.size(); ++i) MaskVector(dev, static_cast<int>(i));
  ClearAndSetControl(dev, PCI_MSIX_FLAGS_ENABLE, 0);
  IntxForMsi(dev, true);
  devices_.erase(it);
  for (unsigned irq : vectors.irqs) irqs_.FreeDesc(irq);
  core_.ctx().Trace("pci", "msix_disable", {{"dev", pci_name(dev)}});
}

int PciMsi::IrqVector(struct pci_dev* dev, unsigned nr) const {
  auto it = devices_.find(dev);
  if (it == devices_.end()) return nr == 0 ? 0 : -EINVAL;  // dev->irq: no INTx line
  if (nr >= it->second.irqs.size()) return -EINVAL;
  return static_cast<int>(it->second.irqs[nr]);
}

}  // namespace khosim::drivers

namespace {

// As linux/pci.h's other calls: a PCI call on a kernel without a PCI core
// is a harness bug.
khosim::drivers::PciMsi& Msi() {
  khosim::drivers::PciCore* core = khosim::drivers::PciCore::CurrentOrNull();
  if (core == nullptr) khosim::kernel_face::Bug(KHOSIM_SITE, "no PCI core in this kernel");
  return core->msi();
}

}  // namespace

int pci_msix_vec_count(struct pci_dev* dev) { return Msi().MsixVecCount(dev); }

int pci_alloc_irq_vectors(struct pci_dev* dev, unsigned int min_vecs, unsigned int max_vecs,
                          unsigned int flags) {
  return Msi().AllocIrqVectors(dev, min_vecs, max_vecs, flags);
}

void pci_free_irq_vectors(struct pci_dev* dev) { Msi().FreeIrqVectors(dev); }

int pci_irq_vector(struct pci_dev* dev, unsigned int nr) { return Msi().IrqVector(dev, nr); }

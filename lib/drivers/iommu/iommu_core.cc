// The IOMMU core: bring-up, device probe, domains, attach and DMA
// ownership (see khosim/drivers/iommu.h). VT-d programming is in vtd.cc,
// live update in liveupdate.cc, the DMA checks in dma_oracle.cc.
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "khosim/drivers/iommu.h"
#include "khosim/linux/err.h"
#include "khosim/linux/intel_iommu_regs.h"
#include "liveupdate.h"

namespace khosim::drivers {

std::unique_ptr<hw::DmaMemoryOracle> MakeDmaOracle(IommuCore& core, mm::Mm& mm, kho::Kho& kho);

IommuCore::IommuCore(KernelContext& ctx, mm::Mm& mm, kho::Kho& kho, hw::IommuHardware& hw,
                     PciCore* pci)
    : ctx_(ctx),
      mm_(mm),
      kho_(kho),
      hw_(hw),
      pci_(pci),
      liveupdate_(std::make_unique<IommuLiveUpdate>(*this)) {
  oracle_ = MakeDmaOracle(*this, mm_, kho_);
  ctx_.set_slot(KernelSlot::kIommu, this);
  int seq = 0;
  for (const auto& unit : hw_.units()) {
    auto state = std::make_unique<IommuUnitState>();
    state->hw = unit.get();
    state->seq = seq++;
    state->dids.set(0);
    units_.push_back(std::move(state));
  }
}

IommuCore::~IommuCore() {
  // Objects die with the kernel (as pci_dev's do): dev->iommu must not
  // point into freed memory if anything of this boot reads it late.
  for (auto& dev : devices_) {
    if (dev->pdev != nullptr) dev->pdev->dev.iommu = nullptr;
  }
  if (ctx_.slot(KernelSlot::kIommu) == this) ctx_.set_slot(KernelSlot::kIommu, nullptr);
}

IommuCore* IommuCore::CurrentOrNull() {
  KernelContext* ctx = CurrentKernelContext();
  return ctx == nullptr ? nullptr : static_cast<IommuCore*>(ctx->slot(KernelSlot::kIommu));
}

IommuDomain* IommuCore::FromFace(struct iommu_domain* domain) {
  return reinterpret_cast<IommuDomain*>(reinterpret_cast<char*>(domain) -
                                        offsetof(IommuDomain, face));
}

IommuUnitState* IommuCore::UnitFor(const struct pci_dev* pdev) const {
  for (const auto& unit : units_) {
    if (unit->hw->segment() == pdev->bus->domain_nr) return unit.get();
  }
  return nullptr;
}

int IommuCore::Init() {
  liveupdate_->LoadIncoming();
  int err = 0;
  for (auto& unit : units_) {
    if (liveupdate_->AdoptUnit(*unit)) {
      ctx_.Log(absl::StrCat("DMAR: dmar", unit->seq, ": adopted the preserved root table at ",
                            unit->root.ToString()));
      continue;
    }
    BringUp(*unit);
    if (unit->root.IsNull()) err = -ENOMEM;
  }
  if (pci_ != nullptr) {
    for (struct pci_dev* pdev : pci_->devices()) Probe(pdev);
  }
  ctx_.Trace("iommu", "init",
             {{"units", absl::StrCat(units_.size())},
              {"devices", absl::StrCat(devices_.size())},
              {"incoming", liveupdate_->has_incoming() ? "1" : "0"}});
  return err;
}

void IommuCore::Probe(struct pci_dev* pdev) {
  if ((pdev->hdr_type & 0x7f) != PCI_HEADER_TYPE_NORMAL) return;  // bridges do no DMA here
  IommuUnitState* unit = UnitFor(pdev);
  if (unit == nullptr || unit->root.IsNull()) return;
  auto dev = std::make_unique<struct dev_iommu>();
  dev->pdev = pdev;
  dev->unit = unit;
  // Alone in its group unless another non-VF function of its slot shares
  // the bus (no ACS between functions of one device).
  for (struct pci_dev* other : pci_->devices()) {
    if (other != pdev && other->bus == pdev->bus && !other->is_virtfn && !pdev->is_virtfn &&
        PCI_SLOT(other->devfn) == PCI_SLOT(pdev->devfn) &&
        (other->hdr_type & 0x7f) == PCI_HEADER_TYPE_NORMAL) {
      dev->singleton = false;
    }
  }
  pdev->dev.iommu = dev.get();
  devices_.push_back(std::move(dev));
  liveupdate_->RestoreDevice(*devices_.back());
}

struct dev_iommu* IommuCore::StateOf(struct device* dev) const {
  if (dev == nullptr || !dev_is_pci(dev)) return nullptr;
  return dev->iommu;
}

void IommuCore::Shutdown() {
  for (auto& unit : units_) {
    if (unit->root.IsNull()) continue;
    if (!liveupdate_->UnitPreserved(*unit)) {
      unit->hw->WriteReg(DMAR_GCMD_REG, 0);  // translation off
      continue;
    }
    // A preserved unit keeps translating: only the preserved devices may
    // reach memory through it in the next kernel.
    for (unsigned bus = 0; bus < unit->context.size(); ++bus) {
      const PhysAddr table = unit->context[bus];
      if (table.IsNull()) continue;
      if (!liveupdate_->ContextTablePreserved(*unit, static_cast<uint8_t>(bus))) {
        WriteEntry(unit->root, bus * 2, 0);
        continue;
      }
      for (unsigned devfn = 0; devfn < 256; ++devfn) {
        if ((ReadEntry(table, devfn * 2) & 1) == 0) continue;
        bool keep = false;
        for (const auto& dev : devices_) {
          keep |= dev->unit == unit.get() && dev->preserved != nullptr &&
                  dev->pdev->bus->number == bus && dev->pdev->devfn == devfn;
        }
        if (!keep) {
          WriteEntry(table, devfn * 2, 0);
          WriteEntry(table, devfn * 2 + 1, 0);
        }
      }
    }
    FlushContext(*unit);
    FlushIotlb(*unit, 0);
  }
  ctx_.Trace("iommu", "shutdown", {});
}

IommuDomain* IommuCore::NewDomain() {
  auto d = std::make_unique<IommuDomain>();
  d->face.type = IOMMU_DOMAIN_UNMANAGED;
  d->face.pgsize_bitmap = (1ULL << 12) | (1ULL << 21) | (1ULL << 30);
  d->face.geometry.aperture_start = 0;
  domains_.push_back(std::move(d));
  return domains_.back().get();
}

struct iommu_domain* IommuCore::DomainAlloc(struct device* dev) {
  if (StateOf(dev) == nullptr) return static_cast<struct iommu_domain*>(ERR_PTR(-ENODEV));
  const PhysAddr top = AllocTable();
  if (top.IsNull()) return static_cast<struct iommu_domain*>(ERR_PTR(-ENOMEM));
  IommuDomain* d = NewDomain();
  d->top = top;
  d->levels = 4;
  d->face.geometry.aperture_end = (uint64_t{1} << 48) - 1;
  d->tables.insert(top.value());
  return &d->face;
}

void IommuCore::DomainFree(struct iommu_domain* face) {
  if (face == nullptr) return;
  IommuDomain* d = FromFace(face);
  for (const auto& [unit, did] : d->dids) {
    if (did.second > 0) {
      ctx_.Warn(KHOSIM_SITE, "iommu_domain_free: devices are still attached");
      return;
    }
  }
  if (face->preserved_state != nullptr) liveupdate_->UnpreserveDomain(*d);
  if (d->restored) liveupdate_->ForgetRestored(*d);
  FreeTables(*d, d->top, d->levels);
  std::erase_if(domains_, [d](const auto& p) { return p.get() == d; });
}

int IommuCore::Attach(struct iommu_domain* face, struct device* device) {
  struct dev_iommu* dev = StateOf(device);
  if (dev == nullptr) return -ENODEV;
  if (!dev->singleton) return -EINVAL;
  IommuDomain* d = FromFace(face);
  if (dev->domain == d) return 0;
  if (dev->domain != nullptr) return -EBUSY;
  IommuUnitState& unit = *dev->unit;
  auto it = d->dids.find(&unit);
  uint16_t did;
  if (it != d->dids.end()) {
    did = it->second.first;
  } else {
    const int id = AllocDid(unit);
    if (id < 0) return id;
    did = static_cast<uint16_t>(id);
  }
  if (int err = EnsureContextTable(unit, dev->pdev->bus->number); err != 0) {
    if (it == d->dids.end()) unit.dids.reset(did);
    return err;
  }
  auto& slot = d->dids[&unit];
  slot.first = did;
  ++slot.second;
  dev->domain = d;
  WriteContext(unit, dev->pdev, d, did);
  return 0;
}

void IommuCore::Detach(struct iommu_domain* face, struct device* device) {
  struct dev_iommu* dev = StateOf(device);
  IommuDomain* d = FromFace(face);
  if (dev == nullptr || dev->domain != d) {
    ctx_.Warn(KHOSIM_SITE, "iommu_detach_device: not attached to this domain");
    return;
  }
  if (dev->preserved != nullptr) liveupdate_->UnpreserveDevice(*d, *dev);
  IommuUnitState& unit = *dev->unit;
  auto it = d->dids.find(&unit);
  const uint16_t did = it->second.first;
  dev->domain = nullptr;
  WriteContext(unit, dev->pdev, nullptr, did);
  if (--it->second.second == 0) {
    d->dids.erase(it);
    unit.dids.reset(did);
  }
}

struct iommu_domain* IommuCore::DomainOf(struct device* device) {
  struct dev_iommu* dev = StateOf(device);
  return dev == nullptr || dev->domain == nullptr ? nullptr : &dev->domain->face;
}

int IommuCore::ClaimDmaOwner(struct device* device, void* owner) {
  if (owner == nullptr) return -EINVAL;
  struct dev_iommu* dev = StateOf(device);
  if (dev == nullptr) return -ENODEV;
  if (dev->owner_cnt != 0 && dev->owner != owner) return -EPERM;
  if (dev->restored && dev->owner_cnt != 0) dev->restored_claimed = true;
  dev->owner = owner;
  ++dev->owner_cnt;
  return 0;
}

void IommuCore::ReleaseDmaOwner(struct device* device) {
  struct dev_iommu* dev = StateOf(device);
  if (dev == nullptr || dev->owner_cnt == 0) {
    ctx_.Warn(KHOSIM_SITE, "iommu_device_release_dma_owner: not owned");
    return;
  }
  if (--dev->owner_cnt == 0) dev->owner = nullptr;
}

std::vector<const IommuDomain*> IommuCore::domains() const {
  std::vector<const IommuDomain*> out;
  for (const auto& d : domains_) out.push_back(d.get());
  return out;
}

bool IommuCore::IsTablePage(PhysAddr page) const {
  if (unit_tables_.contains(page.value())) return true;
  for (const auto& d : domains_) {
    if (d->tables.contains(page.value())) return true;
  }
  return false;
}

}  // namespace khosim::drivers

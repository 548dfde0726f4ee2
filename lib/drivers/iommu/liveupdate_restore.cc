// IOMMU live update, kernel B: adopting preserved units, domains and
// devices (see liveupdate.h). Every address taken from the record is
// restored through KHO before it is read, so a page the previous kernel
// did not preserve (or a second visit of one) stops the walk.
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/intel_iommu_regs.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "liveupdate.h"

namespace khosim::drivers {
namespace {

constexpr uint64_t kPresent = DMA_PTE_READ | DMA_PTE_WRITE;

// Restores one table page in place, as iommu_restore_page: BUG on failure.
PhysAddr RestoreTablePage(uint64_t pa, const char* what) {
  if ((pa & (PAGE_SIZE - 1)) != 0 || kho_restore_pages(pa, 1) == nullptr) {
    panic("BUG: iommu: liveupdate: cannot restore %s page %#llx", what,
          static_cast<unsigned long long>(pa));
  }
  return PhysAddr(pa);
}

uint64_t ReadEntry(PhysAddr table, unsigned index) {
  return static_cast<const uint64_t*>(phys_to_virt(table.value()))[index];
}

}  // namespace

void IommuLiveUpdate::LoadIncoming() {
  if (loaded_) return;
  loaded_ = true;
  void* obj = nullptr;
  const int err = liveupdate_flb_get_incoming(&iommu_liveupdate_flb, &obj);
  if (err == -ENODATA || err == -ENOENT || err == -EOPNOTSUPP) return;
  if (err != 0) panic("Failed to restore IOMMU Live Update FLB (%d)", err);
  liveupdate_flb_put_incoming(&iommu_liveupdate_flb);
}

bool IommuLiveUpdate::AdoptUnit(IommuUnitState& unit) {
  if (incoming_ == nullptr) return false;
  Incoming& in = *incoming_;
  struct iommu_hw_ser* ser = nullptr;
  for (struct iommu_hw_ser* u : in.units) {
    if (u->type == IOMMU_INTEL && u->token == unit.hw->mmio_base()) ser = u;
  }
  if (ser == nullptr || in.adopted_units.contains(virt_to_phys(ser))) return false;
  in.adopted_units[virt_to_phys(ser)] = &unit;
  unit.root = RestoreTablePage(ser->intel.root_table, "root table");
  core_.unit_tables_.insert(unit.root.value());
  absl::flat_hash_set<uint64_t> contexts;
  for (unsigned bit = 0; bit < 512; ++bit) {
    if ((ser->intel.context_tables_bitmap[bit / 64] & (1ULL << (bit % 64))) == 0) continue;
    const uint64_t root_lo = ReadEntry(unit.root, (bit / 2) * 2);
    if ((root_lo & 1) == 0) {
      WARN(true, "iommu: dmar%d: preserved context table of bus %u is not in the root table",
           unit.seq, bit / 2);
      continue;
    }
    const PhysAddr table = RestoreTablePage(root_lo & VTD_PAGE_MASK, "context table");
    contexts.insert(table.value());
    core_.unit_tables_.insert(table.value());
    unit.context[bit / 2] = table;
  }
  // A root entry naming a page that was not handed over as a context table
  // is not this kernel's to follow: cut it off before anything walks it.
  for (unsigned bus = 0; bus < 256; ++bus) {
    const uint64_t root_lo = ReadEntry(unit.root, bus * 2);
    if ((root_lo & 1) != 0 && !contexts.contains(root_lo & VTD_PAGE_MASK)) {
      WARN(true, "iommu: dmar%d: root entry of bus %u names an unpreserved context table", unit.seq,
           bus);
      core_.WriteEntry(unit.root, bus * 2, 0);
      unit.context[bus] = PhysAddr();
    }
  }
  WARN(unit.hw->root_table() != unit.root,
       "iommu: dmar%d: the unit walks %s, the preserved root table is %s", unit.seq,
       unit.hw->root_table().ToString().c_str(), unit.root.ToString().c_str());
  ser->intel.restored = 1;
  ser->hdr.flags |= IOMMU_SER_FLAG_INCOMING;
  unit.adopted = true;
  for (struct iommu_device_ser* dev : in.devices) {
    const uint64_t did = dev->domain_iommu_ser.attachment_id;
    if (dev->domain_iommu_ser.iommu_phys != virt_to_phys(ser)) continue;
    if (did == 0 || did >= unit.dids.size()) {
      WARN(true, "iommu: dmar%d: preserved domain id %llu out of range", unit.seq,
           static_cast<unsigned long long>(did));
      continue;
    }
    unit.dids.set(did);
  }
  // Translation is already on (the register is not rewritten); enabling it
  // again is what init_dmars does, and a no-op.
  unit.hw->WriteReg(DMAR_GCMD_REG, DMA_GCMD_TE);
  return true;
}

void IommuLiveUpdate::RestoreTables(IommuDomain& d, PhysAddr table, unsigned level) {
  d.tables.insert(table.value());
  if (level == 1) return;
  for (unsigned i = 0; i < 512; ++i) {
    const uint64_t pte = ReadEntry(table, i);
    if ((pte & kPresent) == 0 || (pte & DMA_PTE_LARGE_PAGE) != 0) continue;
    RestoreTables(d, RestoreTablePage(pte & DMA_PTE_ADDR_MASK, "page table"), level - 1);
  }
}

IommuDomain* IommuLiveUpdate::RestoreDomain(struct iommu_domain_ser* ser) {
  const uint64_t slot = virt_to_phys(ser);
  if (auto it = incoming_->restored.find(slot); it != incoming_->restored.end()) return it->second;
  const uint64_t levels = ser->top_level + 1;
  if (levels < 3 || levels > 5 || ser->vasz != VTD_PAGE_SHIFT + 9 * levels) {
    WARN(true, "iommu: liveupdate: preserved domain at %#llx has level %llu and width %u",
         static_cast<unsigned long long>(slot), static_cast<unsigned long long>(ser->top_level),
         ser->vasz);
    return nullptr;
  }
  IommuDomain* d = core_.NewDomain();
  d->levels = static_cast<unsigned>(levels);
  d->face.geometry.aperture_end = (uint64_t{1} << ser->vasz) - 1;
  d->top = RestoreTablePage(ser->top_table_phys, "top page table");
  RestoreTables(*d, d->top, d->levels);
  d->restored = true;
  d->restored_from = slot;
  ser->restored_domain = reinterpret_cast<uintptr_t>(&d->face);
  ser->hdr.flags |= IOMMU_SER_FLAG_INCOMING;
  incoming_->restored[slot] = d;
  return d;
}

void IommuLiveUpdate::RestoreDevice(struct dev_iommu& dev) {
  if (incoming_ == nullptr) return;
  const uint32_t devid = static_cast<uint32_t>(dev.pdev->bus->number << 8 | dev.pdev->devfn);
  struct iommu_device_ser* ser = nullptr;
  for (struct iommu_device_ser* s : incoming_->devices) {
    if (s->devid == devid && s->pci_domain_nr == static_cast<uint32_t>(dev.pdev->bus->domain_nr)) {
      ser = s;
    }
  }
  if (ser == nullptr || (ser->hdr.flags & IOMMU_SER_FLAG_INCOMING) != 0) return;
  if (!incoming_->adopted_units.contains(ser->domain_iommu_ser.iommu_phys)) {
    pr_err("iommu: liveupdate: %s was preserved behind a unit this kernel did not adopt",
           pci_name(dev.pdev));
    return;
  }
  auto* dser =
      static_cast<struct iommu_domain_ser*>(phys_to_virt(ser->domain_iommu_ser.domain_phys));
  IommuDomain* d = RestoreDomain(dser);
  const uint64_t did = ser->domain_iommu_ser.attachment_id;
  if (d == nullptr || did == 0 || did >= dev.unit->dids.size()) {
    pr_err("iommu: liveupdate: %s: its preserved domain cannot be restored; DMA blocked",
           pci_name(dev.pdev));
    Block(*dev.unit, dev.pdev->bus->number, static_cast<uint8_t>(dev.pdev->devfn));
    return;
  }
  // Kernel A left the context entry in place; check it names this domain.
  const PhysAddr ctx = dev.unit->context[dev.pdev->bus->number];
  const uint64_t lo = ctx.IsNull() ? 0 : ReadEntry(ctx, dev.pdev->devfn * 2);
  WARN((lo & 1) == 0 || (lo & VTD_PAGE_MASK) != d->top.value(),
       "iommu: liveupdate: %s: the context entry does not point at its preserved domain",
       pci_name(dev.pdev));
  auto& slot = d->dids[dev.unit];
  slot.first = static_cast<uint16_t>(did);
  ++slot.second;
  dev.domain = d;
  dev.owner = reinterpret_cast<void*>(static_cast<uintptr_t>(ser->dma_owner_token));
  dev.owner_cnt = 1;
  dev.restored = true;
  ser->intel.restored = 1;
  ser->hdr.flags |= IOMMU_SER_FLAG_INCOMING;
  pr_info("iommu: %s: restored its preserved domain", pci_name(dev.pdev));
}

IommuDomain* IommuLiveUpdate::RestoredDomain(uint64_t domain_ser_phys) const {
  if (incoming_ == nullptr) return nullptr;
  auto it = incoming_->restored.find(domain_ser_phys);
  return it == incoming_->restored.end() ? nullptr : it->second;
}

void IommuLiveUpdate::ForgetRestored(const IommuDomain& d) {
  if (incoming_ == nullptr) return;
  if (auto it = incoming_->restored.find(d.restored_from); it != incoming_->restored.end()) {
    it->second = nullptr;
  }
}

void IommuLiveUpdate::Block(IommuUnitState& unit, uint8_t bus, uint8_t devfn) {
  const PhysAddr table = unit.context[bus];
  if (table.IsNull()) return;
  core_.WriteEntry(table, devfn * 2u, 0);
  core_.WriteEntry(table, devfn * 2u + 1, 0);
  core_.FlushContext(unit);
  core_.FlushIotlb(unit, 0);
}

void IommuLiveUpdate::ReleaseUnrestored() {
  // A device whose domain was never restored (not found at probe, or its
  // record refused) may still have a context entry naming that domain's
  // top table: block it before the table is freed below, or the unit would
  // walk freed memory.
  absl::flat_hash_set<uint64_t> tops;
  for (struct iommu_domain_ser* d : incoming_->domains) {
    if (!incoming_->restored.contains(virt_to_phys(d))) tops.insert(d->top_table_phys);
  }
  for (auto& [slot, unit] : incoming_->adopted_units) {
    for (unsigned bus = 0; bus < 256; ++bus) {
      if (unit->context[bus].IsNull()) continue;
      for (unsigned devfn = 0; devfn < 256; ++devfn) {
        const uint64_t lo = ReadEntry(unit->context[bus], devfn * 2);
        if ((lo & 1) != 0 && tops.contains(lo & VTD_PAGE_MASK)) {
          Block(*unit, static_cast<uint8_t>(bus), static_cast<uint8_t>(devfn));
        }
      }
    }
  }
  // Tables of domains no device came back for, and of units this machine
  // does not have, are still preserved memory: free them rather than leak.
  std::vector<PhysAddr> pages;
  const auto collect = [&](auto&& self, uint64_t pa, unsigned level) -> void {
    if ((pa & (PAGE_SIZE - 1)) != 0 || kho_restore_pages(pa, 1) == nullptr) return;
    pages.push_back(PhysAddr(pa));
    if (level <= 1) return;
    for (unsigned i = 0; i < 512; ++i) {
      const uint64_t pte = ReadEntry(PhysAddr(pa), i);
      if ((pte & kPresent) != 0 && (pte & DMA_PTE_LARGE_PAGE) == 0) {
        self(self, pte & DMA_PTE_ADDR_MASK, level - 1);
      }
    }
  };
  for (struct iommu_domain_ser* d : incoming_->domains) {
    if (incoming_->restored.contains(virt_to_phys(d))) continue;
    const uint64_t levels = d->top_level + 1;
    if (levels >= 3 && levels <= 5) collect(collect, d->top_table_phys, levels);
  }
  for (struct iommu_hw_ser* u : incoming_->units) {
    if (incoming_->adopted_units.contains(virt_to_phys(u))) continue;
    const uint64_t root = u->intel.root_table;
    if ((root & (PAGE_SIZE - 1)) != 0 || kho_restore_pages(root, 1) == nullptr) continue;
    pages.push_back(PhysAddr(root));
    for (unsigned bus = 0; bus < 256; ++bus) {
      const uint64_t lo = ReadEntry(PhysAddr(root), bus * 2);
      const uint64_t table = lo & VTD_PAGE_MASK;
      if ((lo & 1) != 0 && kho_restore_pages(table, 1) != nullptr) pages.push_back(PhysAddr(table));
    }
  }
  for (PhysAddr pa : pages) __free_pages(pfn_to_page(pa.value() >> PAGE_SHIFT), 0);
}

}  // namespace khosim::drivers

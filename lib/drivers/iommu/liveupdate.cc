// IOMMU live update ("iommu: Add live update state preservation" v5; see
// liveupdate.h and linux/kho/abi/iommu.h).
//
// Lifecycle:
//   kernel A  the first file of a linked handler creates the FLB object:
//             the iommu_flb_ser and the first page of each array.
//             iommu_preserve_domain preserves every table page of the
//             domain and records it; iommu_preserve_device records the
//             device and, once per unit, the unit with its root table and
//             every context table it has (later ones are added on the next
//             device). Shutdown keeps preserved units translating.
//   kexec     the unit keeps walking A's tables, which are preserved pages.
//   kernel B  pci_iommu_init reads the FLB, adopts each preserved unit in
//             place, and at probe restores each preserved device's domain
//             (its table pages restored in place, the device attached, its
//             group owned by the preserved token). The FLB's finish frees
//             the arrays, and the tables of anything never adopted.
#include "liveupdate.h"

#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/intel_iommu_regs.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/luo/luo.h"

namespace khosim::drivers {

namespace {

IommuLiveUpdate* Current() {
  IommuCore* core = IommuCore::CurrentOrNull();
  return core == nullptr ? nullptr : &core->liveupdate();
}

int flb_preserve(struct liveupdate_flb_op_args* args) {
  IommuLiveUpdate* lu = Current();
  return lu == nullptr ? -ENODEV : lu->FlbPreserve(args);
}
void flb_unpreserve(struct liveupdate_flb_op_args* args) {
  if (IommuLiveUpdate* lu = Current()) lu->FlbUnpreserve(args);
}
int flb_retrieve(struct liveupdate_flb_op_args* args) {
  IommuLiveUpdate* lu = Current();
  return lu == nullptr ? -ENODEV : lu->FlbRetrieve(args);
}
void flb_finish(struct liveupdate_flb_op_args* args) {
  if (IommuLiveUpdate* lu = Current()) lu->FlbFinish(args);
}

const struct liveupdate_flb_ops iommu_flb_ops = {
    .preserve = flb_preserve,
    .unpreserve = flb_unpreserve,
    .retrieve = flb_retrieve,
    .finish = flb_finish,
    .owner = nullptr,
};

uint64_t PageSize() { return PAGE_SIZE; }
uint64_t PerPage(size_t size) { return (PageSize() - sizeof(struct iommu_array_hdr_ser)) / size; }
uint16_t Bdf(const struct pci_dev* pdev) {
  return static_cast<uint16_t>(pdev->bus->number << 8 | pdev->devfn);
}

}  // namespace

struct liveupdate_flb iommu_liveupdate_flb = {
    .ops = &iommu_flb_ops,
    .compatible = IOMMU_LUO_FLB_COMPATIBLE,
};

IommuLiveUpdate::IommuLiveUpdate(IommuCore& core) : core_(core) {}
IommuLiveUpdate::~IommuLiveUpdate() = default;

// ---- FLB callbacks ---------------------------------------------------------

int IommuLiveUpdate::FlbPreserve(struct liveupdate_flb_op_args* args) {
  auto out = std::make_unique<Outgoing>();
  out->ser = static_cast<struct iommu_flb_ser*>(kho_alloc_preserve(sizeof(struct iommu_flb_ser)));
  if (IS_ERR(out->ser)) return static_cast<int>(PTR_ERR(out->ser));
  std::memset(out->ser, 0, sizeof(*out->ser));
  out->ser->version = IOMMU_LUO_FLB_VERSION;
  int err = 0;
  for (auto [chain, head] : {std::pair{&out->units, &out->ser->iommu_array_phys},
                             std::pair{&out->domains, &out->ser->iommu_domain_array_phys},
                             std::pair{&out->devices, &out->ser->device_array_phys}}) {
    auto* page = static_cast<struct iommu_array_hdr_ser*>(kho_alloc_preserve(PageSize()));
    if (IS_ERR(page)) {
      err = static_cast<int>(PTR_ERR(page));
      break;
    }
    std::memset(page, 0, PageSize());
    chain->pages.push_back(page);
    *head = virt_to_phys(page);
  }
  if (err != 0) {
    for (Chain* chain : {&out->units, &out->domains, &out->devices}) {
      for (auto* page : chain->pages) kho_unpreserve_free(page);
    }
    kho_unpreserve_free(out->ser);
    return err;
  }
  args->obj = out.get();
  args->data = virt_to_phys(out->ser);
  outgoing_ = std::move(out);
  return 0;
}

void IommuLiveUpdate::FlbUnpreserve(struct liveupdate_flb_op_args* args) {
  auto* out = static_cast<Outgoing*>(args->obj);
  WARN(!out->unit_sers.empty(), "iommu: liveupdate: %zu unit(s) still preserved at unpreserve",
       out->unit_sers.size());
  for (Chain* chain : {&out->units, &out->domains, &out->devices}) {
    for (auto* page : chain->pages) kho_unpreserve_free(page);
  }
  kho_unpreserve_free(out->ser);
  outgoing_.reset();
}

void IommuLiveUpdate::RestoreChain(uint64_t head, size_t size, const char* what,
                                   std::vector<void*>* objects) {
  for (uint64_t pa = head; pa != 0;) {
    struct folio* folio = kho_restore_folio(pa);
    // Upstream BUG_ONs; a chain that loops back reaches a page already
    // restored, which fails here too.
    if (folio == nullptr)
      panic("BUG: iommu: liveupdate: cannot restore %s array page %#llx", what,
            static_cast<unsigned long long>(pa));
    auto* hdr = static_cast<struct iommu_array_hdr_ser*>(folio_address(folio));
    incoming_->pages.push_back(hdr);
    if (hdr->nr_objects > PerPage(size)) {
      panic(
          "iommu: liveupdate: %s array page %#llx claims %llu objects, room for %llu "
          "(upstream reads past the page)",
          what, static_cast<unsigned long long>(pa),
          static_cast<unsigned long long>(hdr->nr_objects),
          static_cast<unsigned long long>(PerPage(size)));
    }
    auto* first = reinterpret_cast<char*>(hdr + 1);
    for (uint64_t i = 0; i < hdr->nr_objects; ++i) objects->push_back(first + i * size);
    pa = hdr->next_array_phys;
  }
}

int IommuLiveUpdate::FlbRetrieve(struct liveupdate_flb_op_args* args) {
  struct folio* folio = kho_restore_folio(args->data);
  if (folio == nullptr) panic("BUG: iommu: liveupdate: cannot restore the FLB page");
  auto* ser = static_cast<struct iommu_flb_ser*>(folio_address(folio));
  if (ser->version != IOMMU_LUO_FLB_VERSION) {
    panic("iommu: liveupdate: incoming FLB version %llu, this kernel knows %d",
          static_cast<unsigned long long>(ser->version), IOMMU_LUO_FLB_VERSION);
  }
  if (ser->iommu_array_phys == 0 || ser->iommu_domain_array_phys == 0 ||
      ser->device_array_phys == 0) {
    panic("iommu: liveupdate: incoming FLB without an object array");
  }
  incoming_ = std::make_unique<Incoming>();
  Incoming& in = *incoming_;
  in.ser = ser;
  std::vector<void*> units, domains, devices;
  RestoreChain(ser->iommu_array_phys, sizeof(struct iommu_hw_ser), "unit", &units);
  RestoreChain(ser->iommu_domain_array_phys, sizeof(struct iommu_domain_ser), "domain", &domains);
  RestoreChain(ser->device_array_phys, sizeof(struct iommu_device_ser), "device", &devices);
  const auto live = [](const struct iommu_hdr_ser& hdr) {
    return (hdr.flags & IOMMU_SER_FLAG_DELETED) == 0 && hdr.ref_count != 0;
  };
  for (void* p : units) {
    auto* u = static_cast<struct iommu_hw_ser*>(p);
    if (!live(u->hdr)) continue;
    in.units.push_back(u);
    in.unit_slots.insert(virt_to_phys(u));
  }
  for (void* p : domains) {
    auto* d = static_cast<struct iommu_domain_ser*>(p);
    if (!live(d->hdr)) continue;
    in.domains.push_back(d);
    in.domain_slots.insert(virt_to_phys(d));
  }
  for (void* p : devices) {
    auto* dev = static_cast<struct iommu_device_ser*>(p);
    if (!live(dev->hdr)) continue;
    const struct iommu_dev_map_ser& map = dev->domain_iommu_ser;
    if (!in.domain_slots.contains(map.domain_phys) || !in.unit_slots.contains(map.iommu_phys)) {
      pr_err(
          "iommu: liveupdate: device %04x:%02x:%02x.%d names no preserved domain or unit; "
          "not restored",
          dev->pci_domain_nr, (dev->devid >> 8) & 0xff, PCI_SLOT(dev->devid & 0xff),
          PCI_FUNC(dev->devid & 0xff));
      continue;
    }
    in.devices.push_back(dev);
  }
  args->obj = &in;
  return 0;
}

void IommuLiveUpdate::FlbFinish(struct liveupdate_flb_op_args* args) {
  ReleaseUnrestored();
  for (void* page : incoming_->pages) folio_put(virt_to_folio(page));
  folio_put(virt_to_folio(incoming_->ser));
  incoming_.reset();
}

// ---- Kernel A --------------------------------------------------------------

IommuLiveUpdate::Outgoing* IommuLiveUpdate::GetOutgoing(int* err) {
  void* obj = nullptr;
  *err = liveupdate_flb_get_outgoing(&iommu_liveupdate_flb, &obj);
  if (*err != 0) return nullptr;
  if (obj == nullptr) {
    *err = -ENOENT;
    PutOutgoing();
  }
  return static_cast<Outgoing*>(obj);
}

void IommuLiveUpdate::PutOutgoing() {
  luo::Luo* luo = luo::Luo::CurrentOrNull();
  // The 7.2 profile's get_outgoing hands out no reference.
  if (luo == nullptr || luo->profile() != luo::LuoProfile::k7_2) {
    liveupdate_flb_put_outgoing(&iommu_liveupdate_flb);
  }
}

void* IommuLiveUpdate::Append(Chain& chain, uint64_t* /*head_phys*/, size_t size, int* err) {
  struct iommu_array_hdr_ser* last = chain.pages.back();
  if (last->nr_objects == PerPage(size)) {
    auto* page = static_cast<struct iommu_array_hdr_ser*>(kho_alloc_preserve(PageSize()));
    if (IS_ERR(page)) {
      *err = static_cast<int>(PTR_ERR(page));
      return nullptr;
    }
    std::memset(page, 0, PageSize());
    last->next_array_phys = virt_to_phys(page);
    chain.pages.push_back(page);
    last = page;
  }
  // Slots are never reused: a DELETED one stays where it is.
  void* slot = reinterpret_cast<char*>(last + 1) + last->nr_objects * size;
  ++last->nr_objects;
  std::memset(slot, 0, size);
  return slot;
}

int IommuLiveUpdate::PreserveTable(PhysAddr table) {
  return kho_preserve_pages(pfn_to_page(table.value() >> PAGE_SHIFT), 1);
}

void IommuLiveUpdate::UnpreserveTable(PhysAddr table) {
  kho_unpreserve_pages(pfn_to_page(table.value() >> PAGE_SHIFT), 1);
}

int IommuLiveUpdate::PreserveDomain(IommuDomain& d) {
  if (d.face.preserved_state != nullptr) return -EBUSY;
  int err = 0;
  Outgoing* out = GetOutgoing(&err);
  if (out == nullptr) return err;
  std::vector<uint64_t> done;
  for (uint64_t table : d.tables) {
    if ((err = PreserveTable(PhysAddr(table))) != 0) break;
    done.push_back(table);
  }
  struct iommu_domain_ser* ser = nullptr;
  if (err == 0) {
    ser = static_cast<struct iommu_domain_ser*>(
        Append(out->domains, nullptr, sizeof(struct iommu_domain_ser), &err));
  }
  if (err != 0) {
    for (uint64_t table : done) UnpreserveTable(PhysAddr(table));
    PutOutgoing();
    return err;
  }
  ser->hdr.ref_count = 1;
  ser->top_table_phys = d.top.value();
  ser->top_level = d.levels - 1;
  ser->vasz = VTD_PAGE_SHIFT + 9 * d.levels;
  d.face.preserved_state = ser;
  PutOutgoing();
  return 0;
}

void IommuLiveUpdate::UnpreserveDomain(IommuDomain& d) {
  struct iommu_domain_ser* ser = d.face.preserved_state;
  if (ser == nullptr) return;
  WARN(ser->hdr.ref_count > 1, "iommu: liveupdate: unpreserving a domain with %u device(s)",
       ser->hdr.ref_count - 1);
  for (uint64_t table : d.tables) UnpreserveTable(PhysAddr(table));
  ser->hdr.ref_count = 0;
  ser->hdr.flags |= IOMMU_SER_FLAG_DELETED;
  d.face.preserved_state = nullptr;
}

struct iommu_hw_ser* IommuLiveUpdate::PreserveUnit(Outgoing& out, IommuUnitState& unit, int* err) {
  struct iommu_hw_ser* ser;
  if (auto it = out.unit_sers.find(&unit); it != out.unit_sers.end()) {
    ser = it->second;
  } else {
    if ((*err = PreserveTable(unit.root)) != 0) return nullptr;
    ser = static_cast<struct iommu_hw_ser*>(
        Append(out.units, nullptr, sizeof(struct iommu_hw_ser), err));
    if (ser == nullptr) {
      UnpreserveTable(unit.root);
      return nullptr;
    }
    ser->token = unit.hw->mmio_base();
    ser->type = IOMMU_INTEL;
    ser->intel.phys_addr = unit.hw->mmio_base();
    ser->intel.root_table = unit.root.value();
    out.unit_sers[&unit] = ser;
  }
  // Every context table the unit has now (a device's aliases may use any).
  for (unsigned bus = 0; bus < unit.context.size(); ++bus) {
    const unsigned bit = bus * 2;
    const uint64_t mask = 1ULL << (bit % 64);
    if (unit.context[bus].IsNull() || (ser->intel.context_tables_bitmap[bit / 64] & mask)) continue;
    if ((*err = PreserveTable(unit.context[bus])) != 0) {
      if (ser->hdr.ref_count == 0) ReleaseUnit(out, unit, ser);
      return nullptr;
    }
    ser->intel.context_tables_bitmap[bit / 64] |= mask;
  }
  return ser;
}

void IommuLiveUpdate::ReleaseUnit(Outgoing& out, IommuUnitState& unit, struct iommu_hw_ser* ser) {
  for (unsigned bus = 0; bus < unit.context.size(); ++bus) {
    const unsigned bit = bus * 2;
    if (ser->intel.context_tables_bitmap[bit / 64] & (1ULL << (bit % 64))) {
      UnpreserveTable(unit.context[bus]);
    }
  }
  UnpreserveTable(unit.root);
  std::memset(ser->intel.context_tables_bitmap, 0, sizeof(ser->intel.context_tables_bitmap));
  ser->hdr.flags |= IOMMU_SER_FLAG_DELETED;
  out.unit_sers.erase(&unit);
}

int IommuLiveUpdate::PreserveDevice(IommuDomain& d, struct dev_iommu& dev, uint64_t token) {
  // The order of upstream's checks decides which errno a caller sees.
  if (dev.owner_cnt == 0) return -EINVAL;
  if (d.face.preserved_state == nullptr) return -EINVAL;
  if (dev.preserved != nullptr) return -EBUSY;
  if (!dev.singleton) return -EOPNOTSUPP;
  if (dev.domain != &d) return -EINVAL;
  int err = 0;
  Outgoing* out = GetOutgoing(&err);
  if (out == nullptr) return err;
  struct iommu_hw_ser* unit = PreserveUnit(*out, *dev.unit, &err);
  struct iommu_device_ser* ser = nullptr;
  if (unit != nullptr) {
    ser = static_cast<struct iommu_device_ser*>(
        Append(out->devices, nullptr, sizeof(struct iommu_device_ser), &err));
    if (ser == nullptr && unit->hdr.ref_count == 0) ReleaseUnit(*out, *dev.unit, unit);
  }
  if (ser == nullptr) {
    PutOutgoing();
    return err;
  }
  ser->hdr.ref_count = 1;
  ser->devid = Bdf(dev.pdev);
  ser->pci_domain_nr = static_cast<uint32_t>(dev.pdev->bus->domain_nr);
  ser->dma_owner_token = token;
  ser->domain_iommu_ser.attachment_id = d.dids.at(dev.unit).first;
  ser->domain_iommu_ser.domain_phys = virt_to_phys(d.face.preserved_state);
  ser->domain_iommu_ser.iommu_phys = virt_to_phys(unit);
  ++unit->hdr.ref_count;
  ++d.face.preserved_state->hdr.ref_count;
  dev.preserved = ser;
  PutOutgoing();
  return 0;
}

void IommuLiveUpdate::UnpreserveDevice(IommuDomain& d, struct dev_iommu& dev) {
  struct iommu_device_ser* ser = dev.preserved;
  if (ser == nullptr || outgoing_ == nullptr) return;
  ser->hdr.ref_count = 0;
  ser->hdr.flags |= IOMMU_SER_FLAG_DELETED;
  dev.preserved = nullptr;
  if (d.face.preserved_state != nullptr) --d.face.preserved_state->hdr.ref_count;
  auto it = outgoing_->unit_sers.find(dev.unit);
  if (it != outgoing_->unit_sers.end() && --it->second->hdr.ref_count == 0) {
    ReleaseUnit(*outgoing_, *dev.unit, it->second);
  }
}

bool IommuLiveUpdate::UnitPreserved(const IommuUnitState& unit) const {
  return outgoing_ != nullptr && outgoing_->unit_sers.contains(&unit);
}

bool IommuLiveUpdate::ContextTablePreserved(const IommuUnitState& unit, uint8_t bus) const {
  if (outgoing_ == nullptr) return false;
  auto it = outgoing_->unit_sers.find(&unit);
  if (it == outgoing_->unit_sers.end()) return false;
  const unsigned bit = bus * 2u;
  return (it->second->intel.context_tables_bitmap[bit / 64] & (1ULL << (bit % 64))) != 0;
}

}  // namespace khosim::drivers

// PCI live update ("PCI: liveupdate" v9): the FLB "pci" and the per-device
// preserve / unpreserve / finish walks.
//
// Lifecycle:
//   kernel A  the first file of a linked handler creates the FLB object: a
//             preserved pci_ser and an empty block set. Each
//             pci_liveupdate_preserve(dev) adds (or references) an entry
//             for dev and each bridge above it. Shutdown freezes every
//             device; preserved ones keep bus mastering.
//   kexec     only the pci_ser page and the block chain cross.
//   kernel B  the first device enumerated retrieves the FLB: the chain is
//             restored (hostile: bounded, cycle-checked by the block set),
//             and every entry with a refcount becomes a lookup entry.
//             Each device found there is incoming until its driver calls
//             pci_liveupdate_finish; the FLB's finish, after the last
//             dependent file, panics if any device was never finished.
// Where upstream panics (version, restore, duplicate device, retrieval
// error), the simulator panics too: DMA from a device nobody knows about
// would corrupt memory silently.
#include "liveupdate.h"

#include <cerrno>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho_block.h"
#include "khosim/linux/mm.h"
#include "khosim/luo/luo.h"

namespace khosim::drivers {

struct PciLiveUpdate::Outgoing {
  struct pci_ser* ser = nullptr;
  struct kho_block_set set = {};
  struct kho_block_set_it append = {};  // where the next new slot goes
  u64 used = 0;                         // slots handed out, live or freed
  u64 freed = 0;                        // of those, refcount 0 (reusable)
};

struct PciLiveUpdate::Incoming {
  struct pci_ser* ser = nullptr;
  struct kho_block_set set = {};
  absl::flat_hash_map<uint64_t, struct pci_dev_ser*> devices;  // (domain << 16) | bdf
};

namespace {

uint64_t KeyOf(uint32_t domain, uint16_t bdf) { return (uint64_t{domain} << 16) | bdf; }
uint64_t KeyOf(const struct pci_dev* dev) {
  return KeyOf(static_cast<uint32_t>(pci_domain_nr(dev->bus)), pci_dev_id(dev));
}

std::string NameOf(const struct pci_dev_ser* ser) {
  return absl::StrFormat("%04x:%02x:%02x.%d", ser->domain, ser->bdf >> 8, PCI_SLOT(ser->bdf & 0xff),
                         PCI_FUNC(ser->bdf & 0xff));
}

void DevLog(const struct pci_dev* dev, const char* level, const std::string& what) {
  pr_info("pci %s: %sliveupdate: %s", pci_name(dev), level, what.c_str());
}

PciLiveUpdate* Current() {
  PciCore* core = PciCore::CurrentOrNull();
  return core == nullptr ? nullptr : &core->liveupdate();
}

int flb_preserve(struct liveupdate_flb_op_args* args) {
  PciLiveUpdate* lu = Current();
  return lu == nullptr ? -ENODEV : lu->FlbPreserve(args);
}
void flb_unpreserve(struct liveupdate_flb_op_args* args) {
  if (PciLiveUpdate* lu = Current()) lu->FlbUnpreserve(args);
}
int flb_retrieve(struct liveupdate_flb_op_args* args) {
  PciLiveUpdate* lu = Current();
  return lu == nullptr ? -ENODEV : lu->FlbRetrieve(args);
}
void flb_finish(struct liveupdate_flb_op_args* args) {
  if (PciLiveUpdate* lu = Current()) lu->FlbFinish(args);
}

const struct liveupdate_flb_ops pci_flb_ops = {
    .preserve = flb_preserve,
    .unpreserve = flb_unpreserve,
    .retrieve = flb_retrieve,
    .finish = flb_finish,
    .owner = nullptr,  // built in
};

// The 7.2 profile's get_outgoing hands out no reference (and has no put).
bool OutgoingRefsCounted() {
  luo::Luo* luo = luo::Luo::CurrentOrNull();
  return luo == nullptr || luo->profile() != luo::LuoProfile::k7_2;
}

}  // namespace

struct liveupdate_flb pci_liveupdate_flb = {
    .ops = &pci_flb_ops,
    .compatible = PCI_LUO_FLB_COMPATIBLE,
};

PciLiveUpdate::PciLiveUpdate() = default;
PciLiveUpdate::~PciLiveUpdate() = default;

// ---- FLB callbacks ---------------------------------------------------------

int PciLiveUpdate::FlbPreserve(struct liveupdate_flb_op_args* args) {
  auto* ser = static_cast<struct pci_ser*>(kho_alloc_preserve(sizeof(struct pci_ser)));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));
  outgoing_ = std::make_unique<Outgoing>();
  Outgoing* out = outgoing_.get();
  out->ser = ser;
  ser->version = PCI_LUO_FLB_VERSION;
  ser->nr_devices = 0;
  ser->devices = 0;
  kho_block_set_init(&out->set, sizeof(struct pci_dev_ser));
  args->obj = out;
  args->data = virt_to_phys(ser);
  return 0;
}

void PciLiveUpdate::FlbUnpreserve(struct liveupdate_flb_op_args* args) {
  auto* out = static_cast<Outgoing*>(args->obj);
  WARN(out->ser->nr_devices != 0, "PCI: liveupdate: %u device(s) still preserved at unpreserve",
       out->ser->nr_devices);
  kho_block_set_destroy(&out->set);
  kho_unpreserve_free(out->ser);
  outgoing_.reset();
}

int PciLiveUpdate::FlbRetrieve(struct liveupdate_flb_op_args* args) {
  // The handle is the previous kernel's word: it must name a page that
  // kernel preserved before anything reads it (restoring checks that).
  struct folio* folio = kho_restore_folio(args->data);
  if (folio == nullptr) return -EINVAL;
  auto* ser = static_cast<struct pci_ser*>(folio_address(folio));
  if (ser->version != PCI_LUO_FLB_VERSION) {
    panic("PCI: liveupdate: Incoming PCI FLB version (v%u) is incompatible with this kernel (v%d)",
          ser->version, PCI_LUO_FLB_VERSION);
  }
  incoming_ = std::make_unique<Incoming>();
  Incoming* in = incoming_.get();
  in->ser = ser;
  kho_block_set_init(&in->set, sizeof(struct pci_dev_ser));
  if (int err = kho_block_set_restore(&in->set, ser->devices); err != 0) {
    incoming_.reset();
    panic("PCI: liveupdate: Failed to restore devices KHO block set (%d)", err);
  }
  struct kho_block_set_it it;
  kho_block_set_it_init(&it, &in->set);
  while (auto* dev_ser = static_cast<struct pci_dev_ser*>(kho_block_set_it_read_entry(&it))) {
    if (dev_ser->refcount == 0) continue;  // a freed slot
    if (!in->devices.emplace(KeyOf(dev_ser->domain, dev_ser->bdf), dev_ser).second) {
      const std::string name = NameOf(dev_ser);
      panic("PCI: liveupdate: Failed to insert PCI device %s into xarray (%d)", name.c_str(),
            -EBUSY);
    }
  }
  if (!in->devices.empty()) had_incoming_.store(true);
  args->obj = in;
  return 0;
}

void PciLiveUpdate::FlbFinish(struct liveupdate_flb_op_args* args) {
  auto* in = static_cast<Incoming*>(args->obj);
  if (in->ser->nr_devices != 0) {
    // In the order the previous kernel wrote them (the lookup table's
    // order would differ from run to run).
    struct kho_block_set_it it;
    kho_block_set_it_init(&it, &in->set);
    while (auto* dev_ser = static_cast<struct pci_dev_ser*>(kho_block_set_it_read_entry(&it))) {
      if (dev_ser->refcount != 0) {
        pr_err("PCI: liveupdate: %s was never finished!", NameOf(dev_ser).c_str());
      }
    }
    panic("PCI: liveupdate: %u preserved device(s) were never finished!", in->ser->nr_devices);
  }
  kho_block_set_destroy(&in->set);
  folio_put(virt_to_folio(in->ser));  // restored by retrieve
  incoming_.reset();
}

// ---- Outgoing --------------------------------------------------------------

int PciLiveUpdate::PreserveOne(Outgoing& out, struct pci_dev* dev, bool endpoint) {
  if (struct pci_dev_ser* ser = dev->liveupdate.outgoing) {
    if (endpoint) {
      DevLog(dev, "warning: ", "Device is already preserved");
      return -EBUSY;
    }
    if (WARN(ser->refcount == 0, "%s: Preserved device with 0 refcount!", pci_name(dev))) {
      return -EINVAL;
    }
    if (WARN(dev->liveupdate.frozen, "%s: Cannot preserve device after it is frozen!",
             pci_name(dev))) {
      return -EINVAL;
    }
    ser->refcount++;
    return 0;
  }
  if (WARN(dev->liveupdate.frozen, "%s: Cannot preserve device after it is frozen!",
           pci_name(dev))) {
    return -EINVAL;
  }
  // The first slot an unpreserve freed is reused before the set grows.
  // (Counting the freed slots only spares the walk when there are none;
  // the slot chosen, and so the bytes handed over, are upstream's.)
  struct pci_dev_ser* slot = nullptr;
  if (out.freed != 0) {
    struct kho_block_set_it it;
    kho_block_set_it_init(&it, &out.set);
    while (auto* e = static_cast<struct pci_dev_ser*>(kho_block_set_it_read_entry(&it))) {
      if (e->refcount == 0) {
        slot = e;
        out.freed--;
        break;
      }
    }
  }
  if (slot == nullptr) {
    if (int err = kho_block_set_grow(&out.set, out.used + 1); err != 0) return err;
    if (out.append.block == nullptr) kho_block_set_it_init(&out.append, &out.set);
    slot = static_cast<struct pci_dev_ser*>(kho_block_set_it_reserve_entry(&out.append));
    if (WARN_ON(slot == nullptr)) return -ENOSPC;
    out.used++;
    out.ser->devices = kho_block_set_head_pa(&out.set);
  }
  slot->domain = static_cast<u32>(pci_domain_nr(dev->bus));
  slot->bdf = pci_dev_id(dev);
  slot->refcount = 1;
  out.ser->nr_devices++;
  dev->liveupdate.outgoing = slot;
  DevLog(dev, "", "Device will be preserved across next Live Update");
  return 0;
}

int PciLiveUpdate::UnpreserveOne(Outgoing& out, struct pci_dev* dev) {
  struct pci_dev_ser* ser = dev->liveupdate.outgoing;
  if (ser == nullptr) {
    DevLog(dev, "warning: ", "Cannot unpreserve device that is not preserved");
    return -EINVAL;
  }
  if (WARN(ser->refcount == 0, "%s: Preserved device has a 0 refcount!", pci_name(dev))) {
    return -EINVAL;
  }
  if (--ser->refcount == 0) {
    *ser = {};
    out.ser->nr_devices--;
    out.freed++;
    dev->liveupdate.outgoing = nullptr;
    DevLog(dev, "", "Device will no longer be preserved across next Live Update");
  }
  return 0;
}

int PciLiveUpdate::Preserve(struct pci_dev* dev) {
  absl::MutexLock lock(&rwsem_);
  void* obj = nullptr;
  if (int err = liveupdate_flb_get_outgoing(&pci_liveupdate_flb, &obj); err != 0) return err;
  const bool counted = OutgoingRefsCounted();
  int err = 0;
  if (obj == nullptr) {
    err = -ENOENT;
  } else if (dev->is_virtfn) {
    DevLog(dev, "warning: ", "Cannot preserve Virtual Functions");
    err = -EINVAL;
  } else {
    Outgoing& out = *static_cast<Outgoing*>(obj);
    for (struct pci_dev* d = dev; d != nullptr; d = pci_upstream_bridge(d)) {
      err = PreserveOne(out, d, d == dev);
      if (err == 0) continue;
      // Undo the part of the path already taken, bottom up.
      for (struct pci_dev* u = dev; u != d; u = pci_upstream_bridge(u)) UnpreserveOne(out, u);
      break;
    }
  }
  if (counted && obj != nullptr) liveupdate_flb_put_outgoing(&pci_liveupdate_flb);
  return err;
}

void PciLiveUpdate::Unpreserve(struct pci_dev* dev) {
  absl::MutexLock lock(&rwsem_);
  if (dev->liveupdate.frozen) {
    WARN(true, "%s: Cannot unpreserve device after it is frozen!", pci_name(dev));
    return;
  }
  void* obj = nullptr;
  if (liveupdate_flb_get_outgoing(&pci_liveupdate_flb, &obj) != 0 || obj == nullptr) {
    DevLog(dev, "warning: ", "Cannot unpreserve device without outgoing Live Update state");
    return;
  }
  Outgoing& out = *static_cast<Outgoing*>(obj);
  for (struct pci_dev* d = dev; d != nullptr; d = pci_upstream_bridge(d)) {
    if (UnpreserveOne(out, d) != 0) break;
  }
  if (OutgoingRefsCounted()) liveupdate_flb_put_outgoing(&pci_liveupdate_flb);
}

void PciLiveUpdate::Freeze(struct pci_dev* dev) {
  absl::MutexLock lock(&rwsem_);
  dev->liveupdate.frozen = true;
}

bool PciLiveUpdate::IsOutgoing(struct pci_dev* dev) {
  absl::ReaderMutexLock lock(&rwsem_);
  WARN_ON_ONCE(!dev->liveupdate.frozen);  // "Preservation status is unstable!"
  return dev->liveupdate.outgoing != nullptr;
}

// ---- Incoming --------------------------------------------------------------

void PciLiveUpdate::SetupDevice(struct pci_dev* dev) {
  absl::MutexLock lock(&rwsem_);
  void* obj = nullptr;
  const int err = liveupdate_flb_get_incoming(&pci_liveupdate_flb, &obj);
  if (err == -EOPNOTSUPP || err == -ENODATA || err == -ENOENT) return;
  if (err != 0) panic("PCI: liveupdate: Failed to retrieve incoming FLB data (%d)", err);
  Incoming& in = *static_cast<Incoming*>(obj);
  auto it = in.devices.find(KeyOf(dev));
  if (it != in.devices.end() && it->second->refcount != 0) {
    dev->liveupdate.incoming = it->second;
    dev->liveupdate.was_incoming = true;
    DevLog(dev, "", "Device was preserved by previous kernel across Live Update");
  }
  liveupdate_flb_put_incoming(&pci_liveupdate_flb);
}

bool PciLiveUpdate::RefuseBusNumbers(const struct pci_bus* bus,
                                     const std::vector<struct pci_dev*>& on_bus) {
  for (const struct pci_dev* d : on_bus) {
    if (d->bus == bus && pci_is_bridge(d) && d->liveupdate.was_incoming &&
        d->subordinate == nullptr) {
      pr_err(
          "pci_bus %04x:%02x: Not assigning bus numbers, preserved bridge %s lost its bus "
          "number configuration",
          bus->domain_nr, bus->number, pci_name(d));
      return true;
    }
  }
  return false;
}

int PciLiveUpdate::AdoptAcs(const struct pci_dev* dev) {
  return dev->liveupdate.was_incoming ? 0 : -EINVAL;
}

int PciLiveUpdate::AdoptAri(struct pci_dev* bridge) {
  absl::ReaderMutexLock lock(&rwsem_);
  if (bridge->liveupdate.incoming == nullptr) return -EINVAL;
  u16 ctl = 0;
  pci_read_config_word(bridge, bridge->pcie_cap + PCI_EXP_DEVCTL2, &ctl);
  bridge->ari_enabled = (ctl & PCI_EXP_DEVCTL2_ARI) != 0;
  return 0;
}

bool PciLiveUpdate::IsIncoming(const struct pci_dev* dev) {
  absl::ReaderMutexLock lock(&rwsem_);
  return dev->liveupdate.incoming != nullptr;
}

int PciLiveUpdate::FinishOne(Incoming& in, struct pci_dev* dev) {
  struct pci_dev_ser* ser = dev->liveupdate.incoming;
  if (ser == nullptr) {
    DevLog(dev, "warning: ", "Cannot finish preserving an unpreserved device");
    return -EINVAL;
  }
  if (WARN(ser->refcount == 0, "%s: Preserved device has a 0 refcount!", pci_name(dev))) {
    return -EINVAL;
  }
  if (--ser->refcount == 0) {
    dev->liveupdate.incoming = nullptr;
    // A hostile count may already be 0; never wrap it.
    if (!WARN_ON(in.ser->nr_devices == 0)) in.ser->nr_devices--;
    DevLog(dev, "", "Device is finished participating in Live Update");
  }
  return 0;
}

void PciLiveUpdate::Finish(struct pci_dev* dev) {
  absl::MutexLock lock(&rwsem_);
  void* obj = nullptr;
  if (liveupdate_flb_get_incoming(&pci_liveupdate_flb, &obj) != 0) {
    DevLog(dev, "warning: ", "Cannot finish preserving device without incoming FLB");
    return;
  }
  Incoming& in = *static_cast<Incoming*>(obj);
  for (struct pci_dev* d = dev; d != nullptr; d = pci_upstream_bridge(d)) {
    if (FinishOne(in, d) != 0) break;
  }
  liveupdate_flb_put_incoming(&pci_liveupdate_flb);
}

}  // namespace khosim::drivers

// PciCore (see khosim/drivers/pci.h): the objects of one boot, config
// access, the driver model, and pci_device_shutdown.
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "khosim/drivers/irq.h"
#include "khosim/drivers/pci.h"
#include "khosim/linux/bug.h"
#include "liveupdate.h"
#include "msi.h"

namespace khosim::drivers {

PciOptions PciOptions::FromCmdline(const Cmdline& cmdline) {
  PciOptions options;
  const std::optional<std::string> pci = cmdline.Get("pci");
  if (!pci.has_value()) return options;
  for (absl::string_view word : absl::StrSplit(*pci, ',')) {
    if (word == "assign-busses") options.assign_busses = true;
    if (absl::ConsumePrefix(&word, "hpbussize=")) {
      unsigned n = 0;
      if (absl::SimpleAtoi(word, &n)) options.hpbussize = std::min(n, 255u);
    }
  }
  return options;
}

PciCore::PciCore(KernelContext& ctx, hw::PciHardware& hw)
    : ctx_(ctx),
      hw_(hw),
      options_(PciOptions::FromCmdline(ctx.cmdline())),
      liveupdate_(std::make_unique<PciLiveUpdate>()),
      irqs_(std::make_unique<IrqTable>(ctx, hw)),
      msi_(std::make_unique<PciMsi>(*this, *irqs_)) {
  ctx_.set_slot(KernelSlot::kPci, this);
}

PciCore::~PciCore() {
  if (ctx_.slot(KernelSlot::kPci) == this) ctx_.set_slot(KernelSlot::kPci, nullptr);
}

PciCore* PciCore::CurrentOrNull() {
  KernelContext* ctx = CurrentKernelContext();
  return ctx == nullptr ? nullptr : static_cast<PciCore*>(ctx->slot(KernelSlot::kPci));
}

struct pci_bus* PciCore::NewBus(struct pci_bus* parent, struct pci_dev* self, unsigned number) {
  auto bus = std::make_unique<struct pci_bus>();
  bus->parent = parent;
  bus->self = self;
  bus->domain_nr = parent != nullptr ? parent->domain_nr : 0;
  bus->number = static_cast<unsigned char>(number);
  bus->primary = parent != nullptr ? parent->number : 0;
  bus->busn_res_end = static_cast<unsigned char>(number);
  if (self != nullptr) self->subordinate = bus.get();
  buses_.push_back(bus.get());
  bus_store_.push_back(std::move(bus));
  return buses_.back();
}

struct pci_dev* PciCore::NewDevice(struct pci_bus* bus, unsigned devfn) {
  auto dev = std::make_unique<struct pci_dev>();
  dev->bus = bus;
  dev->devfn = devfn;
  dev->refcnt = 1;  // the core's own
  const std::string name = absl::StrFormat("%04x:%02x:%02x.%d", bus->domain_nr, bus->number,
                                           PCI_SLOT(devfn), PCI_FUNC(devfn));
  std::snprintf(dev->name, sizeof(dev->name), "%s", name.c_str());
  dev->dev.bus = &pci_bus_type;
  dev->dev.init_name = dev->name;
  devices_.push_back(dev.get());
  device_store_.push_back(std::move(dev));
  return devices_.back();
}

struct pci_dev* PciCore::Find(int domain, unsigned bus, unsigned devfn) const {
  for (struct pci_dev* dev : devices_) {
    if (dev->bus->domain_nr == domain && dev->bus->number == bus && dev->devfn == devfn) {
      return dev;
    }
  }
  return nullptr;
}

struct pci_dev* PciCore::FindByName(absl::string_view name) const {
  for (struct pci_dev* dev : devices_) {
    if (name == pci_name(dev)) return dev;
  }
  return nullptr;
}

struct pci_dev* PciCore::FindFunction(const hw::PciFunction& f) const {
  for (struct pci_dev* dev : devices_) {
    if (hw_.Route(static_cast<uint16_t>(dev->bus->domain_nr), dev->bus->number,
                  static_cast<uint8_t>(dev->devfn)) == &f) {
      return dev;
    }
  }
  return nullptr;
}

int64_t PciCore::OutstandingRefs() const {
  int64_t n = 0;
  for (const struct pci_dev* dev : devices_) n += dev->refcnt - 1;
  return n;
}

// ---- Config space ----------------------------------------------------------

int PciCore::ConfigRead(const struct pci_dev* dev, int where, int size, uint32_t* val) {
  if (where < 0 || where + size > PCI_CFG_SPACE_EXP_SIZE || where % size != 0) {
    *val = ~0u;
    return PCIBIOS_BAD_REGISTER_NUMBER;
  }
  if (ctx_.ShouldFail("pci_config_read")) {
    *val = ~0u;
    return PCIBIOS_DEVICE_NOT_FOUND;
  }
  *val = hw_.ConfigRead(static_cast<uint16_t>(dev->bus->domain_nr), dev->bus->number,
                        static_cast<uint8_t>(dev->devfn), static_cast<uint16_t>(where), size);
  return PCIBIOS_SUCCESSFUL;
}

int PciCore::ConfigWrite(const struct pci_dev* dev, int where, int size, uint32_t val) {
  if (where < 0 || where + size > PCI_CFG_SPACE_EXP_SIZE || where % size != 0) {
    return PCIBIOS_BAD_REGISTER_NUMBER;
  }
  if (ctx_.ShouldFail("pci_config_write")) return PCIBIOS_DEVICE_NOT_FOUND;
  hw_.ConfigWrite(static_cast<uint16_t>(dev->bus->domain_nr), dev->bus->number,
                  static_cast<uint8_t>(dev->devfn), static_cast<uint16_t>(where), size, val);
  return PCIBIOS_SUCCESSFUL;
}

// ---- Driver model ----------------------------------------------------------

bool PciCore::Matches(const struct pci_driver* drv, const struct pci_dev* dev,
                      const struct pci_device_id** id) {
  static const struct pci_device_id kOverride = {PCI_ANY_ID, PCI_ANY_ID, PCI_ANY_ID, PCI_ANY_ID,
                                                 0,          0,          0};
  *id = nullptr;
  if (dev->driver_override != nullptr) {
    if (std::strcmp(dev->driver_override, drv->name) != 0) return false;
    *id = &kOverride;
    return true;
  }
  for (const struct pci_device_id* e = drv->id_table;
       e != nullptr && (e->vendor | e->device | e->class_mask) != 0; ++e) {
    if ((e->vendor == PCI_ANY_ID || e->vendor == dev->vendor) &&
        (e->device == PCI_ANY_ID || e->device == dev->device) &&
        ((e->class_ ^ dev->class_) & e->class_mask) == 0) {
      *id = e;
      return true;
    }
  }
  return false;
}

int PciCore::Probe(struct pci_driver* drv, struct pci_dev* dev, const struct pci_device_id* id) {
  dev->driver = drv;
  const int err = drv->probe(dev, id);
  ctx_.Trace("pci", "probe",
             {{"dev", pci_name(dev)}, {"driver", drv->name}, {"ret", absl::StrCat(err)}});
  if (err != 0) {
    dev->driver = nullptr;
    ctx_.Log(absl::StrFormat("%s %s: probe failed (%d)", drv->name, pci_name(dev), err));
  }
  return err;
}

int PciCore::RegisterDriver(struct pci_driver* drv) {
  if (drv == nullptr || drv->name == nullptr || drv->probe == nullptr) return -EINVAL;
  for (const struct pci_driver* d : drivers_) {
    if (d == drv || std::strcmp(d->name, drv->name) == 0) return -EEXIST;
  }
  drivers_.push_back(drv);
  for (struct pci_dev* dev : devices_) {
    const struct pci_device_id* id = nullptr;
    if (dev->driver == nullptr && Matches(drv, dev, &id)) Probe(drv, dev, id);
  }
  return 0;
}

void PciCore::UnregisterDriver(struct pci_driver* drv) {
  auto it = std::find(drivers_.begin(), drivers_.end(), drv);
  if (it == drivers_.end()) return;
  for (struct pci_dev* dev : devices_) {
    if (dev->driver == drv) Unbind(dev);
  }
  drivers_.erase(it);
}

void PciCore::SetDriverOverride(struct pci_dev* dev, absl::string_view driver) {
  if (driver.empty()) {
    dev->driver_override = nullptr;
    return;
  }
  overrides_.push_back(std::make_unique<std::string>(driver));
  dev->driver_override = overrides_.back()->c_str();
}

int PciCore::Bind(struct pci_dev* dev) {
  if (dev->driver != nullptr) return -EBUSY;
  for (struct pci_driver* drv : drivers_) {
    const struct pci_device_id* id = nullptr;
    if (Matches(drv, dev, &id)) return Probe(drv, dev, id);
  }
  return -ENODEV;
}

void PciCore::Unbind(struct pci_dev* dev) {
  struct pci_driver* drv = dev->driver;
  if (drv == nullptr) return;
  if (drv->remove != nullptr) drv->remove(dev);
  dev->driver = nullptr;
  dev->driver_data = nullptr;
}

// ---- Shutdown --------------------------------------------------------------

void PciCore::Shutdown() {
  uint64_t kept = 0;
  for (auto it = devices_.rbegin(); it != devices_.rend(); ++it) {
    struct pci_dev* dev = *it;
    liveupdate_->Freeze(dev);
    if (dev->driver != nullptr && dev->driver->shutdown != nullptr) dev->driver->shutdown(dev);
    // Preserved devices (and the bridges above them) keep bus mastering,
    // so their DMA goes on through the kexec.
    if (liveupdate_->IsOutgoing(dev)) {
      ++kept;
      continue;
    }
    pci_clear_master(dev);
  }
  ctx_.Trace("pci", "device_shutdown",
             {{"devices", absl::StrCat(devices_.size())}, {"bus_master_kept", absl::StrCat(kept)}});
}

}  // namespace khosim::drivers

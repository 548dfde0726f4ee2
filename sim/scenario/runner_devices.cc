// Runner::Impl, devices: PCI functions passed through by pci-passthrough.
// A VMM binds the device (driver_override, as for vfio-pci), opens its node
// and starts it (bus mastering on); preserving the fd preserves the device.
// The next boot binds it again before retrieving it, and verification
// checks what a VMM relies on: the device came back at the same address,
// incoming, and never stopped mastering.
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/linux/pci_liveupdate.h"
#include "runner_impl.h"

namespace khosim::scenario {

bool Runner::Impl::BindDevices(int boot, const BootSpec& spec) {
  std::set<std::string> wanted;
  for (const ProcessSpec& p : spec.processes) {
    for (const SessionSpec& sess : p.sessions) {
      for (const auto* refs :
           {sess.retrieve ? &*sess.retrieve : nullptr, sess.preserve ? &*sess.preserve : nullptr}) {
        if (refs == nullptr) continue;
        for (const FileRef& ref : *refs) {
          const FileSpec* file = s_.FindFile(ref.file);
          if (file->kind == FileKind::kDevice) wanted.insert(file->device);
        }
      }
    }
  }
  drivers::PciCore* core = kernel().pci();
  for (const std::string& name : wanted) {
    struct pci_dev* dev = core == nullptr ? nullptr : core->FindFunction(*m_->pci().Find(name));
    if (dev == nullptr) {
      return Stop(
          Outcome::kFailed,
          absl::StrFormat("boot %d: PCI device %s: this kernel did not find it", boot, name));
    }
    if (dev->driver != nullptr) continue;
    core->SetDriverOverride(dev, PCI_PASSTHROUGH_DRIVER_NAME);
    if (const int err = core->Bind(dev); err != 0) {
      return Stop(Outcome::kFailed,
                  absl::StrFormat("boot %d: PCI device %s (%s): binding pci-passthrough: %s%s",
                                  boot, name, pci_name(dev), ErrnoName(err),
                                  err == -ENODEV && !kernel().HasModule(kPciPassthroughModule)
                                      ? " (this kernel is built without the pci-passthrough "
                                        "module; add it to the boot's handlers)"
                                      : ""));
    }
  }
  return true;
}

int Runner::Impl::OpenDeviceFile(fs::Process& p, const FileSpec& file) {
  struct pci_dev* dev = kernel().pci()->FindFunction(*m_->pci().Find(file.device));
  const int fd =
      p.Open(absl::StrCat("/dev/" PCI_PASSTHROUGH_DRIVER_NAME "/", pci_name(dev)), O_RDWR);
  if (fd < 0) return fd;
  if (const long err = p.Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 1ul); err != 0) {
    p.Close(fd);
    return static_cast<int>(err);
  }
  return fd;
}

bool Runner::Impl::VerifyDevice(int boot, const RetrievedFile& f, FileCheck& check) {
  const FileSpec& spec = *s_.FindFile(f.ref->file);
  check.verify = "device";
  const hw::PciFunction& hw = *m_->pci().Find(spec.device);
  struct pci_dev* dev = kernel().pci()->FindFunction(hw);
  std::string problem;
  if (dev == nullptr) {
    problem = "this kernel did not find it";
  } else if (!pci_liveupdate_is_incoming(dev)) {
    problem = absl::StrCat(pci_name(dev), " is not incoming: the previous kernel's FLB \"",
                           PCI_LUO_FLB_COMPATIBLE, "\" does not list it");
  } else if (!hw.bus_master()) {
    problem = absl::StrCat(pci_name(dev), " stopped mastering (bus master enable is clear)");
  }
  check.ok = problem.empty();
  report_.files.push_back(check);
  if (!check.ok) {
    return Lost(boot, f.session->name, f.ref,
                absl::StrFormat("boot %d: device %s (session \"%s\", token %s): %s", boot,
                                spec.name, f.session->name, Token(f.ref->token), problem));
  }
  return true;
}

void Runner::Impl::RecordDevices(BootReport& br) {
  drivers::PciCore* core = kernel().pci();
  if (core == nullptr) return;
  m_->pci().ForEach([&](hw::PciFunction& f) {
    DeviceState d;
    d.name = f.name();
    d.bridge = f.is_bridge();
    d.bus_master = f.bus_master();
    if (struct pci_dev* dev = core->FindFunction(f)) {
      d.bdf = pci_name(dev);
      d.driver = dev->driver != nullptr ? dev->driver->name : "";
      d.outgoing_refcount =
          dev->liveupdate.outgoing != nullptr ? dev->liveupdate.outgoing->refcount : 0;
      d.incoming_refcount =
          dev->liveupdate.incoming != nullptr ? dev->liveupdate.incoming->refcount : 0;
      d.was_incoming = dev->liveupdate.was_incoming;
    }
    br.devices.push_back(std::move(d));
  });
  if (const int64_t refs = core->OutstandingRefs(); refs != 0) {
    br.notes.push_back(absl::StrFormat("%d pci_dev reference(s) taken and never put", refs));
  }
}

}  // namespace khosim::scenario

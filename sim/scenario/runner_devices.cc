// Runner::Impl, devices: PCI functions passed through by pci-passthrough
// or vfio-pci. A VMM binds the device (driver_override), opens its node
// (pci-passthrough's, or the vfio cdev, bound and started once its iommufd
// is set up) and starts it (bus mastering on); preserving the fd preserves
// the device.
// The next boot binds it again before retrieving it, and verification
// checks what a VMM relies on: the device came back at the same address,
// incoming, and never stopped mastering.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "khosim/drivers/vfio.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/hw/dma_engine.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/linux/pci_liveupdate.h"
#include "khosim/scenario/content.h"
#include "runner_impl.h"

namespace khosim::scenario {

bool Runner::Impl::BindDevices(int boot, const BootSpec& spec) {
  std::map<std::string, std::string> wanted;  // function -> driver
  for (const ProcessSpec& p : spec.processes) {
    for (const SessionSpec& sess : p.sessions) {
      for (const auto* refs :
           {sess.retrieve ? &*sess.retrieve : nullptr, sess.preserve ? &*sess.preserve : nullptr}) {
        if (refs == nullptr) continue;
        for (const FileRef& ref : *refs) {
          const FileSpec* file = s_.FindFile(ref.file);
          if (file->kind == FileKind::kDevice) wanted[file->device] = file->driver;
        }
      }
    }
  }
  drivers::PciCore* core = kernel().pci();
  for (const auto& [name, driver] : wanted) {
    struct pci_dev* dev = core == nullptr ? nullptr : core->FindFunction(*m_->pci().Find(name));
    if (dev == nullptr) {
      return Stop(
          Outcome::kFailed,
          absl::StrFormat("boot %d: PCI device %s: this kernel did not find it", boot, name));
    }
    if (dev->driver != nullptr) continue;
    core->SetDriverOverride(dev, driver.c_str());
    if (const int err = core->Bind(dev); err != 0) {
      return Stop(Outcome::kFailed,
                  absl::StrFormat("boot %d: PCI device %s (%s): binding %s: %s%s", boot, name,
                                  pci_name(dev), driver, ErrnoName(err),
                                  err == -ENODEV && !kernel().HasModule(driver)
                                      ? absl::StrCat(" (this kernel is built without the ", driver,
                                                     " module; add it to the boot's handlers)")
                                      : ""));
    }
  }
  return true;
}

bool Runner::Impl::StartDma(int boot, const FileSpec& device) {
  const DmaSpec& dma = *device.dma;
  const Held& dev = held_.at(device.name);
  auto target = held_.find(dma.file);
  if (target == held_.end() || target->second.process != dev.process) {
    return Stop(Outcome::kFailed,
                absl::StrFormat("boot %d: device %s maps memfd %s, which process %s does not "
                                "hold in this boot",
                                boot, device.name, dma.file, dev.process->name()));
  }
  if (!dma.iommufd.empty()) {
    if (!MapThroughIommufd(boot, device)) return false;
  } else if (!MapForDma(boot, device, target->second)) {
    return false;
  }
  hw::DmaEngine* engine = m_->dma_engine(device.device);
  engine->Submit(hw::DmaDescriptor{.op = hw::DmaOp::kCounter,
                                   .dst = dma.iova,
                                   .len = s_.FindFile(dma.file)->size,
                                   .pattern = kDmaCounterBase,
                                   .repeat = true});
  return true;
}

bool Runner::Impl::MapForDma(int boot, const FileSpec& device, const Held& target) {
  const DmaSpec& dma = *device.dma;
  const Held& dev = held_.at(device.name);
  const FileSpec& memfd = *s_.FindFile(dma.file);
  struct pci_passthrough_dma_map map = {
      .size = sizeof(map), .fd = target.fd, .offset = 0, .length = memfd.size, .iova = dma.iova};
  if (const long err = dev.process->Ioctl(dev.fd, PCI_PASSTHROUGH_DMA_MAP_FILE, &map); err != 0) {
    return Stop(Outcome::kFailed,
                absl::StrFormat("boot %d: device %s: DMA map of %s at IOVA %#x: %s", boot,
                                device.name, dma.file, dma.iova, ErrnoName(err)));
  }
  return true;
}

int Runner::Impl::OpenDeviceFile(fs::Process& p, const FileSpec& file) {
  struct pci_dev* dev = kernel().pci()->FindFunction(*m_->pci().Find(file.device));
  if (file.driver == VFIO_PCI_DRIVER_NAME) {
    // The cdev, unbound: MapThroughIommufd binds it and starts it.
    return p.Open(absl::StrCat("/dev/vfio/devices/vfio", vfio_pci_device_index(dev)), O_RDWR);
  }
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

bool Runner::Impl::VerifyDmaRing(int boot, const RetrievedFile& f, FileCheck& check) {
  const FileSpec& spec = *s_.FindFile(f.ref->file);
  const FileSpec& device = *s_.DmaDeviceOf(spec.name);
  check.verify = "dma-ring";
  const hw::DmaEngine& engine = *m_->dma_engine(device.device);
  // Slot i holds the newest value v with (v - base) % slots == i; a slot
  // the engine has not reached yet still holds what the VMM wrote.
  const uint64_t slots = spec.size / 8;
  const uint64_t written = engine.next_counter() - kDmaCounterBase;
  const Content content(spec, s_.machine.seed);
  std::vector<uint64_t> chunk(kChunk / 8);
  std::vector<uint64_t> original(kChunk / 8);
  std::string problem;
  if (engine.next_counter() == 0) problem = absl::StrCat(device.name, "'s engine stopped");
  for (uint64_t base = 0; base < slots && problem.empty(); base += chunk.size()) {
    const uint64_t n = std::min<uint64_t>(chunk.size(), slots - base);
    const ssize_t got = f.process->Pread(f.fd, chunk.data(), n * 8, static_cast<loff_t>(base * 8));
    if (got != static_cast<ssize_t>(n * 8)) {
      problem = absl::StrCat("read at ", base * 8, ": ", got < 0 ? ErrnoName(got) : "short");
      break;
    }
    if (written < base + n) {
      content.Fill(base * 8, reinterpret_cast<uint8_t*>(original.data()), n * 8);
    }
    for (uint64_t j = 0; j < n; ++j) {
      const uint64_t slot = base + j;
      const uint64_t expected =
          written > slot ? kDmaCounterBase + slot + slots * ((written - 1 - slot) / slots)
                         : original[j];
      if (chunk[j] != expected) {
        problem =
            absl::StrFormat("offset %#x holds %#x, expected %#x (%s)", slot * 8, chunk[j], expected,
                            written > slot ? "the engine's last value there"
                                           : "the VMM's bytes: the engine has not reached it");
        break;
      }
    }
  }
  check.bytes_compared = spec.size;
  check.ok = problem.empty();
  report_.files.push_back(check);
  if (!check.ok) {
    return Lost(boot, f.session->name, f.ref,
                absl::StrFormat("boot %d: file %s (DMA target of %s): %s", boot, spec.name,
                                device.name, problem));
  }
  return true;
}

void Runner::Impl::RecordDma(BootReport& br) {
  const uint64_t g = br.generation;
  const auto kexec_point = [](const std::string& point) {
    return absl::StartsWith(point, "kexec:");
  };
  for (const Machine::DmaProgress& p : m_->dma_progress()) {
    if (p.generation + 1 == g && kexec_point(p.point)) br.dma.kexec_bytes += p.bytes;
    if (p.generation != g || kexec_point(p.point)) continue;
    (absl::StartsWith(p.point, "boot ") ? br.dma.userspace_bytes : br.dma.boot_bytes) += p.bytes;
  }
  for (const DmaRecord& r : m_->dma_events()) {
    if (!(r.generation == g || (r.generation + 1 == g && kexec_point(r.point)))) continue;
    switch (r.event.kind) {
      case hw::DmaEvent::Kind::kFault:
        ++br.dma.faults;
        break;
      case hw::DmaEvent::Kind::kStrayWrite:
        ++br.dma.stray_writes;
        break;
      case hw::DmaEvent::Kind::kStopped:
        ++br.dma.stops;
        break;
    }
    if (br.dma.events.size() < 20) {
      br.dma.events.push_back(absl::StrFormat("%s %s at %s (generation %d): %s",
                                              hw::DmaEventKindName(r.event.kind), r.event.device,
                                              r.point, r.generation, r.event.reason));
    }
  }
  const uint64_t problems = br.dma.faults + br.dma.stray_writes;
  if (problems != 0) {
    br.notes.push_back(
        absl::StrFormat("DMA: %d fault(s), %d stray write(s)", br.dma.faults, br.dma.stray_writes));
  }
}

void Runner::Impl::RecordDevices(BootReport& br) {
  RecordDma(br);
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

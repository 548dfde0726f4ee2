// PciCore: one kernel's PCI core, the C++ face of linux/pci.h and
// linux/pci_liveupdate.h. It enumerates the machine's PCI hardware at
// subsys_initcall, owns the pci_dev and pci_bus objects of this boot, binds
// drivers, and runs pci_device_shutdown for every device at kexec.
//
// Enumeration (pci_scan_child_bus, two passes per bus as upstream):
//   - every device that answers on a bus is set up (IDs, capabilities) and
//     asked whether the previous kernel preserved it (the FLB "pci");
//   - pass 0 keeps the bus numbers a bridge already has, unless the
//     command line says pci=assign-busses and no device came in preserved
//     (then the bridge's numbers are cleared, to be assigned in pass 1);
//   - pass 1 numbers the remaining bridges depth first, reserving
//     pci=hpbussize=N extra numbers below each root or downstream port;
//     but if a preserved bridge on the bus came up without bus numbers, it
//     refuses to number anything on that bus (its subtree stays hidden);
//   - ACS control on a device the previous kernel preserved, and ARI
//     forwarding on an incoming bridge, are adopted, not rewritten;
//   - SR-IOV VFs enabled in hardware (a previous kernel's) are found too.
// Shutdown at kexec (pci_device_shutdown, reverse enumeration order):
// freeze the device's live update state, call the driver's shutdown, clear
// bus mastering unless the device is preserved for the next kernel.
//
// Context: the core's state is per boot and dies with the kernel. Devices
// are never removed during a boot. Callers drive it from one thread; the
// live update state has its own lock (pci_liveupdate's rwsem).
#ifndef KHOSIM_DRIVERS_PCI_H_
#define KHOSIM_DRIVERS_PCI_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "khosim/base/kernel_context.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/pci.h"

namespace khosim::drivers {

class IrqTable;
class PciLiveUpdate;
class PciMsi;

// The kernel command line's pci= options the core honours
// (pci=assign-busses,hpbussize=4).
struct PciOptions {
  bool assign_busses = false;
  unsigned hpbussize = 0;
  static PciOptions FromCmdline(const Cmdline& cmdline);
};

class PciCore {
 public:
  PciCore(KernelContext& ctx, hw::PciHardware& hw);
  ~PciCore();
  PciCore(const PciCore&) = delete;
  PciCore& operator=(const PciCore&) = delete;

  // The running kernel's core; nullptr on a machine without PCI hardware.
  static PciCore* CurrentOrNull();

  // subsys_initcall: enumerates every segment (see the file comment). 0.
  int Enumerate();
  // device_shutdown for a kexec (see the file comment).
  void Shutdown();

  // Every device, in enumeration order.
  const std::vector<struct pci_dev*>& devices() const { return devices_; }
  // Without a reference; nullptr if absent.
  struct pci_dev* Find(int domain, unsigned bus, unsigned devfn) const;
  // By pci_name(), "0000:03:00.0".
  struct pci_dev* FindByName(absl::string_view name) const;
  // The device behind hardware function |f| at its current address.
  struct pci_dev* FindFunction(const hw::PciFunction& f) const;
  // The bus a device is on, by domain and number; nullptr if none.
  const std::vector<struct pci_bus*>& buses() const { return buses_; }

  // sysfs: driver_override ("" clears) and drivers_probe / unbind.
  void SetDriverOverride(struct pci_dev* dev, absl::string_view driver);
  // 0; -EBUSY (already bound), -ENODEV (no registered driver matches), or
  // the probe's errno.
  int Bind(struct pci_dev* dev);
  void Unbind(struct pci_dev* dev);

  // The kernel face's backends (linux/pci.h).
  int ConfigRead(const struct pci_dev* dev, int where, int size, uint32_t* val);
  int ConfigWrite(const struct pci_dev* dev, int where, int size, uint32_t val);
  int RegisterDriver(struct pci_driver* drv);
  void UnregisterDriver(struct pci_driver* drv);

  PciLiveUpdate& liveupdate() { return *liveupdate_; }
  // This kernel's interrupts (khosim/drivers/irq.h), and the MSI-X vectors
  // it allocated per device (linux/pci.h's interrupt vectors).
  IrqTable& irqs() { return *irqs_; }
  PciMsi& msi() { return *msi_; }
  hw::PciHardware& hw() { return hw_; }
  KernelContext& ctx() { return ctx_; }
  const PciOptions& options() const { return options_; }
  // References taken with pci_dev_get that were never put.
  int64_t OutstandingRefs() const;

 private:
  friend class PciProbe;

  struct pci_dev* NewDevice(struct pci_bus* bus, unsigned devfn);
  struct pci_bus* NewBus(struct pci_bus* parent, struct pci_dev* self, unsigned number);
  static bool Matches(const struct pci_driver* drv, const struct pci_dev* dev,
                      const struct pci_device_id** id);
  int Probe(struct pci_driver* drv, struct pci_dev* dev, const struct pci_device_id* id);

  KernelContext& ctx_;
  hw::PciHardware& hw_;
  PciOptions options_;
  std::unique_ptr<PciLiveUpdate> liveupdate_;
  std::unique_ptr<IrqTable> irqs_;
  std::unique_ptr<PciMsi> msi_;
  // The objects of this boot; nothing is removed before the kernel dies.
  std::vector<std::unique_ptr<struct pci_dev>> device_store_;
  std::vector<std::unique_ptr<struct pci_bus>> bus_store_;
  std::vector<std::unique_ptr<std::string>> overrides_;
  std::vector<struct pci_dev*> devices_;
  std::vector<struct pci_bus*> buses_;
  std::vector<struct pci_driver*> drivers_;
};

}  // namespace khosim::drivers

#endif  // KHOSIM_DRIVERS_PCI_H_

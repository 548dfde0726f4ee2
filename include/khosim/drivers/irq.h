// IrqTable: one kernel's interrupt descriptors (the Linux irq numbers it
// allocated, each with its handlers), the C++ face of linux/interrupt.h,
// and the interrupt controller's side of MSI-X delivery. The PCI core owns
// it (PciCore::irqs()); it is host state and dies with the kernel.
//
// Lifecycle of an irq:
//   - pci_alloc_irq_vectors allocates one per MSI-X vector (AllocMsix): the
//     lowest free number from kFirstIrq;
//   - request_irq adds a handler; the first one starts the irq, which
//     unmasks its vector on the device;
//   - free_irq removes it; the last one shuts the irq down (masks the
//     vector);
//   - pci_free_irq_vectors frees the descriptor (FreeDesc).
//
// Delivery (HandleMsix): the machine hands over every MSI-X message a
// function sent while this kernel runs. A message for a vector this kernel
// never allocated an irq for (after a kexec, a device the previous kernel
// left with MSI-X on), or for an irq without handlers, is spurious: counted,
// traced ("irq"/"spurious") and logged once per vector ("No irq handler");
// nothing else happens, as on x86, where the vector lands in a local APIC
// that was not set up for it. Handlers run in hard irq context (see
// linux/interrupt.h); a message arriving while one runs waits until it
// returns. A handler's IRQ_NONE is counted as unhandled (upstream's
// "nobody cared" detection, which disables the irq after 99,900 of them,
// is not modelled).
//
// Context: one thread, the machine's (like PciCore); no lock.
#ifndef KHOSIM_DRIVERS_IRQ_H_
#define KHOSIM_DRIVERS_IRQ_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "khosim/base/kernel_context.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/interrupt.h"

struct pci_dev;

namespace khosim::drivers {

class IrqTable {
 public:
  // The first irq number handed out: below it are the legacy and IO-APIC
  // lines of a typical x86 machine, which the simulator does not have.
  static constexpr unsigned kFirstIrq = 24;

  IrqTable(KernelContext& ctx, hw::PciHardware& hw);
  IrqTable(const IrqTable&) = delete;
  IrqTable& operator=(const IrqTable&) = delete;

  // A descriptor for MSI-X vector |vector| of |dev|: its irq number, or
  // -ENOMEM (fault point "kmalloc"). The irq knows the device by its
  // routing ID (domain, bus, devfn), as interrupt remapping does, and
  // reaches the function's table through it, so a function that goes away
  // (a VF) leaves nothing dangling.
  int AllocMsix(const struct pci_dev* dev, uint16_t vector);
  // Frees the descriptor of |irq|. Handlers still attached are a driver
  // bug: WARN, and they are dropped (the vector is masked).
  void FreeDesc(unsigned irq);

  // request_irq / free_irq (linux/interrupt.h has the contract).
  int Request(unsigned irq, irq_handler_t handler, unsigned long flags, const char* name,
              void* dev_id);
  const void* Free(unsigned irq, void* dev_id);

  // An MSI-X message from |fn| for |vector| reached the interrupt
  // controller: runs the irq's handlers (see the file comment).
  void HandleMsix(const hw::PciFunction& fn, uint16_t vector);

  bool in_hardirq() const { return in_hardirq_; }
  bool Exists(unsigned irq) const { return descs_.count(irq) != 0; }
  bool HasAction(unsigned irq) const;
  // Times |irq| was taken (handled or not), as /proc/interrupts counts.
  uint64_t Count(unsigned irq) const;
  // Messages with no irq or no handler; interrupts every handler refused.
  uint64_t spurious() const { return spurious_; }
  uint64_t unhandled() const { return unhandled_; }
  size_t size() const { return descs_.size(); }

 private:
  struct Action {
    irq_handler_t handler = nullptr;
    unsigned long flags = 0;
    const char* name = nullptr;
    void* dev_id = nullptr;
  };
  // domain << 16 | bus << 8 | devfn, and the vector.
  using Source = std::pair<uint32_t, uint16_t>;
  struct Desc {
    Source source;
    std::vector<Action> actions;
    uint64_t count = 0;
    uint64_t unhandled = 0;
  };

  // The Mask Bit write of the vector behind |desc| (dropped if nothing
  // answers at its address).
  void MaskVector(const Desc& desc, bool masked);
  void MightSleep(const char* what);
  void Handle(const Source& source, const std::string& device);
  void Spurious(const Source& source, const std::string& device, const std::string& why);

  KernelContext& ctx_;
  hw::PciHardware& hw_;
  std::map<unsigned, Desc> descs_;
  std::map<Source, unsigned> by_source_;
  std::set<Source> reported_;                            // spurious vectors already logged
  std::deque<std::pair<Source, std::string>> deferred_;  // arrived while a handler ran
  bool in_hardirq_ = false;
  uint64_t spurious_ = 0;
  uint64_t unhandled_ = 0;
};

}  // namespace khosim::drivers

#endif  // KHOSIM_DRIVERS_IRQ_H_

// IrqTable (see khosim/drivers/irq.h) and the kernel face of
// linux/interrupt.h: request_irq and free_irq resolve to the running
// kernel's table, which its PCI core owns. A kernel without PCI hardware has
// no irqs at all, so every request there is -EINVAL.
#include "khosim/drivers/irq.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/drivers/pci.h"
#include "khosim/linux/pci.h"

namespace khosim::drivers {
namespace {

// Marks hard irq context for the scope of a handler call, also when the
// handler panics (a KernelPanic unwinds through it).
class HardIrqScope {
 public:
  explicit HardIrqScope(bool& flag) : flag_(flag) { flag_ = true; }
  ~HardIrqScope() { flag_ = false; }
  HardIrqScope(const HardIrqScope&) = delete;
  HardIrqScope& operator=(const HardIrqScope&) = delete;

 private:
  bool& flag_;
};

uint32_t RoutingId(uint16_t domain, uint8_t bus, uint8_t devfn) {
  return uint32_t{domain} << 16 | uint32_t{bus} << 8 | devfn;
}

}  // namespace

IrqTable::IrqTable(KernelContext& ctx, hw::PciHardware& hw) : ctx_(ctx), hw_(hw) {}

int IrqTable::AllocMsix(const struct pci_dev* dev, uint16_t vector) {
  if (ctx_.ShouldFail("kmalloc")) return -ENOMEM;
  unsigned irq = kFirstIrq;
  while (descs_.count(irq) != 0) ++irq;
  const Source source{RoutingId(static_cast<uint16_t>(dev->bus->domain_nr), dev->bus->number,
                                static_cast<uint8_t>(dev->devfn)),
                      vector};
  descs_[irq] = Desc{.source = source};
  by_source_[source] = irq;
  return static_cast<int>(irq);
}

void IrqTable::MaskVector(const Desc& desc, bool masked) {
  const uint32_t rid = desc.source.first;
  hw::PciFunction* fn = hw_.Route(static_cast<uint16_t>(rid >> 16), static_cast<uint8_t>(rid >> 8),
                                  static_cast<uint8_t>(rid));
  if (fn != nullptr) fn->SetMsixVectorMasked(desc.source.second, masked);
}

void IrqTable::FreeDesc(unsigned irq) {
  auto it = descs_.find(irq);
  if (it == descs_.end()) return;
  const Desc& desc = it->second;
  if (!desc.actions.empty()) {
    const char* name = desc.actions.front().name;
    ctx_.Warn(KHOSIM_SITE, absl::StrFormat("freeing irq %u with handler \"%s\" still requested",
                                           irq, name != nullptr ? name : ""));
    MaskVector(desc, true);
  }
  by_source_.erase(desc.source);
  descs_.erase(it);
}

bool IrqTable::HasAction(unsigned irq) const {
  auto it = descs_.find(irq);
  return it != descs_.end() && !it->second.actions.empty();
}

uint64_t IrqTable::Count(unsigned irq) const {
  auto it = descs_.find(irq);
  return it == descs_.end() ? 0 : it->second.count;
}

void IrqTable::MightSleep(const char* what) {
  if (in_hardirq_) {
    ctx_.Warn(KHOSIM_SITE, absl::StrCat("sleeping function called from invalid context: ", what,
                                        " in a hard irq handler"));
  }
}

int IrqTable::Request(unsigned irq, irq_handler_t handler, unsigned long flags, const char* name,
                      void* dev_id) {
  if (irq == IRQ_NOTCONNECTED) return -ENOTCONN;
  if ((flags & IRQF_SHARED) != 0 && dev_id == nullptr) return -EINVAL;
  auto it = descs_.find(irq);
  if (it == descs_.end()) return -EINVAL;
  if (handler == nullptr) return -EINVAL;
  MightSleep("request_irq");
  if (ctx_.ShouldFail("kmalloc")) return -ENOMEM;
  Desc& desc = it->second;
  if (!desc.actions.empty()) {
    const Action& old = desc.actions.front();
    if ((old.flags & flags & IRQF_SHARED) == 0 || ((old.flags ^ flags) & IRQF_ONESHOT) != 0) {
      ctx_.Log(absl::StrFormat("genirq: Flags mismatch irq %u. %08lx (%s) vs. %08lx (%s)", irq,
                               flags, name != nullptr ? name : "", old.flags,
                               old.name != nullptr ? old.name : ""));
      return -EBUSY;
    }
  }
  desc.actions.push_back(
      Action{.handler = handler, .flags = flags, .name = name, .dev_id = dev_id});
  ctx_.Trace("irq", "request", {{"irq", absl::StrCat(irq)}, {"name", name != nullptr ? name : ""}});
  // Starting the line is the last step: a message left pending is handled
  // as soon as the vector is unmasked.
  if (desc.actions.size() == 1) MaskVector(desc, false);
  return 0;
}

const void* IrqTable::Free(unsigned irq, void* dev_id) {
  auto it = descs_.find(irq);
  if (it == descs_.end()) return nullptr;
  if (in_hardirq_) {
    ctx_.Warn(KHOSIM_SITE, absl::StrCat("Trying to free IRQ ", irq, " from IRQ context!"));
  }
  std::vector<Action>& actions = it->second.actions;
  auto action = actions.begin();
  while (action != actions.end() && action->dev_id != dev_id) ++action;
  if (action == actions.end()) {
    ctx_.Warn(KHOSIM_SITE, absl::StrCat("Trying to free already-free IRQ ", irq));
    return nullptr;
  }
  const char* name = action->name;
  actions.erase(action);
  if (actions.empty()) MaskVector(it->second, true);
  ctx_.Trace("irq", "free", {{"irq", absl::StrCat(irq)}, {"name", name != nullptr ? name : ""}});
  return name;
}

void IrqTable::Spurious(const Source& source, const std::string& device, const std::string& why) {
  ++spurious_;
  ctx_.Trace("irq", "spurious",
             {{"device", device}, {"vector", absl::StrCat(source.second)}, {"why", why}});
  if (reported_.insert(source).second) {
    ctx_.Log(absl::StrFormat("%s: MSI-X vector %u: No irq handler for vector (%s)", device,
                             source.second, why));
  }
}

void IrqTable::Handle(const Source& source, const std::string& device) {
  auto where = by_source_.find(source);
  if (where == by_source_.end()) {
    Spurious(source, device, "no irq");
    return;
  }
  const unsigned irq = where->second;
  Desc& desc = descs_.at(irq);
  ++desc.count;
  if (desc.actions.empty()) {
    Spurious(source, device, absl::StrCat("irq ", irq, " has no handler"));
    return;
  }
  // A handler may free its own irq (a WARN) or request others: run the
  // actions as they were when the interrupt arrived.
  const std::vector<Action> actions = desc.actions;
  int ret = IRQ_NONE;
  {
    HardIrqScope scope(in_hardirq_);
    for (const Action& action : actions) {
      ret |= action.handler(static_cast<int>(irq), action.dev_id);
    }
  }
  if (ret == IRQ_NONE) {
    ++unhandled_;
    auto again = descs_.find(irq);
    if (again != descs_.end()) ++again->second.unhandled;
  }
}

void IrqTable::HandleMsix(const hw::PciFunction& fn, uint16_t vector) {
  // The message carries the function's routing ID as it is now.
  deferred_.push_back({{RoutingId(fn.domain(), hw_.BusOf(fn), fn.devfn()), vector}, fn.name()});
  if (in_hardirq_) return;  // taken when the running handler returns
  while (!deferred_.empty()) {
    const auto [source, device] = deferred_.front();
    deferred_.pop_front();
    Handle(source, device);
  }
}

}  // namespace khosim::drivers

namespace {

khosim::drivers::IrqTable* Irqs() {
  khosim::drivers::PciCore* core = khosim::drivers::PciCore::CurrentOrNull();
  return core == nullptr ? nullptr : &core->irqs();
}

}  // namespace

int request_irq(unsigned int irq, irq_handler_t handler, unsigned long flags, const char* name,
                void* dev) {
  khosim::drivers::IrqTable* irqs = Irqs();
  if (irqs == nullptr) return irq == IRQ_NOTCONNECTED ? -ENOTCONN : -EINVAL;
  return irqs->Request(irq, handler, flags, name, dev);
}

const void* free_irq(unsigned int irq, void* dev_id) {
  khosim::drivers::IrqTable* irqs = Irqs();
  return irqs == nullptr ? nullptr : irqs->Free(irq, dev_id);
}

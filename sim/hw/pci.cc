// PciHardware: building the functions from the topology, config-space
// access with write masks and side effects, routing, and resets. See
// khosim/hw/pci.h for the hardware's rules.
#include "khosim/hw/pci.h"

#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "khosim/linux/pci_regs.h"
#include "pci_design.h"

namespace khosim::hw {

// Functions of one hardware design share its template.
class PciHardware::Designs {
 public:
  std::shared_ptr<const PciConfigTemplate> Function(const PciFunctionSpec& spec,
                                                    bool multifunction) {
    std::string key = absl::StrCat(
        static_cast<int>(spec.kind), "/", spec.vendor, "/", spec.device, "/", spec.class_code, "/",
        spec.bar0_size, "/", spec.flr, "/", spec.msix_vectors, "/", spec.msi, "/", spec.total_vfs,
        "/", spec.vf_device, "/", spec.vf_offset, "/", spec.vf_stride, "/", multifunction);
    auto [it, inserted] = functions_.try_emplace(std::move(key));
    if (inserted) it->second = MakeFunctionDesign(spec, multifunction);
    return it->second;
  }
  std::shared_ptr<const PciConfigTemplate> Vf(const PciFunctionSpec& pf) {
    std::string key = absl::StrCat(pf.class_code, "/", pf.msix_vectors);
    auto [it, inserted] = vfs_.try_emplace(std::move(key));
    if (inserted) it->second = MakeVfDesign(pf);
    return it->second;
  }

 private:
  std::map<std::string, std::shared_ptr<const PciConfigTemplate>> functions_;
  std::map<std::string, std::shared_ptr<const PciConfigTemplate>> vfs_;
};

uint32_t PciFunction::Peek(uint16_t offset, int size) const {
  uint32_t v = 0;
  for (int i = size - 1; i >= 0; --i) v = (v << 8) | config_[offset + i];
  return v;
}

bool PciFunction::bus_master() const { return (Peek(PCI_COMMAND, 2) & PCI_COMMAND_MASTER) != 0; }

absl::StatusOr<std::unique_ptr<PciHardware>> PciHardware::Create(const PciTopology& topology) {
  if (absl::Status s = topology.Validate(); !s.ok()) return s;
  std::unique_ptr<PciHardware> hw(new PciHardware());
  Designs designs;
  for (const PciSegmentSpec& spec : topology.segments) {
    Segment segment{.domain = spec.domain, .root_bus = spec.root_bus, .functions = {}};
    for (const PciFunctionSpec& f : spec.functions) {
      bool multifunction = false;
      for (const PciFunctionSpec& g : spec.functions) {
        multifunction |= f.function == 0 && g.slot == f.slot && g.function != 0;
      }
      segment.functions.push_back(Build(f, spec.domain, nullptr, multifunction, designs));
    }
    hw->segments_.push_back(std::move(segment));
  }
  hw->ForEach([&hw](PciFunction& f) { f.hw_ = hw.get(); });
  hw->PowerOn();
  return hw;
}

PciHardware::~PciHardware() = default;

std::unique_ptr<PciFunction> PciHardware::Build(const PciFunctionSpec& spec, uint16_t domain,
                                                PciFunction* parent, bool multifunction,
                                                Designs& designs) {
  std::unique_ptr<PciFunction> f(new PciFunction());
  f->name_ = spec.name;
  f->kind_ = spec.kind;
  f->domain_ = domain;
  f->devfn_ = static_cast<uint8_t>(PCI_DEVFN(spec.slot, spec.function));
  f->parent_ = parent;
  f->tmpl_ = designs.Function(spec, multifunction);
  if (spec.total_vfs > 0) f->vf_tmpl_ = designs.Vf(spec);
  for (const PciFunctionSpec& c : spec.children) {
    bool mfd = false;
    for (const PciFunctionSpec& g : spec.children) {
      mfd |= c.function == 0 && g.slot == c.slot && g.function != 0;
    }
    f->children_.push_back(Build(c, domain, f.get(), mfd, designs));
  }
  return f;
}

void PciHardware::PowerOn() {
  ForEach([](PciFunction& f) { f.vfs_.clear(); });
  ForEach([this](PciFunction& f) { ResetFunction(f); });
}

void PciHardware::ResetFunction(PciFunction& f) {
  std::memcpy(f.config_.data(), f.tmpl_->reset.data(), f.config_.size());
  f.ResetMsix();
  f.vfs_.clear();  // VF Enable is clear again
  ++f.reset_count_;
}

void PciHardware::ResetBelow(PciFunction& bridge) {
  for (const std::unique_ptr<PciFunction>& child : bridge.children_) {
    ResetFunction(*child);
    if (child->is_bridge()) ResetBelow(*child);
  }
}

void PciHardware::EnableVfs(PciFunction& pf) {
  const uint16_t cap = pf.sriov_cap();
  const uint16_t num = static_cast<uint16_t>(pf.Peek(cap + PCI_SRIOV_NUM_VF, 2));
  const uint16_t total = static_cast<uint16_t>(pf.Peek(cap + PCI_SRIOV_TOTAL_VF, 2));
  const uint16_t offset = static_cast<uint16_t>(pf.Peek(cap + PCI_SRIOV_VF_OFFSET, 2));
  const uint16_t stride = static_cast<uint16_t>(pf.Peek(cap + PCI_SRIOV_VF_STRIDE, 2));
  pf.vfs_.clear();
  if (num == 0 || num > total) return;  // no VF answers (undefined in the spec)
  for (uint16_t i = 0; i < num; ++i) {
    std::unique_ptr<PciFunction> vf(new PciFunction());
    vf->name_ = absl::StrCat(pf.name_, ".vf", i);
    vf->kind_ = PciKind::kEndpoint;
    vf->domain_ = pf.domain_;
    vf->devfn_ = static_cast<uint8_t>(pf.devfn_ + offset + i * stride);
    vf->parent_ = pf.parent_;
    vf->physfn_ = &pf;
    vf->tmpl_ = pf.vf_tmpl_;
    vf->hw_ = this;
    std::memcpy(vf->config_.data(), vf->tmpl_->reset.data(), vf->config_.size());
    vf->ResetMsix();
    pf.vfs_.push_back(std::move(vf));
  }
}

PciFunction* PciHardware::RouteOnBus(const std::vector<std::unique_ptr<PciFunction>>& functions,
                                     uint8_t this_bus, const PciFunction* upstream, uint8_t bus,
                                     uint8_t devfn) {
  if (bus == this_bus) {
    // Below a root or downstream port, only device 0 exists unless ARI
    // forwarding turns the device number into function-number bits.
    if (upstream != nullptr && upstream->kind() != PciKind::kSwitchUpstream &&
        PCI_SLOT(devfn) != 0 &&
        (upstream->Peek(upstream->exp_cap() + PCI_EXP_DEVCTL2, 2) & PCI_EXP_DEVCTL2_ARI) == 0) {
      return nullptr;
    }
    for (const std::unique_ptr<PciFunction>& f : functions) {
      if (f->devfn_ == devfn) return f.get();
      for (const std::unique_ptr<PciFunction>& vf : f->vfs_) {
        if (vf->devfn_ == devfn) return vf.get();
      }
    }
    return nullptr;
  }
  for (const std::unique_ptr<PciFunction>& f : functions) {
    if (!f->is_bridge()) continue;
    const uint8_t secondary = static_cast<uint8_t>(f->Peek(PCI_SECONDARY_BUS, 1));
    const uint8_t subordinate = static_cast<uint8_t>(f->Peek(PCI_SUBORDINATE_BUS, 1));
    if (secondary == 0 || secondary <= this_bus) continue;
    if (bus >= secondary && bus <= subordinate) {
      return RouteOnBus(f->children_, secondary, f.get(), bus, devfn);
    }
  }
  return nullptr;
}

PciFunction* PciHardware::Route(uint16_t domain, uint8_t bus, uint8_t devfn) {
  for (Segment& s : segments_) {
    if (s.domain != domain) continue;
    if (bus < s.root_bus) return nullptr;
    return RouteOnBus(s.functions, s.root_bus, nullptr, bus, devfn);
  }
  return nullptr;
}

uint8_t PciHardware::BusOf(const PciFunction& f) const {
  if (f.parent_ != nullptr) return static_cast<uint8_t>(f.parent_->Peek(PCI_SECONDARY_BUS, 1));
  return RootBus(f.domain_);
}

namespace {

bool WellFormed(uint16_t offset, int size) {
  return (size == 1 || size == 2 || size == 4) && offset % size == 0 &&
         offset + size <= PCI_CFG_SPACE_EXP_SIZE;
}

}  // namespace

uint32_t PciHardware::ConfigRead(uint16_t domain, uint8_t bus, uint8_t devfn, uint16_t offset,
                                 int size) {
  ++config_reads_;
  if (!WellFormed(offset, size)) return size == 1 ? 0xffu : size == 2 ? 0xffffu : ~0u;
  const uint32_t all_ones = size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
  PciFunction* f = Route(domain, bus, devfn);
  return f == nullptr ? all_ones : f->Peek(offset, size);
}

void PciHardware::ConfigWrite(uint16_t domain, uint8_t bus, uint8_t devfn, uint16_t offset,
                              int size, uint32_t value) {
  ++config_writes_;
  if (!WellFormed(offset, size)) return;
  PciFunction* f = Route(domain, bus, devfn);
  if (f != nullptr) Write(*f, offset, size, value);
}

void PciHardware::Write(PciFunction& f, uint16_t offset, int size, uint32_t value) {
  const PciConfigTemplate& t = *f.tmpl_;
  const uint16_t sriov_ctrl = f.sriov_cap() != 0 ? f.sriov_cap() + PCI_SRIOV_CTRL : 0;
  const bool vfs_were_enabled =
      sriov_ctrl != 0 && (f.Peek(sriov_ctrl, 2) & PCI_SRIOV_CTRL_VFE) != 0;
  const bool bus_reset_was =
      f.is_bridge() && (f.Peek(PCI_BRIDGE_CONTROL, 2) & PCI_BRIDGE_CTL_BUS_RESET) != 0;
  for (int i = 0; i < size; ++i) {
    const uint16_t at = static_cast<uint16_t>(offset + i);
    const uint8_t b = static_cast<uint8_t>(value >> (8 * i));
    // NumVFs is frozen while VFs exist.
    if (vfs_were_enabled && at >= f.sriov_cap() + PCI_SRIOV_NUM_VF &&
        at < f.sriov_cap() + PCI_SRIOV_NUM_VF + 2) {
      continue;
    }
    uint8_t v = static_cast<uint8_t>((f.config_[at] & ~t.wmask[at]) | (b & t.wmask[at]));
    v = static_cast<uint8_t>(v & ~(b & t.w1cmask[at]));
    f.config_[at] = v;
  }
  const auto touched = [offset, size](uint16_t reg, int width) {
    return offset < reg + width && reg < offset + size;
  };
  // Initiate FLR: bit 15 of Device Control, in the written value.
  if (t.flr_capable && touched(f.exp_cap() + PCI_EXP_DEVCTL + 1, 1)) {
    const int shift = 8 * (f.exp_cap() + PCI_EXP_DEVCTL + 1 - offset);
    if (((value >> shift) & 0x80) != 0) {
      ResetFunction(f);
      return;
    }
  }
  if (f.is_bridge() && touched(PCI_BRIDGE_CONTROL, 1)) {
    const bool bus_reset = (f.Peek(PCI_BRIDGE_CONTROL, 2) & PCI_BRIDGE_CTL_BUS_RESET) != 0;
    if (bus_reset && !bus_reset_was) ResetBelow(f);
  }
  if (sriov_ctrl != 0 && touched(sriov_ctrl, 2)) {
    const bool enabled = (f.Peek(sriov_ctrl, 2) & PCI_SRIOV_CTRL_VFE) != 0;
    if (enabled && !vfs_were_enabled) EnableVfs(f);
    if (!enabled && vfs_were_enabled) f.vfs_.clear();
  }
  // MSI-X Enable set or a Function Mask cleared: what was pending goes out.
  if (f.msix_cap() != 0 && touched(f.msix_cap() + PCI_MSIX_FLAGS, 2)) f.SendPendingMsix();
}

std::vector<uint16_t> PciHardware::Domains() const {
  std::vector<uint16_t> out;
  for (const Segment& s : segments_) out.push_back(s.domain);
  return out;
}

uint8_t PciHardware::RootBus(uint16_t domain) const {
  for (const Segment& s : segments_) {
    if (s.domain == domain) return s.root_bus;
  }
  return 0;
}

const std::vector<std::unique_ptr<PciFunction>>* PciHardware::RootFunctions(uint16_t domain) const {
  for (const Segment& s : segments_) {
    if (s.domain == domain) return &s.functions;
  }
  return nullptr;
}

namespace {

void Walk(const std::vector<std::unique_ptr<PciFunction>>& functions,
          const std::function<void(PciFunction&)>& fn) {
  for (const std::unique_ptr<PciFunction>& f : functions) {
    fn(*f);
    for (const std::unique_ptr<PciFunction>& vf : f->vfs()) fn(*vf);
    Walk(f->children(), fn);
  }
}

}  // namespace

void PciHardware::ForEach(const std::function<void(PciFunction&)>& fn) const {
  for (const Segment& s : segments_) Walk(s.functions, fn);
}

PciFunction* PciHardware::Find(absl::string_view name) const {
  PciFunction* found = nullptr;
  ForEach([&](PciFunction& f) {
    if (found == nullptr && f.name() == name) found = &f;
  });
  return found;
}

size_t PciHardware::FunctionCount() const {
  size_t n = 0;
  ForEach([&n](PciFunction&) { ++n; });
  return n;
}

}  // namespace khosim::hw

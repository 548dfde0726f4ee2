// PciTopology validation: a description the hardware can be built from.
#include "khosim/hw/pci_topology.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace khosim::hw {
namespace {

class Checker {
 public:
  absl::Status Segment(const PciSegmentSpec& segment) {
    bridges_ = 0;
    if (absl::Status s = Bus(segment.functions, nullptr); !s.ok()) return s;
    if (bridges_ > 255u - segment.root_bus) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PCI segment ", segment.domain, " has ", bridges_, " bridges but only ",
          255u - segment.root_bus, " bus numbers above its root bus ", segment.root_bus));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Bus(const std::vector<PciFunctionSpec>& functions, const PciFunctionSpec* parent) {
    std::set<std::pair<int, int>> taken;
    std::set<int> slots_with_fn0;
    for (const PciFunctionSpec& f : functions) {
      if (f.function == 0) slots_with_fn0.insert(f.slot);
    }
    for (const PciFunctionSpec& f : functions) {
      const std::string where = absl::StrCat("PCI function \"", f.name, "\"");
      if (f.name.empty()) return absl::InvalidArgumentError("a PCI function has no name");
      if (!names_.insert(f.name).second) {
        return absl::InvalidArgumentError(absl::StrCat(where, " is named twice"));
      }
      if (f.slot > 31 || f.function > 7) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": slot ", f.slot, " function ", f.function, " out of range"));
      }
      if (!taken.insert({f.slot, f.function}).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": slot ", f.slot, " function ", f.function, " is taken"));
      }
      if (slots_with_fn0.count(f.slot) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": slot ", f.slot, " has no function 0, so nothing finds it"));
      }
      if (absl::Status s = Placement(f, parent, where); !s.ok()) return s;
      if (f.kind == PciKind::kEndpoint) {
        if (absl::Status s = Endpoint(f, where); !s.ok()) return s;
      } else {
        ++bridges_;
      }
      if (absl::Status s = Bus(f.children, &f); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  static absl::Status Placement(const PciFunctionSpec& f, const PciFunctionSpec* parent,
                                const std::string& where) {
    const PciKind above = parent == nullptr ? PciKind::kEndpoint : parent->kind;
    if (parent != nullptr && parent->kind == PciKind::kEndpoint) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " sits below endpoint \"", parent->name, "\""));
    }
    switch (f.kind) {
      case PciKind::kRootPort:
        if (parent != nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": a root port must sit on a root bus"));
        }
        break;
      case PciKind::kSwitchUpstream:
        if (parent == nullptr ||
            (above != PciKind::kRootPort && above != PciKind::kSwitchDownstream)) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": a switch upstream port must sit below a root or downstream port"));
        }
        break;
      case PciKind::kSwitchDownstream:
        if (parent == nullptr || above != PciKind::kSwitchUpstream) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": a switch downstream port must sit below a switch upstream port"));
        }
        break;
      case PciKind::kEndpoint:
        if (parent != nullptr && above == PciKind::kSwitchUpstream) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": an endpoint cannot sit on a switch's internal bus"));
        }
        break;
    }
    return absl::OkStatus();
  }

  static absl::Status Endpoint(const PciFunctionSpec& f, const std::string& where) {
    if (!f.children.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": an endpoint has no bus below it"));
    }
    if (f.bar0_size != 0 && (f.bar0_size < 16 || (f.bar0_size & (f.bar0_size - 1)) != 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": BAR 0 size ", f.bar0_size, " is not a power of two >= 16"));
    }
    if (f.msix_vectors > 2048) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": more than 2048 MSI-X vectors"));
    }
    if (f.total_vfs > 0) {
      const uint32_t devfn = (uint32_t{f.slot} << 3) | f.function;
      const uint32_t last = devfn + f.vf_offset + uint32_t{f.vf_stride} * (f.total_vfs - 1u);
      if (f.vf_offset == 0 || (f.total_vfs > 1 && f.vf_stride == 0) || last > 255) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": its ", f.total_vfs,
                                                       " VFs (offset ", f.vf_offset, ", stride ",
                                                       f.vf_stride, ") do not fit on its bus"));
      }
    }
    return absl::OkStatus();
  }

  std::set<std::string> names_;
  unsigned bridges_ = 0;
};

size_t CountFunctions(const std::vector<PciFunctionSpec>& functions) {
  size_t n = 0;
  for (const PciFunctionSpec& f : functions) n += 1 + CountFunctions(f.children);
  return n;
}

}  // namespace

size_t PciTopology::FunctionCount() const {
  size_t n = 0;
  for (const PciSegmentSpec& s : segments) n += CountFunctions(s.functions);
  return n;
}

absl::Status PciTopology::Validate() const {
  std::set<uint16_t> domains;
  Checker checker;
  for (const PciSegmentSpec& segment : segments) {
    if (!domains.insert(segment.domain).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("PCI segment ", segment.domain, " is described twice"));
    }
    if (absl::Status s = checker.Segment(segment); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace khosim::hw

namespace khosim::hw {

PciFunctionSpec PciEndpoint(std::string name, uint8_t slot, uint8_t function) {
  PciFunctionSpec f;
  f.kind = PciKind::kEndpoint;
  f.name = std::move(name);
  f.slot = slot;
  f.function = function;
  return f;
}

PciFunctionSpec PciRootPort(std::string name, uint8_t slot, std::vector<PciFunctionSpec> below) {
  PciFunctionSpec f;
  f.kind = PciKind::kRootPort;
  f.name = std::move(name);
  f.slot = slot;
  f.class_code = 0x060400;
  f.children = std::move(below);
  return f;
}

PciFunctionSpec PciSwitch(std::string name, std::vector<PciFunctionSpec> below) {
  PciFunctionSpec up;
  up.kind = PciKind::kSwitchUpstream;
  up.name = name;
  up.class_code = 0x060400;
  for (size_t i = 0; i < below.size(); ++i) {
    PciFunctionSpec down;
    down.kind = PciKind::kSwitchDownstream;
    down.name = absl::StrCat(name, ".d", i);
    down.slot = static_cast<uint8_t>(i);
    down.class_code = 0x060400;
    below[i].slot = 0;
    down.children.push_back(std::move(below[i]));
    up.children.push_back(std::move(down));
  }
  return up;
}

PciTopology PciExampleTopology() {
  PciFunctionSpec accel = PciEndpoint("accel0");
  accel.vendor = 0x8086;
  accel.device = 0x0b25;  // a DSA-like accelerator
  accel.class_code = 0x088000;
  accel.total_vfs = 4;
  PciSegmentSpec segment;
  segment.functions.push_back(
      PciRootPort("rp0", 1, {PciSwitch("sw0", {PciEndpoint("nvme0"), PciEndpoint("nvme1")})}));
  segment.functions.push_back(PciRootPort("rp1", 2, {std::move(accel)}));
  return PciTopology{.segments = {std::move(segment)}};
}

}  // namespace khosim::hw

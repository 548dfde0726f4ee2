// PciTopology: what PCI hardware a machine has, as a tree of functions per
// segment (PCI domain). It is a description, fixed for the machine's life;
// PciHardware (khosim/hw/pci.h) builds the live config spaces from it.
//
//   segment 0000, root bus 00
//     root port 00:01.0 "rp0"
//       switch upstream port "sw0"
//         downstream port 00.0 -> endpoint "nvme0"
//         downstream port 01.0 -> endpoint "nvme1"
//     root port 00:02.0 "rp1" -> endpoint "accel0" (SR-IOV, 4 VFs)
//
// Where a function sits is its device/function number on its parent's bus;
// bus numbers below the root bus are not part of the hardware: software
// programs them into the bridges (and a kexec may keep or change them).
#ifndef KHOSIM_HW_PCI_TOPOLOGY_H_
#define KHOSIM_HW_PCI_TOPOLOGY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace khosim::hw {

enum class PciKind {
  kEndpoint,          // type 0 header: a device (a PF when it has VFs)
  kRootPort,          // type 1, on a root bus
  kSwitchUpstream,    // type 1, below a root or downstream port
  kSwitchDownstream,  // type 1, only below a switch upstream port
};

struct PciFunctionSpec {
  PciKind kind = PciKind::kEndpoint;
  // Unique in the machine; how tests, scenarios and reports name it.
  std::string name;
  uint8_t slot = 0;  // device number on the parent bus (0..31)
  uint8_t function = 0;
  uint16_t vendor = 0x1b36;  // endpoints; ports get a fixed bridge id
  uint16_t device = 0x0010;
  uint32_t class_code = 0x010802;  // 24 bits (NVMe); bridges: 0x060400
  // Endpoints: a 64-bit memory BAR 0 of this many bytes (a power of two of
  // at least 16 bytes; 0: no BAR).
  uint64_t bar0_size = 16 * 1024;
  bool flr = true;             // endpoints: Function Level Reset capable
  uint16_t msix_vectors = 16;  // endpoints: MSI-X table size (0: no MSI-X)
  bool msi = true;             // endpoints: an MSI capability
  // Endpoints: a programmable DMA engine (khosim/hw/dma_engine.h); VFs
  // have none.
  bool dma_engine = true;
  // SR-IOV (endpoints): TotalVFs (0: no SR-IOV capability), the VF device
  // id, and the routing-ID offset and stride of VF 1..N from the PF.
  uint16_t total_vfs = 0;
  uint16_t vf_device = 0x0011;
  uint16_t vf_offset = 1;
  uint16_t vf_stride = 1;
  // Functions on this bridge's secondary bus.
  std::vector<PciFunctionSpec> children;
};

struct PciSegmentSpec {
  uint16_t domain = 0;
  uint8_t root_bus = 0;
  std::vector<PciFunctionSpec> functions;  // on the root bus
};

struct PciTopology {
  std::vector<PciSegmentSpec> segments;

  bool empty() const { return segments.empty(); }
  // Number of functions described, VFs not counted.
  size_t FunctionCount() const;
  // InvalidArgument naming the first problem: a duplicate domain, name or
  // slot/function on one bus; a slot above 31 or function above 7; a
  // child of an endpoint; a kind in the wrong place (root ports only on a
  // root bus, downstream ports only below an upstream port, an upstream
  // port only below a root or downstream port); a bad BAR size; SR-IOV
  // whose VF routing IDs leave the bus; more bridges in a segment than it
  // has bus numbers above its root bus.
  absl::Status Validate() const;
};

// Builders for the common shapes.
// An endpoint at |slot|.|function| of its parent's bus, with the defaults above.
PciFunctionSpec PciEndpoint(std::string name, uint8_t slot = 0, uint8_t function = 0);
// A root port at |slot| on a root bus, with |below| on its secondary bus.
PciFunctionSpec PciRootPort(std::string name, uint8_t slot, std::vector<PciFunctionSpec> below);
// A switch: upstream port |name| with one downstream port "<name>.d<i>" at
// slot i for each of |below| (each at slot 0 under its port).
PciFunctionSpec PciSwitch(std::string name, std::vector<PciFunctionSpec> below);
// The machine the examples use: segment 0000 with root port "rp0" (00:01.0)
// above switch "sw0" above endpoints "nvme0" and "nvme1", and root port
// "rp1" (00:02.0) above "accel0", an SR-IOV PF with 4 VFs.
PciTopology PciExampleTopology();

}  // namespace khosim::hw

#endif  // KHOSIM_HW_PCI_TOPOLOGY_H_

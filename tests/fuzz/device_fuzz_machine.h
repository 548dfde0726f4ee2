// What the device fuzz targets (iommufd_incoming_fuzzer,
// vfio_incoming_fuzzer) share: the small machine with the example PCI
// hardware they boot per input, and the outgoing record a reboot hook
// patches.
#ifndef KHOSIM_TESTS_FUZZ_DEVICE_FUZZ_MACHINE_H_
#define KHOSIM_TESTS_FUZZ_DEVICE_FUZZ_MACHINE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/machine.h"

namespace khosim::fuzz {

// 64 MiB, kho=on liveupdate=on, the example PCI hardware, a 16 KiB DMA
// quantum, built with |modules|.
inline MachineConfig DeviceFuzzMachine(uint64_t seed, std::vector<std::string> modules) {
  MachineConfig c;
  c.ram = 64 * kMiB;
  c.seed = seed;
  c.cmdline = "kho=on liveupdate=on";
  c.kernel_image_size = 512 * kKiB;
  c.early_alloc_bytes_per_node = 1 * kMiB;
  c.low_early_alloc_bytes = 1 * kMiB;
  c.build = KernelBuild{std::move(modules)};
  c.pci = hw::PciExampleTopology();
  c.dma_quantum = 16 * kKiB;
  return c;
}

// The record (serialized_data) of the first outgoing file preserved under
// |compatible|, or 0.
inline uint64_t OutgoingRecordPhys(Machine& m, absl::string_view compatible) {
  for (const luo::Luo::SessionInfo& s : m.kernel().luo().OutgoingSessions()) {
    for (const luo::Luo::FileInfo& f : s.files) {
      if (f.compatible == compatible) return f.data;
    }
  }
  return 0;
}

}  // namespace khosim::fuzz

#endif  // KHOSIM_TESTS_FUZZ_DEVICE_FUZZ_MACHINE_H_

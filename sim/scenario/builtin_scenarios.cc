// The built-in scenarios: YAML texts compiled into the program, and the
// lookup that takes a built-in name or a file path.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "khosim/scenario/scenario.h"

namespace khosim::scenario {
namespace {

constexpr char kDefaultScenario[] =
    R"yaml(# The default: five VMs, each VM's files in one LUO session, across two live
# updates. Three VMs' guest RAM lives in memfds; vm3's in a hugetlb memfd of
# 2 MiB pages and vm4's in one 1 GiB page (the kernels are built with the
# hugetlb handler, and their command lines give the pools). vm0 has an
# NVMe-like device assigned through VFIO (its cdev bound to an iommufd, the
# vfio-pci-v1 handler) and vm2 an accelerator through the pci-passthrough
# test driver (the example PCI hardware): each VMM starts its device and
# preserves it with the VM's RAM. vm0's device writes into vm0's RAM by
# DMA the whole time (a counter streaming into it at IOVA 4 GiB, mapped
# through an iommufd HWPT that is marked for live update): through both
# kexecs, through adopted IOMMU page tables; each next VMM binds nvme0 to
# the retrieved iommufd, restores the HWPT and moves the device to a fresh
# one, with every DMA access checked and every value verified. In each update the running VMMs preserve
# their sessions, the kernel kexecs, and new VMMs retrieve the sessions,
# verify the bytes and that each device came back at its address, incoming
# and still mastering, finish them, and (in boot 2) preserve the same
# memory and devices again for the next update. The next kernel leaves the
# preserved huge pages out of its pools, so they are not allocated twice,
# and keeps the preserved devices' bridges as they were. Nothing of an old
# kernel may be left unclaimed.
version: 1
name: default
description: five VMs with memfd and hugetlb guest RAM and two passed-through PCI devices in LUO sessions across two kexecs
machine:
  {ram: 6G, nodes: 2, page_size: 4K, seed: 1, scrub: poison, handlers: [memfd, hugetlb, pci-passthrough, iommufd, vfio-pci, vfio-pci-liveupdate], pci: example}
files:
  vm0-ram: {kind: memfd, size: 96M, content: {generator: random}}
  vm1-ram: {kind: memfd, size: 96M, content: {generator: random}}
  vm1-rom: {kind: memfd, size: 2M, content: {generator: pattern, pattern: "OVMF"}}
  vm2-ram:
    kind: memfd
    size: 64M
    content:
      generator: sparse
      extents: [{offset: 0, length: 8M}, {offset: 32M, length: 4M}, {offset: 60M, length: 4M}]
  vm3-ram: {kind: hugetlb, page_size: 2M, size: 32M, content: {generator: random}}
  vm4-ram:                      # one 1 GiB page, touched here and there
    kind: hugetlb
    page_size: 1G
    size: 1G
    content: {generator: sampled, stride: 2M, extents: [{offset: 0, length: 8M}]}
  vm0-iommufd: {kind: iommufd}  # /dev/iommu: nvme0's DMA goes through it
  nvme0: {kind: device, driver: vfio-pci, dma: {file: vm0-ram, iova: 4G, iommufd: vm0-iommufd}}  # PCI functions of machine.pci
  accel0: {kind: device}
boots:
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=24 hugepagesz=1G hugepages=1
    processes:
      - name: vmm-vm0
        sessions:
          - name: vm0
            preserve: [{token: 0x10, file: vm0-ram}, {token: 0x30, file: vm0-iommufd}, {token: 0x20, file: nvme0}]
      - name: vmm-vm1
        sessions:
          - name: vm1
            preserve: [{token: 0x10, file: vm1-ram}, {token: 0x11, file: vm1-rom}]
      - name: vmm-vm2
        sessions: [{name: vm2, preserve: [{token: 0x10, file: vm2-ram}, {token: 0x20, file: accel0}]}]
      - name: vmm-vm3
        sessions: [{name: vm3, preserve: [{token: 0x10, file: vm3-ram}]}]
      - name: vmm-vm4
        sessions: [{name: vm4, preserve: [{token: 0x10, file: vm4-ram}]}]
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=24 hugepagesz=1G hugepages=1
    processes:
      - name: vmm-vm0
        sessions:
          - name: vm0
            retrieve: [{token: 0x10, file: vm0-ram}, {token: 0x20, file: nvme0}, {token: 0x30, file: vm0-iommufd}]
            preserve: [{token: 0x10, file: vm0-ram}, {token: 0x30, file: vm0-iommufd}, {token: 0x20, file: nvme0}]
      - name: vmm-vm1
        sessions:
          - name: vm1
            retrieve: [{token: 0x10, file: vm1-ram}, {token: 0x11, file: vm1-rom, verify: sample}]
            preserve: [{token: 0x10, file: vm1-ram}, {token: 0x11, file: vm1-rom}]
      - name: vmm-vm2
        sessions:
          - name: vm2
            retrieve: [{token: 0x10, file: vm2-ram, verify: sample}, {token: 0x20, file: accel0}]
            preserve: [{token: 0x10, file: vm2-ram}, {token: 0x20, file: accel0}]
      - name: vmm-vm3
        sessions:
          - name: vm3
            retrieve: [{token: 0x10, file: vm3-ram}]
            preserve: [{token: 0x10, file: vm3-ram}]
      - name: vmm-vm4
        sessions:
          - name: vm4
            retrieve: [{token: 0x10, file: vm4-ram, verify: sample}]
            preserve: [{token: 0x10, file: vm4-ram}]
  - cmdline: kho=on liveupdate=on hugepagesz=2M hugepages=24 hugepagesz=1G hugepages=1
    processes:
      - name: vmm-vm0
        sessions:
          - name: vm0
            retrieve: [{token: 0x10, file: vm0-ram}, {token: 0x20, file: nvme0}, {token: 0x30, file: vm0-iommufd}]
      - name: vmm-vm1
        sessions:
          - name: vm1
            retrieve: [{token: 0x10, file: vm1-ram}, {token: 0x11, file: vm1-rom}]
      - name: vmm-vm2
        sessions: [{name: vm2, retrieve: [{token: 0x10, file: vm2-ram}, {token: 0x20, file: accel0}]}]
      - name: vmm-vm3
        sessions: [{name: vm3, retrieve: [{token: 0x10, file: vm3-ram}]}]
      - name: vmm-vm4
        sessions: [{name: vm4, retrieve: [{token: 0x10, file: vm4-ram, verify: sample}]}]
)yaml";

constexpr char kSessionsScenario[] =
    R"yaml(# LUO sessions without files across two kexecs, the second into a kernel
# with the 7.2 LUO rules: sessions are created, carried, retrieved and
# finished; nothing may leak.
version: 1
name: sessions
description: empty LUO sessions across a 7.3 -> 7.3 -> 7.2 chain of kexecs
machine: {ram: 1G, nodes: 1, seed: 3}
boots:
  - processes:
      - name: agent
        sessions: [{name: a, preserve: []}, {name: b, preserve: []}]
  - processes:
      - name: agent
        sessions:
          - {name: a, retrieve: [], preserve: []}
          - {name: b, retrieve: []}
  - luo: "7.2"
    processes:
      - name: agent
        sessions: [{name: a, retrieve: []}]
)yaml";

constexpr char kKhoScenario[] =
    R"yaml(# KHO only: each boot preserves 64 MiB of random-order folios, a vmalloc
# index of them and a checksummed record in a KHO subtree, then kexecs; the
# next kernel restores and verifies every byte and checks that a folio it
# was not told about is gone. Three hops.
version: 1
name: kho
description: KHO folios, a vmalloc index and a subtree across three kexecs
machine: {ram: 4G, nodes: 2, seed: 1}
boots: [{cmdline: kho=on}, {cmdline: kho=on}, {cmdline: kho=on}, {cmdline: kho=on}]
program: {name: kho, preserve_per_boot: 64M}
)yaml";

constexpr char kKexecScrubScenario[] =
    R"yaml(# Without KHO nothing survives a kexec: folios written in one boot must read
# back as scrubbed in the next, twice.
version: 1
name: kexec-scrub
description: nothing written in one boot is readable in the next
machine: {ram: 1G, nodes: 1, seed: 1}
boots: [{cmdline: ""}, {cmdline: ""}, {cmdline: ""}]
program: {name: kexec-scrub}
)yaml";

constexpr char kDataLossScenario[] =
    R"yaml(# A deliberate data loss: the VMM forgets to preserve its ROM file, and the
# next kernel's VMM expects it. `khosim run data-loss` must fail (exit 1).
version: 1
name: data-loss
description: a VM's second file is not preserved; the next boot must notice
machine: {ram: 1G, nodes: 1, seed: 5}
files:
  ram: {kind: memfd, size: 16M}
  rom: {kind: memfd, size: 1M, content: {generator: pattern, pattern: "ROM!"}}
boots:
  - processes:
      - name: vmm
        sessions:
          - name: vm0
            preserve: [{token: 1, file: ram}, {token: 2, file: rom, omit: true}]
  - processes:
      - name: vmm
        sessions:
          - name: vm0
            retrieve: [{token: 1, file: ram}, {token: 2, file: rom}]
)yaml";

const std::vector<std::pair<std::string, const char*>>& Builtins() {
  static const auto* builtins =
      new std::vector<std::pair<std::string, const char*>>{{"default", kDefaultScenario},
                                                           {"sessions", kSessionsScenario},
                                                           {"kho", kKhoScenario},
                                                           {"kexec-scrub", kKexecScrubScenario},
                                                           {"data-loss", kDataLossScenario}};
  return *builtins;
}

}  // namespace

std::vector<std::string> BuiltinScenarioNames() {
  std::vector<std::string> names;
  for (const auto& [name, text] : Builtins()) names.push_back(name);
  return names;
}

std::optional<std::string> BuiltinScenarioText(absl::string_view name) {
  for (const auto& [n, text] : Builtins()) {
    if (n == name) return std::string(text);
  }
  return std::nullopt;
}

absl::StatusOr<Scenario> ResolveScenario(absl::string_view name_or_path) {
  if (std::optional<std::string> text = BuiltinScenarioText(name_or_path)) {
    return ParseScenario(*text, absl::StrCat("builtin:", name_or_path));
  }
  if (absl::StrContains(name_or_path, '/') || absl::EndsWith(name_or_path, ".yaml") ||
      absl::EndsWith(name_or_path, ".yml")) {
    return LoadScenarioFile(std::string(name_or_path));
  }
  return absl::NotFoundError(absl::StrCat(
      "no built-in scenario \"", name_or_path, "\" (built-ins: ",
      absl::StrJoin(BuiltinScenarioNames(), ", "), "; a file path needs a '/' or a .yaml suffix)"));
}

}  // namespace khosim::scenario

// pci_incoming_fuzzer: kernel B's restore of the PCI core's FLB "pci"
// (pci_ser and its block set of pci_dev_ser) from bytes the input
// corrupted, on a real Machine with PCI hardware.
//
// Input:
//   byte 0  bits 0-2: kernel A preserves nvme0, nvme1, accel0 (each through
//           the pci-passthrough driver, in its own session); bit 3: it
//           also preserves sw0.d1's endpoint nvme1 at the PCI level only
//           (no file: nobody will finish it); bit 4: kernel B renumbers
//           (pci=assign-busses,hpbussize=2); bit 5: kernel B only boots
//   rest    patch records, applied by a reboot hook that runs after LUO's
//           (on the bytes the next kernel reads), at most kMaxPatches:
//             u8 target   bit 0: 0 the pci_ser, 1 the first block page
//             u16 offset  modulo the target's size (16, or the page)
//             u8 length   at most 16
//             bytes
//
// Properties: the host never crashes (ASan/UBSan); kernel B either panics
// with one of the PCI core's panics (any other panic is a failure) or
// boots, and then every device it marks incoming is one the patched block
// names with a non-zero refcount, at the address it names; an input that
// patched nothing round-trips: no panic, the preserved devices (and only
// they and their bridges) come back incoming with bus mastering on,
// retrieve and finish succeed, nothing is incoming afterwards, no WARN.
#include <fcntl.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "fuzz_util.h"
#include "khosim/base/panic.h"
#include "khosim/drivers/pci.h"
#include "khosim/fs/vfs.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/kho/abi/block.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/pci_liveupdate.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace {

using khosim::Machine;
using khosim::fuzz::InputReader;

constexpr int kMaxPatches = 16;
constexpr char kPatcherModule[] = "pci-fuzz-patcher";
constexpr const char* kEndpoints[] = {"nvme0", "nvme1", "accel0"};

bool Verbose() {
  static const bool verbose = std::getenv("KHOSIM_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

khosim::MachineConfig PciMachine() {
  khosim::MachineConfig c;
  c.ram = 64 * khosim::kMiB;
  c.seed = 17;
  c.cmdline = "kho=on liveupdate=on";
  c.kernel_image_size = 512 * khosim::kKiB;
  c.early_alloc_bytes_per_node = 1 * khosim::kMiB;
  c.low_early_alloc_bytes = 1 * khosim::kMiB;
  c.build =
      khosim::KernelBuild{{khosim::kMemfdModule, khosim::kPciPassthroughModule, kPatcherModule}};
  c.pci = khosim::hw::PciExampleTopology();
  return c;
}

struct pci_dev* DevOf(Machine& m, const char* name) {
  return m.kernel().pci()->FindFunction(*m.pci().Find(name));
}

int Bind(Machine& m, struct pci_dev* dev) {
  m.kernel().pci()->SetDriverOverride(dev, PCI_PASSTHROUGH_DRIVER_NAME);
  return m.kernel().pci()->Bind(dev);
}

struct pci_ser* OutgoingSer(Machine& m) {
  for (const khosim::luo::Luo::FlbInfo& flb : m.kernel().luo().Flbs()) {
    if (flb.compatible == PCI_LUO_FLB_COMPATIBLE && flb.outgoing_data != 0) {
      return static_cast<struct pci_ser*>(phys_to_virt(flb.outgoing_data));
    }
  }
  return nullptr;
}

// What the reboot hook saw and wrote.
struct Run {
  std::vector<uint8_t> patches;  // the records, replayed by the hook
  bool patched = false;
  bool single_block = false;  // the patched chain is one block: |named| is all of it
  // The block's entries after patching (domain, bdf, refcount > 0).
  std::set<std::pair<uint32_t, uint16_t>> named;
};

Run* current = nullptr;

// The reboot hook: patch, then read back what the next kernel will read.
int PatchHook(Machine& m) {
  Run& run = *current;
  struct pci_ser* ser = OutgoingSer(m);
  if (ser == nullptr) return 0;
  const uint64_t block_pa = ser->devices;
  InputReader in(run.patches.data(), run.patches.size());
  for (int i = 0; i < kMaxPatches && !in.empty(); ++i) {
    const bool block = (in.U8() & 1) != 0;
    if (block && block_pa == 0) break;
    uint8_t* base =
        block ? static_cast<uint8_t*>(phys_to_virt(block_pa)) : reinterpret_cast<uint8_t*>(ser);
    const size_t size = block ? PAGE_SIZE : sizeof(struct pci_ser);
    run.patched |= khosim::fuzz::ApplyPatch(in, base, size);
  }
  // The entries as a reader honouring the first block's count sees them
  // (a longer chain is the block set's business, fuzzed on its own).
  if (block_pa != 0 && block_pa == ser->devices) {
    const auto* header = static_cast<const struct kho_block_header_ser*>(phys_to_virt(block_pa));
    run.single_block = header->next == 0;
    const auto* entries = reinterpret_cast<const struct pci_dev_ser*>(header + 1);
    const uint64_t cap = (PAGE_SIZE - sizeof(*header)) / sizeof(struct pci_dev_ser);
    for (uint64_t i = 0; i < std::min<uint64_t>(header->count, cap); ++i) {
      if (entries[i].refcount != 0) run.named.insert({entries[i].domain, entries[i].bdf});
    }
  }
  return 0;
}

bool KnownPciPanic(const std::string& what) {
  for (const char* known :
       {"Incoming PCI FLB version", "Failed to restore devices KHO block set", "into xarray",
        "Failed to retrieve incoming FLB data", "were never finished!"}) {
    if (absl::StrContains(what, known)) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  InputReader in(data, size);
  const uint8_t shape = in.U8();
  Run run;
  size_t got = 0;
  const uint8_t* rest = in.Bytes(in.remaining(), &got);
  run.patches.assign(rest, rest + got);
  current = &run;

  Machine m(PciMachine());
  KHOSIM_FUZZ_CHECK(
      m.AddModule(khosim::KernelModule{
                      .name = kPatcherModule,
                      .description = "patches the PCI FLB after LUO serialized it",
                      .reboot_hooks = {{"pci_fuzz_patch",
                                        [&m](const khosim::RebootInfo&) { return PatchHook(m); }}},
                  })
          .ok());
  m.Boot();
  khosim::fs::Process& a = m.kernel().vfs().CreateProcess("vmm-a");
  const int dev_a = khosim::luo::OpenLiveupdate(a);
  KHOSIM_FUZZ_CHECK(dev_a >= 0);
  std::vector<std::string> preserved;
  for (int i = 0; i < 3; ++i) {
    if ((shape & (1u << i)) == 0) continue;
    struct pci_dev* dev = DevOf(m, kEndpoints[i]);
    KHOSIM_FUZZ_CHECK(Bind(m, dev) == 0);
    const int s = khosim::luo::CreateSession(a, dev_a, kEndpoints[i]);
    const int fd =
        a.Open(absl::StrFormat("/dev/%s/%s", PCI_PASSTHROUGH_DRIVER_NAME, pci_name(dev)), O_RDWR);
    KHOSIM_FUZZ_CHECK(s >= 0 && fd >= 0);
    KHOSIM_FUZZ_CHECK(a.Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 1ul) == 0);
    KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, fd, 1) == 0);
    preserved.push_back(kEndpoints[i]);
  }
  const bool orphan = (shape & 0x08) != 0 && !preserved.empty() && (shape & 0x02) == 0;
  if (orphan) KHOSIM_FUZZ_CHECK(pci_liveupdate_preserve(DevOf(m, "nvme1")) == 0);

  khosim::KexecOptions options;
  if ((shape & 0x10) != 0) options.cmdline = "kho=on liveupdate=on pci=assign-busses,hpbussize=2";
  std::string outcome = "boot";
  try {
    KHOSIM_FUZZ_CHECK(m.Kexec(options).ok());
    // Every device B marked incoming is one the bytes name.
    for (struct pci_dev* dev : m.kernel().pci()->devices()) {
      if (!dev->liveupdate.was_incoming || !run.single_block) continue;
      KHOSIM_FUZZ_CHECK(
          run.named.count({static_cast<uint32_t>(pci_domain_nr(dev->bus)), pci_dev_id(dev)}) != 0);
    }
    if (!run.patched) {
      for (const std::string& name : preserved) {
        KHOSIM_FUZZ_CHECK(pci_liveupdate_is_incoming(DevOf(m, name.c_str())));
        KHOSIM_FUZZ_CHECK(m.pci().Find(name)->bus_master());
      }
    }
    if ((shape & 0x20) == 0) {
      khosim::fs::Process& b = m.kernel().vfs().CreateProcess("vmm-b");
      const int dev_b = khosim::luo::OpenLiveupdate(b);
      for (const std::string& name : preserved) {
        if (struct pci_dev* dev = DevOf(m, name.c_str())) (void)Bind(m, dev);
        const int s = khosim::luo::RetrieveSession(b, dev_b, name);
        if (s < 0) continue;
        const int fd = khosim::luo::RetrieveFd(b, s, 1);
        const int fin = khosim::luo::FinishSession(b, s);
        if (!run.patched && !orphan) KHOSIM_FUZZ_CHECK(fd >= 0 && fin == 0);
      }
      if (!run.patched && !orphan) {
        for (struct pci_dev* dev : m.kernel().pci()->devices()) {
          KHOSIM_FUZZ_CHECK(!pci_liveupdate_is_incoming(dev));
        }
        KHOSIM_FUZZ_CHECK(m.kernel().WarnCount() == 0);
      }
    }
  } catch (const khosim::KernelPanic& panic) {
    outcome = std::string("panic: ") + panic.what();
    if (!KnownPciPanic(panic.what())) {
      std::fprintf(stderr, "fuzz property failed: unexpected panic: %s\n", panic.what());
      std::abort();
    }
    // An untouched handover panics only for the device nobody finishes.
    KHOSIM_FUZZ_CHECK(run.patched || (orphan && absl::StrContains(panic.what(), "never finished")));
  }
  if (Verbose()) {
    std::fprintf(stderr, "[pci] shape 0x%02x, %zu preserved, %s: %s\n", shape, preserved.size(),
                 run.patched ? "patched" : "pristine", outcome.c_str());
  }
  current = nullptr;
  return 0;
}

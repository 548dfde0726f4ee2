// iommu_incoming_fuzzer: kernel B's adoption of the IOMMU's FLB
// "iommu-liveupdate" (iommu_flb_ser, its three array chains) and of the
// preserved root, context and page-table pages, from bytes the input
// corrupted, on a real Machine whose DMA engine keeps running through the
// kexec.
//
// Input:
//   byte 0  bit 0: nvme0 gets DMA maps (a 256 KiB memfd at IOVA 4 GiB) and
//           is preserved with them; bit 1: accel0 too (IOVA 8 GiB, another
//           session); bit 2: nvme0's engine streams a counter through the
//           kexec; bit 3: kernel B only boots (no retrieve, no finish)
//   rest    patch records, applied by a reboot hook after LUO's, at most
//           kMaxPatches:
//             u8 target   modulo 6: the iommu_flb_ser, the unit, domain or
//                         device array's first page, nvme0's top page
//                         table, the leaf table that maps IOVA 4 GiB
//             u16 offset  modulo the target's size
//             u8 length   at most 16
//             bytes
//
// Properties: the host never crashes (ASan/UBSan) whatever the unit walks
// and the engine writes; kernel B either panics with one of the IOMMU's
// panics (or with any panic after the engine wrote stray memory through a
// corrupt table, which is recorded), or boots, and every device it restored is one a live device
// record names; an input that patched nothing round-trips: no panic, each
// preserved device restored with its own mappings, retrieve and finish
// succeed, no DMA fault or stray write, no WARN, nothing preserved left
// but the root FDT.
#include <fcntl.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "fuzz_util.h"
#include "khosim/base/panic.h"
#include "khosim/drivers/iommu.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/linux/iommu.h"
#include "khosim/linux/kho/abi/iommu.h"
#include "khosim/linux/mm.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace {

using khosim::Machine;
using khosim::fuzz::InputReader;

constexpr int kMaxPatches = 16;
constexpr char kPatcherModule[] = "iommu-fuzz-patcher";
constexpr const char* kDevices[] = {"nvme0", "accel0"};
constexpr uint64_t kIova[] = {4 * khosim::kGiB, 8 * khosim::kGiB};
constexpr uint64_t kSize = 256 * khosim::kKiB;

bool Verbose() {
  static const bool verbose = std::getenv("KHOSIM_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

khosim::MachineConfig IommuMachine() {
  khosim::MachineConfig c;
  c.ram = 64 * khosim::kMiB;
  c.seed = 23;
  c.cmdline = "kho=on liveupdate=on";
  c.kernel_image_size = 512 * khosim::kKiB;
  c.early_alloc_bytes_per_node = 1 * khosim::kMiB;
  c.low_early_alloc_bytes = 1 * khosim::kMiB;
  c.build =
      khosim::KernelBuild{{khosim::kMemfdModule, khosim::kPciPassthroughModule, kPatcherModule}};
  c.pci = khosim::hw::PciExampleTopology();
  c.dma_quantum = 16 * khosim::kKiB;
  return c;
}

struct pci_dev* DevOf(Machine& m, const char* name) {
  return m.kernel().pci()->FindFunction(*m.pci().Find(name));
}

int Bind(Machine& m, struct pci_dev* dev) {
  m.kernel().pci()->SetDriverOverride(dev, PCI_PASSTHROUGH_DRIVER_NAME);
  return m.kernel().pci()->Bind(dev);
}

struct Run {
  std::vector<uint8_t> patches;
  bool patched = false;
  bool patched_tables = false;  // nvme0's top or leaf table changed
  uint64_t top = 0;             // nvme0's top table
  uint64_t leaf = 0;            // the leaf table mapping IOVA 4 GiB
};

Run* current = nullptr;

struct iommu_flb_ser* OutgoingSer(Machine& m) {
  for (const khosim::luo::Luo::FlbInfo& flb : m.kernel().luo().Flbs()) {
    if (flb.compatible == IOMMU_LUO_FLB_COMPATIBLE && flb.outgoing_data != 0) {
      return static_cast<struct iommu_flb_ser*>(phys_to_virt(flb.outgoing_data));
    }
  }
  return nullptr;
}

int PatchHook(Machine& m) {
  Run& run = *current;
  struct iommu_flb_ser* ser = OutgoingSer(m);
  if (ser == nullptr) return 0;
  const uint64_t pages[] = {ser->iommu_array_phys, ser->iommu_domain_array_phys,
                            ser->device_array_phys, run.top, run.leaf};
  InputReader in(run.patches.data(), run.patches.size());
  for (int i = 0; i < kMaxPatches && !in.empty(); ++i) {
    const unsigned target = in.U8() % 6;
    uint8_t* base = nullptr;
    size_t size = PAGE_SIZE;
    if (target == 0) {
      base = reinterpret_cast<uint8_t*>(ser);
      size = sizeof(*ser);
    } else if (pages[target - 1] != 0) {
      base = static_cast<uint8_t*>(phys_to_virt(pages[target - 1]));
    }
    const bool changed = khosim::fuzz::ApplyPatch(in, base, size);
    run.patched |= changed;
    run.patched_tables |= changed && target >= 4;
  }
  return 0;
}

bool KnownIommuPanic(const std::string& what) {
  return absl::StrContains(what, "iommu: liveupdate") ||
         absl::StrContains(what, "Failed to restore IOMMU Live Update FLB");
}

// The leaf table mapping |iova| in |d|'s tables.
uint64_t LeafTable(const khosim::drivers::IommuDomain& d, uint64_t iova) {
  uint64_t table = d.top.value();
  for (unsigned level = d.levels; level > 1; --level) {
    const uint64_t pte =
        static_cast<const uint64_t*>(phys_to_virt(table))[(iova >> (12 + 9 * (level - 1))) & 511];
    table = pte & 0x000ffffffffff000ULL;
  }
  return table;
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

  Machine m(IommuMachine());
  KHOSIM_FUZZ_CHECK(
      m.AddModule(khosim::KernelModule{
                      .name = kPatcherModule,
                      .description = "patches the IOMMU FLB after LUO serialized it",
                      .reboot_hooks = {{"iommu_fuzz_patch",
                                        [&m](const khosim::RebootInfo&) { return PatchHook(m); }}},
                  })
          .ok());
  m.Boot();
  khosim::fs::Process& a = m.kernel().vfs().CreateProcess("vmm-a");
  const int lu = khosim::luo::OpenLiveupdate(a);
  KHOSIM_FUZZ_CHECK(lu >= 0);
  std::vector<int> preserved;
  for (int i = 0; i < 2; ++i) {
    if ((shape & (1u << i)) == 0) continue;
    struct pci_dev* dev = DevOf(m, kDevices[i]);
    KHOSIM_FUZZ_CHECK(Bind(m, dev) == 0);
    const int s = khosim::luo::CreateSession(a, lu, kDevices[i]);
    const int fd =
        a.Open(absl::StrFormat("/dev/%s/%s", PCI_PASSTHROUGH_DRIVER_NAME, pci_name(dev)), O_RDWR);
    const int memfd = khosim::fs::MemfdCreate(a, "guest", 0);
    KHOSIM_FUZZ_CHECK(s >= 0 && fd >= 0 && memfd >= 0);
    KHOSIM_FUZZ_CHECK(a.Ftruncate(memfd, kSize) == 0);
    KHOSIM_FUZZ_CHECK(a.Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 1ul) == 0);
    struct pci_passthrough_dma_map map = {
        .size = sizeof(map), .fd = memfd, .offset = 0, .length = kSize, .iova = kIova[i]};
    KHOSIM_FUZZ_CHECK(a.Ioctl(fd, PCI_PASSTHROUGH_DMA_MAP_FILE, &map) == 0);
    KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, memfd, 2) == 0);
    KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, fd, 1) == 0);
    preserved.push_back(i);
  }
  if ((shape & 1) != 0) {
    const khosim::drivers::IommuDomain& d =
        *khosim::drivers::IommuCore::FromFace(iommu_get_domain_for_dev(&DevOf(m, "nvme0")->dev));
    run.top = d.top.value();
    run.leaf = LeafTable(d, kIova[0]);
    if ((shape & 4) != 0) {
      m.dma_engine("nvme0")->Submit(khosim::hw::DmaDescriptor{.op = khosim::hw::DmaOp::kCounter,
                                                              .dst = kIova[0],
                                                              .len = kSize,
                                                              .pattern = 1,
                                                              .repeat = true});
    }
  }

  std::string outcome = "boot";
  try {
    KHOSIM_FUZZ_CHECK(m.Kexec().ok());
    khosim::drivers::IommuCore* core = m.kernel().iommu();
    for (int i = 0; i < 2; ++i) {
      struct iommu_domain* d = iommu_get_domain_for_dev(&DevOf(m, kDevices[i])->dev);
      const bool was = std::find(preserved.begin(), preserved.end(), i) != preserved.end();
      if (!run.patched) KHOSIM_FUZZ_CHECK((d != nullptr) == was);
      if (d != nullptr) KHOSIM_FUZZ_CHECK(khosim::drivers::IommuCore::FromFace(d)->restored);
    }
    KHOSIM_FUZZ_CHECK(core != nullptr);
    if ((shape & 8) == 0) {
      khosim::fs::Process& b = m.kernel().vfs().CreateProcess("vmm-b");
      const int lu_b = khosim::luo::OpenLiveupdate(b);
      for (int i : preserved) {
        (void)Bind(m, DevOf(m, kDevices[i]));
        const int s = khosim::luo::RetrieveSession(b, lu_b, kDevices[i]);
        if (s < 0) continue;
        const int memfd = khosim::luo::RetrieveFd(b, s, 2);
        const int fd = khosim::luo::RetrieveFd(b, s, 1);
        const int fin = khosim::luo::FinishSession(b, s);
        if (!run.patched) KHOSIM_FUZZ_CHECK(memfd >= 0 && fd >= 0 && fin == 0);
      }
      m.RunDevices("fuzz");
      if (!run.patched) {
        KHOSIM_FUZZ_CHECK(m.dma_events().empty());
        KHOSIM_FUZZ_CHECK(m.kernel().WarnCount() == 0);
        KHOSIM_FUZZ_CHECK(m.kernel().kho().UnrestoredBlocks() == 1);  // the root FDT
      }
    }
  } catch (const khosim::KernelPanic& panic) {
    outcome = std::string("panic: ") + panic.what();
    // A corrupt page table can send the running engine's writes anywhere.
    // Into memory kernel B owns, each is a recorded stray write; but into
    // other preserved memory (LUO's session chain, a record) the DMA
    // oracle lets it pass, since preserved memory is what a preserved
    // domain legitimately maps before kernel B restores it. Whatever kernel
    // B then finds corrupted may panic.
    const bool dma_may_have_corrupted_memory =
        (run.patched_tables && (shape & 4) != 0) ||
        std::any_of(m.dma_events().begin(), m.dma_events().end(), [](const khosim::DmaRecord& r) {
          return r.event.kind == khosim::hw::DmaEvent::Kind::kStrayWrite;
        });
    if (!KnownIommuPanic(panic.what()) && !dma_may_have_corrupted_memory) {
      std::fprintf(stderr, "fuzz property failed: unexpected panic: %s\n", panic.what());
      std::abort();
    }
    KHOSIM_FUZZ_CHECK(run.patched);
  }
  if (Verbose()) {
    std::fprintf(stderr, "[iommu] shape 0x%02x, %zu preserved, %s: %s, %zu DMA events\n", shape,
                 preserved.size(), run.patched ? "patched" : "pristine", outcome.c_str(),
                 m.dma_events().size());
  }
  current = nullptr;
  return 0;
}

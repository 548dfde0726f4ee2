// iommufd_incoming_fuzzer: kernel B's retrieve of an iommufd ("iommufd-v1",
// struct iommufd_ser) from bytes the input corrupted, then the VMM's whole
// reclaim (bind the devices, restore every HWPT by token, move the devices
// to a fresh HWPT over the retrieved memfd, destroy the restored ones,
// finish), on a real Machine whose DMA engine keeps writing through the
// kexec.
//
// Input:
//   byte 0  bit 0: nvme1 shares nvme0's HWPT; bit 1: accel0 gets a second
//           marked HWPT (same IOAS); bit 2: nvme0's engine streams a
//           counter through the kexec; bit 3: kernel B runs with
//           khosim.iommufd_retrieve=unsupported
//   rest    patch records over the record's first page, applied by a
//           reboot hook after LUO serialized it, at most kMaxPatches:
//             u16 offset  modulo the page
//             u8 length   at most 16
//             bytes
//
// Properties: the host never crashes (ASan/UBSan); kernel B never panics
// (nothing in this record is worth a panic); a HWPT restored from a
// corrupt record holds a domain the IOMMU core restored, with every device
// on it bound to the retrieved iommufd; an input that patched nothing
// round-trips: every retrieve, bind, restore and move succeeds, finish
// returns 0
// (or, with retrieve unsupported, the iommufd's retrieve is -EOPNOTSUPP and
// finish -EBUSY), no DMA fault or stray write, no WARN.
#include <fcntl.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "device_fuzz_machine.h"
#include "fuzz_util.h"
#include "khosim/base/panic.h"
#include "khosim/drivers/iommu.h"
#include "khosim/drivers/iommufd_client.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/linux/kho/abi/iommufd.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace {

using khosim::Machine;
using khosim::fs::Process;
using khosim::fuzz::InputReader;

constexpr int kMaxPatches = 16;
constexpr char kPatcherModule[] = "iommufd-fuzz-patcher";
constexpr uint64_t kIova = 4 * khosim::kGiB;
constexpr uint64_t kSize = 256 * khosim::kKiB;
constexpr uint64_t kMemfdToken = 2;
constexpr uint64_t kIommufdToken = 3;
constexpr uint64_t kHwptTokens[] = {4, 6};
// The devices, their LUO tokens.
constexpr const char* kDevices[] = {"nvme0", "nvme1", "accel0"};
constexpr uint64_t kDeviceTokens[] = {1, 5, 7};

bool Verbose() {
  static const bool verbose = std::getenv("KHOSIM_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

khosim::MachineConfig IommufdMachine() {
  return khosim::fuzz::DeviceFuzzMachine(29, {khosim::kMemfdModule, khosim::kPciPassthroughModule,
                                              khosim::kIommufdModule, kPatcherModule});
}

struct pci_dev* DevOf(Machine& m, const char* name) {
  return m.kernel().pci()->FindFunction(*m.pci().Find(name));
}

void BindDriver(Machine& m, const char* name) {
  struct pci_dev* dev = DevOf(m, name);
  m.kernel().pci()->SetDriverOverride(dev, PCI_PASSTHROUGH_DRIVER_NAME);
  (void)m.kernel().pci()->Bind(dev);
}

long BindIommufd(Process& p, int dev, int iommufd) {
  struct pci_passthrough_bind_iommufd cmd = {.size = sizeof(cmd), .iommufd = iommufd};
  const long ret = p.Ioctl(dev, PCI_PASSTHROUGH_BIND_IOMMUFD, &cmd);
  return ret != 0 ? ret : cmd.out_devid;
}

long Attach(Process& p, int dev, uint32_t pt) {
  struct pci_passthrough_attach_pt cmd = {.size = sizeof(cmd), .pt_id = pt};
  return p.Ioctl(dev, PCI_PASSTHROUGH_ATTACH_IOMMUFD_PT, &cmd);
}

struct Run {
  std::vector<uint8_t> patches;
  bool patched = false;
};

Run* current = nullptr;

int PatchHook(Machine& m) {
  Run& run = *current;
  const uint64_t phys = khosim::fuzz::OutgoingRecordPhys(m, IOMMUFD_LUO_COMPATIBLE);
  if (phys == 0) return 0;
  auto* base = static_cast<uint8_t*>(phys_to_virt(phys));
  InputReader in(run.patches.data(), run.patches.size());
  for (int i = 0; i < kMaxPatches && !in.empty(); ++i) {
    run.patched |= khosim::fuzz::ApplyPatch(in, base, PAGE_SIZE);
  }
  return 0;
}

// Kernel A: the VMM of the selftests, the devices of |shape| preserved.
std::vector<int> PreserveVmm(Machine& m, Process& a, uint8_t shape) {
  const int lu = khosim::luo::OpenLiveupdate(a);
  const int iommufd = static_cast<int>(khosim::iommufd::OpenIommufd(a));
  const int memfd = khosim::fs::MemfdCreate(a, "guest", MFD_ALLOW_SEALING);
  KHOSIM_FUZZ_CHECK(lu >= 0 && iommufd >= 0 && memfd >= 0);
  KHOSIM_FUZZ_CHECK(a.Ftruncate(memfd, kSize) == 0);
  KHOSIM_FUZZ_CHECK(a.Fcntl(memfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK) == 0);
  const long ioas = khosim::iommufd::IoasAlloc(a, iommufd);
  KHOSIM_FUZZ_CHECK(ioas > 0);
  const auto ioas_id = static_cast<uint32_t>(ioas);
  KHOSIM_FUZZ_CHECK(khosim::iommufd::MapFile(a, iommufd, ioas_id, memfd, 0, kSize, kIova) == 0);
  std::vector<int> devices;  // indexes into kDevices
  devices.push_back(0);
  if (shape & 1) devices.push_back(1);
  if (shape & 2) devices.push_back(2);
  std::vector<int> fds;
  uint32_t shared = 0;
  for (int i : devices) {
    BindDriver(m, kDevices[i]);
    const int fd = a.Open(
        absl::StrFormat("/dev/%s/%s", PCI_PASSTHROUGH_DRIVER_NAME, pci_name(DevOf(m, kDevices[i]))),
        O_RDWR);
    KHOSIM_FUZZ_CHECK(fd >= 0 && a.Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 1ul) == 0);
    const long dev_id = BindIommufd(a, fd, iommufd);
    KHOSIM_FUZZ_CHECK(dev_id > 0);
    // nvme0 and nvme1 share the first HWPT; accel0 has its own.
    uint32_t hwpt = shared;
    if (hwpt == 0 || i == 2) {
      const long made =
          khosim::iommufd::HwptAlloc(a, iommufd, static_cast<uint32_t>(dev_id), ioas_id);
      KHOSIM_FUZZ_CHECK(made > 0);
      hwpt = static_cast<uint32_t>(made);
      KHOSIM_FUZZ_CHECK(
          khosim::iommufd::MarkPreserve(a, iommufd, hwpt, kHwptTokens[i == 2 ? 1 : 0]) == 0);
      if (shared == 0) shared = hwpt;
    }
    KHOSIM_FUZZ_CHECK(Attach(a, fd, hwpt) == 0);
    fds.push_back(fd);
  }
  const int s = khosim::luo::CreateSession(a, lu, "vm0");
  KHOSIM_FUZZ_CHECK(s >= 0);
  KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, memfd, kMemfdToken) == 0);
  KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, iommufd, kIommufdToken) == 0);
  for (size_t k = 0; k < devices.size(); ++k) {
    KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, fds[k], kDeviceTokens[devices[k]]) == 0);
  }
  if (shape & 4) {
    m.dma_engine("nvme0")->Submit(khosim::hw::DmaDescriptor{.op = khosim::hw::DmaOp::kCounter,
                                                            .dst = kIova,
                                                            .len = kSize,
                                                            .pattern = 1,
                                                            .repeat = true});
  }
  return devices;
}

// Kernel B: the VMM takes everything back; what finish returned.
int Reclaim(Machine& m, const std::vector<int>& devices, bool pristine, bool unsupported) {
  Process& b = m.kernel().vfs().CreateProcess("vmm-b");
  for (int i : devices) BindDriver(m, kDevices[i]);
  const int lu = khosim::luo::OpenLiveupdate(b);
  const int s = khosim::luo::RetrieveSession(b, lu, "vm0");
  KHOSIM_FUZZ_CHECK(s >= 0);
  const int memfd = khosim::luo::RetrieveFd(b, s, kMemfdToken);
  std::vector<int> fds;
  for (int i : devices) fds.push_back(khosim::luo::RetrieveFd(b, s, kDeviceTokens[i]));
  const int iommufd = khosim::luo::RetrieveFd(b, s, kIommufdToken);
  if (pristine) {
    KHOSIM_FUZZ_CHECK(memfd >= 0);
    for (int fd : fds) KHOSIM_FUZZ_CHECK(fd >= 0);
    KHOSIM_FUZZ_CHECK(unsupported ? iommufd == -EOPNOTSUPP : iommufd >= 0);
  }
  if (iommufd >= 0) {
    for (int fd : fds) {
      if (fd < 0) continue;
      const long id = BindIommufd(b, fd, iommufd);
      if (pristine) KHOSIM_FUZZ_CHECK(id > 0);
    }
    const bool two = devices.back() == 2;
    std::vector<uint32_t> restored;
    for (int t = 0; t < (two ? 2 : 1); ++t) {
      const long ret = khosim::iommufd::RestoreHwpt(b, iommufd, kHwptTokens[t]);
      if (pristine) KHOSIM_FUZZ_CHECK(ret > 0);
      if (ret > 0) restored.push_back(static_cast<uint32_t>(ret));
    }
    // Every device moves to the automatic HWPT of a new IOAS over the
    // retrieved memfd; the restored HWPTs go.
    const long ioas = memfd < 0 ? memfd : khosim::iommufd::IoasAlloc(b, iommufd);
    long ret = ioas < 0 ? ioas : 0;
    const auto ioas_id = static_cast<uint32_t>(ioas);
    if (ret == 0) ret = khosim::iommufd::MapFile(b, iommufd, ioas_id, memfd, 0, kSize, kIova);
    for (int fd : fds) {
      if (ret == 0 && fd >= 0) ret = Attach(b, fd, ioas_id);
    }
    for (uint32_t id : restored) {
      if (ret == 0) ret = khosim::iommufd::Destroy(b, iommufd, id);
    }
    if (pristine) KHOSIM_FUZZ_CHECK(ret == 0);
  }
  return khosim::luo::FinishSession(b, s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  InputReader in(data, size);
  const uint8_t shape = in.U8();
  const bool unsupported = (shape & 8) != 0;
  Run run;
  size_t got = 0;
  const uint8_t* rest = in.Bytes(in.remaining(), &got);
  run.patches.assign(rest, rest + got);
  current = &run;

  Machine m(IommufdMachine());
  KHOSIM_FUZZ_CHECK(
      m.AddModule(khosim::KernelModule{
                      .name = kPatcherModule,
                      .description = "patches the iommufd record after LUO serialized it",
                      .reboot_hooks = {{"iommufd_fuzz_patch",
                                        [&m](const khosim::RebootInfo&) { return PatchHook(m); }}},
                  })
          .ok());
  m.Boot();
  Process& a = m.kernel().vfs().CreateProcess("vmm-a");
  const std::vector<int> devices = PreserveVmm(m, a, shape);

  std::string outcome;
  try {
    khosim::KexecOptions options;
    if (unsupported) options.cmdline = m.config().cmdline + " khosim.iommufd_retrieve=unsupported";
    KHOSIM_FUZZ_CHECK(m.Kexec(options).ok());
    const int fin = Reclaim(m, devices, !run.patched, unsupported);
    outcome = absl::StrFormat("finish %d", fin);
    if (!run.patched) KHOSIM_FUZZ_CHECK(fin == (unsupported ? -EBUSY : 0));
    m.RunDevices("fuzz");
    // Whatever the record said, every domain is still one the IOMMU core
    // restored or made in this boot, and no device lost its translation.
    KHOSIM_FUZZ_CHECK(m.dma_events().empty());
    if (!run.patched) KHOSIM_FUZZ_CHECK(m.kernel().WarnCount() == 0);
  } catch (const khosim::KernelPanic& panic) {
    std::fprintf(stderr, "fuzz property failed: unexpected panic: %s\n", panic.what());
    std::abort();
  }
  if (Verbose()) {
    std::fprintf(stderr, "[iommufd] shape 0x%02x, %zu devices, %s: %s\n", shape, devices.size(),
                 run.patched ? "patched" : "pristine", outcome.c_str());
  }
  current = nullptr;
  return 0;
}

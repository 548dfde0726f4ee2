// vfio_incoming_fuzzer: kernel B's retrieve of a VFIO device file
// ("vfio-pci-v1", struct vfio_pci_core_device_ser) from bytes the input
// corrupted, then the VMM's whole reclaim of the selftest flow (bind the
// retrieved device to the retrieved iommufd, restore the HWPT, move to a
// fresh HWPT, finish), on a real Machine whose DMA engine keeps writing
// through the kexec.
//
// Input:
//   byte 0  bit 0: kernel B also hands nvme1 (not preserved) to vfio-pci,
//           a device a corrupt record could name; bit 1: nvme0's engine
//           streams a counter through the kexec; bit 2: nvme1 is bound to
//           vfio-pci before nvme0, so the vfio indexes differ
//   rest    patch records over the record's page, applied by a reboot
//           hook after LUO serialized it, at most kMaxPatches:
//             u16 offset  modulo the page
//             u8 length   at most 16
//             bytes
//
// Properties: the host never crashes (ASan/UBSan); kernel B never panics;
// a record that names another device, or a device this kernel did not
// take in preserved, is refused (the device file is never handed out for
// a device LUO does not own); an input that changed nothing round-trips:
// every step succeeds and finish returns 0; never a DMA fault or stray
// write; no WARN on a pristine run.
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
#include "khosim/drivers/iommufd_client.h"
#include "khosim/drivers/vfio.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/linux/kho/abi/vfio_pci.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"
#include "khosim/uapi/vfio.h"

namespace {

using khosim::Machine;
using khosim::fs::Process;
using khosim::fuzz::InputReader;

constexpr int kMaxPatches = 16;
constexpr char kPatcherModule[] = "vfio-fuzz-patcher";
constexpr uint64_t kIova = 4 * khosim::kGiB;
constexpr uint64_t kSize = 256 * khosim::kKiB;
constexpr uint64_t kDeviceToken = 1;
constexpr uint64_t kMemfdToken = 2;
constexpr uint64_t kIommufdToken = 3;
constexpr uint64_t kHwptToken = 4;

bool Verbose() {
  static const bool verbose = std::getenv("KHOSIM_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

khosim::MachineConfig VfioMachine() {
  return khosim::fuzz::DeviceFuzzMachine(
      31, {khosim::kMemfdModule, khosim::kIommufdModule, khosim::kVfioPciModule,
           khosim::kVfioPciLiveupdateModule, kPatcherModule});
}

struct pci_dev* DevOf(Machine& m, const char* name) {
  return m.kernel().pci()->FindFunction(*m.pci().Find(name));
}

void BindVfio(Machine& m, const char* name) {
  struct pci_dev* dev = DevOf(m, name);
  m.kernel().pci()->SetDriverOverride(dev, VFIO_PCI_DRIVER_NAME);
  (void)m.kernel().pci()->Bind(dev);
}

long VfioBind(Process& p, int dev, int iommufd) {
  struct vfio_device_bind_iommufd cmd = {.argsz = sizeof(cmd), .iommufd = iommufd};
  const long ret = p.Ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &cmd);
  return ret != 0 ? ret : cmd.out_devid;
}

long VfioAttach(Process& p, int dev, uint32_t pt) {
  struct vfio_device_attach_iommufd_pt cmd = {.argsz = sizeof(cmd), .pt_id = pt};
  return p.Ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &cmd);
}

struct Run {
  std::vector<uint8_t> patches;
  bool patched = false;
};

Run* current = nullptr;

int PatchHook(Machine& m) {
  Run& run = *current;
  const uint64_t phys = khosim::fuzz::OutgoingRecordPhys(m, VFIO_PCI_LUO_FH_COMPATIBLE);
  if (phys == 0) return 0;
  auto* base = static_cast<uint8_t*>(phys_to_virt(phys));
  const uint8_t before[sizeof(vfio_pci_core_device_ser)] = {base[0], base[1], base[2],
                                                            base[3], base[4], base[5]};
  InputReader in(run.patches.data(), run.patches.size());
  for (int i = 0; i < kMaxPatches && !in.empty(); ++i) {
    khosim::fuzz::ApplyPatch(in, base, PAGE_SIZE);
  }
  // Only the record's own bytes matter; the rest of its page is slack.
  for (size_t i = 0; i < sizeof(before); ++i) run.patched |= base[i] != before[i];
  return 0;
}

// Kernel A: the selftest's VMM for nvme0, everything preserved in "vm0".
void PreserveVmm(Machine& m, Process& a, uint8_t shape) {
  BindVfio(m, "nvme0");
  const int lu = khosim::luo::OpenLiveupdate(a);
  const int iommufd = static_cast<int>(khosim::iommufd::OpenIommufd(a));
  const int memfd = khosim::fs::MemfdCreate(a, "guest", MFD_ALLOW_SEALING);
  const int dev =
      a.Open(absl::StrFormat("/dev/vfio/devices/vfio%d", vfio_pci_device_index(DevOf(m, "nvme0"))),
             O_RDWR);
  KHOSIM_FUZZ_CHECK(lu >= 0 && iommufd >= 0 && memfd >= 0 && dev >= 0);
  KHOSIM_FUZZ_CHECK(a.Ftruncate(memfd, kSize) == 0);
  KHOSIM_FUZZ_CHECK(a.Fcntl(memfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK) == 0);
  const long ioas = khosim::iommufd::IoasAlloc(a, iommufd);
  KHOSIM_FUZZ_CHECK(ioas > 0);
  const auto ioas_id = static_cast<uint32_t>(ioas);
  KHOSIM_FUZZ_CHECK(khosim::iommufd::MapFile(a, iommufd, ioas_id, memfd, 0, kSize, kIova) == 0);
  const long dev_id = VfioBind(a, dev, iommufd);
  KHOSIM_FUZZ_CHECK(dev_id > 0);
  const long hwpt = khosim::iommufd::HwptAlloc(a, iommufd, static_cast<uint32_t>(dev_id), ioas_id);
  KHOSIM_FUZZ_CHECK(hwpt > 0);
  KHOSIM_FUZZ_CHECK(VfioAttach(a, dev, static_cast<uint32_t>(hwpt)) == 0);
  uint16_t cmd = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
  KHOSIM_FUZZ_CHECK(a.Pwrite(dev, &cmd, 2, VFIO_PCI_CONFIG_OFFSET + PCI_COMMAND) == 2);
  KHOSIM_FUZZ_CHECK(
      khosim::iommufd::MarkPreserve(a, iommufd, static_cast<uint32_t>(hwpt), kHwptToken) == 0);
  const int s = khosim::luo::CreateSession(a, lu, "vm0");
  KHOSIM_FUZZ_CHECK(s >= 0);
  KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, memfd, kMemfdToken) == 0);
  KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, iommufd, kIommufdToken) == 0);
  KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(a, s, dev, kDeviceToken) == 0);
  if (shape & 2) {
    m.dma_engine("nvme0")->Submit(khosim::hw::DmaDescriptor{.op = khosim::hw::DmaOp::kCounter,
                                                            .dst = kIova,
                                                            .len = kSize,
                                                            .pattern = 1,
                                                            .repeat = true});
  }
}

// Kernel B: the VMM takes everything back; what finish returned.
int Reclaim(Machine& m, uint8_t shape, bool pristine) {
  Process& b = m.kernel().vfs().CreateProcess("vmm-b");
  if (shape & 4) BindVfio(m, "nvme1");
  BindVfio(m, "nvme0");
  if (shape & 1) BindVfio(m, "nvme1");
  const int lu = khosim::luo::OpenLiveupdate(b);
  const int s = khosim::luo::RetrieveSession(b, lu, "vm0");
  KHOSIM_FUZZ_CHECK(s >= 0);
  const int memfd = khosim::luo::RetrieveFd(b, s, kMemfdToken);
  const int dev = khosim::luo::RetrieveFd(b, s, kDeviceToken);
  const int iommufd = khosim::luo::RetrieveFd(b, s, kIommufdToken);
  if (pristine) KHOSIM_FUZZ_CHECK(memfd >= 0 && dev >= 0 && iommufd >= 0);
  if (dev >= 0) {
    // Whatever the record said, the file it gave is nvme0's, the device
    // the previous kernel preserved and nothing else.
    struct file* file = b.PeekFile(dev);
    KHOSIM_FUZZ_CHECK(file != nullptr);
    KHOSIM_FUZZ_CHECK(m.kernel().pci()->FindFunction(*m.pci().Find("nvme0"))->liveupdate.incoming);
  }
  if (dev >= 0 && iommufd >= 0 && memfd >= 0) {
    const long id = VfioBind(b, dev, iommufd);
    long ret = id > 0 ? 0 : id;
    const long restored = ret == 0 ? khosim::iommufd::RestoreHwpt(b, iommufd, kHwptToken) : ret;
    if (restored < 0) ret = restored;
    const long ioas = ret == 0 ? khosim::iommufd::IoasAlloc(b, iommufd) : ret;
    if (ioas < 0) ret = ioas;
    const auto ioas_id = static_cast<uint32_t>(ioas);
    if (ret == 0) ret = khosim::iommufd::MapFile(b, iommufd, ioas_id, memfd, 0, kSize, kIova);
    if (ret == 0) ret = VfioAttach(b, dev, ioas_id);
    if (ret == 0) ret = khosim::iommufd::Destroy(b, iommufd, static_cast<uint32_t>(restored));
    if (pristine) KHOSIM_FUZZ_CHECK(ret == 0);
  }
  return khosim::luo::FinishSession(b, s);
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

  Machine m(VfioMachine());
  KHOSIM_FUZZ_CHECK(
      m.AddModule(khosim::KernelModule{
                      .name = kPatcherModule,
                      .description = "patches the vfio-pci record after LUO serialized it",
                      .reboot_hooks = {{"vfio_fuzz_patch",
                                        [&m](const khosim::RebootInfo&) { return PatchHook(m); }}},
                  })
          .ok());
  m.Boot();
  Process& a = m.kernel().vfs().CreateProcess("vmm-a");
  PreserveVmm(m, a, shape);

  std::string outcome;
  try {
    KHOSIM_FUZZ_CHECK(m.Kexec().ok());
    const int fin = Reclaim(m, shape, !run.patched);
    outcome = absl::StrFormat("finish %d", fin);
    if (!run.patched) KHOSIM_FUZZ_CHECK(fin == 0);
    m.RunDevices("fuzz");
    KHOSIM_FUZZ_CHECK(m.dma_events().empty());
    if (!run.patched) KHOSIM_FUZZ_CHECK(m.kernel().WarnCount() == 0);
  } catch (const khosim::KernelPanic& panic) {
    std::fprintf(stderr, "fuzz property failed: unexpected panic: %s\n", panic.what());
    std::abort();
  }
  if (Verbose()) {
    std::fprintf(stderr, "[vfio] shape 0x%02x, %s: %s\n", shape,
                 run.patched ? "patched" : "pristine", outcome.c_str());
  }
  current = nullptr;
  return 0;
}

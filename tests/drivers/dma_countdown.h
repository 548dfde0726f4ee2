// What the countdown tests over the DMA flows share (iommu_countdown_test
// over pci-passthrough's own DMA maps, iommufd_countdown_test over
// iommufd): the flow's state, the errno check, nvme0's binding, the ring
// check, and the invariants every run must keep: no unexpected errno, no
// panic, no DMA fault or stray write (a stop only when the device was not
// preserved or never mastered), every value in its slot after a finish,
// and no preserved block left but the root FDT.
#ifndef KHOSIM_TESTS_DRIVERS_DMA_COUNTDOWN_H_
#define KHOSIM_TESTS_DRIVERS_DMA_COUNTDOWN_H_

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "khosim/fs/vfs.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/kho/kho.h"
#include "khosim/machine/countdown.h"
#include "khosim/machine/machine.h"

namespace khosim::testing::dma_countdown {

inline constexpr uint64_t kIova = 4 * kGiB;
inline constexpr uint64_t kSize = 256 * kKiB;

struct FlowState {
  std::vector<std::string> errors;  // unexpected errnos
  bool dma_started = false;
  bool mastering = false;  // what SET_MASTER left in the hardware
  bool device_preserved = false;
  bool kexeced = false;
  bool finished = false;
  std::string ring;  // kernel B after finish: "" or the first wrong slot
};
inline FlowState state;

inline void Check(long ret, absl::string_view what, std::set<int> allowed) {
  if (ret >= 0 || allowed.count(static_cast<int>(-ret)) != 0) return;
  state.errors.push_back(absl::StrCat(what, " returned ", ret));
}

inline struct pci_dev* Nvme0(Machine& m) {
  return m.kernel().pci()->FindFunction(*m.pci().Find("nvme0"));
}

// Binds nvme0 to |driver| (driver_override + drivers_probe).
inline int Bind(Machine& m, const char* driver = PCI_PASSTHROUGH_DRIVER_NAME) {
  struct pci_dev* dev = Nvme0(m);
  if (dev == nullptr) return -ENODEV;
  m.kernel().pci()->SetDriverOverride(dev, driver);
  const int ret = m.kernel().pci()->Bind(dev);
  Check(ret, "bind", {ENOMEM, EIO, ENODEV});
  return ret;
}

inline std::string CheckRing(fs::Process& p, int fd, uint64_t next) {
  std::vector<uint64_t> slots(kSize / 8);
  ssize_t n = p.Pread(fd, slots.data(), kSize, 0);
  // The plan fails one hit: it may be this check's own copy to user.
  // (-EFAULT, or a short read once some pages were copied).
  if (n != static_cast<ssize_t>(kSize)) n = p.Pread(fd, slots.data(), kSize, 0);
  if (n != static_cast<ssize_t>(kSize)) return "pread";
  const uint64_t written = next - 1;
  for (uint64_t i = 0; i < slots.size(); ++i) {
    const uint64_t expected =
        written > i ? 1 + i + slots.size() * ((written - 1 - i) / slots.size()) : 0;
    if (slots[i] != expected) return absl::StrCat("slot ", i, " holds ", slots[i]);
  }
  return "";
}

// One run of a flow with a VMM in each kernel: boot, |kernel_a| (false:
// the flow ended early), kexec (a refused one lets the devices run on in
// kernel A), |kernel_b|.
inline void KexecFlow(Machine& m, bool (*kernel_a)(Machine&, fs::Process&),
                      void (*kernel_b)(Machine&, fs::Process&)) {
  state = {};
  m.Boot();
  m.Activate();
  fs::Process& a = m.kernel().vfs().CreateProcess("vmm");
  if (!kernel_a(m, a)) return;
  if (!m.Kexec().ok()) {
    m.RunDevices("a");
    return;
  }
  state.kexeced = true;
  m.Activate();
  fs::Process& b = m.kernel().vfs().CreateProcess("vmm");
  m.RunDevices("b");
  kernel_b(m, b);
}

inline void Invariants(Machine& m, const CountdownRun& run, std::vector<std::string>* out) {
  for (const std::string& e : state.errors) out->push_back(e);
  if (run.panicked) out->push_back(absl::StrCat("panic: ", run.panic_message));
  for (const DmaRecord& r : m.dma_events()) {
    const bool allowed = r.event.kind == hw::DmaEvent::Kind::kStopped &&
                         (!state.device_preserved || !state.mastering);
    if (!allowed) {
      out->push_back(absl::StrCat(hw::DmaEventKindName(r.event.kind), " gen", r.generation, " ",
                                  r.point, ": ", r.event.reason));
    }
  }
  if (!state.ring.empty()) out->push_back("ring: " + state.ring);
  if (state.finished && m.has_kernel() && m.kernel().phase() == BootPhase::kRunning &&
      m.kernel().luo().IncomingSessions().empty()) {
    kho::Kho& kho = m.kernel().kho();
    const uint64_t held = kho.IsPreservedHead(PhysAddr(kho.incoming_handover().fdt_addr)) ? 1 : 0;
    if (kho.UnrestoredBlocks() > held) {
      out->push_back(absl::StrCat(kho.UnrestoredBlocks() - held, " preserved block(s) leaked"));
    }
  }
}

}  // namespace khosim::testing::dma_countdown

#endif  // KHOSIM_TESTS_DRIVERS_DMA_COUNTDOWN_H_

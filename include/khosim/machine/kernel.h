// Kernel: one simulated boot. A cold boot or a kexec creates it from
// BootParams alone; a kexec destroys it. It owns every per-boot object (the
// KernelContext, Mm, and the layers above as they land) and runs the boot in
// the kernel's order:
//
//   setup_arch      Mm::SetupArch (memblock, image, early allocations)
//   mm_init         Mm::InitMemmap
//   free_all        Mm::FreeAll (memblock_free_all: buddy takes over)
//   initcalls       registered initcalls by level (core, fs, device, late)
//   running
//
// Reboot hooks registered by the layers (LUO's liveupdate_reboot) run from
// Machine::Kexec; the first error cancels the kexec and kernel A keeps
// running.
#ifndef KHOSIM_MACHINE_KERNEL_H_
#define KHOSIM_MACHINE_KERNEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "khosim/base/kernel_context.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/mm/mm.h"

namespace khosim {

enum class InitcallLevel { kEarly, kCore, kFs, kDevice, kLate };

struct KernelConfig {
  mm::MmConfig mm;
};

// What the reboot hooks are told about the kexec under way.
struct RebootInfo {
  bool preserve_context = false;  // KEXEC_JUMP image: LUO skips serialization
};

class Kernel {
 public:
  Kernel(KernelEnv& env, hw::PhysicalMemory& memory, uint64_t generation, BootParams params,
         KernelConfig config);
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  // Runs the boot to kRunning. A KernelPanic propagates to the caller.
  void Boot();

  // Registers work for a boot level; must be called before Boot reaches it.
  void RegisterInitcall(InitcallLevel level, std::string name, std::function<int()> fn);
  // Reboot hooks run in registration order; a non-zero return stops the
  // sequence and is returned by RunRebootHooks.
  void RegisterRebootHook(std::string name, std::function<int(const RebootInfo&)> fn);
  int RunRebootHooks(const RebootInfo& info);

  // kexec_file_load's placement of the next kernel image: the highest free
  // run of |size| bytes aligned to |align| inside the allowed windows (all
  // of RAM unless a layer restricted them; KHO allows only scratch).
  // -EADDRNOTAVAIL if nothing fits.
  int PlaceKexecSegment(uint64_t size, uint64_t align, PhysAddr* out);
  void SetKexecSegmentWindows(std::vector<PhysRange> windows);
  // The record handed to the next kernel (KHO installs the provider).
  void SetHandoverProvider(std::function<abi::KhoData()> provider);
  abi::KhoData MakeHandover() const;

  uint64_t generation() const { return ctx_.generation(); }
  BootPhase phase() const { return ctx_.phase(); }
  KernelContext& ctx() { return ctx_; }
  const KernelContext& ctx() const { return ctx_; }
  mm::Mm& mm() { return *mm_; }

  uint64_t WarnCount() const { return ctx_.WarnCount(); }
  uint64_t WarnCount(absl::string_view needle) const { return ctx_.WarnCount(needle); }

 private:
  struct Initcall {
    InitcallLevel level;
    std::string name;
    std::function<int()> fn;
  };
  struct RebootHook {
    std::string name;
    std::function<int(const RebootInfo&)> fn;
  };

  KernelContext ctx_;
  std::unique_ptr<mm::Mm> mm_;
  std::vector<Initcall> initcalls_;
  std::vector<RebootHook> reboot_hooks_;
  std::vector<PhysRange> kexec_windows_;
  std::function<abi::KhoData()> handover_provider_;
};

}  // namespace khosim

#endif  // KHOSIM_MACHINE_KERNEL_H_

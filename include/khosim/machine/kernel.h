// Kernel: one simulated boot. A cold boot or a kexec creates it from
// BootParams alone; a kexec destroys it. It owns every per-boot object (the
// KernelContext, Mm, and the layers above as they land) and runs the boot in
// the kernel's order:
//
//   setup_arch      Mm::SetupArch (memblock, image), Kho::Populate (accept
//                   the handover: boot memory, scratch-only)
//   mm_init         Mm::InitMemmap (early allocations, memmap), Kho::MemoryInit
//                   (reserve preserved blocks, or size boot memory); the
//                   modules' BootHook::kBeforeMemblockFreeAll hooks (the
//                   hugetlb handler's early FLB read, which leaves the
//                   preserved huge pages out of the pools)
//   free_all        Mm::FreeAll (memblock_free_all: buddy takes over);
//                   the Vfs (files, processes, /dev) and LUO come up
//   initcalls       registered initcalls by level (early, core, ..., late):
//                   the kernel's own first (kho_init is the first fs
//                   initcall; LUO reads the previous kernel's state early
//                   and sets up its own late; on a machine with PCI
//                   hardware, pci_subsys_init enumerates it), then the
//                   built-in modules' (khosim/machine/kernel_module.h)
//   running
//
// Reboot hooks registered by the layers (LUO's liveupdate_reboot) and the
// modules run from Machine::Kexec; the first error cancels the kexec and
// kernel A keeps running.
#ifndef KHOSIM_MACHINE_KERNEL_H_
#define KHOSIM_MACHINE_KERNEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "khosim/base/kernel_context.h"
#include "khosim/drivers/iommu.h"
#include "khosim/drivers/pci.h"
#include "khosim/fs/vfs.h"
#include "khosim/hw/pci.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/kho/kho.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/kernel_module.h"
#include "khosim/mm/mm.h"

namespace khosim {

struct KernelConfig {
  mm::MmConfig mm;
  kho::KhoConfig kho;
  luo::LuoConfig luo;
  // The kernel build and its modules, in registration order
  // (ModuleRegistry::Resolve).
  KernelBuild build;
  std::vector<KernelModule> modules;
};

// Host time one boot step took (steady clock). Kept out of the event trace,
// which must stay deterministic; benchmarks and reports read it.
struct BootStepTime {
  std::string name;  // "setup_arch", "kho_populate", ..., "initcall:<name>"
  double seconds = 0;
};

// The devices a kernel finds (any may be absent: nullptr).
struct KernelHardware {
  hw::PciHardware* pci = nullptr;
  hw::IommuHardware* iommu = nullptr;
};

class Kernel {
 public:
  Kernel(KernelEnv& env, hw::PhysicalMemory& memory, KernelHardware hardware, uint64_t generation,
         BootParams params, KernelConfig config);
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
  // The point of no return of a kexec, after every reboot hook agreed:
  // device_shutdown (pci_device_shutdown for every PCI device). A
  // preserve-context image suspends devices instead, so nothing runs.
  void ShutdownDevices(const RebootInfo& info);

  // The record handed to the next kernel, built when the next image is
  // loaded (KHO installs the provider; without it the record is empty).
  // Returns 0 or the provider's errno.
  void SetHandoverProvider(std::function<int(abi::KhoData*)> provider);
  int MakeHandover(abi::KhoData* out);

  uint64_t generation() const { return ctx_.generation(); }
  BootPhase phase() const { return ctx_.phase(); }
  KernelContext& ctx() { return ctx_; }
  const KernelContext& ctx() const { return ctx_; }
  mm::Mm& mm() { return *mm_; }
  kho::Kho& kho() { return *kho_; }
  // Exists from the end of mm init (before the initcalls).
  fs::Vfs& vfs() { return *vfs_; }
  // Exists from the same point; enabled only with liveupdate=on and KHO.
  luo::Luo& luo() { return *luo_; }
  // The PCI core; nullptr on a machine without PCI functions.
  drivers::PciCore* pci() { return pci_.get(); }
  // The IOMMU core; nullptr without IOMMU hardware.
  drivers::IommuCore* iommu() { return iommu_.get(); }
  // What the hardware consults before DMA touches memory (nullptr: nothing
  // judges, e.g. no IOMMU driver).
  hw::DmaMemoryOracle* dma_oracle();
  // What this kernel was built with.
  const KernelBuild& build() const { return build_; }
  const std::vector<KernelModule>& modules() const { return modules_; }
  bool HasModule(absl::string_view name) const { return build_.Has(name); }

  // Every step Boot() ran, in order: setup_arch, kho_populate,
  // kho_extend_scratch, memmap_init, kho_memory_init (KHO's retrieval of
  // the preserved blocks on a KHO boot), the modules' early hooks by name
  // (hugetlb_luo_early), memblock_free_all, vfs_luo_init, then one
  // "initcall:<name>" per initcall. The steps from kho_populate to
  // memblock_free_all are the scratch-only phase of a KHO boot.
  const std::vector<BootStepTime>& boot_steps() const { return boot_steps_; }

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
  std::unique_ptr<kho::Kho> kho_;
  std::unique_ptr<fs::Vfs> vfs_;
  luo::LuoConfig luo_config_;
  KernelBuild build_;
  std::vector<KernelModule> modules_;
  std::unique_ptr<luo::Luo> luo_;
  std::unique_ptr<drivers::PciCore> pci_;
  std::unique_ptr<drivers::IommuCore> iommu_;
  std::vector<Initcall> initcalls_;
  std::vector<RebootHook> reboot_hooks_;
  std::function<int(abi::KhoData*)> handover_provider_;
  std::vector<BootStepTime> boot_steps_;
};

}  // namespace khosim

#endif  // KHOSIM_MACHINE_KERNEL_H_

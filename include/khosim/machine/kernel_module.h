// Kernel modules and kernel builds: what code a simulated kernel image has.
//
// A KernelModule is a piece of kernel code that can be built in: a LUO file
// handler with its FLBs, or a driver. It says how it hooks into a boot -
// initcalls by level, early-boot hooks, reboot hooks - and what it
// preserves under (compatible strings). The in-tree modules are one table,
// ModuleRegistry::Builtin() (sim/machine/builtin_modules.cc), which both the
// Kernel and the scenario parser read; an out-of-tree handler is a
// KernelModule too, added to a machine with Machine::AddModule.
//
// A KernelBuild names the modules one kernel image has, the way a kernel
// config does. Every kernel a machine boots is built with
// MachineConfig::build (default: the registry's default modules), a kexec
// may boot another build (KexecOptions::build), and the kernel runs the
// hooks of exactly the modules its build names.
#ifndef KHOSIM_MACHINE_KERNEL_MODULE_H_
#define KHOSIM_MACHINE_KERNEL_MODULE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace khosim {

// The kernel's initcall levels, in the order they run. Within a level,
// initcalls run in registration order: the kernel's own first, then the
// modules' (ModuleRegistry::Resolve gives their order).
enum class InitcallLevel { kEarly, kCore, kPostcore, kArch, kSubsys, kFs, kDevice, kLate };

// Points before the initcalls where a module's code may run.
enum class BootHook {
  // After KHO has reserved the memory the previous kernel preserved, before
  // memblock_free_all hands the rest to the page allocator (and fills the
  // hugetlb pools): the last moment to keep preserved memory out of an
  // allocator that is about to be filled (hugetlb's early FLB read).
  kBeforeMemblockFreeAll,
};

// What the reboot hooks are told about the kexec under way.
struct RebootInfo {
  bool preserve_context = false;  // KEXEC_JUMP image: LUO skips serialization
};

struct KernelModule {
  enum class Kind { kHandler, kDriver };
  struct Initcall {
    InitcallLevel level = InitcallLevel::kLate;
    std::string name;         // "memfd_luo_init": the boot step and trace name
    std::function<int()> fn;  // 0, or an errno the kernel logs and ignores
  };
  struct EarlyHook {
    BootHook point = BootHook::kBeforeMemblockFreeAll;
    std::string name;  // the boot step's name
    std::function<void()> fn;
  };
  // register_reboot_notifier: runs from Machine::Kexec after the kernel's
  // own hooks; a non-zero return cancels the kexec.
  struct RebootHook {
    std::string name;
    std::function<int(const RebootInfo&)> fn;
  };

  // How scenarios (`handlers:`) and `khosim run --handlers` name it.
  std::string name;
  Kind kind = Kind::kHandler;
  std::string description;  // one line
  // The file-handler compatible strings it registers, its own first, then
  // its FLBs'; a report names a preserved file's module by them.
  std::vector<std::string> compatibles;
  std::vector<std::string> flbs;
  std::vector<Initcall> initcalls;
  std::vector<EarlyHook> early_hooks;
  std::vector<RebootHook> reboot_hooks;
  // Configuration switches a kernel with this module has on (see
  // KernelContext::ConfigEnabled): a module may be only a switch that
  // another module's code reads, as CONFIG_VFIO_PCI_LIVEUPDATE is.
  std::vector<std::string> configs;
  // Modules whose initcalls this one's must precede when both are built in
  // (a LUO handler registered first is asked first whether it takes a file).
  std::vector<std::string> runs_before;
  // Built into a kernel whose build is not given.
  bool default_enabled = false;
};

// The modules of one kernel image, by name.
struct KernelBuild {
  std::vector<std::string> modules;

  bool Has(absl::string_view name) const;
  bool operator==(const KernelBuild&) const = default;
};

class ModuleRegistry {
 public:
  // The in-tree modules, in the order listings show them.
  static const ModuleRegistry& Builtin();

  // Adds |module| at the end. InvalidArgument when it has no name or no
  // hook at all, or its name or one of its compatibles is taken.
  absl::Status Add(KernelModule module);

  const std::vector<KernelModule>& modules() const { return modules_; }
  const KernelModule* Find(absl::string_view name) const;
  // The build of every default_enabled module.
  KernelBuild DefaultBuild() const;

  // Adds module |name| to |build|. InvalidArgument, without a position so
  // that every front end can add its own: an unknown name (naming the
  // module that registers it, when |name| is a compatible string) or a
  // name listed twice.
  absl::Status AddToBuild(absl::string_view name, KernelBuild* build) const;
  // A comma-separated list (`khosim run --handlers`); empty builds none.
  absl::StatusOr<KernelBuild> ParseBuild(absl::string_view list) const;
  // The modules of |build| in registry order; modules it names that this
  // registry lacks are left out.
  std::vector<const KernelModule*> Modules(const KernelBuild& build) const;
  // Modules(build) reordered for registration: a module moves ahead of
  // every module its runs_before names.
  std::vector<const KernelModule*> Resolve(const KernelBuild& build) const;
  // "memfd, hugetlb" (registry order), or "none".
  std::string Format(const KernelBuild& build) const;
  // "memfd, memfd-sparse, hugetlb": every module's name.
  std::string Names() const;

 private:
  std::vector<KernelModule> modules_;
};

}  // namespace khosim

#endif  // KHOSIM_MACHINE_KERNEL_MODULE_H_

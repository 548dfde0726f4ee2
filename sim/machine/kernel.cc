// Kernel: the boot sequence of one simulated kernel.
//
// Boot() walks the phases in order and is the one place that decides what
// runs when; the layers only provide the steps. A KernelPanic anywhere
// leaves the kernel dead (phase kDead) and propagates to the machine.
#include "khosim/machine/kernel.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace khosim {

Kernel::Kernel(KernelEnv& env, hw::PhysicalMemory& memory, KernelHardware hardware,
               uint64_t generation, BootParams params, KernelConfig config)
    : ctx_(env, generation, PageGeometry::ForPageSize(memory.page_size()), std::move(params)) {
  mm_ = std::make_unique<mm::Mm>(ctx_, memory, config.mm);
  kho_ = std::make_unique<kho::Kho>(ctx_, *mm_, config.kho);
  hw::PciHardware* pci = hardware.pci;
  if (pci != nullptr && pci->FunctionCount() > 0) {
    pci_ = std::make_unique<drivers::PciCore>(ctx_, *pci);
    RegisterInitcall(InitcallLevel::kSubsys, "pci_subsys_init",
                     [this] { return pci_->Enumerate(); });
  }
  if (hardware.iommu != nullptr && !hardware.iommu->units().empty()) {
    // Constructed with the kernel's objects; its initcall runs after PCI
    // enumeration and LUO's early startup (it reads its FLB).
    iommu_ = std::make_unique<drivers::IommuCore>(ctx_, *mm_, *kho_, *hardware.iommu, pci_.get());
    RegisterInitcall(InitcallLevel::kFs, "pci_iommu_init", [this] { return iommu_->Init(); });
  }
  RegisterInitcall(InitcallLevel::kCore, "hugetlb_init", [this] {
    mm_->hugetlb().Init();
    return 0;
  });
  RegisterInitcall(InitcallLevel::kFs, "kho_init", [this] { return kho_->Init(); });
  RegisterInitcall(InitcallLevel::kEarly, "luo_early_startup", [this] {
    luo_->EarlyStartup();
    return 0;
  });
  RegisterInitcall(InitcallLevel::kLate, "luo_late_startup",
                   [this] { return luo_->LateStartup(); });
  RegisterRebootHook("liveupdate_reboot", [this](const RebootInfo& info) {
    return luo_->Reboot(info.preserve_context);
  });
  // Trackers that serialize (kho-v1, kho-range-v1) did so when the image
  // was loaded; a cancelled kexec leaves it loaded, so whatever was
  // preserved since must be serialized again, after LUO's last records.
  // (kho-v4's radix tree is the handover itself: no hook, no trace.)
  if (kho_->tracker()->serializes()) {
    RegisterRebootHook("kho_finalize", [this](const RebootInfo&) {
      const int err = kho_->Finalize();
      return err == -EOPNOTSUPP ? 0 : err;  // KHO off: nothing to hand over
    });
  }
  luo_config_ = config.luo;
  build_ = std::move(config.build);
  modules_ = std::move(config.modules);
  for (const KernelModule& module : modules_) {
    for (const std::string& symbol : module.configs) ctx_.EnableConfig(symbol);
    for (const KernelModule::Initcall& call : module.initcalls) {
      RegisterInitcall(call.level, call.name, call.fn);
    }
    for (const KernelModule::RebootHook& hook : module.reboot_hooks) {
      RegisterRebootHook(hook.name, hook.fn);
    }
  }
  SetHandoverProvider([this](abi::KhoData* out) { return kho_->PrepareHandover(out); });
}

Kernel::~Kernel() {
  ScopedKernelContext scope(&ctx_);
  // Nothing of this kernel runs any more (see linux/fs.h): objects are
  // freed without their release callbacks, upper layers first.
  if (ctx_.phase() != BootPhase::kDead) ctx_.SetPhase(BootPhase::kDead);
  iommu_.reset();
  pci_.reset();
  luo_.reset();
  vfs_.reset();
  kho_.reset();
  mm_.reset();
}

namespace {

// Times one boot step into |steps|; then simulated time passes (running
// devices advance), so DMA runs through every step of a boot.
template <typename Fn>
void TimedStep(KernelContext& ctx, std::vector<BootStepTime>& steps, std::string name, Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  steps.push_back(BootStepTime{name, took.count()});
  ctx.env().RunDevices(name);
}

}  // namespace

void Kernel::Boot() {
  ScopedKernelContext scope(&ctx_);
  boot_steps_.clear();
  ctx_.Trace("boot", "start",
             {{"cmdline", ctx_.cmdline().text()},
              {"kho_fdt", absl::StrCat(kho_->incoming_handover().fdt_addr)}});
  ctx_.Log(absl::StrCat("Linux version khosim (generation ", ctx_.generation(), ")"));
  ctx_.Log(absl::StrCat("Command line: ", ctx_.cmdline().text()));
  TimedStep(ctx_, boot_steps_, "setup_arch", [&] { mm_->SetupArch(); });
  TimedStep(ctx_, boot_steps_, "kho_populate", [&] { kho_->Populate(); });
  TimedStep(ctx_, boot_steps_, "kho_extend_scratch", [&] { kho_->ExtendScratch(); });
  TimedStep(ctx_, boot_steps_, "memmap_init", [&] { mm_->InitMemmap(); });
  TimedStep(ctx_, boot_steps_, "kho_memory_init", [&] { kho_->MemoryInit(); });
  for (const KernelModule& module : modules_) {
    for (const KernelModule::EarlyHook& hook : module.early_hooks) {
      if (hook.point == BootHook::kBeforeMemblockFreeAll) {
        TimedStep(ctx_, boot_steps_, hook.name, hook.fn);
      }
    }
  }
  TimedStep(ctx_, boot_steps_, "memblock_free_all", [&] { mm_->FreeAll(); });
  TimedStep(ctx_, boot_steps_, "vfs_luo_init", [&] {
    vfs_ = std::make_unique<fs::Vfs>(ctx_);  // vfs_caches_init
    luo_ = std::make_unique<luo::Luo>(ctx_, *kho_, *vfs_, luo_config_);
  });
  ctx_.SetPhase(BootPhase::kInitcalls);
  std::stable_sort(initcalls_.begin(), initcalls_.end(),
                   [](const Initcall& a, const Initcall& b) { return a.level < b.level; });
  for (const Initcall& call : initcalls_) {
    int ret = 0;
    TimedStep(ctx_, boot_steps_, absl::StrCat("initcall:", call.name), [&] { ret = call.fn(); });
    ctx_.Trace("initcall", call.name, {{"ret", absl::StrCat(ret)}});
    if (ret != 0) ctx_.Log(absl::StrCat("initcall ", call.name, " returned ", ret));
  }
  ctx_.SetPhase(BootPhase::kRunning);
}

void Kernel::RegisterInitcall(InitcallLevel level, std::string name, std::function<int()> fn) {
  if (ctx_.phase() >= BootPhase::kInitcalls) {
    ctx_.Warn(KHOSIM_SITE, absl::StrCat("initcall ", name, " registered after initcalls ran"));
    return;
  }
  initcalls_.push_back(Initcall{level, std::move(name), std::move(fn)});
}

void Kernel::RegisterRebootHook(std::string name, std::function<int(const RebootInfo&)> fn) {
  reboot_hooks_.push_back(RebootHook{std::move(name), std::move(fn)});
}

void Kernel::ShutdownDevices(const RebootInfo& info) {
  ScopedKernelContext scope(&ctx_);
  if (info.preserve_context) return;
  if (pci_ != nullptr) pci_->Shutdown();
  // The IOMMU's shutdown is a syscore op: after every device's.
  if (iommu_ != nullptr) iommu_->Shutdown();
}

hw::DmaMemoryOracle* Kernel::dma_oracle() {
  return iommu_ == nullptr ? nullptr : iommu_->dma_oracle();
}

int Kernel::RunRebootHooks(const RebootInfo& info) {
  ScopedKernelContext scope(&ctx_);
  for (const RebootHook& hook : reboot_hooks_) {
    const int ret = hook.fn(info);
    ctx_.Trace("reboot", hook.name, {{"ret", absl::StrCat(ret)}});
    if (ret != 0) return ret;
  }
  return 0;
}

void Kernel::SetHandoverProvider(std::function<int(abi::KhoData*)> provider) {
  handover_provider_ = std::move(provider);
}

int Kernel::MakeHandover(abi::KhoData* out) {
  ScopedKernelContext scope(&ctx_);
  *out = abi::KhoData{};
  return handover_provider_ ? handover_provider_(out) : 0;
}

}  // namespace khosim

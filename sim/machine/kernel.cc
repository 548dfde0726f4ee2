// Kernel: the boot sequence of one simulated kernel.
//
// Boot() walks the phases in order and is the one place that decides what
// runs when; the layers only provide the steps. A KernelPanic anywhere
// leaves the kernel dead (phase kDead) and propagates to the machine.
#include "khosim/machine/kernel.h"

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"

namespace khosim {

Kernel::Kernel(KernelEnv& env, hw::PhysicalMemory& memory, uint64_t generation, BootParams params,
               KernelConfig config)
    : ctx_(env, generation, PageGeometry::ForPageSize(memory.page_size()), std::move(params)) {
  mm_ = std::make_unique<mm::Mm>(ctx_, memory, config.mm);
}

Kernel::~Kernel() {
  ScopedKernelContext scope(&ctx_);
  mm_.reset();
}

void Kernel::Boot() {
  ScopedKernelContext scope(&ctx_);
  ctx_.Trace("boot", "start",
             {{"cmdline", ctx_.cmdline().text()},
              {"kho_fdt", absl::StrCat(ctx_.boot_params().kho.fdt_addr)}});
  ctx_.Log(absl::StrCat("Linux version khosim (generation ", ctx_.generation(), ")"));
  ctx_.Log(absl::StrCat("Command line: ", ctx_.cmdline().text()));
  mm_->SetupArch();
  mm_->InitMemmap();
  mm_->FreeAll();
  ctx_.SetPhase(BootPhase::kInitcalls);
  std::stable_sort(initcalls_.begin(), initcalls_.end(),
                   [](const Initcall& a, const Initcall& b) { return a.level < b.level; });
  for (const Initcall& call : initcalls_) {
    const int ret = call.fn();
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

int Kernel::RunRebootHooks(const RebootInfo& info) {
  ScopedKernelContext scope(&ctx_);
  for (const RebootHook& hook : reboot_hooks_) {
    const int ret = hook.fn(info);
    ctx_.Trace("reboot", hook.name, {{"ret", absl::StrCat(ret)}});
    if (ret != 0) return ret;
  }
  return 0;
}

int Kernel::PlaceKexecSegment(uint64_t size, uint64_t align, PhysAddr* out) {
  const PageGeometry& g = ctx_.geometry();
  const uint64_t nr_pages = AlignUp(size, g.page_size()) >> g.page_shift;
  const uint64_t align_pages = std::max<uint64_t>(1, align >> g.page_shift);
  std::vector<PhysRange> windows = kexec_windows_;
  if (windows.empty()) windows.push_back({PhysAddr(0), mm_->memory().layout().end()});
  // Highest fit over all windows.
  bool found = false;
  Pfn best;
  for (const PhysRange& w : windows) {
    Pfn pfn;
    if (mm_->pages().FindFreeRun(nr_pages, align_pages, g.PhysToPfn(w.start), g.PhysToPfn(w.end),
                                 &pfn) &&
        (!found || pfn > best)) {
      best = pfn;
      found = true;
    }
  }
  if (!found) return -EADDRNOTAVAIL;
  *out = g.PfnToPhys(best);
  return 0;
}

void Kernel::SetKexecSegmentWindows(std::vector<PhysRange> windows) {
  kexec_windows_ = std::move(windows);
}

void Kernel::SetHandoverProvider(std::function<abi::KhoData()> provider) {
  handover_provider_ = std::move(provider);
}

abi::KhoData Kernel::MakeHandover() const {
  return handover_provider_ ? handover_provider_() : abi::KhoData{};
}

}  // namespace khosim

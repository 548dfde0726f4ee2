// KernelContext: the per-boot identity every layer of the simulated kernel
// reaches, and the one boundary between lib/ and the machine that runs it.
//
// Lifecycle: the machine creates one context per boot (generation 1 for the
// cold boot, +1 per kexec), advances its phase as the boot proceeds, makes it
// current on the driving thread, and destroys it with the kernel at the next
// kexec. Nothing in it survives a kexec.
//
// What lib/ needs from the machine is the KernelEnv interface: fault
// injection, the event trace and the seeded random source. lib/ never
// includes sim/ headers; sim/machine implements KernelEnv.
//
// Kernel-face calls (alloc_pages(), kho_preserve_folio(), ...) resolve to the
// current context the way the kernel resolves `current`: per thread, set by
// Machine::Boot / Machine::Kexec / Machine::Activate.
#ifndef KHOSIM_BASE_KERNEL_CONTEXT_H_
#define KHOSIM_BASE_KERNEL_CONTEXT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "khosim/base/types.h"
#include "khosim/linux/compiler.h"

namespace khosim {

// One entry of the boot protocol's setup_data list (x86's struct
// setup_data: a type and a payload). A kexec hands the previous kernel's
// records over this way, e.g. KHO's (SETUP_KEXEC_KHO); the subsystem that
// owns a type decodes its payload and treats it as hostile.
struct SetupData {
  uint32_t type = 0;
  std::vector<uint8_t> payload;
};

// What the boot loader (cold boot) or the previous kernel (kexec) hands to
// a kernel: nothing else reaches it.
struct BootParams {
  std::string cmdline;
  std::vector<SetupData> setup_data;  // empty on a cold boot
  PhysAddr image_base;                // where this kernel's image was loaded
  uint64_t image_size = 0;

  // The payload of the first entry of |type|; empty if there is none.
  absl::Span<const uint8_t> SetupDataOf(uint32_t type) const;
};

// The kernel's memparse(): decimal digits and an optional K/M/G/T/P/E suffix
// of either case (binary units). Stores the value in *out and returns how
// many characters it consumed; 0 (nothing stored) unless |text| starts with
// a digit.
size_t MemParsePrefix(absl::string_view text, uint64_t* out);
// MemParsePrefix over the whole of |text|: false if it is not one size.
bool MemParse(absl::string_view text, uint64_t* out);

// The kernel command line, "key=value key flag" words.
class Cmdline {
 public:
  explicit Cmdline(std::string text);
  const std::string& text() const { return text_; }
  // Value of the last "key=value" word; "" for a bare "key"; nullopt if absent.
  std::optional<std::string> Get(absl::string_view key) const;
  // kstrtobool semantics ("1/y/Y/on" true, "0/n/N/off" false); |fallback|
  // when absent or malformed.
  bool GetBool(absl::string_view key, bool fallback) const;

 private:
  std::string text_;
  std::vector<std::pair<std::string, std::string>> words_;
};

// The kernel's boot timeline, in order. Phases only move forward.
enum class BootPhase {
  kSetupArch,  // memblock only; early allocations (scratch-only on KHO boot)
  kMmInit,     // memmap set up, still memblock-only
  kBuddy,      // memblock_free_all done: page allocator and vmalloc live
  kInitcalls,  // initcalls running
  kRunning,    // userspace
  kRebooting,  // reboot hooks running for a kexec
  kDead,       // kexec'd away or panicked
};
absl::string_view BootPhaseName(BootPhase phase);

// One key/value of a trace event. Values are preformatted text so that the
// trace compares and serializes without a schema.
using TraceArgs = std::vector<std::pair<std::string, std::string>>;

class KernelEnv {
 public:
  virtual ~KernelEnv() = default;
  // One hit of the named fault point; true means "fail this hit".
  virtual bool ShouldFail(absl::string_view point) = 0;
  // Records an event in the machine's trace.
  virtual void Trace(uint64_t generation, absl::string_view category, absl::string_view name,
                     TraceArgs args) = 0;
  // Whether Trace() would record an event of |category| now. Callers on hot
  // paths ask first and skip formatting the arguments when it is false.
  // Must be cheap and thread-safe; the default records everything.
  virtual bool TraceEnabled(absl::string_view /*category*/) const { return true; }
  // The machine's seeded generator: the only randomness lib/ may use.
  virtual uint64_t Random() = 0;
  // Minimum allocation size (bytes) worth a trace event.
  virtual uint64_t TraceAllocThreshold() const = 0;
  // Simulated time passes: every running device (DMA engine) advances by
  // one quantum. The kernel calls it after each boot step, naming it.
  virtual void RunDevices(absl::string_view /*point*/) {}
};

// Slots through which the layers above find their per-boot state without
// lib/base knowing their types.
enum class KernelSlot { kMm, kKho, kLuo, kFs, kPci, kIommu, kHandlers, kCount };

class KernelContext {
 public:
  KernelContext(KernelEnv& env, uint64_t generation, PageGeometry geometry, BootParams boot_params);
  KernelContext(const KernelContext&) = delete;
  KernelContext& operator=(const KernelContext&) = delete;
  ~KernelContext();

  // 1 for a cold boot, N+1 for the kernel kexec'd from generation N.
  uint64_t generation() const { return generation_; }
  const PageGeometry& geometry() const { return geometry_; }
  const BootParams& boot_params() const { return boot_params_; }
  const Cmdline& cmdline() const { return cmdline_; }
  BootPhase phase() const { return phase_; }
  // Advances the phase; moving backwards is a simulator bug and panics.
  void SetPhase(BootPhase phase);
  // A cancelled kexec: kRebooting goes back to kRunning (the one allowed
  // backward step).
  void CancelReboot();

  KernelEnv& env() { return env_; }
  bool ShouldFail(absl::string_view point) { return env_.ShouldFail(point); }
  void Trace(absl::string_view category, absl::string_view name, TraceArgs args = {}) {
    env_.Trace(generation_, category, name, std::move(args));
  }
  // See KernelEnv::TraceEnabled: false means Trace(category, ...) would be
  // dropped, so there is no need to build its arguments.
  bool TraceEnabled(absl::string_view category) const { return env_.TraceEnabled(category); }

  // WARN(): counted per site, logged, never fatal.
  void Warn(absl::string_view site, absl::string_view message);
  // WARN_ON_ONCE: only the first hit of |site| in this boot counts.
  void WarnOnce(absl::string_view site, absl::string_view message);
  uint64_t WarnCount() const;
  // Count of WARNs whose site or message contains |needle|.
  uint64_t WarnCount(absl::string_view needle) const;
  std::map<std::string, uint64_t> WarnsBySite() const;

  // panic() / BUG(): logs, marks the kernel dead, throws KernelPanic.
  [[noreturn]] void Panic(absl::string_view site, absl::string_view message);
  bool panicked() const { return panicked_; }

  // printk: the kernel log of this boot.
  void Log(absl::string_view line);
  std::vector<std::string> LogLines() const;

  // The kernel build's configuration switches ("CONFIG_VFIO_PCI_LIVEUPDATE"):
  // what IS_ENABLED() asks, at run time because one binary builds every
  // kernel. Set while the kernel is constructed.
  void EnableConfig(std::string symbol) { configs_.insert(std::move(symbol)); }
  bool ConfigEnabled(absl::string_view symbol) const { return configs_.contains(symbol); }

  void* slot(KernelSlot s) const { return slots_[static_cast<int>(s)]; }
  void set_slot(KernelSlot s, void* p) { slots_[static_cast<int>(s)] = p; }

 private:
  struct WarnRecord {
    uint64_t count = 0;
    std::string first_message;
  };

  KernelEnv& env_;
  const uint64_t generation_;
  const PageGeometry geometry_;
  const BootParams boot_params_;
  const Cmdline cmdline_;
  BootPhase phase_ = BootPhase::kSetupArch;
  bool panicked_ = false;
  void* slots_[static_cast<int>(KernelSlot::kCount)] = {};
  absl::flat_hash_set<std::string> configs_;

  mutable absl::Mutex diag_mu_;
  std::map<std::string, WarnRecord> warns_ ABSL_GUARDED_BY(diag_mu_);
  std::vector<std::string> log_ ABSL_GUARDED_BY(diag_mu_);
};

// The kernel kernel-face calls resolve to on this thread; nullptr if none.
KernelContext* CurrentKernelContext();
// The current context; panics the host process (abort) if there is none,
// since a kernel-face call without a running kernel is a harness bug.
KernelContext& RequireKernelContext();
void SetCurrentKernelContext(KernelContext* context);

// Makes |context| current for a scope and restores the previous one.
class ScopedKernelContext {
 public:
  explicit ScopedKernelContext(KernelContext* context) : previous_(CurrentKernelContext()) {
    SetCurrentKernelContext(context);
  }
  ~ScopedKernelContext() { SetCurrentKernelContext(previous_); }
  ScopedKernelContext(const ScopedKernelContext&) = delete;
  ScopedKernelContext& operator=(const ScopedKernelContext&) = delete;

 private:
  KernelContext* previous_;
};

}  // namespace khosim

// C++-face diagnostics with an explicit context.
#define KHOSIM_WARN_ON(ctx, cond, msg) ((cond) ? ((ctx).Warn(KHOSIM_SITE, (msg)), true) : false)
#define KHOSIM_BUG_ON(ctx, cond, msg)          \
  do {                                         \
    if (cond) (ctx).Panic(KHOSIM_SITE, (msg)); \
  } while (0)

#endif  // KHOSIM_BASE_KERNEL_CONTEXT_H_

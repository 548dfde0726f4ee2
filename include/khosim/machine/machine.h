// Machine: the simulated computer. It owns what outlives a kernel (physical
// memory, the seeded random source, fault plans, the event trace) and
// drives kernels through cold boot and kexec.
//
// The kexec boundary: Kexec() first loads the next image as kexec_file_load
// does (once per kernel: A produces the handover record and places the
// image), then runs A's reboot hooks (an error cancels the kexec and A keeps
// running, the image still loaded), shuts A's devices down, destroys A,
// writes B's image into memory, and boots B from BootParams alone. Nothing
// else crosses but the hardware's own state (PCI config spaces): B learns
// everything else by reading physical memory, and every page B's allocator
// treats as free is scrubbed before B can read it.
//
//   Machine m(MachineConfig{.ram = 8 * kGiB, .nodes = 2, .seed = 7});
//   m.Boot();
//   ...
//   ASSERT_TRUE(m.Kexec().ok());
//
// Context: drive a machine from one thread at a time; Activate() makes its
// kernel current on another thread for kernel-face calls.
#ifndef KHOSIM_MACHINE_MACHINE_H_
#define KHOSIM_MACHINE_MACHINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "khosim/base/kernel_context.h"
#include "khosim/hw/dma_engine.h"
#include "khosim/hw/iommu.h"
#include "khosim/hw/pci.h"
#include "khosim/hw/pci_topology.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/machine/event_trace.h"
#include "khosim/machine/fault_injector.h"
#include "khosim/machine/kernel.h"

namespace khosim {

struct MachineConfig {
  uint64_t ram = 1 * kGiB;
  int nodes = 1;
  uint64_t page_size = 4096;
  uint64_t seed = 1;
  // A hole of this size in node 0's RAM (e.g. an MMIO window); 0 = none.
  uint64_t hole = 0;
  // Explicit RAM ranges; overrides ram/nodes/hole when non-empty.
  std::vector<hw::RamRange> ranges;
  // What happens to memory a kernel's allocator treats as free.
  mm::FreeMemoryPolicy scrub = mm::FreeMemoryPolicy::kPoison;
  // The kernel command line of every boot (kho=, kho_scratch=, liveupdate=).
  std::string cmdline;
  uint64_t kernel_image_size = 32 * kMiB;
  PhysAddr cold_boot_image_base = PhysAddr(16 * kMiB);
  uint64_t early_alloc_bytes_per_node = 16 * kMiB;
  uint64_t low_early_alloc_bytes = 2 * kMiB;
  // KHO build options (debug checks, extended scratch, release string).
  kho::KhoConfig kho;
  // LUO profile (the command line's khosim.luo_profile= overrides it per boot).
  luo::LuoConfig luo;
  // The modules built into every kernel this machine boots (a kexec may
  // name another build); unset: the registry's default modules (memfd)
  // plus every module added with Machine::AddModule.
  std::optional<KernelBuild> build;
  // The PCI hardware (khosim/hw/pci_topology.h); empty: none. Its config
  // spaces keep their values across a kexec; a cold boot resets them.
  hw::PciTopology pci;
  // IOMMU units (one per PCI segment) in front of the PCI functions; off:
  // DMA reaches physical memory untranslated and no IOMMU driver runs.
  bool iommu = true;
  // Bytes each running DMA engine writes per advance of simulated time.
  uint64_t dma_quantum = 64 * kKiB;
  // Allocations of at least this many bytes appear in the trace.
  uint64_t trace_alloc_threshold = 1 * kMiB;
};

struct KexecOptions {
  // A preserve-context (KEXEC_JUMP) image: reboot hooks see it and LUO
  // skips serialization.
  bool preserve_context = false;
  // The next kernel's command line (kexec_file_load's cmdline); unset:
  // MachineConfig::cmdline, as for every boot.
  std::optional<std::string> cmdline;
  // The next kernel's modules (a different kernel build); unset: the
  // machine's build.
  std::optional<KernelBuild> build;
};

// A DMA event (khosim/hw/dma_engine.h) as the machine saw it: which kernel
// ran and at which point of simulated time.
struct DmaRecord {
  hw::DmaEvent event;
  uint64_t generation = 0;  // the running kernel; 0 between kernels
  std::string point;        // "initcall:pci_subsys_init", "kexec:shutdown", ...
};

// Host time the steps of the last successful Kexec() took (steady clock;
// kernel B's own boot steps are Kernel::boot_steps()).
struct KexecTimes {
  double load_s = 0;          // kexec_file_load: the handover record (KHO's
                              // handover preparation) and the image placement;
                              // 0 when the image was already loaded
  double reboot_hooks_s = 0;  // kernel A's reboot hooks: LUO's freeze and
                              // serialization
  double teardown_s = 0;      // kernel A's objects destroyed, image copied in
  double boot_s = 0;          // kernel B from power-on to running
};

class Machine : public KernelEnv {
 public:
  // Aborts with a message if the configuration is invalid; Create() reports
  // it instead.
  explicit Machine(MachineConfig config);
  static absl::StatusOr<std::unique_ptr<Machine>> Create(MachineConfig config);
  ~Machine() override;
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Cold boot: generation 1 (or the next generation after a panic).
  void Boot();
  // See the file comment. OK with kernel B running, or, with kernel A still
  // running:
  //   FailedPrecondition  no kernel is running (none booted, or it died);
  //   "kexec load: ..."   the load failed: the handover record's errno
  //                       (KHO's) or -EADDRNOTAVAIL, no 2 MiB-aligned room
  //                       for the image (in boot memory on a KHO kernel);
  //   "reboot hooks cancelled the kexec: ..."  the first non-zero reboot
  //                       hook's errno (LUO's serialization, a module's).
  // Both errnos travel in the status (StatusErrno). A KernelPanic in B's
  // boot propagates, with B dead.
  absl::Status Kexec(KexecOptions options = {});

  // Adds an out-of-tree module (a handler under test, a test's own
  // initcalls or reboot hooks) to this machine's registry. Unless
  // MachineConfig::build says otherwise it is built into every kernel the
  // machine boots from the next boot or kexec on; a KexecOptions::build
  // that leaves it out boots a kernel without it. InvalidArgument as
  // ModuleRegistry::Add.
  absl::Status AddModule(KernelModule module);
  // The modules kernels of this machine can be built with: the built-in
  // table and every AddModule.
  const ModuleRegistry& modules() const { return modules_; }
  // The build of every kernel that is not given one.
  KernelBuild DefaultBuild() const;

  bool has_kernel() const { return kernel_ != nullptr; }
  Kernel& kernel();
  // Makes this machine's kernel current on the calling thread.
  void Activate();

  hw::PhysicalMemory& memory() { return *memory_; }
  // The PCI hardware (empty when the configuration describes none).
  hw::PciHardware& pci() { return *pci_; }
  // The IOMMU units; nullptr with MachineConfig::iommu off or no PCI.
  hw::IommuHardware* iommu() { return iommu_.get(); }
  // The DMA engine of the function named |function|, or nullptr.
  hw::DmaEngine* dma_engine(absl::string_view function);
  const std::vector<std::unique_ptr<hw::DmaEngine>>& dma_engines() const { return engines_; }
  // Simulated time: every running engine advances by one quantum
  // (MachineConfig::dma_quantum bytes), checked against the running
  // kernel's view of memory. The machine calls it after each boot step
  // (through KernelEnv), after the reboot hooks and after device shutdown
  // of a kexec; scenarios call it after each operation; tests may call it
  // at will. |point| names the moment in the records.
  void RunDevices(absl::string_view point) override;
  // Faults, stray writes and stops of every engine, in order: the first
  // kMaxDmaEvents; later ones are only counted (a device left writing
  // stray memory for a long run must not exhaust the host).
  const std::vector<DmaRecord>& dma_events() const { return dma_events_; }
  uint64_t dma_events_dropped() const { return dma_events_dropped_; }
  static constexpr size_t kMaxDmaEvents = 10000;
  // Bytes every engine wrote, in total, and per advance that moved any.
  uint64_t dma_bytes() const { return dma_bytes_; }
  struct DmaProgress {
    uint64_t generation = 0;
    std::string point;
    uint64_t bytes = 0;
  };
  const std::vector<DmaProgress>& dma_progress() const { return dma_progress_; }
  // MSI-X messages (khosim/hw/pci.h) go to the running kernel's irq table
  // (drivers::IrqTable::HandleMsix), synchronously: its handlers run inside
  // whatever made the function send (RunDevices for a DMA completion). A
  // message sent while no kernel runs (before the first boot, after a
  // panic) reaches an interrupt controller nobody set up: it is lost,
  // counted here and traced ("irq"/"no_kernel"). Signals a function could
  // not send are its own count (PciFunction::msix_lost), traced as
  // "irq"/"msix_lost"; messages a kernel had no handler for are the
  // kernel's (IrqTable::spurious).
  uint64_t msix_no_kernel() const { return msix_no_kernel_; }
  const MachineConfig& config() const { return config_; }
  FaultInjector& faults() { return faults_; }
  EventTrace& trace() { return trace_; }
  // The handover record of the last kexec.
  const abi::KhoData& last_handover() const { return last_handover_; }
  uint64_t kexec_count() const { return kexec_count_; }
  const KexecTimes& last_kexec_times() const { return last_kexec_times_; }

  // KernelEnv
  bool ShouldFail(absl::string_view point) override;
  void Trace(uint64_t generation, absl::string_view category, absl::string_view name,
             TraceArgs args) override;
  bool TraceEnabled(absl::string_view category) const override { return trace_.Enabled(category); }
  uint64_t Random() override { return rng_(); }
  uint64_t TraceAllocThreshold() const override { return config_.trace_alloc_threshold; }
  // Uniform in [0, bound) from the machine's generator (bound > 0).
  uint64_t RandomBelow(uint64_t bound);

 private:
  Machine(MachineConfig config, std::unique_ptr<hw::PhysicalMemory> memory);
  static absl::StatusOr<hw::MemoryLayout> LayoutFor(const MachineConfig& config);
  KernelConfig KernelConfigFor(PhysAddr image_base) const;
  void StartKernel(BootParams params, const KernelBuild& build);
  void DeliverMsix(const hw::MsixMessage& message);

  MachineConfig config_;
  std::unique_ptr<hw::PhysicalMemory> memory_;
  std::unique_ptr<hw::PciHardware> pci_;
  std::unique_ptr<hw::IommuHardware> iommu_;
  std::vector<std::unique_ptr<hw::DmaEngine>> engines_;
  std::vector<DmaRecord> dma_events_;
  uint64_t dma_events_dropped_ = 0;
  uint64_t dma_bytes_ = 0;
  std::vector<DmaProgress> dma_progress_;
  uint64_t msix_no_kernel_ = 0;
  std::mt19937_64 rng_;
  FaultInjector faults_;
  EventTrace trace_;
  std::unique_ptr<Kernel> kernel_;
  ModuleRegistry modules_ = ModuleRegistry::Builtin();
  std::vector<std::string> added_modules_;
  uint64_t next_generation_ = 1;
  uint64_t kexec_count_ = 0;
  abi::KhoData last_handover_ = {};
  // The image loaded into the running kernel (kexec_file_load), if any.
  uint64_t loaded_generation_ = 0;
  abi::KhoData loaded_handover_ = {};
  PhysAddr loaded_image_base_;
  KexecTimes last_kexec_times_;
};

}  // namespace khosim

#endif  // KHOSIM_MACHINE_MACHINE_H_

// Runner: runs a Scenario on a fresh Machine and reports what happened.
//
// Per boot, in this order: arm the fault plans due; then userspace, phase by
// phase over all processes (each opens /dev/liveupdate for its session
// calls and closes it again, since the device admits one opener):
//   retrieve  RETRIEVE_SESSION and RETRIEVE_FD for every listed file
//   verify    size, content hash, and every byte (full) or sampled pages
//             against the file's generator
//   finish    FINISH the retrieved sessions, close them
//   write     memfd_create + ftruncate + the generator's extents (a hugetlb
//             file: MFD_HUGETLB, written through a shared mapping)
//   preserve  CREATE_SESSION + PRESERVE_FD (except files marked omit)
// then the leak check (after a KHO boot whose incoming sessions are all
// finished only the previous root FDT may still be unclaimed), then the
// kexec into the next boot's command line.
//
// Each boot's kernel is built with the scenario's handlers for it
// (Scenario::HandlersOf): the cold boot through MachineConfig::build, every
// later one through KexecOptions::build.
//
// Outcomes: kPassed only when every check held; kDataLoss when something
// the scenario expected after a kexec is missing or differs (the first
// divergence is recorded); kPanic when a kernel panicked; kFailed when an
// operation failed (e.g. PRESERVE_FD returned an errno, a kexec was
// cancelled, /dev/liveupdate cannot be opened because LUO refused the
// incoming sessions, as it does when a file's handler is not built into the
// new kernel) or a check other than content failed (a leak). The run stops
// at the first failure.
#ifndef KHOSIM_SCENARIO_RUNNER_H_
#define KHOSIM_SCENARIO_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "khosim/machine/machine.h"
#include "khosim/scenario/scenario.h"

namespace khosim::scenario {

enum class Outcome { kPassed, kDataLoss, kPanic, kFailed };
absl::string_view OutcomeName(Outcome outcome);  // "passed", "data_loss", ...

// Process exit codes of `khosim run` (2 is a usage or scenario-file error,
// reported before anything runs).
inline constexpr int kExitPassed = 0;
inline constexpr int kExitDataLoss = 1;
inline constexpr int kExitBadScenario = 2;
inline constexpr int kExitPanic = 3;
inline constexpr int kExitFailed = 4;
int ExitCode(Outcome outcome);

// What one phase of the run cost, summed over its occurrences in a boot.
struct PhaseCost {
  int boot = 0;      // 1-based; for "kexec N" the boot it leaves
  std::string name;  // "cold boot", "kexec 1", "write", "preserve", ...
  double wall_ms = 0;
  uint64_t bytes = 0;             // file bytes the phase handled
  uint64_t page_allocs = 0;       // hits of the alloc_pages fault point
  uint64_t fault_point_hits = 0;  // hits of every fault point (allocations of all kinds)
  uint64_t trace_events = 0;
};

struct WarnRecord {
  int boot = 0;
  std::string site;
  uint64_t count = 0;
  std::string message;  // of the first hit
};

struct FileCheck {
  int boot = 0;
  std::string process;
  std::string session;
  uint64_t token = 0;
  std::string file;
  uint64_t size = 0;
  uint64_t hash = 0;
  std::string verify;  // "full", "sample", "none"
  uint64_t bytes_compared = 0;
  bool ok = false;
  // The compatible of the handler the previous kernel preserved the file
  // with (as LUO's incoming session reports it); empty if unknown.
  std::string handler;
};

// A file the kexec that ends a boot carries, as LUO's outgoing sessions
// list it.
struct PreservedFile {
  std::string session;
  uint64_t token = 0;
  std::string file;  // the scenario's name for it; empty if none matches
  uint64_t size = 0;
  std::string handler;  // the compatible it is preserved under
};

// One hugetlb pool (huge page size) of a kernel, as its userspace left it
// (mm::HstateInfo).
struct HugetlbPool {
  std::string name;  // "hugepages-2048kB", as in sysfs
  uint64_t page_size = 0;
  uint64_t requested = 0;  // hugepages= on this kernel's command line
  // Left out of the pool at boot: huge pages the previous kernel's
  // preserved hugetlb files hold (the hugetlb-v1 FLB's count). They rejoin
  // the pool when retrieved or finished.
  uint64_t preserved = 0;
  uint64_t nr_huge_pages = 0;  // pool pages, in use or free
  uint64_t free_huge_pages = 0;
};

// One PCI function as a kernel's PCI core sees it at the end of a boot's
// userspace.
struct DeviceState {
  std::string name;    // the hardware function's name in machine.pci
  std::string bdf;     // "0000:03:00.0"; empty if this kernel did not find it
  std::string driver;  // bound driver; empty if none
  bool bridge = false;
  bool bus_master = false;  // the hardware's Command register
  // The FLB "pci" entry's refcount in this kernel's outgoing set (0: not
  // preserved), and in the previous kernel's set as this kernel holds it
  // (0: not incoming, or finished).
  int outgoing_refcount = 0;
  int incoming_refcount = 0;
  bool was_incoming = false;  // came in preserved, whether finished or not
};

struct Divergence {
  int boot = 0;
  std::string what;  // a full sentence naming file, session, token, offset
  std::string file;
  std::string session;
  uint64_t token = 0;
  std::optional<uint64_t> offset;  // first differing byte, when content differs
  int expected = -1;
  int found = -1;
  uint64_t pages_differing = 0;
};

// What the machine's DMA engines did around one boot.
struct DmaReport {
  uint64_t kexec_bytes = 0;      // while the previous kernel went down
  uint64_t boot_bytes = 0;       // during this kernel's boot steps
  uint64_t userspace_bytes = 0;  // during this boot's scenario operations
  uint64_t faults = 0;
  uint64_t stray_writes = 0;
  uint64_t stops = 0;
  // One line per event: "<kind> <device> at <point>: <reason>".
  std::vector<std::string> events;
};

struct BootReport {
  int boot = 0;
  uint64_t generation = 0;
  std::string cmdline;
  std::string kho_profile;
  std::string luo_profile;
  std::vector<HandlerInfo> handlers;  // built into this kernel
  bool kho_boot = false;              // booted from a KHO handover
  // Outgoing, as frozen for the kexec that ends this boot.
  uint64_t sessions_preserved = 0;
  uint64_t files_preserved = 0;
  uint64_t file_bytes_preserved = 0;
  uint64_t kho_blocks_preserved = 0;  // blocks in the outgoing tracker
  uint64_t kho_pages_preserved = 0;
  uint64_t kho_bytes_preserved = 0;
  // The outgoing tracker's metadata pages (radix nodes; kho-v1 bitmaps and
  // chunks). Named for the radix tree in the JSON report.
  uint64_t tracker_node_pages = 0;
  std::vector<PreservedFile> preserved_files;
  // Incoming.
  uint64_t kho_blocks_retrieved = 0;
  uint64_t sessions_retrieved = 0;
  uint64_t files_retrieved = 0;
  uint64_t file_bytes_retrieved = 0;
  uint64_t bytes_verified = 0;
  uint64_t sessions_finished = 0;
  // Preserved blocks of the previous kernel nobody claimed (root FDT
  // excluded); nullopt when not checked (cold boot, or sessions pending).
  std::optional<uint64_t> leaked_blocks;
  // The pools with any page requested, left out or allocated, at the end of
  // this boot's userspace.
  std::vector<HugetlbPool> hugetlb_pools;
  // Every PCI function of the machine (none without PCI hardware).
  std::vector<DeviceState> devices;
  DmaReport dma;
  uint64_t warns = 0;
  std::vector<std::string> notes;
  std::vector<std::string> log;  // the kernel's printk log (not in the JSON report)
};

struct RunReport {
  std::string scenario;
  std::string source;
  Outcome outcome = Outcome::kPassed;
  std::string message;  // why it did not pass; empty when it did
  uint64_t kexecs_done = 0;
  uint64_t bytes_verified = 0;
  std::vector<BootReport> boots;
  std::vector<FileCheck> files;
  std::vector<PhaseCost> phases;
  std::vector<WarnRecord> warns;
  std::optional<Divergence> divergence;
  std::vector<std::string> faults_injected;  // fault points that fired, in order
  bool program = false;                      // a program scenario: boots carry no counters
  std::vector<std::string> program_lines;    // a program scenario's own report
  double wall_ms = 0;
  uint64_t host_resident_bytes = 0;
  uint64_t trace_events = 0;
};

// Progress of long phases (a CLI draws a bar from it).
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  // |total| in bytes; 0 when the work is not countable.
  virtual void Begin(absl::string_view phase, uint64_t total) = 0;
  virtual void Advance(uint64_t done) = 0;
  virtual void End() = 0;
};

// Where `khosim inspect` stops the run.
struct StopPoint {
  int boot = 0;  // after this boot's userspace (1-based)
  // ... and then freeze for the kexec that would follow: reboot hooks run
  // (LUO serializes) and the next image is loaded (the handover record is
  // built), but the kexec does not happen.
  bool at_kexec = false;
};

// What a test hook sees: the machine between a boot's userspace and its
// kexec, and the files the boot's processes hold, by scenario name.
struct HookContext {
  Machine& machine;
  int boot = 0;
  // The open file behind a scenario file name in this boot, or nullptr.
  std::function<struct file*(absl::string_view name)> file;
};

struct RunOptions {
  ProgressSink* progress = nullptr;
  std::optional<StopPoint> stop;
  // Called after each boot's userspace, before its kexec: tests use it to
  // break things (scribble on a preserved page) and check detection.
  std::function<void(HookContext&)> before_kexec;
};

class Runner {
 public:
  Runner(const Scenario& scenario, RunOptions options = {});
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  RunReport Run();
  // The machine after Run (for inspect and the trace); null if it could not
  // be created.
  Machine* machine() { return machine_.get(); }
  // The handover record built at a StopPoint with at_kexec.
  const abi::KhoData& stop_handover() const { return stop_handover_; }

 private:
  class Impl;
  const Scenario& scenario_;
  RunOptions options_;
  std::unique_ptr<Machine> machine_;
  abi::KhoData stop_handover_ = {};
};

// Convenience: parse-free run of a scenario to completion.
RunReport RunScenario(const Scenario& scenario, ProgressSink* progress = nullptr);

}  // namespace khosim::scenario

#endif  // KHOSIM_SCENARIO_RUNNER_H_

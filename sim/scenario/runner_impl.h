// Runner::Impl: one run of a scenario (see khosim/scenario/runner.h for
// the order of a boot's phases). Its methods are spread by concern:
// runner.cc (the boots, the kexecs, the outcome), runner_phases.cc (the
// userspace phases: retrieve, finish, write, preserve), runner_verify.cc
// (byte checks against the generators), runner_devices.cc (PCI devices
// passed through and preserved), runner_hints.cc (why something failed,
// for the message), runner_records.cc (the leak check and what a boot
// preserved).
#ifndef KHOSIM_SIM_SCENARIO_RUNNER_IMPL_H_
#define KHOSIM_SIM_SCENARIO_RUNNER_IMPL_H_

#include <fcntl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "khosim/abi/hugetlb_luo.h"
#include "khosim/base/panic.h"
#include "khosim/drivers/pci.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/memfd.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/mm/hugetlb.h"
#include "khosim/scenario/content.h"
#include "khosim/scenario/programs.h"
#include "khosim/scenario/runner.h"

namespace khosim::scenario {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kChunk = 1 * kMiB;
// The first value a device's DMA counter writes.
constexpr uint64_t kDmaCounterBase = 1;
constexpr int kSamplePages = 64;

inline double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// "-ENOENT" for -2.
inline std::string ErrnoName(long err) {
  const char* name = strerrorname_np(static_cast<int>(-err));
  return name != nullptr ? absl::StrCat("-", name) : absl::StrCat(err);
}

inline std::string Token(uint64_t token) { return absl::StrFormat("0x%x", token); }

class Runner::Impl {
 public:
  Impl(Runner& runner, const Scenario& s) : runner_(runner), s_(s), options_(runner.options_) {}
  RunReport Run();

 private:
  // Cost accounting for one stretch of work; adds to the (boot, name) row.
  class Phase {
   public:
    Phase(Impl& impl, int boot, std::string name, uint64_t total_bytes)
        : impl_(impl),
          boot_(boot),
          name_(std::move(name)),
          start_(Clock::now()),
          allocs_(impl.m_->faults().Hits("alloc_pages")),
          hits_(impl.m_->faults().TotalHits()),
          events_(impl.m_->trace().size()) {
      if (impl_.options_.progress != nullptr) {
        impl_.options_.progress->Begin(absl::StrFormat("boot %d: %s", boot_, name_), total_bytes);
        impl_.progress_open_ = true;
      }
    }
    ~Phase() {
      if (impl_.progress_open_) impl_.EndProgress();
      // Simulated time passes with every scenario operation.
      impl_.m_->RunDevices(absl::StrFormat("boot %d: %s", boot_, name_));
      PhaseCost* row = nullptr;
      for (PhaseCost& c : impl_.report_.phases) {
        if (c.boot == boot_ && c.name == name_) row = &c;
      }
      if (row == nullptr) {
        impl_.report_.phases.push_back(PhaseCost{.boot = boot_, .name = name_});
        row = &impl_.report_.phases.back();
      }
      row->wall_ms += MsSince(start_);
      row->bytes += bytes_;
      row->page_allocs += impl_.m_->faults().Hits("alloc_pages") - allocs_;
      row->fault_point_hits += impl_.m_->faults().TotalHits() - hits_;
      row->trace_events += impl_.m_->trace().size() - events_;
    }
    void Advance(uint64_t bytes) {
      bytes_ += bytes;
      if (impl_.options_.progress != nullptr) impl_.options_.progress->Advance(bytes_);
    }

   private:
    Impl& impl_;
    const int boot_;
    const std::string name_;
    const Clock::time_point start_;
    const uint64_t allocs_;
    const uint64_t hits_;
    const uint64_t events_;
    uint64_t bytes_ = 0;
  };

  struct Held {  // a file some process of this boot has open
    fs::Process* process = nullptr;
    int fd = -1;
  };
  struct RetrievedSession {
    fs::Process* process;
    const SessionSpec* spec;
    int fd;
  };
  struct RetrievedFile {
    fs::Process* process;
    const SessionSpec* session;
    const FileRef* ref;
    int fd;
    std::string handler;  // the compatible it came in under
  };

  bool failed() const { return report_.outcome != Outcome::kPassed; }
  Kernel& kernel() { return m_->kernel(); }

  bool Stop(Outcome outcome, std::string message);
  void EndProgress();
  bool StopRequested(int boot) const;
  void CheckAfterFailure(int boot, BootReport& br);
  void Arm(FaultArm::Kind kind, int index);
  void RunProgram();
  void RunBoots();
  void FreezeForInspect(int boot);
  void RunUserspace(int boot, const BootSpec& spec, BootReport& br);
  void Finalize();
  // The open file behind a scenario file name in this boot, or nullptr.
  file* HeldFile(absl::string_view name) const;
  // Opens /dev/liveupdate for |p|; the caller closes it.
  int OpenDevice(int boot, fs::Process& p);
  bool RetrievePhase(int boot, const BootSpec& spec, BootReport& br,
                     std::vector<RetrievedSession>* sessions, std::vector<RetrievedFile>* files);
  bool Lost(int boot, const std::string& session, const FileRef* ref, std::string what);
  bool FinishPhase(int boot, BootReport& br, const std::vector<RetrievedSession>& sessions);
  bool WritePhase(int boot, const BootSpec& spec);
  // hugetlbfs has no write(2): a VMM writes guest RAM through a shared
  // mapping. Faulting base page by base page touches only the huge pages the
  // generator writes (each from the pool, zeroed without host memory), so a
  // file of many GiB with sampled content costs little; preserve allocates
  // the rest.
  bool WriteThroughMapping(int boot, fs::Process& p, int fd, const FileSpec& file,
                           const Content& content, Phase& phase);
  bool PreservePhase(int boot, const BootSpec& spec, BootReport& br);
  bool VerifyPhase(int boot, BootReport& br, const std::vector<RetrievedFile>& files);
  // The hash of the file's expected data: the bytes of its generator's
  // data ranges, in order (cached per file). Holes are not in it: they are
  // compared byte for byte (full) or sampled.
  uint64_t ExpectedHash(const FileSpec& spec);
  bool VerifyFile(int boot, const RetrievedFile& f, Phase& phase, BootReport& br);
  static void CompareChunk(uint64_t off, const uint8_t* got, const uint8_t* want, uint64_t n,
                           uint64_t page, std::optional<uint64_t>* first_bad, int* expected,
                           int* found, uint64_t* bad_pages);
  // The previous boot's spec said nothing about this session / token?
  std::string MissingHint(int boot, const std::string& session, const FileRef* ref) const;
  // Why /dev/liveupdate would not open, for the message.
  std::string OpenFailureHint();
  // Why MFD_HUGETLB or RETRIEVE_FD of a hugetlb file failed with -ENODEV.
  std::string NoHstateHint(const FileSpec& file);
  // Binds every device file this boot retrieves or preserves to the
  // pci-passthrough driver (the user's job: driver_override + probe).
  bool BindDevices(int boot, const BootSpec& spec);
  // Opens a device file's node and turns bus mastering on; the fd, or the
  // errno.
  int OpenDeviceFile(fs::Process& p, const FileSpec& file);
  // Maps the device's DMA target and starts its engine's counter.
  bool StartDma(int boot, const FileSpec& device);
  bool MapForDma(int boot, const FileSpec& device, const Held& target);
  // runner_iommufd.cc: a device's DMA through an iommufd, and in the next
  // kernel the VMM's reclaim (bind to the retrieved iommufd, restore the
  // HWPT, move to a fresh one marked for the next kexec).
  bool MapThroughIommufd(int boot, const FileSpec& device);
  bool ReclaimPhase(int boot, const std::vector<RetrievedFile>& files);
  bool VerifyDmaRing(int boot, const RetrievedFile& f, FileCheck& check);
  void RecordDma(BootReport& br);
  bool VerifyDevice(int boot, const RetrievedFile& f, FileCheck& check);
  void RecordDevices(BootReport& br);
  void CheckLeaks(int boot, BootReport& br);
  void RecordOutgoing(BootReport& br);
  void RecordPools(BootReport& br);

  Runner& runner_;
  const Scenario& s_;
  RunOptions& options_;
  Machine* m_ = nullptr;
  RunReport report_;
  bool progress_open_ = false;
  std::vector<fs::Process*> processes_;  // this boot's, in spec order
  std::map<std::string, Held> held_;     // this boot's open files by name
  std::map<std::string, uint64_t> expected_hash_;
};

}  // namespace khosim::scenario

#endif  // KHOSIM_SIM_SCENARIO_RUNNER_IMPL_H_

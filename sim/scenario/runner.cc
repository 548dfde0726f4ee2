// Runner (see the header for the order of a boot's phases).
//
// The runner plays userspace: it creates the scenario's processes in each
// boot, makes the LUO ioctls through khosim/luo/client.h and reads and
// writes files through the process syscalls, exactly as a VMM would. What
// it remembers across a kexec is only what a VMM's operator would know (the
// scenario and each file's generator); every byte it verifies is read back
// from the simulated kernel of the new boot.
#include "khosim/scenario/runner.h"

#include <fcntl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "khosim/abi/hugetlb_luo.h"
#include "khosim/base/panic.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/memfd.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/scenarios.h"
#include "khosim/mm/hugetlb.h"
#include "khosim/scenario/content.h"

namespace khosim::scenario {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kChunk = 1 * kMiB;
constexpr int kSamplePages = 64;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// "-ENOENT" for -2.
std::string ErrnoName(long err) {
  const char* name = strerrorname_np(static_cast<int>(-err));
  return name != nullptr ? absl::StrCat("-", name) : absl::StrCat(err);
}

std::string Token(uint64_t token) { return absl::StrFormat("0x%x", token); }

MachineConfig ConfigFor(const Scenario& s) {
  MachineConfig config;
  config.ram = s.machine.ram;
  config.nodes = s.machine.nodes;
  config.page_size = s.machine.page_size;
  config.seed = s.machine.seed;
  config.scrub = s.machine.scrub;
  config.cmdline = s.boots.front().EffectiveCmdline();
  // The cold boot's build; the runner names every kexec's build itself.
  config.build = s.HandlersOf(0);
  return config;
}

}  // namespace

absl::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kPassed:
      return "passed";
    case Outcome::kDataLoss:
      return "data_loss";
    case Outcome::kPanic:
      return "panic";
    case Outcome::kFailed:
      return "failed";
  }
  return "?";
}

int ExitCode(Outcome outcome) {
  switch (outcome) {
    case Outcome::kPassed:
      return kExitPassed;
    case Outcome::kDataLoss:
      return kExitDataLoss;
    case Outcome::kPanic:
      return kExitPanic;
    case Outcome::kFailed:
      return kExitFailed;
  }
  return kExitFailed;
}

class Runner::Impl {
 public:
  Impl(Runner& runner, const Scenario& s) : runner_(runner), s_(s), options_(runner.options_) {}

  RunReport Run() {
    const Clock::time_point start = Clock::now();
    report_.scenario = s_.name;
    report_.source = s_.source;
    auto machine = Machine::Create(ConfigFor(s_));
    if (!machine.ok()) {
      Stop(Outcome::kFailed,
           absl::StrCat("the machine cannot be built: ", machine.status().message()));
      return std::move(report_);
    }
    runner_.machine_ = std::move(*machine);
    m_ = runner_.machine_.get();
    try {
      if (s_.program) {
        RunProgram();
      } else {
        RunBoots();
      }
    } catch (const KernelPanic& panic) {
      if (progress_open_) EndProgress();
      const uint64_t gen = m_->has_kernel() ? m_->kernel().generation() : 0;
      Stop(Outcome::kPanic,
           absl::StrFormat("kernel panic in boot %d at %s: %s", gen, panic.site(), panic.what()));
    }
    Finalize();
    report_.wall_ms = MsSince(start);
    return std::move(report_);
  }

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

  // The open file behind a scenario file name in this boot, or nullptr.
  file* HeldFile(absl::string_view name) const {
    auto it = held_.find(std::string(name));
    return it == held_.end() ? nullptr : it->second.process->PeekFile(it->second.fd);
  }

  bool failed() const { return report_.outcome != Outcome::kPassed; }
  bool Stop(Outcome outcome, std::string message) {
    if (!failed()) {
      report_.outcome = outcome;
      report_.message = std::move(message);
    }
    return false;
  }
  void EndProgress() {
    options_.progress->End();
    progress_open_ = false;
  }
  Kernel& kernel() { return m_->kernel(); }
  bool StopRequested(int boot) const {
    return options_.stop.has_value() && options_.stop->boot == boot;
  }

  void Arm(FaultArm::Kind kind, int index) {
    for (const FaultSpec& f : s_.faults) {
      if (f.arm.kind != kind || f.arm.index != index) continue;
      FaultInjector& faults = m_->faults();
      // nth counts from the moment the plan is armed.
      switch (f.kind) {
        case FaultSpec::kNth:
          faults.FailNth(f.point, faults.Hits(f.point) + f.nth);
          break;
        case FaultSpec::kNthAny:
          faults.FailNthAny(faults.TotalHits() + f.nth);
          break;
        case FaultSpec::kOnce:
          faults.FailOnce(f.point);
          break;
        case FaultSpec::kProbability:
          faults.FailWithProbability(f.point, f.probability);
          break;
      }
    }
  }

  // ---- Program scenarios (KHO only) ----

  void RunProgram() {
    const ProgramSpec& p = *s_.program;
    ScenarioResult result;
    {
      Arm(FaultArm::kStart, 0);
      Phase phase(*this, 1, absl::StrCat("program ", p.name), 0);
      // Each kexec boots the next boot's command line (its KHO profile).
      std::vector<std::string> cmdlines;
      for (size_t i = 1; i < s_.boots.size(); ++i) {
        cmdlines.push_back(s_.boots[i].EffectiveCmdline());
      }
      if (p.name == "kho") {
        result = RunKhoScenario(
            *m_, s_.kexecs(), p.preserve_per_boot,
            {.skip_preserve_folio = p.skip_preserve_folio, .kexec_cmdlines = cmdlines});
      } else {
        result = RunKexecScrubScenario(*m_, s_.kexecs(), cmdlines);
      }
    }
    report_.program = true;
    report_.program_lines = result.lines;
    report_.kexecs_done = m_->kexec_count();
    for (uint64_t g = 1; g <= report_.kexecs_done + 1; ++g) {
      BootReport b;
      b.boot = static_cast<int>(g);
      b.generation = g;
      b.cmdline = s_.boots[g - 1].EffectiveCmdline();
      b.kho_profile = s_.boots[g - 1].kho_profile;
      b.luo_profile = std::string(luo::LuoProfileName(s_.boots[g - 1].luo_profile));
      b.handlers = BuiltHandlers(s_.machine.handlers);
      // A kernel of another KHO profile refused the handover and booted cold.
      b.kho_boot =
          g > 1 && p.name == "kho" && s_.boots[g - 2].kho_profile == s_.boots[g - 1].kho_profile;
      report_.boots.push_back(std::move(b));
    }
    if (!result.passed) {
      std::string first;
      for (const std::string& line : result.lines) {
        absl::string_view text = absl::StripAsciiWhitespace(line);
        if (absl::ConsumePrefix(&text, "FAIL")) {
          first = std::string(absl::StripLeadingAsciiWhitespace(text));
          break;
        }
      }
      const uint64_t boot = m_->has_kernel() ? m_->kernel().generation() : 0;
      first = absl::StrFormat("boot %d: %s", boot, first);
      // A kernel refuses a handover of another KHO ABI and boots cold.
      if (p.name == "kho" && boot >= 2 && boot <= s_.boots.size() &&
          s_.boots[boot - 2].kho_profile != s_.boots[boot - 1].kho_profile) {
        absl::StrAppend(&first,
                        absl::StrFormat(" (boot %d speaks %s and refused boot %d's %s handover: it "
                                        "booted cold and everything preserved was lost)",
                                        boot, s_.boots[boot - 1].kho_profile, boot - 1,
                                        s_.boots[boot - 2].kho_profile));
      }
      // The program's checks are about preserved bytes surviving (or
      // unpreserved ones not surviving): a failed one is a data loss.
      Stop(Outcome::kDataLoss, absl::StrCat("program ", p.name, ": ", first));
      Divergence d;
      d.boot = static_cast<int>(boot);
      d.what = first;
      report_.divergence = d;
    }
  }

  // ---- Process scenarios ----

  void RunBoots() {
    Arm(FaultArm::kStart, 0);
    {
      Phase phase(*this, 1, "cold boot", 0);
      m_->Boot();
    }
    for (size_t i = 0; i < s_.boots.size(); ++i) {
      const int boot = static_cast<int>(i) + 1;
      Arm(FaultArm::kBoot, boot);
      report_.boots.push_back(BootReport{});
      RunUserspace(boot, s_.boots[i], report_.boots.back());
      RecordPools(report_.boots.back());
      if (failed()) return;
      if (StopRequested(boot)) {
        if (options_.stop->at_kexec) FreezeForInspect(boot);
        return;
      }
      if (i + 1 == s_.boots.size()) break;
      RecordOutgoing(report_.boots.back());
      report_.boots.back().log = kernel().ctx().LogLines();
      if (options_.before_kexec) {
        HookContext hook{*m_, boot, [this](absl::string_view name) { return HeldFile(name); }};
        options_.before_kexec(hook);
      }
      Arm(FaultArm::kKexec, boot);
      absl::Status status;
      {
        Phase phase(*this, boot, absl::StrCat("kexec ", boot), 0);
        status = m_->Kexec(KexecOptions{.cmdline = s_.boots[i + 1].EffectiveCmdline(),
                                        .build = s_.HandlersOf(i + 1)});
      }
      if (!status.ok()) {
        Stop(Outcome::kFailed,
             absl::StrFormat("boot %d: kexec %d was cancelled: %s", boot, boot, status.message()));
        return;
      }
      report_.kexecs_done = m_->kexec_count();
    }
  }  // namespace khosim::scenario

  void FreezeForInspect(int boot) {
    Kernel& k = kernel();
    if (const int err = k.RunRebootHooks(RebootInfo{}); err != 0) {
      Stop(Outcome::kFailed, absl::StrFormat("boot %d: the reboot hooks (LUO freeze) failed: %s",
                                             boot, ErrnoName(err)));
      return;
    }
    if (const int err = k.MakeHandover(&runner_.stop_handover_); err != 0) {
      Stop(Outcome::kFailed,
           absl::StrFormat("boot %d: loading the next image failed: %s", boot, ErrnoName(err)));
    }
  }

  void RunUserspace(int boot, const BootSpec& spec, BootReport& br) {
    Kernel& k = kernel();
    m_->Activate();
    br.boot = boot;
    br.generation = k.generation();
    br.cmdline = k.ctx().cmdline().text();
    br.kho_profile = spec.kho_profile;
    br.luo_profile = std::string(luo::LuoProfileName(k.luo().profile()));
    br.handlers = BuiltHandlers(s_.HandlersOf(boot - 1));
    br.kho_boot = k.kho().is_kho_boot();
    br.kho_blocks_retrieved = k.kho().retrieved_blocks();

    held_.clear();
    processes_.clear();
    for (const ProcessSpec& p : spec.processes) {
      fs::Process& process = k.vfs().CreateProcess(p.name);
      process.SetRlimitNofile(1 << 16);
      processes_.push_back(&process);
    }
    std::vector<RetrievedSession> sessions;
    std::vector<RetrievedFile> files;
    if (!RetrievePhase(boot, spec, br, &sessions, &files)) return;
    if (!VerifyPhase(boot, br, files)) return;
    if (!FinishPhase(boot, br, sessions)) return;
    if (!WritePhase(boot, spec)) return;
    if (!PreservePhase(boot, spec, br)) return;
    CheckLeaks(boot, br);
  }

  // The previous boot's spec said nothing about this session / token?
  std::string MissingHint(int boot, const std::string& session, const FileRef* ref) const {
    if (boot < 2) return "";
    const BootSpec& prev = s_.boots[boot - 2];
    for (const ProcessSpec& p : prev.processes) {
      for (const SessionSpec& sess : p.sessions) {
        if (sess.name != session || !sess.preserve) continue;
        if (ref == nullptr) return "";
        for (const FileRef& out : *sess.preserve) {
          if (out.token != ref->token) continue;
          return out.omit ? absl::StrFormat("; the scenario told boot %d not to preserve it (omit)",
                                            boot - 1)
                          : "";
        }
        return absl::StrFormat("; boot %d did not preserve token %s in it", boot - 1,
                               Token(ref->token));
      }
    }
    return absl::StrFormat("; boot %d did not create session \"%s\"", boot - 1, session);
  }

  // Opens /dev/liveupdate for |p|; the caller closes it.
  int OpenDevice(int boot, fs::Process& p) {
    const int dev = luo::OpenLiveupdate(p);
    if (dev < 0) {
      Stop(Outcome::kFailed, absl::StrFormat("boot %d: process %s: open(/dev/liveupdate): %s%s",
                                             boot, p.name(), ErrnoName(dev), OpenFailureHint()));
    }
    return dev;
  }

  // Why /dev/liveupdate would not open, for the message.
  std::string OpenFailureHint() {
    luo::Luo& luo = kernel().luo();
    const Cmdline& cmdline = kernel().ctx().cmdline();
    if (!luo.enabled()) {
      return cmdline.GetBool("liveupdate", false) && cmdline.GetBool("kho", false)
                 ? " (LUO is off in this kernel although the command line asks for it: its "
                   "startup failed; khosim run --dmesg shows the kernel log)"
                 : " (LUO is off: the command line needs kho=on liveupdate=on)";
    }
    if (luo.deserialize_error() == 0) return "";
    // LUO latched an error reading the incoming sessions; the usual cause
    // is a file whose handler this kernel build lacks. The previous boot's
    // report says what it preserved under which compatible.
    std::set<std::string> built;
    for (const HandlerInfo& h : report_.boots.back().handlers) built.insert(h.compatible);
    std::map<std::string, int> missing;  // compatible -> files
    if (report_.boots.size() >= 2) {
      for (const PreservedFile& f : report_.boots[report_.boots.size() - 2].preserved_files) {
        if (built.count(f.handler) == 0) ++missing[f.handler];
      }
    }
    const BootReport& br = report_.boots.back();
    std::string why;
    for (const auto& [compatible, files] : missing) {
      absl::StrAppend(&why, why.empty() ? "" : ", ", files, " file(s) with ", compatible);
    }
    std::string built_text;
    for (const HandlerInfo& h : br.handlers) {
      absl::StrAppend(&built_text, built_text.empty() ? "" : ", ", h.name, " (", h.compatible, ")");
    }
    if (built_text.empty()) built_text = "none";
    if (!why.empty()) {
      return absl::StrFormat(
          " (LUO could not read the incoming sessions (%s): boot %d preserved %s, and this "
          "kernel is built without %s (its handlers: %s); every open fails in this kernel, so "
          "nothing boot %d preserved can be retrieved)",
          ErrnoName(-std::abs(luo.deserialize_error())), br.boot - 1, why,
          missing.size() == 1 ? "that handler" : "those handlers", built_text, br.boot - 1);
    }
    return absl::StrFormat(
        " (LUO could not read the incoming sessions (%s); khosim run --dmesg shows the kernel "
        "log)",
        ErrnoName(-std::abs(luo.deserialize_error())));
  }

  bool RetrievePhase(int boot, const BootSpec& spec, BootReport& br,
                     std::vector<RetrievedSession>* sessions, std::vector<RetrievedFile>* files) {
    uint64_t total = 0;
    for (const ProcessSpec& p : spec.processes) {
      for (const SessionSpec& sess : p.sessions) {
        if (!sess.retrieve) continue;
        for (const FileRef& ref : *sess.retrieve) total += s_.FindFile(ref.file)->size;
      }
    }
    bool any = false;
    for (const ProcessSpec& p : spec.processes) {
      for (const SessionSpec& sess : p.sessions) any = any || sess.retrieve.has_value();
    }
    if (!any) return true;
    Phase phase(*this, boot, "retrieve", total);
    for (size_t pi = 0; pi < spec.processes.size(); ++pi) {
      fs::Process& p = *processes_[pi];
      bool opened = false;
      int dev = -1;
      for (const SessionSpec& sess : spec.processes[pi].sessions) {
        if (!sess.retrieve) continue;
        if (!opened) {
          dev = OpenDevice(boot, p);
          if (dev < 0) return false;
          opened = true;
        }
        const int sfd = luo::RetrieveSession(p, dev, sess.name);
        if (sfd == -ENOENT) {
          return Lost(boot, sess.name, nullptr,
                      absl::StrFormat("boot %d: session \"%s\" is not among the incoming sessions "
                                      "(RETRIEVE_SESSION: -ENOENT)%s",
                                      boot, sess.name, MissingHint(boot, sess.name, nullptr)));
        }
        if (sfd < 0) {
          return Stop(Outcome::kFailed,
                      absl::StrFormat("boot %d: process %s: RETRIEVE_SESSION \"%s\": %s", boot,
                                      p.name(), sess.name, ErrnoName(sfd)));
        }
        ++br.sessions_retrieved;
        sessions->push_back({&p, &sess, sfd});
        // The handler each incoming file was preserved with, by token.
        std::map<uint64_t, std::string> handler_of;
        for (const luo::Luo::SessionInfo& info : kernel().luo().IncomingSessions()) {
          if (info.name != sess.name) continue;
          for (const luo::Luo::FileInfo& fi : info.files) handler_of[fi.token] = fi.compatible;
        }
        for (const FileRef& ref : *sess.retrieve) {
          const int fd = luo::RetrieveFd(p, sfd, ref.token);
          if (fd == -ENOENT) {
            return Lost(boot, sess.name, &ref,
                        absl::StrFormat("boot %d: session \"%s\" has no file with token %s "
                                        "(expected file %s; RETRIEVE_FD: -ENOENT)%s",
                                        boot, sess.name, Token(ref.token), ref.file,
                                        MissingHint(boot, sess.name, &ref)));
          }
          if (fd < 0) {
            const FileSpec& file = *s_.FindFile(ref.file);
            return Stop(
                Outcome::kFailed,
                absl::StrFormat(
                    "boot %d: session \"%s\": RETRIEVE_FD %s (file %s): %s%s", boot, sess.name,
                    Token(ref.token), ref.file, ErrnoName(fd),
                    fd == -ENODEV && file.kind == FileKind::kHugetlb ? NoHstateHint(file) : ""));
          }
          ++br.files_retrieved;
          const uint64_t size = s_.FindFile(ref.file)->size;
          br.file_bytes_retrieved += size;
          phase.Advance(size);
          held_[ref.file] = Held{&p, fd};
          files->push_back({&p, &sess, &ref, fd, handler_of[ref.token]});
        }
      }
      if (opened) p.Close(dev);
    }
    return true;
  }

  bool Lost(int boot, const std::string& session, const FileRef* ref, std::string what) {
    Divergence d;
    d.boot = boot;
    d.what = what;
    d.session = session;
    if (ref != nullptr) {
      d.file = ref->file;
      d.token = ref->token;
    }
    report_.divergence = d;
    return Stop(Outcome::kDataLoss, std::move(what));
  }

  bool VerifyPhase(int boot, BootReport& br, const std::vector<RetrievedFile>& files) {
    uint64_t total = 0;
    for (const RetrievedFile& f : files) {
      if (f.ref->verify != VerifyMode::kNone) total += s_.FindFile(f.ref->file)->size;
    }
    if (files.empty()) return true;
    Phase phase(*this, boot, "verify", total);
    for (const RetrievedFile& f : files) {
      if (!VerifyFile(boot, f, phase, br)) return false;
    }
    return true;
  }

  // The hash of the file's expected data: the bytes of its generator's
  // data ranges, in order (cached per file). Holes are not in it: they are
  // compared byte for byte (full) or sampled.
  uint64_t ExpectedHash(const FileSpec& spec) {
    auto it = expected_hash_.find(spec.name);
    if (it != expected_hash_.end()) return it->second;
    const Content content(spec, s_.machine.seed);
    std::vector<uint8_t> buf(kChunk);
    ContentHash hash;
    for (const Extent& e : content.data()) {
      for (uint64_t off = e.offset; off < e.offset + e.length; off += kChunk) {
        const uint64_t n = std::min(kChunk, e.offset + e.length - off);
        content.Fill(off, buf.data(), n);
        hash.Update(buf.data(), n);
      }
    }
    return expected_hash_[spec.name] = hash.value();
  }

  bool VerifyFile(int boot, const RetrievedFile& f, Phase& phase, BootReport& br) {
    const FileSpec& spec = *s_.FindFile(f.ref->file);
    fs::Process& p = *f.process;
    FileCheck check;
    check.boot = boot;
    check.process = p.name();
    check.session = f.session->name;
    check.token = f.ref->token;
    check.file = spec.name;
    check.size = spec.size;
    check.verify = f.ref->verify == VerifyMode::kFull     ? "full"
                   : f.ref->verify == VerifyMode::kSample ? "sample"
                                                          : "none";
    check.handler = f.handler;
    const std::string where = absl::StrFormat("boot %d: file %s (session \"%s\", token %s)", boot,
                                              spec.name, f.session->name, Token(f.ref->token));
    const loff_t size = p.Lseek(f.fd, 0, SEEK_END);
    if (size != static_cast<loff_t>(spec.size)) {
      report_.files.push_back(check);
      return Lost(
          boot, f.session->name, f.ref,
          absl::StrFormat("%s: size %d after the kexec, expected %d", where, size, spec.size));
    }
    if (f.ref->verify == VerifyMode::kNone) {
      check.ok = true;
      report_.files.push_back(check);
      return true;
    }
    const Content content(spec, s_.machine.seed);
    const bool full = f.ref->verify == VerifyMode::kFull;
    std::vector<uint8_t> got(kChunk);
    std::vector<uint8_t> want(kChunk);
    ContentHash hash;
    std::optional<uint64_t> first_bad;
    int expected = -1;
    int found = -1;
    uint64_t bad_pages = 0;
    const uint64_t page = s_.machine.page_size;
    // Reads [off, off + n) into |got|; false (and the run stopped) if the
    // read came up short.
    auto read = [&](uint64_t off, uint64_t n) {
      const ssize_t r = p.Pread(f.fd, got.data(), n, static_cast<loff_t>(off));
      if (r == static_cast<ssize_t>(n)) return true;
      report_.files.push_back(check);
      return Stop(Outcome::kFailed, absl::StrFormat("%s: pread at %d returned %s", where, off,
                                                    r < 0 ? ErrnoName(r) : absl::StrCat(r)));
    };
    if (full) {
      // Every byte, holes included; the hash takes the data ranges' bytes
      // as they go by.
      const std::vector<Extent>& data = content.data();
      size_t next = 0;  // the first data range not yet wholly hashed
      for (uint64_t off = 0; off < spec.size; off += kChunk) {
        const uint64_t n = std::min(kChunk, spec.size - off);
        if (!read(off, n)) return false;
        for (size_t i = next; i < data.size() && data[i].offset < off + n; ++i) {
          const uint64_t lo = std::max(off, data[i].offset);
          const uint64_t hi = std::min(off + n, data[i].offset + data[i].length);
          if (lo < hi) hash.Update(got.data() + (lo - off), hi - lo);
          if (data[i].offset + data[i].length <= off + n) next = i + 1;
        }
        content.Fill(off, want.data(), n);
        CompareChunk(off, got.data(), want.data(), n, page, &first_bad, &expected, &found,
                     &bad_pages);
        check.bytes_compared += n;
        phase.Advance(n);
      }
      check.hash = hash.value();
    } else {
      // The data ranges through the hash, holes by sampled pages only: a
      // file of many GiB with little data is verified without reading its
      // holes (each read of one would cost host memory).
      for (const Extent& e : content.data()) {
        for (uint64_t off = e.offset; off < e.offset + e.length; off += kChunk) {
          const uint64_t n = std::min(kChunk, e.offset + e.length - off);
          if (!read(off, n)) return false;
          hash.Update(got.data(), n);
          phase.Advance(n);
        }
      }
      check.hash = hash.value();
      // Sampled pages byte for byte, anywhere in the file.
      uint64_t x = content.seed() ^ 0x5eed;
      const uint64_t pages = spec.size / page;
      std::vector<uint8_t> one(page);
      std::vector<uint8_t> exp(page);
      for (int i = 0; i < kSamplePages && pages > 0; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const uint64_t off = ((x >> 17) % pages) * page;
        p.Pread(f.fd, one.data(), page, static_cast<loff_t>(off));
        content.Fill(off, exp.data(), page);
        CompareChunk(off, one.data(), exp.data(), page, page, &first_bad, &expected, &found,
                     &bad_pages);
        check.bytes_compared += page;
      }
      if (!first_bad && hash.value() != ExpectedHash(spec)) {
        // The samples missed it: it is in the data ranges (the hash covers
        // nothing else); find the first difference there.
        for (const Extent& e : content.data()) {
          for (uint64_t off = e.offset; off < e.offset + e.length && !first_bad; off += kChunk) {
            const uint64_t n = std::min(kChunk, e.offset + e.length - off);
            p.Pread(f.fd, got.data(), n, static_cast<loff_t>(off));
            content.Fill(off, want.data(), n);
            CompareChunk(off, got.data(), want.data(), n, page, &first_bad, &expected, &found,
                         &bad_pages);
          }
        }
      }
      phase.Advance(spec.size - content.data_bytes());
    }
    if (first_bad) {
      report_.files.push_back(check);
      Divergence d;
      d.boot = boot;
      d.file = spec.name;
      d.session = f.session->name;
      d.token = f.ref->token;
      d.offset = first_bad;
      d.expected = expected;
      d.found = found;
      d.pages_differing = bad_pages;
      std::string hint;
      if (found == hw::kPoisonByte && s_.machine.scrub == mm::FreeMemoryPolicy::kPoison) {
        hint = " (the scrub poison: that page was not preserved)";
      }
      d.what = absl::StrFormat(
          "%s: first divergence at byte 0x%x (page %d): expected 0x%02x, found 0x%02x%s; %d %s "
          "differ%s",
          where, *first_bad, *first_bad / page, expected, found, hint, bad_pages,
          bad_pages == 1 ? "page" : "pages", full ? "" : " among those compared");
      report_.divergence = d;
      return Stop(Outcome::kDataLoss, d.what);
    }
    check.ok = true;
    report_.files.push_back(check);
    br.bytes_verified += check.bytes_compared;
    report_.bytes_verified += check.bytes_compared;
    return true;
  }

  static void CompareChunk(uint64_t off, const uint8_t* got, const uint8_t* want, uint64_t n,
                           uint64_t page, std::optional<uint64_t>* first_bad, int* expected,
                           int* found, uint64_t* bad_pages) {
    if (std::memcmp(got, want, n) == 0) return;
    for (uint64_t po = 0; po < n; po += page) {
      const uint64_t len = std::min(page, n - po);
      if (std::memcmp(got + po, want + po, len) == 0) continue;
      ++*bad_pages;
      if (*first_bad) continue;
      for (uint64_t i = po; i < po + len; ++i) {
        if (got[i] != want[i]) {
          *first_bad = off + i;
          *expected = want[i];
          *found = got[i];
          break;
        }
      }
    }
  }

  bool FinishPhase(int boot, BootReport& br, const std::vector<RetrievedSession>& sessions) {
    if (sessions.empty()) return true;
    Phase phase(*this, boot, "finish", 0);
    for (const RetrievedSession& rs : sessions) {
      if (!rs.spec->finish) {
        br.notes.push_back(
            absl::StrFormat("session \"%s\" retrieved but left unfinished", rs.spec->name));
        continue;
      }
      const int err = luo::FinishSession(*rs.process, rs.fd);
      if (err != 0) {
        return Stop(Outcome::kFailed, absl::StrFormat("boot %d: FINISH session \"%s\": %s", boot,
                                                      rs.spec->name, ErrnoName(err)));
      }
      rs.process->Close(rs.fd);
      ++br.sessions_finished;
    }
    return true;
  }

  bool WritePhase(int boot, const BootSpec& spec) {
    uint64_t total = 0;
    std::vector<std::pair<fs::Process*, const FileSpec*>> todo;
    std::set<std::string> seen;
    for (size_t pi = 0; pi < spec.processes.size(); ++pi) {
      for (const SessionSpec& sess : spec.processes[pi].sessions) {
        if (!sess.preserve) continue;
        for (const FileRef& ref : *sess.preserve) {
          if (held_.count(ref.file) != 0 || !seen.insert(ref.file).second) continue;
          const FileSpec* file = s_.FindFile(ref.file);
          todo.emplace_back(processes_[pi], file);
          const Content content(*file, s_.machine.seed);
          for (const Extent& e : content.written()) total += e.length;
        }
      }
    }
    if (todo.empty()) return true;
    Phase phase(*this, boot, "write", total);
    std::vector<uint8_t> buf(kChunk);
    for (const auto& [p, file] : todo) {
      const bool huge = file->kind == FileKind::kHugetlb;
      unsigned int flags = MFD_CLOEXEC;
      if (huge) {
        flags |= MFD_HUGETLB |
                 (static_cast<unsigned int>(__builtin_ctzll(file->page_size)) << MFD_HUGE_SHIFT);
      }
      const int fd = fs::MemfdCreate(*p, file->name, flags);
      if (fd < 0) {
        return Stop(
            Outcome::kFailed,
            absl::StrFormat("boot %d: process %s: memfd_create(%s%s): %s%s", boot, p->name(),
                            file->name, huge ? ", MFD_HUGETLB" : "", ErrnoName(fd),
                            huge && fd == -ENODEV ? NoHstateHint(*file) : ""));
      }
      if (const int err = p->Ftruncate(fd, static_cast<loff_t>(file->size)); err != 0) {
        return Stop(Outcome::kFailed, absl::StrFormat("boot %d: ftruncate(%s, %d): %s", boot,
                                                      file->name, file->size, ErrnoName(err)));
      }
      const Content content(*file, s_.machine.seed);
      if (huge) {
        if (!WriteThroughMapping(boot, *p, fd, *file, content, phase)) return false;
        held_[file->name] = Held{p, fd};
        continue;
      }
      for (const Extent& e : content.written()) {
        for (uint64_t off = e.offset; off < e.offset + e.length; off += kChunk) {
          const uint64_t n = std::min(kChunk, e.offset + e.length - off);
          content.Fill(off, buf.data(), n);
          const ssize_t w = p->Pwrite(fd, buf.data(), n, static_cast<loff_t>(off));
          if (w != static_cast<ssize_t>(n)) {
            return Stop(Outcome::kFailed,
                        absl::StrFormat("boot %d: write to %s at %d: %s", boot, file->name, off,
                                        w < 0 ? ErrnoName(w) : absl::StrCat("short write ", w)));
          }
          phase.Advance(n);
        }
      }
      held_[file->name] = Held{p, fd};
    }
    return true;
  }

  // hugetlbfs has no write(2): a VMM writes guest RAM through a shared
  // mapping. Faulting base page by base page touches only the huge pages the
  // generator writes (each from the pool, zeroed without host memory), so a
  // file of many GiB with sampled content costs little; preserve allocates
  // the rest.
  bool WriteThroughMapping(int boot, fs::Process& p, int fd, const FileSpec& file,
                           const Content& content, Phase& phase) {
    std::unique_ptr<fs::ShmemMapping> map;
    if (const int err = fs::ShmemMmap(p, fd, file.size, /*writable=*/true, &map); err != 0) {
      return Stop(Outcome::kFailed, absl::StrFormat("boot %d: process %s: mmap(%s): %s", boot,
                                                    p.name(), file.name, ErrnoName(err)));
    }
    const uint64_t page = s_.machine.page_size;
    uint64_t unreported = 0;
    for (const Extent& e : content.written()) {
      for (uint64_t off = e.offset; off < e.offset + e.length;) {
        const uint64_t in_page = off % page;
        const uint64_t n = std::min(page - in_page, e.offset + e.length - off);
        void* addr = nullptr;
        if (const int err = map->Fault(off / page, /*write=*/true, &addr); err != 0) {
          std::string hint;
          if (err == -ENOSPC) {
            hint = absl::StrFormat(
                " (the %s hugetlb pool is empty; see hugepages= in the "
                "command line)",
                FormatBytes(file.page_size));
          }
          return Stop(Outcome::kFailed,
                      absl::StrFormat("boot %d: process %s: write fault on %s at %d: %s%s", boot,
                                      p.name(), file.name, off, ErrnoName(err), hint));
        }
        content.Fill(off, static_cast<uint8_t*>(addr) + in_page, n);
        off += n;
        unreported += n;
        if (unreported >= kChunk) {
          phase.Advance(unreported);
          unreported = 0;
        }
      }
    }
    phase.Advance(unreported);
    return true;
  }

  // Why MFD_HUGETLB or RETRIEVE_FD of a hugetlb file failed with -ENODEV.
  std::string NoHstateHint(const FileSpec& file) {
    return absl::StrFormat(" (this kernel has no %s hstate: its command line needs hugepagesz=%s)",
                           FormatBytes(file.page_size), CmdlineSize(file.page_size));
  }

  bool PreservePhase(int boot, const BootSpec& spec, BootReport& br) {
    uint64_t total = 0;
    bool any = false;
    for (const ProcessSpec& p : spec.processes) {
      for (const SessionSpec& sess : p.sessions) {
        if (!sess.preserve) continue;
        any = true;
        for (const FileRef& ref : *sess.preserve) {
          if (!ref.omit) total += s_.FindFile(ref.file)->size;
        }
      }
    }
    if (!any) return true;
    Phase phase(*this, boot, "preserve", total);
    for (size_t pi = 0; pi < spec.processes.size(); ++pi) {
      fs::Process& p = *processes_[pi];
      int dev = -1;
      for (const SessionSpec& sess : spec.processes[pi].sessions) {
        if (!sess.preserve) continue;
        if (dev < 0) {
          dev = OpenDevice(boot, p);
          if (dev < 0) return false;
        }
        const int sfd = luo::CreateSession(p, dev, sess.name);
        if (sfd < 0) {
          return Stop(Outcome::kFailed,
                      absl::StrFormat("boot %d: process %s: CREATE_SESSION \"%s\": %s", boot,
                                      p.name(), sess.name, ErrnoName(sfd)));
        }
        for (const FileRef& ref : *sess.preserve) {
          if (ref.omit) {
            br.notes.push_back(
                absl::StrFormat("file %s (session \"%s\", token %s) deliberately not preserved",
                                ref.file, sess.name, Token(ref.token)));
            continue;
          }
          const Held& h = held_.at(ref.file);
          const int err = luo::PreserveFd(p, sfd, h.fd, ref.token);
          if (err != 0) {
            const FileSpec& file = *s_.FindFile(ref.file);
            std::string hint;
            if (err == -ENOENT && file.kind == FileKind::kHugetlb) {
              hint = absl::StrFormat(
                  " (no LUO file handler accepted the hugetlb file: %s)",
                  kernel().HasModule(kHugetlbModule)
                      ? "the hugetlb handler is built in, but did not take it"
                      : absl::StrCat("this kernel is built without the hugetlb handler (",
                                     abi::kHugemfdLuoCompatible, "); add hugetlb to its handlers"));
            } else if (err == -ENOENT) {
              hint =
                  " (no LUO file handler accepted the file: is the memfd handler built into "
                  "this kernel?)";
            } else if (err == -ENOSPC && file.kind == FileKind::kHugetlb) {
              hint = absl::StrFormat(
                  " (the %s hugetlb pool ran out: preserving a hugetlb file allocates every "
                  "huge page it does not have yet)",
                  FormatBytes(file.page_size));
            }
            return Stop(Outcome::kFailed,
                        absl::StrFormat("boot %d: process %s: PRESERVE_FD of %s in session \"%s\" "
                                        "(token %s): %s%s",
                                        boot, p.name(), ref.file, sess.name, Token(ref.token),
                                        ErrnoName(err), hint));
          }
          phase.Advance(s_.FindFile(ref.file)->size);
        }
      }
      if (dev >= 0) p.Close(dev);
    }
    return true;
  }

  void CheckLeaks(int boot, BootReport& br) {
    Kernel& k = kernel();
    if (!k.kho().is_kho_boot()) return;
    luo::Luo& luo = k.luo();
    if (luo.enabled() && !luo.deserialized()) {
      // Nobody asked LUO for the incoming sessions yet: open the device once
      // (as a live update agent would) so it reads them.
      fs::Process& agent = k.vfs().CreateProcess("khosim-leak-check");
      const int dev = luo::OpenLiveupdate(agent);
      if (dev >= 0) agent.Close(dev);
      if (dev < 0 && luo.deserialize_error() != 0) {
        // Not a leak: LUO refused the incoming sessions, so nobody could
        // have claimed them.
        Stop(Outcome::kFailed,
             absl::StrFormat("boot %d: the leak check's open(/dev/liveupdate): %s%s", boot,
                             ErrnoName(dev), OpenFailureHint()));
        return;
      }
    }
    if (luo.enabled() && !luo.IncomingSessions().empty()) {
      br.notes.push_back(absl::StrFormat(
          "leak check skipped: %d incoming session(s) not finished hold preserved memory",
          luo.IncomingSessions().size()));
      return;
    }
    // KHO keeps the previous root FDT for kho_retrieve_subtree all boot.
    unsigned order = 0;
    const uint64_t fdt = k.kho().incoming_handover().fdt_addr;
    const uint64_t held = k.kho().IsPreservedHead(PhysAddr(fdt), &order) ? 1 : 0;
    const uint64_t unclaimed = k.kho().UnrestoredBlocks();
    br.leaked_blocks = unclaimed > held ? unclaimed - held : 0;
    if (*br.leaked_blocks != 0) {
      Stop(Outcome::kFailed,
           absl::StrFormat(
               "boot %d: %d preserved block(s) of boot %d were never claimed after every "
               "session was finished (leak)",
               boot, *br.leaked_blocks, boot - 1));
    }
  }

  void RecordOutgoing(BootReport& br) {
    Kernel& k = kernel();
    const BootSpec& spec = s_.boots[br.boot - 1];
    if (k.luo().enabled()) {
      // Scenario file names by (session, token), to name what LUO lists.
      std::map<std::pair<std::string, uint64_t>, const FileSpec*> named;
      for (const ProcessSpec& p : spec.processes) {
        for (const SessionSpec& sess : p.sessions) {
          if (!sess.preserve) continue;
          for (const FileRef& ref : *sess.preserve) {
            named[{sess.name, ref.token}] = s_.FindFile(ref.file);
          }
        }
      }
      for (const luo::Luo::SessionInfo& s : k.luo().OutgoingSessions()) {
        ++br.sessions_preserved;
        br.files_preserved += s.files.size();
        for (const luo::Luo::FileInfo& fi : s.files) {
          PreservedFile pf{.session = s.name, .token = fi.token, .handler = fi.compatible};
          if (auto it = named.find({s.name, fi.token}); it != named.end()) {
            pf.file = it->second->name;
            pf.size = it->second->size;
          }
          br.preserved_files.push_back(std::move(pf));
        }
      }
    }
    for (const ProcessSpec& p : spec.processes) {
      for (const SessionSpec& sess : p.sessions) {
        if (!sess.preserve) continue;
        for (const FileRef& ref : *sess.preserve) {
          if (!ref.omit) br.file_bytes_preserved += s_.FindFile(ref.file)->size;
        }
      }
    }
    if (const kho::PreservationTracker* tracker = k.kho().tracker();
        tracker != nullptr && tracker->ready()) {
      tracker->ForEachBlock(
          [&](PhysAddr, unsigned order) {
            ++br.kho_blocks_preserved;
            br.kho_pages_preserved += uint64_t{1} << order;
            br.kho_bytes_preserved += s_.machine.page_size << order;
            return 0;
          },
          nullptr);
      br.tracker_node_pages = tracker->Stats().metadata_pages;
    }
  }

  void RecordPools(BootReport& br) {
    mm::Hugetlb& hugetlb = kernel().mm().hugetlb();
    for (int h = 0; h < mm::Hugetlb::kNumHstates; ++h) {
      const mm::HstateInfo info = hugetlb.Info(h);
      if (info.requested == 0 && info.preserved == 0 && info.nr_huge_pages == 0) continue;
      br.hugetlb_pools.push_back(HugetlbPool{.name = info.name,
                                             .page_size = info.size,
                                             .requested = info.requested,
                                             .preserved = info.preserved,
                                             .nr_huge_pages = info.nr_huge_pages,
                                             .free_huge_pages = info.free_huge_pages});
    }
  }

  void Finalize() {
    if (m_->has_kernel() && !s_.program) {
      // The last kernel's log; a kernel that panicked while booting has no
      // report yet.
      Kernel& k = kernel();
      const int gen = static_cast<int>(k.generation());
      if (gen > static_cast<int>(report_.boots.size()) &&
          gen <= static_cast<int>(s_.boots.size())) {
        BootReport b;
        b.boot = gen;
        b.generation = k.generation();
        b.cmdline = k.ctx().cmdline().text();
        b.kho_profile = s_.boots[gen - 1].kho_profile;
        b.luo_profile = std::string(luo::LuoProfileName(s_.boots[gen - 1].luo_profile));
        b.handlers = BuiltHandlers(s_.HandlersOf(gen - 1));
        b.kho_boot = gen > 1;
        b.notes.push_back(absl::StrCat("did not reach userspace: ", BootPhaseName(k.phase())));
        report_.boots.push_back(std::move(b));
      }
      if (gen == static_cast<int>(report_.boots.size()))
        report_.boots.back().log = k.ctx().LogLines();
    }
    std::map<std::pair<int, std::string>, size_t> index;
    for (const TraceEvent& e : m_->trace().Events("warn")) {
      const auto key = std::make_pair(static_cast<int>(e.generation), e.name);
      auto it = index.find(key);
      if (it == index.end()) {
        index.emplace(key, report_.warns.size());
        report_.warns.push_back(WarnRecord{key.first, e.name, 1, ""});
        for (const auto& [k, v] : e.args) {
          if (k == "message") report_.warns.back().message = v;
        }
      } else {
        ++report_.warns[it->second].count;
      }
    }
    for (BootReport& b : report_.boots) {
      for (const WarnRecord& w : report_.warns) {
        if (w.boot == b.boot) b.warns += w.count;
      }
    }
    report_.faults_injected = m_->faults().InjectedPoints();
    report_.host_resident_bytes = m_->memory().ResidentBytes();
    report_.trace_events = m_->trace().size();
  }

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

Runner::Runner(const Scenario& scenario, RunOptions options)
    : scenario_(scenario), options_(options) {}
Runner::~Runner() = default;

RunReport Runner::Run() { return Impl(*this, scenario_).Run(); }

RunReport RunScenario(const Scenario& scenario, ProgressSink* progress) {
  Runner runner(scenario, RunOptions{.progress = progress});
  return runner.Run();
}

}  // namespace khosim::scenario

// Runner (see the header for the order of a boot's phases).
//
// The runner plays userspace: it creates the scenario's processes in each
// boot, makes the LUO ioctls through khosim/luo/client.h and reads and
// writes files through the process syscalls, exactly as a VMM would. What
// it remembers across a kexec is only what a VMM's operator would know (the
// scenario and each file's generator); every byte it verifies is read back
// from the simulated kernel of the new boot.
#include "khosim/scenario/runner.h"

#include "absl/strings/str_join.h"
#include "runner_impl.h"

namespace khosim::scenario {
namespace {

MachineConfig ConfigFor(const Scenario& s) {
  MachineConfig config;
  config.ram = s.machine.ram;
  config.nodes = s.machine.nodes;
  config.page_size = s.machine.page_size;
  config.seed = s.machine.seed;
  config.scrub = s.machine.scrub;
  config.pci = s.machine.pci;
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

RunReport Runner::Impl::Run() {
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

bool Runner::Impl::Stop(Outcome outcome, std::string message) {
  if (!failed()) {
    report_.outcome = outcome;
    report_.message = std::move(message);
  }
  return false;
}

void Runner::Impl::EndProgress() {
  options_.progress->End();
  progress_open_ = false;
}

// A run stops at its first failure; the kernel must still be consistent
// there, an injected failure above all (its error paths are what it
// exercises). Checks what a boot's end checks, and records the result.
void Runner::Impl::CheckAfterFailure(int boot, BootReport& br) {
  if (!m_->has_kernel() || kernel().phase() != BootPhase::kRunning) return;
  m_->Activate();
  Kernel& k = kernel();
  std::vector<std::string> broken;
  if (absl::Status v = k.mm().memblock().Validate(); !v.ok()) {
    broken.push_back(absl::StrCat("memblock: ", v.message()));
  }
  if (absl::Status v = k.mm().pages().Validate(); !v.ok()) {
    broken.push_back(absl::StrCat("page allocator: ", v.message()));
  }
  if (k.luo().enabled()) {
    if (absl::Status v = k.luo().Validate(); !v.ok()) {
      broken.push_back(absl::StrCat("LUO: ", v.message()));
    }
  }
  CheckLeaks(boot, br);
  if (br.leaked_blocks.has_value() && *br.leaked_blocks != 0) {
    broken.push_back(absl::StrFormat("%d preserved block(s) leaked", *br.leaked_blocks));
  }
  if (broken.empty()) {
    br.notes.push_back("after the failure: memblock, the page allocator and LUO validate");
    return;
  }
  for (const std::string& b : broken) br.notes.push_back(absl::StrCat("after the failure: ", b));
  absl::StrAppend(&report_.message, "; after it, ", absl::StrJoin(broken, "; "));
}

bool Runner::Impl::StopRequested(int boot) const {
  return options_.stop.has_value() && options_.stop->boot == boot;
}

void Runner::Impl::Arm(FaultArm::Kind kind, int index) {
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

void Runner::Impl::RunProgram() {
  const ProgramSpec& p = *s_.program;
  ProgramResult result;
  {
    Arm(FaultArm::kStart, 0);
    Phase phase(*this, 1, absl::StrCat("program ", p.name), 0);
    // Each kexec boots the next boot's command line (its KHO profile).
    std::vector<std::string> cmdlines;
    for (size_t i = 1; i < s_.boots.size(); ++i) {
      cmdlines.push_back(s_.boots[i].EffectiveCmdline());
    }
    if (p.name == "kho") {
      result =
          RunKhoProgram(*m_, s_.kexecs(), p.preserve_per_boot,
                        {.skip_preserve_folio = p.skip_preserve_folio, .kexec_cmdlines = cmdlines});
    } else {
      result = RunKexecScrubProgram(*m_, s_.kexecs(), cmdlines);
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

void Runner::Impl::RunBoots() {
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
    if (failed()) {
      CheckAfterFailure(boot, report_.boots.back());
      return;
    }
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
}

void Runner::Impl::FreezeForInspect(int boot) {
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

void Runner::Impl::RunUserspace(int boot, const BootSpec& spec, BootReport& br) {
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
  if (!BindDevices(boot, spec)) return;
  if (!RetrievePhase(boot, spec, br, &sessions, &files)) return;
  if (!ReclaimPhase(boot, files)) return;
  if (!VerifyPhase(boot, br, files)) return;
  if (!FinishPhase(boot, br, sessions)) return;
  if (!WritePhase(boot, spec)) return;
  if (!PreservePhase(boot, spec, br)) return;
  RecordDevices(br);
  CheckLeaks(boot, br);
}

void Runner::Impl::Finalize() {
  if (m_->has_kernel() && !s_.program) {
    // The last kernel's log; a kernel that panicked while booting has no
    // report yet.
    Kernel& k = kernel();
    const int gen = static_cast<int>(k.generation());
    if (gen > static_cast<int>(report_.boots.size()) && gen <= static_cast<int>(s_.boots.size())) {
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

// The open file behind a scenario file name in this boot, or nullptr.
file* Runner::Impl::HeldFile(absl::string_view name) const {
  auto it = held_.find(std::string(name));
  return it == held_.end() ? nullptr : it->second.process->PeekFile(it->second.fd);
}

Runner::Runner(const Scenario& scenario, RunOptions options)
    : scenario_(scenario), options_(options) {}
Runner::~Runner() = default;

RunReport Runner::Run() { return Impl(*this, scenario_).Run(); }

RunReport RunScenario(const Scenario& scenario, ProgressSink* progress) {
  Runner runner(scenario, RunOptions{.progress = progress});
  return runner.Run();
}

}  // namespace khosim::scenario

// khosim: simulate live updates of a Linux host (KHO + LUO) and report
// whether every preserved byte survived and what it cost. Subcommands:
//
//   khosim run [SCENARIO] [--json] [--trace FILE] [--quiet] [--seed N]
//              [--handlers LIST] [--dmesg]
//   khosim inspect [SCENARIO] [--at boot:N|kexec:N|end] [--image FILE]
//   khosim scenarios [NAME]
//   khosim help [COMMAND]
//
// The work is in khosim_scenario (khosim/scenario/*.h); this file parses
// the command line, prints, and maps outcomes to exit codes.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "khosim/scenario/inspect.h"
#include "khosim/scenario/report.h"
#include "khosim/scenario/runner.h"
#include "khosim/scenario/scenario.h"
#include "progress.h"

namespace khosim::cli {
namespace {

using scenario::kExitBadScenario;

std::string Builtins() { return absl::StrJoin(scenario::BuiltinScenarioNames(), ", "); }

std::string MainHelp() {
  return absl::StrCat(
      "khosim: simulate live updates of a Linux host (Kexec HandOver + Live Update\n"
      "Orchestrator) and check that every preserved byte survives.\n"
      "\n"
      "Usage:\n"
      "  khosim run [SCENARIO] [options]      run a scenario and report (default: \"default\")\n"
      "  khosim inspect [SCENARIO] [options]  run to a point, print the handover state\n"
      "  khosim scenarios [NAME]              list the built-in scenarios, or print one as YAML\n"
      "  khosim help [COMMAND]                this text, or one command's options\n"
      "\n"
      "SCENARIO is a built-in name (",
      Builtins(),
      ")\nor a YAML file (a path with a '/' or a .yaml suffix); docs/scenarios.md describes\n"
      "the format. Start with:\n"
      "  khosim run                  the default: 5 VMs' guest RAM in memfds and hugetlb\n"
      "                              memfds, preserved in LUO sessions across two kexecs,\n"
      "                              retrieved and verified\n"
      "  khosim scenarios default    its YAML, to copy and edit\n"
      "\n"
      "Exit status: 0 everything verified; 1 data loss (something preserved did not\n"
      "survive intact); 2 bad usage or scenario file (nothing was run); 3 a kernel\n"
      "panicked; 4 another failure (an operation failed, a kexec was cancelled, a leak).\n");
}

// "memfd (memfd-v2), ..., hugetlb (hugemfd-v1)" from the module table,
// wrapped to the help text's 80 columns after a |first_line| prefix.
std::string ModuleList(absl::string_view first_line, absl::string_view indent) {
  std::string out(first_line);
  size_t column = out.size();
  const std::vector<KernelModule>& modules = ModuleRegistry::Builtin().modules();
  for (size_t i = 0; i < modules.size(); ++i) {
    std::string item = modules[i].name;
    if (!modules[i].compatibles.empty())
      absl::StrAppend(&item, " (", modules[i].compatibles[0], ")");
    if (i + 1 < modules.size()) item += ",";
    if (i > 0) {
      if (column + 1 + item.size() > 80) {
        absl::StrAppend(&out, "\n", indent);
        column = indent.size();
      } else {
        out += " ";
        ++column;
      }
    }
    out += item;
    column += item.size();
  }
  return out + "\n";
}

std::string RunHelp() {
  return absl::StrCat(
      "Usage: khosim run [SCENARIO] [options]\n"
      "\n"
      "Runs SCENARIO (default: \"default\") on a fresh simulated machine: each boot's\n"
      "processes retrieve, verify and finish what the previous kernel preserved, then\n"
      "create files and preserve them for the next kexec. Prints progress on stderr\n"
      "and a summary on stdout: per boot what was preserved, retrieved, finished and\n"
      "leaked, the files verified, the cost of each phase, every WARN, and the first\n"
      "divergence if verification failed.\n"
      "\n"
      "Options:\n"
      "  --json          print the summary as JSON (schema: docs/schemas/run-report.schema.json)\n"
      "  --trace FILE    write the machine's event trace to FILE as JSON\n"
      "  --quiet, -q     no progress lines\n"
      "  --seed N        override the scenario's machine seed\n"
      "  --handlers LIST override machine.handlers, the LUO file handlers built into\n"
      "                  every kernel whose boot does not name its own: a comma-separated\n",
      ModuleList("                  list of ", "                  "),
      "  --dmesg         print each kernel's log after the summary\n"
      "\n"
      "Built-in scenarios: ",
      Builtins(), "\n");
}

std::string InspectHelp() {
  return "Usage: khosim inspect [SCENARIO] [options]\n"
         "\n"
         "Runs SCENARIO (default: \"default\") up to a point and prints the handover state\n"
         "as debugfs would show it: the handover record, boot memory, the root FDTs as\n"
         "trees, the preservation tracker, LUO sessions, files and FLBs, and the LUO\n"
         "block chains once LUO has serialized.\n"
         "\n"
         "Options:\n"
         "  --at POINT      where to stop:\n"
         "                    end       after the whole run (the default)\n"
         "                    boot:N    after boot N's processes ran\n"
         "                    kexec:N   boot N frozen for kexec N: LUO serialized and the\n"
         "                              next image loaded, the kexec not yet done\n"
         "  --image FILE    also write a machine image at a kexec point (default point:\n"
         "                  the last kexec): a sparse file holding the handover record\n"
         "                  and every page the next kernel would read, at offsets equal\n"
         "                  to physical addresses (format: khosim/scenario/inspect.h)\n";
}

int Usage(const std::string& message, const std::string& help) {
  absl::FPrintF(stderr, "khosim: %s\n\n%s", message, help);
  return kExitBadScenario;
}

// --name=value or --name value; returns false at the end of the options.
struct Args {
  std::vector<std::string> words;
  size_t next = 0;
  bool Done() const { return next >= words.size(); }
};

bool TakeValue(Args& args, const std::string& word, const std::string& name, std::string* value,
               std::string* error) {
  if (word == name) {
    if (args.Done()) {
      *error = absl::StrCat(name, " needs a value");
      return true;
    }
    *value = args.words[args.next++];
    return true;
  }
  if (absl::StartsWith(word, name + "=")) {
    *value = word.substr(name.size() + 1);
    return true;
  }
  return false;
}

absl::StatusOr<scenario::Scenario> Load(const std::string& name) {
  return scenario::ResolveScenario(name.empty() ? "default" : name);
}

int ReportLoadError(const absl::Status& status) {
  absl::FPrintF(stderr, "khosim: %s\n", status.message());
  if (absl::IsNotFound(status)) {
    absl::FPrintF(stderr, "khosim: `khosim scenarios` lists the built-ins\n");
  } else {
    absl::FPrintF(stderr, "khosim: nothing was run (docs/scenarios.md describes the format)\n");
  }
  return kExitBadScenario;
}

int Run(Args& args) {
  bool json = false;
  bool quiet = false;
  bool dmesg = false;
  std::string trace_path;
  std::string name;
  std::optional<uint64_t> seed;
  std::optional<KernelBuild> handlers;
  while (!args.Done()) {
    const std::string word = args.words[args.next++];
    std::string value;
    std::string error;
    if (word == "--help" || word == "-h") {
      absl::PrintF("%s", RunHelp().c_str());
      return 0;
    } else if (word == "--json") {
      json = true;
    } else if (word == "--quiet" || word == "-q") {
      quiet = true;
    } else if (word == "--dmesg") {
      dmesg = true;
    } else if (TakeValue(args, word, "--trace", &trace_path, &error)) {
      if (!error.empty()) return Usage(error, RunHelp());
    } else if (TakeValue(args, word, "--seed", &value, &error)) {
      uint64_t v = 0;
      if (!error.empty() || !absl::SimpleAtoi(value, &v)) {
        return Usage("--seed needs a non-negative integer", RunHelp());
      }
      seed = v;
    } else if (TakeValue(args, word, "--handlers", &value, &error)) {
      if (!error.empty()) return Usage(error, RunHelp());
      absl::StatusOr<KernelBuild> parsed = ModuleRegistry::Builtin().ParseBuild(value);
      if (!parsed.ok()) {
        return Usage(absl::StrCat("--handlers: ", parsed.status().message()), RunHelp());
      }
      handlers = *parsed;
    } else if (absl::StartsWith(word, "-")) {
      return Usage(absl::StrCat("unknown option ", word), RunHelp());
    } else if (name.empty()) {
      name = word;
    } else {
      return Usage(absl::StrCat("one scenario at a time (got ", name, " and ", word, ")"),
                   RunHelp());
    }
  }
  absl::StatusOr<scenario::Scenario> s = Load(name);
  if (!s.ok()) return ReportLoadError(s.status());
  if (seed) s->machine.seed = *seed;
  if (handlers) s->machine.handlers = *handlers;
  if (!quiet) {
    absl::FPrintF(stderr,
                  "khosim: running %s (%s): %s RAM, %d node(s), %s pages, seed %d, handlers %s, "
                  "%d kexec(s)\n",
                  s->name, s->source, scenario::FormatBytes(s->machine.ram), s->machine.nodes,
                  scenario::FormatBytes(s->machine.page_size), s->machine.seed,
                  ModuleRegistry::Builtin().Format(s->machine.handlers), s->kexecs());
  }
  // Opened before the run, so that an unwritable path costs nothing and
  // is a usage error (exit 2) like any other bad option.
  std::ofstream trace_out;
  if (!trace_path.empty()) {
    trace_out.open(trace_path);
    if (!trace_out) {
      absl::FPrintF(stderr, "khosim: --trace: cannot open %s for writing: %s\n", trace_path,
                    std::strerror(errno));
      return 2;
    }
  }
  TerminalProgress progress(stderr);
  scenario::Runner runner(*s, scenario::RunOptions{.progress = quiet ? nullptr : &progress});
  const scenario::RunReport report = runner.Run();
  bool trace_failed = false;
  if (trace_out.is_open() && runner.machine() != nullptr) {
    trace_out << runner.machine()->trace().ToJson() << "\n";
    trace_out.close();
    if (!trace_out) {
      absl::FPrintF(stderr, "khosim: cannot write the trace to %s\n", trace_path);
      trace_failed = true;
    }
  }
  if (json) {
    absl::PrintF("%s\n", scenario::ReportToJson(report).c_str());
  } else {
    absl::PrintF("%s", scenario::FormatTextReport(report).c_str());
  }
  if (dmesg) {
    for (const scenario::BootReport& b : report.boots) {
      absl::FPrintF(json ? stderr : stdout, "\ndmesg of boot %d\n", b.boot);
      for (const std::string& line : b.log) absl::FPrintF(json ? stderr : stdout, "  | %s\n", line);
    }
  }
  if (report.outcome != scenario::Outcome::kPassed) {
    absl::FPrintF(stderr, "khosim: %s: %s\n", scenario::OutcomeName(report.outcome),
                  report.message);
  }
  // A trace that could not be written fails a run that passed (exit 2);
  // a run that failed keeps its own status.
  if (trace_failed && report.outcome == scenario::Outcome::kPassed) return 2;
  return scenario::ExitCode(report.outcome);
}

int Inspect(Args& args) {
  std::string name;
  std::string at = "end";
  std::string image;
  bool at_given = false;
  while (!args.Done()) {
    const std::string word = args.words[args.next++];
    std::string error;
    if (word == "--help" || word == "-h") {
      absl::PrintF("%s", InspectHelp().c_str());
      return 0;
    } else if (TakeValue(args, word, "--at", &at, &error)) {
      if (!error.empty()) return Usage(error, InspectHelp());
      at_given = true;
    } else if (TakeValue(args, word, "--image", &image, &error)) {
      if (!error.empty()) return Usage(error, InspectHelp());
    } else if (absl::StartsWith(word, "-")) {
      return Usage(absl::StrCat("unknown option ", word), InspectHelp());
    } else if (name.empty()) {
      name = word;
    } else {
      return Usage(absl::StrCat("one scenario at a time (got ", name, " and ", word, ")"),
                   InspectHelp());
    }
  }
  absl::StatusOr<scenario::Scenario> s = Load(name);
  if (!s.ok()) return ReportLoadError(s.status());
  if (s->program) {
    absl::FPrintF(stderr,
                  "khosim: inspect runs scenarios with processes; %s is a program scenario\n",
                  s->name);
    return kExitBadScenario;
  }
  const int boots = static_cast<int>(s->boots.size());
  if (!image.empty() && !at_given) {
    if (boots < 2)
      return Usage("--image needs --at kexec:N (this scenario has no kexec)", InspectHelp());
    at = absl::StrCat("kexec:", boots - 1);
  }
  std::optional<scenario::StopPoint> stop;
  if (at != "end") {
    const std::vector<std::string> parts = absl::StrSplit(at, ':');
    int n = 0;
    if (parts.size() != 2 || (parts[0] != "boot" && parts[0] != "kexec") ||
        !absl::SimpleAtoi(parts[1], &n) || n < 1 || n > boots) {
      return Usage(absl::StrFormat("--at %s: expected end, boot:N or kexec:N with N from 1 to %d",
                                   at, boots),
                   InspectHelp());
    }
    stop = scenario::StopPoint{n, parts[0] == "kexec"};
  }
  if (!image.empty() && (!stop || !stop->at_kexec)) {
    return Usage("--image needs a kexec point (--at kexec:N)", InspectHelp());
  }
  scenario::Runner runner(*s, scenario::RunOptions{.stop = stop});
  const scenario::RunReport report = runner.Run();
  if (report.outcome != scenario::Outcome::kPassed) {
    absl::FPrintF(stderr, "khosim: the run stopped early: %s: %s\n",
                  scenario::OutcomeName(report.outcome), report.message);
  }
  Machine* m = runner.machine();
  if (m == nullptr || !m->has_kernel()) {
    absl::FPrintF(stderr, "khosim: no kernel to inspect\n");
    return scenario::ExitCode(report.outcome);
  }
  const abi::KhoData handover =
      stop && stop->at_kexec ? runner.stop_handover() : m->last_handover();
  absl::PrintF("%s (%s), stopped at %s\n\n%s", s->name, s->source, at,
               scenario::InspectText(*m, handover).c_str());
  if (!image.empty()) {
    const std::string next_cmdline = stop->boot < boots ? s->boots[stop->boot].EffectiveCmdline()
                                                        : s->boots.back().EffectiveCmdline();
    absl::StatusOr<scenario::ImageStats> stats =
        scenario::WriteMachineImage(*m, handover, next_cmdline, image);
    if (!stats.ok()) {
      absl::FPrintF(stderr, "khosim: %s\n", stats.status().message());
      return scenario::kExitFailed;
    }
    absl::PrintF("\nmachine image %s: %d range(s), %s of preserved state, file size %s (sparse)\n",
                 image, stats->ranges, scenario::FormatBytes(stats->bytes),
                 scenario::FormatBytes(stats->file_size));
  }
  return scenario::ExitCode(report.outcome);
}

int Scenarios(Args& args) {
  if (args.Done()) {
    absl::PrintF("Built-in scenarios (khosim run NAME; khosim scenarios NAME prints the YAML):\n");
    for (const std::string& name : scenario::BuiltinScenarioNames()) {
      absl::StatusOr<scenario::Scenario> s = scenario::ResolveScenario(name);
      absl::PrintF("  %-12s %s\n", name.c_str(), s.ok() ? s->description.c_str() : "?");
    }
    return 0;
  }
  const std::string name = args.words[args.next++];
  if (name == "--help" || name == "-h") {
    absl::PrintF("Usage: khosim scenarios [NAME]\n");
    return 0;
  }
  std::optional<std::string> text = scenario::BuiltinScenarioText(name);
  if (!text) {
    absl::FPrintF(stderr, "khosim: no built-in scenario \"%s\" (built-ins: %s)\n", name,
                  Builtins());
    return kExitBadScenario;
  }
  absl::PrintF("%s", text->c_str());
  return 0;
}

int Main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) args.words.emplace_back(argv[i]);
  if (args.Done()) {
    absl::PrintF("%s", MainHelp().c_str());
    return 0;
  }
  const std::string command = args.words[args.next++];
  if (command == "run") return Run(args);
  if (command == "inspect") return Inspect(args);
  if (command == "scenarios") return Scenarios(args);
  if (command == "help" || command == "--help" || command == "-h") {
    const std::string topic = args.Done() ? "" : args.words[args.next];
    if (topic == "run") {
      absl::PrintF("%s", RunHelp().c_str());
    } else if (topic == "inspect") {
      absl::PrintF("%s", InspectHelp().c_str());
    } else {
      absl::PrintF("%s", MainHelp().c_str());
    }
    return 0;
  }
  return Usage(absl::StrCat("unknown command \"", command, "\""), MainHelp());
}

}  // namespace
}  // namespace khosim::cli

int main(int argc, char** argv) { return khosim::cli::Main(argc, argv); }

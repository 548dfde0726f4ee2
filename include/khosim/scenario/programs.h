// Programs: the procedural, KHO-only scenarios (`program:` in a scenario
// file), which tests reuse too. Each drives a booted-or-not Machine and
// reports what it saw as text lines; the result says whether every check
// held.
#ifndef KHOSIM_SCENARIO_PROGRAMS_H_
#define KHOSIM_SCENARIO_PROGRAMS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "khosim/machine/machine.h"

namespace khosim::scenario {

struct ProgramResult {
  bool passed = true;
  std::vector<std::string> lines;
  void Check(bool ok, std::string what);
};

// "kexec-scrub": with nothing preserved, nothing written in one boot is
// readable in the next. Needs no KHO.
// |kexec_cmdlines|[i] (when given) is the command line of the kernel kexec
// i + 1 boots; otherwise MachineConfig::cmdline.
ProgramResult RunKexecScrubProgram(Machine& m, int kexecs,
                                   const std::vector<std::string>& kexec_cmdlines = {});

// "kho": each boot preserves a data set of random-order folios, a vmalloc
// index of them and a checksummed record in a KHO subtree, plus one folio
// it does not preserve; after each kexec the previous set must restore
// byte-exact, the unpreserved folio must be gone, and nothing may be left
// unclaimed. Needs kho=on on the machine's command line.
struct KhoProgramOptions {
  // Index the first folio of each boot's set without preserving it: a
  // deliberate data loss that the next kernel's restore must report.
  bool skip_preserve_folio = false;
  // The command line of the kernel kexec i + 1 boots (e.g. another
  // khosim.kho_profile=); unset or missing: MachineConfig::cmdline.
  std::vector<std::string> kexec_cmdlines;
};
ProgramResult RunKhoProgram(Machine& m, int kexecs, uint64_t bytes_per_boot,
                            KhoProgramOptions options = {});

std::vector<std::string> ProgramNames();

}  // namespace khosim::scenario

#endif  // KHOSIM_SCENARIO_PROGRAMS_H_

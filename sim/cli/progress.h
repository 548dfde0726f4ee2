// Progress of a run on stderr: on a terminal a bar redrawn in place for
// countable phases, and one line per phase when it ends; elsewhere (logs,
// CI) only the per-phase lines.
#ifndef KHOSIM_SIM_CLI_PROGRESS_H_
#define KHOSIM_SIM_CLI_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "khosim/scenario/runner.h"

namespace khosim::cli {

class TerminalProgress : public scenario::ProgressSink {
 public:
  explicit TerminalProgress(std::FILE* out);
  void Begin(absl::string_view phase, uint64_t total) override;
  void Advance(uint64_t done) override;
  void End() override;

 private:
  void Draw();

  std::FILE* out_;
  bool tty_;
  std::string phase_;
  uint64_t total_ = 0;
  uint64_t done_ = 0;
  int drawn_percent_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace khosim::cli

#endif  // KHOSIM_SIM_CLI_PROGRESS_H_

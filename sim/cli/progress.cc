// TerminalProgress (see the header).
#include "progress.h"

#include <unistd.h>

#include "absl/strings/str_format.h"
#include "khosim/scenario/scenario.h"

namespace khosim::cli {
namespace {
constexpr int kBarWidth = 30;
}  // namespace

TerminalProgress::TerminalProgress(std::FILE* out) : out_(out), tty_(isatty(fileno(out)) != 0) {}

void TerminalProgress::Begin(absl::string_view phase, uint64_t total) {
  phase_ = std::string(phase);
  total_ = total;
  done_ = 0;
  drawn_percent_ = -1;
  start_ = std::chrono::steady_clock::now();
  if (tty_) Draw();
}

void TerminalProgress::Advance(uint64_t done) {
  done_ = done;
  if (tty_) Draw();
}

void TerminalProgress::Draw() {
  if (total_ == 0) {
    if (drawn_percent_ < 0) absl::FPrintF(out_, "\r\033[K  %-20s ...", phase_);
    drawn_percent_ = 0;
    std::fflush(out_);
    return;
  }
  const int percent = static_cast<int>(done_ * 100 / total_);
  if (percent == drawn_percent_) return;
  drawn_percent_ = percent;
  const int filled = percent * kBarWidth / 100;
  absl::FPrintF(out_, "\r\033[K  %-20s [%s%s] %3d%%  %s / %s", phase_, std::string(filled, '#'),
                std::string(kBarWidth - filled, '.'), percent, scenario::FormatBytes(done_),
                scenario::FormatBytes(total_));
  std::fflush(out_);
}

void TerminalProgress::End() {
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  const std::string amount =
      done_ > 0 ? absl::StrFormat("%s in ", scenario::FormatBytes(done_)) : std::string();
  absl::FPrintF(out_, "%s  %-20s %s%.0f ms\n", tty_ ? "\r\033[K" : "", phase_, amount, ms);
  std::fflush(out_);
}

}  // namespace khosim::cli

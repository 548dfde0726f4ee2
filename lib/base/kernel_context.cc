// KernelContext: phases, counted WARNs, panic and the per-thread current
// kernel. See the header for the lifecycle.
#include "khosim/base/kernel_context.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "khosim/base/panic.h"

namespace khosim {
namespace {
thread_local KernelContext* current_context = nullptr;
}  // namespace

absl::string_view BootPhaseName(BootPhase phase) {
  switch (phase) {
    case BootPhase::kSetupArch:
      return "setup_arch";
    case BootPhase::kMmInit:
      return "mm_init";
    case BootPhase::kBuddy:
      return "buddy";
    case BootPhase::kInitcalls:
      return "initcalls";
    case BootPhase::kRunning:
      return "running";
    case BootPhase::kRebooting:
      return "rebooting";
    case BootPhase::kDead:
      return "dead";
  }
  return "?";
}

absl::Span<const uint8_t> BootParams::SetupDataOf(uint32_t type) const {
  for (const SetupData& entry : setup_data) {
    if (entry.type == type) return entry.payload;
  }
  return {};
}

Cmdline::Cmdline(std::string text) : text_(std::move(text)) {
  for (absl::string_view word : absl::StrSplit(text_, ' ', absl::SkipEmpty())) {
    const size_t eq = word.find('=');
    if (eq == absl::string_view::npos) {
      words_.emplace_back(std::string(word), "");
    } else {
      words_.emplace_back(std::string(word.substr(0, eq)), std::string(word.substr(eq + 1)));
    }
  }
}

std::optional<std::string> Cmdline::Get(absl::string_view key) const {
  std::optional<std::string> value;
  for (const auto& [k, v] : words_) {
    if (k == key) value = v;
  }
  return value;
}

size_t MemParsePrefix(absl::string_view text, uint64_t* out) {
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
    ++i;
  }
  if (i == 0) return 0;
  if (i < text.size()) {
    static constexpr absl::string_view kSuffixes = "KMGTPE";
    const size_t unit =
        kSuffixes.find(static_cast<char>(absl::ascii_toupper(static_cast<unsigned char>(text[i]))));
    if (unit != absl::string_view::npos) {
      value <<= 10 * (unit + 1);
      ++i;
    }
  }
  *out = value;
  return i;
}

bool MemParse(absl::string_view text, uint64_t* out) {
  uint64_t value = 0;
  if (text.empty() || MemParsePrefix(text, &value) != text.size()) return false;
  *out = value;
  return true;
}

bool Cmdline::GetBool(absl::string_view key, bool fallback) const {
  // kstrtobool: decided by the first character, "on"/"off" by the second.
  std::optional<std::string> value = Get(key);
  if (!value.has_value() || value->empty()) return fallback;
  const std::string& v = *value;
  switch (v[0]) {
    case 'y':
    case 'Y':
    case 't':
    case 'T':
    case '1':
      return true;
    case 'n':
    case 'N':
    case 'f':
    case 'F':
    case '0':
      return false;
    case 'o':
    case 'O':
      if (v.size() > 1 && (v[1] == 'n' || v[1] == 'N')) return true;
      if (v.size() > 1 && (v[1] == 'f' || v[1] == 'F')) return false;
      return fallback;
    default:
      return fallback;
  }
}

KernelContext::KernelContext(KernelEnv& env, uint64_t generation, PageGeometry geometry,
                             BootParams boot_params)
    : env_(env),
      generation_(generation),
      geometry_(geometry),
      boot_params_(std::move(boot_params)),
      cmdline_(boot_params_.cmdline) {}

KernelContext::~KernelContext() {
  if (current_context == this) current_context = nullptr;
}

void KernelContext::SetPhase(BootPhase phase) {
  if (phase < phase_) {
    Panic(KHOSIM_SITE, absl::StrCat("boot phase moved backwards: ", BootPhaseName(phase_), " -> ",
                                    BootPhaseName(phase)));
  }
  if (phase == phase_) return;
  phase_ = phase;
  Trace("phase", BootPhaseName(phase));
}

void KernelContext::CancelReboot() {
  if (phase_ != BootPhase::kRebooting) {
    Panic(KHOSIM_SITE, "CancelReboot outside a reboot");
  }
  phase_ = BootPhase::kRunning;
  Trace("phase", "reboot_cancelled");
}

void KernelContext::Warn(absl::string_view site, absl::string_view message) {
  {
    absl::MutexLock lock(&diag_mu_);
    WarnRecord& record = warns_[std::string(site)];
    if (record.count++ == 0) record.first_message = std::string(message);
    log_.push_back(absl::StrCat("WARNING: ", site, ": ", message));
  }
  Trace("warn", site, {{"message", std::string(message)}});
}

void KernelContext::WarnOnce(absl::string_view site, absl::string_view message) {
  {
    absl::MutexLock lock(&diag_mu_);
    auto it = warns_.find(std::string(site));
    if (it != warns_.end() && it->second.count > 0) return;
  }
  Warn(site, message);
}

uint64_t KernelContext::WarnCount() const {
  absl::MutexLock lock(&diag_mu_);
  uint64_t total = 0;
  for (const auto& [site, record] : warns_) total += record.count;
  return total;
}

uint64_t KernelContext::WarnCount(absl::string_view needle) const {
  absl::MutexLock lock(&diag_mu_);
  uint64_t total = 0;
  for (const auto& [site, record] : warns_) {
    if (absl::StrContains(site, needle) || absl::StrContains(record.first_message, needle)) {
      total += record.count;
    }
  }
  return total;
}

std::map<std::string, uint64_t> KernelContext::WarnsBySite() const {
  absl::MutexLock lock(&diag_mu_);
  std::map<std::string, uint64_t> out;
  for (const auto& [site, record] : warns_) out[site] = record.count;
  return out;
}

void KernelContext::Panic(absl::string_view site, absl::string_view message) {
  {
    absl::MutexLock lock(&diag_mu_);
    log_.push_back(absl::StrCat("Kernel panic - not syncing: ", message, " (", site, ")"));
  }
  panicked_ = true;
  Trace("panic", site, {{"message", std::string(message)}});
  phase_ = BootPhase::kDead;
  throw KernelPanic(std::string(site), std::string(message));
}

void KernelContext::Log(absl::string_view line) {
  absl::MutexLock lock(&diag_mu_);
  log_.emplace_back(line);
}

std::vector<std::string> KernelContext::LogLines() const {
  absl::MutexLock lock(&diag_mu_);
  return log_;
}

KernelContext* CurrentKernelContext() { return current_context; }

KernelContext& RequireKernelContext() {
  if (current_context == nullptr) {
    std::fputs(
        "khosim: kernel-face call with no running kernel on this thread "
        "(Machine::Activate() makes a machine's kernel current)\n",
        stderr);
    std::abort();
  }
  return *current_context;
}

void SetCurrentKernelContext(KernelContext* context) { current_context = context; }

}  // namespace khosim

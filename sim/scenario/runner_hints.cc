// Runner::Impl, the hints a failure message carries: what the previous
// boot did not preserve, why /dev/liveupdate will not open, which hstate a
// hugetlb file lacks.
#include "khosim/scenario/report.h"
#include "runner_impl.h"

namespace khosim::scenario {

// The previous boot's spec said nothing about this session / token?
std::string Runner::Impl::MissingHint(int boot, const std::string& session,
                                      const FileRef* ref) const {
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

// Why /dev/liveupdate would not open, for the message.
std::string Runner::Impl::OpenFailureHint() {
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
  const std::string built_text = HandlersText(br.handlers);
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

// Why MFD_HUGETLB or RETRIEVE_FD of a hugetlb file failed with -ENODEV.
std::string Runner::Impl::NoHstateHint(const FileSpec& file) {
  return absl::StrFormat(" (this kernel has no %s hstate: its command line needs hugepagesz=%s)",
                         FormatBytes(file.page_size), CmdlineSize(file.page_size));
}

}  // namespace khosim::scenario

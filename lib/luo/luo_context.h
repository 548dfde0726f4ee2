// LuoContext: what every part of one kernel's LUO shares - the kernel it
// runs in, KHO, the VFS, the profile, whether live update is enabled - and
// LUO's trace events.
//
// Enablement is decided at construction (liveupdate=on, KHO on with blob
// subtrees) and can only be withdrawn, by the boot steps, before userspace
// runs; afterwards it is read-only.
#ifndef KHOSIM_LIB_LUO_LUO_CONTEXT_H_
#define KHOSIM_LIB_LUO_LUO_CONTEXT_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "khosim/base/kernel_context.h"
#include "khosim/fs/vfs.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/luo/luo.h"

namespace khosim::luo {

class LuoContext {
 public:
  static constexpr absl::string_view kTraceCategory = "luo";

  LuoContext(KernelContext& ctx, kho::Kho& kho, fs::Vfs& vfs, LuoConfig config);
  LuoContext(const LuoContext&) = delete;
  LuoContext& operator=(const LuoContext&) = delete;

  KernelContext& ctx() const { return ctx_; }
  kho::Kho& kho() const { return kho_; }
  fs::Vfs& vfs() const { return vfs_; }
  const LuoConfig& config() const { return config_; }
  bool Is73() const { return config_.profile == LuoProfile::k7_3; }

  bool enabled() const { return enabled_; }
  // A boot step failed: live update is off for the rest of this boot.
  void Disable() { enabled_ = false; }

  // Whether the machine records LUO's trace events. Every "luo" event is
  // built only when this is true: formatting the arguments (handler,
  // session and token of each callback) would otherwise dominate the
  // serialization at reboot.
  bool Tracing() const { return ctx_.TraceEnabled(kTraceCategory); }
  void Trace(absl::string_view name, TraceArgs args = {}) const {
    ctx_.Trace(kTraceCategory, name, std::move(args));
  }
  // A file handler callback: "<op>" with the handler, session and token.
  void TraceCallback(absl::string_view op, const struct liveupdate_file_handler* fh,
                     const struct liveupdate_session* session, uint64_t token) const;
  // An FLB callback: "<op>" with the FLB and its count.
  void TraceFlb(absl::string_view op, const struct liveupdate_flb* flb, long count) const;

 private:
  KernelContext& ctx_;
  kho::Kho& kho_;
  fs::Vfs& vfs_;
  const LuoConfig config_;
  bool enabled_ = false;
};

// A compatible string from a fixed-size field: the bytes before the first
// NUL.
absl::string_view CompatOf(const char (&raw)[abi::kLiveupdateCompatLength]);

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_LUO_CONTEXT_H_

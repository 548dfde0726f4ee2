// LuoContext (see the header).
#include "luo_context.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "luo_session.h"

namespace khosim::luo {

LuoContext::LuoContext(KernelContext& ctx, kho::Kho& kho, fs::Vfs& vfs, LuoConfig config)
    : ctx_(ctx), kho_(kho), vfs_(vfs), config_(config) {
  const bool requested = ctx_.cmdline().GetBool("liveupdate", false);
  if (requested && !kho_.enabled()) {
    ctx_.Log("luo: warning: liveupdate=on needs KHO (kho=on); live update disabled");
  }
  // luo_ser is a raw blob that kernel B sizes by its blob-size (kho-v3+).
  if (requested && kho_.enabled() && !kho_.HasBlobSubtrees()) {
    ctx_.Log(absl::StrCat("luo: warning: KHO profile ", kho_.compatible(),
                          " has no blob-size subtrees (kho-v3+ needed); live update disabled"));
  }
  enabled_ = requested && kho_.enabled() && kho_.HasBlobSubtrees();
}

void LuoContext::TraceCallback(absl::string_view op, const struct liveupdate_file_handler* fh,
                               const struct liveupdate_session* session, uint64_t token) const {
  if (!Tracing()) return;
  Trace(op, {{"handler", fh == nullptr ? "" : fh->compatible},
             {"session", session == nullptr ? "" : session->name},
             {"token", absl::StrCat(token)}});
}

void LuoContext::TraceFlb(absl::string_view op, const struct liveupdate_flb* flb,
                          long count) const {
  if (!Tracing()) return;
  Trace(op, {{"flb", std::string(CompatOf(flb->compatible))}, {"count", absl::StrCat(count)}});
}

absl::string_view CompatOf(const char (&raw)[abi::kLiveupdateCompatLength]) {
  return absl::string_view(raw, strnlen(raw, sizeof(raw)));
}

}  // namespace khosim::luo

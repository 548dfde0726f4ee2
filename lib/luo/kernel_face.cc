// The kernel face of lib/luo: upstream names over the running kernel's
// LUO. With no LUO in this kernel (built without it, or not yet
// initialized) the calls behave as with LUO disabled.
#include <cerrno>
#include <cstring>

#include "khosim/kho/kho.h"
#include "khosim/linux/liveupdate.h"
#include "luo_state.h"

using khosim::luo::LuoState;

namespace {

LuoState* State() { return LuoState::CurrentOrNull(); }

}  // namespace

bool liveupdate_enabled(void) {
  LuoState* s = State();
  return s != nullptr && s->luo().enabled();
}

int liveupdate_register_file_handler(struct liveupdate_file_handler* fh) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->handlers().RegisterFileHandler(fh);
}

void liveupdate_unregister_file_handler(struct liveupdate_file_handler* fh) {
  if (LuoState* s = State()) s->handlers().UnregisterFileHandler(fh);
}

int liveupdate_register_flb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->handlers().RegisterFlb(fh, flb);
}

void liveupdate_unregister_flb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb) {
  if (LuoState* s = State()) s->handlers().UnregisterFlb(fh, flb);
}

int liveupdate_flb_get_incoming(struct liveupdate_flb* flb, void** objp) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->flbs().GetIncoming(flb, objp);
}

void liveupdate_flb_put_incoming(struct liveupdate_flb* flb) {
  if (LuoState* s = State()) s->flbs().PutIncoming(flb);
}

int liveupdate_flb_get_outgoing(struct liveupdate_flb* flb, void** objp) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->flbs().GetOutgoing(flb, objp);
}

void liveupdate_flb_put_outgoing(struct liveupdate_flb* flb) {
  if (LuoState* s = State()) s->flbs().PutOutgoing(flb);
}

// The in-kernel file APIs run from a handler callback, which holds the
// session's mutex; a call without it is WARNed (and still served, as the
// kernel would, racily), so the analysis cannot prove the lock.
int liveupdate_get_token_outgoing(struct liveupdate_session* session, struct file* file,
                                  u64* tokenp) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  LuoState* s = State();
  if (s == nullptr) return -EOPNOTSUPP;
  khosim::KernelContext& ctx = s->luo().ctx();
  if (!s->luo().Is73()) {
    ctx.Warn(KHOSIM_SITE, "liveupdate_get_token_outgoing does not exist before 7.3");
    return -EOPNOTSUPP;
  }
  if (session == nullptr || !session->mutex.HeldByCurrentThread()) {
    ctx.Warn(KHOSIM_SITE, "liveupdate_get_token_outgoing without the session lock");
    if (session == nullptr) return -EINVAL;
  }
  return session->files.TokenOf(file, tokenp);
}

int liveupdate_get_file_incoming(struct liveupdate_session* session, u64 token,
                                 struct file** filep) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  LuoState* s = State();
  if (s == nullptr) return -EOPNOTSUPP;
  khosim::KernelContext& ctx = s->luo().ctx();
  if (!s->luo().Is73()) {
    ctx.Warn(KHOSIM_SITE, "liveupdate_get_file_incoming does not exist before 7.3");
    return -EOPNOTSUPP;
  }
  if (session == nullptr || !session->mutex.HeldByCurrentThread()) {
    ctx.Warn(KHOSIM_SITE, "liveupdate_get_file_incoming without the session lock");
    if (session == nullptr) return -EINVAL;
  }
  return session->files.Retrieve(token, filep);
}

int liveupdate_flb_incoming_data_early(const struct liveupdate_flb* flb, u64* datap) {
  if (flb == nullptr || datap == nullptr) return -EINVAL;
  khosim::KernelContext& ctx = khosim::RequireKernelContext();
  auto* kho = static_cast<khosim::kho::Kho*>(ctx.slot(khosim::KernelSlot::kKho));
  if (kho == nullptr) return -EOPNOTSUPP;
  const absl::string_view compatible(flb->compatible,
                                     strnlen(flb->compatible, sizeof(flb->compatible)));
  return khosim::luo::ReadIncomingFlbDataEarly(ctx, *kho, compatible, datap);
}

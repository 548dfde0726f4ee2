// The kernel face of lib/luo: upstream names over the running kernel's Luo.
// With no LUO in this kernel (built without it, or not yet initialized) the
// calls behave as with LUO disabled.
#include <cerrno>
#include <cstring>

#include "khosim/kho/kho.h"
#include "khosim/linux/liveupdate.h"
#include "luo_internal.h"

using khosim::luo::Luo;
using khosim::luo::LuoState;

namespace {

LuoState* State() {
  Luo* luo = Luo::CurrentOrNull();
  return luo == nullptr ? nullptr : &luo->state();
}

}  // namespace

bool liveupdate_enabled(void) {
  LuoState* s = State();
  return s != nullptr && s->enabled_;
}

int liveupdate_register_file_handler(struct liveupdate_file_handler* fh) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->RegisterFileHandler(fh);
}

void liveupdate_unregister_file_handler(struct liveupdate_file_handler* fh) {
  if (LuoState* s = State()) s->UnregisterFileHandler(fh);
}

int liveupdate_register_flb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->RegisterFlb(fh, flb);
}

void liveupdate_unregister_flb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb) {
  if (LuoState* s = State()) s->UnregisterFlb(fh, flb);
}

int liveupdate_flb_get_incoming(struct liveupdate_flb* flb, void** objp) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->FlbGetIncoming(flb, objp);
}

void liveupdate_flb_put_incoming(struct liveupdate_flb* flb) {
  if (LuoState* s = State()) s->FlbPutIncoming(flb);
}

int liveupdate_flb_get_outgoing(struct liveupdate_flb* flb, void** objp) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->FlbGetOutgoing(flb, objp);
}

void liveupdate_flb_put_outgoing(struct liveupdate_flb* flb) {
  if (LuoState* s = State()) s->FlbPutOutgoing(flb);
}

int liveupdate_get_token_outgoing(struct liveupdate_session* session, struct file* file,
                                  u64* tokenp) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->GetTokenOutgoing(session, file, tokenp);
}

int liveupdate_get_file_incoming(struct liveupdate_session* session, u64 token,
                                 struct file** filep) {
  LuoState* s = State();
  return s == nullptr ? -EOPNOTSUPP : s->GetFileIncoming(session, token, filep);
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

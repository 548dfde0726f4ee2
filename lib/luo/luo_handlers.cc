// HandlerRegistry (see the header): registration, lookup and the checks
// each registration runs, in upstream's order.
#include "luo_handlers.h"

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "khosim/abi/luo.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/module.h"

namespace khosim::luo {

HandlerRegistry::~HandlerRegistry() {
  absl::MutexLock lock(&mu_);
  handlers_.clear_and_dispose([](HandlerEntry* h) { delete h; });
  flbs_.clear_and_dispose([](FlbState* s) { delete s; });
}

HandlerEntry* HandlerRegistry::FindLocked(const struct liveupdate_file_handler* fh) {
  for (HandlerEntry& h : handlers_) {
    if (h.fh == fh) return &h;
  }
  return nullptr;
}

HandlerEntry* HandlerRegistry::Find(const struct liveupdate_file_handler* fh) {
  absl::MutexLock lock(&mu_);
  return FindLocked(fh);
}

FlbState* HandlerRegistry::FindFlb(const struct liveupdate_flb* flb) {
  absl::MutexLock lock(&mu_);
  for (FlbState& s : flbs_) {
    if (s.flb == flb) return &s;
  }
  return nullptr;
}

FlbState* HandlerRegistry::FindOrAdoptFlb(struct liveupdate_flb* flb) {
  absl::MutexLock lock(&mu_);
  for (FlbState& s : flbs_) {
    if (s.flb == flb) return &s;
  }
  auto* state = new FlbState(flb);
  state->adopted = true;
  flbs_.push_back(*state);
  return state;
}

HandlerEntry* HandlerRegistry::Claim(struct file* file) {
  absl::MutexLock lock(&mu_);
  for (HandlerEntry& h : handlers_) {
    if (h.fh->ops->can_preserve(h.fh, file)) {
      return try_module_get(h.fh->ops->owner) ? &h : nullptr;
    }
  }
  return nullptr;
}

HandlerEntry* HandlerRegistry::TakeByCompatible(absl::string_view compatible) {
  absl::MutexLock lock(&mu_);
  for (HandlerEntry& h : handlers_) {
    if (CompatOf(h.fh->compatible) == compatible) {
      return try_module_get(h.fh->ops->owner) ? &h : nullptr;
    }
  }
  return nullptr;
}

int HandlerRegistry::RegisterFileHandler(struct liveupdate_file_handler* fh) {
  if (!luo_.enabled()) return -EOPNOTSUPP;
  const struct liveupdate_file_ops* ops = fh->ops;
  if (ops == nullptr || ops->preserve == nullptr || ops->unpreserve == nullptr ||
      ops->retrieve == nullptr || ops->finish == nullptr || ops->can_preserve == nullptr) {
    return -EINVAL;
  }
  absl::MutexLock lock(&mu_);
  const absl::string_view compat = CompatOf(fh->compatible);
  for (const HandlerEntry& h : handlers_) {
    if (CompatOf(h.fh->compatible) == compat) return -EEXIST;
  }
  handlers_.push_back(*new HandlerEntry(fh));
  if (luo_.Tracing()) luo_.Trace("register_file_handler", {{"handler", std::string(compat)}});
  return 0;
}

void HandlerRegistry::UnregisterFileHandler(struct liveupdate_file_handler* fh) {
  if (!luo_.enabled()) return;
  HandlerEntry* h = Find(fh);
  if (h == nullptr) return;
  while (!h->flbs.empty()) UnregisterFlb(fh, h->flbs.back()->flb);
  absl::MutexLock lock(&mu_);
  handlers_.erase_and_dispose(handlers_.iterator_to(*h), [](HandlerEntry* e) { delete e; });
}

int HandlerRegistry::RegisterFlb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb) {
  if (!luo_.enabled()) return -EOPNOTSUPP;
  KernelContext& ctx = luo_.ctx();
  if (fh == nullptr || flb == nullptr || flb->ops == nullptr) {
    ctx.Warn(KHOSIM_SITE, "liveupdate_register_flb with a NULL argument");
    return -EINVAL;
  }
  const struct liveupdate_flb_ops* ops = flb->ops;
  if (ops->preserve == nullptr || ops->unpreserve == nullptr || ops->retrieve == nullptr ||
      ops->finish == nullptr) {
    ctx.Warn(KHOSIM_SITE, "liveupdate_register_flb: an FLB op is missing");
    return -EINVAL;
  }
  if (Find(fh) == nullptr) {
    ctx.Warn(KHOSIM_SITE, "liveupdate_register_flb: handler not registered");
    return -EINVAL;
  }
  if (ctx.ShouldFail("kmalloc")) return -ENOMEM;
  absl::MutexLock lock(&mu_);
  HandlerEntry* h = FindLocked(fh);
  if (h == nullptr) return -EINVAL;  // unregistered meanwhile
  for (const FlbState* linked : h->flbs) {
    if (linked->flb == flb) return -EEXIST;
  }
  FlbState* state = nullptr;
  for (FlbState& s : flbs_) {
    if (s.flb == flb) state = &s;
  }
  // Only linked FLBs count towards the limit and own their name.
  if (state == nullptr || state->users == 0) {
    uint64_t linked = 0;
    for (const FlbState& s : flbs_) {
      if (s.users == 0) continue;
      ++linked;
      if (CompatOf(s.flb->compatible) == CompatOf(flb->compatible)) return -EEXIST;
    }
    if (linked >= abi::LuoFlbMax(PAGE_SIZE)) return -ENOSPC;
  }
  if (state == nullptr) {
    state = new FlbState(flb);
    flbs_.push_back(*state);
  }
  state->users++;
  h->flbs.push_back(state);
  return 0;
}

void HandlerRegistry::UnregisterFlb(struct liveupdate_file_handler* fh,
                                    struct liveupdate_flb* flb) {
  if (!luo_.enabled()) return;
  absl::MutexLock lock(&mu_);
  HandlerEntry* h = FindLocked(fh);
  auto it = h == nullptr ? std::vector<FlbState*>::iterator()
                         : std::find_if(h->flbs.begin(), h->flbs.end(),
                                        [&](FlbState* s) { return s->flb == flb; });
  if (h == nullptr || it == h->flbs.end()) {
    luo_.ctx().Warn(KHOSIM_SITE, "liveupdate_unregister_flb: FLB not linked to this handler");
    return;
  }
  FlbState* state = *it;
  h->flbs.erase(it);
  if (--state->users == 0 && !state->adopted) {
    flbs_.erase_and_dispose(flbs_.iterator_to(*state), [](FlbState* s) { delete s; });
  }
}

absl::Status HandlerRegistry::ValidateFlbCounts(
    const absl::flat_hash_map<const struct liveupdate_file_handler*, long>& outgoing_files) const {
  absl::MutexLock lock(&mu_);
  for (const FlbState& flb : flbs_) {
    long dependents = 0;
    for (const HandlerEntry& h : handlers_) {
      if (std::find(h.flbs.begin(), h.flbs.end(), &flb) != h.flbs.end()) {
        if (auto it = outgoing_files.find(h.fh); it != outgoing_files.end()) {
          dependents += it->second;
        }
      }
    }
    if (flb.outgoing.count != dependents + flb.outgoing.extra_refs) {
      return absl::InternalError(absl::StrCat("FLB ", flb.flb->compatible, ": outgoing count ",
                                              flb.outgoing.count, ", expected ", dependents,
                                              " files + ", flb.outgoing.extra_refs, " references"));
    }
  }
  return absl::OkStatus();
}

}  // namespace khosim::luo

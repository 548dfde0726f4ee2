// FLBs: global objects whose lifetime follows the preserved files of the
// handlers they are linked to.
//
// Outgoing side (kernel A): count = dependent preserved files + 7.3
// get_outgoing references. 0 -> 1 takes the FLB module and calls
// preserve(); 1 -> 0 calls unpreserve() and drops the module. At reboot
// every FLB with count > 0 is written {name, data, count} to the FLB page.
// Incoming side (kernel B): the serialized count becomes the incoming count
// on first use (a get, or 7.3: a put); retrieve() runs once, on the first
// get (or before finish if nothing got it); each dependent file's finish
// and each put_incoming drops one; at 0, finish() runs once.
//
// Each side has its own lock, held while the FLB's callbacks run. A
// callback that calls back into the same side would deadlock in the kernel;
// here the HazardMutex reports it and the call fails (-EDEADLK) instead.
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/mm.h"
#include "luo_internal.h"

namespace khosim::luo {
namespace {

absl::string_view CompatOf(const char (&raw)[abi::kLiveupdateCompatLength]) {
  return absl::string_view(raw, strnlen(raw, sizeof(raw)));
}

}  // namespace

FlbState* LuoState::FindFlb(const struct liveupdate_flb* flb) {
  absl::MutexLock lock(&register_mu_);
  for (auto& f : flbs_) {
    if (f->flb == flb) return f.get();
  }
  return nullptr;
}

int LuoState::RegisterFlb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb) {
  if (!enabled_) return -EOPNOTSUPP;
  if (fh == nullptr || flb == nullptr || flb->ops == nullptr) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_register_flb with a NULL argument");
    return -EINVAL;
  }
  const struct liveupdate_flb_ops* ops = flb->ops;
  if (ops->preserve == nullptr || ops->unpreserve == nullptr || ops->retrieve == nullptr ||
      ops->finish == nullptr) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_register_flb: an FLB op is missing");
    return -EINVAL;
  }
  HandlerEntry* h = FindHandler(fh);
  if (h == nullptr) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_register_flb: handler not registered");
    return -EINVAL;
  }
  if (ctx_.ShouldFail("kmalloc")) return -ENOMEM;
  absl::MutexLock lock(&register_mu_);
  for (const FlbState* linked : h->flbs) {
    if (linked->flb == flb) return -EEXIST;
  }
  FlbState* state = nullptr;
  for (auto& f : flbs_) {
    if (f->flb == flb) state = f.get();
  }
  if (state == nullptr) {
    if (flbs_.size() >= abi::LuoFlbMax(PAGE_SIZE)) return -ENOSPC;
    for (const auto& f : flbs_) {
      if (CompatOf(f->flb->compatible) == CompatOf(flb->compatible)) return -EEXIST;
    }
    auto owned = std::make_unique<FlbState>();
    owned->flb = flb;
    state = owned.get();
    flbs_.push_back(std::move(owned));
  }
  state->users++;
  h->flbs.push_back(state);
  return 0;
}

void LuoState::UnregisterFlb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb) {
  if (!enabled_) return;
  HandlerEntry* h = FindHandler(fh);
  absl::MutexLock lock(&register_mu_);
  auto it = h == nullptr ? std::vector<FlbState*>::iterator()
                         : std::find_if(h->flbs.begin(), h->flbs.end(),
                                        [&](FlbState* s) { return s->flb == flb; });
  if (h == nullptr || it == h->flbs.end()) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_unregister_flb: FLB not linked to this handler");
    return;
  }
  FlbState* state = *it;
  h->flbs.erase(it);
  if (--state->users == 0) {
    flbs_.erase(std::find_if(flbs_.begin(), flbs_.end(),
                             [&](const auto& owned) { return owned.get() == state; }));
  }
}

namespace {

void TraceFlb(KernelContext& ctx, absl::string_view op, const struct liveupdate_flb* flb,
              long count) {
  if (!ctx.TraceEnabled(LuoState::kTraceCategory)) return;
  ctx.Trace(LuoState::kTraceCategory, op,
            {{"flb", std::string(CompatOf(flb->compatible))}, {"count", absl::StrCat(count)}});
}

// Drops one outgoing reference; the last one unpreserves. Lock held.
void OutgoingPutLocked(KernelContext& ctx, FlbState& s) {
  FlbSide& out = s.outgoing;
  if (out.count <= 0) {
    ctx.Warn("luo-hazard: flb outgoing underflow",
             absl::StrCat("outgoing FLB ", CompatOf(s.flb->compatible), " put without a get"));
    return;
  }
  if (--out.count > 0) return;
  struct liveupdate_flb_op_args args = {s.flb, out.data, out.obj};
  TraceFlb(ctx, "flb_unpreserve", s.flb, 0);
  s.flb->ops->unpreserve(&args);
  out.data = 0;
  out.obj = nullptr;
  module_put(s.flb->ops->owner);
}

}  // namespace

int LuoState::FlbFilePreserve(HandlerEntry& h) {
  size_t done = 0;
  int err = 0;
  for (; done < h.flbs.size(); ++done) {
    FlbState& s = *h.flbs[done];
    HazardLock lock(s.outgoing.mutex, ctx_, "flb outgoing lock");
    if (!lock.held()) {
      err = -EDEADLK;
      break;
    }
    if (s.outgoing.count == 0) {
      if (!try_module_get(s.flb->ops->owner)) {
        err = -ENODEV;
        break;
      }
      struct liveupdate_flb_op_args args = {s.flb, 0, nullptr};
      TraceFlb(ctx_, "flb_preserve", s.flb, 1);
      if ((err = s.flb->ops->preserve(&args)) != 0) {
        module_put(s.flb->ops->owner);
        break;
      }
      s.outgoing.data = args.data;
      s.outgoing.obj = args.obj;
    }
    s.outgoing.count++;
  }
  if (err == 0) return 0;
  while (done-- > 0) {
    FlbState& s = *h.flbs[done];
    HazardLock lock(s.outgoing.mutex, ctx_, "flb outgoing lock");
    if (lock.held()) OutgoingPutLocked(ctx_, s);
  }
  return err;
}

void LuoState::FlbFileUnpreserve(HandlerEntry& h) {
  for (auto it = h.flbs.rbegin(); it != h.flbs.rend(); ++it) {
    FlbState& s = **it;
    HazardLock lock(s.outgoing.mutex, ctx_, "flb outgoing lock");
    if (lock.held()) OutgoingPutLocked(ctx_, s);
  }
}

int LuoState::FlbGetOutgoing(struct liveupdate_flb* flb, void** objp) {
  if (!enabled_) return -EOPNOTSUPP;
  FlbState* s = FindFlb(flb);
  if (s == nullptr) return -ENOENT;
  HazardLock lock(s->outgoing.mutex, ctx_, "flb outgoing lock");
  if (!lock.held()) return -EDEADLK;
  if (!Is73()) {  // 7.2: the object, if any, and no reference
    *objp = s->outgoing.obj;
    return 0;
  }
  if (s->outgoing.count == 0) return -ENOENT;
  s->outgoing.count++;
  s->outgoing.extra_refs++;
  *objp = s->outgoing.obj;
  return 0;
}

void LuoState::FlbPutOutgoing(struct liveupdate_flb* flb) {
  if (!enabled_) return;
  if (!Is73()) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_flb_put_outgoing does not exist before 7.3");
    return;
  }
  FlbState* s = FindFlb(flb);
  if (s == nullptr) return;
  HazardLock lock(s->outgoing.mutex, ctx_, "flb outgoing lock");
  if (!lock.held()) return;
  if (s->outgoing.extra_refs <= 0) {
    ctx_.Warn(
        "luo-hazard: flb outgoing underflow",
        absl::StrCat("liveupdate_flb_put_outgoing(", CompatOf(flb->compatible), ") without a get"));
    return;
  }
  s->outgoing.extra_refs--;
  OutgoingPutLocked(ctx_, *s);
}

void LuoState::SerializeFlbs() {
  uint64_t n = 0;
  auto* entries = reinterpret_cast<abi::LuoFlbSer*>(out_flbs_ + 1);
  absl::MutexLock lock(&register_mu_);
  for (auto& s : flbs_) {
    if (s->outgoing.count <= 0) continue;
    if (s->outgoing.extra_refs > 0) {
      ctx_.Warn("luo-hazard: flb outgoing ref at reboot",
                absl::StrCat("FLB ", CompatOf(s->flb->compatible), " has ", s->outgoing.extra_refs,
                             " get_outgoing references still held at reboot"));
    }
    abi::LuoFlbSer& e = entries[n++];
    std::memset(e.name, 0, sizeof(e.name));
    const absl::string_view name = CompatOf(s->flb->compatible);
    std::memcpy(e.name, name.data(), std::min(name.size(), sizeof(e.name) - 1));
    e.data = s->outgoing.data;
    e.count = static_cast<uint64_t>(s->outgoing.count);
  }
  out_flbs_->pgcnt = abi::kLuoFlbPageCount;
  out_flbs_->count = n;
}

int ReadIncomingFlbDataEarly(KernelContext& ctx, kho::Kho& kho, absl::string_view compatible,
                             uint64_t* data) {
  if (!ctx.cmdline().GetBool("liveupdate", false) || !kho.enabled() || !kho.is_kho_boot()) {
    return -EOPNOTSUPP;
  }
  uint64_t phys = 0;
  uint64_t size = 0;
  if (int err = kho.RetrieveSubtree(abi::kLuoSubtreeName, &phys, &size); err != 0) return err;
  // Nothing here is restored or freed: LUO's own early startup does that
  // later, and must find every record as the previous kernel left it.
  if (size < sizeof(abi::LuoSer) || !kho.IsPreservedHead(PhysAddr(phys))) return -EINVAL;
  const auto* ser = static_cast<const abi::LuoSer*>(phys_to_virt(phys));
  if (strncmp(ser->compatible, abi::kLuoCompatible, abi::kLuoCompatibleLength) != 0) {
    return -EINVAL;
  }
  if (ser->flbs_pa == 0) return -ENOENT;
  if (!kho.IsPreservedHead(PhysAddr(ser->flbs_pa))) return -EINVAL;
  const auto* header = static_cast<const abi::LuoFlbHeaderSer*>(phys_to_virt(ser->flbs_pa));
  if (header->pgcnt != abi::kLuoFlbPageCount || header->count > abi::LuoFlbMax(PAGE_SIZE)) {
    return -EINVAL;
  }
  const auto* entries = reinterpret_cast<const abi::LuoFlbSer*>(header + 1);
  for (uint64_t i = 0; i < header->count; ++i) {
    if (CompatOf(entries[i].name) == compatible) {
      *data = entries[i].data;
      return 0;
    }
  }
  return -ENOENT;
}

int LuoState::SetupIncomingFlbs(uint64_t flbs_pa) {
  if (flbs_pa == 0) return 0;
  struct folio* folio = kho_.RestoreFolio(PhysAddr(flbs_pa));
  if (folio == nullptr) return -EINVAL;
  auto* header = static_cast<abi::LuoFlbHeaderSer*>(folio_address(folio));
  if (header->pgcnt != abi::kLuoFlbPageCount || header->count > abi::LuoFlbMax(PAGE_SIZE)) {
    folio_put(folio);
    return -EINVAL;
  }
  in_flbs_ = header;
  return 0;
}

namespace {

// Loads the incoming count from the FLB page on first use. Lock held.
int LoadIncoming(const abi::LuoFlbHeaderSer* in, FlbState& s) {
  if (s.incoming.loaded) return 0;
  if (in == nullptr) return -ENODATA;
  const auto* entries = reinterpret_cast<const abi::LuoFlbSer*>(in + 1);
  for (uint64_t i = 0; i < in->count; ++i) {
    if (CompatOf(entries[i].name) == CompatOf(s.flb->compatible)) {
      s.incoming.data = entries[i].data;
      s.incoming.count = static_cast<long>(entries[i].count);
      s.incoming.loaded = true;
      return 0;
    }
  }
  return -ENOENT;
}

}  // namespace

// Incoming retrieve, once. Lock held. A 7.3 failure is latched.
static int RetrieveIncomingLocked(LuoState& luo, FlbState& s) {
  FlbSide& in = s.incoming;
  if (in.retrieved) return 0;
  if (luo.Is73() && in.retrieve_status < 0) return in.retrieve_status;
  if (in.finished) return -ENODATA;
  if (int err = LoadIncoming(luo.in_flbs_, s); err != 0) return err;
  if (!try_module_get(s.flb->ops->owner)) return -ENODEV;
  struct liveupdate_flb_op_args args = {s.flb, in.data, nullptr};
  TraceFlb(luo.ctx_, "flb_retrieve", s.flb, in.count);
  if (int err = s.flb->ops->retrieve(&args); err != 0) {
    module_put(s.flb->ops->owner);
    if (luo.Is73()) in.retrieve_status = err;
    return err;
  }
  in.obj = args.obj;
  in.retrieved = true;
  in.retrieve_status = 1;
  return 0;
}

int LuoState::FlbGetIncoming(struct liveupdate_flb* flb, void** objp) {
  if (!enabled_) return -EOPNOTSUPP;
  FlbState* s = FindFlb(flb);
  if (s == nullptr) return -ENOENT;
  HazardLock lock(s->incoming.mutex, ctx_, "flb incoming lock");
  if (!lock.held()) return -EDEADLK;
  if (s->incoming.finished) return -ENODATA;
  if (int err = RetrieveIncomingLocked(*this, *s); err != 0) return err;
  // The count came from the FLB page: a hostile one may already be at the
  // top, where the kernel's increment would silently wrap.
  if (s->incoming.count == LONG_MAX) {
    ctx_.Warn("luo-hazard: flb incoming overflow",
              absl::StrCat("incoming FLB ", CompatOf(flb->compatible), " count would wrap"));
    return -EOVERFLOW;
  }
  s->incoming.count++;
  *objp = s->incoming.obj;
  return 0;
}

static void PutIncoming(LuoState& luo, FlbState& s) {
  FlbSide& in = s.incoming;
  HazardLock lock(in.mutex, luo.ctx_, "flb incoming lock");
  if (!lock.held()) return;
  if (in.finished) {
    luo.ctx_.Warn("luo-hazard: flb incoming underflow",
                  absl::StrCat("incoming FLB ", CompatOf(s.flb->compatible), " put after finish"));
    return;
  }
  // 7.3 loads the serialized count on the first put too; 7.2 only on a
  // get, so a put before any get underflows there.
  if (luo.Is73()) {
    if (int err = LoadIncoming(luo.in_flbs_, s); err != 0) {
      luo.ctx_.Warn(KHOSIM_SITE, absl::StrCat("incoming FLB ", CompatOf(s.flb->compatible),
                                              " put without incoming data: ", err));
      return;
    }
  }
  if (in.count <= 0) {
    luo.ctx_.Warn("luo-hazard: flb incoming underflow",
                  absl::StrCat("incoming FLB ", CompatOf(s.flb->compatible), " put without a get"));
    return;
  }
  if (--in.count > 0) return;
  if (!in.retrieved) {
    if (int err = RetrieveIncomingLocked(luo, s); err != 0) {
      luo.ctx_.Warn(KHOSIM_SITE, absl::StrCat("incoming FLB ", CompatOf(s.flb->compatible),
                                              " cannot be retrieved for finish: ", err));
      return;
    }
  }
  struct liveupdate_flb_op_args args = {s.flb, 0, in.obj};
  TraceFlb(luo.ctx_, "flb_finish", s.flb, 0);
  s.flb->ops->finish(&args);
  in.finished = true;
  in.obj = nullptr;
  in.data = 0;
  module_put(s.flb->ops->owner);
}

void LuoState::FlbPutIncoming(struct liveupdate_flb* flb) {
  if (!enabled_) return;
  if (FlbState* s = FindFlb(flb)) PutIncoming(*this, *s);
}

void LuoState::FlbFileFinish(HandlerEntry& h) {
  for (auto it = h.flbs.rbegin(); it != h.flbs.rend(); ++it) PutIncoming(*this, **it);
}

std::vector<Luo::FlbInfo> Luo::Flbs() const {
  std::vector<FlbInfo> out;
  absl::MutexLock lock(&state_->register_mu_);
  for (const auto& s : state_->flbs_) {
    out.push_back({std::string(CompatOf(s->flb->compatible)), s->outgoing.count, s->incoming.count,
                   s->incoming.retrieved, s->incoming.finished, s->incoming.retrieve_status,
                   s->users});
  }
  return out;
}

}  // namespace khosim::luo

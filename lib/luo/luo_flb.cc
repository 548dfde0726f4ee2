// FLB lifecycles (see the header for the refcount model and the hazards).
#include "luo_flb.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/module.h"

namespace khosim::luo {

// ---- Outgoing ---------------------------------------------------------------

void FlbLifecycle::OutgoingPutLocked(FlbState& s) {
  if (s.outgoing.count <= 0) {
    luo_.ctx().Warn(
        "luo-hazard: flb outgoing underflow",
        absl::StrCat("outgoing FLB ", CompatOf(s.flb->compatible), " put without a get"));
    return;
  }
  if (--s.outgoing.count > 0) return;
  struct liveupdate_flb_op_args args = {s.flb, s.outgoing.data, s.outgoing.obj};
  luo_.TraceFlb("flb_unpreserve", s.flb, 0);
  s.flb->ops->unpreserve(&args);
  s.outgoing.data = 0;
  s.outgoing.obj = nullptr;
  module_put(s.flb->ops->owner);
}

int FlbLifecycle::FilePreserve(HandlerEntry& h) {
  size_t done = 0;
  int err = 0;
  for (; done < h.flbs.size(); ++done) {
    FlbState& s = *h.flbs[done];
    HazardLock lock(s.outgoing.mutex, luo_.ctx(), "flb outgoing lock");
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
      luo_.TraceFlb("flb_preserve", s.flb, 1);
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
    HazardLock lock(s.outgoing.mutex, luo_.ctx(), "flb outgoing lock");
    if (lock.held()) OutgoingPutLocked(s);
  }
  return err;
}

void FlbLifecycle::FileUnpreserve(HandlerEntry& h) {
  for (auto it = h.flbs.rbegin(); it != h.flbs.rend(); ++it) {
    FlbState& s = **it;
    HazardLock lock(s.outgoing.mutex, luo_.ctx(), "flb outgoing lock");
    if (lock.held()) OutgoingPutLocked(s);
  }
}

int FlbLifecycle::GetOutgoing(struct liveupdate_flb* flb, void** objp) {
  if (!luo_.enabled()) return -EOPNOTSUPP;
  FlbState* s = registry_.FindFlb(flb);
  if (s == nullptr) return -ENOENT;
  HazardLock lock(s->outgoing.mutex, luo_.ctx(), "flb outgoing lock");
  if (!lock.held()) return -EDEADLK;
  if (!luo_.Is73()) {  // 7.2: the object, if any, and no reference
    *objp = s->outgoing.obj;
    return 0;
  }
  if (s->outgoing.count == 0) return -ENOENT;
  s->outgoing.count++;
  s->outgoing.extra_refs++;
  *objp = s->outgoing.obj;
  return 0;
}

void FlbLifecycle::PutOutgoing(struct liveupdate_flb* flb) {
  if (!luo_.enabled()) return;
  if (!luo_.Is73()) {
    luo_.ctx().Warn(KHOSIM_SITE, "liveupdate_flb_put_outgoing does not exist before 7.3");
    return;
  }
  FlbState* s = registry_.FindFlb(flb);
  if (s == nullptr) return;
  HazardLock lock(s->outgoing.mutex, luo_.ctx(), "flb outgoing lock");
  if (!lock.held()) return;
  if (s->outgoing.extra_refs <= 0) {
    luo_.ctx().Warn(
        "luo-hazard: flb outgoing underflow",
        absl::StrCat("liveupdate_flb_put_outgoing(", CompatOf(flb->compatible), ") without a get"));
    return;
  }
  s->outgoing.extra_refs--;
  OutgoingPutLocked(*s);
}

void FlbLifecycle::Serialize(abi::LuoFlbHeaderSer* page) {
  uint64_t n = 0;
  auto* entries = reinterpret_cast<abi::LuoFlbSer*>(page + 1);
  registry_.ForEachFlb([&](FlbState& s) {
    HazardLock lock(s.outgoing.mutex, luo_.ctx(), "flb outgoing lock");
    if (s.outgoing.count <= 0) return;
    if (s.outgoing.extra_refs > 0) {
      luo_.ctx().Warn(
          "luo-hazard: flb outgoing ref at reboot",
          absl::StrCat("FLB ", CompatOf(s.flb->compatible), " has ", s.outgoing.extra_refs,
                       " get_outgoing references still held at reboot"));
    }
    abi::LuoFlbSer& e = entries[n++];
    std::memset(e.name, 0, sizeof(e.name));
    const absl::string_view name = CompatOf(s.flb->compatible);
    std::memcpy(e.name, name.data(), std::min(name.size(), sizeof(e.name) - 1));
    e.data = s.outgoing.data;
    e.count = static_cast<uint64_t>(s.outgoing.count);
  });
  page->pgcnt = abi::kLuoFlbPageCount;
  page->count = n;
}

// ---- Incoming ---------------------------------------------------------------

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

int FlbLifecycle::SetupIncoming(uint64_t flbs_pa) {
  if (flbs_pa == 0) return 0;
  struct folio* folio = luo_.kho().RestoreFolio(PhysAddr(flbs_pa));
  if (folio == nullptr) return -EINVAL;
  auto* header = static_cast<abi::LuoFlbHeaderSer*>(folio_address(folio));
  if (header->pgcnt != abi::kLuoFlbPageCount || header->count > abi::LuoFlbMax(PAGE_SIZE)) {
    folio_put(folio);
    return -EINVAL;
  }
  in_flbs_ = header;
  return 0;
}

bool FlbLifecycle::HasIncomingRecord(const struct liveupdate_flb* flb) const {
  if (in_flbs_ == nullptr) return false;
  const auto* entries = reinterpret_cast<const abi::LuoFlbSer*>(in_flbs_ + 1);
  for (uint64_t i = 0; i < in_flbs_->count; ++i) {
    if (CompatOf(entries[i].name) == CompatOf(flb->compatible)) return true;
  }
  return false;
}

int FlbLifecycle::LoadIncomingLocked(FlbState& s) {
  if (s.incoming.loaded) return 0;
  if (in_flbs_ == nullptr) return -ENODATA;
  const auto* entries = reinterpret_cast<const abi::LuoFlbSer*>(in_flbs_ + 1);
  for (uint64_t i = 0; i < in_flbs_->count; ++i) {
    if (CompatOf(entries[i].name) == CompatOf(s.flb->compatible)) {
      s.incoming.data = entries[i].data;
      s.incoming.count = static_cast<long>(entries[i].count);
      s.incoming.loaded = true;
      return 0;
    }
  }
  return -ENOENT;
}

// Incoming retrieve, once. A 7.3 failure is latched.
int FlbLifecycle::RetrieveIncomingLocked(FlbState& s) {
  if (s.incoming.retrieved) return 0;
  if (luo_.Is73() && s.incoming.retrieve_status < 0) return s.incoming.retrieve_status;
  if (s.incoming.finished) return -ENODATA;
  if (int err = LoadIncomingLocked(s); err != 0) return err;
  if (!try_module_get(s.flb->ops->owner)) return -ENODEV;
  struct liveupdate_flb_op_args args = {s.flb, s.incoming.data, nullptr};
  luo_.TraceFlb("flb_retrieve", s.flb, s.incoming.count);
  if (int err = s.flb->ops->retrieve(&args); err != 0) {
    module_put(s.flb->ops->owner);
    if (luo_.Is73()) s.incoming.retrieve_status = err;
    return err;
  }
  s.incoming.obj = args.obj;
  s.incoming.retrieved = true;
  s.incoming.retrieve_status = 1;
  return 0;
}

int FlbLifecycle::GetIncoming(struct liveupdate_flb* flb, void** objp) {
  if (!luo_.enabled()) return -EOPNOTSUPP;
  FlbState* s = registry_.FindFlb(flb);
  if (s == nullptr) {
    // Upstream keeps an FLB's state in the FLB itself, so an incoming get
    // works before (or without) any handler linking it; only a name with
    // no record fails.
    if (flb == nullptr || flb->ops == nullptr) return -EINVAL;
    if (in_flbs_ == nullptr) return -ENODATA;
    if (!HasIncomingRecord(flb)) return -ENOENT;
    s = registry_.FindOrAdoptFlb(flb);
  }
  HazardLock lock(s->incoming.mutex, luo_.ctx(), "flb incoming lock");
  if (!lock.held()) return -EDEADLK;
  if (s->incoming.finished) return -ENODATA;
  if (int err = RetrieveIncomingLocked(*s); err != 0) return err;
  // The count came from the FLB page: a hostile one may already be at the
  // top, where the kernel's increment would silently wrap.
  if (s->incoming.count == LONG_MAX) {
    luo_.ctx().Warn("luo-hazard: flb incoming overflow",
                    absl::StrCat("incoming FLB ", CompatOf(flb->compatible), " count would wrap"));
    return -EOVERFLOW;
  }
  s->incoming.count++;
  *objp = s->incoming.obj;
  return 0;
}

void FlbLifecycle::PutIncoming(FlbState& s) {
  KernelContext& ctx = luo_.ctx();
  HazardLock lock(s.incoming.mutex, ctx, "flb incoming lock");
  if (!lock.held()) return;
  if (s.incoming.finished) {
    ctx.Warn("luo-hazard: flb incoming underflow",
             absl::StrCat("incoming FLB ", CompatOf(s.flb->compatible), " put after finish"));
    return;
  }
  // 7.3 loads the serialized count on the first put too; 7.2 only on a
  // get, so a put before any get underflows there.
  if (luo_.Is73()) {
    if (int err = LoadIncomingLocked(s); err != 0) {
      ctx.Warn(KHOSIM_SITE, absl::StrCat("incoming FLB ", CompatOf(s.flb->compatible),
                                         " put without incoming data: ", err));
      return;
    }
  }
  if (s.incoming.count <= 0) {
    ctx.Warn("luo-hazard: flb incoming underflow",
             absl::StrCat("incoming FLB ", CompatOf(s.flb->compatible), " put without a get"));
    return;
  }
  if (--s.incoming.count > 0) return;
  if (!s.incoming.retrieved) {
    if (int err = RetrieveIncomingLocked(s); err != 0) {
      ctx.Warn(KHOSIM_SITE, absl::StrCat("incoming FLB ", CompatOf(s.flb->compatible),
                                         " cannot be retrieved for finish: ", err));
      return;
    }
  }
  struct liveupdate_flb_op_args args = {s.flb, 0, s.incoming.obj};
  luo_.TraceFlb("flb_finish", s.flb, 0);
  s.flb->ops->finish(&args);
  s.incoming.finished = true;
  s.incoming.obj = nullptr;
  s.incoming.data = 0;
  module_put(s.flb->ops->owner);
}

void FlbLifecycle::PutIncoming(struct liveupdate_flb* flb) {
  if (!luo_.enabled()) return;
  if (FlbState* s = registry_.FindFlb(flb)) PutIncoming(*s);
}

void FlbLifecycle::FileFinish(HandlerEntry& h) {
  for (auto it = h.flbs.rbegin(); it != h.flbs.rend(); ++it) PutIncoming(**it);
}

namespace {

// A racy read of both sides, for inspection.
Luo::FlbInfo Snapshot(const FlbState& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  return {std::string(CompatOf(s.flb->compatible)),
          s.outgoing.count,
          s.incoming.count,
          s.incoming.retrieved,
          s.incoming.finished,
          s.incoming.retrieve_status,
          s.users,
          s.outgoing.data,
          s.incoming.data};
}

}  // namespace

std::vector<Luo::FlbInfo> FlbLifecycle::Info() {
  std::vector<Luo::FlbInfo> out;
  registry_.ForEachFlb([&](FlbState& s) { out.push_back(Snapshot(s)); });
  return out;
}

}  // namespace khosim::luo

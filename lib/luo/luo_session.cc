// LUO sessions (see the header for their lifecycle and the lock order).
#include "luo_session.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "khosim/linux/err.h"

namespace khosim::luo {
namespace {

// A session name from a user or serialized buffer: the bytes before the
// first NUL, at most 64.
absl::string_view NameOf(const uint8_t (&raw)[abi::kLiveupdateSessionNameLength]) {
  const char* p = reinterpret_cast<const char*>(raw);
  return absl::string_view(p, strnlen(p, abi::kLiveupdateSessionNameLength));
}

}  // namespace

// Defined with the session file's operations (luo_session_file.cc).
int GetSessionFile(Session* session, struct file** out);

Sessions::~Sessions() {
  absl::MutexLock lock(&mu_);
  for (SessionList* list : {&outgoing_, &incoming_}) {
    while (!list->empty()) DestroyLocked(*list, &list->front());
  }
}

Session* Sessions::FindLocked(const SessionList& list, absl::string_view name) const {
  // Upstream's walk of the session list, kept as it is: O(sessions).
  for (const Session& s : list) {
    if (s.name == name) return const_cast<Session*>(&s);
  }
  return nullptr;
}

void Sessions::DestroyLocked(SessionList& list, Session* session) {
  list.erase(list.iterator_to(*session));
  delete session;
}

bool Sessions::EnterCall(absl::string_view what, const Session* session) {
  // The common path: no allocation, nothing formatted.
  if (!frozen_.load()) return true;
  blocked_calls_.fetch_add(1);
  const std::string call =
      session == nullptr ? std::string(what) : absl::StrCat(what, " ", session->name);
  if (svc_.luo.Tracing()) svc_.luo.Trace("blocked", {{"call", call}});
  svc_.luo.ctx().Log(
      absl::StrCat("luo: ", call, " blocks until the kexec (sessions are serialized)"));
  return false;
}

int Sessions::Create(const uint8_t (&raw)[abi::kLiveupdateSessionNameLength], struct file** out) {
  const absl::string_view name = NameOf(raw);
  if (name.empty() || name.size() > abi::kLiveupdateSessionNameLength - 1) return -EINVAL;
  if (svc_.luo.ctx().ShouldFail("kmalloc")) return -ENOMEM;
  if (!EnterCall("create session")) return -ERESTARTSYS;
  auto* s = new Session(svc_, std::string(name), /*is_incoming=*/false);
  {
    absl::MutexLock lock(&mu_);
    int err = outgoing_blocks_.Grow(outgoing_.size() + 1);
    if (err == 0 && FindLocked(outgoing_, s->name) != nullptr) err = -EEXIST;
    if (err != 0) {
      delete s;
      return err;
    }
    outgoing_.push_back(*s);
  }
  int err = 0;
  {
    HazardLock lock(s->mutex, svc_.luo.ctx(), "session mutex");
    err = GetSessionFile(s, out);
  }
  if (err != 0) {
    absl::MutexLock lock(&mu_);
    DestroyLocked(outgoing_, s);
    outgoing_blocks_.Shrink(outgoing_.size());
    return err;
  }
  if (svc_.luo.Tracing()) svc_.luo.Trace("session_create", {{"session", s->name}});
  return 0;
}

int Sessions::Retrieve(const uint8_t (&raw)[abi::kLiveupdateSessionNameLength], struct file** out) {
  const absl::string_view name = NameOf(raw);
  if (!EnterCall("retrieve session")) return -ERESTARTSYS;
  Session* s = nullptr;
  {
    absl::MutexLock lock(&mu_);
    s = FindLocked(incoming_, name);
  }
  if (s == nullptr) return -ENOENT;
  HazardLock lock(s->mutex, svc_.luo.ctx(), "session mutex");
  if (s->retrieved) return -EINVAL;
  if (int err = GetSessionFile(s, out); err != 0) return err;
  s->retrieved = true;
  if (svc_.luo.Tracing()) svc_.luo.Trace("session_retrieve", {{"session", s->name}});
  return 0;
}

int Sessions::Release(Session* session) {
  if (!EnterCall("close session", session)) return -ERESTARTSYS;
  if (session->retrieved) {
    int err = 0;
    {
      HazardLock lock(session->mutex, svc_.luo.ctx(), "session mutex");
      err = session->files.FinishAll();
    }
    if (err != 0) {
      // The VFS ignores release's result: the session stays, retrieved and
      // without an fd, until the next live update.
      svc_.luo.ctx().Log(absl::StrCat("luo: warning: unable to finish session [", session->name,
                                      "] on release: ", err));
      if (svc_.luo.Tracing()) svc_.luo.Trace("session_leaked", {{"session", session->name}});
      return err;
    }
    const std::string name = session->name;
    {
      absl::MutexLock lock(&mu_);
      DestroyLocked(incoming_, session);
    }
    if (svc_.luo.Tracing()) svc_.luo.Trace("session_destroy", {{"session", name}});
    return 0;
  }
  {
    HazardLock lock(session->mutex, svc_.luo.ctx(), "session mutex");
    session->files.UnpreserveAll();
  }
  const std::string name = session->name;
  {
    absl::MutexLock lock(&mu_);
    DestroyLocked(outgoing_, session);
    outgoing_blocks_.Shrink(outgoing_.size());
  }
  if (svc_.luo.Tracing()) svc_.luo.Trace("session_destroy", {{"session", name}});
  return 0;
}

int Sessions::Serialize(abi::LuoSer* out_ser) {
  frozen_.store(true);  // the serialize rwsem, write-locked
  absl::MutexLock lock(&mu_);
  out_ser->sessions_pa = 0;
  kho::BlockSet::Iterator it(outgoing_blocks_);
  auto pos = outgoing_.begin();
  int err = 0;
  for (; pos != outgoing_.end(); ++pos) {
    Session* s = &*pos;
    auto* ser = static_cast<abi::LuoSessionSer*>(it.ReserveEntry());
    if (ser == nullptr) {
      svc_.luo.ctx().WarnOnce(KHOSIM_SITE, "no pre-allocated session record at reboot");
      err = -ENOSPC;
      break;
    }
    ser->file_set = {};
    {
      HazardLock session_lock(s->mutex, svc_.luo.ctx(), "session mutex");
      err = s->files.Freeze(&ser->file_set);
    }
    if (err != 0) {
      it.Prev();
      break;
    }
    std::memset(ser->name, 0, sizeof(ser->name));
    std::memcpy(ser->name, s->name.data(), std::min(s->name.size(), sizeof(ser->name) - 1));
  }
  if (err == 0) {
    if (!outgoing_.empty()) out_ser->sessions_pa = outgoing_blocks_.head_pa();
    return 0;
  }
  // Sessions frozen before the failing one, newest first.
  while (pos != outgoing_.begin()) {
    Session* s = &*--pos;
    auto* ser = static_cast<abi::LuoSessionSer*>(it.Prev());
    {
      HazardLock session_lock(s->mutex, svc_.luo.ctx(), "session mutex");
      s->files.Unfreeze(&ser->file_set, nullptr);
    }
    std::memset(ser->name, 0, sizeof(ser->name));
  }
  frozen_.store(false);
  return err;
}

int Sessions::SetupIncoming(uint64_t sessions_pa) {
  if (sessions_pa == 0) return 0;
  absl::MutexLock lock(&mu_);
  if (int err = incoming_blocks_.Restore(sessions_pa); err != 0) return err;
  incoming_active_ = true;
  return 0;
}

int Sessions::Deserialize() {
  absl::MutexLock lock(&mu_);
  if (!incoming_active_) return 0;
  int err = 0;
  kho::BlockSet::Iterator it(incoming_blocks_);
  while (auto* ser = static_cast<abi::LuoSessionSer*>(it.ReadEntry())) {
    if (svc_.luo.ctx().ShouldFail("kmalloc")) {
      err = -ENOMEM;
      break;
    }
    const std::string name(ser->name, strnlen(ser->name, sizeof(ser->name) - 1));
    if (FindLocked(incoming_, name) != nullptr) {
      svc_.luo.ctx().Log(absl::StrCat("luo: warning: duplicate incoming session [", name, "]"));
      err = -EEXIST;
      break;
    }
    auto* s = new Session(svc_, name, /*is_incoming=*/true);
    incoming_.push_back(*s);
    {
      HazardLock session_lock(s->mutex, svc_.luo.ctx(), "session mutex");
      err = s->files.Deserialize(ser->file_set);
    }
    if (err != 0) {
      svc_.luo.ctx().Log(absl::StrCat("luo: warning: failed to deserialize files of session [",
                                      s->name, "]: ", err));
      break;
    }
  }
  incoming_blocks_.Destroy();
  incoming_active_ = false;
  return err;
}

uint64_t Sessions::incoming_head_pa() const {
  absl::MutexLock lock(&mu_);
  return incoming_blocks_.head_pa();
}

uint64_t Sessions::outgoing_count() const {
  absl::MutexLock lock(&mu_);
  return outgoing_.size();
}

uint64_t Sessions::outgoing_blocks() const {
  absl::MutexLock lock(&mu_);
  return outgoing_blocks_.nblocks();
}

std::vector<Luo::SessionInfo> Sessions::Info(bool incoming) const {
  std::vector<Luo::SessionInfo> out;
  absl::MutexLock lock(&mu_);
  for (const Session& s : incoming ? incoming_ : outgoing_) {
    out.push_back({s.name, incoming, incoming && s.retrieved, s.files.Info(), s.files.nblocks()});
  }
  return out;
}

absl::flat_hash_map<const struct liveupdate_file_handler*, long> Sessions::OutgoingFilesByHandler()
    const {
  absl::flat_hash_map<const struct liveupdate_file_handler*, long> out;
  absl::MutexLock lock(&mu_);
  for (const Session& s : outgoing_) s.files.CountByHandler(&out);
  return out;
}

absl::Status Sessions::Validate(uint64_t* registered) const {
  absl::MutexLock lock(&mu_);
  for (const SessionList* list : {&outgoing_, &incoming_}) {
    absl::flat_hash_set<std::string> names;
    for (const Session& s : *list) {
      if (!names.insert(s.name).second) {
        return absl::InternalError(absl::StrCat("duplicate session name ", s.name));
      }
      if (absl::Status v = s.files.Validate(list == &outgoing_, registered); !v.ok()) return v;
    }
  }
  if (absl::Status v = outgoing_blocks_.Validate(outgoing_.size(), false); !v.ok()) {
    return absl::InternalError(absl::StrCat("session block set: ", v.message()));
  }
  return absl::OkStatus();
}

}  // namespace khosim::luo

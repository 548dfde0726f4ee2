// LUO sessions: named containers of preserved files, their fds and ioctls,
// and their serialization at reboot.
//
// Outgoing: CREATE_SESSION grows the session block set for count + 1
// entries *before* the duplicate-name check (so an -EEXIST leaves the extra
// block until a later shrink, as upstream does), then links the session;
// closing its last fd unpreserves every file (reverse order) and unlinks
// it. At reboot every session is frozen in creation order into its
// pre-allocated LuoSessionSer; a failure unwinds the sessions already
// frozen in reverse, each unfreezing its files forward.
// Incoming: the session chain adopted at early boot is turned into
// sessions at the first open of /dev/liveupdate, then freed. A session is
// retrieved at most once; closing a retrieved session finishes it
// implicitly, and a vetoed finish leaves it (and its files) to LUO until
// the next live update.
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "khosim/linux/err.h"
#include "khosim/linux/uaccess.h"
#include "khosim/uapi/liveupdate.h"
#include "luo_internal.h"

namespace khosim::luo {
namespace {

// A session name from a user or serialized buffer: the bytes before the
// first NUL, at most 64.
absl::string_view NameOf(const uint8_t (&raw)[abi::kLiveupdateSessionNameLength]) {
  const char* p = reinterpret_cast<const char*>(raw);
  return absl::string_view(p, strnlen(p, abi::kLiveupdateSessionNameLength));
}

const struct file_operations kSessionFops = {
    .owner = nullptr,
    .open = nullptr,
    .release = [](struct inode*, struct file* f) -> int {
      return Luo::Current().state().SessionRelease(static_cast<Session*>(f->private_data));
    },
    .unlocked_ioctl = [](struct file* f, unsigned int cmd, unsigned long arg) -> long {
      return Luo::Current().state().SessionIoctl(static_cast<Session*>(f->private_data), cmd, arg);
    },
};

int GetSessionFile(Session* session, struct file** out) {
  // "[luo_session] <name>", built on the stack: session names are shorter
  // than kLiveupdateSessionNameLength.
  constexpr absl::string_view kPrefix = "[luo_session] ";
  char name[kPrefix.size() + abi::kLiveupdateSessionNameLength];
  const size_t len = std::min<size_t>(session->name.size(), abi::kLiveupdateSessionNameLength - 1);
  std::memcpy(name, kPrefix.data(), kPrefix.size());
  std::memcpy(name + kPrefix.size(), session->name.data(), len);
  name[kPrefix.size() + len] = '\0';
  struct file* f = anon_inode_getfile(name, &kSessionFops, session, O_RDWR);
  if (IS_ERR(f)) return static_cast<int>(PTR_ERR(f));
  *out = f;
  return 0;
}

}  // namespace

int LuoState::CreateSession(const uint8_t (&raw)[abi::kLiveupdateSessionNameLength],
                            struct file** out) {
  const absl::string_view name = NameOf(raw);
  if (name.empty() || name.size() > abi::kLiveupdateSessionNameLength - 1) return -EINVAL;
  if (ctx_.ShouldFail("kmalloc")) return -ENOMEM;
  auto session = std::make_unique<Session>();
  session->name = std::string(name);
  if (!EnterSessionCall("create session")) return -ERESTARTSYS;

  Session* s = session.get();
  {
    absl::MutexLock lock(&sessions_mu_);
    if (int err = outgoing_blocks_.Grow(outgoing_.size() + 1); err != 0) return err;
    // Upstream's walk of the session list, kept as it is: O(sessions).
    const absl::string_view new_name = s->name;
    if (outgoing_.FindIf([&](const Session& other) { return other.name == new_name; }) != nullptr) {
      return -EEXIST;
    }
    outgoing_.PushBack(std::move(session));
  }
  int err = 0;
  {
    HazardLock lock(s->mutex, ctx_, "session mutex");
    err = GetSessionFile(s, out);
  }
  if (err != 0) {
    absl::MutexLock lock(&sessions_mu_);
    std::unique_ptr<Session> owned = outgoing_.Unlink(s);
    outgoing_blocks_.Shrink(outgoing_.size());
    return err;
  }
  if (Tracing()) ctx_.Trace(kTraceCategory, "session_create", {{"session", s->name}});
  return 0;
}

int LuoState::RetrieveSession(const uint8_t (&raw)[abi::kLiveupdateSessionNameLength],
                              struct file** out) {
  const absl::string_view name = NameOf(raw);
  if (!EnterSessionCall("retrieve session")) return -ERESTARTSYS;
  Session* s = nullptr;
  {
    absl::MutexLock lock(&sessions_mu_);
    s = incoming_.FindIf([&](const Session& session) { return session.name == name; });
  }
  if (s == nullptr) return -ENOENT;
  HazardLock lock(s->mutex, ctx_, "session mutex");
  if (s->retrieved) return -EINVAL;
  if (int err = GetSessionFile(s, out); err != 0) return err;
  s->retrieved = true;
  if (Tracing()) ctx_.Trace(kTraceCategory, "session_retrieve", {{"session", s->name}});
  return 0;
}

int LuoState::SessionRelease(Session* session) {
  if (!EnterSessionCall("close session", session)) return -ERESTARTSYS;
  if (session->retrieved) {
    int err = 0;
    {
      HazardLock lock(session->mutex, ctx_, "session mutex");
      err = FinishFiles(session);
    }
    if (err != 0) {
      // The VFS ignores release's result: the session stays, retrieved and
      // without an fd, until the next live update.
      ctx_.Log(absl::StrCat("luo: warning: unable to finish session [", session->name,
                            "] on release: ", err));
      if (Tracing()) ctx_.Trace(kTraceCategory, "session_leaked", {{"session", session->name}});
      return err;
    }
    absl::MutexLock lock(&sessions_mu_);
    std::unique_ptr<Session> owned = incoming_.Unlink(session);
    if (Tracing()) ctx_.Trace(kTraceCategory, "session_destroy", {{"session", owned->name}});
    return 0;
  }
  {
    HazardLock lock(session->mutex, ctx_, "session mutex");
    UnpreserveFiles(session);
  }
  absl::MutexLock lock(&sessions_mu_);
  std::unique_ptr<Session> owned = outgoing_.Unlink(session);
  outgoing_blocks_.Shrink(outgoing_.size());
  if (Tracing()) ctx_.Trace(kTraceCategory, "session_destroy", {{"session", owned->name}});
  return 0;
}

namespace {

enum class SessionKind { kIncoming, kOutgoing, kAll };

struct SessionOp {
  unsigned int size;
  unsigned int min_size;
  unsigned int cmd;
  SessionKind kind;
};

// A buffer large enough for every session command's struct.
union SessionCmdBuffer {
  liveupdate_session_preserve_fd preserve;
  liveupdate_session_retrieve_fd retrieve;
  liveupdate_session_finish finish;
  liveupdate_session_get_name get_name;
};

SessionOp OpFor(unsigned int index, bool is73) {
  switch (index + LIVEUPDATE_CMD_SESSION_BASE) {
    case LIVEUPDATE_CMD_SESSION_PRESERVE_FD:
      return {sizeof(liveupdate_session_preserve_fd), sizeof(liveupdate_session_preserve_fd),
              LIVEUPDATE_SESSION_PRESERVE_FD, SessionKind::kOutgoing};
    case LIVEUPDATE_CMD_SESSION_RETRIEVE_FD:
      return {sizeof(liveupdate_session_retrieve_fd), sizeof(liveupdate_session_retrieve_fd),
              LIVEUPDATE_SESSION_RETRIEVE_FD, SessionKind::kIncoming};
    case LIVEUPDATE_CMD_SESSION_FINISH:
      return {sizeof(liveupdate_session_finish), sizeof(liveupdate_session_finish),
              LIVEUPDATE_SESSION_FINISH, SessionKind::kIncoming};
    default:
      // GET_NAME: 7.2 declared it with the retrieve_fd struct, so its size
      // and minimum were 16; 7.3 uses its own 72-byte struct.
      if (!is73) {
        return {sizeof(liveupdate_session_retrieve_fd), sizeof(liveupdate_session_retrieve_fd),
                LIVEUPDATE_SESSION_GET_NAME, SessionKind::kAll};
      }
      return {sizeof(liveupdate_session_get_name), sizeof(liveupdate_session_get_name),
              LIVEUPDATE_SESSION_GET_NAME, SessionKind::kAll};
  }
}

constexpr unsigned int kSessionOpCount = 4;

}  // namespace

long LuoState::SessionIoctl(Session* session, unsigned int cmd, unsigned long arg) {
  const unsigned int nr = _IOC_NR(cmd);
  if (nr < LIVEUPDATE_CMD_SESSION_BASE || nr - LIVEUPDATE_CMD_SESSION_BASE >= kSessionOpCount) {
    return -EINVAL;
  }
  void* ubuf = u64_to_user_ptr(arg);
  uint32_t user_size = 0;
  if (copy_from_user(&user_size, ubuf, sizeof(user_size)) != 0) return -EFAULT;
  const SessionOp op = OpFor(nr - LIVEUPDATE_CMD_SESSION_BASE, Is73());
  if (op.cmd != cmd) return -ENOIOCTLCMD;
  const bool kind_ok =
      op.kind == SessionKind::kAll || (op.kind == SessionKind::kIncoming) == session->retrieved;
  if (!kind_ok) return -EINVAL;
  if (user_size < op.min_size) return -EINVAL;
  SessionCmdBuffer buf;
  std::memset(&buf, 0, sizeof(buf));
  if (int err = copy_struct_from_user(&buf, op.size, ubuf, user_size); err != 0) return err;
  if (!EnterSessionCall("ioctl on session", session)) return -ERESTARTSYS;

  auto respond = [&](size_t kernel_size) -> int {
    return copy_to_user(ubuf, &buf, std::min<size_t>(user_size, kernel_size)) != 0 ? -EFAULT : 0;
  };

  switch (nr) {
    case LIVEUPDATE_CMD_SESSION_PRESERVE_FD: {
      int err = 0;
      {
        HazardLock lock(session->mutex, ctx_, "session mutex");
        err = PreserveFile(session, buf.preserve.token, buf.preserve.fd);
      }
      if (err != 0) return err;
      err = respond(sizeof(buf.preserve));
      if (err != 0) {
        ctx_.Log("luo: warning: the file was preserved, but the reply to userspace failed");
      }
      return err;
    }
    case LIVEUPDATE_CMD_SESSION_RETRIEVE_FD: {
      buf.retrieve.fd = get_unused_fd_flags(O_CLOEXEC);
      if (buf.retrieve.fd < 0) return buf.retrieve.fd;
      struct file* file = nullptr;
      int err = 0;
      {
        HazardLock lock(session->mutex, ctx_, "session mutex");
        err = RetrieveFile(session, buf.retrieve.token, &file);
      }
      if (err == 0) {
        err = respond(sizeof(buf.retrieve));
        if (err != 0) fput(file);
      }
      if (err != 0) {
        put_unused_fd(buf.retrieve.fd);
        return err;
      }
      fd_install(buf.retrieve.fd, file);
      return 0;
    }
    case LIVEUPDATE_CMD_SESSION_FINISH: {
      if (Is73() && buf.finish.reserved != 0) return -EINVAL;
      int err = 0;
      {
        HazardLock lock(session->mutex, ctx_, "session mutex");
        err = FinishFiles(session);
      }
      if (err != 0) return err;
      return respond(sizeof(buf.finish));
    }
    default: {  // GET_NAME
      if (buf.get_name.reserved != 0) return -EINVAL;
      std::memset(buf.get_name.name, 0, sizeof(buf.get_name.name));
      std::memcpy(buf.get_name.name, session->name.data(),
                  std::min(session->name.size(), sizeof(buf.get_name.name) - 1));
      return respond(sizeof(buf.get_name));
    }
  }
}

int LuoState::SerializeSessions() {
  frozen_.store(true);  // the serialize rwsem, write-locked
  absl::MutexLock lock(&sessions_mu_);
  out_ser_->sessions_pa = 0;
  kho::BlockSet::Iterator it(outgoing_blocks_);
  auto pos = outgoing_.begin();
  int err = 0;
  for (; pos != outgoing_.end(); ++pos) {
    Session* s = &*pos;
    auto* ser = static_cast<abi::LuoSessionSer*>(it.ReserveEntry());
    if (ser == nullptr) {
      ctx_.WarnOnce(KHOSIM_SITE, "no pre-allocated session record at reboot");
      err = -ENOSPC;
      break;
    }
    ser->file_set = {};
    {
      HazardLock session_lock(s->mutex, ctx_, "session mutex");
      err = FreezeFiles(s, &ser->file_set);
    }
    if (err != 0) {
      it.Prev();
      break;
    }
    std::memset(ser->name, 0, sizeof(ser->name));
    std::memcpy(ser->name, s->name.data(), std::min(s->name.size(), sizeof(ser->name) - 1));
  }
  if (err == 0) {
    if (!outgoing_.empty()) out_ser_->sessions_pa = outgoing_blocks_.head_pa();
    return 0;
  }
  // Sessions frozen before the failing one, newest first.
  while (pos != outgoing_.begin()) {
    Session* s = &*--pos;
    auto* ser = static_cast<abi::LuoSessionSer*>(it.Prev());
    {
      HazardLock session_lock(s->mutex, ctx_, "session mutex");
      UnfreezeFiles(s, &ser->file_set, nullptr);
    }
    std::memset(ser->name, 0, sizeof(ser->name));
  }
  frozen_.store(false);
  return err;
}

int LuoState::SetupIncomingSessions(uint64_t sessions_pa) {
  if (sessions_pa == 0) return 0;
  if (int err = incoming_blocks_.Restore(sessions_pa); err != 0) return err;
  incoming_active_ = true;
  return 0;
}

int LuoState::DeserializeSessions() {
  if (!incoming_active_) return 0;
  // On an error, sessions and files already built are left as they are:
  // recovery from a corrupt handover is a reboot (upstream does the same).
  int err = 0;
  kho::BlockSet::Iterator it(incoming_blocks_);
  while (auto* ser = static_cast<abi::LuoSessionSer*>(it.ReadEntry())) {
    if (ctx_.ShouldFail("kmalloc")) {
      err = -ENOMEM;
      break;
    }
    auto session = std::make_unique<Session>();
    session->name = std::string(ser->name, strnlen(ser->name, sizeof(ser->name) - 1));
    session->incoming = true;
    Session* s = session.get();
    {
      absl::MutexLock lock(&sessions_mu_);
      const absl::string_view new_name = s->name;
      if (incoming_.FindIf([&](const Session& other) { return other.name == new_name; }) !=
          nullptr) {
        ctx_.Log(absl::StrCat("luo: warning: duplicate incoming session [", s->name, "]"));
        err = -EEXIST;
        break;
      }
      incoming_.PushBack(std::move(session));
    }
    {
      HazardLock lock(s->mutex, ctx_, "session mutex");
      err = DeserializeFiles(s, ser->file_set);
    }
    if (err != 0) {
      ctx_.Log(absl::StrCat("luo: warning: failed to deserialize files of session [", s->name,
                            "]: ", err));
      break;
    }
  }
  incoming_blocks_.Destroy();
  incoming_active_ = false;
  return err;
}

std::vector<Luo::SessionInfo> Luo::OutgoingSessions() const {
  std::vector<SessionInfo> out;
  absl::MutexLock lock(&state_->sessions_mu_);
  for (const Session& s : state_->outgoing_) {
    SessionInfo info{s.name, false, false, {}, s.file_set.block_set.nblocks()};
    for (const auto& f : s.file_set.files) {
      info.files.push_back({f->token, f->fh->compatible, f->retrieve_status, f->file != nullptr});
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<Luo::SessionInfo> Luo::IncomingSessions() const {
  std::vector<SessionInfo> out;
  absl::MutexLock lock(&state_->sessions_mu_);
  for (const Session& s : state_->incoming_) {
    SessionInfo info{s.name, true, s.retrieved, {}, s.file_set.block_set.nblocks()};
    for (const auto& f : s.file_set.files) {
      info.files.push_back({f->token, f->fh->compatible, f->retrieve_status, f->file != nullptr});
    }
    out.push_back(std::move(info));
  }
  return out;
}

uint64_t Luo::session_blocks() const {
  absl::MutexLock lock(&state_->sessions_mu_);
  return state_->outgoing_blocks_.nblocks();
}

}  // namespace khosim::luo

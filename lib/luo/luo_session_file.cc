// The session file: its operations (release, the session ioctls) and how
// a session gets one. The ioctls copy their argument in by its size field
// (extensible structs), check that the command suits the session's kind
// (incoming or outgoing), and answer with at most what userspace asked for.
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "khosim/linux/err.h"
#include "khosim/linux/uaccess.h"
#include "khosim/uapi/liveupdate.h"
#include "luo_session.h"
#include "luo_state.h"

namespace khosim::luo {
namespace {

const struct file_operations kSessionFops = {
    .owner = nullptr,
    .open = nullptr,
    .release = [](struct inode*, struct file* f) -> int {
      return LuoState::Current().sessions().Release(static_cast<Session*>(f->private_data));
    },
    .unlocked_ioctl = [](struct file* f, unsigned int cmd, unsigned long arg) -> long {
      return LuoState::Current().sessions().Ioctl(static_cast<Session*>(f->private_data), cmd, arg);
    },
};

}  // namespace

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

long Sessions::Ioctl(Session* session, unsigned int cmd, unsigned long arg) {
  const unsigned int nr = _IOC_NR(cmd);
  if (nr < LIVEUPDATE_CMD_SESSION_BASE || nr - LIVEUPDATE_CMD_SESSION_BASE >= kSessionOpCount) {
    return -EINVAL;
  }
  void* ubuf = u64_to_user_ptr(arg);
  uint32_t user_size = 0;
  if (copy_from_user(&user_size, ubuf, sizeof(user_size)) != 0) return -EFAULT;
  const SessionOp op = OpFor(nr - LIVEUPDATE_CMD_SESSION_BASE, svc_.luo.Is73());
  if (op.cmd != cmd) return -ENOIOCTLCMD;
  const bool kind_ok =
      op.kind == SessionKind::kAll || (op.kind == SessionKind::kIncoming) == session->retrieved;
  if (!kind_ok) return -EINVAL;
  if (user_size < op.min_size) return -EINVAL;
  SessionCmdBuffer buf;
  std::memset(&buf, 0, sizeof(buf));
  if (int err = copy_struct_from_user(&buf, op.size, ubuf, user_size); err != 0) return err;
  if (!EnterCall("ioctl on session", session)) return -ERESTARTSYS;

  auto respond = [&](size_t kernel_size) -> int {
    return copy_to_user(ubuf, &buf, std::min<size_t>(user_size, kernel_size)) != 0 ? -EFAULT : 0;
  };

  switch (nr) {
    case LIVEUPDATE_CMD_SESSION_PRESERVE_FD: {
      int err = 0;
      {
        HazardLock lock(session->mutex, svc_.luo.ctx(), "session mutex");
        err = session->files.Preserve(buf.preserve.token, buf.preserve.fd);
      }
      if (err != 0) return err;
      err = respond(sizeof(buf.preserve));
      if (err != 0) {
        svc_.luo.ctx().Log(
            "luo: warning: the file was preserved, but the reply to userspace failed");
      }
      return err;
    }
    case LIVEUPDATE_CMD_SESSION_RETRIEVE_FD: {
      buf.retrieve.fd = get_unused_fd_flags(O_CLOEXEC);
      if (buf.retrieve.fd < 0) return buf.retrieve.fd;
      struct file* file = nullptr;
      int err = 0;
      {
        HazardLock lock(session->mutex, svc_.luo.ctx(), "session mutex");
        err = session->files.Retrieve(buf.retrieve.token, &file);
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
      if (svc_.luo.Is73() && buf.finish.reserved != 0) return -EINVAL;
      int err = 0;
      {
        HazardLock lock(session->mutex, svc_.luo.ctx(), "session mutex");
        err = session->files.FinishAll();
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

}  // namespace khosim::luo

// /dev/liveupdate (see the header).
#include "luo_device.h"

#include <algorithm>
#include <cerrno>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "khosim/linux/uaccess.h"
#include "khosim/uapi/liveupdate.h"
#include "luo_state.h"

namespace khosim::luo {
namespace {

const struct file_operations kLiveupdateFops = {
    .owner = nullptr,
    .open = [](struct inode*, struct file*) -> int { return LuoState::Current().device().Open(); },
    .release = [](struct inode*, struct file*) -> int {
      LuoState::Current().device().Release();
      return 0;
    },
    .unlocked_ioctl = [](struct file*, unsigned int cmd, unsigned long arg) -> long {
      return LuoState::Current().device().Ioctl(cmd, arg);
    },
};

struct DeviceOp {
  unsigned int size;
  unsigned int min_size;
  unsigned int cmd;
};

// Indexed by _IOC_NR.
constexpr DeviceOp kDeviceOps[] = {
    {sizeof(liveupdate_ioctl_create_session), sizeof(liveupdate_ioctl_create_session),
     LIVEUPDATE_IOCTL_CREATE_SESSION},
    {sizeof(liveupdate_ioctl_retrieve_session), sizeof(liveupdate_ioctl_retrieve_session),
     LIVEUPDATE_IOCTL_RETRIEVE_SESSION},
};

}  // namespace

const struct file_operations* LuoDevice::Fops() { return &kLiveupdateFops; }

int LuoDevice::Open() {
  bool expected = false;
  if (!in_use_.compare_exchange_strong(expected, true)) return -EBUSY;
  int err = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!deserialize_done_) {
      deserialize_done_ = true;
      deserialize_error_ = sessions_.Deserialize();
      if (deserialize_error_ != 0) {
        luo_.ctx().Log(absl::StrCat("luo: error: deserializing incoming sessions failed: ",
                                    deserialize_error_));
      }
    }
    err = deserialize_error_;
  }
  if (err != 0) {
    in_use_.store(false);
    return -EIO;
  }
  return 0;
}

void LuoDevice::Release() { in_use_.store(false); }

long LuoDevice::Ioctl(unsigned int cmd, unsigned long arg) {
  const unsigned int nr = _IOC_NR(cmd);
  if (nr >= std::size(kDeviceOps)) return -EINVAL;
  void* ubuf = u64_to_user_ptr(arg);
  uint32_t user_size = 0;
  if (copy_from_user(&user_size, ubuf, sizeof(user_size)) != 0) return -EFAULT;
  const DeviceOp& op = kDeviceOps[nr];
  if (op.cmd != cmd) return -ENOIOCTLCMD;
  if (user_size < op.min_size) return -EINVAL;
  // Both commands share one layout: {size, fd out, name in}.
  liveupdate_ioctl_create_session buf;
  static_assert(sizeof(liveupdate_ioctl_create_session) ==
                sizeof(liveupdate_ioctl_retrieve_session));
  if (int err = copy_struct_from_user(&buf, op.size, ubuf, user_size); err != 0) return err;

  buf.fd = get_unused_fd_flags(O_CLOEXEC);
  if (buf.fd < 0) return buf.fd;
  struct file* file = nullptr;
  const int err = nr == LIVEUPDATE_CMD_CREATE_SESSION ? sessions_.Create(buf.name, &file)
                                                      : sessions_.Retrieve(buf.name, &file);
  if (err != 0) {
    put_unused_fd(buf.fd);
    return err;
  }
  if (copy_to_user(ubuf, &buf, std::min<size_t>(user_size, op.size)) != 0) {
    // The new session file goes away with its only reference: an outgoing
    // session is destroyed, a retrieved one finished.
    fput(file);
    put_unused_fd(buf.fd);
    return -EFAULT;
  }
  fd_install(buf.fd, file);
  return 0;
}

int LuoDevice::deserialize_error() const {
  absl::MutexLock lock(&mu_);
  return deserialize_error_;
}

bool LuoDevice::deserialized() const {
  absl::MutexLock lock(&mu_);
  return deserialize_done_;
}

}  // namespace khosim::luo

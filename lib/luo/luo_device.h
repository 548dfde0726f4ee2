// /dev/liveupdate: one opener at a time; the first open deserializes the
// previous kernel's sessions, once, and latches its error (every later
// open then fails with -EIO); the device ioctls create and retrieve
// sessions.
#ifndef KHOSIM_LIB_LUO_LUO_DEVICE_H_
#define KHOSIM_LIB_LUO_LUO_DEVICE_H_

#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "khosim/linux/fs.h"
#include "luo_context.h"
#include "luo_session.h"

namespace khosim::luo {

class LuoDevice {
 public:
  LuoDevice(LuoContext& luo, Sessions& sessions) : luo_(luo), sessions_(sessions) {}
  LuoDevice(const LuoDevice&) = delete;
  LuoDevice& operator=(const LuoDevice&) = delete;

  // The device's file operations, to register as misc device "liveupdate".
  static const struct file_operations* Fops();

  // 0; -EBUSY (opened already), -EIO (the incoming sessions did not
  // deserialize).
  int Open() ABSL_LOCKS_EXCLUDED(mu_);
  void Release();
  // CREATE_SESSION / RETRIEVE_SESSION: -EINVAL (unknown nr, size below the
  // minimum), -ENOIOCTLCMD, -EFAULT, -E2BIG, the fd allocation's or the
  // session's error.
  long Ioctl(unsigned int cmd, unsigned long arg);

  // 0 until the first open; then 0 or the latched deserialization errno.
  int deserialize_error() const ABSL_LOCKS_EXCLUDED(mu_);
  bool deserialized() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  LuoContext& luo_;
  Sessions& sessions_;
  std::atomic<bool> in_use_{false};
  mutable absl::Mutex mu_;
  bool deserialize_done_ ABSL_GUARDED_BY(mu_) = false;
  int deserialize_error_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_LUO_DEVICE_H_

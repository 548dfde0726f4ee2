// HazardMutex: a kernel mutex of LUO's that reports a self-deadlock (the
// owning thread locking it again, which would hang the kernel) as a WARN
// with site "luo-hazard: <what>" instead of hanging.
//
// For the thread-safety analysis a HazardLock always leaves the calling
// thread holding the mutex, which is true: when held() is false, an outer
// frame of the same thread holds it. Only the unlock is conditional.
#ifndef KHOSIM_LIB_LUO_HAZARD_MUTEX_H_
#define KHOSIM_LIB_LUO_HAZARD_MUTEX_H_

#include <atomic>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"

namespace khosim::luo {

class ABSL_LOCKABLE HazardMutex {
 public:
  // False (and nothing taken) when this thread already holds it, after a
  // WARN naming |what|.
  bool Lock(KernelContext& ctx, absl::string_view what) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void Unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  bool HeldByCurrentThread() const { return owner_.load() == std::this_thread::get_id(); }

 private:
  absl::Mutex mu_;
  std::atomic<std::thread::id> owner_{};
};

class ABSL_SCOPED_LOCKABLE HazardLock {
 public:
  HazardLock(HazardMutex& mu, KernelContext& ctx, absl::string_view what)
      ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu), held_(mu.Lock(ctx, what)) {}
  ~HazardLock() ABSL_UNLOCK_FUNCTION() {
    if (held_) mu_.Unlock();
  }
  HazardLock(const HazardLock&) = delete;
  HazardLock& operator=(const HazardLock&) = delete;
  // False when an outer frame of this thread holds the lock already.
  bool held() const { return held_; }

 private:
  HazardMutex& mu_;
  const bool held_;
};

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_HAZARD_MUTEX_H_

// SpinLockGuard: holds a kernel-face spinlock_t (khosim/linux/spinlock.h)
// for a C++ scope, with the thread-safety annotations that let clang check
// the state the lock guards.
#ifndef KHOSIM_BASE_SPINLOCK_GUARD_H_
#define KHOSIM_BASE_SPINLOCK_GUARD_H_

#include "absl/base/thread_annotations.h"
#include "khosim/linux/spinlock.h"

namespace khosim {

class ABSL_SCOPED_LOCKABLE SpinLockGuard {
 public:
  explicit SpinLockGuard(spinlock_t* lock) ABSL_EXCLUSIVE_LOCK_FUNCTION(lock) : lock_(lock) {
    spin_lock(lock_);
  }
  ~SpinLockGuard() ABSL_UNLOCK_FUNCTION() { spin_unlock(lock_); }
  SpinLockGuard(const SpinLockGuard&) = delete;
  SpinLockGuard& operator=(const SpinLockGuard&) = delete;

 private:
  spinlock_t* const lock_;
};

}  // namespace khosim

#endif  // KHOSIM_BASE_SPINLOCK_GUARD_H_

// Kernel-face spinlocks (<linux/spinlock.h>): a plain C word, so a struct
// embedding one needs no constructor or destructor (kzalloc'd memory is an
// unlocked lock). Simulated kernel code never sleeps; a waiter spins,
// yielding the host CPU between tries. Not recursive: a holder that takes
// it again spins forever, as in the kernel.
#ifndef KHOSIM_LINUX_SPINLOCK_H_
#define KHOSIM_LINUX_SPINLOCK_H_

#include <sched.h>

#include "khosim/linux/compiler.h"

typedef struct __lock_type("spinlock") spinlock {
  int locked;
}
spinlock_t;

#define __SPIN_LOCK_UNLOCKED(name) \
  { 0 }
#define DEFINE_SPINLOCK(name) spinlock_t name = __SPIN_LOCK_UNLOCKED(name)

static inline void spin_lock_init(spinlock_t* lock) {
  __atomic_store_n(&lock->locked, 0, __ATOMIC_RELAXED);
}

static inline bool spin_trylock(spinlock_t* lock)
    __cond_acquires(true, lock) __no_context_analysis {
  return !__atomic_exchange_n(&lock->locked, 1, __ATOMIC_ACQUIRE);
}

static inline void spin_lock(spinlock_t* lock) __acquires(lock) __no_context_analysis {
  while (__atomic_exchange_n(&lock->locked, 1, __ATOMIC_ACQUIRE)) {
    while (__atomic_load_n(&lock->locked, __ATOMIC_RELAXED)) sched_yield();
  }
}

static inline void spin_unlock(spinlock_t* lock) __releases(lock) __no_context_analysis {
  __atomic_store_n(&lock->locked, 0, __ATOMIC_RELEASE);
}

static inline bool spin_is_locked(const spinlock_t* lock) {
  return __atomic_load_n(&lock->locked, __ATOMIC_RELAXED) != 0;
}

#endif  // KHOSIM_LINUX_SPINLOCK_H_

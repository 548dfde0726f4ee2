// Kernel-face atomics (<linux/atomic.h>) over atomic_t and atomic_long_t,
// ordered as the kernel orders them: atomic_read / atomic_set are relaxed
// (READ_ONCE / WRITE_ONCE), the _acquire / _release variants order, and
// every operation that returns a value is fully ordered.
#ifndef KHOSIM_LINUX_ATOMIC_H_
#define KHOSIM_LINUX_ATOMIC_H_

#include "khosim/linux/types.h"

#define ATOMIC_INIT(i) \
  { (i) }

static inline int atomic_read(const atomic_t* v) {
  return __atomic_load_n(&v->counter, __ATOMIC_RELAXED);
}
static inline int atomic_read_acquire(const atomic_t* v) {
  return __atomic_load_n(&v->counter, __ATOMIC_ACQUIRE);
}
static inline void atomic_set(atomic_t* v, int i) {
  __atomic_store_n(&v->counter, i, __ATOMIC_RELAXED);
}
static inline void atomic_set_release(atomic_t* v, int i) {
  __atomic_store_n(&v->counter, i, __ATOMIC_RELEASE);
}
// The value before the operation.
static inline int atomic_fetch_add(int i, atomic_t* v) {
  return __atomic_fetch_add(&v->counter, i, __ATOMIC_SEQ_CST);
}
static inline int atomic_fetch_sub(int i, atomic_t* v) {
  return __atomic_fetch_sub(&v->counter, i, __ATOMIC_SEQ_CST);
}
// The value after the operation.
static inline int atomic_add_return(int i, atomic_t* v) {
  return __atomic_add_fetch(&v->counter, i, __ATOMIC_SEQ_CST);
}
static inline int atomic_sub_return(int i, atomic_t* v) {
  return __atomic_sub_fetch(&v->counter, i, __ATOMIC_SEQ_CST);
}
static inline void atomic_inc(atomic_t* v) { __atomic_fetch_add(&v->counter, 1, __ATOMIC_RELAXED); }
static inline void atomic_dec(atomic_t* v) { __atomic_fetch_sub(&v->counter, 1, __ATOMIC_RELAXED); }
static inline int atomic_inc_return(atomic_t* v) { return atomic_add_return(1, v); }
static inline int atomic_dec_return(atomic_t* v) { return atomic_sub_return(1, v); }
static inline bool atomic_dec_and_test(atomic_t* v) { return atomic_dec_return(v) == 0; }

static inline long atomic_long_read(const atomic_long_t* v) {
  return __atomic_load_n(&v->counter, __ATOMIC_RELAXED);
}
static inline void atomic_long_set(atomic_long_t* v, long i) {
  __atomic_store_n(&v->counter, i, __ATOMIC_RELAXED);
}
static inline long atomic_long_fetch_add(long i, atomic_long_t* v) {
  return __atomic_fetch_add(&v->counter, i, __ATOMIC_SEQ_CST);
}
static inline long atomic_long_fetch_sub(long i, atomic_long_t* v) {
  return __atomic_fetch_sub(&v->counter, i, __ATOMIC_SEQ_CST);
}
static inline long atomic_long_add_return(long i, atomic_long_t* v) {
  return __atomic_add_fetch(&v->counter, i, __ATOMIC_SEQ_CST);
}
static inline long atomic_long_sub_return(long i, atomic_long_t* v) {
  return __atomic_sub_fetch(&v->counter, i, __ATOMIC_SEQ_CST);
}
static inline void atomic_long_inc(atomic_long_t* v) {
  __atomic_fetch_add(&v->counter, 1, __ATOMIC_RELAXED);
}
static inline void atomic_long_dec(atomic_long_t* v) {
  __atomic_fetch_sub(&v->counter, 1, __ATOMIC_RELAXED);
}
static inline long atomic_long_inc_return(atomic_long_t* v) { return atomic_long_add_return(1, v); }
static inline long atomic_long_dec_return(atomic_long_t* v) { return atomic_long_sub_return(1, v); }
// Compare-and-exchange: true (and *v = new_value) if *v was *old; else
// false with *old updated to the current value.
static inline bool atomic_long_try_cmpxchg(atomic_long_t* v, long* old, long new_value) {
  return __atomic_compare_exchange_n(&v->counter, old, new_value, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST);
}

#endif  // KHOSIM_LINUX_ATOMIC_H_

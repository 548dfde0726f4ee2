// Kernel-face compiler helpers (<linux/compiler.h>, <linux/compiler_attributes.h>),
// and KHOSIM_SITE, the "file:line" every WARN, BUG and panic is counted by.
#ifndef KHOSIM_LINUX_COMPILER_H_
#define KHOSIM_LINUX_COMPILER_H_

#include <cstddef>

#ifndef __packed
#define __packed __attribute__((__packed__))
#endif
#ifndef __aligned
#define __aligned(x) __attribute__((__aligned__(x)))
#endif
#ifndef __must_check
#define __must_check __attribute__((__warn_unused_result__))
#endif
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define container_of(ptr, type, member) \
  (reinterpret_cast<type*>(reinterpret_cast<char*>(ptr) - offsetof(type, member)))

// Lock annotations (the kernel's compiler-based context analysis): checked
// by clang's -Wthread-safety, nothing for other compilers. A lock type is
// declared with __lock_type("name"); state it protects with __guarded_by.
#if defined(__clang__)
#define __lock_type(name) __attribute__((capability(name)))
#define __guarded_by(lock) __attribute__((guarded_by(lock)))
#define __acquires(lock) __attribute__((acquire_capability(lock)))
#define __releases(lock) __attribute__((release_capability(lock)))
#define __must_hold(lock) __attribute__((requires_capability(lock)))
#define __cond_acquires(ret, lock) __attribute__((try_acquire_capability(ret, lock)))
// A lock primitive's own body, which the analysis cannot follow.
#define __no_context_analysis __attribute__((no_thread_safety_analysis))
#else
#define __lock_type(name)
#define __guarded_by(lock)
#define __acquires(lock)
#define __releases(lock)
#define __must_hold(lock)
#define __cond_acquires(ret, lock)
#define __no_context_analysis
#endif

#define KHOSIM_STRINGIFY_INNER(x) #x
#define KHOSIM_STRINGIFY(x) KHOSIM_STRINGIFY_INNER(x)
#define KHOSIM_SITE __FILE__ ":" KHOSIM_STRINGIFY(__LINE__)

#endif  // KHOSIM_LINUX_COMPILER_H_

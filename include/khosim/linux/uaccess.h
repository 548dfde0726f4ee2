// Kernel-face user-memory access. A "user pointer" is a host address in the
// simulated process (the ioctl argument as userspace passed it). An access
// faults when the range touches the first page of the address space (NULL
// and small integers, as an unmapped zero page would) or when the fault
// points "copy_from_user" / "copy_to_user" fire.
#ifndef KHOSIM_LINUX_UACCESS_H_
#define KHOSIM_LINUX_UACCESS_H_

#include <cstddef>
#include <cstdint>

#define __user

// Bytes NOT copied: 0 on success, n on a fault (nothing is copied then).
unsigned long copy_from_user(void* to, const void __user* from, unsigned long n);
unsigned long copy_to_user(void __user* to, const void* from, unsigned long n);

// Copies a NUL-terminated string of at most |count| bytes: its length
// without the NUL, |count| if none was found within (dst is then not
// terminated), or -EFAULT (one fault check for the whole string).
long strncpy_from_user(char* dst, const char __user* src, long count);

// Extensible-struct copy-in: |usize| bytes from userspace into a |ksize|
// kernel struct. usize < ksize: the rest is zeroed; usize > ksize: the
// extra user bytes must all be zero, else -E2BIG. -EFAULT on a fault.
int copy_struct_from_user(void* dst, size_t ksize, const void __user* src, size_t usize);

static inline void __user* u64_to_user_ptr(uint64_t v) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(v));
}

#endif  // KHOSIM_LINUX_UACCESS_H_

// Kernel-face integer and atomic types (<linux/types.h>). A handler ported
// to the kernel replaces <khosim/linux/X.h> with <linux/X.h>.
#ifndef KHOSIM_LINUX_TYPES_H_
#define KHOSIM_LINUX_TYPES_H_

#include <cstddef>
#include <cstdint>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;
typedef uint64_t phys_addr_t;
typedef unsigned long pgoff_t;

// Plain counters; every access goes through linux/atomic.h.
typedef struct {
  int counter;
} atomic_t;
typedef struct {
  long counter;
} atomic_long_t;

#define NUMA_NO_NODE (-1)

#endif  // KHOSIM_LINUX_TYPES_H_

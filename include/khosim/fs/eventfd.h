// eventfd: the C++ face of the simulated kernel's eventfd files. The
// syscall is Process::Eventfd (khosim/fs/vfs.h); drivers use the kernel
// face, khosim/linux/eventfd.h.
//
// An eventfd is a u64 counter behind an anonymous file, shown as
// "anon_inode:[eventfd]", open O_RDWR (plus O_NONBLOCK with EFD_NONBLOCK,
// as fcntl(F_GETFL) shows). Userspace moves 8-byte values, native u64s
// in host byte order:
//   read(2)   count < 8 -> -EINVAL; counter 0 -> -EAGAIN. Otherwise it
//             stores 8 bytes and returns 8: the counter, which drops to 0,
//             or with EFD_SEMAPHORE the value 1, the counter dropping by 1.
//             A destination that faults -> -EFAULT, the counter already
//             consumed (as in the kernel).
//   write(2)  count < 8 -> -EINVAL; a source that faults -> -EFAULT; the
//             value 0xffffffffffffffff -> -EINVAL; a value that would take
//             the counter above 0xfffffffffffffffe -> -EAGAIN. Otherwise it
//             adds the value and returns 8. Bytes past the first 8 are
//             ignored.
//   lseek(2)  changes nothing and returns the file position (0).
//   fcntl(2)  F_GETFL / F_GETFD / F_SETFD as for any file. The simulator's
//             VFS has no generic F_SETFL, so O_NONBLOCK cannot be toggled
//             after creation (F_SETFL -> -EINVAL); see below for why that
//             changes no result.
//
// Simulator difference, blocking eventfds: where the kernel puts a reader
// (counter 0) or a writer (counter too full) of an eventfd without
// O_NONBLOCK to sleep until some other task writes or reads, the
// simulator fails the call at once with -EAGAIN, exactly as with
// EFD_NONBLOCK. A syscall of a simulated process runs to completion on
// the calling thread and the simulator has no scheduler that could run a
// waker meanwhile, so the sleep would never end: a hang would be the only
// alternative. Each such call records the trace event
// fs/eventfd_would_block (args: op "read" or "write"), so a test can tell
// it from a real -EAGAIN of a non-blocking eventfd. Every call the kernel
// completes without sleeping behaves exactly as in the kernel.
//
// Lifetimes: see khosim/linux/eventfd.h (the context is refcounted, the
// file holds one reference, and nothing outlives the kernel).
#ifndef KHOSIM_FS_EVENTFD_H_
#define KHOSIM_FS_EVENTFD_H_

#include <cstdint>

#include "khosim/linux/eventfd.h"
#include "khosim/linux/fs.h"

namespace khosim::fs {

// What /proc/<pid>/fdinfo/<fd> shows for an eventfd.
struct EventfdInfo {
  uint64_t count = 0;      // "eventfd-count"
  bool semaphore = false;  // "eventfd-semaphore"
};

// The state of the eventfd behind |file|, read without consuming
// anything. False (and *out untouched) when |file| is not an eventfd.
bool EventfdFdinfo(struct file* file, EventfdInfo* out);
// The counter of |ctx| (on which the caller holds a reference), not
// consumed.
uint64_t EventfdCount(struct eventfd_ctx* ctx);
// References held on |ctx|: the file's while it exists, plus one per
// eventfd_ctx_fdget / eventfd_ctx_fileget not yet put.
long EventfdRefs(const struct eventfd_ctx* ctx);

}  // namespace khosim::fs

#endif  // KHOSIM_FS_EVENTFD_H_

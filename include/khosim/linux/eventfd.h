// Kernel-face eventfd (<linux/eventfd.h>): what a driver calls to notify
// userspace through an eventfd userspace handed it (VFIO's interrupt
// triggers, KVM's irqfd, vhost's call fds): look the eventfd context up by
// fd or file, keep a reference, add to its counter, drop the reference.
// The eventfd2(2) syscall is khosim::fs::Process::Eventfd; what read(2)
// and write(2) do, and the C++ accessors tests use, are in
// khosim/fs/eventfd.h.
//
// References (the kernel's kref): the eventfd file holds one reference on
// its context; eventfd_ctx_fdget / eventfd_ctx_fileget each take another,
// which the caller gives back with eventfd_ctx_put. A context stays valid
// while any reference is held, so a driver may keep signalling after
// userspace closed every fd of the eventfd (nobody reads the counter any
// more, but nothing is freed under the driver). The last put frees it.
//
// Kernel death (kexec, panic): the context is slab memory of its kernel
// (khosim/linux/slab.h). A file still open drops its reference when it is
// freed, without release; a driver may drop its own references from its
// file's f_free hook, which runs before the slab is torn down; whatever is
// still referenced then is freed with the kernel's slab. No reference
// crosses the kexec: a driver in the next kernel must look the eventfd up
// again from an fd of its own kernel.
//
// Context: eventfd_ctx_fdget acts on `current`, the process whose syscall
// is running (see khosim/linux/fs.h); the other calls need no process.
// The counter is guarded by a spinlock, so eventfd_signal may race with
// userspace reads and writes; nothing here sleeps.
#ifndef KHOSIM_LINUX_EVENTFD_H_
#define KHOSIM_LINUX_EVENTFD_H_

#include <fcntl.h>

#include "khosim/linux/fs.h"
#include "khosim/linux/types.h"

// eventfd2(2)'s flags (<uapi/linux/eventfd.h>). The host's <sys/eventfd.h>
// defines the same values; whichever comes first wins.
#ifndef EFD_SEMAPHORE
#define EFD_SEMAPHORE (1 << 0)
#endif
#ifndef EFD_CLOEXEC
#define EFD_CLOEXEC O_CLOEXEC
#endif
#ifndef EFD_NONBLOCK
#define EFD_NONBLOCK O_NONBLOCK
#endif
// The flags that are also file or fd flags, and every valid flag.
#define EFD_SHARED_FCNTL_FLAGS (O_CLOEXEC | O_NONBLOCK)
#define EFD_FLAGS_SET (EFD_SHARED_FCNTL_FLAGS | EFD_SEMAPHORE)

struct eventfd_ctx;

// The context of the eventfd at |fd| in the calling process, with a new
// reference. ERR_PTR(-EBADF) when |fd| is not open (also with no current
// process, which WARNs as the fd helpers do), ERR_PTR(-EINVAL) when it is
// open on something other than an eventfd.
struct eventfd_ctx* eventfd_ctx_fdget(int fd);
// The context behind |file| with a new reference; ERR_PTR(-EINVAL) when
// |file| is not an eventfd. The caller holds a reference on |file|.
struct eventfd_ctx* eventfd_ctx_fileget(struct file* file);
// Drops one reference; the last one frees the context. Every put must
// match a get (the file's own reference is put by the file): an extra put
// frees the context under its other holders, as in the kernel.
void eventfd_ctx_put(struct eventfd_ctx* ctx);
// Adds 1 to the counter, as a write of 1 would, except that it never
// fails: at ULLONG_MAX the counter stays where it is (the state the
// kernel reports to poll(2) as EPOLLERR; every write(2) then gets
// -EAGAIN, and a read(2) without EFD_SEMAPHORE returns ULLONG_MAX).
void eventfd_signal(struct eventfd_ctx* ctx);

#endif  // KHOSIM_LINUX_EVENTFD_H_

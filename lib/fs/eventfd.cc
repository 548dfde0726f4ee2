// eventfd: a counter behind an anonymous file (see khosim/fs/eventfd.h for
// the syscalls, khosim/linux/eventfd.h for the kernel face).
//
// Lifecycle of one eventfd:
//   Process::Eventfd   checks the flags, takes the context from the slab
//                      (one reference: the file's), reserves an fd, makes
//                      the anonymous file and installs it;
//   read / write       move the counter under the context's spinlock;
//   fdget / fileget    a driver takes references, eventfd_signal adds 1,
//                      eventfd_ctx_put gives a reference back;
//   last fput          release drops the file's reference. If the kernel
//                      died with the file open, release does not run and
//                      f_free drops it instead;
//   last put           kfree. A context a driver never put goes with its
//                      kernel's slab (mm::Mm's teardown).
#include "khosim/fs/eventfd.h"

#include <cerrno>
#include <climits>
#include <cstdint>

#include "khosim/base/kernel_context.h"
#include "khosim/base/spinlock_guard.h"
#include "khosim/fs/vfs.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/spinlock.h"
#include "khosim/linux/uaccess.h"

struct eventfd_ctx {
  // The kref: the file's reference plus one per fdget / fileget.
  atomic_long_t refs;
  // The wait queue's lock in the kernel; here it guards only the counter.
  spinlock_t lock;
  u64 count __guarded_by(lock);
  // The EFD_* flags eventfd2 was given (only EFD_SEMAPHORE is read back:
  // O_NONBLOCK is the file's).
  unsigned int flags;
};

namespace khosim::fs {
namespace {

constexpr size_t kValueSize = sizeof(u64);

struct eventfd_ctx* CtxOf(const struct file* file) {
  return static_cast<struct eventfd_ctx*>(file->private_data);
}

// Where the kernel would sleep: see "Simulator difference" in
// khosim/fs/eventfd.h. Called with no lock held.
ssize_t WouldBlock(const struct file* file, const char* op) {
  if ((file->f_flags & O_NONBLOCK) == 0) {
    KernelContext* ctx = CurrentKernelContext();
    if (ctx != nullptr) ctx->Trace("fs", "eventfd_would_block", {{"op", op}});
  }
  return -EAGAIN;
}

ssize_t EventfdRead(struct file* file, char* buf, size_t count, loff_t* /*pos*/) {
  struct eventfd_ctx* ctx = CtxOf(file);
  if (count < kValueSize) return -EINVAL;
  u64 value = 0;
  {
    SpinLockGuard lock(&ctx->lock);
    if (ctx->count != 0) {
      value = (ctx->flags & EFD_SEMAPHORE) != 0 ? 1 : ctx->count;
      ctx->count -= value;
    }
  }
  if (value == 0) return WouldBlock(file, "read");
  if (copy_to_user(buf, &value, kValueSize) != 0) return -EFAULT;
  return static_cast<ssize_t>(kValueSize);
}

ssize_t EventfdWrite(struct file* file, const char* buf, size_t count, loff_t* /*pos*/) {
  struct eventfd_ctx* ctx = CtxOf(file);
  if (count < kValueSize) return -EINVAL;
  u64 value = 0;
  if (copy_from_user(&value, buf, kValueSize) != 0) return -EFAULT;
  if (value == ULLONG_MAX) return -EINVAL;
  bool added = false;
  {
    SpinLockGuard lock(&ctx->lock);
    // Writes keep the counter at most ULLONG_MAX - 1.
    if (ULLONG_MAX - ctx->count > value) {
      ctx->count += value;
      added = true;
    }
  }
  return added ? static_cast<ssize_t>(kValueSize) : WouldBlock(file, "write");
}

// noop_llseek: the position never moves.
loff_t EventfdLlseek(struct file* file, loff_t /*offset*/, int /*whence*/) { return file->f_pos; }

// The kernel died with the file open: give the file's reference back
// (host memory only; the context may outlive it in a driver's hands).
void EventfdFileFree(struct file* file) { eventfd_ctx_put(CtxOf(file)); }

int EventfdRelease(struct inode* /*inode*/, struct file* file) {
  file->f_free = nullptr;  // the reference goes here, not twice
  eventfd_ctx_put(CtxOf(file));
  return 0;
}

const struct file_operations kEventfdFops = {
    .owner = nullptr,
    .open = nullptr,
    .release = EventfdRelease,
    .unlocked_ioctl = nullptr,
    .read = EventfdRead,
    .write = EventfdWrite,
    .llseek = EventfdLlseek,
    .fallocate = nullptr,
    .setsize = nullptr,
    .fcntl = nullptr,
};

}  // namespace

int Process::Eventfd(unsigned int initval, int flags) {
  ScopedKernelContext kernel(&vfs_.ctx());
  ScopedCurrentProcess current(*this);
  if (exited()) return -ESRCH;
  if ((flags & ~EFD_FLAGS_SET) != 0) return -EINVAL;
  auto* ctx = static_cast<struct eventfd_ctx*>(kzalloc(sizeof(struct eventfd_ctx), GFP_KERNEL));
  if (ctx == nullptr) return -ENOMEM;
  atomic_long_set(&ctx->refs, 1);
  spin_lock_init(&ctx->lock);
  {
    SpinLockGuard lock(&ctx->lock);
    ctx->count = initval;
  }
  ctx->flags = static_cast<unsigned int>(flags);
  const int file_flags = O_RDWR | (flags & EFD_SHARED_FCNTL_FLAGS);
  const int fd = get_unused_fd_flags(static_cast<unsigned int>(file_flags));
  if (fd < 0) {
    kfree(ctx);
    return fd;
  }
  struct file* file = anon_inode_getfile("[eventfd]", &kEventfdFops, ctx, file_flags);
  if (IS_ERR(file)) {
    put_unused_fd(static_cast<unsigned int>(fd));
    kfree(ctx);
    return static_cast<int>(PTR_ERR(file));
  }
  file->f_free = EventfdFileFree;
  fd_install(static_cast<unsigned int>(fd), file);
  return fd;
}

bool EventfdFdinfo(struct file* file, EventfdInfo* out) {
  if (file == nullptr || file->f_op != &kEventfdFops) return false;
  struct eventfd_ctx* ctx = CtxOf(file);
  out->count = EventfdCount(ctx);
  out->semaphore = (ctx->flags & EFD_SEMAPHORE) != 0;
  return true;
}

uint64_t EventfdCount(struct eventfd_ctx* ctx) {
  SpinLockGuard lock(&ctx->lock);
  return ctx->count;
}

long EventfdRefs(const struct eventfd_ctx* ctx) { return atomic_long_read(&ctx->refs); }

}  // namespace khosim::fs

// ---- Kernel face -----------------------------------------------------------

struct eventfd_ctx* eventfd_ctx_fileget(struct file* file) {
  if (file->f_op != &khosim::fs::kEventfdFops) {
    return static_cast<struct eventfd_ctx*>(ERR_PTR(-EINVAL));
  }
  struct eventfd_ctx* ctx = khosim::fs::CtxOf(file);
  const long old = atomic_long_fetch_add(1, &ctx->refs);
  WARN_ON_ONCE(old <= 0);
  return ctx;
}

struct eventfd_ctx* eventfd_ctx_fdget(int fd) {
  struct file* file = fget(static_cast<unsigned int>(fd));
  if (file == nullptr) return static_cast<struct eventfd_ctx*>(ERR_PTR(-EBADF));
  struct eventfd_ctx* ctx = eventfd_ctx_fileget(file);
  fput(file);
  return ctx;
}

void eventfd_ctx_put(struct eventfd_ctx* ctx) {
  const long now = atomic_long_dec_return(&ctx->refs);
  if (WARN_ON_ONCE(now < 0)) return;
  if (now == 0) kfree(ctx);
}

void eventfd_signal(struct eventfd_ctx* ctx) {
  khosim::SpinLockGuard lock(&ctx->lock);
  if (ctx->count < ULLONG_MAX) ++ctx->count;
}

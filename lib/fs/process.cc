// Process: an fd table and the syscalls that act on it.
//
// fd slots hold one file reference each. A reserved slot (get_unused_fd)
// holds no file until fd_install; it counts against RLIMIT_NOFILE and is
// skipped by lookups, as in the kernel. Every path that drops a file takes
// it out of the table under the lock and calls fput after unlocking, so
// release callbacks may re-enter the fd layer.
#include <algorithm>
#include <cerrno>
#include <utility>

#include "khosim/fs/vfs.h"
#include "khosim/linux/bug.h"

namespace khosim::fs {
namespace {

thread_local Process* current_process = nullptr;

}  // namespace

Process* CurrentProcess() { return current_process; }

// A syscall runs in its process's kernel with the process as `current`.
class Process::SyscallScope {
 public:
  explicit SyscallScope(Process& p) : kernel_(&p.vfs_.ctx()), process_(p) {}

 private:
  ScopedKernelContext kernel_;
  ScopedCurrentProcess process_;
};

ScopedCurrentProcess::ScopedCurrentProcess(Process& process) : previous_(current_process) {
  current_process = &process;
}

ScopedCurrentProcess::~ScopedCurrentProcess() { current_process = previous_; }

Process::Process(Vfs& vfs, int pid, std::string name)
    : vfs_(vfs), pid_(pid), name_(std::move(name)) {}

Process::~Process() { Exit(); }

bool Process::exited() const {
  absl::MutexLock lock(&mu_);
  return exited_;
}

int Process::AllocFdLocked(bool cloexec) {
  // Every fd below next_fd_ is in use (the kernel's files->next_fd), so the
  // lowest free fd is the first gap at or after it: appending is
  // O(log n), not a walk of the whole table.
  int fd = next_fd_;
  for (auto it = fds_.lower_bound(fd); it != fds_.end() && it->first == fd; ++it) ++fd;
  if (static_cast<unsigned int>(fd) >= rlimit_nofile_) return -EMFILE;
  fds_.emplace(fd, Slot{nullptr, cloexec});
  next_fd_ = fd + 1;
  return fd;
}

void Process::ForgetFdLocked(int fd) { next_fd_ = std::min(next_fd_, fd); }

struct file* Process::TakeFdLocked(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end() || it->second.file == nullptr) return nullptr;
  struct file* file = it->second.file;
  fds_.erase(it);
  ForgetFdLocked(fd);
  return file;
}

int Process::ReserveFd(unsigned int flags) {
  if (vfs_.ctx().ShouldFail("get_unused_fd")) return -EMFILE;
  absl::MutexLock lock(&mu_);
  if (exited_) return -ESRCH;
  return AllocFdLocked((flags & O_CLOEXEC) != 0);
}

void Process::UnreserveFd(int fd) {
  absl::MutexLock lock(&mu_);
  auto it = fds_.find(fd);
  if (WARN_ON_ONCE(it == fds_.end() || it->second.file != nullptr)) return;
  fds_.erase(it);
  ForgetFdLocked(fd);
}

void Process::InstallFd(int fd, struct file* file) {
  bool installed = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = fds_.find(fd);
    if (it != fds_.end() && it->second.file == nullptr) {
      it->second.file = file;
      installed = true;
    }
  }
  if (WARN_ON_ONCE(!installed)) fput(file);
}

struct file* Process::GetFile(int fd) {
  absl::MutexLock lock(&mu_);
  auto it = fds_.find(fd);
  if (it == fds_.end() || it->second.file == nullptr) return nullptr;
  return get_file(it->second.file);
}

struct file* Process::PeekFile(int fd) const {
  absl::MutexLock lock(&mu_);
  auto it = fds_.find(fd);
  return it == fds_.end() ? nullptr : it->second.file;
}

bool Process::IsCloexec(int fd) const {
  absl::MutexLock lock(&mu_);
  auto it = fds_.find(fd);
  return it != fds_.end() && it->second.cloexec;
}

std::vector<int> Process::OpenFds() const {
  absl::MutexLock lock(&mu_);
  std::vector<int> out;
  for (const auto& [fd, slot] : fds_) {
    if (slot.file != nullptr) out.push_back(fd);
  }
  return out;
}

void Process::SetRlimitNofile(unsigned int limit) {
  absl::MutexLock lock(&mu_);
  rlimit_nofile_ = limit;
}

unsigned int Process::rlimit_nofile() const {
  absl::MutexLock lock(&mu_);
  return rlimit_nofile_;
}

int Process::Open(absl::string_view path, int flags) {
  SyscallScope scope(*this);
  if (exited()) return -ESRCH;
  struct file* file = nullptr;
  int fd = ReserveFd(static_cast<unsigned int>(flags));
  if (fd < 0) return fd;
  const int err = vfs_.OpenDevice(path, flags, &file);
  if (err != 0) {
    UnreserveFd(fd);
    return err;
  }
  InstallFd(fd, file);
  return fd;
}

int Process::Close(int fd) {
  struct file* file = nullptr;
  {
    absl::MutexLock lock(&mu_);
    file = TakeFdLocked(fd);
  }
  if (file == nullptr) return -EBADF;
  SyscallScope scope(*this);
  fput(file);
  return 0;
}

int Process::Dup(int fd) {
  absl::MutexLock lock(&mu_);
  if (exited_) return -ESRCH;
  auto it = fds_.find(fd);
  if (it == fds_.end() || it->second.file == nullptr) return -EBADF;
  struct file* file = it->second.file;
  const int nfd = AllocFdLocked(false);
  if (nfd < 0) return nfd;
  fds_[nfd].file = get_file(file);
  return nfd;
}

int Process::SendFd(int fd, Process& to, int flags) {
  struct file* file = GetFile(fd);
  if (file == nullptr) return -EBADF;
  const int nfd = to.ReserveFd(static_cast<unsigned int>(flags));
  if (nfd < 0) {
    SyscallScope scope(*this);
    fput(file);
    return nfd;
  }
  to.InstallFd(nfd, file);
  return nfd;
}

void Process::CloseMatching(bool only_cloexec) {
  std::vector<struct file*> files;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = fds_.begin(); it != fds_.end();) {
      if (it->second.file != nullptr && (!only_cloexec || it->second.cloexec)) {
        files.push_back(it->second.file);
        ForgetFdLocked(it->first);
        it = fds_.erase(it);
      } else {
        ++it;
      }
    }
  }
  SyscallScope scope(*this);
  for (struct file* file : files) fput(file);
}

void Process::Exit() {
  {
    absl::MutexLock lock(&mu_);
    if (exited_) return;
    exited_ = true;
  }
  CloseMatching(false);
}

void Process::Exec() { CloseMatching(true); }

namespace {

// The fd's file with a reference for the duration of a syscall, or nullptr.
// Constructed inside a SyscallScope, so the final fput runs in the kernel.
class FdRef {
 public:
  FdRef(Process& p, int fd) : file_(p.GetFile(fd)) {}
  ~FdRef() {
    if (file_ != nullptr) fput(file_);
  }
  FdRef(const FdRef&) = delete;
  FdRef& operator=(const FdRef&) = delete;
  struct file* get() const {
    return file_;
  }

 private:
  struct file* file_;
};

}  // namespace

long Process::Ioctl(int fd, unsigned int cmd, unsigned long arg) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  if (ref.get() == nullptr) return -EBADF;
  const struct file_operations* fops = ref.get()->f_op;
  if (fops == nullptr || fops->unlocked_ioctl == nullptr) return -ENOTTY;
  const long ret = fops->unlocked_ioctl(ref.get(), cmd, arg);
  return ret == -ENOIOCTLCMD ? -ENOTTY : ret;
}

ssize_t Process::Read(int fd, void* buf, size_t count) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  struct file* f = ref.get();
  if (f == nullptr || !(f->f_mode & FMODE_READ)) return -EBADF;
  if (f->f_op == nullptr || f->f_op->read == nullptr) return -EINVAL;
  return f->f_op->read(f, static_cast<char*>(buf), count, &f->f_pos);
}

ssize_t Process::Write(int fd, const void* buf, size_t count) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  struct file* f = ref.get();
  if (f == nullptr || !(f->f_mode & FMODE_WRITE)) return -EBADF;
  if (f->f_op == nullptr || f->f_op->write == nullptr) return -EINVAL;
  return f->f_op->write(f, static_cast<const char*>(buf), count, &f->f_pos);
}

ssize_t Process::Pread(int fd, void* buf, size_t count, loff_t offset) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  struct file* f = ref.get();
  if (f == nullptr || !(f->f_mode & FMODE_READ)) return -EBADF;
  if (offset < 0) return -EINVAL;
  if (f->f_op == nullptr || f->f_op->read == nullptr) return -EINVAL;
  return f->f_op->read(f, static_cast<char*>(buf), count, &offset);
}

ssize_t Process::Pwrite(int fd, const void* buf, size_t count, loff_t offset) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  struct file* f = ref.get();
  if (f == nullptr || !(f->f_mode & FMODE_WRITE)) return -EBADF;
  if (offset < 0) return -EINVAL;
  if (f->f_op == nullptr || f->f_op->write == nullptr) return -EINVAL;
  return f->f_op->write(f, static_cast<const char*>(buf), count, &offset);
}

loff_t Process::Lseek(int fd, loff_t offset, int whence) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  struct file* f = ref.get();
  if (f == nullptr) return -EBADF;
  if (f->f_op != nullptr && f->f_op->llseek != nullptr) return f->f_op->llseek(f, offset, whence);
  // The generic rule for files without their own llseek.
  loff_t base = 0;
  switch (whence) {
    case SEEK_SET:
      base = 0;
      break;
    case SEEK_CUR:
      base = f->f_pos;
      break;
    case SEEK_END:
      base = f->f_inode != nullptr ? f->f_inode->i_size : 0;
      break;
    default:
      return -EINVAL;
  }
  if (base + offset < 0) return -EINVAL;
  f->f_pos = base + offset;
  return f->f_pos;
}

int Process::Ftruncate(int fd, loff_t length) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  struct file* f = ref.get();
  if (f == nullptr) return -EBADF;
  if (length < 0) return -EINVAL;
  if (!(f->f_mode & FMODE_WRITE)) return -EINVAL;
  if (f->f_op == nullptr || f->f_op->setsize == nullptr) return -EINVAL;
  return f->f_op->setsize(f, length);
}

int Process::Fallocate(int fd, int mode, loff_t offset, loff_t len) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  struct file* f = ref.get();
  if (f == nullptr) return -EBADF;
  if (offset < 0 || len <= 0) return -EINVAL;
  if (!(f->f_mode & FMODE_WRITE)) return -EBADF;
  if (f->f_op == nullptr || f->f_op->fallocate == nullptr) return -EOPNOTSUPP;
  return static_cast<int>(f->f_op->fallocate(f, mode, offset, len));
}

long Process::Fcntl(int fd, unsigned int cmd, unsigned long arg) {
  SyscallScope scope(*this);
  FdRef ref(*this, fd);
  struct file* f = ref.get();
  if (f == nullptr) return -EBADF;
  if (cmd == F_GETFD) return IsCloexec(fd) ? FD_CLOEXEC : 0;
  if (cmd == F_SETFD) {
    absl::MutexLock lock(&mu_);
    auto it = fds_.find(fd);
    if (it == fds_.end()) return -EBADF;
    it->second.cloexec = (arg & FD_CLOEXEC) != 0;
    return 0;
  }
  if (cmd == F_GETFL) return static_cast<long>(f->f_flags);
  if (f->f_op == nullptr || f->f_op->fcntl == nullptr) return -EINVAL;
  return f->f_op->fcntl(f, cmd, arg);
}

}  // namespace khosim::fs

// Vfs and Process: the C++ face of the simulated kernel's file layer.
//
// One Vfs per kernel (KernelSlot::kFs). It owns the simulated processes,
// the /dev nodes drivers register (misc devices) and the accounting of live
// files and inodes, so tests can assert that nothing leaked.
//
// A Process is userspace's side: an fd table and the syscalls tests call.
// Syscalls return what the raw syscall returns in the kernel: a value >= 0,
// or a negative errno (userspace would see -1 and errno). While a syscall
// runs, its process is `current`, which the kernel-face fd helpers
// (get_unused_fd_flags, fd_install, fget) act on.
//
// Process lifecycle: CreateProcess -> syscalls ... -> Exit (closes every
// fd, as process exit does; the Process object stays valid and refuses
// further syscalls with -ESRCH). Exec closes the O_CLOEXEC fds. SendFd is
// SCM_RIGHTS: the receiver gets a new fd on the same struct file. Every
// process dies with its kernel at kexec.
//
// Locking: one mutex per fd table, one for the Vfs registries. File release
// callbacks always run with no fs lock held.
#ifndef KHOSIM_FS_VFS_H_
#define KHOSIM_FS_VFS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"
#include "khosim/linux/fs.h"

namespace khosim::fs {

class Vfs;

class Process {
 public:
  Process(Vfs& vfs, int pid, std::string name);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  int pid() const { return pid_; }
  const std::string& name() const { return name_; }
  bool exited() const;

  // open(2) of a device node "/dev/<name>": -ENOENT when no such node,
  // otherwise the device's open() result. flags: O_RDWR etc., O_CLOEXEC.
  int Open(absl::string_view path, int flags);
  int Close(int fd);
  // dup(2): the lowest free fd, without O_CLOEXEC.
  int Dup(int fd);
  // ioctl(2); -ENOIOCTLCMD from the driver becomes -ENOTTY, no
  // unlocked_ioctl -> -ENOTTY, bad fd -> -EBADF.
  long Ioctl(int fd, unsigned int cmd, unsigned long arg);
  template <typename T>
  long Ioctl(int fd, unsigned int cmd, T* arg) {
    return Ioctl(fd, cmd, reinterpret_cast<unsigned long>(arg));
  }
  ssize_t Read(int fd, void* buf, size_t count);
  ssize_t Write(int fd, const void* buf, size_t count);
  ssize_t Pread(int fd, void* buf, size_t count, loff_t offset);
  ssize_t Pwrite(int fd, const void* buf, size_t count, loff_t offset);
  loff_t Lseek(int fd, loff_t offset, int whence);
  int Ftruncate(int fd, loff_t length);
  int Fallocate(int fd, int mode, loff_t offset, loff_t len);
  long Fcntl(int fd, unsigned int cmd, unsigned long arg);
  // eventfd2(2): a new fd (the lowest free) on an "anon_inode:[eventfd]"
  // file whose counter starts at |initval|. |flags|: EFD_SEMAPHORE,
  // EFD_CLOEXEC (the fd's FD_CLOEXEC), EFD_NONBLOCK (the file's
  // O_NONBLOCK); see khosim/linux/eventfd.h. Errors in the kernel's order:
  // -ESRCH (the process exited), any other flag bit -> -EINVAL, -ENOMEM
  // (fault point "kmalloc"), -EMFILE from the fd table, -ENOMEM (fault
  // point "alloc_file"). read(2) / write(2) semantics are in
  // khosim/fs/eventfd.h. Simulator difference: a read or write that would
  // sleep in the kernel (no EFD_NONBLOCK, counter 0 or too full) fails
  // with -EAGAIN instead, as a non-blocking one does.
  int Eventfd(unsigned int initval, int flags);

  // SCM_RIGHTS: installs the file behind |fd| in |to| (lowest free fd,
  // O_CLOEXEC from |flags|) and returns the receiver's fd or -errno.
  int SendFd(int fd, Process& to, int flags = 0);
  // Process exit: every fd is closed, lowest first.
  void Exit();
  // execve(2): the O_CLOEXEC fds are closed.
  void Exec();
  // RLIMIT_NOFILE (soft): fds at or above it cannot be allocated (-EMFILE).
  // The default is 1024, as on a typical distribution.
  void SetRlimitNofile(unsigned int limit);
  unsigned int rlimit_nofile() const;

  // Userspace does not see these; tests and kernel code do.
  // The file behind |fd| without taking a reference, or nullptr.
  struct file* PeekFile(int fd) const;
  bool IsCloexec(int fd) const;
  std::vector<int> OpenFds() const;

  // Kernel face backends for the current process.
  int ReserveFd(unsigned int flags);
  void UnreserveFd(int fd);
  void InstallFd(int fd, struct file* file);
  struct file* GetFile(int fd);  // new reference or nullptr

 private:
  class SyscallScope;
  struct Slot {
    struct file* file = nullptr;  // nullptr: reserved, not yet installed
    bool cloexec = false;
  };

  int AllocFdLocked(bool cloexec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An fd left the table: the lowest-free hint may move down to it.
  void ForgetFdLocked(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the slot and returns its file (the table's reference).
  struct file* TakeFdLocked(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseMatching(bool only_cloexec);

  Vfs& vfs_;
  const int pid_;
  const std::string name_;
  mutable absl::Mutex mu_;
  std::map<int, Slot> fds_ ABSL_GUARDED_BY(mu_);
  // Every fd below it is in use.
  int next_fd_ ABSL_GUARDED_BY(mu_) = 0;
  unsigned int rlimit_nofile_ ABSL_GUARDED_BY(mu_) = 1024;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
};

// Makes |process| current on this thread for the scope (nests).
class ScopedCurrentProcess {
 public:
  explicit ScopedCurrentProcess(Process& process);
  ~ScopedCurrentProcess();
  ScopedCurrentProcess(const ScopedCurrentProcess&) = delete;
  ScopedCurrentProcess& operator=(const ScopedCurrentProcess&) = delete;

 private:
  Process* previous_;
};

// The process whose syscall is running on this thread, or nullptr.
Process* CurrentProcess();

class Vfs {
 public:
  explicit Vfs(KernelContext& ctx);
  ~Vfs();
  Vfs(const Vfs&) = delete;
  Vfs& operator=(const Vfs&) = delete;

  static Vfs& Current();
  static Vfs* CurrentOrNull();

  KernelContext& ctx() { return ctx_; }

  Process& CreateProcess(absl::string_view name);
  Process* FindProcess(int pid);

  // misc_register: "/dev/<name>" opens a new file on the device's inode
  // with |fops| and private_data |data|, then calls fops->open. -EEXIST for
  // a taken name.
  int RegisterMiscDevice(absl::string_view name, const struct file_operations* fops,
                         void* data = nullptr);
  void DeregisterMiscDevice(absl::string_view name);
  bool HasDevice(absl::string_view name) const;

  // Opens "/dev/<name>" for |process| (Process::Open's backend).
  int OpenDevice(absl::string_view path, int flags, struct file** out);

  unsigned long NextIno() { return next_ino_.fetch_add(1) + 1; }
  // The shared inode behind every anon_inode_getfile file.
  struct inode* anon_inode() {
    return anon_inode_;
  }

  // Accounting for leak checks: files and inodes alive now (the anonymous
  // inode and device inodes included).
  int64_t live_files() const { return live_files_.load(); }
  int64_t live_inodes() const { return live_inodes_.load(); }
  void CountFile(int delta) { live_files_.fetch_add(delta); }
  void CountInode(int delta) { live_inodes_.fetch_add(delta); }

 private:
  KernelContext& ctx_;
  std::atomic<unsigned long> next_ino_{0};
  std::atomic<int64_t> live_files_{0};
  std::atomic<int64_t> live_inodes_{0};
  struct inode* anon_inode_ = nullptr;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Process>> processes_ ABSL_GUARDED_BY(mu_);
  struct Device {
    const struct file_operations* fops;
    struct inode* inode;
    void* data;
  };
  std::map<std::string, Device, std::less<>> devices_ ABSL_GUARDED_BY(mu_);
};

}  // namespace khosim::fs

#endif  // KHOSIM_FS_VFS_H_

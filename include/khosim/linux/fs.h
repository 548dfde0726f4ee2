// Kernel-face files: struct file, struct inode, file_operations, the fd
// helpers a driver uses to hand a new file to userspace, and anonymous
// inodes. The C++ face (processes, fd tables, the syscall entry points) is
// khosim/fs/vfs.h.
//
// Lifetimes follow the kernel's:
//   - a struct file is refcounted (f_count); fd table slots, LUO and any
//     get_file() caller each hold one. The last fput() runs f_op->release
//     and drops the file's inode reference. Unlike the kernel, the final
//     fput runs synchronously in the caller (the kernel defers it to task
//     work; nothing here depends on the difference).
//   - a struct inode is refcounted (i_count); i_nlink counts directory
//     links, so an unlinked file (a memfd) has i_nlink == 0. The last iput()
//     calls i_evict (give back kernel resources: the page cache) and then
//     i_free (free the host object that embeds the inode, e.g. a shmem
//     inode).
//   - when a kernel is torn down (kexec'd away or panicked: BootPhase
//     kDead) its code no longer runs: the last fput / iput then skip
//     release and i_evict and only free host objects. That is what makes
//     "the session fd was still open at kexec" different from "closed".
//
// fd helpers act on the calling process (the simulator's `current`): the
// process whose syscall is running, see fs::Process. Called with no current
// process they WARN and fail with -EBADF.
#ifndef KHOSIM_LINUX_FS_H_
#define KHOSIM_LINUX_FS_H_

#include <fcntl.h>
#include <sys/types.h>

#include "khosim/linux/atomic.h"
#include "khosim/linux/types.h"

struct address_space;
struct file;
struct inode;
struct module;

// loff_t comes from <sys/types.h> (glibc defines it as off64_t).
typedef unsigned int fmode_t;
typedef unsigned short umode_t;

#define FMODE_READ (1U << 0)
#define FMODE_WRITE (1U << 1)

// Kernel-internal return codes that never reach userspace as such.
#define ERESTARTSYS 512
#define ENOIOCTLCMD 515  // the syscall layer turns it into -ENOTTY

// Operations a file implements; NULL means "not supported" (the syscall
// returns the kernel's errno for that case).
struct file_operations {
  struct module* owner;
  int (*open)(struct inode* inode, struct file* file);
  int (*release)(struct inode* inode, struct file* file);
  long (*unlocked_ioctl)(struct file* file, unsigned int cmd, unsigned long arg);
  ssize_t (*read)(struct file* file, char* buf, size_t count, loff_t* pos);
  ssize_t (*write)(struct file* file, const char* buf, size_t count, loff_t* pos);
  loff_t (*llseek)(struct file* file, loff_t offset, int whence);
  long (*fallocate)(struct file* file, int mode, loff_t offset, loff_t len);
  // Simulator hooks for syscalls the kernel routes elsewhere:
  // ftruncate (notify_change -> inode setattr) and fcntl's per-filesystem
  // commands (memfd seals).
  int (*setsize)(struct file* file, loff_t size);
  long (*fcntl)(struct file* file, unsigned int cmd, unsigned long arg);
};

struct inode {
  unsigned long i_ino;
  umode_t i_mode;
  unsigned int i_nlink;
  loff_t i_size;
  const struct file_operations* i_fop;
  void* i_private;
  // The page cache of a regular file (shmem, see linux/shmem_fs.h); NULL
  // for inodes without one.
  struct address_space* i_mapping;
  atomic_long_t i_count;
  // Releases kernel resources (page cache, charges); may be NULL.
  void (*i_evict)(struct inode* inode);
  // Frees the host object that contains this inode; NULL: `delete inode`.
  void (*i_free)(struct inode* inode);
};

struct file {
  atomic_long_t f_count;
  const struct file_operations* f_op;
  struct inode* f_inode;
  unsigned int f_flags;  // O_* open flags (O_CLOEXEC is per fd, not here)
  fmode_t f_mode;
  loff_t f_pos;
  void* private_data;
  // What /proc/<pid>/fd shows, e.g. "anon_inode:[luo_session] vm0"; owned
  // by the file and freed with it.
  const char* f_name;
  // Simulator: frees host memory the file owns (private_data). Runs when
  // the struct file is freed - after release, or instead of it when the
  // kernel is torn down - so host objects never outlive their kernel.
  void (*f_free)(struct file* file);
};

static inline struct inode* file_inode(const struct file* f) { return f->f_inode; }

// References.
struct file* get_file(struct file* f);
void fput(struct file* f);
// The file behind |fd| in the calling process with a new reference, or
// NULL for a bad fd.
struct file* fget(unsigned int fd);
struct inode* ihold(struct inode* inode);
void iput(struct inode* inode);

// A new inode with i_count 1, i_nlink 1 and a fresh i_ino.
struct inode* new_inode_pseudo(umode_t mode);
// A file on |inode| (taking over the caller's inode reference) with f_count
// 1; ERR_PTR(-ENOMEM) on failure (fault point "alloc_file").
struct file* alloc_file_pseudo(struct inode* inode, const char* name, int flags,
                               const struct file_operations* fops);
// A file on the shared anonymous inode: "anon_inode:<name>".
struct file* anon_inode_getfile(const char* name, const struct file_operations* fops, void* priv,
                                int flags);

// fd reservation in the calling process: the lowest free fd, -EMFILE past
// RLIMIT_NOFILE (fault point "get_unused_fd"). flags: O_CLOEXEC.
int get_unused_fd_flags(unsigned int flags);
void put_unused_fd(unsigned int fd);
// Publishes |file| at a reserved |fd|, consuming the caller's reference.
void fd_install(unsigned int fd, struct file* file);

#endif  // KHOSIM_LINUX_FS_H_

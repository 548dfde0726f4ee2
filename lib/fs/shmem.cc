// shmem: the page cache of tmpfs / memfd inodes, their file operations, the
// per-kernel shmem state (ShmemSb) and shared mappings.
//
// Lifecycle of a shmem inode:
//   ShmemFileSetup (memfd_create, memfd_alloc_file, shmem_file_setup)
//     -> a ShmemInode (i_count 1) and a file on it;
//   read / write / fault / fallocate / shmem_get_folio / memfd_pin_folios
//     fill the cache with zeroed folios charged to the allocating memcg;
//     shmem_add_to_page_cache inserts folios from outside (memfd_luo
//     retrieve); truncate and hole punch remove them;
//   last iput -> i_evict (Evict: every folio leaves the cache and loses its
//     charge and the cache's reference) -> i_free (the host object).
//   At kernel teardown i_evict is skipped: i_free drops host state only.
//
// ShmemSb is created on first use for a Vfs and lives until that Vfs's
// anonymous inode is freed (the last step of Vfs teardown): the Vfs has no
// slot for per-filesystem state, so the shmem layer chains its teardown onto
// that inode's i_free. It is keyed by the anonymous inode, which is unique
// among live Vfs instances even when a new Vfs reuses a dead one's address.
//
// This file: the file operations, files (memfd_create, tmpfs files) and
// shared mappings. The superblock and memcg accounting are shmem_sb.cc, the
// page cache shmem_inode.cc, read/write/seek/truncate/fallocate/seals
// shmem_io.cc.
#include "khosim/fs/shmem.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/hugetlb.h"
#include "khosim/linux/uaccess.h"
#include "khosim/mm/mm.h"
#include "shmem_internal.h"

namespace khosim::fs {
namespace {

ssize_t ShmemRead(struct file* file, char* buf, size_t count, loff_t* pos) {
  return ShmemInode::FromFile(file)->Read(file, buf, count, pos);
}
ssize_t ShmemWrite(struct file* file, const char* buf, size_t count, loff_t* pos) {
  return ShmemInode::FromFile(file)->Write(file, buf, count, pos);
}
loff_t ShmemLlseek(struct file* file, loff_t offset, int whence) {
  return ShmemInode::FromFile(file)->Llseek(file, offset, whence);
}
long ShmemFallocate(struct file* file, int mode, loff_t offset, loff_t len) {
  return ShmemInode::FromFile(file)->Fallocate(mode, offset, len);
}
int ShmemSetsize(struct file* file, loff_t size) {
  return ShmemInode::FromFile(file)->SetSize(size);
}
long ShmemFcntl(struct file* file, unsigned int cmd, unsigned long arg) {
  // do_fcntl hands the seal commands an unsigned int.
  return memfd_fcntl(file, cmd, static_cast<unsigned int>(arg));
}

}  // namespace
}  // namespace khosim::fs

const struct address_space_operations shmem_aops = {"shmem"};
const struct address_space_operations hugetlbfs_aops = {"hugetlbfs"};

const struct file_operations shmem_file_operations = {
    .owner = nullptr,
    .open = nullptr,
    .release = nullptr,
    .unlocked_ioctl = nullptr,
    .read = khosim::fs::ShmemRead,
    .write = khosim::fs::ShmemWrite,
    .llseek = khosim::fs::ShmemLlseek,
    .fallocate = khosim::fs::ShmemFallocate,
    .setsize = khosim::fs::ShmemSetsize,
    .fcntl = khosim::fs::ShmemFcntl,
};

namespace khosim::fs {

// ---- Files ------------------------------------------------------------------

struct file* ShmemFileSetup(absl::string_view f_name, const ShmemOptions& in) {
  ShmemOptions options = in;
  if (options.hstate >= 0) {
    const int hstates = mm::Hugetlb::kNumHstates;
    if (options.hstate >= hstates) return static_cast<struct file*>(ERR_PTR(-EINVAL));
    options.folio_order = mm::Mm::Current().hugetlb().Info(options.hstate).order;
  } else if (options.folio_order > MAX_PAGE_ORDER) {
    return static_cast<struct file*>(ERR_PTR(-EINVAL));
  }
  if (options.size < 0) return static_cast<struct file*>(ERR_PTR(-EINVAL));
  std::shared_ptr<ShmemSb> sb = ShmemSb::Current();
  if (WARN_ON_ONCE(sb == nullptr)) return static_cast<struct file*>(ERR_PTR(-ENODEV));
  auto* shmem = new ShmemInode(std::move(sb), options);
  struct file* file = alloc_file_pseudo(shmem->inode(), std::string(f_name).c_str(),
                                        options.open_flags, &shmem_file_operations);
  if (IS_ERR(file)) iput(shmem->inode());
  return file;
}

namespace {

// A syscall of |process|: its kernel and the process are current.
class SyscallScope {
 public:
  SyscallScope(KernelContext& ctx, Process& process) : kernel_(&ctx), process_(process) {}

 private:
  ScopedKernelContext kernel_;
  ScopedCurrentProcess process_;
};

// The Vfs |process| belongs to: the running kernel's, checked.
Vfs* VfsOf(Process& process) {
  Vfs* vfs = Vfs::CurrentOrNull();
  if (vfs == nullptr || vfs->FindProcess(process.pid()) != &process) return nullptr;
  return vfs;
}

constexpr size_t kMemfdNameMax = 255 - 6;  // NAME_MAX - strlen("memfd:")
constexpr unsigned int kMfdAllFlags =
    MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC;

}  // namespace

int MemfdCreate(Process& process, absl::string_view name, unsigned int flags) {
  Vfs* vfs = VfsOf(process);
  if (vfs == nullptr) return -ESRCH;
  SyscallScope scope(vfs->ctx(), process);
  if (process.exited()) return -ESRCH;
  if ((flags & MFD_HUGETLB) == 0) {
    if ((flags & ~kMfdAllFlags) != 0) return -EINVAL;
  } else if ((flags & ~(kMfdAllFlags | (MFD_HUGE_MASK << MFD_HUGE_SHIFT))) != 0) {
    return -EINVAL;
  }
  if ((flags & MFD_EXEC) != 0 && (flags & MFD_NOEXEC_SEAL) != 0) return -EINVAL;
  // vm.memfd_noexec = 0: neither flag means MFD_EXEC.
  if ((flags & (MFD_EXEC | MFD_NOEXEC_SEAL)) == 0) flags |= MFD_EXEC;
  name = name.substr(0, name.find('\0'));
  if (name.size() > kMemfdNameMax) return -EINVAL;
  const int fd = get_unused_fd_flags((flags & MFD_CLOEXEC) != 0 ? O_CLOEXEC : 0);
  if (fd < 0) return fd;
  struct file* file = memfd_alloc_file(absl::StrCat("memfd:", name).c_str(), flags);
  if (IS_ERR(file)) {
    put_unused_fd(fd);
    return static_cast<int>(PTR_ERR(file));
  }
  fd_install(fd, file);
  return fd;
}

int TmpfsCreate(Process& process, absl::string_view name, int flags) {
  Vfs* vfs = VfsOf(process);
  if (vfs == nullptr) return -ESRCH;
  SyscallScope scope(vfs->ctx(), process);
  if (process.exited()) return -ESRCH;
  const int fd = get_unused_fd_flags(static_cast<unsigned int>(flags & O_CLOEXEC));
  if (fd < 0) return fd;
  ShmemOptions options;
  options.nlink = 1;
  options.open_flags = flags & O_ACCMODE;
  options.mode = S_IFREG | 0600;
  struct file* file = ShmemFileSetup(absl::StrCat("/dev/shm/", name), options);
  if (IS_ERR(file)) {
    put_unused_fd(fd);
    return static_cast<int>(PTR_ERR(file));
  }
  fd_install(fd, file);
  return fd;
}

// ---- Mappings ---------------------------------------------------------------

ShmemMapping::ShmemMapping(std::shared_ptr<ShmemMappingState> state, size_t length, bool writable,
                           unsigned long memcg)
    : state_(std::move(state)), length_(length), writable_(writable), memcg_(memcg) {}

ShmemMapping::~ShmemMapping() {
  struct file* file = nullptr;
  {
    absl::MutexLock lock(&state_->mu);
    file = std::exchange(state_->file, nullptr);
  }
  if (file == nullptr) return;  // revoked with its kernel
  ScopedKernelContext kernel(state_->ctx);
  ShmemInode* shmem = ShmemInode::FromFile(file);
  shmem->sb().RemoveMapping(state_.get());
  if (writable_) shmem->UnmapWritable();
  fput(file);
}

bool ShmemMapping::revoked() const {
  absl::MutexLock lock(&state_->mu);
  return state_->revoked;
}

int ShmemMapping::Fault(pgoff_t index, bool write, void** out) {
  absl::MutexLock lock(&state_->mu);
  if (state_->file == nullptr) return -EFAULT;
  ScopedKernelContext kernel(state_->ctx);
  if (static_cast<uint64_t>(index) >= PagesFor(length_)) return -EFAULT;
  if (write && !writable_) return -EACCES;
  return ShmemInode::FromFile(state_->file)->Fault(index, write, memcg_, out);
}

int ShmemMmap(Process& process, int fd, size_t length, bool writable,
              std::unique_ptr<ShmemMapping>* out) {
  if (length == 0) return -EINVAL;
  Vfs* vfs = VfsOf(process);
  if (vfs == nullptr) return -ESRCH;
  SyscallScope scope(vfs->ctx(), process);
  if (process.exited()) return -ESRCH;
  struct file* file = process.GetFile(fd);
  if (file == nullptr) return -EBADF;
  ShmemInode* shmem = ShmemInode::FromFile(file);
  int err = 0;
  if (shmem == nullptr) {
    err = -ENODEV;
  } else if ((file->f_mode & FMODE_READ) == 0 || (writable && (file->f_mode & FMODE_WRITE) == 0)) {
    err = -EACCES;
  } else if (writable) {
    err = shmem->MapWritable();
  }
  if (err != 0) {
    fput(file);
    return err;
  }
  auto state = std::make_shared<ShmemMappingState>();
  {
    absl::MutexLock lock(&state->mu);
    state->file = file;  // the mapping's reference
  }
  state->ctx = &vfs->ctx();
  shmem->sb().AddMapping(state);
  out->reset(new ShmemMapping(std::move(state), length, writable, ProcessMemcg(process)));
  return 0;
}

}  // namespace khosim::fs

// Vfs: the per-kernel registry of processes and device nodes, and the
// lifetime rules of struct file and struct inode (kernel face in
// khosim/linux/fs.h).
//
// A file is born with f_count 1 (alloc_file_pseudo / anon_inode_getfile),
// gains references through get_file / fget / fd tables / LUO, and dies on
// the last fput: f_op->release runs, then the file's inode reference is
// dropped. An inode dies on its last iput through i_free.
#include "khosim/fs/vfs.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/miscdevice.h"
#include "khosim/linux/module.h"

namespace khosim::fs {
namespace {

constexpr absl::string_view kDevPrefix = "/dev/";

}  // namespace

Vfs::Vfs(KernelContext& ctx) : ctx_(ctx) {
  ctx_.set_slot(KernelSlot::kFs, this);
  // The shared anonymous inode lives as long as the Vfs.
  anon_inode_ = new_inode_pseudo(0);
  anon_inode_->i_nlink = 0;
}

Vfs::~Vfs() {
  // Processes first: their fds may reference device and anonymous inodes.
  std::vector<std::unique_ptr<Process>> processes;
  std::map<std::string, Device, std::less<>> devices;
  {
    absl::MutexLock lock(&mu_);
    processes.swap(processes_);
    devices.swap(devices_);
  }
  for (auto& p : processes) p->Exit();
  processes.clear();
  for (auto& [name, device] : devices) iput(device.inode);
  iput(anon_inode_);
  if (ctx_.slot(KernelSlot::kFs) == this) ctx_.set_slot(KernelSlot::kFs, nullptr);
}

Vfs& Vfs::Current() {
  Vfs* vfs = CurrentOrNull();
  if (vfs == nullptr) RequireKernelContext().Panic(KHOSIM_SITE, "vfs used before it exists");
  return *vfs;
}

Vfs* Vfs::CurrentOrNull() {
  KernelContext* ctx = CurrentKernelContext();
  return ctx == nullptr ? nullptr : static_cast<Vfs*>(ctx->slot(KernelSlot::kFs));
}

Process& Vfs::CreateProcess(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  const int pid = static_cast<int>(processes_.size()) + 1;
  processes_.push_back(std::make_unique<Process>(*this, pid, std::string(name)));
  return *processes_.back();
}

Process* Vfs::FindProcess(int pid) {
  absl::MutexLock lock(&mu_);
  if (pid < 1 || pid > static_cast<int>(processes_.size())) return nullptr;
  return processes_[pid - 1].get();
}

int Vfs::RegisterMiscDevice(absl::string_view name, const struct file_operations* fops,
                            void* data) {
  absl::MutexLock lock(&mu_);
  if (devices_.find(name) != devices_.end()) return -EEXIST;
  struct inode* inode = new_inode_pseudo(S_IFCHR | 0600);
  inode->i_fop = fops;
  devices_.emplace(std::string(name), Device{fops, inode, data});
  ctx_.Trace("fs", "misc_register", {{"name", std::string(name)}});
  return 0;
}

void Vfs::DeregisterMiscDevice(absl::string_view name) {
  struct inode* inode = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = devices_.find(name);
    if (it == devices_.end()) return;
    inode = it->second.inode;
    devices_.erase(it);
  }
  iput(inode);  // open files keep their own inode references
}

bool Vfs::HasDevice(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  return devices_.find(name) != devices_.end();
}

int Vfs::OpenDevice(absl::string_view path, int flags, struct file** out) {
  if (!absl::StartsWith(path, kDevPrefix)) return -ENOENT;
  const absl::string_view name = path.substr(kDevPrefix.size());
  struct inode* inode = nullptr;
  const struct file_operations* fops = nullptr;
  void* data = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = devices_.find(name);
    if (it == devices_.end()) return -ENOENT;
    inode = ihold(it->second.inode);
    fops = it->second.fops;
    data = it->second.data;
  }
  // The device's module must stay while the file is open (chrdev_open).
  if (fops != nullptr && !try_module_get(fops->owner)) {
    iput(inode);
    return -ENXIO;
  }
  struct file* file = alloc_file_pseudo(inode, std::string(path).c_str(), flags & ~O_CLOEXEC, fops);
  if (IS_ERR(file)) {
    if (fops != nullptr) module_put(fops->owner);
    iput(inode);
    return static_cast<int>(PTR_ERR(file));
  }
  file->private_data = data;  // misc_open: the miscdevice
  if (fops != nullptr && fops->open != nullptr) {
    const int err = fops->open(inode, file);
    if (err != 0) {
      // A failed open never calls release.
      file->f_op = nullptr;
      fput(file);
      module_put(fops->owner);
      return err;
    }
  }
  *out = file;
  return 0;
}

}  // namespace khosim::fs

int misc_register(struct miscdevice* misc) {
  if (misc == nullptr || misc->name == nullptr || misc->fops == nullptr) return -EINVAL;
  return khosim::fs::Vfs::Current().RegisterMiscDevice(misc->name, misc->fops, misc);
}

void misc_deregister(struct miscdevice* misc) {
  khosim::fs::Vfs::Current().DeregisterMiscDevice(misc->name);
}

// ---- Kernel face -----------------------------------------------------------

using khosim::KernelContext;
using khosim::fs::CurrentProcess;
using khosim::fs::Vfs;

namespace {

// Accounting is per kernel; objects made with no Vfs (unit tests of a
// handler without a machine) are simply not counted.
void Count(bool file, int delta) {
  Vfs* vfs = Vfs::CurrentOrNull();
  if (vfs == nullptr) return;
  if (file) {
    vfs->CountFile(delta);
  } else {
    vfs->CountInode(delta);
  }
}

// False while a dead kernel's objects are being freed (see linux/fs.h).
bool KernelCodeRuns() {
  KernelContext* ctx = khosim::CurrentKernelContext();
  return ctx == nullptr || ctx->phase() != khosim::BootPhase::kDead;
}

}  // namespace

struct inode* ihold(struct inode* inode) {
  const long old = atomic_long_fetch_add(1, &inode->i_count);
  WARN_ON_ONCE(old <= 0);
  return inode;
}

void iput(struct inode* inode) {
  if (inode == nullptr) return;
  const long now = atomic_long_dec_return(&inode->i_count);
  if (WARN_ON_ONCE(now < 0)) return;
  if (now > 0) return;
  Count(false, -1);
  if (inode->i_evict != nullptr && KernelCodeRuns()) inode->i_evict(inode);
  if (inode->i_free != nullptr) {
    inode->i_free(inode);
  } else {
    delete inode;
  }
}

struct inode* new_inode_pseudo(umode_t mode) {
  auto* inode = new struct inode();
  Vfs* vfs = Vfs::CurrentOrNull();
  static std::atomic<unsigned long> orphan_ino{1UL << 40};
  inode->i_ino = vfs != nullptr ? vfs->NextIno() : orphan_ino.fetch_add(1);
  inode->i_mode = mode;
  inode->i_nlink = 1;
  atomic_long_set(&inode->i_count, 1);
  Count(false, 1);
  return inode;
}

struct file* alloc_file_pseudo(struct inode* inode, const char* name, int flags,
                               const struct file_operations* fops) {
  KernelContext* ctx = khosim::CurrentKernelContext();
  if (ctx != nullptr && ctx->ShouldFail("alloc_file"))
    return static_cast<struct file*>(ERR_PTR(-ENOMEM));
  auto* file = new struct file();
  atomic_long_set(&file->f_count, 1);
  file->f_op = fops;
  file->f_inode = inode;
  file->f_flags = static_cast<unsigned int>(flags);
  const int acc = flags & O_ACCMODE;
  file->f_mode = (acc == O_RDONLY || acc == O_RDWR ? FMODE_READ : 0) |
                 (acc == O_WRONLY || acc == O_RDWR ? FMODE_WRITE : 0);
  file->f_pos = 0;
  file->private_data = nullptr;
  file->f_name = strdup(name == nullptr ? "" : name);
  Count(true, 1);
  return file;
}

struct file* anon_inode_getfile(const char* name, const struct file_operations* fops, void* priv,
                                int flags) {
  Vfs* vfs = Vfs::CurrentOrNull();
  if (WARN_ON_ONCE(vfs == nullptr)) return static_cast<struct file*>(ERR_PTR(-ENODEV));
  if (fops != nullptr && !try_module_get(fops->owner)) {
    return static_cast<struct file*>(ERR_PTR(-ENOENT));
  }
  struct inode* inode = ihold(vfs->anon_inode());
  struct file* file = alloc_file_pseudo(inode, absl::StrCat("anon_inode:", name).c_str(),
                                        flags & (O_ACCMODE | O_NONBLOCK), fops);
  if (IS_ERR(file)) {
    iput(inode);
    if (fops != nullptr) module_put(fops->owner);
    return file;
  }
  file->private_data = priv;
  return file;
}

struct file* get_file(struct file* f) {
  const long old = atomic_long_fetch_add(1, &f->f_count);
  WARN_ON_ONCE(old <= 0);
  return f;
}

void fput(struct file* f) {
  if (f == nullptr) return;
  const long now = atomic_long_dec_return(&f->f_count);
  if (WARN_ON_ONCE(now < 0)) return;
  if (now > 0) return;
  const struct file_operations* fops = f->f_op;
  if (fops != nullptr && fops->release != nullptr && KernelCodeRuns()) {
    fops->release(f->f_inode, f);
  }
  if (fops != nullptr) module_put(fops->owner);
  if (f->f_free != nullptr) f->f_free(f);
  iput(f->f_inode);
  Count(true, -1);
  free(const_cast<char*>(f->f_name));
  delete f;
}

struct file* fget(unsigned int fd) {
  khosim::fs::Process* p = CurrentProcess();
  if (WARN_ON_ONCE(p == nullptr)) return nullptr;
  return p->GetFile(static_cast<int>(fd));
}

int get_unused_fd_flags(unsigned int flags) {
  khosim::fs::Process* p = CurrentProcess();
  if (WARN_ON_ONCE(p == nullptr)) return -EBADF;
  return p->ReserveFd(flags);
}

void put_unused_fd(unsigned int fd) {
  khosim::fs::Process* p = CurrentProcess();
  if (WARN_ON_ONCE(p == nullptr)) return;
  p->UnreserveFd(static_cast<int>(fd));
}

void fd_install(unsigned int fd, struct file* file) {
  khosim::fs::Process* p = CurrentProcess();
  if (WARN_ON_ONCE(p == nullptr)) {
    fput(file);
    return;
  }
  p->InstallFd(static_cast<int>(fd), file);
}

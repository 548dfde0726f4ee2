// /dev/iommu: the iommufd file, its object table and ioctl dispatch, the
// context references drivers take, and module init (see
// khosim/drivers/iommufd.h).
#include <algorithm>
#include <cerrno>
#include <cstddef>

#include "iommufd_private.h"
#include "khosim/base/kernel_context.h"
#include "khosim/drivers/iommufd.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/miscdevice.h"
#include "khosim/linux/uaccess.h"
#include "khosim/uapi/iommufd.h"

namespace {

constexpr char kRetrieveParam[] = "khosim.iommufd_retrieve";

bool ShouldFailAlloc() {
  khosim::KernelContext* ctx = khosim::CurrentKernelContext();
  return ctx != nullptr && ctx->ShouldFail("kmalloc");
}

// Everything the context owns, given back to the kernel: devices are
// unbound by their drivers before the file can be released, so what is
// left is HWPTs (devices detached) and IOASes.
void iommufd_ctx_destroy(struct iommufd_ctx* ictx) {
  for (auto it = ictx->objects.begin(); it != ictx->objects.end();) {
    iommufd_object* obj = (it++)->second.get();
    if (obj->type == IOMMUFD_OBJ_HWPT_PAGING) {
      iommufd_hwpt_destroy(ictx, static_cast<iommufd_hwpt_paging*>(obj));
    }
  }
  for (auto& [id, obj] : ictx->objects) {
    if (obj->type == IOMMUFD_OBJ_IOAS) {
      for (auto& [iova, area] : static_cast<iommufd_ioas*>(obj.get())->areas) {
        iopt_area_release(&area);
      }
    }
    WARN_ON(obj->type == IOMMUFD_OBJ_DEVICE);
  }
  delete ictx;
}

// The kernel died with the file open: host memory only.
void iommufd_file_free(struct file* file) {
  auto* ictx = static_cast<struct iommufd_ctx*>(file->private_data);
  for (auto& [id, obj] : ictx->objects) {
    if (obj->type != IOMMUFD_OBJ_IOAS) continue;
    for (auto& [iova, area] : static_cast<iommufd_ioas*>(obj.get())->areas) {
      iopt_area_free_host(&area);
    }
  }
  delete ictx;
}

int iommufd_fops_open(struct inode* /*inode*/, struct file* file) {
  struct iommufd_ctx* ictx = iommufd_new_ctx();
  if (ictx == nullptr) return -ENOMEM;
  ictx->file = file;
  file->private_data = ictx;
  file->f_free = iommufd_file_free;
  return 0;
}

int iommufd_fops_release(struct inode* /*inode*/, struct file* file) {
  file->f_free = nullptr;
  iommufd_ctx_destroy(static_cast<struct iommufd_ctx*>(file->private_data));
  return 0;
}

long iommufd_destroy(struct iommufd_ctx* ictx, void* arg) {
  const auto* cmd = static_cast<const struct iommu_destroy*>(arg);
  auto it = ictx->objects.find(cmd->id);
  if (it == ictx->objects.end()) return -ENOENT;
  iommufd_object* obj = it->second.get();
  switch (obj->type) {
    case IOMMUFD_OBJ_DEVICE:
      return -EINVAL;
    case IOMMUFD_OBJ_IOAS: {
      auto* ioas = static_cast<iommufd_ioas*>(obj);
      if (!ioas->hwpts.empty()) return -EBUSY;
      for (auto& [iova, area] : ioas->areas) iopt_area_release(&area);
      ictx->objects.erase(it);
      return 0;
    }
    case IOMMUFD_OBJ_HWPT_PAGING: {
      auto* hwpt = static_cast<iommufd_hwpt_paging*>(obj);
      if (hwpt->nr_devices != 0 || hwpt->liveupdate_marked) return -EBUSY;
      iommufd_hwpt_destroy(ictx, hwpt);
      return 0;
    }
  }
  return -EINVAL;
}

struct iommufd_ioctl_op {
  unsigned int cmd;
  size_t size;      // the kernel's struct
  size_t min_size;  // the oldest userspace's
  long (*execute)(struct iommufd_ctx* ictx, void* cmd);
};

#define IOCTL_OP(ioctl, fn, type, last)                                         \
  {                                                                             \
    ioctl, sizeof(struct type),                                                 \
        offsetof(struct type, last) + sizeof(((struct type*)nullptr)->last), fn \
  }

const iommufd_ioctl_op kOps[] = {
    IOCTL_OP(IOMMU_DESTROY, iommufd_destroy, iommu_destroy, id),
    IOCTL_OP(IOMMU_IOAS_ALLOC, iommufd_ioas_alloc, iommu_ioas_alloc, out_ioas_id),
    IOCTL_OP(IOMMU_IOAS_MAP, iommufd_ioas_map, iommu_ioas_map, iova),
    IOCTL_OP(IOMMU_IOAS_UNMAP, iommufd_ioas_unmap, iommu_ioas_unmap, length),
    IOCTL_OP(IOMMU_HWPT_ALLOC, iommufd_hwpt_alloc, iommu_hwpt_alloc, data_uptr),
    IOCTL_OP(IOMMU_IOAS_MAP_FILE, iommufd_ioas_map_file, iommu_ioas_map_file, iova),
    IOCTL_OP(IOMMU_HWPT_LIVEUPDATE_MARK_PRESERVE, iommufd_hwpt_liveupdate_mark_preserve,
             iommu_hwpt_liveupdate_mark_preserve, hwpt_token),
    IOCTL_OP(IOMMU_HWPT_LIVEUPDATE_RESTORE, iommufd_hwpt_liveupdate_restore,
             iommu_hwpt_liveupdate_restore, __reserved),
};

#undef IOCTL_OP

// The extensible-struct protocol (see khosim/uapi/iommufd.h); the command
// buffer is large enough for every command.
long iommufd_fops_ioctl(struct file* file, unsigned int cmd, unsigned long arg) {
  auto* ictx = static_cast<struct iommufd_ctx*>(file->private_data);
  const iommufd_ioctl_op* op = nullptr;
  for (const iommufd_ioctl_op& candidate : kOps) {
    if (candidate.cmd == cmd) op = &candidate;
  }
  if (op == nullptr) return -ENOIOCTLCMD;
  void __user* ubuf = u64_to_user_ptr(arg);
  u32 user_size = 0;
  if (copy_from_user(&user_size, ubuf, sizeof(user_size)) != 0) return -EFAULT;
  if (user_size < op->min_size) return -EINVAL;
  alignas(8) unsigned char buf[64] = {};
  static_assert(sizeof(struct iommu_hwpt_alloc) <= sizeof(buf));
  if (int err = copy_struct_from_user(buf, op->size, ubuf, user_size); err != 0) return err;
  const long ret = op->execute(ictx, buf);
  if (ret != 0) return ret;
  // The reply: for commands without out fields, the bytes userspace gave.
  if (copy_to_user(ubuf, buf, std::min<size_t>(user_size, op->size)) != 0) return -EFAULT;
  return 0;
}

const struct file_operations iommufd_fops = {
    .owner = nullptr,
    .open = iommufd_fops_open,
    .release = iommufd_fops_release,
    .unlocked_ioctl = iommufd_fops_ioctl,
};

struct miscdevice iommu_misc_dev = {
    .minor = MISC_DYNAMIC_MINOR,
    .name = "iommu",
    .fops = &iommufd_fops,
};

}  // namespace

struct iommufd_ctx* iommufd_new_ctx(void) {
  if (ShouldFailAlloc()) return nullptr;
  auto* ictx = new iommufd_ctx();
  khosim::KernelContext* ctx = khosim::CurrentKernelContext();
  const u64 random = ctx != nullptr ? ctx->env().Random() : reinterpret_cast<uintptr_t>(ictx);
  ictx->owner_token = 0xffff888000000000ULL | (random & 0x7ffffffff0ULL);
  return ictx;
}

struct file* iommufd_new_file(struct iommufd_ctx* ictx, const char* name) {
  struct file* file = anon_inode_getfile(name, &iommufd_fops, ictx, O_RDWR);
  if (IS_ERR(file)) return file;
  ictx->file = file;
  file->f_free = iommufd_file_free;
  return file;
}

bool iommufd_is_file(const struct file* file) { return file->f_op == &iommufd_fops; }

u32 iommufd_object_add(struct iommufd_ctx* ictx, std::unique_ptr<iommufd_object> obj) {
  const u32 id = ictx->next_id++;
  obj->id = id;
  ictx->objects.emplace(id, std::move(obj));
  return id;
}

iommufd_object* iommufd_get_object(struct iommufd_ctx* ictx, u32 id, iommufd_object_type type) {
  auto it = ictx->objects.find(id);
  return it == ictx->objects.end() || it->second->type != type ? nullptr : it->second.get();
}

void iommufd_object_remove(struct iommufd_ctx* ictx, u32 id) { ictx->objects.erase(id); }

bool iommufd_retrieve_supported(void) {
  khosim::KernelContext* ctx = khosim::CurrentKernelContext();
  if (ctx == nullptr) return true;
  const std::optional<std::string> value = ctx->cmdline().Get(kRetrieveParam);
  return !value.has_value() || *value != "unsupported";
}

struct iommufd_ctx* iommufd_ctx_from_file(struct file* file) {
  if (file == nullptr || !iommufd_is_file(file)) {
    return static_cast<struct iommufd_ctx*>(ERR_PTR(-EBADFD));
  }
  get_file(file);
  return static_cast<struct iommufd_ctx*>(file->private_data);
}

void iommufd_ctx_get(struct iommufd_ctx* ictx) { get_file(ictx->file); }

void iommufd_ctx_put(struct iommufd_ctx* ictx) { fput(ictx->file); }

int iommufd_init(void) {
  if (khosim::KernelContext* ctx = khosim::CurrentKernelContext()) {
    const std::optional<std::string> value = ctx->cmdline().Get(kRetrieveParam);
    if (value.has_value() && *value != "restore" && *value != "unsupported") {
      pr_warn("iommufd: unknown %s=%s, using restore", kRetrieveParam, value->c_str());
    }
  }
  if (int err = iommufd_liveupdate_register(); err != 0) return err;
  if (int err = misc_register(&iommu_misc_dev); err != 0) {
    iommufd_liveupdate_unregister();
    return err;
  }
  return 0;
}

void iommufd_exit(void) {
  misc_deregister(&iommu_misc_dev);
  iommufd_liveupdate_unregister();
}

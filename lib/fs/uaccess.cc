// User-memory access and module references (kernel face).
#include "khosim/linux/uaccess.h"

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "khosim/base/kernel_context.h"
#include "khosim/linux/module.h"

namespace {

constexpr uintptr_t kUserZeroPageEnd = 4096;

bool UserRangeFaults(const void* p, unsigned long n, const char* point) {
  if (n == 0) return false;
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a < kUserZeroPageEnd || a + n < a) return true;
  khosim::KernelContext* ctx = khosim::CurrentKernelContext();
  return ctx != nullptr && ctx->ShouldFail(point);
}

}  // namespace

unsigned long copy_from_user(void* to, const void __user* from, unsigned long n) {
  if (UserRangeFaults(from, n, "copy_from_user")) return n;
  if (n != 0) std::memcpy(to, from, n);
  return 0;
}

unsigned long copy_to_user(void __user* to, const void* from, unsigned long n) {
  if (UserRangeFaults(to, n, "copy_to_user")) return n;
  if (n != 0) std::memcpy(to, from, n);
  return 0;
}

long strncpy_from_user(char* dst, const char __user* src, long count) {
  if (count <= 0) return 0;
  if (UserRangeFaults(src, 1, "copy_from_user")) return -EFAULT;
  long n = 0;
  while (n < count) {
    dst[n] = src[n];
    if (dst[n] == '\0') return n;
    ++n;
  }
  return n;
}

int copy_struct_from_user(void* dst, size_t ksize, const void __user* src, size_t usize) {
  const size_t size = usize < ksize ? usize : ksize;
  if (usize > ksize) {
    // The tail the kernel does not know must be zero (check_zeroed_user).
    if (UserRangeFaults(src, usize, "copy_from_user")) return -EFAULT;
    const auto* tail = static_cast<const unsigned char*>(src) + ksize;
    for (size_t i = 0; i < usize - ksize; ++i) {
      if (tail[i] != 0) return -E2BIG;
    }
  }
  std::memset(static_cast<unsigned char*>(dst) + size, 0, ksize - size);
  if (copy_from_user(dst, src, size) != 0) return -EFAULT;
  return 0;
}

bool try_module_get(struct module* mod) {
  if (mod == nullptr) return true;
  if (atomic_read(&mod->state) == MODULE_STATE_GOING) return false;
  khosim::KernelContext* ctx = khosim::CurrentKernelContext();
  if (ctx != nullptr && ctx->ShouldFail("try_module_get")) return false;
  atomic_long_fetch_add(1, &mod->refcnt);
  return true;
}

void module_put(struct module* mod) {
  if (mod == nullptr) return;
  atomic_long_fetch_sub(1, &mod->refcnt);
}

long module_refcount(const struct module* mod) {
  return mod == nullptr ? 0 : atomic_long_read(&mod->refcnt);
}

void khosim_module_begin_unload(struct module* mod) { atomic_set(&mod->state, MODULE_STATE_GOING); }

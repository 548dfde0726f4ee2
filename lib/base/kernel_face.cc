// The kernel face of lib/base (linux/bug.h, linux/kconfig.h): WARN, BUG, panic and printk
// against the running kernel's KernelContext.
#include <cstdarg>
#include <cstdio>
#include <string>

#include "khosim/base/kernel_context.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/kconfig.h"

namespace khosim::kernel_face {

bool Warn(const char* site, const char* condition) {
  khosim::RequireKernelContext().Warn(site, condition);
  return true;
}

bool WarnOnce(const char* site, const char* condition) {
  khosim::RequireKernelContext().WarnOnce(site, condition);
  return true;
}

void Bug(const char* site, const char* condition) {
  khosim::RequireKernelContext().Panic(site, std::string("kernel BUG: ") + condition);
}

void Panic(const char* site, const std::string& message) {
  khosim::RequireKernelContext().Panic(site, message);
}

void Log(const std::string& line) { khosim::RequireKernelContext().Log(line); }

std::string Format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[1024];
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

}  // namespace khosim::kernel_face

bool khosim_config_enabled(const char* symbol) {
  khosim::KernelContext* ctx = khosim::CurrentKernelContext();
  return ctx != nullptr && symbol != nullptr && ctx->ConfigEnabled(symbol);
}

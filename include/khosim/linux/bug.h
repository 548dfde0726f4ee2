// WARN / BUG / panic against the running kernel. WARN_ON is counted per
// site and logged; WARN_ON_ONCE counts only the first hit per site and boot;
// BUG_ON and panic unwind to the machine as khosim::KernelPanic.
#ifndef KHOSIM_LINUX_BUG_H_
#define KHOSIM_LINUX_BUG_H_

#include <string>

#include "khosim/linux/compiler.h"

namespace khosim::kernel_face {
bool Warn(const char* site, const char* condition);
bool WarnOnce(const char* site, const char* condition);
[[noreturn]] void Bug(const char* site, const char* condition);
[[noreturn]] void Panic(const char* site, const std::string& message);
std::string Format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
}  // namespace khosim::kernel_face

#define WARN_ON(cond) ((cond) ? ::khosim::kernel_face::Warn(KHOSIM_SITE, #cond) : false)
#define WARN_ON_ONCE(cond) ((cond) ? ::khosim::kernel_face::WarnOnce(KHOSIM_SITE, #cond) : false)
#define WARN(cond, ...)                                                                     \
  ((cond) ? ::khosim::kernel_face::Warn(KHOSIM_SITE,                                        \
                                        ::khosim::kernel_face::Format(__VA_ARGS__).c_str()) \
          : false)
#define BUG() ::khosim::kernel_face::Bug(KHOSIM_SITE, "BUG()")
#define BUG_ON(cond)                                          \
  do {                                                        \
    if (cond) ::khosim::kernel_face::Bug(KHOSIM_SITE, #cond); \
  } while (0)
#define panic(...) \
  ::khosim::kernel_face::Panic(KHOSIM_SITE, ::khosim::kernel_face::Format(__VA_ARGS__))
#define pr_info(...) ::khosim::kernel_face::Log(::khosim::kernel_face::Format(__VA_ARGS__))
#define pr_warn(...) \
  ::khosim::kernel_face::Log("warning: " + ::khosim::kernel_face::Format(__VA_ARGS__))
#define pr_err(...) \
  ::khosim::kernel_face::Log("error: " + ::khosim::kernel_face::Format(__VA_ARGS__))

namespace khosim::kernel_face {
void Log(const std::string& line);
}  // namespace khosim::kernel_face

#endif  // KHOSIM_LINUX_BUG_H_

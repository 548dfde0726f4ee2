// Kernel-face configuration switches (<linux/kconfig.h>). In the kernel
// IS_ENABLED(CONFIG_X) is decided at build time; khosim builds every
// kernel from one binary, so the switch is asked of the running kernel's
// build (KernelModule::configs). A port back to C replaces the call with
// IS_ENABLED(CONFIG_X).
#ifndef KHOSIM_LINUX_KCONFIG_H_
#define KHOSIM_LINUX_KCONFIG_H_

// Whether the running kernel was built with |symbol| ("CONFIG_X") on;
// false outside a kernel.
bool khosim_config_enabled(const char* symbol);

#endif  // KHOSIM_LINUX_KCONFIG_H_

// Kernel-face module references. A handler or FLB names its module in
// `owner`; LUO takes a reference per preserved or deserialized object, so a
// module cannot go away while the live update still needs it.
//
// Built-in code uses THIS_MODULE == NULL, for which try_module_get always
// succeeds (as in the kernel). A simulated loadable module is a `struct
// module` the test owns: khosim_module_begin_unload() puts it in the
// "going" state in which try_module_get fails, as the kernel's does once
// delete_module() has started. The fault point "try_module_get" fails a
// reference on a non-NULL module.
#ifndef KHOSIM_LINUX_MODULE_H_
#define KHOSIM_LINUX_MODULE_H_

#include "khosim/linux/atomic.h"

enum module_state { MODULE_STATE_LIVE, MODULE_STATE_GOING };

struct module {
  const char* name;
  atomic_t state;  // enum module_state
  atomic_long_t refcnt;
};

#define THIS_MODULE (static_cast<struct module*>(nullptr))

bool try_module_get(struct module* mod);
void module_put(struct module* mod);
long module_refcount(const struct module* mod);

// Simulator: delete_module() has begun; later try_module_get calls fail.
void khosim_module_begin_unload(struct module* mod);

#endif  // KHOSIM_LINUX_MODULE_H_

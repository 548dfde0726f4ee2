// Kernel-face LUO API (upstream include/linux/liveupdate.h, kernel 7.3):
// what file handlers and FLB owners are written against. Calls resolve to
// the running kernel's LUO (khosim/luo/luo.h).
//
// A file handler is a static `struct liveupdate_file_handler` naming its
// ops and a unique compatible string. LUO calls the ops with the
// liveupdate_file_op_args fields that op is documented to get (all others
// zero):
//   can_preserve(handler, file)   PRESERVE_FD, handlers in registration order
//   preserve     handler, session, file           -> serialized_data, private_data
//   unpreserve   handler, session, file, serialized_data, private_data
//   freeze       handler, session, file, serialized_data, private_data
//                                                 -> may update serialized_data
//   unfreeze     handler, session, file, serialized_data, private_data
//   retrieve     handler, session, serialized_data -> file
//   can_finish   handler, session, file (NULL if never retrieved),
//                serialized_data, retrieve_status
//   finish       same as can_finish
// retrieve_status: 0 never attempted, 1 retrieved, < 0 the latched errno.
// private_data never crosses a kexec. On the 7.2 profile `session` is NULL.
//
// An FLB (File-Lifecycle-Bound object) is global state shared by every
// file of the handlers it is linked to: preserved with the first such file,
// unpreserved with the last, retrieved lazily in the next kernel and
// finished when its last reference goes (see luo/luo.h for the refcount
// model and the hazards the simulator reports).
#ifndef KHOSIM_LINUX_LIVEUPDATE_H_
#define KHOSIM_LINUX_LIVEUPDATE_H_

#include "khosim/linux/fs.h"
#include "khosim/linux/module.h"
#include "khosim/linux/types.h"

#define LIVEUPDATE_HNDL_COMPAT_LENGTH 48
#define LIVEUPDATE_FLB_COMPAT_LENGTH 48

struct liveupdate_session;  // opaque: a session, for the in-kernel file APIs
struct liveupdate_file_handler;

struct liveupdate_file_op_args {
  struct liveupdate_file_handler* handler;
  struct liveupdate_session* session;
  int retrieve_status;
  struct file* file;
  u64 serialized_data;  // KHOSER: a physical address (or any u64 handle)
  void* private_data;
};

struct liveupdate_file_ops {
  bool (*can_preserve)(struct liveupdate_file_handler* handler, struct file* file);
  int (*preserve)(struct liveupdate_file_op_args* args);
  void (*unpreserve)(struct liveupdate_file_op_args* args);
  int (*freeze)(struct liveupdate_file_op_args* args);
  void (*unfreeze)(struct liveupdate_file_op_args* args);
  int (*retrieve)(struct liveupdate_file_op_args* args);
  bool (*can_finish)(struct liveupdate_file_op_args* args);
  void (*finish)(struct liveupdate_file_op_args* args);
  unsigned long (*get_id)(struct file* file);
  struct module* owner;
};

struct liveupdate_file_handler {
  const struct liveupdate_file_ops* ops;
  char compatible[LIVEUPDATE_HNDL_COMPAT_LENGTH];
};

struct liveupdate_flb;

struct liveupdate_flb_op_args {
  struct liveupdate_flb* flb;
  u64 data;   // the serialized handle: set by preserve, given to retrieve
  void* obj;  // the live object: set by preserve and retrieve
};

struct liveupdate_flb_ops {
  int (*preserve)(struct liveupdate_flb_op_args* args);
  void (*unpreserve)(struct liveupdate_flb_op_args* args);
  int (*retrieve)(struct liveupdate_flb_op_args* args);
  void (*finish)(struct liveupdate_flb_op_args* args);
  struct module* owner;
};

struct liveupdate_flb {
  const struct liveupdate_flb_ops* ops;
  char compatible[LIVEUPDATE_FLB_COMPAT_LENGTH];
};

// True when liveupdate=on and KHO is enabled.
bool liveupdate_enabled(void);

// 0; -EOPNOTSUPP (LUO disabled), -EINVAL (a required op missing), -EEXIST
// (compatible taken).
int liveupdate_register_file_handler(struct liveupdate_file_handler* fh);
void liveupdate_unregister_file_handler(struct liveupdate_file_handler* fh);

// 0; -EOPNOTSUPP, -EINVAL (op missing, handler not registered), -EEXIST
// (already linked, or another FLB with this compatible), -ENOSPC
// (LUO_FLB_MAX distinct FLBs), -ENOMEM, -EBUSY (incoming state already
// deserialized: too late to link).
int liveupdate_register_flb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb);
void liveupdate_unregister_flb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb);

// Incoming (after kexec): 0 and a reference that put_incoming drops;
// -EOPNOTSUPP, -ENODATA (no incoming FLB data, or already finished),
// -ENOENT (no record of this name), -ENODEV (module unloading), the
// latched retrieve() errno, or -EOVERFLOW with a "luo-hazard" WARN when the
// count (from the FLB page) is already LONG_MAX.
int liveupdate_flb_get_incoming(struct liveupdate_flb* flb, void** objp);
void liveupdate_flb_put_incoming(struct liveupdate_flb* flb);
// Early boot, before the page allocator runs (the hugetlb RFC's early FLB
// access: a pool must know what the previous kernel kept before it is
// filled): the data handle the previous kernel serialized for |flb|, read
// from the handed-over FLB page without retrieving, counting or restoring
// anything; the FLB's normal incoming lifecycle is untouched. Works before
// the FLB is registered. 0; -EOPNOTSUPP (liveupdate=off, KHO off or not a
// KHO boot), -ENOENT (no LUO record, no FLB page, or no entry of this
// name), -EINVAL (a record that does not check out: bad compatible, FLB
// page not a preserved block, bad header).
int liveupdate_flb_incoming_data_early(const struct liveupdate_flb* flb, u64* datap);
// Outgoing (before kexec), 7.3: 0 and a reference that put_outgoing drops;
// -ENOENT when no dependent file is preserved. (7.2: the object, possibly
// NULL, without a reference.)
int liveupdate_flb_get_outgoing(struct liveupdate_flb* flb, void** objp);
void liveupdate_flb_put_outgoing(struct liveupdate_flb* flb);

// In-kernel file APIs (7.3), to be called from a handler callback (the
// session's lock is held): the token of |file| in outgoing session |s|
// (-ENOENT if absent); the file behind |token| in incoming session |s|,
// retrieving it if needed, with a reference the caller must fput.
int liveupdate_get_token_outgoing(struct liveupdate_session* s, struct file* file, u64* tokenp);
int liveupdate_get_file_incoming(struct liveupdate_session* s, u64 token, struct file** filep);

#endif  // KHOSIM_LINUX_LIVEUPDATE_H_

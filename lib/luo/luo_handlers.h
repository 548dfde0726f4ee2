// HandlerRegistry: LUO's registered file handlers and FLBs
// (luo_register_rwlock and the two lists it guards).
//
// Handlers keep their registration order: PRESERVE_FD asks them in it, and
// the first whose can_preserve takes a file preserves it. Each handler
// links FLBs in link order; an FLB shared by several handlers is one entry
// with a user count, dropped when its last link goes.
//
// Entries are this kernel's host objects, allocated at registration and
// freed at unregistration or teardown; the lists link them and never own
// them. A handler's FLB links are written under the registry lock and read
// by file operations on a registered handler without it (unregistering a
// handler whose files are in use is a caller bug, in the kernel too).
#ifndef KHOSIM_LIB_LUO_LUO_HANDLERS_H_
#define KHOSIM_LIB_LUO_LUO_HANDLERS_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "boost/intrusive/list.hpp"
#include "hazard_mutex.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/liveupdate.h"
#include "luo_context.h"

namespace khosim::luo {

using SafeListHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>>;

// One side (outgoing or incoming) of an FLB, guarded by its own lock, held
// while the FLB's callbacks run.
struct FlbSide {
  HazardMutex mutex;
  long count ABSL_GUARDED_BY(mutex) = 0;
  uint64_t data ABSL_GUARDED_BY(mutex) = 0;
  void* obj ABSL_GUARDED_BY(mutex) = nullptr;
  bool loaded ABSL_GUARDED_BY(mutex) = false;      // incoming: read from the FLB page
  bool retrieved ABSL_GUARDED_BY(mutex) = false;   // incoming: retrieve() succeeded
  bool finished ABSL_GUARDED_BY(mutex) = false;    // incoming: finish() ran
  int retrieve_status ABSL_GUARDED_BY(mutex) = 0;  // incoming, 7.3: the latched errno
  long extra_refs ABSL_GUARDED_BY(mutex) = 0;      // outgoing: get_outgoing references
};

struct FlbState : SafeListHook {
  explicit FlbState(struct liveupdate_flb* f) : flb(f) {}
  struct liveupdate_flb* const flb;
  int users = 0;  // handler links; registry lock
  // Created by an incoming get before any handler linked it (the PCI core
  // reads its FLB at enumeration, before a driver registers it): kept
  // after its last link goes, as upstream keeps the state in the FLB.
  bool adopted = false;  // registry lock
  FlbSide outgoing;
  FlbSide incoming;
};

struct HandlerEntry : SafeListHook {
  explicit HandlerEntry(struct liveupdate_file_handler* h) : fh(h) {}
  struct liveupdate_file_handler* const fh;
  std::vector<FlbState*> flbs;  // in link order
};

class HandlerRegistry {
 public:
  explicit HandlerRegistry(LuoContext& luo) : luo_(luo) {}
  ~HandlerRegistry();
  HandlerRegistry(const HandlerRegistry&) = delete;
  HandlerRegistry& operator=(const HandlerRegistry&) = delete;

  // liveupdate_register_file_handler and friends; errnos as in
  // khosim/linux/liveupdate.h.
  int RegisterFileHandler(struct liveupdate_file_handler* fh) ABSL_LOCKS_EXCLUDED(mu_);
  void UnregisterFileHandler(struct liveupdate_file_handler* fh) ABSL_LOCKS_EXCLUDED(mu_);
  int RegisterFlb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb)
      ABSL_LOCKS_EXCLUDED(mu_);
  void UnregisterFlb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb)
      ABSL_LOCKS_EXCLUDED(mu_);

  HandlerEntry* Find(const struct liveupdate_file_handler* fh) ABSL_LOCKS_EXCLUDED(mu_);
  FlbState* FindFlb(const struct liveupdate_flb* flb) ABSL_LOCKS_EXCLUDED(mu_);
  // FindFlb, or a new unlinked state for |flb| (FlbState::adopted).
  FlbState* FindOrAdoptFlb(struct liveupdate_flb* flb) ABSL_LOCKS_EXCLUDED(mu_);
  // The first handler, in registration order, whose can_preserve takes
  // |file|, with a reference on its module; nullptr when none takes it or
  // its module is going away.
  HandlerEntry* Claim(struct file* file) ABSL_LOCKS_EXCLUDED(mu_);
  // The handler registered under |compatible|, with a reference on its
  // module; nullptr when there is none or its module is going away.
  HandlerEntry* TakeByCompatible(absl::string_view compatible) ABSL_LOCKS_EXCLUDED(mu_);

  // Every FLB, in registration order, for serialization and inspection;
  // the registry lock is held while |fn| runs.
  template <typename Fn>
  void ForEachFlb(Fn&& fn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (FlbState& s : flbs_) fn(s);
  }
  // Every FLB's outgoing count equals the preserved files of the handlers
  // linking it (from |outgoing_files|, by handler) plus its outstanding
  // get_outgoing references. A snapshot (the FLB sides are read without
  // their locks): LUO must be quiescent.
  absl::Status ValidateFlbCounts(
      const absl::flat_hash_map<const struct liveupdate_file_handler*, long>& outgoing_files) const
      ABSL_LOCKS_EXCLUDED(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS;

 private:
  using HandlerList = boost::intrusive::list<HandlerEntry>;
  using FlbList = boost::intrusive::list<FlbState>;

  HandlerEntry* FindLocked(const struct liveupdate_file_handler* fh)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  LuoContext& luo_;
  mutable absl::Mutex mu_;
  HandlerList handlers_ ABSL_GUARDED_BY(mu_);
  FlbList flbs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_LUO_HANDLERS_H_

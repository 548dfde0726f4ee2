// LUO sessions: named containers of preserved files, their fds and
// ioctls, and their serialization at reboot.
//
// Outgoing: CREATE_SESSION grows the session block set for count + 1
// entries *before* the duplicate-name check (so an -EEXIST leaves the extra
// block until a later shrink, as upstream does), then links the session;
// closing its last fd unpreserves every file (reverse order) and unlinks
// it. At reboot every session is frozen in creation order into its
// pre-allocated LuoSessionSer; a failure unwinds the sessions already
// frozen in reverse, each unfreezing its files forward.
// Incoming: the session chain adopted at early boot is turned into
// sessions at the first open of /dev/liveupdate, then freed. A session is
// retrieved at most once; closing a retrieved session finishes it
// implicitly, and a vetoed finish leaves it (and its files) to LUO until
// the next live update.
//
// Locking, outermost first: the session lists' lock (Sessions::mu_, the
// kernel's session list lock), a session's mutex (its files, and every
// handler callback), then the handler registry's and an FLB side's. After a
// successful serialization LUO stays frozen for the kexec: a later session
// call "blocks" - the simulator returns -ERESTARTSYS, counts and traces it,
// where the kernel would sleep until the machine kexecs.
#ifndef KHOSIM_LIB_LUO_LUO_SESSION_H_
#define KHOSIM_LIB_LUO_LUO_SESSION_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "boost/intrusive/list.hpp"
#include "hazard_mutex.h"
#include "khosim/abi/luo.h"
#include "khosim/kho/block_set.h"
#include "khosim/linux/fs.h"
#include "khosim/luo/luo.h"
#include "luo_file.h"

// The kernel's struct luo_session; handlers see it as the opaque
// `struct liveupdate_session *`.
struct liveupdate_session {
  liveupdate_session(khosim::luo::LuoServices& services, std::string session_name, bool is_incoming)
      : name(std::move(session_name)), incoming(is_incoming), files(services, this) {}

  // Its place on the outgoing or incoming list (the lists' lock). First,
  // beside the name: a list walk comparing names then touches one cache
  // line per session.
  boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>>
      list_hook;
  const std::string name;
  const bool incoming;  // from the previous kernel
  khosim::luo::HazardMutex mutex;
  // An incoming session handed to userspace. Set once, under |mutex|,
  // before the session's fd exists; the fd's operations read it freely.
  bool retrieved = false;
  khosim::luo::FileSet files ABSL_GUARDED_BY(mutex);
};

namespace khosim::luo {

using Session = struct liveupdate_session;

class Sessions {
 public:
  explicit Sessions(LuoServices& services) : svc_(services) {}
  // Kernel teardown: destroys every session (and puts its files).
  ~Sessions();
  Sessions(const Sessions&) = delete;
  Sessions& operator=(const Sessions&) = delete;

  // False (and the call recorded as blocked) once frozen for the kexec.
  // The blocked call is described as |what|, followed by the session's
  // name when |session| is given; nothing is formatted unless it blocks.
  bool EnterCall(absl::string_view what, const Session* session = nullptr);
  bool frozen() const { return frozen_.load(); }
  uint64_t blocked_calls() const { return blocked_calls_.load(); }

  // /dev/liveupdate's CREATE_SESSION and RETRIEVE_SESSION: a new session
  // file in *out. -EINVAL (name), -ENOMEM, -ERESTARTSYS (frozen), the block
  // set's error, -EEXIST (name taken); -ENOENT (no such incoming session),
  // -EINVAL (retrieved already).
  int Create(const uint8_t (&name)[abi::kLiveupdateSessionNameLength], struct file** out)
      ABSL_LOCKS_EXCLUDED(mu_);
  int Retrieve(const uint8_t (&name)[abi::kLiveupdateSessionNameLength], struct file** out)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Reboot: freezes every outgoing session into the session chain and
  // points |ser| at it; on a failure unwinds exactly and returns the errno.
  int Serialize(abi::LuoSer* ser) ABSL_LOCKS_EXCLUDED(mu_);
  // Early boot: adopts the previous kernel's session chain (0: none).
  int SetupIncoming(uint64_t sessions_pa) ABSL_LOCKS_EXCLUDED(mu_);
  // First open of /dev/liveupdate: the incoming sessions and their files
  // from the adopted chain, which is then freed. On an error what was built
  // stays (recovery from a corrupt handover is a reboot, as upstream).
  int Deserialize() ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t incoming_head_pa() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t outgoing_count() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t outgoing_blocks() const ABSL_LOCKS_EXCLUDED(mu_);
  // Snapshots for tests, reports and Luo::Validate: they read the sessions'
  // files without the sessions' mutexes, so LUO must be quiescent.
  std::vector<Luo::SessionInfo> Info(bool incoming) const
      ABSL_LOCKS_EXCLUDED(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Outgoing files by handler, over every session.
  absl::flat_hash_map<const struct liveupdate_file_handler*, long> OutgoingFilesByHandler() const
      ABSL_LOCKS_EXCLUDED(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Names unique per list, each session's files valid (counting the
  // registered ones into |registered|), the session block set sized for
  // the outgoing sessions.
  absl::Status Validate(uint64_t* registered) const
      ABSL_LOCKS_EXCLUDED(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  // The session file's operations (release, unlocked_ioctl).
  int Release(Session* session) ABSL_LOCKS_EXCLUDED(mu_);
  long Ioctl(Session* session, unsigned int cmd, unsigned long arg);

 private:
  using SessionList = boost::intrusive::list<
      Session,
      boost::intrusive::member_hook<Session, decltype(Session::list_hook), &Session::list_hook>,
      boost::intrusive::constant_time_size<true>>;

  Session* FindLocked(const SessionList& list, absl::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DestroyLocked(SessionList& list, Session* session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  LuoServices& svc_;
  // The serialize rwsem's write side, kept after a successful reboot.
  std::atomic<bool> frozen_{false};
  std::atomic<uint64_t> blocked_calls_{0};

  mutable absl::Mutex mu_;
  // Creation order: the order sessions are frozen and serialized in. The
  // lists link the sessions; Create/Deserialize allocate them and
  // DestroyLocked frees them.
  SessionList outgoing_ ABSL_GUARDED_BY(mu_);
  SessionList incoming_ ABSL_GUARDED_BY(mu_);
  // One LuoSessionSer per outgoing session, grown before each is linked.
  kho::BlockSet outgoing_blocks_ ABSL_GUARDED_BY(mu_){sizeof(abi::LuoSessionSer)};
  kho::BlockSet incoming_blocks_ ABSL_GUARDED_BY(mu_){sizeof(abi::LuoSessionSer)};
  bool incoming_active_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_LUO_SESSION_H_

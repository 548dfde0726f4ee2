// LUO's runtime state (host memory; none of it crosses a kexec) shared by
// luo_core.cc (boot, device, reboot), luo_session.cc (sessions and their
// ioctls), luo_file.cc (file sets) and luo_flb.cc (FLBs).
#ifndef KHOSIM_LIB_LUO_LUO_INTERNAL_H_
#define KHOSIM_LIB_LUO_LUO_INTERNAL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "khosim/abi/luo.h"
#include "khosim/base/kernel_context.h"
#include "khosim/kho/block_set.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/luo/luo.h"

namespace khosim::luo {

// A kernel mutex that reports a self-deadlock (the owning thread locking
// it again) as a WARN with site "luo-hazard: <what>" instead of hanging.
class HazardMutex {
 public:
  // False (and nothing taken) when this thread already holds it.
  // Conditional acquisition is beyond the static analysis: callers use
  // HazardLock, which pairs them.
  bool Lock(KernelContext& ctx, absl::string_view what) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void Unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  bool HeldByCurrentThread() const { return owner_.load() == std::this_thread::get_id(); }

 private:
  absl::Mutex mu_;
  std::atomic<std::thread::id> owner_{};
};

class HazardLock {
 public:
  HazardLock(HazardMutex& mu, KernelContext& ctx, absl::string_view what)
      : mu_(mu), held_(mu.Lock(ctx, what)) {}
  ~HazardLock() {
    if (held_) mu_.Unlock();
  }
  HazardLock(const HazardLock&) = delete;
  HazardLock& operator=(const HazardLock&) = delete;
  bool held() const { return held_; }

 private:
  HazardMutex& mu_;
  bool held_;
};

struct LuoFile {
  struct liveupdate_file_handler* fh = nullptr;
  struct file* file = nullptr;  // NULL in the new kernel until retrieved
  uint64_t serialized_data = 0;
  void* private_data = nullptr;
  int retrieve_status = 0;
  uint64_t token = 0;
};

// The files of one session, in preservation order, and their block set.
struct FileSet {
  std::vector<std::unique_ptr<LuoFile>> files;
  kho::BlockSet block_set{sizeof(abi::LuoFileSer)};
};

}  // namespace khosim::luo

// The kernel's struct luo_session; handlers see it as the opaque
// `struct liveupdate_session *`.
struct liveupdate_session {
  std::string name;
  bool retrieved = false;  // set on an incoming session handed to userspace
  bool incoming = false;
  khosim::luo::FileSet file_set;
  khosim::luo::HazardMutex mutex;
  size_t list_slot = 0;  // its slot in the SessionList it is on
};

namespace khosim::luo {

using Session = struct liveupdate_session;

// Sessions in creation order (the order they are frozen and serialized
// in), owning them.
//
// A vector of pointers with holes: unlinking a session leaves a hole in its
// slot (O(1), the kernel's list_del), trailing holes are dropped at once,
// and the vector is compacted when holes outnumber sessions, so unlinking
// is amortized O(1) while walks read contiguous pointers. The walks matter:
// every CREATE_SESSION compares the new name with every outgoing session
// (upstream's list walk, kept), and so does deserialization with every
// incoming one. A linked list made those walks 16% (10^4 sessions) and 25%
// (2000 sessions) slower in luo_bench, each step waiting for the load of
// the one before.
class SessionList {
 public:
  // Skips holes. Decrementing is valid from any position but the first
  // session's, as for any bidirectional iterator.
  template <typename S>
  class Iterator {
   public:
    using iterator_category = std::bidirectional_iterator_tag;
    using value_type = Session;
    using difference_type = std::ptrdiff_t;
    using pointer = S*;
    using reference = S&;

    Iterator() = default;
    Iterator(Session* const* slot, Session* const* end) : slot_(slot), end_(end) { SkipHoles(); }
    S& operator*() const { return **slot_; }
    S* operator->() const { return *slot_; }
    Iterator& operator++() {
      ++slot_;
      SkipHoles();
      return *this;
    }
    Iterator& operator--() {
      do {
        --slot_;
      } while (*slot_ == nullptr);
      return *this;
    }
    bool operator==(const Iterator& other) const { return slot_ == other.slot_; }

   private:
    void SkipHoles() {
      while (slot_ != end_ && *slot_ == nullptr) ++slot_;
    }

    Session* const* slot_ = nullptr;
    Session* const* end_ = nullptr;
  };
  using iterator = Iterator<Session>;
  using const_iterator = Iterator<const Session>;

  SessionList() = default;
  ~SessionList() { Clear(); }
  SessionList(const SessionList&) = delete;
  SessionList& operator=(const SessionList&) = delete;

  void PushBack(std::unique_ptr<Session> session) {
    session->list_slot = slots_.size();
    slots_.push_back(session.release());
  }
  // Unlinks |session|, which must be on this list, and returns it.
  std::unique_ptr<Session> Unlink(Session* session) {
    slots_[session->list_slot] = nullptr;
    ++holes_;
    while (!slots_.empty() && slots_.back() == nullptr) {
      slots_.pop_back();
      --holes_;
    }
    if (holes_ * 2 > slots_.size()) Compact();
    return std::unique_ptr<Session>(session);
  }
  // Destroys every session, first to last.
  void Clear() {
    for (Session* s : slots_) delete s;
    slots_.clear();
    holes_ = 0;
  }

  // The first session matching |pred|, in creation order, or nullptr. The
  // name lookups walk with this: a plain loop over the slots, which the
  // compiler keeps tighter than the hole-skipping iterator.
  template <typename Pred>
  Session* FindIf(Pred pred) const {
    for (Session* s : slots_) {
      if (s != nullptr && pred(static_cast<const Session&>(*s))) return s;
    }
    return nullptr;
  }

  size_t size() const { return slots_.size() - holes_; }
  bool empty() const { return size() == 0; }
  iterator begin() { return {slots_.data(), slots_.data() + slots_.size()}; }
  iterator end() { return {slots_.data() + slots_.size(), slots_.data() + slots_.size()}; }
  const_iterator begin() const { return {slots_.data(), slots_.data() + slots_.size()}; }
  const_iterator end() const {
    return {slots_.data() + slots_.size(), slots_.data() + slots_.size()};
  }

 private:
  void Compact() {
    size_t n = 0;
    for (Session* s : slots_) {
      if (s == nullptr) continue;
      s->list_slot = n;
      slots_[n++] = s;
    }
    slots_.resize(n);
    holes_ = 0;
  }

  std::vector<Session*> slots_;  // nullptr: a hole
  size_t holes_ = 0;
};

// One side (outgoing or incoming) of an FLB.
struct FlbSide {
  HazardMutex mutex;
  long count = 0;
  uint64_t data = 0;
  void* obj = nullptr;
  bool loaded = false;      // incoming: count and data read from the record
  bool retrieved = false;   // incoming: retrieve() succeeded
  bool finished = false;    // incoming: finish() ran
  int retrieve_status = 0;  // incoming, 7.3: the latched retrieve errno
  long extra_refs = 0;      // outgoing: get_outgoing references
};

struct FlbState {
  struct liveupdate_flb* flb = nullptr;
  int users = 0;  // handler links
  FlbSide outgoing;
  FlbSide incoming;
};

struct HandlerEntry {
  struct liveupdate_file_handler* fh = nullptr;
  std::vector<FlbState*> flbs;  // in link order
};

// liveupdate_flb_incoming_data_early (see linux/liveupdate.h): the FLB
// page's entry |compatible| read straight from the handover, before any
// LuoState exists.
int ReadIncomingFlbDataEarly(KernelContext& ctx, kho::Kho& kho, absl::string_view compatible,
                             uint64_t* data);

class LuoState {
 public:
  LuoState(KernelContext& ctx, kho::Kho& kho, fs::Vfs& vfs, LuoConfig config);
  ~LuoState();

  // ---- luo_core.cc
  void EarlyStartup();
  int LateStartup();
  int Reboot(bool preserve_context);
  int DeviceOpen();
  void DeviceRelease();
  long DeviceIoctl(unsigned int cmd, unsigned long arg);
  // False (and the call recorded as blocked) once frozen for the kexec.
  // The blocked call is described as |what|, followed by the session's
  // name when |session| is given; nothing is formatted unless it blocks.
  bool EnterSessionCall(absl::string_view what, const Session* session = nullptr);
  bool Is73() const { return config_.profile == LuoProfile::k7_3; }
  static constexpr absl::string_view kTraceCategory = "luo";
  // Whether the machine records LUO's trace events. Every "luo" event is
  // built only when this is true: formatting the arguments (handler,
  // session and token of each callback) would otherwise dominate the
  // serialization at reboot.
  bool Tracing() const { return ctx_.TraceEnabled(kTraceCategory); }
  void TraceCallback(absl::string_view op, const struct liveupdate_file_handler* fh,
                     const Session* session, uint64_t token);

  // ---- luo_session.cc
  int CreateSession(const uint8_t (&name)[abi::kLiveupdateSessionNameLength], struct file** out);
  int RetrieveSession(const uint8_t (&name)[abi::kLiveupdateSessionNameLength], struct file** out);
  long SessionIoctl(Session* session, unsigned int cmd, unsigned long arg);
  int SessionRelease(Session* session);
  int SerializeSessions();
  int DeserializeSessions();
  int SetupIncomingSessions(uint64_t sessions_pa);

  // ---- luo_file.cc
  int PreserveFile(Session* s, uint64_t token, int fd);
  void UnpreserveFiles(Session* s);
  int FreezeFiles(Session* s, abi::LuoFileSetSer* ser);
  void UnfreezeFiles(Session* s, abi::LuoFileSetSer* ser, const LuoFile* failed);
  int RetrieveFile(Session* s, uint64_t token, struct file** out);
  int FinishFiles(Session* s);
  int DeserializeFiles(Session* s, const abi::LuoFileSetSer& ser);
  struct liveupdate_file_op_args RuntimeArgs(Session* s, const LuoFile& f) const;
  struct liveupdate_file_op_args FinishArgs(Session* s, const LuoFile& f) const;
  bool RegistryInsert(unsigned long id, struct file* file);
  void RegistryErase(unsigned long id);
  unsigned long FileId(const struct liveupdate_file_handler* fh, struct file* file) const;
  HandlerEntry* FindHandler(const struct liveupdate_file_handler* fh);
  int RegisterFileHandler(struct liveupdate_file_handler* fh);
  void UnregisterFileHandler(struct liveupdate_file_handler* fh);
  int GetTokenOutgoing(Session* s, struct file* file, uint64_t* token);
  int GetFileIncoming(Session* s, uint64_t token, struct file** out);

  // ---- luo_flb.cc
  int RegisterFlb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb);
  void UnregisterFlb(struct liveupdate_file_handler* fh, struct liveupdate_flb* flb);
  int FlbFilePreserve(HandlerEntry& h);
  void FlbFileUnpreserve(HandlerEntry& h);
  void FlbFileFinish(HandlerEntry& h);
  int FlbGetIncoming(struct liveupdate_flb* flb, void** objp);
  void FlbPutIncoming(struct liveupdate_flb* flb);
  int FlbGetOutgoing(struct liveupdate_flb* flb, void** objp);
  void FlbPutOutgoing(struct liveupdate_flb* flb);
  void SerializeFlbs();
  int SetupIncomingFlbs(uint64_t flbs_pa);
  FlbState* FindFlb(const struct liveupdate_flb* flb);

  KernelContext& ctx_;
  kho::Kho& kho_;
  fs::Vfs& vfs_;
  const LuoConfig config_;
  bool enabled_ = false;
  uint64_t incoming_num_ = 0;

  // Outgoing handover records (preserved memory, written at reboot).
  abi::LuoSer* out_ser_ = nullptr;
  abi::LuoFlbHeaderSer* out_flbs_ = nullptr;
  // Incoming FLB page (restored), or nullptr.
  abi::LuoFlbHeaderSer* in_flbs_ = nullptr;

  // The session rwsem's write side, kept after a successful reboot.
  std::atomic<bool> frozen_{false};
  std::atomic<uint64_t> blocked_calls_{0};

  std::atomic<bool> device_in_use_{false};
  absl::Mutex deserialize_mu_;
  bool deserialize_done_ = false;
  int deserialize_error_ = 0;

  // Handler and FLB registries (luo_register_rwlock), in registration order.
  mutable absl::Mutex register_mu_;
  std::vector<std::unique_ptr<HandlerEntry>> handlers_;
  std::vector<std::unique_ptr<FlbState>> flbs_;

  // Session lists: creation order; the outgoing block set holds one
  // LuoSessionSer per outgoing session.
  mutable absl::Mutex sessions_mu_;
  SessionList outgoing_;
  SessionList incoming_;
  kho::BlockSet outgoing_blocks_{sizeof(abi::LuoSessionSer)};
  kho::BlockSet incoming_blocks_{sizeof(abi::LuoSessionSer)};
  bool incoming_active_ = false;

  // Identities of every outgoing file and retrieved, unfinished incoming
  // file (luo_preserved_files).
  mutable absl::Mutex registry_mu_;
  absl::flat_hash_map<unsigned long, struct file*> preserved_files_;
};

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_LUO_INTERNAL_H_

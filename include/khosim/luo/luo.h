// Luo: one kernel's Live Update Orchestrator (C++ face; the kernel face is
// khosim/linux/liveupdate.h, the userspace API khosim/uapi/liveupdate.h,
// the handover records khosim/abi/luo.h). Semantics follow kernel 7.3, with
// the 7.2 differences behind LuoProfile::k7_2.
//
// Boot (driven by Kernel, enabled only with liveupdate=on and KHO on):
//   EarlyStartup   early initcall: read the previous kernel's "LUO" subtree
//                  (compatible, session chain, FLB page). Corrupt records
//                  panic, as upstream's restore-fail policy does.
//   LateStartup    late initcall: allocate this boot's luo_ser
//                  (liveupdate_num = previous + 1) and FLB page in preserved
//                  memory, add the "LUO" subtree, create /dev/liveupdate.
//                  Any failure disables LUO.
//   first open of /dev/liveupdate: deserialize incoming sessions and files
//                  (once; the first error is latched and every open then
//                  fails with -EIO).
//   Reboot         the reboot hook (Machine::Kexec): freeze every outgoing
//                  session in creation order and its files in preservation
//                  order, writing the records; on a failure roll back
//                  exactly (see luo_session.cc) and return the errno. On
//                  success LUO stays locked for the kexec: any later
//                  session call "blocks" - the simulator returns
//                  -ERESTARTSYS, counts it (blocked_calls) and traces it,
//                  where the kernel would sleep until the machine kexecs.
//                  A preserve-context kexec skips all of it.
//
// FLB refcounts: outgoing = dependent preserved files + get_outgoing refs
// (7.3); the first reference preserves, the last unpreserves. Incoming
// starts from the serialized count on the first get or put; each dependent
// file's finish and each put_incoming drops one; the last runs finish().
// Hazards the kernel would turn into a deadlock or a silent wrap are
// reported as WARNs instead (site names start with "luo-hazard"): get/put
// from inside the same FLB's callbacks, a put without a get, outgoing
// references still held at reboot, an incoming get that would wrap a
// serialized count of LONG_MAX.
//
// Threading: a session's calls into handlers run under that session's
// lock; handler registration, FLB state and the device have their own. The
// simulator detects a thread re-taking a lock it holds (a self-deadlock in
// the kernel) and reports it instead of hanging.
#ifndef KHOSIM_LUO_LUO_H_
#define KHOSIM_LUO_LUO_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "khosim/abi/luo.h"
#include "khosim/base/kernel_context.h"
#include "khosim/linux/liveupdate.h"

namespace khosim::fs {
class Vfs;
}  // namespace khosim::fs
namespace khosim::kho {
class Kho;
}  // namespace khosim::kho

namespace khosim::luo {

enum class LuoProfile {
  k7_2,  // GET_NAME min size 16, FINISH ignores reserved, no outgoing FLB
         // refs, FLB retrieve errors not latched, no in-kernel file APIs
  k7_3,
};
absl::string_view LuoProfileName(LuoProfile profile);

struct LuoConfig {
  LuoProfile profile = LuoProfile::k7_3;
};

class LuoState;  // its parts and their locks (lib/luo/luo_state.h)

class Luo {
 public:
  // Reads liveupdate= (kstrtobool, default off) and the simulator's
  // khosim.luo_profile=7.2|7.3 from the command line.
  Luo(KernelContext& ctx, kho::Kho& kho, fs::Vfs& vfs, LuoConfig config = {});
  ~Luo();
  Luo(const Luo&) = delete;
  Luo& operator=(const Luo&) = delete;

  static Luo& Current();
  static Luo* CurrentOrNull();

  // Boot steps (see the file comment).
  void EarlyStartup();
  int LateStartup();
  // The reboot hook: 0, or the errno that cancels the kexec.
  int Reboot(bool preserve_context);

  bool enabled() const;
  LuoProfile profile() const;
  // Live updates counted so far: the previous kernel's luo_ser number (0
  // after a cold boot); this boot writes incoming + 1 for the next.
  uint64_t incoming_liveupdate_num() const;
  // Head of the previous kernel's session block chain (0 if none): the
  // LuoSer record itself is freed at early startup, the chain is not.
  uint64_t incoming_sessions_pa() const;
  uint64_t liveupdate_num() const { return incoming_liveupdate_num() + 1; }
  // Locked for the kexec after a successful Reboot.
  bool frozen_for_kexec() const;
  uint64_t blocked_calls() const;
  // 0 until the first open; then 0 or the latched deserialization errno.
  int deserialize_error() const;
  bool deserialized() const;

  struct FileInfo {
    uint64_t token = 0;
    std::string compatible;
    int retrieve_status = 0;
    bool has_file = false;
    uint64_t data = 0;  // the handler's serialized_data (its record's address)
  };
  struct SessionInfo {
    std::string name;
    bool incoming = false;   // from the previous kernel
    bool retrieved = false;  // an incoming session handed to userspace
    std::vector<FileInfo> files;
    uint64_t file_blocks = 0;  // pages of the session's file block set
  };
  std::vector<SessionInfo> OutgoingSessions() const;
  std::vector<SessionInfo> IncomingSessions() const;
  uint64_t session_blocks() const;  // pages of the outgoing session set

  struct FlbInfo {
    std::string compatible;
    long outgoing_count = 0;
    long incoming_count = 0;
    bool incoming_retrieved = false;
    bool incoming_finished = false;
    int incoming_retrieve_status = 0;
    int users = 0;  // handlers linked to it
    // The serialized handles: what preserve() returned, and what the
    // previous kernel handed over (0 until loaded).
    uint64_t outgoing_data = 0;
    uint64_t incoming_data = 0;
  };
  std::vector<FlbInfo> Flbs() const;
  // Identities in the global preserved-file registry.
  uint64_t preserved_file_count() const;

  // The invariants of a quiescent LUO: names unique per list, tokens unique
  // per session, registry == outgoing files + retrieved unfinished incoming
  // files, every outgoing block set sized ceil(count / per_block), FLB
  // outgoing counts == dependent files + outstanding gets.
  absl::Status Validate() const;

  // This boot's outgoing luo_ser (nullptr before LateStartup or when
  // disabled): what the next kernel will read.
  const abi::LuoSer* outgoing_record() const;

  LuoState& state() { return *state_; }

 private:
  std::unique_ptr<LuoState> state_;
};

}  // namespace khosim::luo

#endif  // KHOSIM_LUO_LUO_H_

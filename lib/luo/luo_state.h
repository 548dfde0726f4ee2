// LuoState: one kernel's LUO, the parts it is made of, and its boot steps
// (see khosim/luo/luo.h for the lifecycle). Each part owns its state and
// its lock:
//   LuoContext       the kernel, KHO, the VFS, the profile, enablement
//   HandlerRegistry  file handlers and FLBs (luo_register_rwlock)
//   FlbLifecycle     FLB references, per-side locks
//   PreservedFiles   identities of preserved files (its own lock)
//   Sessions         session lists and block sets (the session list lock),
//                    each session's files under its mutex
//   LuoDevice        /dev/liveupdate and the deserialization latch
// Everything here is runtime state in host memory; what crosses a kexec is
// the records in preserved memory.
#ifndef KHOSIM_LIB_LUO_LUO_STATE_H_
#define KHOSIM_LIB_LUO_LUO_STATE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "khosim/abi/luo.h"
#include "khosim/luo/luo.h"
#include "luo_context.h"
#include "luo_device.h"
#include "luo_file.h"
#include "luo_flb.h"
#include "luo_handlers.h"
#include "luo_session.h"

namespace khosim::luo {

class LuoState {
 public:
  LuoState(KernelContext& ctx, kho::Kho& kho, fs::Vfs& vfs, LuoConfig config);
  LuoState(const LuoState&) = delete;
  LuoState& operator=(const LuoState&) = delete;

  // The running kernel's; panics (Current) or nullptr (CurrentOrNull) in a
  // kernel without LUO yet.
  static LuoState& Current();
  static LuoState* CurrentOrNull();

  // Boot steps and the reboot hook (see khosim/luo/luo.h).
  void EarlyStartup();
  int LateStartup();
  int Reboot(bool preserve_context);

  LuoContext& luo() { return luo_; }
  const LuoContext& luo() const { return luo_; }
  HandlerRegistry& handlers() { return handlers_; }
  FlbLifecycle& flbs() { return flbs_; }
  PreservedFiles& preserved() { return preserved_; }
  const PreservedFiles& preserved() const { return preserved_; }
  Sessions& sessions() { return sessions_; }
  const Sessions& sessions() const { return sessions_; }
  LuoDevice& device() { return device_; }
  const LuoDevice& device() const { return device_; }

  uint64_t incoming_num() const { return incoming_num_; }
  const abi::LuoSer* outgoing_record() const { return out_ser_; }

  // Luo::Validate.
  absl::Status Validate() const;

 private:
  LuoContext luo_;
  HandlerRegistry handlers_;
  FlbLifecycle flbs_;
  PreservedFiles preserved_;
  LuoServices services_;
  Sessions sessions_;
  LuoDevice device_;

  // Written at early boot, read-only afterwards.
  uint64_t incoming_num_ = 0;
  // Outgoing handover records (preserved memory, written at reboot); set
  // at late startup.
  abi::LuoSer* out_ser_ = nullptr;
  abi::LuoFlbHeaderSer* out_flbs_ = nullptr;
};

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_LUO_STATE_H_

// FlbLifecycle: the lifetimes of FLBs, global objects that follow the
// preserved files of the handlers they are linked to.
//
// Outgoing side (kernel A): count = dependent preserved files + 7.3
// get_outgoing references. 0 -> 1 takes the FLB module and calls
// preserve(); 1 -> 0 calls unpreserve() and drops the module. At reboot
// every FLB with count > 0 is written {name, data, count} to the FLB page.
// Incoming side (kernel B): the serialized count becomes the incoming count
// on first use (a get, or 7.3: a put); retrieve() runs once, on the first
// get (or before finish if nothing got it); each dependent file's finish
// and each put_incoming drops one; at 0, finish() runs once.
//
// Each side has its own lock (FlbSide::mutex), held while the FLB's
// callbacks run. A callback that calls back into the same side would
// deadlock in the kernel; here the HazardMutex reports it and the call
// fails (-EDEADLK) instead. Hazards the kernel would turn into a silent
// wrap are WARNs ("luo-hazard: ..."): a put without a get, outgoing
// references still held at reboot, an incoming get that would wrap a
// serialized count of LONG_MAX.
#ifndef KHOSIM_LIB_LUO_LUO_FLB_H_
#define KHOSIM_LIB_LUO_LUO_FLB_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "khosim/abi/luo.h"
#include "khosim/kho/kho.h"
#include "khosim/luo/luo.h"
#include "luo_context.h"
#include "luo_handlers.h"

namespace khosim::luo {

class FlbLifecycle {
 public:
  FlbLifecycle(LuoContext& luo, HandlerRegistry& registry) : luo_(luo), registry_(registry) {}
  FlbLifecycle(const FlbLifecycle&) = delete;
  FlbLifecycle& operator=(const FlbLifecycle&) = delete;

  // A file of handler |h| is preserved / unpreserved / finished: every FLB
  // it links gains or drops a reference. FilePreserve undoes what it did
  // and returns the errno (-EDEADLK from inside an FLB callback, -ENODEV
  // for an FLB module going away, or preserve()'s).
  int FilePreserve(HandlerEntry& h);
  void FileUnpreserve(HandlerEntry& h);
  void FileFinish(HandlerEntry& h);

  // The kernel face's liveupdate_flb_{get,put}_{incoming,outgoing}.
  int GetIncoming(struct liveupdate_flb* flb, void** objp);
  void PutIncoming(struct liveupdate_flb* flb);
  int GetOutgoing(struct liveupdate_flb* flb, void** objp);
  void PutOutgoing(struct liveupdate_flb* flb);

  // Reboot: the entries of every FLB with a reference, into |page|.
  void Serialize(abi::LuoFlbHeaderSer* page);
  // Early boot: adopts the previous kernel's FLB page (0: none). -EINVAL
  // when it does not restore or its header is out of range.
  int SetupIncoming(uint64_t flbs_pa);

  // A snapshot for tests and reports (LUO quiescent).
  std::vector<Luo::FlbInfo> Info();

 private:
  int LoadIncomingLocked(FlbState& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.incoming.mutex);
  int RetrieveIncomingLocked(FlbState& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.incoming.mutex);
  void OutgoingPutLocked(FlbState& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.outgoing.mutex);
  void PutIncoming(FlbState& s);
  // Whether the previous kernel's FLB page names |flb|.
  bool HasIncomingRecord(const struct liveupdate_flb* flb) const;

  LuoContext& luo_;
  HandlerRegistry& registry_;
  // The previous kernel's FLB page (restored), or nullptr. Set at early
  // boot, read-only afterwards.
  const abi::LuoFlbHeaderSer* in_flbs_ = nullptr;
};

// liveupdate_flb_incoming_data_early (see linux/liveupdate.h): the FLB
// page's entry |compatible| read straight from the handover, before LUO
// itself exists.
int ReadIncomingFlbDataEarly(KernelContext& ctx, kho::Kho& kho, absl::string_view compatible,
                             uint64_t* data);

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_LUO_FLB_H_

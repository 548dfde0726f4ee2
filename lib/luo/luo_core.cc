// LUO core: enablement, the boot steps that read and write the "LUO"
// subtree, /dev/liveupdate (single opener, lazy deserialization, the ioctl
// dispatch) and the reboot hook.
//
// Lifecycle of the handover records:
//   kernel A  LateStartup: luo_ser {"luo-v5", num, 0, flbs_pa} and the FLB
//             page come from kho_alloc_preserve and the blob is registered
//             as subtree "LUO" at once (KHO is stateless: the subtree is in
//             the root FDT from then on). Reboot fills sessions_pa and the
//             FLB page.
//   kernel B  EarlyStartup: finds "LUO", checks size and compatible, adopts
//             the session chain and the FLB page, frees the luo_ser blob.
//             The session chain is consumed at the first open.
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "khosim/fs/vfs.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/uaccess.h"
#include "khosim/uapi/liveupdate.h"
#include "luo_internal.h"

namespace khosim::luo {

absl::string_view LuoProfileName(LuoProfile profile) {
  return profile == LuoProfile::k7_2 ? "7.2" : "7.3";
}

bool HazardMutex::Lock(KernelContext& ctx, absl::string_view what) {
  if (HeldByCurrentThread()) {
    ctx.Warn(absl::StrCat("luo-hazard: ", what),
             "lock taken again by its holder: the kernel would deadlock here");
    return false;
  }
  mu_.Lock();
  owner_.store(std::this_thread::get_id());
  return true;
}

void HazardMutex::Unlock() {
  owner_.store(std::thread::id());
  mu_.Unlock();
}

LuoState::LuoState(KernelContext& ctx, kho::Kho& kho, fs::Vfs& vfs, LuoConfig config)
    : ctx_(ctx), kho_(kho), vfs_(vfs), config_(config) {
  const bool requested = ctx_.cmdline().GetBool("liveupdate", false);
  if (requested && !kho_.enabled()) {
    ctx_.Log("luo: warning: liveupdate=on needs KHO (kho=on); live update disabled");
  }
  // luo_ser is a raw blob that kernel B sizes by its blob-size (kho-v3+).
  if (requested && kho_.enabled() && !kho_.HasBlobSubtrees()) {
    ctx_.Log(absl::StrCat("luo: warning: KHO profile ", kho_.compatible(),
                          " has no blob-size subtrees (kho-v3+ needed); live update disabled"));
  }
  enabled_ = requested && kho_.enabled() && kho_.HasBlobSubtrees();
}

LuoState::~LuoState() {
  // The kernel is gone: drop host objects only (see linux/fs.h). Files LUO
  // still references are put; with the kernel dead that frees them without
  // running any release callback.
  for (auto* list : {&outgoing_, &incoming_}) {
    for (Session& session : *list) {
      for (auto& f : session.file_set.files) {
        if (f->file != nullptr) fput(f->file);
      }
    }
  }
}

void LuoState::TraceCallback(absl::string_view op, const struct liveupdate_file_handler* fh,
                             const Session* session, uint64_t token) {
  if (!Tracing()) return;
  ctx_.Trace(kTraceCategory, op,
             {{"handler", fh == nullptr ? "" : fh->compatible},
              {"session", session == nullptr ? "" : session->name},
              {"token", absl::StrCat(token)}});
}

bool LuoState::EnterSessionCall(absl::string_view what, const Session* session) {
  // The common path: no allocation, nothing formatted.
  if (!frozen_.load()) return true;
  blocked_calls_.fetch_add(1);
  const std::string call =
      session == nullptr ? std::string(what) : absl::StrCat(what, " ", session->name);
  if (Tracing()) ctx_.Trace(kTraceCategory, "blocked", {{"call", call}});
  ctx_.Log(absl::StrCat("luo: ", call, " blocks until the kexec (sessions are serialized)"));
  return false;
}

void LuoState::EarlyStartup() {
  if (!enabled_ || !kho_.is_kho_boot()) return;
  uint64_t phys = 0;
  uint64_t size = 0;
  const int err = kho_.RetrieveSubtree(abi::kLuoSubtreeName, &phys, &size);
  if (err == -ENOENT) return;  // no live update state: a cold start for LUO
  if (err != 0) ctx_.Panic(KHOSIM_SITE, absl::StrCat("luo: cannot read the LUO subtree: ", err));
  if (size < sizeof(abi::LuoSer)) {
    ctx_.Panic(KHOSIM_SITE, absl::StrCat("luo: LUO subtree of ", size, " bytes is too small"));
  }
  auto* ser = static_cast<abi::LuoSer*>(phys_to_virt(phys));
  if (strncmp(ser->compatible, abi::kLuoCompatible, abi::kLuoCompatibleLength) != 0) {
    ctx_.Panic(KHOSIM_SITE,
               absl::StrCat("luo: incompatible LUO record '",
                            absl::string_view(ser->compatible,
                                              strnlen(ser->compatible, abi::kLuoCompatibleLength)),
                            "', this kernel speaks ", abi::kLuoCompatible));
  }
  incoming_num_ = ser->liveupdate_num;
  const uint64_t sessions_pa = ser->sessions_pa;
  const uint64_t flbs_pa = ser->flbs_pa;
  if (int e = SetupIncomingSessions(sessions_pa); e != 0) {
    ctx_.Panic(KHOSIM_SITE, absl::StrCat("luo: corrupt session chain: ", e));
  }
  if (int e = SetupIncomingFlbs(flbs_pa); e != 0) {
    ctx_.Panic(KHOSIM_SITE, absl::StrCat("luo: corrupt FLB record: ", e));
  }
  // The record itself was a kho_alloc_preserve blob.
  kho_.RestoreFree(ser);
  ctx_.Log(absl::StrCat("luo: live update ", incoming_num_, " retrieved"));
}

namespace {

const struct file_operations kLiveupdateFops = {
    .owner = nullptr,
    .open = [](struct inode*, struct file*) -> int { return Luo::Current().state().DeviceOpen(); },
    .release = [](struct inode*, struct file*) -> int {
      Luo::Current().state().DeviceRelease();
      return 0;
    },
    .unlocked_ioctl = [](struct file*, unsigned int cmd, unsigned long arg) -> long {
      return Luo::Current().state().DeviceIoctl(cmd, arg);
    },
};

}  // namespace

int LuoState::LateStartup() {
  if (!enabled_) return 0;
  // kho_init may have failed and turned KHO off after LUO was set up: with
  // no handover, nothing LUO preserved would reach the next kernel.
  if (!kho_.enabled()) {
    ctx_.Log("luo: warning: KHO was disabled during boot; live update disabled");
    enabled_ = false;
    return 0;
  }
  void* ser = kho_.AllocPreserve(sizeof(abi::LuoSer));
  void* flbs = IS_ERR(ser) ? ser : kho_.AllocPreserve(PAGE_SIZE);
  int err = 0;
  if (IS_ERR(flbs)) {
    err = static_cast<int>(PTR_ERR(flbs));
    if (!IS_ERR(ser)) kho_.UnpreserveFree(ser);
  }
  if (err == 0) {
    out_ser_ = static_cast<abi::LuoSer*>(ser);
    out_flbs_ = static_cast<abi::LuoFlbHeaderSer*>(flbs);
    std::strncpy(out_ser_->compatible, abi::kLuoCompatible, abi::kLuoCompatibleLength);
    out_ser_->liveupdate_num = incoming_num_ + 1;
    out_ser_->flbs_pa = virt_to_phys(out_flbs_);
    out_flbs_->pgcnt = abi::kLuoFlbPageCount;
    err = kho_.AddSubtree(abi::kLuoSubtreeName, out_ser_, sizeof(abi::LuoSer));
    if (err == 0) err = vfs_.RegisterMiscDevice("liveupdate", &kLiveupdateFops);
    if (err != 0) {
      kho_.RemoveSubtree(out_ser_);
      kho_.UnpreserveFree(out_flbs_);
      kho_.UnpreserveFree(out_ser_);
      out_ser_ = nullptr;
      out_flbs_ = nullptr;
    }
  }
  if (err != 0) {
    ctx_.Log(absl::StrCat("luo: error: late startup failed (", err, "); live update disabled"));
    enabled_ = false;
  }
  return err;
}

int LuoState::DeviceOpen() {
  bool expected = false;
  if (!device_in_use_.compare_exchange_strong(expected, true)) return -EBUSY;
  int err = 0;
  {
    absl::MutexLock lock(&deserialize_mu_);
    if (!deserialize_done_) {
      deserialize_done_ = true;
      deserialize_error_ = DeserializeSessions();
      if (deserialize_error_ != 0) {
        ctx_.Log(absl::StrCat("luo: error: deserializing incoming sessions failed: ",
                              deserialize_error_));
      }
    }
    err = deserialize_error_;
  }
  if (err != 0) {
    device_in_use_.store(false);
    return -EIO;
  }
  return 0;
}

void LuoState::DeviceRelease() { device_in_use_.store(false); }

namespace {

struct DeviceOp {
  unsigned int size;
  unsigned int min_size;
  unsigned int cmd;
};

// Indexed by _IOC_NR.
constexpr DeviceOp kDeviceOps[] = {
    {sizeof(liveupdate_ioctl_create_session), sizeof(liveupdate_ioctl_create_session),
     LIVEUPDATE_IOCTL_CREATE_SESSION},
    {sizeof(liveupdate_ioctl_retrieve_session), sizeof(liveupdate_ioctl_retrieve_session),
     LIVEUPDATE_IOCTL_RETRIEVE_SESSION},
};

}  // namespace

long LuoState::DeviceIoctl(unsigned int cmd, unsigned long arg) {
  const unsigned int nr = _IOC_NR(cmd);
  if (nr >= std::size(kDeviceOps)) return -EINVAL;
  void* ubuf = u64_to_user_ptr(arg);
  uint32_t user_size = 0;
  if (copy_from_user(&user_size, ubuf, sizeof(user_size)) != 0) return -EFAULT;
  const DeviceOp& op = kDeviceOps[nr];
  if (op.cmd != cmd) return -ENOIOCTLCMD;
  if (user_size < op.min_size) return -EINVAL;
  // Both commands share one layout: {size, fd out, name in}.
  liveupdate_ioctl_create_session buf;
  static_assert(sizeof(liveupdate_ioctl_create_session) ==
                sizeof(liveupdate_ioctl_retrieve_session));
  if (int err = copy_struct_from_user(&buf, op.size, ubuf, user_size); err != 0) return err;

  buf.fd = get_unused_fd_flags(O_CLOEXEC);
  if (buf.fd < 0) return buf.fd;
  struct file* file = nullptr;
  const int err = nr == LIVEUPDATE_CMD_CREATE_SESSION ? CreateSession(buf.name, &file)
                                                      : RetrieveSession(buf.name, &file);
  if (err != 0) {
    put_unused_fd(buf.fd);
    return err;
  }
  if (copy_to_user(ubuf, &buf, std::min<size_t>(user_size, op.size)) != 0) {
    // The new session file goes away with its only reference: an outgoing
    // session is destroyed, a retrieved one finished.
    fput(file);
    put_unused_fd(buf.fd);
    return -EFAULT;
  }
  fd_install(buf.fd, file);
  return 0;
}

int LuoState::Reboot(bool preserve_context) {
  if (!enabled_) return 0;
  if (preserve_context) {
    if (Tracing()) {
      ctx_.Trace(kTraceCategory, "reboot", {{"serialize", "skipped (preserve_context)"}});
    }
    return 0;
  }
  if (frozen_.load()) return 0;  // already serialized for this kexec
  if (int err = SerializeSessions(); err != 0) {
    if (Tracing()) ctx_.Trace(kTraceCategory, "reboot", {{"error", absl::StrCat(err)}});
    return err;
  }
  SerializeFlbs();
  if (Tracing()) {
    ctx_.Trace(kTraceCategory, "reboot", {{"sessions", absl::StrCat(outgoing_.size())}});
  }
  return 0;
}

// ---- Luo (the C++ face) ----------------------------------------------------

Luo::Luo(KernelContext& ctx, kho::Kho& kho, fs::Vfs& vfs, LuoConfig config) {
  if (auto p = ctx.cmdline().Get("khosim.luo_profile"); p.has_value()) {
    if (*p == "7.2") {
      config.profile = LuoProfile::k7_2;
    } else if (*p == "7.3") {
      config.profile = LuoProfile::k7_3;
    } else {
      ctx.Log(absl::StrCat("luo: warning: unknown khosim.luo_profile=", *p, ", using 7.3"));
    }
  }
  state_ = std::make_unique<LuoState>(ctx, kho, vfs, config);
  ctx.set_slot(KernelSlot::kLuo, this);
}

Luo::~Luo() {
  KernelContext& ctx = state_->ctx_;
  state_.reset();
  if (ctx.slot(KernelSlot::kLuo) == this) ctx.set_slot(KernelSlot::kLuo, nullptr);
}

Luo& Luo::Current() {
  Luo* luo = CurrentOrNull();
  if (luo == nullptr) RequireKernelContext().Panic(KHOSIM_SITE, "luo used before it exists");
  return *luo;
}

Luo* Luo::CurrentOrNull() {
  KernelContext* ctx = CurrentKernelContext();
  return ctx == nullptr ? nullptr : static_cast<Luo*>(ctx->slot(KernelSlot::kLuo));
}

void Luo::EarlyStartup() { state_->EarlyStartup(); }
int Luo::LateStartup() { return state_->LateStartup(); }
int Luo::Reboot(bool preserve_context) { return state_->Reboot(preserve_context); }
bool Luo::enabled() const { return state_->enabled_; }
LuoProfile Luo::profile() const { return state_->config_.profile; }
uint64_t Luo::incoming_liveupdate_num() const { return state_->incoming_num_; }
uint64_t Luo::incoming_sessions_pa() const { return state_->incoming_blocks_.head_pa(); }
const abi::LuoSer* Luo::outgoing_record() const { return state_->out_ser_; }
bool Luo::frozen_for_kexec() const { return state_->frozen_.load(); }
uint64_t Luo::blocked_calls() const { return state_->blocked_calls_.load(); }

int Luo::deserialize_error() const {
  absl::MutexLock lock(&state_->deserialize_mu_);
  return state_->deserialize_error_;
}

bool Luo::deserialized() const {
  absl::MutexLock lock(&state_->deserialize_mu_);
  return state_->deserialize_done_;
}

}  // namespace khosim::luo

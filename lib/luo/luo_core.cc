// LUO's core: the boot steps that read and write the "LUO" subtree, the
// reboot hook, and the C++ face (khosim/luo/luo.h) over LuoState.
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
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "luo_state.h"

namespace khosim::luo {

absl::string_view LuoProfileName(LuoProfile profile) {
  return profile == LuoProfile::k7_2 ? "7.2" : "7.3";
}

LuoState::LuoState(KernelContext& ctx, kho::Kho& kho, fs::Vfs& vfs, LuoConfig config)
    : luo_(ctx, kho, vfs, config),
      handlers_(luo_),
      flbs_(luo_, handlers_),
      services_{luo_, handlers_, flbs_, preserved_},
      sessions_(services_),
      device_(luo_, sessions_) {}

LuoState* LuoState::CurrentOrNull() {
  Luo* luo = Luo::CurrentOrNull();
  return luo == nullptr ? nullptr : &luo->state();
}

LuoState& LuoState::Current() { return Luo::Current().state(); }

void LuoState::EarlyStartup() {
  if (!luo_.enabled() || !luo_.kho().is_kho_boot()) return;
  uint64_t phys = 0;
  uint64_t size = 0;
  const int err = luo_.kho().RetrieveSubtree(abi::kLuoSubtreeName, &phys, &size);
  if (err == -ENOENT) return;  // no live update state: a cold start for LUO
  if (err != 0)
    luo_.ctx().Panic(KHOSIM_SITE, absl::StrCat("luo: cannot read the LUO subtree: ", err));
  if (size < sizeof(abi::LuoSer)) {
    luo_.ctx().Panic(KHOSIM_SITE,
                     absl::StrCat("luo: LUO subtree of ", size, " bytes is too small"));
  }
  auto* ser = static_cast<abi::LuoSer*>(phys_to_virt(phys));
  if (strncmp(ser->compatible, abi::kLuoCompatible, abi::kLuoCompatibleLength) != 0) {
    luo_.ctx().Panic(
        KHOSIM_SITE,
        absl::StrCat(
            "luo: incompatible LUO record '",
            absl::string_view(ser->compatible, strnlen(ser->compatible, abi::kLuoCompatibleLength)),
            "', this kernel speaks ", abi::kLuoCompatible));
  }
  incoming_num_ = ser->liveupdate_num;
  const uint64_t sessions_pa = ser->sessions_pa;
  const uint64_t flbs_pa = ser->flbs_pa;
  if (int e = sessions_.SetupIncoming(sessions_pa); e != 0) {
    luo_.ctx().Panic(KHOSIM_SITE, absl::StrCat("luo: corrupt session chain: ", e));
  }
  if (int e = flbs_.SetupIncoming(flbs_pa); e != 0) {
    luo_.ctx().Panic(KHOSIM_SITE, absl::StrCat("luo: corrupt FLB record: ", e));
  }
  // The record itself was a kho_alloc_preserve blob.
  luo_.kho().RestoreFree(ser);
  luo_.ctx().Log(absl::StrCat("luo: live update ", incoming_num_, " retrieved"));
}

int LuoState::LateStartup() {
  if (!luo_.enabled()) return 0;
  // kho_init may have failed and turned KHO off after LUO was set up: with
  // no handover, nothing LUO preserved would reach the next kernel.
  if (!luo_.kho().enabled()) {
    luo_.ctx().Log("luo: warning: KHO was disabled during boot; live update disabled");
    luo_.Disable();
    return 0;
  }
  void* ser = luo_.kho().AllocPreserve(sizeof(abi::LuoSer));
  void* flbs = IS_ERR(ser) ? ser : luo_.kho().AllocPreserve(PAGE_SIZE);
  int err = 0;
  if (IS_ERR(flbs)) {
    err = static_cast<int>(PTR_ERR(flbs));
    if (!IS_ERR(ser)) luo_.kho().UnpreserveFree(ser);
  }
  if (err == 0) {
    out_ser_ = static_cast<abi::LuoSer*>(ser);
    out_flbs_ = static_cast<abi::LuoFlbHeaderSer*>(flbs);
    std::strncpy(out_ser_->compatible, abi::kLuoCompatible, abi::kLuoCompatibleLength);
    out_ser_->liveupdate_num = incoming_num_ + 1;
    out_ser_->flbs_pa = virt_to_phys(out_flbs_);
    out_flbs_->pgcnt = abi::kLuoFlbPageCount;
    err = luo_.kho().AddSubtree(abi::kLuoSubtreeName, out_ser_, sizeof(abi::LuoSer));
    if (err == 0) err = luo_.vfs().RegisterMiscDevice("liveupdate", LuoDevice::Fops());
    if (err != 0) {
      luo_.kho().RemoveSubtree(out_ser_);
      luo_.kho().UnpreserveFree(out_flbs_);
      luo_.kho().UnpreserveFree(out_ser_);
      out_ser_ = nullptr;
      out_flbs_ = nullptr;
    }
  }
  if (err != 0) {
    luo_.ctx().Log(
        absl::StrCat("luo: error: late startup failed (", err, "); live update disabled"));
    luo_.Disable();
  }
  return err;
}

int LuoState::Reboot(bool preserve_context) {
  if (!luo_.enabled()) return 0;
  if (preserve_context) {
    if (luo_.Tracing()) luo_.Trace("reboot", {{"serialize", "skipped (preserve_context)"}});
    return 0;
  }
  if (sessions_.frozen()) return 0;  // already serialized for this kexec
  if (int err = sessions_.Serialize(out_ser_); err != 0) {
    if (luo_.Tracing()) luo_.Trace("reboot", {{"error", absl::StrCat(err)}});
    return err;
  }
  flbs_.Serialize(out_flbs_);
  if (luo_.Tracing()) {
    luo_.Trace("reboot", {{"sessions", absl::StrCat(sessions_.outgoing_count())}});
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
  KernelContext& ctx = state_->luo().ctx();
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
bool Luo::enabled() const { return state_->luo().enabled(); }
LuoProfile Luo::profile() const { return state_->luo().config().profile; }
uint64_t Luo::incoming_liveupdate_num() const { return state_->incoming_num(); }
uint64_t Luo::incoming_sessions_pa() const { return state_->sessions().incoming_head_pa(); }
const abi::LuoSer* Luo::outgoing_record() const { return state_->outgoing_record(); }
bool Luo::frozen_for_kexec() const { return state_->sessions().frozen(); }
uint64_t Luo::blocked_calls() const { return state_->sessions().blocked_calls(); }
int Luo::deserialize_error() const { return state_->device().deserialize_error(); }
bool Luo::deserialized() const { return state_->device().deserialized(); }
std::vector<Luo::SessionInfo> Luo::OutgoingSessions() const {
  return state_->sessions().Info(/*incoming=*/false);
}
std::vector<Luo::SessionInfo> Luo::IncomingSessions() const {
  return state_->sessions().Info(/*incoming=*/true);
}
uint64_t Luo::session_blocks() const { return state_->sessions().outgoing_blocks(); }
std::vector<Luo::FlbInfo> Luo::Flbs() const { return state_->flbs().Info(); }
uint64_t Luo::preserved_file_count() const { return state_->preserved().size(); }
absl::Status Luo::Validate() const { return state_->Validate(); }

}  // namespace khosim::luo

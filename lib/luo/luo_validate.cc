// Luo::Validate: the invariants a quiescent LUO keeps (reference 9.2).
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "luo_internal.h"

namespace khosim::luo {

absl::Status Luo::Validate() const {
  LuoState& st = *state_;
  absl::MutexLock sessions(&st.sessions_mu_);
  absl::MutexLock registry(&st.registry_mu_);
  uint64_t expected_registry = 0;
  for (const auto* list : {&st.outgoing_, &st.incoming_}) {
    absl::flat_hash_set<std::string> names;
    for (const Session& s : *list) {
      if (!names.insert(s.name).second) {
        return absl::InternalError(absl::StrCat("duplicate session name ", s.name));
      }
      absl::flat_hash_set<uint64_t> tokens;
      for (const auto& f : s.file_set.files) {
        if (!tokens.insert(f->token).second) {
          return absl::InternalError(
              absl::StrCat("session ", s.name, ": duplicate token ", f->token));
        }
        if (f->file == nullptr) continue;
        expected_registry++;
        auto it = st.preserved_files_.find(st.FileId(f->fh, f->file));
        if (it == st.preserved_files_.end() || it->second != f->file) {
          return absl::InternalError(absl::StrCat("session ", s.name, " token ", f->token,
                                                  ": file missing from the registry"));
        }
      }
      if (list == &st.outgoing_) {
        if (absl::Status v = s.file_set.block_set.Validate(s.file_set.files.size(), false);
            !v.ok()) {
          return absl::InternalError(absl::StrCat("session ", s.name, ": ", v.message()));
        }
      }
    }
  }
  if (st.preserved_files_.size() != expected_registry) {
    return absl::InternalError(absl::StrCat("registry holds ", st.preserved_files_.size(),
                                            " files, sessions hold ", expected_registry));
  }
  if (absl::Status v = st.outgoing_blocks_.Validate(st.outgoing_.size(), false); !v.ok()) {
    return absl::InternalError(absl::StrCat("session block set: ", v.message()));
  }
  absl::MutexLock reg(&st.register_mu_);
  for (const auto& flb : st.flbs_) {
    long dependents = 0;
    for (const auto& h : st.handlers_) {
      bool linked = false;
      for (const FlbState* l : h->flbs) linked |= l == flb.get();
      if (!linked) continue;
      for (const Session& s : st.outgoing_) {
        for (const auto& f : s.file_set.files) dependents += f->fh == h->fh ? 1 : 0;
      }
    }
    if (flb->outgoing.count != dependents + flb->outgoing.extra_refs) {
      return absl::InternalError(absl::StrCat(
          "FLB ", flb->flb->compatible, ": outgoing count ", flb->outgoing.count, ", expected ",
          dependents, " files + ", flb->outgoing.extra_refs, " references"));
    }
  }
  return absl::OkStatus();
}

uint64_t Luo::preserved_file_count() const {
  absl::MutexLock lock(&state_->registry_mu_);
  return state_->preserved_files_.size();
}

}  // namespace khosim::luo

// Luo::Validate: the invariants a quiescent LUO keeps (reference 9.2):
// names unique per list, tokens unique per session, the preserved-file
// registry == outgoing files + retrieved unfinished incoming files, every
// outgoing block set sized ceil(count / per_block), FLB outgoing counts ==
// dependent files + outstanding gets.
#include "absl/strings/str_cat.h"
#include "luo_state.h"

namespace khosim::luo {

absl::Status LuoState::Validate() const {
  uint64_t registered = 0;
  if (absl::Status v = sessions_.Validate(&registered); !v.ok()) return v;
  if (preserved_.size() != registered) {
    return absl::InternalError(
        absl::StrCat("registry holds ", preserved_.size(), " files, sessions hold ", registered));
  }
  // Counted first: the session lock is taken before the registry's, never
  // inside it.
  return handlers_.ValidateFlbCounts(sessions_.OutgoingFilesByHandler());
}

}  // namespace khosim::luo

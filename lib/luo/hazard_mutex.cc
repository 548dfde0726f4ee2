// HazardMutex (see the header).
#include "hazard_mutex.h"

#include "absl/strings/str_cat.h"

namespace khosim::luo {

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

}  // namespace khosim::luo

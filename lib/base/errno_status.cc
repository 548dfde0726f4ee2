// Errno-preserving absl::Status conversion (see the header for why).
#include "khosim/base/errno_status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace khosim {
namespace {
constexpr absl::string_view kErrnoPayloadUrl = "khosim/errno";
}  // namespace

absl::Status KernelErrorToStatus(int err, absl::string_view context) {
  if (err == 0) return absl::OkStatus();
  const int errnum = err < 0 ? -err : err;
  absl::Status status =
      absl::ErrnoToStatus(errnum, context.empty() ? std::string(ErrnoName(errnum))
                                                  : absl::StrCat(context, ": ", ErrnoName(errnum)));
  status.SetPayload(kErrnoPayloadUrl, absl::Cord(absl::StrCat(errnum)));
  return status;
}

int StatusErrno(const absl::Status& status) {
  if (status.ok()) return 0;
  auto payload = status.GetPayload(kErrnoPayloadUrl);
  int errnum = 0;
  if (payload.has_value() && absl::SimpleAtoi(std::string(*payload), &errnum)) return errnum;
  return EIO;
}

absl::string_view ErrnoName(int errnum) {
  switch (errnum) {
#define KHOSIM_ERRNO_CASE(e) \
  case e:                    \
    return #e;
    KHOSIM_ERRNO_CASE(EPERM)
    KHOSIM_ERRNO_CASE(ENOENT)
    KHOSIM_ERRNO_CASE(EIO)
    KHOSIM_ERRNO_CASE(E2BIG)
    KHOSIM_ERRNO_CASE(EBADF)
    KHOSIM_ERRNO_CASE(EAGAIN)
    KHOSIM_ERRNO_CASE(ENOMEM)
    KHOSIM_ERRNO_CASE(EFAULT)
    KHOSIM_ERRNO_CASE(EBUSY)
    KHOSIM_ERRNO_CASE(EEXIST)
    KHOSIM_ERRNO_CASE(ENODEV)
    KHOSIM_ERRNO_CASE(EINVAL)
    KHOSIM_ERRNO_CASE(EMFILE)
    KHOSIM_ERRNO_CASE(ENOTTY)
    KHOSIM_ERRNO_CASE(EFBIG)
    KHOSIM_ERRNO_CASE(ENOSPC)
    KHOSIM_ERRNO_CASE(ERANGE)
    KHOSIM_ERRNO_CASE(ENODATA)
    KHOSIM_ERRNO_CASE(EOPNOTSUPP)
    KHOSIM_ERRNO_CASE(EADDRINUSE)
    KHOSIM_ERRNO_CASE(EADDRNOTAVAIL)
#undef KHOSIM_ERRNO_CASE
    default:
      return "E?";
  }
}

}  // namespace khosim

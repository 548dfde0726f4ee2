// Exact errnos at the harness edge.
//
// Inside the kernel every error is a negative errno. absl::ErrnoToStatus maps
// many errnos to one canonical code (ENOMEM, ENOSPC and EMFILE all become
// kResourceExhausted), so a test could not tell them apart. These helpers
// attach the errno as a payload and read it back exactly.
#ifndef KHOSIM_BASE_ERRNO_STATUS_H_
#define KHOSIM_BASE_ERRNO_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace khosim {

// |err| is a kernel return value: 0 or a negative errno.
absl::Status KernelErrorToStatus(int err, absl::string_view context = {});
// The positive errno carried by |status|, 0 for OK. A status that was not
// made by KernelErrorToStatus yields EIO.
int StatusErrno(const absl::Status& status);
// "ENOMEM", "EINVAL", ... for a positive errno.
absl::string_view ErrnoName(int errnum);

}  // namespace khosim

#endif  // KHOSIM_BASE_ERRNO_STATUS_H_

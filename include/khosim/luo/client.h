// Userspace's side of /dev/liveupdate: typed wrappers over the raw ioctls,
// the way the kernel selftests' libliveupdate wraps them. Each returns what
// the syscall returns: a value >= 0 (an fd, or 0), or a negative errno.
// Tests that probe the ioctl rules themselves call Process::Ioctl directly.
#ifndef KHOSIM_LUO_CLIENT_H_
#define KHOSIM_LUO_CLIENT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "khosim/fs/vfs.h"

namespace khosim::luo {

inline constexpr absl::string_view kLiveupdateDevice = "/dev/liveupdate";

int OpenLiveupdate(fs::Process& p);
int CreateSession(fs::Process& p, int dev_fd, absl::string_view name);
int RetrieveSession(fs::Process& p, int dev_fd, absl::string_view name);
int PreserveFd(fs::Process& p, int session_fd, int fd, uint64_t token);
int RetrieveFd(fs::Process& p, int session_fd, uint64_t token);
int FinishSession(fs::Process& p, int session_fd);
int GetSessionName(fs::Process& p, int session_fd, std::string* name);

}  // namespace khosim::luo

#endif  // KHOSIM_LUO_CLIENT_H_

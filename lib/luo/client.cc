// Typed wrappers over the /dev/liveupdate ioctls (see luo/client.h).
#include "khosim/luo/client.h"

#include <fcntl.h>

#include <cstring>

#include "khosim/uapi/liveupdate.h"

namespace khosim::luo {
namespace {

template <typename Arg>
void SetName(Arg& arg, absl::string_view name) {
  std::memcpy(arg.name, name.data(), std::min(name.size(), sizeof(arg.name)));
}

}  // namespace

int OpenLiveupdate(fs::Process& p) { return p.Open(kLiveupdateDevice, O_RDWR); }

int CreateSession(fs::Process& p, int dev_fd, absl::string_view name) {
  liveupdate_ioctl_create_session arg = {};
  arg.size = sizeof(arg);
  SetName(arg, name);
  const long err = p.Ioctl(dev_fd, LIVEUPDATE_IOCTL_CREATE_SESSION, &arg);
  return err != 0 ? static_cast<int>(err) : arg.fd;
}

int RetrieveSession(fs::Process& p, int dev_fd, absl::string_view name) {
  liveupdate_ioctl_retrieve_session arg = {};
  arg.size = sizeof(arg);
  SetName(arg, name);
  const long err = p.Ioctl(dev_fd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &arg);
  return err != 0 ? static_cast<int>(err) : arg.fd;
}

int PreserveFd(fs::Process& p, int session_fd, int fd, uint64_t token) {
  liveupdate_session_preserve_fd arg = {};
  arg.size = sizeof(arg);
  arg.fd = fd;
  arg.token = token;
  return static_cast<int>(p.Ioctl(session_fd, LIVEUPDATE_SESSION_PRESERVE_FD, &arg));
}

int RetrieveFd(fs::Process& p, int session_fd, uint64_t token) {
  liveupdate_session_retrieve_fd arg = {};
  arg.size = sizeof(arg);
  arg.token = token;
  const long err = p.Ioctl(session_fd, LIVEUPDATE_SESSION_RETRIEVE_FD, &arg);
  return err != 0 ? static_cast<int>(err) : arg.fd;
}

int FinishSession(fs::Process& p, int session_fd) {
  liveupdate_session_finish arg = {};
  arg.size = sizeof(arg);
  return static_cast<int>(p.Ioctl(session_fd, LIVEUPDATE_SESSION_FINISH, &arg));
}

int GetSessionName(fs::Process& p, int session_fd, std::string* name) {
  liveupdate_session_get_name arg = {};
  arg.size = sizeof(arg);
  const long err = p.Ioctl(session_fd, LIVEUPDATE_SESSION_GET_NAME, &arg);
  if (err != 0) return static_cast<int>(err);
  const char* s = reinterpret_cast<const char*>(arg.name);
  name->assign(s, strnlen(s, sizeof(arg.name)));
  return 0;
}

}  // namespace khosim::luo

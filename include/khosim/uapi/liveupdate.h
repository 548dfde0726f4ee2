// The /dev/liveupdate userspace API (upstream include/uapi/linux/liveupdate.h,
// kernel 7.3): ioctl numbers and argument structs. Every struct begins with
// `size` (the caller's sizeof) and follows the extensible-struct rules: a
// size below the command's minimum is -EINVAL, extra bytes must be zero
// (-E2BIG), and the reply is copied back up to min(size, sizeof).
#ifndef KHOSIM_UAPI_LIVEUPDATE_H_
#define KHOSIM_UAPI_LIVEUPDATE_H_

#include <linux/ioctl.h>

#include <cstddef>
#include <cstdint>

#define LIVEUPDATE_IOCTL_TYPE 0xBA
#define LIVEUPDATE_SESSION_NAME_LENGTH 64

enum {
  LIVEUPDATE_CMD_BASE = 0x00,
  LIVEUPDATE_CMD_CREATE_SESSION = LIVEUPDATE_CMD_BASE,
  LIVEUPDATE_CMD_RETRIEVE_SESSION = 0x01,
};

enum {
  LIVEUPDATE_CMD_SESSION_BASE = 0x40,
  LIVEUPDATE_CMD_SESSION_PRESERVE_FD = LIVEUPDATE_CMD_SESSION_BASE,
  LIVEUPDATE_CMD_SESSION_RETRIEVE_FD = 0x41,
  LIVEUPDATE_CMD_SESSION_FINISH = 0x42,
  LIVEUPDATE_CMD_SESSION_GET_NAME = 0x43,
};

struct liveupdate_ioctl_create_session {
  uint32_t size;
  int32_t fd;  // out: O_CLOEXEC session fd
  uint8_t name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
#define LIVEUPDATE_IOCTL_CREATE_SESSION _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_CREATE_SESSION)

struct liveupdate_ioctl_retrieve_session {
  uint32_t size;
  int32_t fd;  // out
  uint8_t name[LIVEUPDATE_SESSION_NAME_LENGTH];
};
#define LIVEUPDATE_IOCTL_RETRIEVE_SESSION \
  _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_RETRIEVE_SESSION)

struct liveupdate_session_preserve_fd {
  uint32_t size;
  int32_t fd;
  alignas(8) uint64_t token;
};
#define LIVEUPDATE_SESSION_PRESERVE_FD \
  _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_PRESERVE_FD)

struct liveupdate_session_retrieve_fd {
  uint32_t size;
  int32_t fd;  // out
  alignas(8) uint64_t token;
};
#define LIVEUPDATE_SESSION_RETRIEVE_FD \
  _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_RETRIEVE_FD)

struct liveupdate_session_finish {
  uint32_t size;
  uint32_t reserved;  // must be 0 (7.3)
};
#define LIVEUPDATE_SESSION_FINISH _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_FINISH)

struct liveupdate_session_get_name {
  uint32_t size;
  uint32_t reserved;                             // must be 0
  uint8_t name[LIVEUPDATE_SESSION_NAME_LENGTH];  // out, NUL-terminated
};
#define LIVEUPDATE_SESSION_GET_NAME _IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_GET_NAME)

static_assert(sizeof(liveupdate_ioctl_create_session) == 72);
static_assert(sizeof(liveupdate_ioctl_retrieve_session) == 72);
static_assert(sizeof(liveupdate_session_preserve_fd) == 16);
static_assert(offsetof(liveupdate_session_preserve_fd, token) == 8);
static_assert(sizeof(liveupdate_session_retrieve_fd) == 16);
static_assert(sizeof(liveupdate_session_finish) == 8);
static_assert(sizeof(liveupdate_session_get_name) == 72);
static_assert(LIVEUPDATE_IOCTL_CREATE_SESSION == 0xBA00);
static_assert(LIVEUPDATE_SESSION_GET_NAME == 0xBA43);

#endif  // KHOSIM_UAPI_LIVEUPDATE_H_

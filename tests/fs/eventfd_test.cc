// eventfd: eventfd2(2)'s flags and errnos, the counter as read(2) and
// write(2) move it (normal and semaphore mode, the overflow limit), the
// simulator's answer where the kernel would sleep, and the kernel face a
// driver uses (lookup, signal, references that outlive the fd, kexec).
// The counter and flag facts are those of upstream's eventfd selftest.
#include "khosim/fs/eventfd.h"

#include <fcntl.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/linux/err.h"
#include "khosim/linux/eventfd.h"
#include "khosim/linux/fs.h"
#include "khosim/machine/event_trace.h"
#include "khosim/machine/machine.h"
#include "khosim/mm/mm.h"

namespace khosim {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kMax = 0xfffffffffffffffeULL;  // the most a write may reach

class EventfdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_.Boot();
    m_.Activate();
    p_ = &vfs().CreateProcess("vmm");
    slab_ = m_.kernel().mm().SlabObjects();
    files_ = vfs().live_files();
    warns_ = m_.kernel().WarnCount();
  }
  fs::Vfs& vfs() { return m_.kernel().vfs(); }
  fs::Process& p() { return *p_; }

  // read(2) of one u64: 8 and *value, or -errno.
  ssize_t ReadValue(int fd, uint64_t* value) { return p().Read(fd, value, sizeof(*value)); }
  ssize_t WriteValue(int fd, uint64_t value) { return p().Write(fd, &value, sizeof(value)); }
  uint64_t Count(int fd) {
    fs::EventfdInfo info;
    EXPECT_TRUE(fs::EventfdFdinfo(p().PeekFile(fd), &info));
    return info.count;
  }
  // Nothing of any eventfd (context, file) is left.
  void ExpectNothingLeft() {
    EXPECT_EQ(m_.kernel().mm().SlabObjects(), slab_);
    EXPECT_EQ(vfs().live_files(), files_);
  }

  Machine m_{MachineConfig{.ram = 256 * kMiB, .seed = 11}};
  fs::Process* p_ = nullptr;
  size_t slab_ = 0;
  int64_t files_ = 0;
  uint64_t warns_ = 0;
};

TEST_F(EventfdTest, CountersReadBackExactlyAndReadingEmptiesThem) {
  for (const unsigned int initval : {52u, UINT_MAX}) {
    const int fd = p().Eventfd(initval, EFD_NONBLOCK);
    ASSERT_GE(fd, 0);
    uint64_t value = 0;
    EXPECT_EQ(ReadValue(fd, &value), 8);
    EXPECT_EQ(value, initval);
    EXPECT_EQ(ReadValue(fd, &value), -EAGAIN);
    // Written values add up and come back in one read.
    EXPECT_EQ(WriteValue(fd, initval), 8);
    EXPECT_EQ(WriteValue(fd, 1), 8);
    EXPECT_EQ(ReadValue(fd, &value), 8);
    EXPECT_EQ(value, uint64_t{initval} + 1);
    EXPECT_EQ(p().Close(fd), 0);
  }
  ExpectNothingLeft();
}

TEST_F(EventfdTest, SemaphoreModeHandsOutOneAtATime) {
  const int fd = p().Eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
  ASSERT_GE(fd, 0);
  fs::EventfdInfo info;
  ASSERT_TRUE(fs::EventfdFdinfo(p().PeekFile(fd), &info));
  EXPECT_TRUE(info.semaphore);
  EXPECT_EQ(info.count, 5u);
  for (int i = 0; i < 5; ++i) {
    uint64_t value = 0;
    EXPECT_EQ(ReadValue(fd, &value), 8) << i;
    EXPECT_EQ(value, 1u) << i;
    EXPECT_EQ(Count(fd), static_cast<uint64_t>(4 - i));
  }
  uint64_t value = 0;
  EXPECT_EQ(ReadValue(fd, &value), -EAGAIN);
}

TEST_F(EventfdTest, FlagsShowThroughFcntlAndTheFile) {
  const int plain = p().Eventfd(0, 0);
  const int nonblock = p().Eventfd(0, EFD_NONBLOCK);
  const int both = p().Eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(both, 0);
  EXPECT_EQ(p().Fcntl(plain, F_GETFL, 0), O_RDWR);  // the kernel adds O_RDWR
  EXPECT_EQ(p().Fcntl(plain, F_GETFD, 0), 0);
  EXPECT_EQ(p().Fcntl(nonblock, F_GETFL, 0), O_RDWR | O_NONBLOCK);
  EXPECT_EQ(p().Fcntl(both, F_GETFL, 0), O_RDWR | O_NONBLOCK);
  EXPECT_EQ(p().Fcntl(both, F_GETFD, 0), FD_CLOEXEC);
  EXPECT_STREQ(p().PeekFile(plain)->f_name, "anon_inode:[eventfd]");
  fs::EventfdInfo info;
  ASSERT_TRUE(fs::EventfdFdinfo(p().PeekFile(plain), &info));
  EXPECT_FALSE(info.semaphore);
  EXPECT_EQ(p().Lseek(plain, 100, SEEK_SET), 0);  // noop_llseek
  p().Exec();
  EXPECT_EQ(p().PeekFile(both), nullptr);  // EFD_CLOEXEC
}

TEST_F(EventfdTest, BadFlagsAreEinvalAndTakeNothing) {
  for (const int flags : {8, O_RDWR, O_APPEND, O_DIRECT, EFD_SEMAPHORE | 4, -1}) {
    EXPECT_EQ(p().Eventfd(0, flags), -EINVAL) << flags;
  }
  EXPECT_TRUE(p().OpenFds().empty());
  ExpectNothingLeft();
}

TEST_F(EventfdTest, WritesStopOneShortOfAllOnes) {
  const int fd = p().Eventfd(0, EFD_NONBLOCK);
  EXPECT_EQ(WriteValue(fd, ~uint64_t{0}), -EINVAL);
  EXPECT_EQ(WriteValue(fd, kMax), 8);
  EXPECT_EQ(WriteValue(fd, 1), -EAGAIN);  // the counter would pass kMax
  EXPECT_EQ(WriteValue(fd, 0), 8);        // adding nothing always fits
  EXPECT_EQ(Count(fd), kMax);
  uint64_t value = 0;
  EXPECT_EQ(ReadValue(fd, &value), 8);
  EXPECT_EQ(value, kMax);
  EXPECT_EQ(WriteValue(fd, 7), 8);
  EXPECT_EQ(WriteValue(fd, kMax - 6), -EAGAIN);
  EXPECT_EQ(Count(fd), 7u);  // a refused write adds nothing
  EXPECT_EQ(WriteValue(fd, kMax - 7), 8);
  EXPECT_EQ(Count(fd), kMax);
}

TEST_F(EventfdTest, ShortBuffersAreEinvalAndLongOnesMoveEightBytes) {
  const int fd = p().Eventfd(3, EFD_NONBLOCK);
  unsigned char buf[16];
  std::memset(buf, 0xaa, sizeof(buf));
  EXPECT_EQ(p().Read(fd, buf, 7), -EINVAL);
  EXPECT_EQ(p().Write(fd, buf, 7), -EINVAL);
  EXPECT_EQ(p().Read(fd, buf, 0), -EINVAL);
  EXPECT_EQ(Count(fd), 3u);  // nothing consumed
  EXPECT_EQ(p().Read(fd, buf, sizeof(buf)), 8);
  uint64_t value = 0;
  std::memcpy(&value, buf, 8);
  EXPECT_EQ(value, 3u);
  EXPECT_EQ(buf[8], 0xaa);  // only 8 bytes stored
  value = 9;
  std::memcpy(buf, &value, 8);
  EXPECT_EQ(p().Write(fd, buf, sizeof(buf)), 8);
  EXPECT_EQ(Count(fd), 9u);
}

TEST_F(EventfdTest, FaultingUserBuffersAreEfault) {
  const int fd = p().Eventfd(4, EFD_NONBLOCK);
  auto* bad = reinterpret_cast<void*>(8);
  EXPECT_EQ(p().Write(fd, bad, 8), -EFAULT);
  EXPECT_EQ(Count(fd), 4u);
  // As in the kernel, the counter is consumed before the copy fails.
  EXPECT_EQ(p().Read(fd, bad, 8), -EFAULT);
  EXPECT_EQ(Count(fd), 0u);
}

// Simulator difference (khosim/fs/eventfd.h): no other task could ever
// wake a sleeper, so a blocking eventfd answers as a non-blocking one, and
// the trace says where the kernel would have slept.
TEST_F(EventfdTest, BlockingEventfdFailsWithEagainWhereTheKernelWouldSleep) {
  const int fd = p().Eventfd(0, 0);
  uint64_t value = 0;
  EXPECT_EQ(ReadValue(fd, &value), -EAGAIN);
  EXPECT_EQ(WriteValue(fd, kMax), 8);
  EXPECT_EQ(WriteValue(fd, 1), -EAGAIN);
  EXPECT_EQ(ReadValue(fd, &value), 8);
  EXPECT_EQ(value, kMax);
  const int nonblock = p().Eventfd(0, EFD_NONBLOCK);
  EXPECT_EQ(ReadValue(nonblock, &value), -EAGAIN);
  // The non-blocking -EAGAIN is not one.
  std::vector<std::string> ops;
  for (const TraceEvent& event : m_.trace().Events("fs")) {
    if (event.name == "eventfd_would_block") ops.push_back(event.args.at(0).second);
  }
  EXPECT_THAT(ops, ElementsAre("read", "write"));
}

TEST_F(EventfdTest, CreationFailuresLeaveNothingBehind) {
  m_.faults().FailOnce("kmalloc");
  EXPECT_EQ(p().Eventfd(0, 0), -ENOMEM);
  m_.faults().FailOnce("get_unused_fd");
  EXPECT_EQ(p().Eventfd(0, 0), -EMFILE);
  m_.faults().FailOnce("alloc_file");
  EXPECT_EQ(p().Eventfd(0, 0), -ENOMEM);
  p().SetRlimitNofile(0);
  EXPECT_EQ(p().Eventfd(0, 0), -EMFILE);
  EXPECT_TRUE(p().OpenFds().empty());
  ExpectNothingLeft();
  p().SetRlimitNofile(1024);
  EXPECT_EQ(p().Eventfd(0, 0), 0);
  p().Exit();
  EXPECT_EQ(p().Eventfd(0, 0), -ESRCH);
  ExpectNothingLeft();
}

// ---- Kernel face ------------------------------------------------------------

TEST_F(EventfdTest, FdgetFindsOnlyEventfds) {
  const int efd = p().Eventfd(0, 0);
  const int memfd = fs::MemfdCreate(p(), "guest", 0);
  ASSERT_GE(memfd, 0);
  fs::ScopedCurrentProcess current(p());
  EXPECT_EQ(PTR_ERR(eventfd_ctx_fdget(memfd)), -EINVAL);
  EXPECT_EQ(PTR_ERR(eventfd_ctx_fdget(42)), -EBADF);
  EXPECT_EQ(PTR_ERR(eventfd_ctx_fdget(-1)), -EBADF);
  EXPECT_EQ(PTR_ERR(eventfd_ctx_fileget(p().PeekFile(memfd))), -EINVAL);
  struct eventfd_ctx* ctx = eventfd_ctx_fdget(efd);
  ASSERT_FALSE(IS_ERR(ctx));
  EXPECT_EQ(eventfd_ctx_fileget(p().PeekFile(efd)), ctx);
  EXPECT_EQ(fs::EventfdRefs(ctx), 3);  // the file's, fdget's, fileget's
  eventfd_ctx_put(ctx);
  eventfd_ctx_put(ctx);
  EXPECT_EQ(fs::EventfdRefs(ctx), 1);
  EXPECT_EQ(m_.kernel().WarnCount(), warns_);
}

TEST_F(EventfdTest, FdgetWithNoCurrentProcessWarnsAndIsEbadf) {
  ASSERT_GE(p().Eventfd(0, 0), 0);
  EXPECT_EQ(PTR_ERR(eventfd_ctx_fdget(0)), -EBADF);
  EXPECT_EQ(m_.kernel().WarnCount(), warns_ + 1);
}

TEST_F(EventfdTest, SignalAddsOneAndSaturatesAtAllOnes) {
  const int fd = p().Eventfd(0, EFD_NONBLOCK);
  struct eventfd_ctx* ctx = nullptr;
  {
    fs::ScopedCurrentProcess current(p());
    ctx = eventfd_ctx_fdget(fd);
  }
  ASSERT_FALSE(IS_ERR(ctx));
  eventfd_signal(ctx);
  eventfd_signal(ctx);
  EXPECT_EQ(fs::EventfdCount(ctx), 2u);
  uint64_t value = 0;
  EXPECT_EQ(ReadValue(fd, &value), 8);
  EXPECT_EQ(value, 2u);
  // Signals may go one past what writes can reach, and no further.
  EXPECT_EQ(WriteValue(fd, kMax), 8);
  eventfd_signal(ctx);
  eventfd_signal(ctx);
  EXPECT_EQ(fs::EventfdCount(ctx), ~uint64_t{0});
  EXPECT_EQ(WriteValue(fd, 0), -EAGAIN);
  EXPECT_EQ(ReadValue(fd, &value), 8);
  EXPECT_EQ(value, ~uint64_t{0});
  eventfd_ctx_put(ctx);
  EXPECT_EQ(m_.kernel().WarnCount(), warns_);
}

TEST_F(EventfdTest, ContextOutlivesTheFdAndTheLastPutFreesIt) {
  const int fd = p().Eventfd(1, 0);
  const int dup = p().Dup(fd);
  struct eventfd_ctx* ctx = nullptr;
  {
    fs::ScopedCurrentProcess current(p());
    ctx = eventfd_ctx_fdget(fd);
  }
  ASSERT_FALSE(IS_ERR(ctx));
  EXPECT_EQ(p().Close(fd), 0);
  EXPECT_EQ(p().Close(dup), 0);
  EXPECT_EQ(vfs().live_files(), files_);  // the file is gone
  EXPECT_EQ(fs::EventfdRefs(ctx), 1);     // the driver's reference is not
  eventfd_signal(ctx);
  EXPECT_EQ(fs::EventfdCount(ctx), 2u);
  EXPECT_EQ(m_.kernel().mm().SlabObjects(), slab_ + 1);
  eventfd_ctx_put(ctx);
  ExpectNothingLeft();
  EXPECT_EQ(m_.kernel().WarnCount(), warns_);
}

TEST_F(EventfdTest, ClosingWithNoDriverReferenceFreesTheContext) {
  const int fd = p().Eventfd(0, 0);
  EXPECT_EQ(m_.kernel().mm().SlabObjects(), slab_ + 1);
  EXPECT_EQ(p().Close(fd), 0);
  ExpectNothingLeft();
}

// The kernel dies with an eventfd open and a driver's reference on its
// context: neither runs kernel code, and both go with the kernel (the
// file's reference through f_free, the driver's with the slab), which
// LeakSanitizer checks in the sanitizer builds.
TEST_F(EventfdTest, KexecFreesOpenEventfdsAndHeldContexts) {
  const int held = p().Eventfd(7, 0);
  ASSERT_GE(p().Eventfd(8, 0), 0);  // open, no driver reference
  {
    fs::ScopedCurrentProcess current(p());
    ASSERT_FALSE(IS_ERR(eventfd_ctx_fdget(held)));
  }
  EXPECT_EQ(m_.kernel().mm().SlabObjects(), slab_ + 2);
  ASSERT_TRUE(m_.Kexec().ok());
  m_.Activate();
  fs::Process& next = m_.kernel().vfs().CreateProcess("vmm");
  EXPECT_EQ(next.Eventfd(0, 0), 0);
  EXPECT_EQ(m_.kernel().WarnCount(), 0u);
}

}  // namespace
}  // namespace khosim

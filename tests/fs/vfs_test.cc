// The file layer: fd tables, file and inode lifetimes, device nodes, the
// syscall edge (ioctl errno translation, user-memory faults), and what a
// kexec does to files that are still open.
#include "khosim/fs/vfs.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/module.h"
#include "khosim/linux/uaccess.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

using ::testing::ElementsAre;

// A device whose callbacks record what happened.
struct Recorder {
  std::vector<std::string> events;
  int open_result = 0;
};
Recorder* recorder = nullptr;

int RecOpen(struct inode*, struct file* f) {
  recorder->events.push_back("open");
  if (recorder->open_result == 0) f->private_data = recorder;
  return recorder->open_result;
}
int RecRelease(struct inode*, struct file*) {
  recorder->events.push_back("release");
  return 0;
}
long RecIoctl(struct file*, unsigned int cmd, unsigned long) {
  recorder->events.push_back("ioctl");
  return cmd == 1 ? 7 : -ENOIOCTLCMD;
}

struct module test_module = {"test_dev", {MODULE_STATE_LIVE}, {0}};
const struct file_operations kRecFops = {
    .owner = &test_module, .open = RecOpen, .release = RecRelease, .unlocked_ioctl = RecIoctl};

class VfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    recorder = &rec_;
    m_.Boot();
    m_.Activate();
    ASSERT_EQ(vfs().RegisterMiscDevice("rec", &kRecFops), 0);
  }
  void TearDown() override { recorder = nullptr; }
  fs::Vfs& vfs() { return m_.kernel().vfs(); }

  Recorder rec_;
  Machine m_{MachineConfig{.ram = 256 * kMiB, .seed = 3}};
};

TEST_F(VfsTest, FdsAreLowestFreeAndCloseRunsReleaseOnLastReference) {
  fs::Process& p = vfs().CreateProcess("vmm");
  const int a = p.Open("/dev/rec", O_RDWR);
  const int b = p.Open("/dev/rec", O_RDWR | O_CLOEXEC);
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 1);
  EXPECT_TRUE(p.IsCloexec(b));
  const int c = p.Dup(b);
  EXPECT_EQ(c, 2);
  EXPECT_FALSE(p.IsCloexec(c));  // dup clears FD_CLOEXEC
  EXPECT_EQ(p.PeekFile(b), p.PeekFile(c));
  EXPECT_EQ(p.Close(b), 0);
  EXPECT_THAT(rec_.events, ElementsAre("open", "open"));  // c still holds it
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), 1);               // the freed slot
  EXPECT_EQ(p.Close(c), 0);
  EXPECT_THAT(rec_.events, ElementsAre("open", "open", "open", "release"));
  EXPECT_EQ(p.Close(c), -EBADF);
  EXPECT_EQ(module_refcount(&test_module), 2);
  p.Exit();
  EXPECT_EQ(module_refcount(&test_module), 0);
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), -ESRCH);
}

// Random opens, dups, closes, received fds and execs against a set of used
// fds: every new fd is the lowest free one (the lowest-free hint never
// skips a gap any of these leave).
TEST_F(VfsTest, NewFdsAreAlwaysTheLowestFreeOne) {
  fs::Process& p = vfs().CreateProcess("vmm");
  fs::Process& peer = vfs().CreateProcess("peer");
  const int peer_fd = peer.Open("/dev/rec", O_RDWR);
  ASSERT_GE(peer_fd, 0);
  std::set<int> used;
  std::set<int> cloexec;
  auto lowest_free = [&] {
    int fd = 0;
    while (used.count(fd) != 0) ++fd;
    return fd;
  };
  std::mt19937 rng(7);
  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 4 || used.empty()) {
      const bool ce = rng() % 4 == 0;
      const int want = lowest_free();
      ASSERT_EQ(p.Open("/dev/rec", O_RDWR | (ce ? O_CLOEXEC : 0)), want) << step;
      used.insert(want);
      if (ce) cloexec.insert(want);
    } else if (op < 5) {
      const int want = lowest_free();
      ASSERT_EQ(p.Dup(*used.begin()), want) << step;
      used.insert(want);
    } else if (op < 6) {
      const int want = lowest_free();
      ASSERT_EQ(peer.SendFd(peer_fd, p), want) << step;
      used.insert(want);
    } else if (op < 9) {
      auto it = used.begin();
      std::advance(it, static_cast<long>(rng() % used.size()));
      ASSERT_EQ(p.Close(*it), 0) << step;
      cloexec.erase(*it);
      used.erase(it);
    } else {
      p.Exec();
      for (int fd : cloexec) used.erase(fd);
      cloexec.clear();
    }
  }
  EXPECT_EQ(p.OpenFds(), std::vector<int>(used.begin(), used.end()));
}

TEST_F(VfsTest, ExecClosesOnlyCloexecFdsAndExitClosesAll) {
  fs::Process& p = vfs().CreateProcess("vmm");
  p.Open("/dev/rec", O_RDWR | O_CLOEXEC);
  p.Open("/dev/rec", O_RDWR);
  p.Exec();
  EXPECT_THAT(p.OpenFds(), ElementsAre(1));
  EXPECT_EQ(std::count(rec_.events.begin(), rec_.events.end(), "release"), 1);
  p.Exit();
  EXPECT_TRUE(p.OpenFds().empty());
  EXPECT_EQ(std::count(rec_.events.begin(), rec_.events.end(), "release"), 2);
}

TEST_F(VfsTest, SendFdSharesTheFileUntilBothSidesClose) {
  fs::Process& a = vfs().CreateProcess("a");
  fs::Process& b = vfs().CreateProcess("b");
  const int fd = a.Open("/dev/rec", O_RDWR);
  b.Open("/dev/rec", O_RDWR);
  const int got = a.SendFd(fd, b, O_CLOEXEC);
  EXPECT_EQ(got, 1);
  EXPECT_TRUE(b.IsCloexec(got));
  EXPECT_EQ(a.PeekFile(fd), b.PeekFile(got));
  a.Exit();
  EXPECT_EQ(std::count(rec_.events.begin(), rec_.events.end(), "release"), 0);
  EXPECT_EQ(b.Close(got), 0);
  EXPECT_EQ(std::count(rec_.events.begin(), rec_.events.end(), "release"), 1);
  EXPECT_EQ(a.SendFd(fd, b), -EBADF);
}

TEST_F(VfsTest, RlimitAndInjectedFailureGiveEmfile) {
  fs::Process& p = vfs().CreateProcess("vmm");
  p.SetRlimitNofile(2);
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), 0);
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), 1);
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), -EMFILE);
  EXPECT_EQ(p.Dup(0), -EMFILE);
  p.SetRlimitNofile(1024);
  m_.faults().FailOnce("get_unused_fd");
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), -EMFILE);
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), 2);
}

TEST_F(VfsTest, DeviceOpenErrors) {
  fs::Process& p = vfs().CreateProcess("vmm");
  EXPECT_EQ(p.Open("/dev/nothing", O_RDWR), -ENOENT);
  EXPECT_EQ(p.Open("rec", O_RDWR), -ENOENT);
  EXPECT_EQ(vfs().RegisterMiscDevice("rec", &kRecFops), -EEXIST);
  const int64_t files = vfs().live_files();
  rec_.open_result = -EBUSY;
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), -EBUSY);
  EXPECT_TRUE(p.OpenFds().empty());
  EXPECT_EQ(vfs().live_files(), files);
  EXPECT_THAT(rec_.events, ElementsAre("open"));  // a failed open never releases
  EXPECT_EQ(module_refcount(&test_module), 0);
  rec_.open_result = 0;
  vfs().DeregisterMiscDevice("rec");
  EXPECT_EQ(p.Open("/dev/rec", O_RDWR), -ENOENT);
}

TEST_F(VfsTest, IoctlTranslatesNoIoctlCmdToEnotty) {
  fs::Process& p = vfs().CreateProcess("vmm");
  const int fd = p.Open("/dev/rec", O_RDWR);
  EXPECT_EQ(p.Ioctl(fd, 1u, 0ul), 7);
  EXPECT_EQ(p.Ioctl(fd, 2u, 0ul), -ENOTTY);
  EXPECT_EQ(p.Ioctl(99, 1u, 0ul), -EBADF);
}

TEST_F(VfsTest, FilesStillOpenAtKexecAreFreedWithoutRelease) {
  fs::Process& p = vfs().CreateProcess("vmm");
  p.Open("/dev/rec", O_RDWR);
  ASSERT_TRUE(m_.Kexec().ok());
  // Kernel A's code never ran again: no release, but the module reference
  // and the host objects are gone.
  EXPECT_THAT(rec_.events, ElementsAre("open"));
  EXPECT_EQ(module_refcount(&test_module), 0);
  m_.Activate();
  EXPECT_FALSE(m_.kernel().vfs().HasDevice("rec"));
}

TEST_F(VfsTest, LiveFileAndInodeAccounting) {
  const int64_t files = vfs().live_files();
  const int64_t inodes = vfs().live_inodes();
  struct file* f = anon_inode_getfile("[test]", nullptr, nullptr, O_RDWR);
  ASSERT_FALSE(IS_ERR(f));
  EXPECT_STREQ(f->f_name, "anon_inode:[test]");
  EXPECT_EQ(vfs().live_files(), files + 1);
  EXPECT_EQ(vfs().live_inodes(), inodes);  // the shared anonymous inode
  struct inode* inode = new_inode_pseudo(S_IFREG);
  struct file* g = alloc_file_pseudo(inode, "x", O_RDONLY, nullptr);
  EXPECT_EQ(vfs().live_inodes(), inodes + 1);
  EXPECT_EQ(g->f_mode, FMODE_READ);
  fput(get_file(g));
  EXPECT_EQ(vfs().live_files(), files + 2);
  fput(g);
  fput(f);
  EXPECT_EQ(vfs().live_files(), files);
  EXPECT_EQ(vfs().live_inodes(), inodes);
  m_.faults().FailOnce("alloc_file");
  EXPECT_EQ(PTR_ERR(anon_inode_getfile("[test]", nullptr, nullptr, O_RDWR)), -ENOMEM);
  EXPECT_EQ(vfs().live_files(), files);
}

TEST_F(VfsTest, FdHelpersActOnTheCurrentProcess) {
  fs::Process& p = vfs().CreateProcess("vmm");
  {
    fs::ScopedCurrentProcess current(p);
    const int fd = get_unused_fd_flags(O_CLOEXEC);
    EXPECT_EQ(fd, 0);
    EXPECT_EQ(fget(fd), nullptr);  // reserved, not installed
    fd_install(fd, anon_inode_getfile("[x]", nullptr, nullptr, O_RDWR));
    struct file* f = fget(fd);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(atomic_long_read(&f->f_count), 2);
    fput(f);
    const int unused = get_unused_fd_flags(0);
    put_unused_fd(unused);
  }
  EXPECT_THAT(p.OpenFds(), ElementsAre(0));
  EXPECT_TRUE(p.IsCloexec(0));
  // No current process: a kernel bug, WARNed.
  const uint64_t warns = m_.kernel().WarnCount();
  EXPECT_EQ(get_unused_fd_flags(0), -EBADF);
  EXPECT_EQ(m_.kernel().WarnCount(), warns + 1);
}

TEST(UaccessTest, ExtensibleStructRules) {
  struct Big {
    uint32_t a;
    uint32_t b;
    uint64_t tail;
  } user = {1, 2, 0};
  struct Small {
    uint32_t a;
    uint32_t b;
  } k = {};
  EXPECT_EQ(copy_struct_from_user(&k, sizeof(k), &user, sizeof(user)), 0);
  EXPECT_EQ(k.b, 2u);
  user.tail = 1;
  EXPECT_EQ(copy_struct_from_user(&k, sizeof(k), &user, sizeof(user)), -E2BIG);
  Big kbig = {9, 9, 9};
  EXPECT_EQ(copy_struct_from_user(&kbig, sizeof(kbig), &k, sizeof(k)), 0);
  EXPECT_EQ(kbig.tail, 0u);  // zero-extended
  EXPECT_EQ(copy_struct_from_user(&k, sizeof(k), nullptr, sizeof(k)), -EFAULT);
  EXPECT_EQ(copy_to_user(reinterpret_cast<void*>(8), &k, sizeof(k)), sizeof(k));
  EXPECT_EQ(copy_from_user(&k, &user, 0), 0u);
}

}  // namespace
}  // namespace khosim

// /dev/liveupdate and session fds in one kernel: the userspace selftest's
// device cases and the ioctl rules of reference sections 1.1-1.6.
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/uapi/liveupdate.h"
#include "luo/luo_fixture.h"

namespace khosim::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class LuoUapiTest : public LuoFixture {};

TEST_F(LuoUapiTest, DeviceHasOneOpenerAtATime) {
  const int a = luo::OpenLiveupdate(p());
  ASSERT_GE(a, 0);
  EXPECT_EQ(luo::OpenLiveupdate(p()), -EBUSY);
  // Another process is refused too: the flag is global.
  EXPECT_EQ(luo::OpenLiveupdate(vfs().CreateProcess("other")), -EBUSY);
  EXPECT_EQ(p().Close(a), 0);
  EXPECT_GE(luo::OpenLiveupdate(p()), 0);
}

TEST_F(LuoUapiTest, ClosingTheDeviceKeepsSessions) {
  const int s = Create("vm0");
  ASSERT_GE(s, 0);
  ASSERT_EQ(PreserveNew(s, 1), 0);
  EXPECT_EQ(p().Close(Dev()), 0);
  ASSERT_EQ(luo().OutgoingSessions().size(), 1u);
  EXPECT_EQ(luo().OutgoingSessions()[0].files.size(), 1u);
}

TEST_F(LuoUapiTest, SessionNamesFollowTheLengthRules) {
  EXPECT_EQ(Create(""), -EINVAL);
  EXPECT_EQ(Create(std::string(64, 'a')), -EINVAL);  // no NUL inside 64 bytes
  const std::string longest(63, 'b');
  const int s = Create(longest);
  ASSERT_GE(s, 0);
  std::string name;
  EXPECT_EQ(luo::GetSessionName(p(), s, &name), 0);
  EXPECT_EQ(name, longest);
  EXPECT_TRUE(p().IsCloexec(s));
  EXPECT_EQ(std::string(p().PeekFile(s)->f_name), "anon_inode:[luo_session] " + longest);
}

TEST_F(LuoUapiTest, DuplicateOutgoingNameIsEexist) {
  ASSERT_GE(Create("vm0"), 0);
  EXPECT_EQ(Create("vm0"), -EEXIST);
  EXPECT_GE(Create("vm1"), 0);
  EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();
}

TEST_F(LuoUapiTest, ExtensibleStructRules) {
  struct {
    liveupdate_ioctl_create_session arg;
    uint8_t tail[8];
  } big = {};
  std::strcpy(reinterpret_cast<char*>(big.arg.name), "ext");
  big.arg.size = 71;
  EXPECT_EQ(p().Ioctl(Dev(), LIVEUPDATE_IOCTL_CREATE_SESSION, &big), -EINVAL);
  big.arg.size = 80;
  big.tail[3] = 1;
  EXPECT_EQ(p().Ioctl(Dev(), LIVEUPDATE_IOCTL_CREATE_SESSION, &big), -E2BIG);
  big.tail[3] = 0;
  EXPECT_EQ(p().Ioctl(Dev(), LIVEUPDATE_IOCTL_CREATE_SESSION, &big), 0);
  EXPECT_GE(big.arg.fd, 0);
  EXPECT_TRUE(std::all_of(big.tail, big.tail + 8, [](uint8_t b) { return b == 0; }));
}

TEST_F(LuoUapiTest, DispatchOrderOnTheDevice) {
  liveupdate_ioctl_create_session arg = {};
  arg.size = sizeof(arg);
  EXPECT_EQ(p().Ioctl(Dev(), _IO(0xBA, 0x05), &arg), -EINVAL);  // nr past the table
  EXPECT_EQ(p().Ioctl(Dev(), _IO(0xBB, 0x00), &arg), -ENOTTY);  // wrong type byte
  EXPECT_EQ(p().Ioctl(Dev(), _IOW(0xBA, 0x00, int), &arg), -ENOTTY);
  EXPECT_EQ(p().Ioctl(Dev(), LIVEUPDATE_IOCTL_CREATE_SESSION, 0ul), -EFAULT);
  // The table check comes before reading the size: -EINVAL even for NULL.
  EXPECT_EQ(p().Ioctl(Dev(), _IO(0xBA, 0x07), 0ul), -EINVAL);
}

TEST_F(LuoUapiTest, DispatchOrderOnASession) {
  const int s = Create("vm0");
  ASSERT_GE(s, 0);
  liveupdate_session_retrieve_fd arg = {};
  arg.size = sizeof(arg);
  EXPECT_EQ(p().Ioctl(s, _IO(0xBA, 0x10), &arg), -EINVAL);
  EXPECT_EQ(p().Ioctl(s, _IO(0xBA, 0x44), &arg), -EINVAL);
  EXPECT_EQ(p().Ioctl(s, _IO(0xBB, 0x41), &arg), -ENOTTY);
  // The kind check runs before the size check: an undersized RETRIEVE_FD
  // on an outgoing session is still -EINVAL for its kind.
  arg.size = 4;
  EXPECT_EQ(p().Ioctl(s, LIVEUPDATE_SESSION_RETRIEVE_FD, &arg), -EINVAL);
  EXPECT_EQ(luo::RetrieveFd(p(), s, 1), -EINVAL);
  EXPECT_EQ(luo::FinishSession(p(), s), -EINVAL);
  liveupdate_session_get_name name = {};
  name.size = 16;  // below the 7.3 minimum
  EXPECT_EQ(p().Ioctl(s, LIVEUPDATE_SESSION_GET_NAME, &name), -EINVAL);
  name.size = sizeof(name);
  name.reserved = 1;
  EXPECT_EQ(p().Ioctl(s, LIVEUPDATE_SESSION_GET_NAME, &name), -EINVAL);
}

TEST_F(LuoUapiTest, PreserveFdCheckOrder) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 7), 0);
  EXPECT_EQ(Preserve(s, 999, 7), -EEXIST);  // token checked before the fd
  EXPECT_EQ(Preserve(s, 999, 8), -EBADF);
  EXPECT_EQ(Preserve(s, Dev(), 8), -ENOENT);  // no handler takes the device
  EXPECT_EQ(Preserve(s, s, 8), -ENOENT);
  EXPECT_THAT(luo().OutgoingSessions()[0].files, ::testing::SizeIs(1));
  EXPECT_EQ(luo().OutgoingSessions()[0].file_blocks, 1u);  // failed grows shrank
  EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();
}

TEST_F(LuoUapiTest, SameFileTwiceIsEbusyAnywhere) {
  const int a = Create("a");
  const int b = Create("b");
  const int fd = OpenTestFile(p(), 5);
  ASSERT_EQ(Preserve(a, fd, 5), 0);
  EXPECT_EQ(Preserve(b, fd, 5), -EBUSY);
  EXPECT_EQ(Preserve(a, p().Dup(fd), 6), -EBUSY);
  EXPECT_EQ(luo().preserved_file_count(), 1u);
}

TEST_F(LuoUapiTest, ClosingAnOutgoingSessionUnpreservesInReverse) {
  const int s = Create("vm0");
  for (uint64_t t : {1, 2, 3}) ASSERT_EQ(PreserveNew(s, t), 0);
  m().trace().Clear();
  EXPECT_EQ(p().Close(s), 0);
  EXPECT_THAT(Callbacks(), ElementsAre("unpreserve 3", "unpreserve 2", "unpreserve 1"));
  EXPECT_THAT(luo().OutgoingSessions(), IsEmpty());
  EXPECT_EQ(luo().preserved_file_count(), 0u);
  EXPECT_EQ(TestControl().live_records, 0);
  EXPECT_EQ(TestControl().private_data_mismatch, 0);
  // The files themselves are userspace's again.
  EXPECT_EQ(p().OpenFds().size(), 4u);  // the device and three test files
}

TEST_F(LuoUapiTest, ProcessExitClosesSessions) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  fs::Process& other = vfs().CreateProcess("systemd");
  ASSERT_GE(p().SendFd(s, other), 0);
  p().Exit();
  EXPECT_EQ(luo().OutgoingSessions().size(), 1u);  // systemd still holds it
  other.Exit();
  EXPECT_THAT(luo().OutgoingSessions(), IsEmpty());
  EXPECT_EQ(TestControl().live_records, 0);
}

TEST_F(LuoUapiTest, HandlerPreserveErrorIsReturnedAndUndone) {
  const int s = Create("vm0");
  TestControl().preserve_error = -ENOSPC;
  EXPECT_EQ(PreserveNew(s, 1), -ENOSPC);
  EXPECT_THAT(luo().OutgoingSessions()[0].files, IsEmpty());
  EXPECT_EQ(luo().OutgoingSessions()[0].file_blocks, 0u);
  EXPECT_EQ(luo().preserved_file_count(), 0u);
}

TEST_F(LuoUapiTest, CopyOutFailureKeepsThePreservedFile) {
  const int s = Create("vm0");
  const int fd = OpenTestFile(p(), 3);
  m().faults().FailOnce("copy_to_user");
  EXPECT_EQ(Preserve(s, fd, 3), -EFAULT);
  EXPECT_EQ(luo().OutgoingSessions()[0].files.size(), 1u);
}

TEST_F(LuoUapiTest, CreateCopyOutFailureDestroysTheSession) {
  m().faults().FailOnce("copy_to_user");
  EXPECT_EQ(Create("vm0"), -EFAULT);
  EXPECT_THAT(luo().OutgoingSessions(), IsEmpty());
  EXPECT_EQ(luo().session_blocks(), 0u);
  EXPECT_EQ(p().OpenFds().size(), 1u);  // only the device
}

TEST_F(LuoUapiTest, FdExhaustionIsEmfile) {
  p().SetRlimitNofile(static_cast<unsigned>(Dev() + 1));
  EXPECT_EQ(Create("vm0"), -EMFILE);
  EXPECT_THAT(luo().OutgoingSessions(), IsEmpty());
}

TEST_F(LuoUapiTest, SessionBlocksGrowEagerlyAndShrinkFromTheTail) {
  std::vector<int> fds;
  for (int i = 0; i < 52; ++i) fds.push_back(Create(absl::StrCat("s", i)));
  EXPECT_EQ(luo().session_blocks(), 2u);  // 51 + 1 with 4 KiB pages
  EXPECT_EQ(p().Close(fds.back()), 0);
  EXPECT_EQ(luo().session_blocks(), 1u);
  // -EEXIST after the grow keeps the extra block until a later shrink.
  EXPECT_EQ(Create("s0"), -EEXIST);
  EXPECT_EQ(luo().session_blocks(), 2u);
  EXPECT_EQ(p().Close(fds[50]), 0);
  EXPECT_EQ(luo().session_blocks(), 1u);
  const int s = fds[0];
  for (uint64_t t = 0; t < 64; ++t) ASSERT_EQ(PreserveNew(s, t), 0);
  EXPECT_EQ(luo().OutgoingSessions()[0].file_blocks, 2u);  // 63 + 1
  EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();
}

TEST_F(LuoUapiTest, HandlerRegistrationRules) {
  EXPECT_EQ(liveupdate_register_file_handler(&test_file_handler), -EEXIST);
  struct liveupdate_file_ops no_finish = *test_file_handler.ops;
  no_finish.finish = nullptr;
  struct liveupdate_file_handler bad = {&no_finish, "bad-v1"};
  EXPECT_EQ(liveupdate_register_file_handler(&bad), -EINVAL);
  // Both handlers accept test files: the first registered wins.
  ASSERT_EQ(liveupdate_register_file_handler(&test_file_handler_b), 0);
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  EXPECT_EQ(luo().OutgoingSessions()[0].files[0].compatible, "test-file-v1");
  liveupdate_unregister_file_handler(&test_file_handler);
  ASSERT_EQ(PreserveNew(s, 2), 0);
  EXPECT_EQ(luo().OutgoingSessions()[0].files[1].compatible, "test-file-b-v1");
}

TEST_F(LuoUapiTest, UnloadingModuleMakesPreserveEnoent) {
  static struct module mod = {"test_mod", {MODULE_STATE_LIVE}, {0}};
  static struct liveupdate_file_ops ops;
  ops = *test_file_handler.ops;
  ops.owner = &mod;
  static struct liveupdate_file_handler modular = {&ops, "test-mod-v1"};
  liveupdate_unregister_file_handler(&test_file_handler);
  ASSERT_EQ(liveupdate_register_file_handler(&modular), 0);
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  EXPECT_EQ(module_refcount(&mod), 1);
  khosim_module_begin_unload(&mod);
  EXPECT_EQ(PreserveNew(s, 2), -ENOENT);
  EXPECT_EQ(p().Close(s), 0);
  EXPECT_EQ(module_refcount(&mod), 0);
}

// Found by the countdown test: kho_init failing after LUO was set up used
// to leave LUO enabled with no handover to carry its state.
TEST(LuoBootTest, KhoFailingInItsInitDisablesLuo) {
  MachineConfig config{.ram = 1 * kGiB, .seed = 11};
  config.cmdline = "kho=on liveupdate=on";
  Machine m(config);
  m.faults().FailNth("kho_alloc_preserve", 2);  // kho_init's kexec-metadata blob
  m.Boot();
  m.Activate();
  EXPECT_FALSE(m.kernel().kho().enabled());
  EXPECT_FALSE(liveupdate_enabled());
  EXPECT_EQ(luo::OpenLiveupdate(m.kernel().vfs().CreateProcess("vmm")), -ENOENT);
}

class LuoDisabledTest : public LuoFixture {
 protected:
  std::string Cmdline() override { return "kho=on"; }
  void SetUp() override {
    ResetTestControl();
    MachineConfig config{.ram = 256 * kMiB, .seed = 11};
    config.cmdline = Cmdline();
    machine_ = std::make_unique<Machine>(config);
    machine_->Boot();
    StartUserspace(/*register_handler=*/false);
  }
};

TEST_F(LuoDisabledTest, NoDeviceAndNoRegistration) {
  EXPECT_FALSE(luo().enabled());
  EXPECT_EQ(luo::OpenLiveupdate(p()), -ENOENT);
  EXPECT_EQ(liveupdate_register_file_handler(&test_file_handler), -EOPNOTSUPP);
  EXPECT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb), -EOPNOTSUPP);
  void* obj = nullptr;
  EXPECT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), -EOPNOTSUPP);
  EXPECT_EQ(luo().outgoing_record(), nullptr);
}

class LuoWithoutKhoTest : public LuoDisabledTest {
 protected:
  std::string Cmdline() override { return "liveupdate=on"; }
};

TEST_F(LuoWithoutKhoTest, LiveupdateNeedsKho) {
  EXPECT_FALSE(luo().enabled());
  EXPECT_EQ(luo::OpenLiveupdate(p()), -ENOENT);
  EXPECT_EQ(liveupdate_register_file_handler(&test_file_handler), -EOPNOTSUPP);
  bool warned = false;
  for (const std::string& line : m().kernel().ctx().LogLines()) {
    warned |= line.find("needs KHO") != std::string::npos;
  }
  EXPECT_TRUE(warned);
}

}  // namespace
}  // namespace khosim::testing

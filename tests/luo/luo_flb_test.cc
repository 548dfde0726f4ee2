// FLBs: registration rules, the outgoing and incoming refcounts and their
// callback order, the 7.3 get/put APIs, the in-kernel file APIs, the 7.2
// profile's differences, and the hazards reported instead of deadlocks.
#include <cerrno>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/uapi/liveupdate.h"
#include "luo/luo_fixture.h"

namespace khosim::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class LuoFlbTest : public LuoFixture {
 protected:
  void SetUp() override {
    LuoFixture::SetUp();
    ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb), 0);
  }
  void Kexec() {
    LuoFixture::Kexec();
    ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb), 0);
  }
  luo::Luo::FlbInfo Flb() {
    for (const auto& f : luo().Flbs()) {
      if (f.compatible == "test-flb-v1") return f;
    }
    ADD_FAILURE() << "test-flb-v1 not registered";
    return {};
  }
};

TEST_F(LuoFlbTest, RegistrationRules) {
  EXPECT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb), -EEXIST);
  struct liveupdate_flb same_name = {test_flb.ops, "test-flb-v1"};
  ASSERT_EQ(RegisterTestHandler(false) == -EEXIST, true);
  ASSERT_EQ(liveupdate_register_file_handler(&test_file_handler_b), 0);
  EXPECT_EQ(liveupdate_register_flb(&test_file_handler_b, &same_name), -EEXIST);
  // One FLB may serve several handlers.
  EXPECT_EQ(liveupdate_register_flb(&test_file_handler_b, &test_flb), 0);
  EXPECT_EQ(Flb().users, 2);
  struct liveupdate_file_handler unregistered = {test_file_handler.ops, "nobody-v1"};
  EXPECT_EQ(liveupdate_register_flb(&unregistered, &test_flb_2), -EINVAL);
  struct liveupdate_flb_ops no_finish = *test_flb.ops;
  no_finish.finish = nullptr;
  struct liveupdate_flb broken = {&no_finish, "broken-v1"};
  EXPECT_EQ(liveupdate_register_flb(&test_file_handler, &broken), -EINVAL);
  // LUO_FLB_MAX = 63 distinct FLBs with 4 KiB pages: one is registered.
  static struct liveupdate_flb many[63];
  int err = 0;
  int registered = 1;
  for (int i = 0; i < 63 && err == 0; ++i) {
    many[i].ops = test_flb.ops;
    snprintf(many[i].compatible, sizeof(many[i].compatible), "many-%d", i);
    err = liveupdate_register_flb(&test_file_handler, &many[i]);
    registered += err == 0;
  }
  EXPECT_EQ(err, -ENOSPC);
  EXPECT_EQ(registered, 63);
  liveupdate_unregister_flb(&test_file_handler, &test_flb);
  liveupdate_unregister_flb(&test_file_handler, &test_flb);  // not linked: WARN
  EXPECT_EQ(m().kernel().WarnCount("not linked"), 1u);
  EXPECT_EQ(Flb().users, 1);  // still linked to handler b
}

TEST_F(LuoFlbTest, OutgoingRefcountFollowsDependentFiles) {
  const int s = Create("vm0");
  m().trace().Clear();
  for (uint64_t t : {1, 2, 3}) ASSERT_EQ(PreserveNew(s, t), 0);
  EXPECT_EQ(Flb().outgoing_count, 3);
  EXPECT_EQ(TestControl().flb_live_objects, 1);
  EXPECT_EQ(p().Close(s), 0);
  EXPECT_THAT(Callbacks(),
              ElementsAre("flb_preserve", "preserve 1", "preserve 2", "preserve 3", "unpreserve 3",
                          "unpreserve 2", "unpreserve 1", "flb_unpreserve"));
  EXPECT_EQ(Flb().outgoing_count, 0);
  EXPECT_EQ(TestControl().flb_live_objects, 0);
}

TEST_F(LuoFlbTest, HandlerFailureOnTheFirstFileUnwindsTheFlb) {
  const int s = Create("vm0");
  TestControl().preserve_error = -EPERM;
  m().trace().Clear();
  EXPECT_EQ(PreserveNew(s, 1), -EPERM);
  EXPECT_THAT(Callbacks(), ElementsAre("flb_preserve", "preserve 1", "flb_unpreserve"));
  EXPECT_EQ(Flb().outgoing_count, 0);
  EXPECT_THAT(luo().OutgoingSessions()[0].files, IsEmpty());
}

TEST_F(LuoFlbTest, FlbPreserveFailureSkipsTheHandler) {
  const int s = Create("vm0");
  TestControl().flb_preserve_error = -ENOMEM;
  m().trace().Clear();
  EXPECT_EQ(PreserveNew(s, 1), -ENOMEM);
  EXPECT_THAT(Callbacks(), ElementsAre("flb_preserve"));
  EXPECT_EQ(luo().preserved_file_count(), 0u);
}

TEST_F(LuoFlbTest, SecondFlbFailureUnwindsTheFirst) {
  ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb_2), 0);
  const int s = Create("vm0");
  // The second FLB's preserve fails on its 0 -> 1 transition.
  TestControl().flb_preserve_error = -EIO;
  TestControl().flb_preserve_error_only = "test-flb-2-v1";
  m().trace().Clear();
  EXPECT_EQ(PreserveNew(s, 2), -EIO);
  EXPECT_THAT(Callbacks(), ElementsAre("flb_preserve", "flb_preserve", "flb_unpreserve"));
  EXPECT_EQ(TestControl().flb_live_objects, 0);
  EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();
}

TEST_F(LuoFlbTest, GetOutgoingTakesAReference) {
  void* obj = nullptr;
  EXPECT_EQ(liveupdate_flb_get_outgoing(&test_flb, &obj), -ENOENT);
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  ASSERT_EQ(liveupdate_flb_get_outgoing(&test_flb, &obj), 0);
  EXPECT_NE(obj, nullptr);
  EXPECT_EQ(Flb().outgoing_count, 2);
  EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();
  liveupdate_flb_put_outgoing(&test_flb);
  EXPECT_EQ(Flb().outgoing_count, 1);
  liveupdate_flb_put_outgoing(&test_flb);  // no get outstanding
  EXPECT_EQ(m().kernel().WarnCount("luo-hazard"), 1u);
  EXPECT_EQ(Flb().outgoing_count, 1);
}

TEST_F(LuoFlbTest, OutgoingReferenceHeldAtRebootIsReportedAndSerialized) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  void* obj = nullptr;
  ASSERT_EQ(liveupdate_flb_get_outgoing(&test_flb, &obj), 0);
  ASSERT_EQ(m().kernel().RunRebootHooks({}), 0);
  EXPECT_EQ(m().kernel().WarnCount("luo-hazard: flb outgoing ref at reboot"), 1u);
  Kexec();
  ASSERT_GE(Dev(), 0);
  ASSERT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), 0);
  EXPECT_EQ(Flb().incoming_count, 3);  // the serialized 2, plus this get
}

TEST_F(LuoFlbTest, IncomingRefcountFinishesOnTheLastPut) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  ASSERT_EQ(PreserveNew(s, 2), 0);
  Kexec();
  void* obj = nullptr;
  ASSERT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), 0);  // before any open
  EXPECT_NE(obj, nullptr);
  EXPECT_EQ(Flb().incoming_count, 3);
  ASSERT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), 0);
  EXPECT_EQ(Flb().incoming_count, 4);
  liveupdate_flb_put_incoming(&test_flb);
  liveupdate_flb_put_incoming(&test_flb);
  const int r = Retrieve("vm0");
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_THAT(Callbacks(), ElementsAre("flb_retrieve", "can_finish 1", "can_finish 2", "finish 2",
                                       "finish 1", "flb_finish"));
  EXPECT_TRUE(Flb().incoming_finished);
  EXPECT_EQ(TestControl().flb_live_objects, 0);
  EXPECT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), -ENODATA);
}

// Upstream keeps an FLB's state in the FLB: the PCI core reads its FLB at
// enumeration, before any driver links it to a handler.
TEST_F(LuoFlbTest, AnIncomingGetNeedsNoHandlerLink) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  LuoFixture::Kexec();  // kernel B links nothing yet
  void* obj = nullptr;
  static struct liveupdate_flb unknown = {test_flb.ops, "unknown-v1"};
  EXPECT_EQ(liveupdate_flb_get_incoming(&unknown, &obj), -ENOENT);
  ASSERT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), 0);
  EXPECT_NE(obj, nullptr);
  EXPECT_EQ(Flb().incoming_count, 2);
  EXPECT_EQ(Flb().users, 0);
  liveupdate_flb_put_incoming(&test_flb);
  // Linking it later keeps the incoming state; the file's finish drops
  // the last reference.
  ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb), 0);
  EXPECT_EQ(Flb().users, 1);
  EXPECT_EQ(Flb().incoming_count, 1);
  const int r = Retrieve("vm0");
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_THAT(Callbacks(), ElementsAre("flb_retrieve", "can_finish 1", "finish 1", "flb_finish"));
  EXPECT_EQ(TestControl().flb_live_objects, 0);
}

TEST_F(LuoFlbTest, NeverRetrievedFlbIsRetrievedForItsFinish) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  Kexec();
  const int r = Retrieve("vm0");
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_THAT(Callbacks(), ElementsAre("can_finish 1", "finish 1", "flb_retrieve", "flb_finish"));
  EXPECT_EQ(TestControl().flb_live_objects, 0);
}

TEST_F(LuoFlbTest, IncomingErrors) {
  void* obj = nullptr;
  EXPECT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), -ENODATA);  // cold boot
  ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb_2), 0);
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  Kexec();
  // test_flb_2 had no dependent file at reboot in the same boot? It had:
  // both FLBs are linked, so both were serialized. An FLB unknown to the
  // previous kernel is -ENOENT.
  static struct liveupdate_flb newcomer = {test_flb.ops, "newcomer-v1"};
  ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &newcomer), 0);
  EXPECT_EQ(liveupdate_flb_get_incoming(&newcomer, &obj), -ENOENT);
  TestControl().flb_retrieve_error = -EIO;
  EXPECT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), -EIO);
  TestControl().flb_retrieve_error = 0;
  EXPECT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), -EIO);  // latched (7.3)
  EXPECT_EQ(Flb().incoming_retrieve_status, -EIO);
}

TEST_F(LuoFlbTest, PutWithoutGetIsReported) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  Kexec();
  void* obj = nullptr;
  ASSERT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), 0);
  liveupdate_flb_put_incoming(&test_flb);
  liveupdate_flb_put_incoming(&test_flb);  // the file's reference: finishes
  EXPECT_EQ(TestControl().flb_live_objects, 0);
  liveupdate_flb_put_incoming(&test_flb);
  EXPECT_EQ(m().kernel().WarnCount("luo-hazard: flb incoming underflow"), 1u);
}

// An FLB whose preserve callback asks LUO for its own outgoing object: the
// kernel would deadlock on the FLB's mutex; the simulator reports it.
int reentrant_preserve(struct liveupdate_flb_op_args* args) {
  void* obj = nullptr;
  const int err = liveupdate_flb_get_outgoing(args->flb, &obj);
  args->obj = reinterpret_cast<void*>(1);
  return err == -EDEADLK ? 0 : -EINVAL;
}

TEST_F(LuoFlbTest, GetFromInsideTheFlbsOwnCallbackIsAHazard) {
  static struct liveupdate_flb_ops ops;
  ops = *test_flb.ops;
  ops.preserve = reentrant_preserve;
  ops.unpreserve = [](struct liveupdate_flb_op_args*) {};
  static struct liveupdate_flb reentrant = {&ops, "reentrant-v1"};
  ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &reentrant), 0);
  const int s = Create("vm0");
  EXPECT_EQ(PreserveNew(s, 1), 0);
  EXPECT_EQ(m().kernel().WarnCount("luo-hazard: flb outgoing lock"), 1u);
}

// In-kernel file APIs: a handler records another file's token at freeze
// (as guest_memfd records its VM fd) and pulls that file in when it is
// retrieved itself.
struct file* partner_file = nullptr;
uint64_t partner_token = 0;
int partner_lookup = 1;
int partner_get = 1;

bool DependentCanPreserve(struct liveupdate_file_handler*, struct file* f) {
  return IsTestFile(f) && *static_cast<uint64_t*>(f->private_data) >= 100;
}

int DependentFreeze(struct liveupdate_file_op_args* args) {
  partner_lookup = liveupdate_get_token_outgoing(args->session, partner_file, &partner_token);
  return partner_lookup == 0 ? test_file_handler.ops->freeze(args) : partner_lookup;
}

int DependentRetrieve(struct liveupdate_file_op_args* args) {
  struct file* partner = nullptr;
  partner_get = liveupdate_get_file_incoming(args->session, partner_token, &partner);
  if (partner_get != 0) return partner_get;
  fput(partner);
  return test_file_handler.ops->retrieve(args);
}

TEST_F(LuoFlbTest, InKernelFileApis) {
  static struct liveupdate_file_ops ops;
  ops = *test_file_handler.ops;
  ops.can_preserve = DependentCanPreserve;
  ops.freeze = DependentFreeze;
  ops.retrieve = DependentRetrieve;
  static struct liveupdate_file_handler dep = {&ops, "dependent-v1"};
  liveupdate_unregister_file_handler(&test_file_handler);
  ASSERT_EQ(liveupdate_register_file_handler(&dep), 0);
  ASSERT_EQ(RegisterTestHandler(), 0);
  const int s = Create("vm0");
  const int vm = OpenTestFile(p(), 7);
  ASSERT_EQ(Preserve(s, vm, 7), 0);
  ASSERT_EQ(PreserveNew(s, 107), 0);
  partner_file = p().PeekFile(vm);
  // Outside a callback the session lock is not held: WARNed, still answered.
  auto* session = static_cast<struct liveupdate_session*>(p().PeekFile(s)->private_data);
  uint64_t token = 0;
  EXPECT_EQ(liveupdate_get_token_outgoing(session, partner_file, &token), 0);
  EXPECT_EQ(token, 7u);
  EXPECT_EQ(m().kernel().WarnCount("without the session lock"), 1u);
  EXPECT_EQ(liveupdate_get_token_outgoing(session, nullptr, &token), -ENOENT);

  // Kexec: the dependent handler is a module that loads again in the new
  // kernel, before userspace opens the device.
  ASSERT_TRUE(m().Kexec().ok());
  m().trace().Clear();
  StartUserspace(/*register_handler=*/false);
  ASSERT_EQ(liveupdate_register_file_handler(&dep), 0);
  ASSERT_EQ(RegisterTestHandler(), 0);
  EXPECT_EQ(partner_lookup, 0);
  const uint64_t warns = m().kernel().WarnCount();
  const int r = Retrieve("vm0");
  const int fd = luo::RetrieveFd(p(), r, 107);  // pulls in token 7 first
  ASSERT_GE(fd, 0);
  EXPECT_EQ(partner_get, 0);
  EXPECT_THAT(Callbacks(), ElementsAre("retrieve 107", "retrieve 7"));
  const int vm_fd = luo::RetrieveFd(p(), r, 7);  // already retrieved: no callback
  EXPECT_EQ(TestFileValue(p(), vm_fd), 7u);
  EXPECT_EQ(Callbacks().size(), 2u);
  EXPECT_EQ(m().kernel().WarnCount(), warns);  // called with the lock held
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
}

class LuoProfile72Test : public LuoFlbTest {
 protected:
  std::string Cmdline() override { return "kho=on liveupdate=on khosim.luo_profile=7.2"; }
};

TEST_F(LuoProfile72Test, Differences) {
  EXPECT_EQ(luo().profile(), luo::LuoProfile::k7_2);
  void* obj = reinterpret_cast<void*>(1);
  EXPECT_EQ(liveupdate_flb_get_outgoing(&test_flb, &obj), 0);  // no -ENOENT...
  EXPECT_EQ(obj, nullptr);                                     // ...just no object
  const int s = Create("vm0");
  // GET_NAME's minimum is 16 and its kernel size 16 (the 7.2 struct bug):
  // a full 72-byte struct with a zeroed name buffer works.
  liveupdate_session_get_name name = {};
  name.size = 16;
  EXPECT_EQ(p().Ioctl(s, LIVEUPDATE_SESSION_GET_NAME, &name), 0);
  name.size = sizeof(name);
  name.name[10] = 'x';  // garbage beyond the 16 bytes 7.2 knows: -E2BIG
  EXPECT_EQ(p().Ioctl(s, LIVEUPDATE_SESSION_GET_NAME, &name), -E2BIG);
  ASSERT_EQ(PreserveNew(s, 1), 0);
  Kexec();
  const int r = Retrieve("vm0");
  liveupdate_session_finish finish = {sizeof(finish), 1};  // reserved ignored
  // A put before any get underflows on 7.2 instead of loading the count.
  EXPECT_EQ(p().Ioctl(r, LIVEUPDATE_SESSION_FINISH, &finish), 0);
  EXPECT_EQ(m().kernel().WarnCount("luo-hazard: flb incoming underflow"), 1u);
  EXPECT_EQ(TestControl().flb_live_objects, 1);  // never finished
}

}  // namespace
}  // namespace khosim::testing

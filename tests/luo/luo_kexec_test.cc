// LUO across kexec: serialization at reboot and its rollback, the next
// kernel's deserialization, retrieval, finish, and the selftests'
// across-kexec cases (simple, multi-session with empty sessions, 500 files,
// 2000 sessions, the state-session pattern).
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/abi/block.h"
#include "khosim/base/panic.h"
#include "khosim/linux/mm.h"
#include "khosim/uapi/liveupdate.h"
#include "luo/luo_fixture.h"

namespace khosim::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

class LuoKexecTest : public LuoFixture {
 protected:
  // Every session and file retrieved, verified and finished: nothing of
  // the previous kernel may remain.
  void ExpectAllFinished() {
    EXPECT_EQ(TestControl().live_records, 0);
    EXPECT_EQ(luo().preserved_file_count(), 0u);
    EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();
    // Of the previous kernel's preserved blocks only its root FDT is still
    // held: KHO keeps it for kho_retrieve_subtree for this whole boot.
    const uint64_t fdt = m().kernel().kho().incoming_handover().fdt_addr;
    unsigned order = 0;
    EXPECT_TRUE(m().kernel().kho().IsPreservedHead(PhysAddr(fdt), &order));
    EXPECT_EQ(m().kernel().kho().UnrestoredBlocks(), 1u);
  }
};

TEST_F(LuoKexecTest, SimpleRoundTrip) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 0x1A), 0);
  m().trace().Clear();
  Kexec();
  EXPECT_EQ(luo().incoming_liveupdate_num(), 1u);
  const int r = Retrieve("vm0");
  ASSERT_GE(r, 0);
  EXPECT_TRUE(p().IsCloexec(r));
  const int fd = luo::RetrieveFd(p(), r, 0x1A);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(TestFileValue(p(), fd), 0x1Au);
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_THAT(TestControl().finish_status, ElementsAre(Pair(0x1A, 1)));
  EXPECT_THAT(Callbacks(), ElementsAre("retrieve 26", "can_finish 26", "finish 26"));
  EXPECT_EQ(p().Close(r), 0);
  EXPECT_THAT(luo().IncomingSessions(), IsEmpty());
  // The retrieved file is userspace's now.
  EXPECT_EQ(TestFileValue(p(), fd), 0x1Au);
  ExpectAllFinished();
}

TEST_F(LuoKexecTest, LiveupdateNumCountsUpdatesAndOutgoingStartsEmpty) {
  Kexec();
  EXPECT_EQ(luo().incoming_liveupdate_num(), 1u);
  EXPECT_EQ(luo().outgoing_record()->liveupdate_num, 2u);
  EXPECT_THAT(luo().OutgoingSessions(), IsEmpty());
  Kexec();
  EXPECT_EQ(luo().incoming_liveupdate_num(), 2u);
}

TEST_F(LuoKexecTest, MultiSessionWithEmptySessions) {
  const int a = Create("a");
  ASSERT_GE(Create("empty-1"), 0);
  const int b = Create("b");
  ASSERT_GE(Create("empty-2"), 0);
  ASSERT_EQ(PreserveNew(a, 1), 0);
  ASSERT_EQ(PreserveNew(b, 2), 0);
  ASSERT_EQ(PreserveNew(b, 3), 0);
  Kexec();
  ASSERT_GE(Dev(), 0);  // first open deserializes
  std::vector<std::pair<std::string, size_t>> got;
  for (const auto& s : luo().IncomingSessions()) got.emplace_back(s.name, s.files.size());
  EXPECT_THAT(got, ElementsAre(Pair("a", 1), Pair("empty-1", 0), Pair("b", 2), Pair("empty-2", 0)));
  // A name that exists only as incoming can be created again.
  EXPECT_GE(Create("a"), 0);
  for (const char* name : {"a", "empty-1", "b", "empty-2"}) {
    const int r = Retrieve(name);
    ASSERT_GE(r, 0) << name;
    EXPECT_EQ(luo::FinishSession(p(), r), 0);
    EXPECT_EQ(p().Close(r), 0);
  }
  ExpectAllFinished();
}

TEST_F(LuoKexecTest, RetrieveSessionRules) {
  ASSERT_GE(Create("vm0"), 0);
  Kexec();
  EXPECT_EQ(Retrieve("nope"), -ENOENT);
  const int r = Retrieve("vm0");
  ASSERT_GE(r, 0);
  EXPECT_EQ(Retrieve("vm0"), -EINVAL);
  EXPECT_EQ(p().Close(r), 0);  // implicit finish, session gone
  EXPECT_EQ(Retrieve("vm0"), -ENOENT);
}

TEST_F(LuoKexecTest, RetrieveFdRulesAndSharing) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  Kexec();
  const int r = Retrieve("vm0");
  EXPECT_EQ(luo::RetrieveFd(p(), r, 99), -ENOENT);
  const int fd1 = luo::RetrieveFd(p(), r, 1);
  const int fd2 = luo::RetrieveFd(p(), r, 1);
  ASSERT_GE(fd1, 0);
  ASSERT_GE(fd2, 0);
  EXPECT_NE(fd1, fd2);
  EXPECT_EQ(p().PeekFile(fd1), p().PeekFile(fd2));
  EXPECT_THAT(Callbacks(), ElementsAre("retrieve 1"));
  // PRESERVE_FD on an incoming session is refused by kind.
  EXPECT_EQ(Preserve(r, fd1, 5), -EINVAL);
  // A retrieved, unfinished file is still LUO's: it cannot go out again.
  const int out = Create("next");
  EXPECT_EQ(Preserve(out, fd1, 1), -EBUSY);
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_EQ(Preserve(out, fd1, 1), 0);
  EXPECT_EQ(luo::RetrieveFd(p(), r, 1), -ENOENT);
  EXPECT_EQ(luo::FinishSession(p(), r), 0);  // already finished: 0
}

TEST_F(LuoKexecTest, RetrieveErrorIsLatched) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 4), 0);
  Kexec();
  const int r = Retrieve("vm0");
  TestControl().retrieve_error = -EIO;
  EXPECT_EQ(luo::RetrieveFd(p(), r, 4), -EIO);
  TestControl().retrieve_error = 0;
  EXPECT_EQ(luo::RetrieveFd(p(), r, 4), -EIO);  // no second callback
  EXPECT_THAT(Callbacks(), ElementsAre("retrieve 4"));
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_THAT(TestControl().finish_status, ElementsAre(Pair(4, -EIO)));
  ExpectAllFinished();
}

TEST_F(LuoKexecTest, CanFinishVetoIsAllOrNothing) {
  const int s = Create("vm0");
  for (uint64_t t : {1, 2, 3}) ASSERT_EQ(PreserveNew(s, t), 0);
  Kexec();
  const int r = Retrieve("vm0");
  TestControl().can_finish_veto = {2};
  EXPECT_EQ(luo::FinishSession(p(), r), -EBUSY);
  EXPECT_THAT(Callbacks(), ElementsAre("can_finish 1", "can_finish 2"));
  EXPECT_THAT(TestControl().finish_status, IsEmpty());
  TestControl().can_finish_veto.clear();
  m().trace().Clear();
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_THAT(Callbacks(), ElementsAre("can_finish 1", "can_finish 2", "can_finish 3", "finish 3",
                                       "finish 2", "finish 1"));
  // Never retrieved: finish sees status 0 and drops the data.
  EXPECT_THAT(TestControl().finish_status, ElementsAre(Pair(3, 0), Pair(2, 0), Pair(1, 0)));
  ExpectAllFinished();
}

TEST_F(LuoKexecTest, VetoedImplicitFinishLeaksTheSession) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  Kexec();
  const int r = Retrieve("vm0");
  TestControl().can_finish_veto = {1};
  EXPECT_EQ(p().Close(r), 0);  // close(2) itself succeeds
  ASSERT_EQ(luo().IncomingSessions().size(), 1u);
  EXPECT_TRUE(luo().IncomingSessions()[0].retrieved);
  EXPECT_EQ(Retrieve("vm0"), -EINVAL);
  EXPECT_EQ(TestControl().live_records, 1);  // still LUO's until the next update
  // The next live update drops it: nothing of it reaches the kernel after.
  TestControl().can_finish_veto.clear();
  Kexec();
  EXPECT_EQ(Retrieve("vm0"), -ENOENT);
}

TEST_F(LuoKexecTest, FinishReservedIsCheckedOn73) {
  ASSERT_GE(Create("vm0"), 0);
  Kexec();
  const int r = Retrieve("vm0");
  liveupdate_session_finish arg = {sizeof(arg), 1};
  EXPECT_EQ(p().Ioctl(r, LIVEUPDATE_SESSION_FINISH, &arg), -EINVAL);
  arg.reserved = 0;
  EXPECT_EQ(p().Ioctl(r, LIVEUPDATE_SESSION_FINISH, &arg), 0);
}

TEST_F(LuoKexecTest, NeverRetrievedSessionsStayUntilTheNextUpdate) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  Kexec();
  ASSERT_GE(Dev(), 0);
  EXPECT_EQ(luo().IncomingSessions().size(), 1u);
  EXPECT_EQ(TestControl().live_records, 1);
  Kexec();
  ASSERT_GE(Dev(), 0);
  EXPECT_THAT(luo().IncomingSessions(), IsEmpty());
}

TEST_F(LuoKexecTest, FreezeFailureRollsBackAcrossSessions) {
  const int s1 = Create("S1");
  const int s2 = Create("S2");
  ASSERT_EQ(PreserveNew(s1, 1), 0);
  ASSERT_EQ(PreserveNew(s1, 2), 0);
  ASSERT_EQ(PreserveNew(s2, 3), 0);
  ASSERT_EQ(PreserveNew(s2, 4), 0);
  TestControl().freeze_fail_value = 3;
  m().trace().Clear();
  EXPECT_EQ(m().kernel().RunRebootHooks({}), -EINVAL);
  EXPECT_THAT(Callbacks(),
              ElementsAre("freeze 1", "freeze 2", "freeze 3", "unfreeze 1", "unfreeze 2"));
  EXPECT_FALSE(luo().frozen_for_kexec());
  EXPECT_EQ(luo().outgoing_record()->sessions_pa, 0u);
  // Everything still usable; the kexec goes through once freeze succeeds.
  ASSERT_EQ(PreserveNew(s2, 5), 0);
  TestControl().freeze_fail_value = UINT64_MAX;
  EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();
  Kexec();
  ASSERT_GE(Dev(), 0);
  ASSERT_EQ(luo().IncomingSessions().size(), 2u);
  EXPECT_EQ(luo().IncomingSessions()[1].files.size(), 3u);
}

TEST_F(LuoKexecTest, KexecCancelledByAFreezeErrorReturnsIt) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  TestControl().freeze_fail_value = 1;
  TestControl().freeze_error = -EBUSY;
  absl::Status status = m().Kexec();
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(m().kexec_count(), 0u);
  EXPECT_EQ(m().kernel().phase(), BootPhase::kRunning);
  EXPECT_EQ(PreserveNew(s, 2), 0);
}

TEST_F(LuoKexecTest, AfterASuccessfulRebootSessionCallsBlock) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  ASSERT_EQ(m().kernel().RunRebootHooks({}), 0);
  EXPECT_TRUE(luo().frozen_for_kexec());
  EXPECT_EQ(PreserveNew(s, 2), -ERESTARTSYS);
  EXPECT_EQ(Create("late"), -ERESTARTSYS);
  EXPECT_EQ(p().Close(s), 0);  // close returns; the release itself blocks
  EXPECT_EQ(luo().blocked_calls(), 3u);
  EXPECT_EQ(luo().OutgoingSessions().size(), 1u);
  // The kexec still carries exactly what was serialized.
  Kexec();
  ASSERT_GE(Dev(), 0);
  ASSERT_EQ(luo().IncomingSessions().size(), 1u);
  EXPECT_EQ(luo().IncomingSessions()[0].files.size(), 1u);
}

TEST_F(LuoKexecTest, PreserveContextKexecSkipsSerialization) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  m().trace().Clear();
  ASSERT_EQ(m().kernel().RunRebootHooks({.preserve_context = true}), 0);
  EXPECT_THAT(Callbacks(), IsEmpty());
  EXPECT_FALSE(luo().frozen_for_kexec());
  EXPECT_EQ(PreserveNew(s, 2), 0);
}

TEST_F(LuoKexecTest, BlockChainsHaveTheExactShape) {
  for (int i = 0; i < 52; ++i) ASSERT_GE(Create(absl::StrCat("s", i)), 0) << i;
  const int big = Create("files");
  for (uint64_t t = 0; t < 64; ++t) ASSERT_EQ(PreserveNew(big, t), 0);
  ASSERT_EQ(m().kernel().RunRebootHooks({}), 0);
  // sessions: 53 records = 51 + 2; the last session's files: 63 + 1.
  auto block = [](uint64_t pa) {
    return static_cast<const abi::KhoBlockHeader*>(phys_to_virt(pa));
  };
  const abi::KhoBlockHeader* b0 = block(luo().outgoing_record()->sessions_pa);
  ASSERT_NE(b0->next, 0u);
  const abi::KhoBlockHeader* b1 = block(b0->next);
  EXPECT_EQ(b0->count, 51u);
  EXPECT_EQ(b1->count, 2u);
  EXPECT_EQ(b1->next, 0u);
  const auto* last = reinterpret_cast<const abi::LuoSessionSer*>(b1 + 1) + 1;
  EXPECT_STREQ(last->name, "files");
  EXPECT_EQ(last->file_set.count, 64u);
  const abi::KhoBlockHeader* f0 = block(last->file_set.files);
  EXPECT_EQ(f0->count, 63u);
  EXPECT_EQ(block(f0->next)->count, 1u);
  const auto* first_file = reinterpret_cast<const abi::LuoFileSer*>(f0 + 1);
  EXPECT_STREQ(first_file->compatible, "test-file-v1");
  EXPECT_EQ(first_file->token, 0u);
  // An empty session has no file chain.
  const auto* s0 = reinterpret_cast<const abi::LuoSessionSer*>(b0 + 1);
  EXPECT_EQ(s0->file_set.files, 0u);
  EXPECT_EQ(s0->file_set.count, 0u);
}

TEST_F(LuoKexecTest, MissingHandlerAtFirstOpenLatchesEio) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  Kexec(/*register_handler=*/false);
  EXPECT_EQ(luo::OpenLiveupdate(p()), -EIO);
  ASSERT_EQ(RegisterTestHandler(), 0);  // too late
  EXPECT_EQ(luo::OpenLiveupdate(p()), -EIO);
  EXPECT_EQ(luo().deserialize_error(), -ENOENT);
}

// Corrupts the serialized LUO state from a reboot hook that runs after
// LUO's, i.e. between serialization and the jump to the next kernel.
class LuoCorruptionTest : public LuoKexecTest {
 protected:
  void CorruptAndKexec(std::function<void(abi::LuoSer*)> corrupt) {
    abi::LuoSer* ser = const_cast<abi::LuoSer*>(luo().outgoing_record());
    m().kernel().RegisterRebootHook("corrupt", [ser, corrupt](const RebootInfo&) {
      corrupt(ser);
      return 0;
    });
    EXPECT_THROW((void)m().Kexec(), KernelPanic);
  }
};

TEST_F(LuoCorruptionTest, WrongCompatiblePanics) {
  CorruptAndKexec([](abi::LuoSer* ser) { std::memcpy(ser->compatible, "luo-v4", 7); });
}

TEST_F(LuoCorruptionTest, SessionChainCyclePanics) {
  ASSERT_GE(Create("vm0"), 0);
  CorruptAndKexec([](abi::LuoSer* ser) {
    auto* b = static_cast<abi::KhoBlockHeader*>(phys_to_virt(ser->sessions_pa));
    b->next = ser->sessions_pa;
  });
}

TEST_F(LuoCorruptionTest, ZeroCountBlockPanics) {
  ASSERT_GE(Create("vm0"), 0);
  CorruptAndKexec([](abi::LuoSer* ser) {
    static_cast<abi::KhoBlockHeader*>(phys_to_virt(ser->sessions_pa))->count = 0;
  });
}

TEST_F(LuoCorruptionTest, FileCountMismatchIsEioAtFirstOpen) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  abi::LuoSer* ser = const_cast<abi::LuoSer*>(luo().outgoing_record());
  m().kernel().RegisterRebootHook("corrupt", [ser](const RebootInfo&) {
    auto* b = static_cast<abi::KhoBlockHeader*>(phys_to_virt(ser->sessions_pa));
    reinterpret_cast<abi::LuoSessionSer*>(b + 1)->file_set.count = 2;
    return 0;
  });
  Kexec();
  EXPECT_EQ(luo::OpenLiveupdate(p()), -EIO);
  EXPECT_EQ(luo().deserialize_error(), -EINVAL);
}

// Found by luo_incoming_fuzzer (tests/fuzz/README.md): a file chain that
// repeats a token used to deserialize into a session whose second file no
// RETRIEVE_FD can reach, breaking the token-uniqueness invariant.
TEST_F(LuoCorruptionTest, DuplicateTokenIsEexistAtFirstOpen) {
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  ASSERT_EQ(PreserveNew(s, 2), 0);
  abi::LuoSer* ser = const_cast<abi::LuoSer*>(luo().outgoing_record());
  m().kernel().RegisterRebootHook("corrupt", [ser](const RebootInfo&) {
    auto* b = static_cast<abi::KhoBlockHeader*>(phys_to_virt(ser->sessions_pa));
    const auto* session = reinterpret_cast<const abi::LuoSessionSer*>(b + 1);
    auto* files = static_cast<abi::KhoBlockHeader*>(phys_to_virt(session->file_set.files));
    reinterpret_cast<abi::LuoFileSer*>(files + 1)[1].token = 1;
    return 0;
  });
  Kexec();
  EXPECT_EQ(luo::OpenLiveupdate(p()), -EIO);
  EXPECT_EQ(luo().deserialize_error(), -EEXIST);
  EXPECT_EQ(luo::OpenLiveupdate(p()), -EIO);
  EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();
}

// Found by luo_incoming_fuzzer: an FLB record whose count is LONG_MAX made
// get_incoming's increment overflow (undefined behaviour here, a silent
// wrap in the kernel). It is a hazard: reported, refused, nothing wraps.
TEST_F(LuoCorruptionTest, FlbIncomingCountAtLongMaxIsRefused) {
  ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb), 0);
  const int s = Create("vm0");
  ASSERT_EQ(PreserveNew(s, 1), 0);
  abi::LuoSer* ser = const_cast<abi::LuoSer*>(luo().outgoing_record());
  m().kernel().RegisterRebootHook("corrupt", [ser](const RebootInfo&) {
    auto* header = static_cast<abi::LuoFlbHeaderSer*>(phys_to_virt(ser->flbs_pa));
    reinterpret_cast<abi::LuoFlbSer*>(header + 1)[0].count = LONG_MAX;
    return 0;
  });
  Kexec();
  ASSERT_EQ(liveupdate_register_flb(&test_file_handler, &test_flb), 0);
  ASSERT_GE(Dev(), 0);
  void* obj = nullptr;
  EXPECT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), -EOVERFLOW);
  EXPECT_EQ(liveupdate_flb_get_incoming(&test_flb, &obj), -EOVERFLOW);
  EXPECT_EQ(m().kernel().ctx().WarnCount("luo-hazard: flb incoming overflow"), 2u);
  // The file's finish still drops one reference; the count never wrapped.
  const int r = Retrieve("vm0");
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  ASSERT_EQ(luo().Flbs().size(), 1u);
  EXPECT_EQ(luo().Flbs()[0].incoming_count, LONG_MAX - 1);
  EXPECT_FALSE(luo().Flbs()[0].incoming_finished);
}

TEST_F(LuoKexecTest, FiveHundredFilesInOneSession) {
  const int s = Create("many");
  for (uint64_t t = 0; t < 500; ++t) ASSERT_EQ(PreserveNew(s, 1000 + t), 0);
  Kexec();
  const int r = Retrieve("many");
  for (uint64_t t = 0; t < 500; t += 7) {
    const int fd = luo::RetrieveFd(p(), r, 1000 + t);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(TestFileValue(p(), fd), 1000 + t);
  }
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_EQ(TestControl().finish_status.size(), 500u);
  EXPECT_EQ(p().Close(r), 0);
  ExpectAllFinished();
}

TEST_F(LuoKexecTest, TwoThousandSessions) {
  for (int i = 0; i < 2000; ++i) {
    const int s = Create(absl::StrCat("session-", i));
    ASSERT_GE(s, 0);
    ASSERT_EQ(PreserveNew(s, static_cast<uint64_t>(i)), 0);
  }
  Kexec();
  ASSERT_GE(Dev(), 0);
  ASSERT_EQ(luo().IncomingSessions().size(), 2000u);
  for (int i = 0; i < 2000; ++i) {
    const int r = Retrieve(absl::StrCat("session-", i));
    ASSERT_GE(r, 0);
    const int fd = luo::RetrieveFd(p(), r, static_cast<uint64_t>(i));
    ASSERT_EQ(TestFileValue(p(), fd), static_cast<uint64_t>(i));
    ASSERT_EQ(p().Close(r), 0);  // implicit finish
  }
  ExpectAllFinished();
}

// Closing sessions out of order (the first, the last, middle ones: enough
// for the session list to drop trailing holes and to compact) keeps the
// others in creation order: for the freeze order, its rollback, the
// records, and the name check of later creates.
TEST_F(LuoKexecTest, ClosingSessionsKeepsTheOthersInCreationOrder) {
  std::vector<int> fds;
  for (int i = 0; i < 12; ++i) {
    fds.push_back(Create(absl::StrCat("s", i)));
    ASSERT_GE(fds.back(), 0);
    ASSERT_EQ(PreserveNew(fds.back(), static_cast<uint64_t>(i)), 0);
  }
  // The 7th close leaves more holes than sessions (a compaction); s7 is
  // closed after it, from its new slot.
  for (int i : {0, 5, 2, 8, 1, 4, 10, 7}) ASSERT_EQ(p().Close(fds[i]), 0);
  EXPECT_EQ(Create("s3"), -EEXIST);
  const int late = Create("s5");  // the closed name is free again
  ASSERT_GE(late, 0);
  ASSERT_EQ(PreserveNew(late, 50), 0);
  std::vector<std::string> names;
  for (const auto& info : luo().OutgoingSessions()) names.push_back(info.name);
  EXPECT_THAT(names, ElementsAre("s3", "s6", "s9", "s11", "s5"));
  EXPECT_TRUE(luo().Validate().ok()) << luo().Validate();

  TestControl().freeze_fail_value = 11;
  m().trace().Clear();
  EXPECT_EQ(m().kernel().RunRebootHooks({}), -EINVAL);
  EXPECT_THAT(Callbacks(), ElementsAre("freeze 3", "freeze 6", "freeze 9", "freeze 11",
                                       "unfreeze 9", "unfreeze 6", "unfreeze 3"));
  TestControl().freeze_fail_value = UINT64_MAX;
  Kexec();
  ASSERT_GE(Dev(), 0);
  names.clear();
  for (const auto& info : luo().IncomingSessions()) names.push_back(info.name);
  EXPECT_THAT(names, ElementsAre("s3", "s6", "s9", "s11", "s5"));
  for (const std::string& name : names) {
    const int r = Retrieve(name);
    ASSERT_GE(r, 0);
    ASSERT_EQ(p().Close(r), 0);  // implicit finish
  }
  ExpectAllFinished();
}

// The selftests' state-session pattern: a session holding the state of a
// multi-stage test is carried through several kexecs, each stage
// retrieving it, checking it, and preserving the next stage's state.
TEST_F(LuoKexecTest, StateSessionAcrossThreeKexecs) {
  for (uint64_t stage = 1; stage <= 3; ++stage) {
    if (stage > 1) {
      const int r = Retrieve("state");
      ASSERT_GE(r, 0);
      const int fd = luo::RetrieveFd(p(), r, 0);
      ASSERT_GE(fd, 0);
      EXPECT_EQ(TestFileValue(p(), fd), stage - 1);
      EXPECT_EQ(luo::FinishSession(p(), r), 0);
      EXPECT_EQ(p().Close(r), 0);
    }
    const int s = Create("state");
    ASSERT_GE(s, 0);
    ASSERT_EQ(Preserve(s, OpenTestFile(p(), stage), 0), 0) << stage;
    Kexec();
  }
  EXPECT_EQ(luo().incoming_liveupdate_num(), 3u);
}

}  // namespace
}  // namespace khosim::testing

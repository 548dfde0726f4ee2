// LUO and the machine's trace filter: KernelContext::TraceEnabled follows
// EventTrace::SetEnabled, and with the "luo" category off LUO builds no
// event at all but behaves exactly as with it on (same results, same log,
// same events in every other category).
#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "luo/luo_fixture.h"

namespace khosim::testing {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class LuoTraceTest : public LuoFixture {
 protected:
  // Appends the kernel's log and every non-"luo" event recorded so far.
  void NoteMachine(std::vector<std::string>& out) {
    for (const std::string& line : m().kernel().ctx().LogLines()) out.push_back("log " + line);
    for (const TraceEvent& e : m().trace().Events()) {
      if (e.category != "luo") out.push_back("event " + e.ToString());
    }
  }

  // A live update with errors, a cancelled reboot and blocked calls; every
  // result, log line and non-"luo" event in order.
  std::vector<std::string> Update() {
    std::vector<std::string> out;
    auto note = [&](absl::string_view what, long value) {
      out.push_back(absl::StrCat(what, " = ", value));
    };
    const int s1 = Create("vm0");
    const int s2 = Create("vm1");
    note("create", s1 >= 0 && s2 >= 0);
    note("create duplicate", Create("vm0"));
    note("preserve 1", PreserveNew(s1, 1));
    note("preserve 1 again", PreserveNew(s1, 1));
    note("preserve 2", PreserveNew(s2, 2));
    note("preserve 3", PreserveNew(s2, 3));
    const int gone = Create("gone");
    note("preserve 4", PreserveNew(gone, 4));
    note("close gone", p().Close(gone));
    TestControl().freeze_fail_value = 3;
    note("cancelled reboot", m().kernel().RunRebootHooks({}));
    TestControl().freeze_fail_value = UINT64_MAX;
    note("reboot", m().kernel().RunRebootHooks({}));
    note("blocked preserve", PreserveNew(s1, 5));
    note("blocked create", Create("late"));
    note("blocked close", p().Close(s2));
    note("blocked calls", static_cast<long>(luo().blocked_calls()));
    NoteMachine(out);
    Kexec();
    const int r = Retrieve("vm0");
    note("retrieve vm0", r >= 0);
    note("retrieve vm0 again", Retrieve("vm0"));
    note("retrieve missing", Retrieve("nope"));
    const int fd = luo::RetrieveFd(p(), r, 1);
    note("retrieve fd", fd >= 0);
    note("close fd", p().Close(fd));
    note("finish", luo::FinishSession(p(), r));
    note("close vm0", p().Close(r));
    note("valid", luo().Validate().ok());
    NoteMachine(out);
    return out;
  }
};

TEST_F(LuoTraceTest, TraceEnabledFollowsTheFilter) {
  const KernelContext& ctx = m().kernel().ctx();
  EXPECT_TRUE(ctx.TraceEnabled("luo"));
  EXPECT_TRUE(m().trace().Enabled("luo"));
  m().trace().SetEnabled("luo", false);
  EXPECT_FALSE(ctx.TraceEnabled("luo"));
  EXPECT_FALSE(m().trace().Enabled("luo"));
  EXPECT_TRUE(ctx.TraceEnabled("kho"));
  EXPECT_TRUE(ctx.TraceEnabled("lu"));  // names match exactly
  m().trace().SetEnabled("luo", false);
  m().trace().SetEnabled("kho", false);
  m().trace().SetEnabled("luo", true);
  EXPECT_TRUE(ctx.TraceEnabled("luo"));
  EXPECT_FALSE(ctx.TraceEnabled("kho"));
  m().trace().SetEnabled("kho", true);
  EXPECT_TRUE(ctx.TraceEnabled("kho"));
}

TEST_F(LuoTraceTest, LuoWithoutItsTraceCategoryBehavesTheSame) {
  const std::vector<std::string> traced = Update();

  SetUp();  // a fresh machine with the same seed
  m().trace().SetEnabled("luo", false);
  const std::vector<std::string> untraced = Update();
  EXPECT_THAT(m().trace().Events("luo"), IsEmpty());
  EXPECT_EQ(untraced, traced);
  EXPECT_THAT(traced, Contains(HasSubstr("/phase/initcalls")));
  // The blocked calls are still described in the log.
  EXPECT_THAT(traced, Contains("log luo: ioctl on session vm0 blocks until the kexec (sessions "
                               "are serialized)"));
  EXPECT_THAT(traced, Contains("log luo: close session vm1 blocks until the kexec (sessions "
                               "are serialized)"));
}

TEST_F(LuoTraceTest, BlockedCallsNameTheirSession) {
  const int s = Create("vm0");
  ASSERT_EQ(m().kernel().RunRebootHooks({}), 0);
  m().trace().Clear();
  EXPECT_EQ(PreserveNew(s, 1), -ERESTARTSYS);
  EXPECT_EQ(Create("late"), -ERESTARTSYS);
  EXPECT_EQ(p().Close(s), 0);
  std::vector<std::string> calls;
  for (const TraceEvent& e : m().trace().Events("luo")) {
    if (e.name == "blocked") calls.push_back(e.args.at(0).second);
  }
  EXPECT_THAT(calls, ElementsAre("ioctl on session vm0", "create session", "close session vm0"));
}

}  // namespace
}  // namespace khosim::testing

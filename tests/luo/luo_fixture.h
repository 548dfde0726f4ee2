// A machine with KHO and LUO on, the test handler registered in every
// boot, and one userspace process per boot.
#ifndef KHOSIM_TESTS_LUO_LUO_FIXTURE_H_
#define KHOSIM_TESTS_LUO_LUO_FIXTURE_H_

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "khosim/fs/vfs.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/machine.h"
#include "luo/test_handler.h"

namespace khosim::testing {

class LuoFixture : public ::testing::Test {
 protected:
  virtual std::string Cmdline() { return "kho=on liveupdate=on"; }

  void SetUp() override {
    ResetTestControl();
    MachineConfig config{.ram = 1 * kGiB, .seed = 11};
    config.cmdline = Cmdline();
    machine_ = std::make_unique<Machine>(config);
    machine_->Boot();
    StartUserspace();
  }

  // Loads the test handler in the running kernel and starts a process.
  void StartUserspace(bool register_handler = true) {
    machine_->Activate();
    if (register_handler) {
      ASSERT_EQ(RegisterTestHandler(), 0);
    }
    p_ = &vfs().CreateProcess("vmm");
    p_->SetRlimitNofile(1 << 20);
    dev_ = -1;
  }

  // Reboots into the next kernel; the process of the old one is gone.
  void Kexec(bool register_handler = true) {
    absl::Status status = machine_->Kexec();
    ASSERT_TRUE(status.ok()) << status;
    machine_->trace().Clear();
    StartUserspace(register_handler);
  }

  Machine& m() { return *machine_; }
  fs::Vfs& vfs() { return machine_->kernel().vfs(); }
  luo::Luo& luo() { return machine_->kernel().luo(); }
  fs::Process& p() { return *p_; }

  int Dev() {
    if (dev_ < 0 || p_->PeekFile(dev_) == nullptr) dev_ = luo::OpenLiveupdate(*p_);
    return dev_;
  }
  int Create(absl::string_view name) { return luo::CreateSession(*p_, Dev(), name); }
  int Retrieve(absl::string_view name) { return luo::RetrieveSession(*p_, Dev(), name); }
  int Preserve(int session, int fd, uint64_t token) {
    return luo::PreserveFd(*p_, session, fd, token);
  }
  // A new test file whose value is |token|, preserved under |token|.
  int PreserveNew(int session, uint64_t token) {
    const int fd = OpenTestFile(*p_, token);
    EXPECT_GE(fd, 0);
    return Preserve(session, fd, token);
  }

  // The LUO callbacks in the trace so far: "op token" for file callbacks,
  // "flb_op" for FLB ones.
  std::vector<std::string> Callbacks() {
    std::vector<std::string> out;
    for (const TraceEvent& e : machine_->trace().Events("luo")) {
      if (absl::StartsWith(e.name, "flb_")) {
        out.push_back(e.name);
        continue;
      }
      static const char* kOps[] = {"preserve", "unpreserve", "freeze", "unfreeze",
                                   "retrieve", "can_finish", "finish"};
      for (const char* op : kOps) {
        if (e.name != op) continue;
        std::string token;
        for (const auto& [k, v] : e.args) {
          if (k == "token") token = v;
        }
        out.push_back(absl::StrCat(e.name, " ", token));
      }
    }
    return out;
  }

  std::unique_ptr<Machine> machine_;
  fs::Process* p_ = nullptr;
  int dev_ = -1;
};

}  // namespace khosim::testing

#endif  // KHOSIM_TESTS_LUO_LUO_FIXTURE_H_

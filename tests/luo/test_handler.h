// A small LUO file handler for tests: "test files" carry one u64 value; the
// handler preserves it in a KHO page and rebuilds the file after kexec.
// Every callback can be made to fail, and FLBs can be linked to it, so the
// LUO core can be exercised before any real handler exists. Register it in
// each boot with RegisterTestHandler (as a module would load again).
#ifndef KHOSIM_TESTS_LUO_TEST_HANDLER_H_
#define KHOSIM_TESTS_LUO_TEST_HANDLER_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "khosim/fs/vfs.h"
#include "khosim/linux/liveupdate.h"

namespace khosim::testing {

// What the next calls of the test handler and test FLBs do.
struct TestHandlerControl {
  int preserve_error = 0;
  uint64_t freeze_fail_value = UINT64_MAX;  // freeze of this file fails
  int freeze_error = -EINVAL;
  int retrieve_error = 0;
  std::set<uint64_t> can_finish_veto;  // values whose can_finish says no
  int flb_preserve_error = 0;
  std::string flb_preserve_error_only;  // if set, only this FLB fails
  int flb_retrieve_error = 0;
  // finish() records the retrieve_status it was given per value.
  std::vector<std::pair<uint64_t, int>> finish_status;
  // Live records: preserved and not yet unpreserved/finished.
  int64_t live_records = 0;
  int64_t flb_live_objects = 0;
  // unpreserve() calls whose private_data was not what preserve() set.
  int64_t private_data_mismatch = 0;
};

TestHandlerControl& TestControl();
void ResetTestControl();

extern struct liveupdate_file_handler test_file_handler;    // "test-file-v1"
extern struct liveupdate_file_handler test_file_handler_b;  // "test-file-b-v1"
extern struct liveupdate_flb test_flb;                      // "test-flb-v1"
extern struct liveupdate_flb test_flb_2;                    // "test-flb-2-v1"

// Opens a new test file holding |value| in |p| (fd or -errno).
int OpenTestFile(fs::Process& p, uint64_t value);
// The value of the test file behind |fd|, or UINT64_MAX.
uint64_t TestFileValue(fs::Process& p, int fd);
bool IsTestFile(const struct file* f);

// Registers test_file_handler (and optionally test_file_handler_b) in the
// current kernel; returns the first error.
int RegisterTestHandler(bool also_b = false);

}  // namespace khosim::testing

#endif  // KHOSIM_TESTS_LUO_TEST_HANDLER_H_

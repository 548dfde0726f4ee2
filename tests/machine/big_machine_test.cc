// A 1 TiB machine boots and kexecs on a host with far less memory: only
// touched pages of DRAM and of the memmap cost host memory.
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

uint64_t HostRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

TEST(BigMachineTest, OneTebibyteBootsAndKexecsWithSmallHostFootprint) {
  const uint64_t rss_before = HostRssBytes();
  Machine m(MachineConfig{.ram = 1 * kTiB, .nodes = 4, .seed = 8});
  m.Boot();
  const uint64_t total = m.memory().layout().total_ram();
  EXPECT_EQ(total, 1 * kTiB);
  EXPECT_GT(m.kernel().mm().pages().FreePages() * 4096, 980 * kGiB);
  struct folio* f = folio_alloc(GFP_KERNEL, MAX_PAGE_ORDER);
  ASSERT_NE(f, nullptr);
  std::memset(folio_address(f), 1, folio_size(f));
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(m.kernel().generation(), 2u);
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
  const uint64_t rss = HostRssBytes() - rss_before;
  RecordProperty("host_rss_bytes", std::to_string(rss));
  // DRAM, memmap and bookkeeping for a 1 TiB machine: well under 1 GiB.
  EXPECT_LT(rss, 1 * kGiB);
  EXPECT_LT(m.memory().ResidentBytes(), 256 * kMiB);
}

}  // namespace
}  // namespace khosim

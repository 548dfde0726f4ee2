// Hugetlb pools: command line, boot-time filling (gigantic pages from
// memblock, never in KHO scratch), alloc/free through folio_put.
#include "khosim/mm/hugetlb.h"

#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr int k2M = 0;
constexpr int k1G = 1;

MachineConfig PoolMachine(std::string cmdline, uint64_t ram = 8 * kGiB) {
  MachineConfig config{.ram = ram, .nodes = 2, .seed = 4};
  config.cmdline = std::move(cmdline);
  return config;
}

bool Logged(const Machine& m, absl::string_view needle) {
  for (const std::string& line : const_cast<Machine&>(m).kernel().ctx().LogLines()) {
    if (absl::StrContains(line, needle)) return true;
  }
  return false;
}

TEST(HugetlbTest, CommandLineFillsThePoolsInOrder) {
  Machine m(PoolMachine("hugepagesz=1G hugepages=2 hugepagesz=2M hugepages=16"));
  m.Boot();
  mm::Hugetlb& h = m.kernel().mm().hugetlb();
  EXPECT_EQ(h.Info(k2M).name, "hugepages-2048kB");
  EXPECT_EQ(h.Info(k1G).name, "hugepages-1048576kB");
  EXPECT_EQ(h.Info(k1G).nr_huge_pages, 2u);
  EXPECT_EQ(h.Info(k1G).free_huge_pages, 2u);
  EXPECT_EQ(h.Info(k2M).nr_huge_pages, 16u);
  EXPECT_EQ(h.HstateForSize(2 * kMiB), k2M);
  EXPECT_EQ(h.HstateForSize(1 * kGiB), k1G);
  EXPECT_EQ(h.HstateForSize(4 * kMiB), -1);
}

TEST(HugetlbTest, DefaultSizeAndUnsupportedSizes) {
  Machine m(PoolMachine("hugepages=3 hugepagesz=4M hugepages=5 default_hugepagesz=1G"));
  m.Boot();
  mm::Hugetlb& h = m.kernel().mm().hugetlb();
  EXPECT_EQ(h.Info(k2M).nr_huge_pages, 3u) << "hugepages= before hugepagesz= is the default (2M)";
  EXPECT_EQ(h.Info(k1G).nr_huge_pages, 0u) << "hugepages=5 belonged to the unsupported 4M";
  EXPECT_EQ(h.default_hstate(), k1G);
  EXPECT_TRUE(Logged(m, "HugeTLB: unsupported hugepagesz=4M"));
}

TEST(HugetlbTest, AllocZeroesAndFolioPutReturnsToThePool) {
  Machine m(PoolMachine("hugepagesz=1G hugepages=1 hugepagesz=2M hugepages=2"));
  m.Boot();
  m.Activate();
  mm::Hugetlb& h = m.kernel().mm().hugetlb();
  struct folio* big = h.Alloc(k1G);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(folio_order(big), 18u);
  EXPECT_EQ(folio_ref_count(big), 1);
  EXPECT_TRUE(IsAligned(folio_phys(big), kGiB));
  EXPECT_EQ(h.Alloc(k1G), nullptr) << "the pool is empty";
  auto* bytes = static_cast<unsigned char*>(folio_address(big));
  std::memset(bytes + kGiB - 4096, 0x5a, 4096);
  folio_put(big);
  EXPECT_EQ(h.Info(k1G).free_huge_pages, 1u);
  struct folio* again = h.Alloc(k1G);
  ASSERT_EQ(again, big);
  EXPECT_EQ(static_cast<unsigned char*>(folio_address(again))[kGiB - 1], 0) << "zeroed again";
  folio_put(again);
  struct folio* small = h.Alloc(k2M, 1);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(folio_order(small), 9u);
  EXPECT_EQ(folio_nid(small), 1) << "node 1 asked for and available";
  folio_put(small);
  EXPECT_EQ(h.Info(k2M).free_huge_pages, 2u);
}

// In a KHO boot the early allocator is scratch-only, but gigantic pages are
// RSRV_HUGETLB reservations made when scratch-only ends: never inside a
// scratch area, and never over memory the previous kernel preserved.
TEST(HugetlbTest, GiganticPagesNeverLandInScratchOrPreservedMemory) {
  Machine m(PoolMachine("kho=on hugepagesz=1G hugepages=3"));
  m.Boot();
  m.Activate();
  // Preserve a large block that kernel B must not hand to the pool.
  struct folio* kept = folio_alloc(GFP_KERNEL, 10);
  ASSERT_NE(kept, nullptr);
  ASSERT_EQ(kho_preserve_folio(kept), 0);
  const phys_addr_t kept_pa = folio_phys(kept);
  ASSERT_TRUE(m.Kexec().ok());
  m.Activate();
  mm::Hugetlb& h = m.kernel().mm().hugetlb();
  ASSERT_EQ(h.Info(k1G).nr_huge_pages, 3u);
  std::vector<struct folio*> pages;
  for (int i = 0; i < 3; ++i) pages.push_back(h.Alloc(k1G));
  for (struct folio* f : pages) {
    ASSERT_NE(f, nullptr);
    const uint64_t start = folio_phys(f);
    const uint64_t end = start + kGiB;
    for (const abi::KhoScratch& s : m.kernel().kho().scratch()) {
      EXPECT_TRUE(end <= s.addr || start >= s.addr + s.size)
          << std::hex << start << " overlaps scratch " << s.addr;
    }
    EXPECT_FALSE(kept_pa >= start && kept_pa < end) << "over preserved memory";
  }
  for (struct folio* f : pages) folio_put(f);
}

TEST(HugetlbTest, MoreGiganticPagesThanFitShrinkThePoolWithALogLine) {
  Machine m(PoolMachine("hugepagesz=1G hugepages=64", 4 * kGiB));
  m.Boot();
  const mm::HstateInfo info = m.kernel().mm().hugetlb().Info(k1G);
  EXPECT_LT(info.nr_huge_pages, 4u);
  EXPECT_GT(info.bootmem_failures, 0u);
  EXPECT_TRUE(Logged(m, "HugeTLB: allocating 64 of page size"));
}

}  // namespace
}  // namespace khosim

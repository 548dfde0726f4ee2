// The hugetlb memfd handler ("hugemfd-v1") and its FLB ("hugetlb-v1")
// across kexec: 1 GiB pages handed over as order-18 blocks, the frozen
// file, the pools of the next kernel, the charge, and every error path
// leaving nothing behind.
#include "khosim/abi/hugetlb_luo.h"

#include <fcntl.h>
#include <linux/falloc.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "handlers/memfd_test_util.h"
#include "khosim/base/panic.h"
#include "khosim/fs/shmem.h"
#include "khosim/linux/hugetlb.h"
#include "khosim/linux/memfd.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/mm/hugetlb.h"

namespace khosim::testing {
namespace {

constexpr uint64_t k2M = 2 * kMiB;
constexpr int kPmd = 0;  // hstate indices of mm::Hugetlb
constexpr int kPud = 1;

class HugetlbLuoTest : public MemfdFixture {
 protected:
  MachineConfig Config() override {
    MachineConfig config{.ram = 8 * kGiB, .seed = 11};
    config.cmdline = Cmdline();
    config.build = KernelBuild{{kMemfdModule, kHugetlbModule}};
    return config;
  }
  virtual std::string Cmdline() const {
    return "kho=on liveupdate=on hugepagesz=2M hugepages=16 hugepagesz=1G hugepages=3";
  }

  mm::Hugetlb& hugetlb() { return m().kernel().mm().hugetlb(); }
  mm::HstateInfo Pool(int hstate) { return hugetlb().Info(hstate); }

  // A hugetlb memfd of |bytes| (whole huge pages of |hstate|) mapped
  // shared and writable; Stamp() / CheckStamps() write and verify it.
  int NewHugeMemfd(int hstate, uint64_t bytes) {
    const unsigned int size_bits = hstate == kPud ? MFD_HUGE_1GB : MFD_HUGE_2MB;
    const int fd = fs::MemfdCreate(p(), "guest-ram", MFD_HUGETLB | MFD_ALLOW_SEALING | size_bits);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(p().Ftruncate(fd, static_cast<off_t>(bytes)), 0);
    return fd;
  }

  std::unique_ptr<fs::ShmemMapping> Map(int fd, uint64_t bytes) {
    std::unique_ptr<fs::ShmemMapping> map;
    EXPECT_EQ(fs::ShmemMmap(p(), fd, bytes, /*writable=*/true, &map), 0);
    return map;
  }

  // Writes a 64-byte seeded record into every |stride|-th page of the
  // first |bytes|, and random bytes into the whole first and last page.
  void Stamp(int fd, uint64_t bytes, uint64_t stride, uint64_t seed) {
    std::unique_ptr<fs::ShmemMapping> map = Map(fd, bytes);
    const uint64_t pages = bytes / kPageSize;
    for (uint64_t page = 0; page < pages; page += stride) WritePage(*map, page, seed, 64);
    WritePage(*map, 0, seed, kPageSize);
    WritePage(*map, pages - 1, seed, kPageSize);
  }

  void CheckStamps(int fd, uint64_t bytes, uint64_t stride, uint64_t seed) {
    const uint64_t pages = bytes / kPageSize;
    for (uint64_t page = 0; page < pages; page += stride) {
      ASSERT_EQ(ReadPage(fd, page, 64), RandomBytes(64, seed ^ page)) << "page " << page;
    }
    EXPECT_EQ(ReadPage(fd, 0, kPageSize), RandomBytes(kPageSize, seed));
    EXPECT_EQ(ReadPage(fd, pages - 1, kPageSize), RandomBytes(kPageSize, seed ^ (pages - 1)));
  }

  static void WritePage(fs::ShmemMapping& map, uint64_t page, uint64_t seed, size_t n) {
    void* addr = nullptr;
    ASSERT_EQ(map.Fault(page, /*write=*/true, &addr), 0);
    const std::vector<uint8_t> bytes = RandomBytes(n, page == 0 ? seed : seed ^ page);
    std::memcpy(addr, bytes.data(), n);
  }

  std::vector<uint8_t> ReadPage(int fd, uint64_t page, size_t n) {
    std::vector<uint8_t> out(n);
    EXPECT_EQ(p().Pread(fd, out.data(), n, static_cast<off_t>(page * kPageSize)),
              static_cast<ssize_t>(n));
    return out;
  }

  static constexpr uint64_t kPageSize = 4096;
};

// The selftest's 1 GiB hugetlb memfd of 1 GiB pages, verified by content
// (a record in every 64th page, the first and last page in full), plus the
// record bytes and the block KHO hands over.
TEST_F(HugetlbLuoTest, OneGigabyteOfGigantic1GPagesIsExactAfterKexec) {
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPud, kGiB);
  Stamp(fd, kGiB, 64, 0x1234);
  ASSERT_EQ(p().Lseek(fd, 12345, SEEK_SET), 12345);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 9), 0);
  const struct folio* folio = Shmem(fd)->PeekFolio(0);
  const PhysAddr pa = m().kernel().mm().PageToPhys(&folio->page);
  EXPECT_EQ(Pool(kPud).free_huge_pages, 2u);

  Kexec();
  // KHO handed the page over as one order-18 block.
  unsigned order = 0;
  EXPECT_TRUE(kho().IsPreservedHead(pa, &order));
  EXPECT_EQ(order, 18u);
  const abi::LuoFileSer* file = IncomingFileSer(luo(), 0, 0);
  ASSERT_NE(file, nullptr);
  EXPECT_STREQ(file->compatible, "hugemfd-v1");
  const auto* ser = static_cast<const abi::HugemfdLuoSer*>(phys_to_virt(file->data));
  EXPECT_EQ(ser->size, kGiB);
  EXPECT_EQ(ser->pos, 12345u);
  EXPECT_EQ(ser->order, 18u);
  EXPECT_EQ(ser->nr_folios, 1u);

  const int r = Retrieve("vm0");
  const int got = luo::RetrieveFd(p(), r, 9);
  ASSERT_GE(got, 0);
  struct file* f = p().PeekFile(got);
  EXPECT_TRUE(is_file_hugepages(f));
  EXPECT_EQ(Shmem(got)->folio_order(), 18u);
  EXPECT_EQ(Shmem(got)->Size(), static_cast<loff_t>(kGiB));
  EXPECT_EQ(p().Lseek(got, 0, SEEK_CUR), 12345);
  EXPECT_EQ(m().kernel().mm().PageToPhys(&Shmem(got)->PeekFolio(0)->page), pa)
      << "the same physical page, not a copy";
  CheckStamps(got, kGiB, 64, 0x1234);
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_EQ(kho().UnrestoredBlocks(), 1u) << "only the previous root FDT is left";
  EXPECT_EQ(m().kernel().WarnCount(), 0u);
}

// Closing the outgoing session unpreserves through the same frame as
// memfd-v2 (the mapping thawed under the inode lock): size changes work
// again, no folio stays pinned, every preservation and the FLB's count go,
// and nothing WARNs.
TEST_F(HugetlbLuoTest, UnpreserveThawsTheMappingAndReleasesEverything) {
  const uint64_t preserved_before = OutgoingPreservedPages(kho());
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPmd, 8 * k2M);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 1), 0);
  EXPECT_TRUE(Shmem(fd)->Frozen());
  EXPECT_EQ(p().Ftruncate(fd, static_cast<off_t>(4 * k2M)), -EPERM);
  ASSERT_EQ(p().Close(s), 0);
  EXPECT_FALSE(Shmem(fd)->Frozen());
  EXPECT_EQ(OutgoingPreservedPages(kho()), preserved_before);
  for (pgoff_t index : Shmem(fd)->FolioIndices()) {
    EXPECT_FALSE(folio_maybe_dma_pinned(Shmem(fd)->PeekFolio(index))) << index;
  }
  EXPECT_EQ(p().Ftruncate(fd, static_cast<off_t>(4 * k2M)), 0);
  EXPECT_EQ(Shmem(fd)->CachedFolios(), 4u);
  EXPECT_EQ(m().kernel().WarnCount(), 0u);
}

// The hugetlb selftest's operations on a preserved 2 GiB file of 1 GiB
// pages: every size change is -EPERM, the size stays, and data written
// through the mapping after preserve is what the next kernel sees.
TEST_F(HugetlbLuoTest, PreservedFileRefusesTruncateFallocateAndPunch) {
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPud, 2 * kGiB);
  Stamp(fd, 2 * kGiB, 4096, 7);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 1), 0);
  EXPECT_EQ(p().Ftruncate(fd, static_cast<off_t>(kGiB)), -EPERM) << "shrink";
  EXPECT_EQ(p().Ftruncate(fd, static_cast<off_t>(3 * kGiB)), -EPERM) << "grow";
  EXPECT_EQ(p().Ftruncate(fd, 0), -EPERM);
  EXPECT_EQ(p().Fallocate(fd, 0, 0, static_cast<off_t>(3 * kGiB)), -EPERM);
  EXPECT_EQ(
      p().Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(kGiB)),
      -EPERM);
  EXPECT_EQ(Shmem(fd)->Size(), static_cast<loff_t>(2 * kGiB));
  EXPECT_EQ(Shmem(fd)->CachedFolios(), 2u);
  // A write through the mapping after preserve.
  std::unique_ptr<fs::ShmemMapping> map = Map(fd, 2 * kGiB);
  void* addr = nullptr;
  ASSERT_EQ(map->Fault(kGiB / kPageSize + 3, /*write=*/true, &addr), 0);
  std::memcpy(addr, "after-preserve", 14);
  map.reset();

  Kexec();
  const int got = luo::RetrieveFd(p(), Retrieve("vm0"), 1);
  ASSERT_GE(got, 0);
  char buf[14] = {};
  ASSERT_EQ(p().Pread(got, buf, 14, static_cast<off_t>(kGiB + 3 * kPageSize)), 14);
  EXPECT_EQ(std::string(buf, 14), "after-preserve");
  CheckStamps(got, 2 * kGiB, 4096, 7);
  // The retrieved file is an ordinary hugetlb memfd again.
  EXPECT_EQ(p().Ftruncate(got, static_cast<off_t>(kGiB)), 0);
}

// Kernel B reads the FLB before it fills its pools: with the same
// hugepages=3 it allocates only one 1 GiB page at boot, and the preserved
// ones complete the pool when retrieved. Nothing is allocated twice.
TEST_F(HugetlbLuoTest, NextKernelPoolIsNotOverAllocated) {
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPud, 2 * kGiB);
  Stamp(fd, 2 * kGiB, 1 << 14, 3);
  const int small = NewHugeMemfd(kPmd, 3 * k2M);
  Stamp(small, 3 * k2M, 64, 4);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 1), 0);
  ASSERT_EQ(luo::PreserveFd(p(), s, small, 2), 0);
  long outgoing = -1;
  for (const luo::Luo::FlbInfo& flb : luo().Flbs()) {
    if (flb.compatible == "hugetlb-v1") outgoing = flb.outgoing_count;
  }
  EXPECT_EQ(outgoing, 2) << "the FLB is registered and held once per preserved file";

  Kexec();
  EXPECT_EQ(Pool(kPud).preserved, 2u);
  EXPECT_EQ(Pool(kPud).nr_huge_pages, 1u) << "3 requested - 2 preserved";
  EXPECT_EQ(Pool(kPud).free_huge_pages, 1u);
  EXPECT_EQ(Pool(kPmd).preserved, 3u);
  EXPECT_EQ(Pool(kPmd).nr_huge_pages, 13u);
  const int r = Retrieve("vm0");
  const int got = luo::RetrieveFd(p(), r, 1);
  ASSERT_GE(got, 0);
  EXPECT_EQ(Pool(kPud).nr_huge_pages, 3u);
  EXPECT_EQ(Pool(kPud).free_huge_pages, 1u);
  CheckStamps(got, 2 * kGiB, 1 << 14, 3);
  // The 2 MiB file is never retrieved: finish returns its pages.
  EXPECT_EQ(Pool(kPmd).free_huge_pages, 13u);
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_EQ(Pool(kPmd).nr_huge_pages, 16u);
  EXPECT_EQ(Pool(kPmd).free_huge_pages, 16u);
  EXPECT_EQ(kho().UnrestoredBlocks(), 1u) << "only the previous root FDT is left";
  // Closing the retrieved file returns its pages to the pool, as any.
  ASSERT_EQ(p().Close(got), 0);
  EXPECT_EQ(Pool(kPud).free_huge_pages, 3u);
  EXPECT_EQ(m().kernel().WarnCount(), 0u);
}

// The counts follow preserve and unpreserve (closing a session unpreserves
// its files); the FLB goes with the last file and the next kernel then
// keeps its whole pool.
TEST_F(HugetlbLuoTest, FlbCountsFollowPreserveAndUnpreserve) {
  const int scratch = Create("scratch");
  ASSERT_EQ(luo::PreserveFd(p(), scratch, NewHugeMemfd(kPud, kGiB), 1), 0);
  ASSERT_EQ(luo::PreserveFd(p(), Create("vm0"), NewHugeMemfd(kPmd, 4 * k2M), 2), 0);
  ASSERT_EQ(p().Close(scratch), 0);
  Kexec();
  EXPECT_EQ(Pool(kPud).preserved, 0u) << "the 1 GiB file was unpreserved";
  EXPECT_EQ(Pool(kPud).nr_huge_pages, 3u);
  EXPECT_EQ(Pool(kPmd).preserved, 4u);
  EXPECT_EQ(Pool(kPmd).nr_huge_pages, 12u);
  EXPECT_EQ(luo::FinishSession(p(), Retrieve("vm0")), 0);
  EXPECT_EQ(Pool(kPmd).nr_huge_pages, 16u);
  EXPECT_EQ(Pool(kPmd).free_huge_pages, 16u);

  // Nothing preserved at all: no FLB record, full pools.
  Kexec();
  EXPECT_EQ(Pool(kPmd).preserved, 0u);
  EXPECT_EQ(Pool(kPmd).nr_huge_pages, 16u);
  bool found = false;
  for (const luo::Luo::FlbInfo& flb : luo().Flbs()) found |= flb.compatible == "hugetlb-v1";
  EXPECT_TRUE(found) << "registered, with nothing incoming";
}

// The pages are charged to whoever retrieves them.
TEST_F(HugetlbLuoTest, ChargeMovesToTheRetriever) {
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPud, kGiB);
  ASSERT_EQ(p().Fallocate(fd, 0, 0, static_cast<off_t>(kGiB)), 0);
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(p())), kGiB / kPageSize);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 1), 0);
  Kexec();
  fs::Process& other = m().kernel().vfs().CreateProcess("vmm-new");
  const int r = luo::RetrieveSession(other, luo::OpenLiveupdate(other), "vm0");
  ASSERT_GE(r, 0);
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(other)), 0u);
  ASSERT_GE(luo::RetrieveFd(other, r, 1), 0);
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(other)), kGiB / kPageSize);
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(p())), 0u);
  EXPECT_TRUE(fs::ShmemSb::Current()->Validate().ok());
}

// Holes are filled from the pool at preserve (the hugetlbfs behaviour of
// memfd_pin_folios) and read as zeros after the kexec; data at both ends
// survives.
TEST_F(HugetlbLuoTest, HolesAreFilledFromThePoolAndReadAsZeros) {
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPmd, 8 * k2M);
  {
    std::unique_ptr<fs::ShmemMapping> map = Map(fd, 8 * k2M);
    WritePage(*map, 0, 1, kPageSize);
    WritePage(*map, 8 * k2M / kPageSize - 1, 2, kPageSize);
  }
  EXPECT_EQ(Shmem(fd)->CachedFolios(), 2u);
  EXPECT_EQ(Pool(kPmd).free_huge_pages, 14u);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 1), 0);
  EXPECT_EQ(Shmem(fd)->CachedFolios(), 8u);
  EXPECT_EQ(Pool(kPmd).free_huge_pages, 8u);
  Kexec();
  const int got = luo::RetrieveFd(p(), Retrieve("vm0"), 1);
  ASSERT_GE(got, 0);
  EXPECT_EQ(ReadPage(got, 0, kPageSize), RandomBytes(kPageSize, 1));
  EXPECT_EQ(ReadPage(got, 8 * k2M / kPageSize - 1, kPageSize),
            RandomBytes(kPageSize, 2 ^ (8 * k2M / kPageSize - 1)));
  EXPECT_EQ(ReadPage(got, 4 * k2M / kPageSize, kPageSize), std::vector<uint8_t>(kPageSize, 0));
}

// A pool too small for the holes: -ENOSPC, and the file is exactly as it
// was (not frozen, nothing pinned or preserved, the pool refilled).
TEST_F(HugetlbLuoTest, PoolTooSmallForTheHolesIsEnospcAndUndone) {
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPud, 3 * kGiB);
  ASSERT_EQ(p().Fallocate(fd, 0, 0, static_cast<off_t>(kGiB)), 0);
  const int other = NewHugeMemfd(kPud, kGiB);
  ASSERT_EQ(p().Fallocate(other, 0, 0, static_cast<off_t>(kGiB)), 0);
  const uint64_t preserved = OutgoingPreservedPages(kho());
  EXPECT_EQ(luo::PreserveFd(p(), s, fd, 1), -ENOSPC);
  EXPECT_FALSE(Shmem(fd)->Frozen());
  EXPECT_EQ(OutgoingPreservedPages(kho()), preserved);
  // Like memfd_pin_folios upstream, the hole it did fill stays filled.
  EXPECT_EQ(Shmem(fd)->CachedFolios(), 2u);
  EXPECT_EQ(Pool(kPud).free_huge_pages, 0u);
  for (pgoff_t index : Shmem(fd)->FolioIndices()) {
    EXPECT_FALSE(folio_maybe_dma_pinned(Shmem(fd)->PeekFolio(index)));
  }
  EXPECT_EQ(p().Ftruncate(fd, static_cast<off_t>(kGiB)), 0) << "not frozen";
}

// A next kernel with no 1 GiB hstate registered cannot make the file:
// retrieve fails with -ENODEV and the pages still go back to a pool.
TEST_F(HugetlbLuoTest, NextKernelWithoutThePageSizeFailsRetrieveAndLeaksNothing) {
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPud, kGiB);
  ASSERT_EQ(p().Fallocate(fd, 0, 0, static_cast<off_t>(kGiB)), 0);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 1), 0);
  KexecOptions options;
  options.cmdline = "kho=on liveupdate=on hugepagesz=2M hugepages=16";
  ASSERT_TRUE(m().Kexec(options).ok());
  StartUserspace();
  EXPECT_EQ(Pool(kPud).preserved, 1u);
  const int r = Retrieve("vm0");
  EXPECT_EQ(luo::RetrieveFd(p(), r, 1), -ENODEV);
  EXPECT_EQ(Pool(kPud).nr_huge_pages, 1u) << "the page joined the pool anyway";
  EXPECT_EQ(Pool(kPud).free_huge_pages, 1u);
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_EQ(kho().UnrestoredBlocks(), 1u) << "only the previous root FDT is left";
}

// The state-session pattern with 1 GiB pages: retrieve, keep using,
// preserve again, read in boot 3.
TEST_F(HugetlbLuoTest, RetrievedFileCanBePreservedAgain) {
  ASSERT_EQ(luo::PreserveFd(p(), Create("vm0"), NewHugeMemfd(kPud, kGiB), 1), 0);
  Kexec();
  const int r = Retrieve("vm0");
  int got = luo::RetrieveFd(p(), r, 1);
  ASSERT_GE(got, 0);
  Stamp(got, kGiB, 1024, 99);
  const int again = Create("vm0-again");
  EXPECT_EQ(luo::PreserveFd(p(), again, got, 2), -EBUSY)
      << "still the incoming session's until it finishes";
  ASSERT_EQ(luo::FinishSession(p(), r), 0);
  ASSERT_EQ(luo::PreserveFd(p(), again, got, 2), 0);
  Kexec();
  EXPECT_EQ(Pool(kPud).nr_huge_pages, 2u);
  got = luo::RetrieveFd(p(), Retrieve("vm0-again"), 2);
  ASSERT_GE(got, 0);
  CheckStamps(got, kGiB, 1024, 99);
  EXPECT_EQ(Pool(kPud).nr_huge_pages, 3u);
}

// Preserve under every possible single allocation failure, in order: each
// failure returns an error and leaves the file exactly as it was.
TEST_F(HugetlbLuoTest, PreserveUnderEveryAllocationFailureUndoesExactly) {
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, NewHugeMemfd(kPmd, k2M), 100), 0)
      << "the session's file block and the FLB exist before the countdown";
  const int fd = NewHugeMemfd(kPmd, 4 * k2M);
  Stamp(fd, 4 * k2M, 16, 5);
  const uint64_t preserved = OutgoingPreservedPages(kho());
  const uint64_t free_pages = Pool(kPmd).free_huge_pages;
  int failures = 0;
  for (uint64_t n = 1;; ++n) {
    ASSERT_LT(n, 1000u) << "preserve never succeeded";
    m().faults().Clear();
    m().faults().ResetCounts();
    m().faults().FailNthAny(n);
    const int err = luo::PreserveFd(p(), s, fd, 1);
    const std::vector<std::string> points = m().faults().InjectedPoints();
    m().faults().Clear();
    if (points == std::vector<std::string>{"copy_to_user"}) break;
    if (err == 0) break;
    ++failures;
    EXPECT_TRUE(err == -ENOMEM || err == -ENOSPC || err == -EFAULT) << n << " " << err;
    EXPECT_FALSE(Shmem(fd)->Frozen()) << n;
    EXPECT_EQ(OutgoingPreservedPages(kho()), preserved) << n;
    EXPECT_EQ(Pool(kPmd).free_huge_pages, free_pages) << n;
    for (pgoff_t index : Shmem(fd)->FolioIndices()) {
      EXPECT_FALSE(folio_maybe_dma_pinned(Shmem(fd)->PeekFolio(index))) << n;
    }
  }
  EXPECT_GE(failures, 3);
  Kexec();
  const int got = luo::RetrieveFd(p(), Retrieve("vm0"), 1);
  ASSERT_GE(got, 0);
  CheckStamps(got, 4 * k2M, 16, 5);
}

TEST_F(HugetlbLuoTest, EligibilityAndIdentity) {
  const int s = Create("vm0");
  const int fd = NewHugeMemfd(kPmd, k2M);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 1), 0);
  EXPECT_EQ(luo::PreserveFd(p(), s, p().Dup(fd), 2), -EBUSY);
  // An ordinary memfd still goes to the memfd handler.
  ASSERT_EQ(luo::PreserveFd(p(), s, NewMemfd(4096, 1), 3), 0);
  const std::vector<luo::Luo::SessionInfo> sessions = luo().OutgoingSessions();
  ASSERT_EQ(sessions.size(), 1u);
  ASSERT_EQ(sessions[0].files.size(), 2u);
  EXPECT_EQ(sessions[0].files[0].compatible, "hugemfd-v1");
  EXPECT_EQ(sessions[0].files[1].compatible, "memfd-v2");
}

// A folio count past the array: the oops upstream would have, as a panic.
TEST_F(HugetlbLuoTest, AFolioCountPastTheArrayIsTheOops) {
  const int s = Create("vm0");
  ASSERT_EQ(luo::PreserveFd(p(), s, NewHugeMemfd(kPmd, 2 * k2M), 1), 0);
  Kexec();
  const abi::LuoFileSer* file = IncomingFileSer(luo(), 0, 0);
  ASSERT_NE(file, nullptr);
  static_cast<abi::HugemfdLuoSer*>(phys_to_virt(file->data))->nr_folios = uint64_t{1} << 50;
  const int r = Retrieve("vm0");
  ASSERT_GE(r, 0);
  try {
    luo::RetrieveFd(p(), r, 1);
    ADD_FAILURE() << "no panic";
  } catch (const KernelPanic& panic) {
    EXPECT_THAT(panic.what(), ::testing::HasSubstr("hugemfd_luo: BUG: unable to handle page "
                                                   "fault: folio record 256 past the 256-record"));
  }
}

}  // namespace
}  // namespace khosim::testing

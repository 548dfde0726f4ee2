// MFD_HUGETLB memfds: hugetlbfs files on the page-cache model, with folios
// from the hugetlb pools.
#include <fcntl.h>
#include <linux/falloc.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/linux/hugetlb.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/luo/client.h"
#include "khosim/machine/machine.h"
#include "khosim/mm/hugetlb.h"

namespace khosim {
namespace {

constexpr uint64_t k2M = 2 * kMiB;

class HugetlbfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MachineConfig config{.ram = 6 * kGiB, .seed = 2};
    config.cmdline = "kho=on liveupdate=on hugepagesz=2M hugepages=8 hugepagesz=1G hugepages=2";
    m_ = std::make_unique<Machine>(config);
    m_->Boot();
    m_->Activate();
    p_ = &m_->kernel().vfs().CreateProcess("vmm");
  }
  void TearDown() override {
    if (std::shared_ptr<fs::ShmemSb> sb = fs::ShmemSb::CurrentIfExists(); sb != nullptr) {
      EXPECT_TRUE(sb->Validate().ok()) << sb->Validate();
    }
  }
  mm::Hugetlb& hugetlb() { return m_->kernel().mm().hugetlb(); }
  uint64_t Free(int hstate) { return hugetlb().Info(hstate).free_huge_pages; }

  std::unique_ptr<Machine> m_;
  fs::Process* p_ = nullptr;
};

TEST_F(HugetlbfsTest, TwoMegabyteMemfdTakesPoolPagesAndGivesThemBack) {
  const int fd = fs::MemfdCreate(*p_, "guest", MFD_HUGETLB | MFD_HUGE_2MB);
  ASSERT_GE(fd, 0);
  struct file* file = p_->PeekFile(fd);
  EXPECT_TRUE(is_file_hugepages(file));
  EXPECT_FALSE(shmem_file(file)) << "hugetlbfs is not shmem";
  EXPECT_EQ(p_->Ftruncate(fd, 3 * kMiB), -EINVAL) << "whole huge pages only";
  ASSERT_EQ(p_->Ftruncate(fd, 4 * kMiB), 0);
  const char byte = 'x';
  EXPECT_EQ(p_->Write(fd, &byte, 1), -EINVAL) << "hugetlbfs has no write(2)";
  ASSERT_EQ(p_->Fallocate(fd, 0, 0, 4 * kMiB), 0);
  EXPECT_EQ(Free(0), 6u);
  EXPECT_EQ(fs::ShmemInode::FromFile(file)->CachedFolios(), 2u);
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(*p_)), 1024u) << "two 2 MiB folios";

  // Data goes in through a shared mapping; read(2) sees it.
  std::unique_ptr<fs::ShmemMapping> map;
  ASSERT_EQ(fs::ShmemMmap(*p_, fd, 4 * kMiB, /*writable=*/true, &map), 0);
  void* page = nullptr;
  ASSERT_EQ(map->Fault(600, /*write=*/true, &page), 0);
  std::memcpy(page, "hello", 5);
  char got[5] = {};
  ASSERT_EQ(p_->Pread(fd, got, 5, 600 * 4096), 5);
  EXPECT_EQ(std::memcmp(got, "hello", 5), 0);

  // Punching the first huge page gives it back; a partial punch zeroes.
  ASSERT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, k2M), 0);
  EXPECT_EQ(Free(0), 7u);
  ASSERT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 600 * 4096, 4096), 0);
  EXPECT_EQ(Free(0), 7u) << "a partial punch keeps the folio";
  ASSERT_EQ(p_->Pread(fd, got, 5, 600 * 4096), 5);
  EXPECT_EQ(got[0], 0);
  map.reset();
  ASSERT_EQ(p_->Close(fd), 0);
  EXPECT_EQ(Free(0), 8u) << "the last close frees everything into the pool";
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(*p_)), 0u);
}

TEST_F(HugetlbfsTest, GigabyteMemfdExhaustsThePoolWithEnospc) {
  const int fd = fs::MemfdCreate(*p_, "guest", MFD_HUGETLB | MFD_HUGE_1GB);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(3 * kGiB)), 0);
  EXPECT_EQ(p_->Fallocate(fd, 0, 0, static_cast<loff_t>(3 * kGiB)), -ENOSPC);
  EXPECT_EQ(Free(1), 2u) << "a failed fallocate gives back what it took";
  ASSERT_EQ(p_->Fallocate(fd, 0, 0, static_cast<loff_t>(2 * kGiB)), 0);
  EXPECT_EQ(Free(1), 0u);
  struct folio* folio = fs::ShmemInode::FromFile(p_->PeekFile(fd))->PeekFolio(262144 + 5);
  ASSERT_NE(folio, nullptr);
  EXPECT_EQ(folio_order(folio), 18u);
  EXPECT_EQ(folio_index(folio), 262144u);
  ASSERT_EQ(p_->Close(fd), 0);
  EXPECT_EQ(Free(1), 2u);
}

TEST_F(HugetlbfsTest, DefaultSizeAndSealing) {
  const int fd = fs::MemfdCreate(*p_, "guest", MFD_HUGETLB | MFD_ALLOW_SEALING);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(p_->Ftruncate(fd, k2M), 0);
  ASSERT_EQ(p_->Fcntl(fd, F_ADD_SEALS, F_SEAL_GROW), 0);
  EXPECT_EQ(p_->Ftruncate(fd, 2 * k2M), -EPERM);
  EXPECT_EQ(fs::ShmemInode::FromFile(p_->PeekFile(fd))->folio_order(), 9u) << "2 MiB default";
}

// No hugetlb handler is registered: LUO has nothing that accepts a
// hugetlbfs file (the memfd handler wants shmem).
TEST_F(HugetlbfsTest, PreserveWithoutTheHugetlbHandlerIsEnoent) {
  const int fd = fs::MemfdCreate(*p_, "guest", MFD_HUGETLB | MFD_HUGE_2MB);
  ASSERT_EQ(p_->Ftruncate(fd, k2M), 0);
  const int dev = luo::OpenLiveupdate(*p_);
  const int s = luo::CreateSession(*p_, dev, "vm0");
  ASSERT_GE(s, 0);
  EXPECT_EQ(luo::PreserveFd(*p_, s, fd, 1), -ENOENT);
}

}  // namespace
}  // namespace khosim

// shmem / memfd: the page cache (holes, sparse files, truncate, punch,
// fallocate), seals and their errnos, the frozen-mapping flag, mappings,
// memcg accounting, the kernel face a memfd LUO handler uses (lookup,
// insert, iteration, pins), page sizes, and kexec with memfds still open.
#include "khosim/fs/shmem.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/fs/vfs.h"
#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/machine/machine.h"
#include "khosim/mm/mm.h"

namespace khosim {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;

constexpr unsigned int kKernelOLargefile = 0100000;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 8));
  return v;
}

class ShmemTest : public ::testing::Test {
 protected:
  explicit ShmemTest(uint64_t page_size = 4096)
      : m_(MachineConfig{.ram = 256 * kMiB, .page_size = page_size, .seed = 5}) {}

  void SetUp() override {
    m_.Boot();
    m_.Activate();
    p_ = &vfs().CreateProcess("vmm");
    ps_ = PAGE_SIZE;
  }
  void TearDown() override {
    if (m_.has_kernel()) {
      m_.Activate();
      std::shared_ptr<fs::ShmemSb> sb = fs::ShmemSb::CurrentIfExists();
      if (sb != nullptr) {
        const absl::Status s = sb->Validate();
        EXPECT_TRUE(s.ok()) << s;
      }
      // Only the WARNs a test asked for.
      EXPECT_EQ(m_.kernel().WarnCount(), expected_warns_);
    }
  }

  fs::Vfs& vfs() { return m_.kernel().vfs(); }
  uint64_t FreePages() { return m_.kernel().mm().pages().FreePages(); }
  fs::ShmemInode* Shmem(int fd, fs::Process* p = nullptr) {
    return fs::ShmemInode::FromFile((p == nullptr ? p_ : p)->PeekFile(fd));
  }
  struct file* File(int fd) {
    return p_->PeekFile(fd);
  }
  uint64_t Charged(const fs::Process& p) { return fs::MemcgChargedPages(fs::ProcessMemcg(p)); }

  int Memfd(unsigned int flags = MFD_ALLOW_SEALING, absl::string_view name = "vm0") {
    const int fd = fs::MemfdCreate(*p_, name, flags);
    EXPECT_GE(fd, 0);
    return fd;
  }
  std::vector<uint8_t> Pread(int fd, size_t n, loff_t off) {
    std::vector<uint8_t> out(n, 0xEE);
    const ssize_t got = p_->Pread(fd, out.data(), n, off);
    EXPECT_GE(got, 0);
    out.resize(got < 0 ? 0 : static_cast<size_t>(got));
    return out;
  }
  ssize_t Pwrite(int fd, const std::vector<uint8_t>& data, loff_t off) {
    return p_->Pwrite(fd, data.data(), data.size(), off);
  }
  long AddSeals(int fd, unsigned int seals) { return p_->Fcntl(fd, F_ADD_SEALS, seals); }
  long GetSeals(int fd) { return p_->Fcntl(fd, F_GET_SEALS, 0); }
  void Freeze(int fd, bool freeze) {
    struct inode* inode = file_inode(File(fd));
    inode_lock(inode);
    shmem_freeze(inode, freeze);
    inode_unlock(inode);
  }

  Machine m_;
  uint64_t expected_warns_ = 0;
  fs::Process* p_ = nullptr;
  size_t ps_ = 0;
};

// ---------------------------------------------------------------------------
// memfd_create

TEST_F(ShmemTest, MemfdCreateGivesAnUnlinkedReadWriteShmemFile) {
  const int fd = fs::MemfdCreate(*p_, "vm0", MFD_CLOEXEC);
  ASSERT_EQ(fd, 0);
  struct file* f = File(fd);
  EXPECT_TRUE(shmem_file(f));
  EXPECT_EQ(file_inode(f)->i_nlink, 0u);
  EXPECT_EQ(file_inode(f)->i_mode, S_IFREG | 0777);
  EXPECT_STREQ(f->f_name, "/memfd:vm0 (deleted)");
  EXPECT_EQ(f->f_mode, FMODE_READ | FMODE_WRITE);
  EXPECT_EQ(p_->Fcntl(fd, F_GETFL, 0), O_RDWR | kKernelOLargefile);
  EXPECT_TRUE(p_->IsCloexec(fd));
  EXPECT_EQ(i_size_read(file_inode(f)), 0);
  // Without MFD_ALLOW_SEALING the file is sealed against sealing.
  EXPECT_EQ(GetSeals(fd), F_SEAL_SEAL);
  EXPECT_EQ(AddSeals(fd, F_SEAL_GROW), -EPERM);
  const int sealable = fs::MemfdCreate(*p_, "b", MFD_ALLOW_SEALING);
  EXPECT_EQ(sealable, 1);
  EXPECT_FALSE(p_->IsCloexec(sealable));
  EXPECT_EQ(GetSeals(sealable), 0);
  // A name is read up to its NUL.
  const int nul = fs::MemfdCreate(*p_, absl::string_view("ab\0cd", 5), 0);
  EXPECT_STREQ(File(nul)->f_name, "/memfd:ab (deleted)");
}

TEST_F(ShmemTest, MemfdCreateErrors) {
  EXPECT_EQ(fs::MemfdCreate(*p_, "x", 0x100), -EINVAL);
  EXPECT_EQ(fs::MemfdCreate(*p_, "x", MFD_EXEC | MFD_NOEXEC_SEAL), -EINVAL);
  // Huge-page size bits are only accepted with MFD_HUGETLB.
  EXPECT_EQ(fs::MemfdCreate(*p_, "x", MFD_HUGE_2MB), -EINVAL);
  EXPECT_EQ(fs::MemfdCreate(*p_, std::string(250, 'n'), 0), -EINVAL);
  const int longest = fs::MemfdCreate(*p_, std::string(249, 'n'), 0);
  EXPECT_EQ(longest, 0);
  // No hugetlbfs for 1 GiB pages without hugepagesz=1G: -ENODEV, and the
  // reserved fd is given back. An unsupported size is the same.
  EXPECT_EQ(fs::MemfdCreate(*p_, "x", MFD_HUGETLB | MFD_HUGE_1GB), -ENODEV);
  EXPECT_EQ(fs::MemfdCreate(*p_, "x", MFD_HUGETLB | (22U << MFD_HUGE_SHIFT)), -ENODEV);
  EXPECT_THAT(p_->OpenFds(), ElementsAre(0));
  p_->SetRlimitNofile(1);
  EXPECT_EQ(fs::MemfdCreate(*p_, "x", 0), -EMFILE);
  p_->SetRlimitNofile(1024);
  const int64_t files = vfs().live_files();
  const int64_t inodes = vfs().live_inodes();
  m_.faults().FailOnce("alloc_file");
  EXPECT_EQ(fs::MemfdCreate(*p_, "x", 0), -ENOMEM);
  EXPECT_EQ(vfs().live_files(), files);
  EXPECT_EQ(vfs().live_inodes(), inodes);
  EXPECT_THAT(p_->OpenFds(), ElementsAre(0));
  p_->Exit();
  EXPECT_EQ(fs::MemfdCreate(*p_, "x", 0), -ESRCH);
}

TEST_F(ShmemTest, LinkedTmpfsFileIsShmemWithALinkAndNoSealing) {
  const int fd = fs::TmpfsCreate(*p_, "guest.img", O_RDWR);
  ASSERT_EQ(fd, 0);
  struct file* f = File(fd);
  EXPECT_TRUE(shmem_file(f));
  EXPECT_EQ(file_inode(f)->i_nlink, 1u);
  EXPECT_STREQ(f->f_name, "/dev/shm/guest.img");
  EXPECT_EQ(GetSeals(fd), F_SEAL_SEAL);
  EXPECT_EQ(AddSeals(fd, F_SEAL_WRITE), -EPERM);
  const auto data = Pattern(100, 1);
  EXPECT_EQ(Pwrite(fd, data, 10), 100);
  EXPECT_EQ(Pread(fd, 100, 10), data);
  const uint64_t free_before_close = FreePages();
  EXPECT_EQ(p_->Close(fd), 0);
  EXPECT_EQ(FreePages(), free_before_close + 1);
  // A read-only file refuses seals before anything else.
  const int ro = fs::TmpfsCreate(*p_, "ro", O_RDONLY);
  EXPECT_EQ(AddSeals(ro, F_SEAL_WRITE), -EPERM);
  EXPECT_EQ(p_->Write(ro, data.data(), 1), -EBADF);
}

// ---------------------------------------------------------------------------
// Data: read, write, holes

TEST_F(ShmemTest, WriteReadRoundTripAcrossPageBoundaries) {
  const int fd = Memfd();
  const auto data = Pattern(3 * ps_ + 100, 9);
  const loff_t off = static_cast<loff_t>(ps_) - 10;
  EXPECT_EQ(Pwrite(fd, data, off), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(i_size_read(file_inode(File(fd))), off + static_cast<loff_t>(data.size()));
  EXPECT_EQ(Pread(fd, data.size(), off), data);
  // Pages 0..4 are touched: [ps-10, 4ps+90).
  EXPECT_EQ(Shmem(fd)->CachedPages(), 5u);
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(0, 1, 2, 3, 4));
  // Page 0's head, never written, reads as zeros.
  EXPECT_THAT(Pread(fd, ps_ - 10, 0), Each(0));
  // read(2) moves the file position; EOF gives 0; a read past EOF is short.
  std::vector<uint8_t> buf(ps_);
  EXPECT_EQ(p_->Lseek(fd, off, SEEK_SET), off);
  EXPECT_EQ(p_->Read(fd, buf.data(), 20), 20);
  EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + 20),
            std::vector<uint8_t>(data.begin(), data.begin() + 20));
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_CUR), off + 20);
  EXPECT_EQ(p_->Pread(fd, buf.data(), buf.size(), off + static_cast<loff_t>(data.size()) - 5), 5);
  EXPECT_EQ(p_->Pread(fd, buf.data(), buf.size(), off + static_cast<loff_t>(data.size())), 0);
  // write(2) at the file position, then an overwrite in the middle.
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_SET), 0);
  EXPECT_EQ(p_->Write(fd, "hello", 5), 5);
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_CUR), 5);
  EXPECT_EQ(Pread(fd, 6, 0), (std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o', 0}));
  EXPECT_EQ(Shmem(fd)->CachedPages(), 5u);
  // Written folios are dirty and uptodate.
  struct folio* folio = Shmem(fd)->PeekFolio(2);
  ASSERT_NE(folio, nullptr);
  EXPECT_TRUE(folio_test_dirty(folio));
  EXPECT_TRUE(folio_test_uptodate(folio));
  EXPECT_EQ(folio_mapping(folio), file_inode(File(fd))->i_mapping);
  EXPECT_EQ(folio_index(folio), 2u);
  EXPECT_TRUE(Shmem(fd)->Validate().ok());
}

TEST_F(ShmemTest, UserMemoryFaultsGiveEfaultOrAShortCount) {
  const int fd = Memfd();
  EXPECT_EQ(p_->Pwrite(fd, reinterpret_cast<const void*>(8), 10, 0), -EFAULT);
  const auto data = Pattern(2 * ps_, 3);
  EXPECT_EQ(Pwrite(fd, data, 0), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(p_->Pread(fd, reinterpret_cast<void*>(8), 10, 0), -EFAULT);
  // The second page's copy faults: the first page counts.
  m_.faults().FailNth("copy_to_user", 2);
  std::vector<uint8_t> buf(2 * ps_);
  EXPECT_EQ(p_->Pread(fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(ps_));
}

TEST_F(ShmemTest, HolesReadAsZerosAndAllocateNothing) {
  const int fd = Memfd();
  const uint64_t free_before = FreePages();
  ASSERT_EQ(p_->Ftruncate(fd, 1 * kMiB), 0);
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_END), static_cast<loff_t>(1 * kMiB));
  std::vector<uint8_t> buf(1 * kMiB, 0xEE);
  EXPECT_EQ(p_->Pread(fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(1 * kMiB));
  EXPECT_THAT(buf, Each(0));
  EXPECT_EQ(Shmem(fd)->CachedPages(), 0u);
  EXPECT_EQ(FreePages(), free_before);
  EXPECT_EQ(Charged(*p_), 0u);
}

TEST_F(ShmemTest, SparseFileWithDataAtBothEnds) {
  const int fd = Memfd();
  const loff_t size = 64 * kMiB;
  ASSERT_EQ(p_->Ftruncate(fd, size), 0);
  const auto head = Pattern(10, 1);
  const auto tail = Pattern(5, 2);
  EXPECT_EQ(Pwrite(fd, head, 0), 10);
  EXPECT_EQ(Pwrite(fd, tail, size - 5), 5);
  EXPECT_EQ(i_size_read(file_inode(File(fd))), size);
  EXPECT_EQ(Pread(fd, 10, 0), head);
  EXPECT_EQ(Pread(fd, 5, size - 5), tail);
  EXPECT_THAT(Pread(fd, 4096, size / 2), Each(0));
  EXPECT_EQ(Shmem(fd)->CachedPages(), 2u);
  const pgoff_t last = static_cast<pgoff_t>((size - 1) / static_cast<loff_t>(ps_));
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(0, last));
  EXPECT_EQ(Charged(*p_), 2u);
  // SEEK_DATA / SEEK_HOLE see the two pages.
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_DATA), 0);
  EXPECT_EQ(p_->Lseek(fd, 3, SEEK_HOLE), static_cast<loff_t>(ps_));
  EXPECT_EQ(p_->Lseek(fd, static_cast<loff_t>(ps_), SEEK_DATA), static_cast<loff_t>(last * ps_));
  EXPECT_EQ(p_->Lseek(fd, size - 1, SEEK_HOLE), size);
  EXPECT_EQ(p_->Lseek(fd, size, SEEK_DATA), -ENXIO);
  EXPECT_EQ(p_->Lseek(fd, -1, SEEK_HOLE), -ENXIO);
  EXPECT_EQ(p_->Lseek(fd, -1, SEEK_SET), -EINVAL);
  EXPECT_EQ(p_->Lseek(fd, 0, 99), -EINVAL);
}

TEST_F(ShmemTest, FtruncateShrinkFreesPagesAndZeroesTheTail) {
  const int fd = Memfd();
  const uint64_t free_before = FreePages();
  const auto data = Pattern(10 * ps_, 4);
  ASSERT_EQ(Pwrite(fd, data, 0), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(FreePages(), free_before - 10);
  EXPECT_EQ(Charged(*p_), 10u);
  const loff_t cut = static_cast<loff_t>(2 * ps_ + ps_ / 2);
  ASSERT_EQ(p_->Ftruncate(fd, cut), 0);
  EXPECT_EQ(Shmem(fd)->CachedPages(), 3u);
  EXPECT_EQ(FreePages(), free_before - 3);
  EXPECT_EQ(Charged(*p_), 3u);
  // Growing again shows zeros past the old cut, in the kept page too.
  ASSERT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(4 * ps_)), 0);
  EXPECT_EQ(Pread(fd, cut, 0), std::vector<uint8_t>(data.begin(), data.begin() + cut));
  EXPECT_THAT(Pread(fd, 4 * ps_ - cut, cut), Each(0));
  EXPECT_EQ(Shmem(fd)->CachedPages(), 3u);
  ASSERT_EQ(p_->Ftruncate(fd, 0), 0);
  EXPECT_EQ(FreePages(), free_before);
  EXPECT_EQ(Charged(*p_), 0u);
  EXPECT_EQ(p_->Ftruncate(fd, -1), -EINVAL);
}

TEST_F(ShmemTest, PunchHoleFreesWholePagesAndZeroesPartialOnes) {
  const int fd = Memfd();
  const std::vector<uint8_t> data(4 * ps_, 0xAB);
  ASSERT_EQ(Pwrite(fd, data, 0), static_cast<ssize_t>(data.size()));
  const uint64_t free_before = FreePages();
  const loff_t off = static_cast<loff_t>(ps_ / 2);
  const loff_t len = static_cast<loff_t>(2 * ps_);  // [ps/2, 2ps + ps/2)
  ASSERT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len), 0);
  EXPECT_EQ(i_size_read(file_inode(File(fd))), static_cast<loff_t>(4 * ps_));
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(0, 2, 3));
  EXPECT_EQ(FreePages(), free_before + 1);
  std::vector<uint8_t> expect = data;
  std::fill(expect.begin() + off, expect.begin() + off + len, 0);
  EXPECT_EQ(Pread(fd, data.size(), 0), expect);
  // Punching a hole that is already one changes nothing.
  ASSERT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<loff_t>(ps_),
                          static_cast<loff_t>(ps_)),
            0);
  EXPECT_EQ(Pread(fd, data.size(), 0), expect);
  // Mode rules.
  EXPECT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 1), -EOPNOTSUPP);
  EXPECT_EQ(p_->Fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 1), -EOPNOTSUPP);
  EXPECT_EQ(p_->Fallocate(fd, 0, 0, 0), -EINVAL);
  EXPECT_EQ(p_->Fallocate(fd, 0, MAX_LFS_FILESIZE, 2), -EFBIG);
}

TEST_F(ShmemTest, FallocateAllocatesPagesThatReadAsHoles) {
  const int fd = Memfd();
  const uint64_t free_before = FreePages();
  ASSERT_EQ(p_->Fallocate(fd, 0, 0, static_cast<loff_t>(3 * ps_)), 0);
  EXPECT_EQ(i_size_read(file_inode(File(fd))), static_cast<loff_t>(3 * ps_));
  EXPECT_EQ(Shmem(fd)->CachedPages(), 3u);
  EXPECT_EQ(FreePages(), free_before - 3);
  EXPECT_FALSE(folio_test_uptodate(Shmem(fd)->PeekFolio(1)));
  EXPECT_THAT(Pread(fd, 3 * ps_, 0), Each(0));
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_DATA), -ENXIO);
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_HOLE), 0);
  // A write makes its folio data.
  EXPECT_EQ(Pwrite(fd, {1, 2, 3}, static_cast<loff_t>(ps_) + 1), 3);
  EXPECT_TRUE(folio_test_uptodate(Shmem(fd)->PeekFolio(1)));
  EXPECT_EQ(Pread(fd, 5, static_cast<loff_t>(ps_)), (std::vector<uint8_t>{0, 1, 2, 3, 0}));
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_DATA), static_cast<loff_t>(ps_));
  // KEEP_SIZE past EOF: pages beyond i_size, size unchanged.
  ASSERT_EQ(p_->Fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<loff_t>(5 * ps_),
                          static_cast<loff_t>(ps_)),
            0);
  EXPECT_EQ(i_size_read(file_inode(File(fd))), static_cast<loff_t>(3 * ps_));
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(0, 1, 2, 5));
  EXPECT_EQ(Charged(*p_), 4u);
  // ftruncate to the same size drops what lies beyond EOF.
  ASSERT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(3 * ps_)), 0);
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(0, 1, 2));
  // An allocation failure undoes only this call's pages.
  m_.faults().FailNth("alloc_pages", 2);
  EXPECT_EQ(p_->Fallocate(fd, 0, static_cast<loff_t>(2 * ps_), static_cast<loff_t>(3 * ps_)),
            -ENOMEM);
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(0, 1, 2));
  EXPECT_EQ(i_size_read(file_inode(File(fd))), static_cast<loff_t>(3 * ps_));
  m_.faults().FailOnce("mem_cgroup_charge");
  EXPECT_EQ(Pwrite(fd, {1}, static_cast<loff_t>(7 * ps_)), -ENOMEM);
  EXPECT_EQ(i_size_read(file_inode(File(fd))), static_cast<loff_t>(3 * ps_));
}

// ---------------------------------------------------------------------------
// Seals

TEST_F(ShmemTest, AddSealsErrorRules) {
  const int fd = Memfd();
  EXPECT_EQ(GetSeals(fd), 0);
  EXPECT_EQ(AddSeals(fd, 0x40), -EINVAL);
  EXPECT_EQ(AddSeals(fd, F_SEAL_SHRINK), 0);
  EXPECT_EQ(AddSeals(fd, F_SEAL_GROW), 0);
  EXPECT_EQ(GetSeals(fd), F_SEAL_SHRINK | F_SEAL_GROW);
  EXPECT_EQ(AddSeals(fd, F_SEAL_SEAL), 0);
  EXPECT_EQ(AddSeals(fd, F_SEAL_WRITE), -EPERM);
  EXPECT_EQ(AddSeals(fd, 0), -EPERM);
  // Unknown bits are checked before F_SEAL_SEAL.
  EXPECT_EQ(AddSeals(fd, 0x40), -EINVAL);
  EXPECT_EQ(GetSeals(fd), F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW);
  // Other fcntl commands on a memfd, and seal commands on non-shmem files.
  EXPECT_EQ(p_->Fcntl(fd, F_SETLEASE, 0), -EINVAL);
  struct file* anon = anon_inode_getfile("[x]", nullptr, nullptr, O_RDWR);
  EXPECT_EQ(memfd_get_seals(anon), -EINVAL);
  EXPECT_EQ(memfd_add_seals(anon, F_SEAL_SEAL), -EINVAL);
  EXPECT_EQ(memfd_file_seals_ptr(anon), nullptr);
  fput(anon);
}

TEST_F(ShmemTest, SealShrinkAndGrow) {
  const int fd = Memfd();
  ASSERT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(2 * ps_)), 0);
  ASSERT_EQ(AddSeals(fd, F_SEAL_SHRINK), 0);
  EXPECT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(ps_)), -EPERM);
  EXPECT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(3 * ps_)), 0);
  EXPECT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(3 * ps_)), 0);
  ASSERT_EQ(AddSeals(fd, F_SEAL_GROW), 0);
  const loff_t size = static_cast<loff_t>(3 * ps_);
  EXPECT_EQ(p_->Ftruncate(fd, size + 1), -EPERM);
  EXPECT_EQ(Pwrite(fd, {1}, size), -EPERM);
  // The check is per page-sized chunk: the byte in the last page goes in.
  EXPECT_EQ(Pwrite(fd, {1, 2}, size - 1), 1);
  EXPECT_EQ(Pwrite(fd, {7, 8}, size - 2), 2);
  // A write crossing into a page past EOF is cut at the page boundary.
  const auto data = Pattern(ps_ + 10, 5);
  EXPECT_EQ(Pwrite(fd, data, size - static_cast<loff_t>(ps_) - 5), static_cast<ssize_t>(ps_) + 5);
  EXPECT_EQ(i_size_read(file_inode(File(fd))), size);
  EXPECT_EQ(p_->Fallocate(fd, 0, size - 1, 2), -EPERM);
  EXPECT_EQ(p_->Fallocate(fd, FALLOC_FL_KEEP_SIZE, size, 1), -EPERM);
  EXPECT_EQ(p_->Fallocate(fd, 0, 0, size), 0);
  EXPECT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size), 0);
  // Inside one page, crossing EOF fails as a whole.
  const int g = Memfd();
  ASSERT_EQ(p_->Ftruncate(g, 100), 0);
  ASSERT_EQ(AddSeals(g, F_SEAL_GROW), 0);
  EXPECT_EQ(Pwrite(g, {1, 2}, 99), -EPERM);
  EXPECT_EQ(Pwrite(g, {1}, 99), 1);
  EXPECT_EQ(i_size_read(file_inode(File(g))), 100);
}

TEST_F(ShmemTest, SealWriteAndFutureWrite) {
  const int fd = Memfd();
  ASSERT_EQ(Pwrite(fd, Pattern(2 * ps_, 1), 0), static_cast<ssize_t>(2 * ps_));
  {
    // F_SEAL_WRITE needs no shared writable mapping.
    std::unique_ptr<fs::ShmemMapping> rw;
    ASSERT_EQ(fs::ShmemMmap(*p_, fd, 2 * ps_, true, &rw), 0);
    EXPECT_EQ(Shmem(fd)->MmapWritable(), 1);
    EXPECT_EQ(AddSeals(fd, F_SEAL_WRITE), -EBUSY);
    // Nor may F_SEAL_EXEC imply it (the file is executable).
    EXPECT_EQ(AddSeals(fd, F_SEAL_EXEC), -EBUSY);
    EXPECT_EQ(GetSeals(fd), 0);
  }
  EXPECT_EQ(Shmem(fd)->MmapWritable(), 0);
  std::unique_ptr<fs::ShmemMapping> ro;
  ASSERT_EQ(fs::ShmemMmap(*p_, fd, ps_, false, &ro), 0);
  ASSERT_EQ(AddSeals(fd, F_SEAL_WRITE), 0);
  EXPECT_EQ(Shmem(fd)->MmapWritable(), -1);
  EXPECT_EQ(Pwrite(fd, {1}, 0), -EPERM);
  EXPECT_EQ(p_->Write(fd, "x", 1), -EPERM);
  EXPECT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1), -EPERM);
  EXPECT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(ps_)), 0);  // size seals are separate
  std::unique_ptr<fs::ShmemMapping> denied;
  EXPECT_EQ(fs::ShmemMmap(*p_, fd, ps_, true, &denied), -EPERM);
  EXPECT_EQ(denied, nullptr);
  void* page = nullptr;
  EXPECT_EQ(ro->Fault(0, false, &page), 0);
  EXPECT_EQ(ro->Fault(0, true, &page), -EACCES);
  EXPECT_EQ(p_->Write(fd, "", 0), 0);  // an empty write checks nothing

  // F_SEAL_FUTURE_WRITE: mappings made before keep writing.
  const int fd2 = Memfd();
  ASSERT_EQ(p_->Ftruncate(fd2, static_cast<loff_t>(ps_)), 0);
  std::unique_ptr<fs::ShmemMapping> before;
  ASSERT_EQ(fs::ShmemMmap(*p_, fd2, ps_, true, &before), 0);
  ASSERT_EQ(AddSeals(fd2, F_SEAL_FUTURE_WRITE), 0);
  EXPECT_EQ(Pwrite(fd2, {1}, 0), -EPERM);
  ASSERT_EQ(before->Fault(0, true, &page), 0);
  static_cast<uint8_t*>(page)[3] = 0x5A;
  EXPECT_EQ(Pread(fd2, 4, 0), (std::vector<uint8_t>{0, 0, 0, 0x5A}));
  std::unique_ptr<fs::ShmemMapping> after;
  EXPECT_EQ(fs::ShmemMmap(*p_, fd2, ps_, true, &after), -EPERM);
  // F_SEAL_WRITE on top still sees the old writable mapping.
  EXPECT_EQ(AddSeals(fd2, F_SEAL_WRITE), -EBUSY);
  before.reset();
  EXPECT_EQ(AddSeals(fd2, F_SEAL_WRITE), 0);
}

TEST_F(ShmemTest, SealWriteIsBusyWhileAFolioIsPinned) {
  const int fd = Memfd();
  ASSERT_EQ(Pwrite(fd, Pattern(ps_, 1), 0), static_cast<ssize_t>(ps_));
  struct folio* folios[1];
  pgoff_t offset = 99;
  ASSERT_EQ(memfd_pin_folios(File(fd), 0, static_cast<loff_t>(ps_) - 1, folios, 1, &offset), 1);
  EXPECT_EQ(AddSeals(fd, F_SEAL_WRITE), -EBUSY);
  EXPECT_EQ(Shmem(fd)->MmapWritable(), 0);  // the denial was rolled back
  unpin_folios(folios, 1);
  EXPECT_EQ(AddSeals(fd, F_SEAL_WRITE), 0);
}

TEST_F(ShmemTest, SealExecOnAnExecutableMemfdImpliesTheWriteSeals) {
  const int fd = Memfd(MFD_ALLOW_SEALING);
  ASSERT_EQ(AddSeals(fd, F_SEAL_EXEC), 0);
  EXPECT_EQ(GetSeals(fd),
            F_SEAL_EXEC | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE);
  // MFD_NOEXEC_SEAL: mode 0666, F_SEAL_EXEC from the start, sealing allowed.
  const int noexec = Memfd(MFD_NOEXEC_SEAL);
  EXPECT_EQ(file_inode(File(noexec))->i_mode, S_IFREG | 0666);
  EXPECT_EQ(GetSeals(noexec), F_SEAL_EXEC);
  EXPECT_EQ(AddSeals(noexec, F_SEAL_EXEC), 0);
  EXPECT_EQ(GetSeals(noexec), F_SEAL_EXEC);
  EXPECT_EQ(Pwrite(noexec, {1}, 0), 1);
}

// ---------------------------------------------------------------------------
// The frozen mapping (memfd_luo preserve)

TEST_F(ShmemTest, FrozenMappingForbidsGrowShrinkAndPunchUntilUnfrozen) {
  const int fd = Memfd();
  const loff_t size = static_cast<loff_t>(2 * ps_);
  ASSERT_EQ(Pwrite(fd, Pattern(size, 2), 0), size);
  Freeze(fd, true);
  EXPECT_TRUE(Shmem(fd)->Frozen());
  EXPECT_EQ(GetSeals(fd), 0);  // invisible to userspace
  EXPECT_EQ(p_->Ftruncate(fd, size + 1), -EPERM);
  EXPECT_EQ(p_->Ftruncate(fd, size - 1), -EPERM);
  EXPECT_EQ(p_->Ftruncate(fd, size), 0);
  EXPECT_EQ(p_->Fallocate(fd, 0, 0, 1), -EPERM);
  EXPECT_EQ(p_->Fallocate(fd, FALLOC_FL_KEEP_SIZE, size, 1), -EPERM);
  EXPECT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size), -EPERM);
  EXPECT_EQ(Pwrite(fd, {1}, size), -EPERM);
  EXPECT_EQ(Pwrite(fd, {1, 2}, size - 1), 1);  // short: stops at EOF's page boundary
  // In place: fine, by write and by mapping.
  EXPECT_EQ(Pwrite(fd, {9, 9}, size - 2), 2);
  std::unique_ptr<fs::ShmemMapping> map;
  ASSERT_EQ(fs::ShmemMmap(*p_, fd, static_cast<size_t>(size), true, &map), 0);
  void* page = nullptr;
  ASSERT_EQ(map->Fault(0, true, &page), 0);
  static_cast<uint8_t*>(page)[0] = 0x77;
  EXPECT_EQ(Pread(fd, 1, 0), std::vector<uint8_t>{0x77});
  EXPECT_EQ(Pread(fd, 2, size - 2), (std::vector<uint8_t>{9, 9}));
  EXPECT_EQ(i_size_read(file_inode(File(fd))), size);
  Freeze(fd, false);
  EXPECT_FALSE(Shmem(fd)->Frozen());
  EXPECT_EQ(Pwrite(fd, {1}, size), 1);
  EXPECT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(ps_)), 0);
  EXPECT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1), 0);
  // shmem_freeze expects the inode lock.
  const uint64_t warns = m_.kernel().WarnCount();
  shmem_freeze(file_inode(File(fd)), true);
  EXPECT_EQ(m_.kernel().WarnCount(), warns + 1);
  expected_warns_ = 1;
  EXPECT_TRUE(Shmem(fd)->Frozen());
}

// ---------------------------------------------------------------------------
// Lifetime and accounting

TEST_F(ShmemTest, ClosingTheLastReferenceFreesEveryPage) {
  const uint64_t free_before = FreePages();
  const int64_t inodes = vfs().live_inodes();
  const int fd = Memfd();
  ASSERT_EQ(Pwrite(fd, Pattern(100 * ps_, 3), 0), static_cast<ssize_t>(100 * ps_));
  ASSERT_EQ(p_->Fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<loff_t>(200 * ps_),
                          static_cast<loff_t>(8 * ps_)),
            0);
  ASSERT_EQ(Pwrite(fd, {1}, static_cast<loff_t>(4000 * ps_)), 1);
  std::unique_ptr<fs::ShmemMapping> map;
  ASSERT_EQ(fs::ShmemMmap(*p_, fd, 4001 * ps_, true, &map), 0);
  void* page = nullptr;
  ASSERT_EQ(map->Fault(3000, true, &page), 0);
  const int dup = p_->Dup(fd);
  EXPECT_EQ(FreePages(), free_before - 110);
  EXPECT_EQ(Charged(*p_), 110u);
  EXPECT_EQ(fs::ShmemSb::Current()->CachedPages(), 110u);
  EXPECT_EQ(p_->Close(fd), 0);
  EXPECT_EQ(p_->Close(dup), 0);
  // The mapping still holds the file.
  EXPECT_EQ(FreePages(), free_before - 110);
  ASSERT_EQ(map->Fault(3000, false, &page), 0);
  map.reset();
  EXPECT_EQ(FreePages(), free_before);
  EXPECT_EQ(Charged(*p_), 0u);
  EXPECT_EQ(vfs().live_inodes(), inodes);
  EXPECT_EQ(fs::ShmemSb::Current()->LiveInodes(), 0);
  EXPECT_EQ(fs::ShmemSb::Current()->LiveMappings(), 0);
  EXPECT_EQ(fs::ShmemSb::Current()->CachedPages(), 0u);
  // Process exit closes memfds too.
  const int again = Memfd();
  ASSERT_EQ(Pwrite(again, Pattern(3 * ps_, 3), 0), static_cast<ssize_t>(3 * ps_));
  p_->Exit();
  EXPECT_EQ(FreePages(), free_before);
}

TEST_F(ShmemTest, MappingWritesAreVisibleThroughRead) {
  const int fd = Memfd();
  ASSERT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(3 * ps_)), 0);
  std::unique_ptr<fs::ShmemMapping> map;
  ASSERT_EQ(fs::ShmemMmap(*p_, fd, 4 * ps_, true, &map), 0);
  void* page = nullptr;
  ASSERT_EQ(map->Fault(1, true, &page), 0);  // first touch allocates
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(1));
  EXPECT_TRUE(folio_test_dirty(Shmem(fd)->PeekFolio(1)));
  const auto data = Pattern(ps_, 6);
  std::memcpy(page, data.data(), data.size());
  EXPECT_EQ(Pread(fd, ps_, static_cast<loff_t>(ps_)), data);
  // A write(2) is visible through the mapping.
  EXPECT_EQ(Pwrite(fd, {0xC3}, static_cast<loff_t>(ps_) + 7), 1);
  EXPECT_EQ(static_cast<uint8_t*>(page)[7], 0xC3);
  void* again = nullptr;
  ASSERT_EQ(map->Fault(1, false, &again), 0);
  EXPECT_EQ(again, page);
  // A read fault allocates too (shmem has no shared zero page).
  ASSERT_EQ(map->Fault(2, false, &again), 0);
  EXPECT_FALSE(folio_test_dirty(Shmem(fd)->PeekFolio(2)));
  EXPECT_EQ(Shmem(fd)->CachedPages(), 2u);
  // Past EOF (SIGBUS) and past the mapping (SIGSEGV).
  EXPECT_EQ(map->Fault(3, false, &again), -EFAULT);
  EXPECT_EQ(map->Fault(4, false, &again), -EFAULT);
  // Shrinking takes the page away; the next fault is a SIGBUS.
  ASSERT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(ps_)), 0);
  EXPECT_EQ(map->Fault(1, false, &again), -EFAULT);
  // mmap errors.
  std::unique_ptr<fs::ShmemMapping> other;
  EXPECT_EQ(fs::ShmemMmap(*p_, fd, 0, false, &other), -EINVAL);
  EXPECT_EQ(fs::ShmemMmap(*p_, 42, ps_, false, &other), -EBADF);
  struct file* anon = anon_inode_getfile("[x]", nullptr, nullptr, O_RDWR);
  int anon_fd = -1;
  {
    fs::ScopedCurrentProcess current(*p_);
    anon_fd = get_unused_fd_flags(0);
    fd_install(anon_fd, anon);
  }
  EXPECT_EQ(fs::ShmemMmap(*p_, anon_fd, ps_, false, &other), -ENODEV);
  const int ro = fs::TmpfsCreate(*p_, "ro", O_RDONLY);
  EXPECT_EQ(fs::ShmemMmap(*p_, ro, ps_, true, &other), -EACCES);
  EXPECT_EQ(fs::ShmemMmap(*p_, ro, ps_, false, &other), 0);
  const int wo = fs::TmpfsCreate(*p_, "wo", O_WRONLY);
  EXPECT_EQ(fs::ShmemMmap(*p_, wo, ps_, false, &other), -EACCES);
}

TEST_F(ShmemTest, MemcgChargesTheAllocatingProcess) {
  fs::Process& b = vfs().CreateProcess("helper");
  const int fd = Memfd();
  ASSERT_EQ(Pwrite(fd, Pattern(2 * ps_, 1), 0), static_cast<ssize_t>(2 * ps_));
  const int bfd = p_->SendFd(fd, b);
  ASSERT_GE(bfd, 0);
  const auto data = Pattern(3 * ps_, 2);
  ASSERT_EQ(b.Pwrite(bfd, data.data(), data.size(), static_cast<loff_t>(2 * ps_)),
            static_cast<ssize_t>(data.size()));
  EXPECT_EQ(Charged(*p_), 2u);
  EXPECT_EQ(Charged(b), 3u);
  // Mapping faults charge the mapping's process.
  std::unique_ptr<fs::ShmemMapping> map;
  ASSERT_EQ(b.Ftruncate(bfd, static_cast<loff_t>(6 * ps_)), 0);
  ASSERT_EQ(fs::ShmemMmap(b, bfd, 6 * ps_, false, &map), 0);
  void* page = nullptr;
  ASSERT_EQ(map->Fault(5, false, &page), 0);
  EXPECT_EQ(Charged(b), 4u);
  EXPECT_EQ(Shmem(fd)->PeekFolio(5)->page.memcg, fs::ProcessMemcg(b));
  // Kernel work with no current process charges the root memcg.
  struct folio* folio = memfd_alloc_folio(File(fd), 0);  // already there
  ASSERT_FALSE(IS_ERR(folio));
  folio_put(folio);
  EXPECT_EQ(fs::MemcgChargedPages(fs::kRootMemcg), 0u);
  ASSERT_EQ(p_->Fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, static_cast<loff_t>(8 * ps_)), 0);
  EXPECT_EQ(Charged(*p_), 4u);  // pages 0, 1 (write) and 6, 7 (fallocate)
  {
    folio = shmem_read_folio(file_inode(File(fd))->i_mapping, 4);
    ASSERT_FALSE(IS_ERR(folio));
    EXPECT_EQ(folio->page.memcg, fs::ProcessMemcg(b));  // existing
    folio_put(folio);
  }
  // Re-charging moves the pages.
  fs::MemcgRecharge(Shmem(fd)->PeekFolio(0), fs::ProcessMemcg(b));
  EXPECT_EQ(Charged(*p_), 3u);
  EXPECT_EQ(Charged(b), 5u);
  EXPECT_EQ(
      fs::ShmemSb::Current()->ChargedPagesByMemcg(),
      (std::map<unsigned long, uint64_t>{{fs::ProcessMemcg(*p_), 3}, {fs::ProcessMemcg(b), 5}}));
  map.reset();
  p_->Exit();
  b.Exit();
  EXPECT_TRUE(fs::ShmemSb::Current()->ChargedPagesByMemcg().empty());
}

// ---------------------------------------------------------------------------
// Kernel face: what a memfd LUO handler uses

TEST_F(ShmemTest, KernelFaceCreateLookupInsertAndIterate) {
  struct file* file = memfd_alloc_file("", MFD_ALLOW_SEALING);
  ASSERT_FALSE(IS_ERR(file));
  struct inode* inode = file_inode(file);
  EXPECT_TRUE(shmem_file(file));
  EXPECT_EQ(inode->i_nlink, 0u);
  EXPECT_EQ(file->f_flags, static_cast<unsigned int>(O_RDWR) | kKernelOLargefile);
  EXPECT_EQ(memfd_get_seals(file), 0);
  EXPECT_EQ(memfd_add_seals(file, F_SEAL_SHRINK), 0);
  EXPECT_EQ(*memfd_file_seals_ptr(file), static_cast<unsigned int>(F_SEAL_SHRINK));
  EXPECT_EQ(memfd_fcntl(file, F_GET_SEALS, 0), F_SEAL_SHRINK);
  EXPECT_EQ(vfs_setpos(file, 123, MAX_LFS_FILESIZE), 123);
  EXPECT_EQ(vfs_setpos(file, -1, MAX_LFS_FILESIZE), -EINVAL);
  i_size_write(inode, static_cast<loff_t>(8 * ps_));
  struct address_space* mapping = inode->i_mapping;
  ASSERT_TRUE(shmem_mapping(mapping));
  EXPECT_EQ(mapping->host, inode);
  EXPECT_EQ(SHMEM_I(inode)->seals, static_cast<unsigned int>(F_SEAL_SHRINK));

  // Lookups without allocation.
  struct folio* folio = nullptr;
  EXPECT_EQ(shmem_get_folio(inode, 0, 0, &folio, SGP_READ), 0);
  EXPECT_EQ(folio, nullptr);
  EXPECT_EQ(shmem_get_folio(inode, 0, 0, &folio, SGP_NOALLOC), -ENOENT);
  EXPECT_EQ(shmem_get_folio(inode, 8, 0, &folio, SGP_CACHE), -EINVAL);
  EXPECT_EQ(PTR_ERR(filemap_get_folio(mapping, 0)), -ENOENT);

  // Retrieve's insert: a charged, locked folio with its own reference.
  const uint64_t free_before = FreePages();
  struct folio* restored = folio_alloc(GFP_KERNEL, 0);
  ASSERT_NE(restored, nullptr);
  std::memset(folio_address(restored), 0x3C, ps_);
  __folio_set_locked(restored);
  __folio_set_swapbacked(restored);
  ASSERT_EQ(mem_cgroup_charge(restored, nullptr, mapping_gfp_mask(mapping)), 0);
  EXPECT_EQ(fs::MemcgChargedPages(fs::kRootMemcg), 1u);
  ASSERT_EQ(shmem_add_to_page_cache(restored, mapping, 3, nullptr, mapping_gfp_mask(mapping)), 0);
  folio_mark_uptodate(restored);
  folio_mark_dirty(restored);
  EXPECT_EQ(shmem_inode_acct_blocks(inode, 1), 0);
  shmem_recalc_inode(inode, 1, 0);
  folio_add_lru(restored);
  folio_unlock(restored);
  EXPECT_EQ(folio_ref_count(restored), 2);
  folio_put(restored);
  EXPECT_EQ(folio_mapping(restored), mapping);
  EXPECT_EQ(folio_index(restored), 3u);
  EXPECT_EQ(SHMEM_I(inode)->alloced, 1u);
  EXPECT_EQ(mapping->nrpages, 1u);
  std::vector<uint8_t> buf(ps_);
  loff_t pos = static_cast<loff_t>(3 * ps_);
  EXPECT_EQ(file->f_op->read(file, reinterpret_cast<char*>(buf.data()), ps_, &pos),
            static_cast<ssize_t>(ps_));
  EXPECT_THAT(buf, Each(0x3C));
  // The slot is taken now; a large folio must be aligned.
  struct folio* other = folio_alloc(GFP_KERNEL, 0);
  ASSERT_EQ(mem_cgroup_charge(other, nullptr, GFP_KERNEL), 0);
  EXPECT_EQ(shmem_add_to_page_cache(other, mapping, 3, nullptr, GFP_KERNEL), -EEXIST);
  struct folio* big = folio_alloc(GFP_KERNEL, 1);
  ASSERT_EQ(mem_cgroup_charge(big, nullptr, GFP_KERNEL), 0);
  EXPECT_EQ(shmem_add_to_page_cache(big, mapping, 1, nullptr, GFP_KERNEL), -EINVAL);
  EXPECT_EQ(shmem_add_to_page_cache(big, mapping, 2, nullptr, GFP_KERNEL), -EEXIST);
  ASSERT_EQ(shmem_add_to_page_cache(big, mapping, 6, nullptr, GFP_KERNEL), 0);
  folio_put(big);
  // A failed insert (fault point) leaves the folio to its caller; freeing
  // it drops its charge.
  m_.faults().FailOnce("shmem_add_to_page_cache");
  EXPECT_EQ(shmem_add_to_page_cache(other, mapping, 0, nullptr, GFP_KERNEL), -ENOMEM);
  EXPECT_EQ(fs::MemcgChargedPages(fs::kRootMemcg), 4u);
  folio_put(other);
  EXPECT_EQ(fs::MemcgChargedPages(fs::kRootMemcg), 3u);
  m_.faults().FailOnce("shmem_inode_acct_blocks");
  EXPECT_EQ(shmem_inode_acct_blocks(inode, 1), -ENOSPC);

  // Allocating lookups.
  ASSERT_EQ(shmem_get_folio(inode, 0, 0, &folio, SGP_CACHE), 0);
  ASSERT_NE(folio, nullptr);
  EXPECT_TRUE(folio_test_locked(folio));
  EXPECT_TRUE(folio_test_uptodate(folio));
  folio_unlock(folio);
  folio_put(folio);
  struct folio* found = filemap_get_folio(mapping, 7);  // inside the order-1 folio
  ASSERT_FALSE(IS_ERR(found));
  EXPECT_EQ(found, big);
  folio_put(found);

  // Iteration in index order, in batches.
  struct folio_batch fbatch;
  pgoff_t start = 0;
  EXPECT_EQ(filemap_get_folios(mapping, &start, ~0UL, &fbatch), 3u);
  EXPECT_EQ(folio_index(fbatch.folios[0]), 0u);
  EXPECT_EQ(folio_index(fbatch.folios[1]), 3u);
  EXPECT_EQ(folio_index(fbatch.folios[2]), 6u);
  EXPECT_EQ(start, ~0UL);
  folio_batch_release(&fbatch);
  EXPECT_EQ(folio_batch_count(&fbatch), 0u);
  start = 1;
  EXPECT_EQ(filemap_get_folios(mapping, &start, 5, &fbatch), 1u);
  EXPECT_EQ(start, 6u);
  folio_batch_release(&fbatch);
  start = 0;
  EXPECT_EQ(filemap_get_folios_contig(mapping, &start, 7, &fbatch), 1u);
  EXPECT_EQ(start, 1u);  // stopped at the hole
  folio_batch_release(&fbatch);

  // Truncation through the kernel face.
  shmem_truncate_range(inode, static_cast<loff_t>(3 * ps_), -1);
  EXPECT_THAT(fs::ShmemInode::FromInode(inode)->FolioIndices(), ElementsAre(0));
  fput(file);
  EXPECT_EQ(FreePages(), free_before);
  EXPECT_EQ(fs::MemcgChargedPages(fs::kRootMemcg), 0u);
}

TEST_F(ShmemTest, PinningFillsHolesAndMovesFoliosOutOfCma) {
  const int fd = Memfd();
  const loff_t size = static_cast<loff_t>(4 * ps_);
  ASSERT_EQ(p_->Ftruncate(fd, size), 0);
  const auto data = Pattern(ps_, 8);
  ASSERT_EQ(Pwrite(fd, data, static_cast<loff_t>(ps_)), static_cast<ssize_t>(ps_));
  ASSERT_EQ(p_->Fallocate(fd, 0, static_cast<loff_t>(3 * ps_), static_cast<loff_t>(ps_)), 0);
  // Put page 1's folio in a CMA pageblock, as if it sat in KHO scratch.
  struct folio* in_cma = Shmem(fd)->PeekFolio(1);
  mm::PageAllocator& pages = m_.kernel().mm().pages();
  const Pfn cma_pfn(folio_pfn(in_cma));
  const mm::MigrateType old_type = pages.PageblockType(cma_pfn);
  pages.SetPageblockType(cma_pfn, mm::MigrateType::kCma);

  struct folio* folios[8] = {};
  pgoff_t offset = 99;
  EXPECT_EQ(memfd_pin_folios(File(fd), 0, size, folios, 8, &offset), -EINVAL);  // end >= size
  EXPECT_EQ(memfd_pin_folios(File(fd), 2, 1, folios, 8, &offset), -EINVAL);
  EXPECT_EQ(memfd_pin_folios(File(fd), 0, 1, folios, 0, &offset), -EINVAL);
  EXPECT_EQ(memfd_pin_folios(File(fd), -1, 1, folios, 8, &offset), -EINVAL);
  ASSERT_EQ(memfd_pin_folios(File(fd), 10, size - 1, folios, 8, &offset), 4);
  EXPECT_EQ(offset, 10u);
  EXPECT_EQ(Shmem(fd)->CachedPages(), 4u);  // holes filled
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(folio_index(folios[i]), static_cast<pgoff_t>(i));
    EXPECT_TRUE(folio_maybe_dma_pinned(folios[i]));
    EXPECT_TRUE(folios[i]->page.flags & (1UL << PG_pinned));
    EXPECT_EQ(folio_ref_count(folios[i]), 2);
    EXPECT_NE(pages.PageblockType(Pfn(folio_pfn(folios[i]))), mm::MigrateType::kCma);
    EXPECT_EQ(folios[i], Shmem(fd)->PeekFolio(i));
  }
  EXPECT_NE(folios[1], in_cma);
  EXPECT_EQ(Pread(fd, ps_, static_cast<loff_t>(ps_)), data);
  EXPECT_TRUE(folio_test_uptodate(folios[0]));   // a filled hole
  EXPECT_FALSE(folio_test_uptodate(folios[3]));  // fallocated, left as it was
  EXPECT_EQ(Charged(*p_), 2u);                   // the filled holes belong to the root memcg
  EXPECT_EQ(fs::MemcgChargedPages(fs::kRootMemcg), 2u);
  // At most max_folios.
  struct folio* two[2];
  ASSERT_EQ(memfd_pin_folios(File(fd), 0, size - 1, two, 2, &offset), 2);
  EXPECT_EQ(folio_ref_count(two[0]), 3);
  unpin_folios(two, 2);
  unpin_folios(folios, 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(folio_maybe_dma_pinned(folios[i]));
    EXPECT_EQ(folio_ref_count(folios[i]), 1);
  }
  pages.SetPageblockType(cma_pfn, old_type);
}

// ---------------------------------------------------------------------------
// Larger folios (the shape a hugetlbfs variant would have)

TEST_F(ShmemTest, LargeFolioInode) {
  fs::ShmemOptions options;
  options.folio_order = 2;
  options.seals = 0;
  struct file* file = fs::ShmemFileSetup("/big (deleted)", options);
  ASSERT_FALSE(IS_ERR(file));
  fs::ShmemInode* shmem = fs::ShmemInode::FromFile(file);
  const uint64_t free_before = FreePages();
  loff_t pos = static_cast<loff_t>(5 * ps_) + 1;
  const char byte = 'q';
  ASSERT_EQ(file->f_op->write(file, &byte, 1, &pos), 1);
  EXPECT_THAT(shmem->FolioIndices(), ElementsAre(4));
  EXPECT_EQ(shmem->CachedPages(), 4u);
  EXPECT_EQ(FreePages(), free_before - 4);
  // A write spanning two folios.
  std::vector<char> data(6 * ps_, 'z');
  pos = static_cast<loff_t>(ps_);
  ASSERT_EQ(file->f_op->write(file, data.data(), data.size(), &pos),
            static_cast<ssize_t>(data.size()));
  EXPECT_THAT(shmem->FolioIndices(), ElementsAre(0, 4));
  // Punching inside a folio zeroes; covering one frees it.
  ASSERT_EQ(file->f_op->fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  static_cast<loff_t>(ps_), static_cast<loff_t>(ps_)),
            0);
  EXPECT_THAT(shmem->FolioIndices(), ElementsAre(0, 4));
  std::vector<char> got(ps_ + 2);
  pos = static_cast<loff_t>(ps_) - 1;
  ASSERT_EQ(file->f_op->read(file, got.data(), got.size(), &pos), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got.front(), 0);  // page 0 was never written
  EXPECT_EQ(std::count(got.begin() + 1, got.end() - 1, 0), static_cast<long>(ps_));
  EXPECT_EQ(got.back(), 'z');
  ASSERT_EQ(file->f_op->fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                                  static_cast<loff_t>(4 * ps_)),
            0);
  EXPECT_THAT(shmem->FolioIndices(), ElementsAre(4));
  // Truncating into the middle of a folio zeroes its tail and keeps it.
  ASSERT_EQ(file->f_op->setsize(file, static_cast<loff_t>(5 * ps_)), 0);
  EXPECT_THAT(shmem->FolioIndices(), ElementsAre(4));
  ASSERT_EQ(file->f_op->setsize(file, static_cast<loff_t>(8 * ps_)), 0);
  pos = static_cast<loff_t>(5 * ps_);
  ASSERT_EQ(file->f_op->read(file, got.data(), 2, &pos), 2);
  EXPECT_EQ(got[0], 0);
  EXPECT_EQ(got[1], 0);
  EXPECT_TRUE(shmem->Validate().ok());
  fput(file);
  EXPECT_EQ(FreePages(), free_before);
  options.folio_order = 64;
  EXPECT_EQ(PTR_ERR(fs::ShmemFileSetup("x", options)), -EINVAL);
}

// ---------------------------------------------------------------------------
// Kexec

TEST_F(ShmemTest, MemfdStillOpenAtKexecDoesNotCrashTeardown) {
  const int fd = Memfd();
  ASSERT_EQ(Pwrite(fd, Pattern(5 * ps_, 1), 0), static_cast<ssize_t>(5 * ps_));
  const int frozen = Memfd();
  ASSERT_EQ(Pwrite(frozen, Pattern(ps_, 2), 0), static_cast<ssize_t>(ps_));
  Freeze(frozen, true);
  std::unique_ptr<fs::ShmemMapping> map;
  ASSERT_EQ(fs::ShmemMmap(*p_, fd, 5 * ps_, true, &map), 0);
  struct file* held = get_file(File(fd));  // a kernel reference, as LUO holds
  fput(held);
  struct folio* pinned[1];
  pgoff_t offset = 0;
  ASSERT_EQ(memfd_pin_folios(File(fd), 0, 0, pinned, 1, &offset), 1);
  ASSERT_TRUE(m_.Kexec().ok());
  // Kernel A's mapping was revoked with its VFS.
  EXPECT_TRUE(map->revoked());
  void* page = nullptr;
  EXPECT_EQ(map->Fault(0, false, &page), -EFAULT);
  map.reset();
  // Kernel B has its own, empty shmem state.
  m_.Activate();
  fs::Process& q = m_.kernel().vfs().CreateProcess("vmm");
  const int nfd = fs::MemfdCreate(q, "vm0", 0);
  ASSERT_EQ(nfd, 0);
  EXPECT_EQ(fs::ShmemSb::Current()->LiveInodes(), 1);
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(q)), 0u);
  EXPECT_EQ(q.Pwrite(nfd, "abc", 3, 0), 3);
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(q)), 1u);
}

// What mm/memfd_luo.c does, without LUO: pin and preserve every folio of a
// frozen memfd (holes filled), hand the records over, and rebuild the file
// in the next kernel from the restored folios.
struct PreservedFolio {
  uint64_t pfn;
  uint64_t index;
  uint64_t flags;  // bit 0 dirty, bit 1 uptodate
};

TEST(ShmemKhoTest, MemfdFoliosCrossAKexecTheWayMemfdLuoMovesThem) {
  MachineConfig config{.ram = 1 * kGiB, .seed = 11};
  config.cmdline = "kho=on";
  Machine m(config);
  m.Boot();
  ASSERT_TRUE(kho_is_enabled());
  fs::Process& vmm = m.kernel().vfs().CreateProcess("vmm");
  const unsigned long ps = PAGE_SIZE;
  const int fd = fs::MemfdCreate(vmm, "guest", MFD_ALLOW_SEALING);
  ASSERT_GE(fd, 0);
  const auto head = Pattern(ps, 21);
  const auto tail = Pattern(100, 22);
  ASSERT_EQ(vmm.Pwrite(fd, head.data(), head.size(), 0), static_cast<ssize_t>(ps));
  ASSERT_EQ(vmm.Pwrite(fd, tail.data(), tail.size(), static_cast<loff_t>(3 * ps)), 100);
  ASSERT_EQ(vmm.Fallocate(fd, 0, static_cast<loff_t>(4 * ps), static_cast<loff_t>(ps)), 0);
  ASSERT_EQ(vmm.Lseek(fd, 77, SEEK_SET), 77);
  struct file* file = vmm.PeekFile(fd);
  struct inode* inode = file_inode(file);

  // preserve
  inode_lock(inode);
  shmem_freeze(inode, true);
  const loff_t size = i_size_read(inode);
  ASSERT_EQ(size, static_cast<loff_t>(5 * ps));
  const unsigned int max_folios = PAGE_ALIGN(size) / PAGE_SIZE;
  std::vector<struct folio*> folios(max_folios);
  pgoff_t offset = 0;
  long nr = 0;
  {
    fs::ScopedCurrentProcess current(vmm);
    nr = memfd_pin_folios(file, 0, size - 1, folios.data(), max_folios, &offset);
  }
  ASSERT_EQ(nr, 5);
  auto* records = static_cast<PreservedFolio*>(kho_alloc_preserve(nr * sizeof(PreservedFolio)));
  ASSERT_FALSE(IS_ERR(records));
  for (long i = 0; i < nr; ++i) {
    struct folio* folio = folios[i];
    ASSERT_EQ(kho_preserve_folio(folio), 0);
    if (!folio_test_uptodate(folio)) {
      folio_zero_range(folio, 0, folio_size(folio));
      flush_dcache_folio(folio);
      folio_mark_uptodate(folio);
    }
    folio_mark_dirty(folio);
    records[i] = {folio_pfn(folio), folio_index(folio),
                  (folio_test_dirty(folio) ? 1u : 0u) | (folio_test_uptodate(folio) ? 2u : 0u)};
  }
  inode_unlock(inode);
  ASSERT_EQ(kho_add_subtree("memfd", records, nr * sizeof(PreservedFolio)), 0);
  EXPECT_EQ(vmm.Ftruncate(fd, 0), -EPERM);
  EXPECT_EQ(vmm.Pwrite(fd, "x", 1, 1), 1);  // in place is fine
  ASSERT_TRUE(m.Kexec().ok());

  // retrieve
  fs::Process& next = m.kernel().vfs().CreateProcess("vmm");
  phys_addr_t phys = 0;
  size_t blob = 0;
  ASSERT_EQ(kho_retrieve_subtree("memfd", &phys, &blob), 0);
  ASSERT_EQ(blob, 5 * sizeof(PreservedFolio));
  const auto* in = static_cast<const PreservedFolio*>(phys_to_virt(phys));
  int nfd = -1;
  {
    fs::ScopedCurrentProcess current(next);
    struct file* restored = memfd_alloc_file("", MFD_ALLOW_SEALING);
    ASSERT_FALSE(IS_ERR(restored));
    ASSERT_EQ(vfs_setpos(restored, 77, MAX_LFS_FILESIZE), 77);
    restored->f_inode->i_size = size;
    struct address_space* mapping = restored->f_inode->i_mapping;
    for (int i = 0; i < 5; ++i) {
      struct folio* folio = kho_restore_folio(PFN_PHYS(in[i].pfn));
      ASSERT_NE(folio, nullptr);
      __folio_set_locked(folio);
      __folio_set_swapbacked(folio);
      ASSERT_EQ(mem_cgroup_charge(folio, nullptr, mapping_gfp_mask(mapping)), 0);
      ASSERT_EQ(
          shmem_add_to_page_cache(folio, mapping, in[i].index, nullptr, mapping_gfp_mask(mapping)),
          0);
      if (in[i].flags & 2) folio_mark_uptodate(folio);
      if (in[i].flags & 1) folio_mark_dirty(folio);
      ASSERT_EQ(shmem_inode_acct_blocks(restored->f_inode, 1), 0);
      shmem_recalc_inode(restored->f_inode, 1, 0);
      folio_add_lru(folio);
      folio_unlock(folio);
      folio_put(folio);
    }
    nfd = get_unused_fd_flags(O_CLOEXEC);
    fd_install(nfd, restored);
  }
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(next)), 5u);
  EXPECT_EQ(next.Lseek(nfd, 0, SEEK_CUR), 77);
  std::vector<uint8_t> got(5 * ps, 0xEE);
  ASSERT_EQ(next.Pread(nfd, got.data(), got.size(), 0), static_cast<ssize_t>(5 * ps));
  auto expect = std::vector<uint8_t>(5 * ps, 0);
  std::copy(head.begin(), head.end(), expect.begin());
  expect[1] = 'x';
  std::copy(tail.begin(), tail.end(), expect.begin() + 3 * ps);
  EXPECT_EQ(got, expect);
  EXPECT_EQ(next.Fcntl(nfd, F_GET_SEALS, 0), 0);
  EXPECT_TRUE(fs::ShmemSb::Current()->Validate().ok());
  const uint64_t free_before = m.kernel().mm().pages().FreePages();
  EXPECT_EQ(next.Close(nfd), 0);
  EXPECT_EQ(m.kernel().mm().pages().FreePages(), free_before + 5);
  EXPECT_EQ(fs::MemcgChargedPages(fs::ProcessMemcg(next)), 0u);
  EXPECT_EQ(m.kernel().WarnCount(), 0u);
}

// ---------------------------------------------------------------------------
// Page sizes

class ShmemPageSizeTest : public ShmemTest, public ::testing::WithParamInterface<uint64_t> {
 protected:
  ShmemPageSizeTest() : ShmemTest(GetParam()) {}
};

TEST_P(ShmemPageSizeTest, RoundTripTruncatePunchAndClose) {
  ASSERT_EQ(ps_, GetParam());
  const uint64_t free_before = FreePages();
  const int fd = Memfd();
  const auto data = Pattern(3 * ps_ + 17, 11);
  ASSERT_EQ(Pwrite(fd, data, 5), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(Pread(fd, data.size(), 5), data);
  EXPECT_EQ(Shmem(fd)->CachedPages(), 4u);
  EXPECT_EQ(Charged(*p_), 4u);
  ASSERT_EQ(p_->Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<loff_t>(ps_),
                          static_cast<loff_t>(ps_)),
            0);
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(0, 2, 3));
  auto expect = data;
  std::fill(expect.begin() + (ps_ - 5), expect.begin() + (2 * ps_ - 5), 0);
  EXPECT_EQ(Pread(fd, data.size(), 5), expect);
  ASSERT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(ps_) + 1), 0);
  EXPECT_THAT(Shmem(fd)->FolioIndices(), ElementsAre(0));
  ASSERT_EQ(p_->Ftruncate(fd, static_cast<loff_t>(2 * ps_)), 0);
  EXPECT_THAT(Pread(fd, ps_, static_cast<loff_t>(ps_)), Each(0));
  std::unique_ptr<fs::ShmemMapping> map;
  ASSERT_EQ(fs::ShmemMmap(*p_, fd, 2 * ps_, true, &map), 0);
  void* page = nullptr;
  ASSERT_EQ(map->Fault(1, true, &page), 0);
  static_cast<uint8_t*>(page)[ps_ - 1] = 0xF0;
  EXPECT_EQ(Pread(fd, 1, static_cast<loff_t>(2 * ps_) - 1), std::vector<uint8_t>{0xF0});
  EXPECT_EQ(p_->Lseek(fd, 0, SEEK_HOLE), static_cast<loff_t>(2 * ps_));
  map.reset();
  EXPECT_EQ(p_->Close(fd), 0);
  EXPECT_EQ(FreePages(), free_before);
  EXPECT_EQ(Charged(*p_), 0u);
}

INSTANTIATE_TEST_SUITE_P(PageSizes, ShmemPageSizeTest,
                         ::testing::Values(uint64_t{4096}, uint64_t{16384}, uint64_t{65536}),
                         [](const ::testing::TestParamInfo<uint64_t>& info) {
                           return absl::StrCat(info.param / 1024, "KiB");
                         });

}  // namespace
}  // namespace khosim

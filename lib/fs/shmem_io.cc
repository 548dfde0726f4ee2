// ShmemInode's file backends: read, write, llseek, truncate (SetSize),
// fallocate and F_ADD_SEALS, with the kernel's checks and errnos.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/fs/shmem.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/hugetlb.h"
#include "khosim/linux/uaccess.h"
#include "khosim/mm/mm.h"
#include "shmem_internal.h"

namespace khosim::fs {

// ---- Backends ---------------------------------------------------------------

ssize_t ShmemInode::Read(struct file* file, char* buf, size_t count, loff_t* pos) {
  const loff_t start = *pos;
  if (start < 0) return -EINVAL;
  count = std::min(count, MaxRwCount());
  absl::MutexLock lock(&mu_);
  const loff_t size = i_size_read(&vfs_inode);
  if (count == 0 || start >= size) return 0;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(count, size - start));
  const size_t page_size = PAGE_SIZE;
  size_t done = 0;
  while (done < n) {
    const uint64_t cur = static_cast<uint64_t>(start) + done;
    const pgoff_t index = cur >> PAGE_SHIFT;
    const size_t offset = cur & (page_size - 1);
    size_t chunk = std::min(page_size - offset, n - done);
    const char* src = nullptr;
    auto it = FindLocked(index);
    if (it != cache_.end() && folio_test_uptodate(it->second)) {
      src = PageAddress(it->second, index - it->first) + offset;
    } else {
      // A hole (or a fallocated folio): zeros, nothing allocated.
      chunk = std::min(chunk, kZeroBytes);
      src = kZeros;
    }
    if (copy_to_user(buf + done, src, chunk) != 0) {
      if (done == 0) return -EFAULT;
      break;
    }
    done += chunk;
  }
  *pos = start + static_cast<loff_t>(done);
  return static_cast<ssize_t>(done);
}

ssize_t ShmemInode::Write(struct file* file, const char* buf, size_t count, loff_t* pos) {
  if (hstate_ >= 0) return -EINVAL;  // hugetlbfs has no write_iter
  absl::MutexLock inode_lock(&rwsem_);
  absl::MutexLock lock(&mu_);
  loff_t start = (file->f_flags & O_APPEND) != 0 ? i_size_read(&vfs_inode) : *pos;
  if (start < 0) return -EINVAL;
  count = std::min(count, MaxRwCount());
  if (count == 0) return 0;
  if (start >= MAX_LFS_FILESIZE) return -EFBIG;
  count = static_cast<size_t>(std::min<uint64_t>(count, MAX_LFS_FILESIZE - start));
  const uint64_t chunk_max = static_cast<uint64_t>(PAGE_SIZE) << order_;
  const unsigned long memcg = CurrentMemcg();
  size_t done = 0;
  ssize_t err = 0;
  while (done < count) {
    const loff_t cur = start + static_cast<loff_t>(done);
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(
        chunk_max - (static_cast<uint64_t>(cur) & (chunk_max - 1)), count - done));
    // shmem_write_begin's checks, per chunk: a write that crosses a page
    // boundary into a forbidden region is a short write.
    const loff_t size = i_size_read(&vfs_inode);
    const loff_t chunk_end = cur + static_cast<loff_t>(chunk);
    if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0 ||
        ((seals & F_SEAL_GROW) != 0 && chunk_end > size) ||
        ((flags & SHMEM_F_MAPPING_FROZEN) != 0 && chunk_end > size)) {
      err = -EPERM;
      break;
    }
    struct folio* folio = nullptr;
    err = GetFolioLocked(static_cast<pgoff_t>(cur >> PAGE_SHIFT), SGP_WRITE, memcg, &folio);
    if (err != 0) break;
    const size_t offset = static_cast<size_t>(cur - folio_pos(folio));
    chunk = std::min(chunk, folio_size(folio) - offset);
    char* dst = static_cast<char*>(folio_address(folio)) + offset;
    if (copy_from_user(dst, buf + done, chunk) != 0) {
      err = -EFAULT;
      break;
    }
    if (!folio_test_uptodate(folio)) {
      folio_zero_range(folio, 0, offset);
      folio_zero_range(folio, offset + chunk, folio_size(folio) - offset - chunk);
      folio_mark_uptodate(folio);
    }
    folio_mark_dirty(folio);
    done += chunk;
    if (cur + static_cast<loff_t>(chunk) > size) {
      i_size_write(&vfs_inode, cur + static_cast<loff_t>(chunk));
    }
  }
  if (done == 0) return err;
  *pos = start + static_cast<loff_t>(done);
  return static_cast<ssize_t>(done);
}

loff_t ShmemInode::Llseek(struct file* file, loff_t offset, int whence) {
  switch (whence) {
    case SEEK_SET:
      return vfs_setpos(file, offset, MAX_LFS_FILESIZE);
    case SEEK_CUR: {
      if (offset == 0) return file->f_pos;
      loff_t target = 0;
      if (__builtin_add_overflow(file->f_pos, offset, &target)) return -EINVAL;
      return vfs_setpos(file, target, MAX_LFS_FILESIZE);
    }
    case SEEK_END: {
      loff_t target = 0;
      if (__builtin_add_overflow(Size(), offset, &target)) return -EINVAL;
      return vfs_setpos(file, target, MAX_LFS_FILESIZE);
    }
    case SEEK_DATA:
    case SEEK_HOLE:
      break;
    default:
      return -EINVAL;
  }
  if (offset < 0) return -ENXIO;
  loff_t result = 0;
  {
    absl::MutexLock inode_lock(&rwsem_);
    absl::MutexLock lock(&mu_);
    const loff_t size = i_size_read(&vfs_inode);
    if (offset >= size) return -ENXIO;
    const uint64_t page_size = PAGE_SIZE;
    if (whence == SEEK_DATA) {
      pgoff_t index = static_cast<uint64_t>(offset) >> PAGE_SHIFT;
      auto it = FindLocked(index);
      if (it == cache_.end()) it = cache_.lower_bound(index);
      while (it != cache_.end() && !folio_test_uptodate(it->second)) ++it;
      if (it == cache_.end()) return -ENXIO;
      result = std::max<loff_t>(offset, static_cast<loff_t>(it->first * page_size));
      if (result >= size) return -ENXIO;
    } else {
      uint64_t cur = static_cast<uint64_t>(offset);
      while (cur < static_cast<uint64_t>(size)) {
        auto it = FindLocked(cur >> PAGE_SHIFT);
        if (it == cache_.end() || !folio_test_uptodate(it->second)) break;
        cur = (static_cast<uint64_t>(it->first) << PAGE_SHIFT) + folio_size(it->second);
      }
      result = static_cast<loff_t>(std::min<uint64_t>(cur, size));
    }
  }
  return vfs_setpos(file, result, MAX_LFS_FILESIZE);
}

int ShmemInode::SetSize(loff_t size) {
  if (size < 0) return -EINVAL;
  // hugetlbfs_setattr: only whole huge pages.
  if (hstate_ >= 0 && (static_cast<uint64_t>(size) & ((uint64_t{PAGE_SIZE} << order_) - 1)) != 0) {
    return -EINVAL;
  }
  absl::MutexLock inode_lock(&rwsem_);
  absl::MutexLock lock(&mu_);
  const loff_t old = i_size_read(&vfs_inode);
  if ((size < old && (seals & F_SEAL_SHRINK) != 0) || (size > old && (seals & F_SEAL_GROW) != 0)) {
    return -EPERM;
  }
  if (size != old) {
    if ((flags & SHMEM_F_MAPPING_FROZEN) != 0) return -EPERM;
    i_size_write(&vfs_inode, size);
  }
  // Shrinking (or truncating to the same size) drops everything past the
  // new EOF, including fallocated pages beyond it, and zeroes the tail of
  // the last page.
  if (size <= old) TruncateRangeLocked(size, -1);
  return 0;
}

long ShmemInode::Fallocate(int mode, loff_t offset, loff_t len) {
  if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) != 0) return -EOPNOTSUPP;
  // vfs_fallocate: a punch must keep the size.
  if ((mode & FALLOC_FL_PUNCH_HOLE) != 0 && (mode & FALLOC_FL_KEEP_SIZE) == 0) return -EOPNOTSUPP;
  if (offset < 0 || len <= 0) return -EINVAL;
  if (offset > MAX_LFS_FILESIZE - len) return -EFBIG;
  absl::MutexLock inode_lock(&rwsem_);
  absl::MutexLock lock(&mu_);
  if ((flags & SHMEM_F_MAPPING_FROZEN) != 0) return -EPERM;
  const loff_t end = offset + len;
  if ((mode & FALLOC_FL_PUNCH_HOLE) != 0) {
    if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0) return -EPERM;
    TruncateRangeLocked(offset, end - 1);
    return 0;
  }
  if ((seals & F_SEAL_GROW) != 0 && end > i_size_read(&vfs_inode)) return -EPERM;
  const unsigned long memcg = CurrentMemcg();
  std::vector<pgoff_t> added;
  const pgoff_t last = static_cast<uint64_t>(end - 1) >> PAGE_SHIFT;
  for (pgoff_t index = static_cast<uint64_t>(offset) >> PAGE_SHIFT; index <= last;) {
    const bool existed = FindLocked(index) != cache_.end();
    struct folio* folio = nullptr;
    const int err = GetFolioLocked(index, SGP_FALLOC, memcg, &folio);
    if (err != 0) {
      // Undo only what this call allocated.
      for (pgoff_t a : added) {
        auto it = cache_.find(a);
        if (it != cache_.end()) DeleteLocked(it);
      }
      return err;
    }
    if (!existed) added.push_back(folio_index(folio));
    index = folio_index(folio) + folio_nr_pages(folio);
  }
  if ((mode & FALLOC_FL_KEEP_SIZE) == 0 && end > i_size_read(&vfs_inode)) {
    i_size_write(&vfs_inode, end);
  }
  return 0;
}

int ShmemInode::AddSeals(struct file* file, unsigned int new_seals) {
  absl::MutexLock inode_lock(&rwsem_);
  absl::MutexLock lock(&mu_);
  if ((seals & F_SEAL_SEAL) != 0) return -EPERM;
  // On an executable memfd F_SEAL_EXEC implies the write seals (W^X); the
  // writable-mapping check below then applies to the implied F_SEAL_WRITE.
  if ((new_seals & F_SEAL_EXEC) != 0 && (vfs_inode.i_mode & 0111) != 0) {
    new_seals |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
  }
  if ((new_seals & F_SEAL_WRITE) != 0 && (seals & F_SEAL_WRITE) == 0) {
    // mapping_deny_writable, then memfd_wait_for_pins (which gives up at
    // once here: nothing drops a pin while we wait).
    if (mmap_writable_ > 0) return -EBUSY;
    for (const auto& [index, folio] : cache_) {
      if (folio_ref_count(folio) > 1) return -EBUSY;
    }
    --mmap_writable_;
  }
  seals |= new_seals;
  return 0;
}

}  // namespace khosim::fs

// What the parts of lib/fs's shmem share: the state behind a mapping, the
// helpers of the page cache, and the inode callbacks. Private to lib/fs.
#ifndef KHOSIM_LIB_FS_SHMEM_INTERNAL_H_
#define KHOSIM_LIB_FS_SHMEM_INTERNAL_H_

#include <climits>
#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"
#include "khosim/fs/shmem.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/mm/mm.h"

namespace khosim::fs {

struct ShmemMappingState {
  absl::Mutex mu;
  struct file* file ABSL_GUARDED_BY(mu) = nullptr;  // nullptr: unmapped or revoked
  bool revoked ABSL_GUARDED_BY(mu) = false;
  KernelContext* ctx = nullptr;
};

// rw_verify_area's cap on one read or write.
inline size_t MaxRwCount() { return static_cast<size_t>(INT_MAX) & PAGE_MASK; }

// Source of zeros for reading holes.
inline constexpr size_t kZeroBytes = 64 * 1024;
inline const char kZeros[kZeroBytes] = {};

// Pages needed to hold |bytes| (the first page index at or past EOF).
inline uint64_t PagesFor(uint64_t bytes) { return (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT; }

inline char* PageAddress(struct folio* folio, pgoff_t nth) {
  return static_cast<char*>(folio_address(folio)) + nth * PAGE_SIZE;
}

inline bool InCma(const struct folio* folio) {
  return mm::Mm::Current().pages().PageblockType(Pfn(folio_pfn(folio))) == mm::MigrateType::kCma;
}

inline void PinFolio(struct folio* folio) {
  folio_get(folio);
  __atomic_fetch_add(&folio->page.pincount, 1, __ATOMIC_ACQ_REL);
  khosim_folio_test_and_set(folio, PG_pinned);
}

// The shmem inode's i_evict and i_free.
void ShmemEvictInode(struct inode* inode);
void ShmemFreeInode(struct inode* inode);

}  // namespace khosim::fs

#endif  // KHOSIM_LIB_FS_SHMEM_INTERNAL_H_

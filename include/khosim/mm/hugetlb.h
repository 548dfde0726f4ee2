// Hugetlb: the huge page pools (mm/hugetlb.c), one hstate per supported
// size, filled at boot from the kernel command line.
//
// Sizes: the PMD size (2 MiB with 4 KiB pages) and the PUD size (1 GiB with
// 4 KiB pages), as on x86-64 and arm64; with 16 KiB / 64 KiB pages they
// follow the page-table geometry (32 MiB / 64 GiB, 512 MiB / 4 TiB).
//
// Command line, read in order as the kernel does:
//   hugepagesz=<size>      selects the hstate later words apply to
//   hugepages=<n>          pages for the selected hstate (the default one
//                          if no hugepagesz= came before)
//   default_hugepagesz=<size>
// An unsupported size is logged and ignored ("HugeTLB: unsupported
// hugepagesz=..."), as are its hugepages=.
//
// Boot:
//   ReserveBootmem()  before memblock_free_all: gigantic pages (order above
//                     MAX_PAGE_ORDER, the buddy cannot make them) come from
//                     memblock as RSRV_HUGETLB reservations, which never
//                     overlap KHO scratch and never hold preserved memory;
//                     on failure the pool ends smaller, with a log line.
//   Init()            once the buddy runs (hugetlb_init): the bootmem
//                     reservations become pool folios, and the buddy-sized
//                     pools are filled with alloc_pages.
// |preserved| pages per hstate (SetPreservedOnBoot, read from the previous
// kernel's hugetlb FLB before ReserveBootmem) are not allocated at boot:
// they rejoin the pool when their owner retrieves them (AdoptFolio) or
// releases them at finish, so the pool does not end up over-allocated.
//
// A pool folio is a compound folio of the hstate's order with PG_hugetlb
// set. Free pool folios have refcount 0; Alloc hands one out with refcount
// 1, zeroed; folio_put dropping the last reference returns it here
// (FreeFolio), not to the buddy.
//
// Locking: one mutex, innermost (callers may hold page-cache locks).
#ifndef KHOSIM_MM_HUGETLB_H_
#define KHOSIM_MM_HUGETLB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/types.h"
#include "khosim/linux/mm_types.h"

namespace khosim::mm {

class Mm;

// The huge page orders of a kernel with |geometry|: the PMD order, then the
// PUD order (one page-table level maps page_size / 8 entries).
std::vector<unsigned> HugePageOrders(const PageGeometry& geometry);

// What a command line asks of the pools, read as hugetlb_setup reads it
// (see the file comment): one entry per HugePageOrders() size. The
// default size is always registered; |log| holds a line per word ignored.
struct HugetlbRequest {
  struct Pool {
    uint64_t size = 0;
    bool registered = false;  // an hstate exists: MFD_HUGETLB of this size works
    uint64_t requested = 0;   // hugepages=
  };
  std::vector<Pool> pools;
  int default_pool = 0;
  std::vector<std::string> log;
};
HugetlbRequest ParseHugetlbCmdline(absl::string_view cmdline, const PageGeometry& geometry);

struct HstateInfo {
  unsigned order = 0;
  uint64_t size = 0;
  std::string name;  // "hugepages-2048kB", as in sysfs
  // The default size always, others when a hugepagesz= names them (the
  // kernel only creates an hstate, and a hugetlbfs mount, for those).
  bool registered = false;
  uint64_t requested = 0;      // hugepages= for this size
  uint64_t preserved = 0;      // left out at boot for the previous kernel's folios
  uint64_t nr_huge_pages = 0;  // pool folios, in use or free
  uint64_t free_huge_pages = 0;
  uint64_t bootmem_failures = 0;  // gigantic reservations memblock refused
};

class Hugetlb {
 public:
  explicit Hugetlb(Mm& mm);
  Hugetlb(const Hugetlb&) = delete;
  Hugetlb& operator=(const Hugetlb&) = delete;

  // Applies ParseHugetlbCmdline's request, logging the words it ignores.
  void ParseCmdline(absl::string_view cmdline);
  void SetPreservedOnBoot(unsigned order, uint64_t pages);
  void ReserveBootmem();
  void Init();

  // The hstate of |bytes| / |order| (an index for the calls below), or -1.
  int HstateForSize(uint64_t bytes) const;
  int HstateForOrder(unsigned order) const;
  int default_hstate() const { return default_; }
  // The PMD and the PUD size.
  static constexpr int kNumHstates = 2;
  HstateInfo Info(int hstate) const ABSL_LOCKS_EXCLUDED(mu_);

  // A zeroed pool folio with one reference (node |nid| preferred, any node
  // if -1 or that node has none), or nullptr when the pool is empty.
  struct folio* Alloc(int hstate, int nid = -1) ABSL_LOCKS_EXCLUDED(mu_);
  // folio_put's destructor for PG_hugetlb folios (refcount already 0).
  void FreeFolio(struct folio* folio) ABSL_LOCKS_EXCLUDED(mu_);
  // A folio of the hstate's order that did not come from this pool (a
  // preserved huge folio kernel B restored) joins it, in use, with the
  // reference the caller holds.
  void AdoptFolio(struct folio* folio) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Hstate {
    HstateInfo info;
    std::vector<struct folio*> free_list;  // refcount 0, PG_hugetlb
    std::vector<PhysAddr> bootmem;         // gigantic reservations
  };

  void PrepPoolFolio(struct folio* folio, unsigned order);

  Mm& mm_;
  KernelContext& ctx_;
  int default_ = -1;
  mutable absl::Mutex mu_;
  std::vector<Hstate> hstates_ ABSL_GUARDED_BY(mu_);
  bool bootmem_done_ ABSL_GUARDED_BY(mu_) = false;  // ReserveBootmem ran
};

}  // namespace khosim::mm

#endif  // KHOSIM_MM_HUGETLB_H_

// Machine-side helpers of the fuzz targets that drive a real Machine:
// the small machine they boot, the ledger of what kernel A preserved (to
// account for every page across kernel B's restores), and the patch
// records of container_fuzz_format.h.
#ifndef KHOSIM_TESTS_FUZZ_CONTAINER_FUZZ_MACHINE_H_
#define KHOSIM_TESTS_FUZZ_CONTAINER_FUZZ_MACHINE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "container_fuzz_format.h"
#include "fuzz_util.h"
#include "khosim/base/panic.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim::fuzz {

// A small machine booted with kho=on, as kho_incoming_fuzzer uses it: 256
// MiB, 4 KiB pages, free memory poisoned.
inline MachineConfig SmallKhoMachine() {
  MachineConfig c;
  c.ram = 256 * kMiB;
  c.nodes = 1;
  c.seed = 11;
  c.cmdline = "kho=on";
  c.kernel_image_size = 4 * kMiB;
  c.early_alloc_bytes_per_node = 1 * kMiB;
  c.low_early_alloc_bytes = 1 * kMiB;
  return c;
}

// The machine of the container targets, from their mode byte: page size
// (bits 0-1), scrub policy (bit 2), a kFuzzHoleBytes hole, and the smallest
// RAM whose boot memory (scratch, aligned to the largest buddy block) still
// fits: 64 MiB with 4 KiB pages, 128 MiB with 16 KiB, 2 GiB with 64 KiB
// (32768 struct pages, as many as 128 MiB of 4 KiB pages). A 512 KiB kernel
// image keeps each kexec's image copy cheap: boot plus kexec is about 2 ms
// at 4 KiB under ASan.
// |ram|, if not 0, replaces that size.
inline MachineConfig ContainerFuzzMachine(uint8_t mode, uint64_t ram = 0) {
  MachineConfig c = SmallKhoMachine();
  c.page_size = FuzzPageSize(mode);
  c.ram = c.page_size == 4096 ? 64 * kMiB : c.page_size == 16384 ? 128 * kMiB : 2 * kGiB;
  if (ram != 0) c.ram = ram;
  c.hole = kFuzzHoleBytes;
  c.scrub = (mode & kModeInaccessible) != 0 ? mm::FreeMemoryPolicy::kInaccessible
                                            : mm::FreeMemoryPolicy::kPoison;
  c.kernel_image_size = 512 * kKiB;
  return c;
}

// KHOSIM_FUZZ_VERBOSE=1: the machine-driving targets print one line per
// input (for reading a corpus, not for fuzzing).
inline bool Verbose() {
  static const bool verbose = std::getenv("KHOSIM_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

// Every block kernel A preserved, read from its radix tree just before the
// kexec. In kernel B each still carries the KHO tag until someone restores
// it, so the tagged pages and the allocator's free pages together account
// for every page of them: a restore that frees a block moves its pages
// from one to the other, and a page that leaves both is leaked.
class PreservedLedger {
 public:
  // Kernel A, after the last preservation.
  void Record(kho::Kho& kho) {
    blocks_.clear();
    const kho::RadixGeometry& g = kho.out_tree()->geometry();
    kho.out_tree()->Walk([&](uint64_t key) {
      PhysAddr pa;
      unsigned order = 0;
      if (kho::DecodeKey(g, key, &pa, &order)) blocks_.emplace_back(pa.value(), order);
      return 0;
    });
  }

  // Kernel B: pages of blocks still waiting to be restored.
  uint64_t TaggedPages(const kho::Kho& kho) const {
    uint64_t n = 0;
    for (const auto& [pa, order] : blocks_) {
      unsigned o = 0;
      if (kho.IsPreservedHead(PhysAddr(pa), &o)) n += uint64_t{1} << o;
    }
    return n;
  }

  size_t size() const { return blocks_.size(); }

 private:
  std::vector<std::pair<uint64_t, unsigned>> blocks_;
};

// Free pages plus tagged pages: constant across any kernel-B code that
// only restores and frees preserved blocks.
struct PageAccount {
  uint64_t free = 0;
  uint64_t tagged = 0;
  static PageAccount Take(Machine& m, const PreservedLedger& ledger) {
    return {m.kernel().mm().pages().FreePages(), ledger.TaggedPages(m.kernel().kho())};
  }
  // Pages that moved from "preserved" to "free".
  int64_t FreedSince(const PageAccount& before) const {
    return static_cast<int64_t>(free) - static_cast<int64_t>(before.free);
  }
  int64_t RestoredSince(const PageAccount& before) const {
    return static_cast<int64_t>(before.tagged) - static_cast<int64_t>(tagged);
  }
};

// Kernel A: the special references of container_fuzz_format.h, in
// RefSpecial order. |copy_of| is a container page whose bytes the
// unpreserved and order-1 copies repeat, so that a pointer to a copy is
// wrong only in where it points.
inline std::vector<uint64_t> MakeSpecialRefs(Machine& m, uint64_t blob_page, uint64_t copy_of) {
  const uint64_t page = PAGE_SIZE;
  std::vector<uint64_t> refs(kRefSpecials, 0);
  refs[kRefBlob] = blob_page;
  struct page* p = alloc_page(GFP_KERNEL);
  KHOSIM_FUZZ_CHECK(p != nullptr);
  std::memcpy(page_address(p), phys_to_virt(copy_of), page);
  refs[kRefUnpreserved] = page_to_phys(p);
  auto* big = static_cast<uint8_t*>(kho_alloc_preserve(2 * page));
  KHOSIM_FUZZ_CHECK(!IS_ERR_OR_NULL(big));
  std::memcpy(big, phys_to_virt(copy_of), page);
  std::memcpy(big + page, phys_to_virt(copy_of), page);
  refs[kRefOrder1Head] = virt_to_phys(big);
  refs[kRefOrder1Tail] = virt_to_phys(big) + page;
  refs[kRefBelowRam] = 0x1000;
  const hw::MemoryLayout& layout = m.memory().layout();
  // The hole (if any) is the gap between the first two RAM ranges.
  refs[kRefHole] = layout.ranges().size() > 1 ? layout.ranges()[0].end().value() : 0x2000;
  refs[kRefRamEnd] = layout.end().value();
  refs[kRefFar] = uint64_t{1} << 45;
  refs[kRefZero] = 0;
  return refs;
}

// Applies the patch records of container_fuzz_format.h to kernel A's
// pages and remembers which bytes really changed.
class ContainerPatcher {
 public:
  ContainerPatcher(std::vector<uint64_t> pages, std::vector<uint64_t> refs,
                   std::vector<uint64_t> numbers, uint64_t page_size)
      : pages_(std::move(pages)),
        refs_(std::move(refs)),
        numbers_(std::move(numbers)),
        page_size_(page_size) {}

  void Apply(InputReader& in) {
    for (int i = 0; i < kMaxContainerPatches && !in.empty(); ++i) {
      const uint64_t pa = pages_[PickIndex(in.U8(), pages_.size())];
      const uint8_t kind = in.U8() & 3;
      uint64_t offset = in.U16() % page_size_;
      if (kind == kPatchBytes) {
        const size_t len = in.U8();
        size_t got = 0;
        const uint8_t* bytes = in.Bytes(len, &got);
        Write(pa, offset, bytes, std::min<uint64_t>(got, page_size_ - offset));
        continue;
      }
      offset &= ~uint64_t{7};
      uint64_t value = 0;
      if (kind == kPatchPointer) {
        const uint8_t ref = in.U8();
        const auto delta = static_cast<int8_t>(in.U8());
        value = refs_[PickIndex(ref, refs_.size())] + static_cast<uint64_t>(int64_t{delta});
      } else if (kind == kPatchNumber) {
        value = numbers_[in.U8() % numbers_.size()];
      } else {
        value = in.U64();
      }
      uint8_t bytes[8];
      std::memcpy(bytes, &value, 8);
      Write(pa, offset, bytes, 8);
    }
  }

  bool changed() const { return !changes_.empty(); }
  // Did any byte of [pa + offset, pa + offset + len) change?
  bool Changed(uint64_t pa, uint64_t offset, uint64_t len) const {
    for (const auto& [page, off] : changes_) {
      if (page == pa && off >= offset && off < offset + len) return true;
    }
    return false;
  }
  bool PageChanged(uint64_t pa) const { return Changed(pa, 0, page_size_); }
  // Number of patch records that changed something (for the verbose line).
  size_t changed_bytes() const { return changes_.size(); }

 private:
  void Write(uint64_t pa, uint64_t offset, const uint8_t* bytes, uint64_t n) {
    auto* dst = static_cast<uint8_t*>(phys_to_virt(pa)) + offset;
    for (uint64_t i = 0; i < n; ++i) {
      if (dst[i] != bytes[i]) {
        dst[i] = bytes[i];
        changes_.emplace_back(pa, offset + i);
      }
    }
  }

  std::vector<uint64_t> pages_;
  std::vector<uint64_t> refs_;
  std::vector<uint64_t> numbers_;
  uint64_t page_size_;
  std::vector<std::pair<uint64_t, uint64_t>> changes_;
};

// Host copies of kernel A's pages as they were at the kexec (after the
// patches): what kernel B must read from them.
class PageSnapshots {
 public:
  void Take(uint64_t pa, uint64_t page_size) {
    const auto* p = static_cast<const uint8_t*>(phys_to_virt(pa));
    pages_[pa].assign(p, p + page_size);
  }
  // The bytes at pa + offset, or nullptr if the page was not recorded.
  const uint8_t* At(uint64_t pa, uint64_t offset) const {
    auto it = pages_.find(pa);
    return it == pages_.end() ? nullptr : it->second.data() + offset;
  }

 private:
  std::map<uint64_t, std::vector<uint8_t>> pages_;
};

// A KernelPanic where the code documents none is a finding: print it and
// abort like a broken property.
#define KHOSIM_FUZZ_NO_PANIC(body)                                                                 \
  do {                                                                                             \
    try {                                                                                          \
      body;                                                                                        \
    } catch (const ::khosim::KernelPanic& e) {                                                     \
      std::fprintf(stderr, "%s:%d: fuzz property failed: unexpected kernel panic: %s\n", __FILE__, \
                   __LINE__, e.what());                                                            \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)

}  // namespace khosim::fuzz

#endif  // KHOSIM_TESTS_FUZZ_CONTAINER_FUZZ_MACHINE_H_

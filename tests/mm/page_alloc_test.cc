// Unit tests for PageAllocator: exact split and merge, exhaustion, node
// preference, pageblock types (CMA), compound pages, __GFP_ZERO, the
// "alloc_pages" fault point, WARN and BUG paths, AllocRange, FindFreeRun,
// 16 KiB / 64 KiB geometries, a randomized run against an oracle, and the
// kInaccessible free-memory policy.
#include "khosim/mm/page_alloc.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "khosim/base/kernel_context.h"
#include "khosim/base/panic.h"
#include "khosim/base/types.h"
#include "khosim/hw/memory_layout.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/linux/atomic.h"
#include "khosim/linux/gfp.h"
#include "khosim/linux/mm_types.h"
#include "khosim/mm/memmap.h"
#include "khosim/testing/fake_kernel_env.h"

namespace khosim::mm {
namespace {

using namespace khosim::literals;
using Counts = std::vector<std::vector<uint64_t>>;

constexpr Pfn kNoLimit{~uint64_t{0}};

// One machine's memory, memmap and allocator, with every RAM range handed
// to the allocator unless |add_ram| is false.
struct Sim {
  explicit Sim(hw::MemoryLayout layout, FreeMemoryPolicy policy = FreeMemoryPolicy::kPoison,
               bool add_ram = true)
      : ctx(env, 1, PageGeometry::ForPageSize(layout.page_size()), BootParams{}) {
    auto created = hw::PhysicalMemory::Create(std::move(layout));
    if (!created.ok()) {
      ADD_FAILURE() << created.status();
      std::abort();
    }
    memory = std::move(*created);
    memmap = std::make_unique<Memmap>(geometry().PhysToPfn(memory->layout().end()).value());
    alloc = std::make_unique<PageAllocator>(ctx, *memory, *memmap, policy);
    if (add_ram) AddAllRam();
  }

  void AddAllRam() {
    for (const hw::RamRange& r : memory->layout().ranges()) {
      alloc->AddFreeRange(geometry().PhysToPfn(r.start), geometry().PhysToPfn(r.end()), r.nid);
    }
  }

  const PageGeometry& geometry() const { return ctx.geometry(); }
  uint64_t PfnOf(const struct page* page) const { return memmap->PageToPfn(page).value(); }
  struct page* Page(uint64_t pfn) const {
    return memmap->PfnToPage(Pfn(pfn));
  }
  uint8_t* Bytes(uint64_t pfn) const { return memory->Virt(geometry().PfnToPhys(Pfn(pfn))); }
  int NodeOf(uint64_t pfn) const { return memory->layout().NodeOf(geometry().PfnToPhys(Pfn(pfn))); }
  bool AllFree(uint64_t start, uint64_t n) const {
    for (uint64_t p = start; p < start + n; ++p) {
      if (!alloc->IsFree(Pfn(p))) return false;
    }
    return true;
  }
  bool NoneFree(uint64_t start, uint64_t n) const {
    for (uint64_t p = start; p < start + n; ++p) {
      if (alloc->IsFree(Pfn(p))) return false;
    }
    return true;
  }
  // Frees [start, start+n) in naturally aligned blocks.
  void FreeRange(uint64_t start, uint64_t n) {
    uint64_t p = start;
    while (p < start + n) {
      unsigned order = 0;
      while (IsAligned(p, uint64_t{2} << order) && p + (uint64_t{2} << order) <= start + n) {
        ++order;
      }
      alloc->Free(Page(p), order);
      p += uint64_t{1} << order;
    }
  }

  testing::FakeKernelEnv env;
  KernelContext ctx;
  std::unique_ptr<hw::PhysicalMemory> memory;
  std::unique_ptr<Memmap> memmap;
  std::unique_ptr<PageAllocator> alloc;
};

// A single range [start, start+size) on node 0.
hw::MemoryLayout OneRange(uint64_t start, uint64_t size, uint64_t page_size = 4096) {
  return hw::MemoryLayout::FromRanges({{PhysAddr(start), size, 0}}, page_size);
}

// Counts with exactly one block of each listed order on a single node.
Counts OneEach(unsigned max_order, std::vector<unsigned> orders) {
  Counts c(1, std::vector<uint64_t>(max_order + 1, 0));
  for (unsigned o : orders) ++c[0][o];
  return c;
}

TEST(PageAllocTest, FreshLayoutIsCutIntoLargestAlignedBlocks) {
  // RAM [2 MiB, 66 MiB) = pfns [512, 16896): an order-9 block at each end
  // and 15 order-10 blocks between.
  Sim sim(hw::MemoryLayout::Uniform(64_MiB, 1, 4096));
  Counts expected(1, std::vector<uint64_t>(11, 0));
  expected[0][9] = 2;
  expected[0][10] = 15;
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), expected);
  EXPECT_EQ(sim.alloc->FreePages(), 16384u);
  EXPECT_EQ(sim.alloc->ManagedPages(), 16384u);
  EXPECT_TRUE(sim.alloc->Validate().ok());
  EXPECT_FALSE(sim.alloc->IsFree(Pfn(511)));
  EXPECT_TRUE(sim.alloc->IsFree(Pfn(512)));
  EXPECT_TRUE(sim.alloc->IsFree(Pfn(16895)));
  EXPECT_FALSE(sim.alloc->IsFree(Pfn(16896)));
}

TEST(PageAllocTest, SplitAndMergeExactly) {
  Sim sim(OneRange(4_MiB, 4_MiB));  // pfns [1024, 2048): one order-10 block
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));

  struct page* p = sim.alloc->Alloc(GFP_KERNEL, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(sim.PfnOf(p), 1024u);
  EXPECT_EQ(atomic_read(&p->_refcount), 1);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(sim.alloc->FreePages(), 1023u);
  EXPECT_TRUE(sim.alloc->Validate().ok());
  // The remainder halves sit right above the page: 1025 (order 0), 1026
  // (order 1), ..., 1536 (order 9).
  EXPECT_TRUE(sim.alloc->IsFree(Pfn(1025)));
  EXPECT_FALSE(sim.alloc->IsFree(Pfn(1024)));

  // The next order-0 request takes the order-0 remainder, not a new split.
  struct page* q = sim.alloc->Alloc(GFP_KERNEL, 0);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(sim.PfnOf(q), 1025u);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {1, 2, 3, 4, 5, 6, 7, 8, 9}));

  sim.alloc->Free(p, 0);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  sim.alloc->Free(q, 0);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
  EXPECT_EQ(sim.alloc->FreePages(), 1024u);
  EXPECT_TRUE(sim.alloc->Validate().ok());

  // A higher order splits the same way from its own order up.
  struct page* r = sim.alloc->Alloc(GFP_KERNEL, 3);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(sim.PfnOf(r), 1024u);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {3, 4, 5, 6, 7, 8, 9}));
  sim.alloc->Free(r, 3);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
}

TEST(PageAllocTest, AdjacentFreeRangesCoalesce) {
  Sim sim(OneRange(4_MiB, 4_MiB), FreeMemoryPolicy::kPoison, /*add_ram=*/false);
  sim.alloc->AddFreeRange(Pfn(1024), Pfn(1500), 0);
  EXPECT_TRUE(sim.alloc->Validate().ok());
  // [1024, 1500) = 256 + 128 + 64 + 16 + 8 + 4.
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {8, 7, 6, 4, 3, 2}));
  sim.alloc->AddFreeRange(Pfn(1500), Pfn(2048), 0);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
  EXPECT_EQ(sim.alloc->ManagedPages(), 1024u);
  EXPECT_TRUE(sim.alloc->Validate().ok());
}

TEST(PageAllocTest, AddFreeRangeRefusesNonRamAndPanicsOnOverlap) {
  Sim sim(OneRange(4_MiB, 4_MiB), FreeMemoryPolicy::kPoison, /*add_ram=*/false);
  sim.alloc->AddFreeRange(Pfn(512), Pfn(1100), 0);   // starts in the hole
  sim.alloc->AddFreeRange(Pfn(1024), Pfn(1100), 1);  // no node 1
  EXPECT_EQ(sim.ctx.WarnCount(), 2u);
  EXPECT_EQ(sim.alloc->FreePages(), 0u);
  EXPECT_EQ(sim.alloc->ManagedPages(), 0u);
  sim.alloc->AddFreeRange(Pfn(1024), Pfn(1100), 0);
  EXPECT_THROW(sim.alloc->AddFreeRange(Pfn(1090), Pfn(1200), 0), KernelPanic);
}

TEST(PageAllocTest, ExhaustionAndRecovery) {
  Sim sim(hw::MemoryLayout::Uniform(16_MiB, 1, 4096));
  const uint64_t initial = sim.alloc->FreePages();
  const Counts initial_counts = sim.alloc->FreeBlockCounts();
  for (unsigned order : {0u, 2u, 9u}) {
    std::vector<struct page*> pages;
    std::set<uint64_t> pfns;
    while (struct page* p = sim.alloc->Alloc(GFP_KERNEL, order)) {
      pages.push_back(p);
      const uint64_t pfn = sim.PfnOf(p);
      EXPECT_TRUE(IsAligned(pfn, uint64_t{1} << order));
      EXPECT_TRUE(pfns.insert(pfn).second);
    }
    EXPECT_EQ(pages.size() << order, initial) << "order " << order;
    EXPECT_EQ(sim.alloc->FreePages(), 0u);
    EXPECT_TRUE(sim.alloc->Validate().ok());
    EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL, 0), nullptr);
    // Free in a scrambled order: the result must not depend on it.
    std::mt19937_64 rng(order);
    std::shuffle(pages.begin(), pages.end(), rng);
    for (struct page* p : pages) sim.alloc->Free(p, order);
    EXPECT_TRUE(sim.alloc->Validate().ok());
    EXPECT_EQ(sim.alloc->FreePages(), initial);
    EXPECT_EQ(sim.alloc->FreeBlockCounts(), initial_counts);
  }
}

TEST(PageAllocTest, NodePreferenceFallbackAndThisNode) {
  // Node 0: [2 MiB, 34 MiB), node 1: [34 MiB, 66 MiB).
  Sim sim(hw::MemoryLayout::Uniform(64_MiB, 2, 4096));
  const uint64_t node1_pages = sim.alloc->FreePages(1);
  EXPECT_EQ(node1_pages, 8192u);
  EXPECT_EQ(sim.alloc->FreePages(0), 8192u);

  struct page* local = sim.alloc->Alloc(GFP_KERNEL, 0);
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(sim.NodeOf(sim.PfnOf(local)), 0);
  struct page* remote = sim.alloc->Alloc(GFP_KERNEL, 0, 1);
  ASSERT_NE(remote, nullptr);
  EXPECT_EQ(sim.NodeOf(sim.PfnOf(remote)), 1);
  EXPECT_EQ(sim.PfnOf(remote), 34_MiB / 4096);

  // Drain node 1 with __GFP_THISNODE.
  std::vector<struct page*> node1 = {remote};
  while (struct page* p = sim.alloc->Alloc(GFP_KERNEL | __GFP_THISNODE, 4, 1)) {
    EXPECT_EQ(sim.NodeOf(sim.PfnOf(p)), 1);
    node1.push_back(p);
  }
  // One order-0 page was taken first: 15 pages stay free in small blocks.
  EXPECT_EQ(sim.alloc->FreePages(1), 15u);
  while (struct page* p = sim.alloc->Alloc(GFP_KERNEL | __GFP_THISNODE, 0, 1)) {
    node1.push_back(p);
  }
  EXPECT_EQ(sim.alloc->FreePages(1), 0u);
  EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL | __GFP_THISNODE, 0, 1), nullptr);
  // Without __GFP_THISNODE the request falls back to node 0.
  struct page* fallback = sim.alloc->Alloc(GFP_KERNEL, 0, 1);
  ASSERT_NE(fallback, nullptr);
  EXPECT_EQ(sim.NodeOf(sim.PfnOf(fallback)), 0);
  // nid -1 with __GFP_THISNODE means node 0 only.
  struct page* zero = sim.alloc->Alloc(GFP_KERNEL | __GFP_THISNODE, 0, -1);
  ASSERT_NE(zero, nullptr);
  EXPECT_EQ(sim.NodeOf(sim.PfnOf(zero)), 0);
  // A node that does not exist WARNs and is treated as the local node.
  struct page* bogus = sim.alloc->Alloc(GFP_KERNEL, 0, 7);
  ASSERT_NE(bogus, nullptr);
  EXPECT_EQ(sim.NodeOf(sim.PfnOf(bogus)), 0);
  EXPECT_EQ(sim.ctx.WarnCount(), 1u);

  EXPECT_TRUE(sim.alloc->Validate().ok());
  sim.alloc->Free(local, 0);
  sim.alloc->Free(fallback, 0);
  sim.alloc->Free(zero, 0);
  sim.alloc->Free(bogus, 0);
  for (size_t i = 0; i < node1.size(); ++i) {
    const bool big = node1[i] != remote && i <= (node1_pages - 16) / 16;
    sim.alloc->Free(node1[i], big ? 4 : 0);
  }
  EXPECT_TRUE(sim.alloc->Validate().ok());
  EXPECT_EQ(sim.alloc->FreePages(0), 8192u);
  EXPECT_EQ(sim.alloc->FreePages(1), 8192u);
}

TEST(PageAllocTest, CmaPageblocksServeOnlyMovable) {
  // pfns [1024, 3072); [1024, 2048) is CMA.
  Sim sim(OneRange(4_MiB, 8_MiB), FreeMemoryPolicy::kPoison, /*add_ram=*/false);
  for (uint64_t pfn = 1024; pfn < 2048; pfn += 512) {
    sim.alloc->SetPageblockType(Pfn(pfn), MigrateType::kCma);
  }
  sim.AddAllRam();
  EXPECT_EQ(sim.alloc->PageblockType(Pfn(1024)), MigrateType::kCma);
  EXPECT_EQ(sim.alloc->PageblockType(Pfn(2047)), MigrateType::kCma);
  EXPECT_EQ(sim.alloc->PageblockType(Pfn(2048)), MigrateType::kMovable);
  EXPECT_TRUE(sim.alloc->Validate().ok());

  // Movable prefers non-CMA memory even though CMA has lower pfns.
  struct page* movable = sim.alloc->Alloc(GFP_HIGHUSER_MOVABLE, 0);
  ASSERT_NE(movable, nullptr);
  EXPECT_EQ(sim.PfnOf(movable), 2048u);
  sim.alloc->Free(movable, 0);

  std::vector<struct page*> unmovable;
  while (struct page* p = sim.alloc->Alloc(GFP_KERNEL, 0)) {
    EXPECT_GE(sim.PfnOf(p), 2048u);
    unmovable.push_back(p);
  }
  EXPECT_EQ(unmovable.size(), 1024u);
  EXPECT_EQ(sim.alloc->Alloc(__GFP_RECLAIMABLE, 0), nullptr);
  EXPECT_EQ(sim.alloc->FreePages(), 1024u);

  // Only movable requests reach CMA.
  struct page* cma = sim.alloc->Alloc(GFP_HIGHUSER_MOVABLE, 9);
  ASSERT_NE(cma, nullptr);
  EXPECT_EQ(sim.PfnOf(cma), 1024u);
  sim.alloc->Free(cma, 9);
  for (struct page* p : unmovable) sim.alloc->Free(p, 0);
  EXPECT_TRUE(sim.alloc->Validate().ok());
  Counts expected(1, std::vector<uint64_t>(11, 0));
  expected[0][10] = 2;
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), expected);
}

TEST(PageAllocTest, BuddiesOfDifferentPageblockTypesDoNotMerge) {
  Sim sim(OneRange(4_MiB, 4_MiB), FreeMemoryPolicy::kPoison, /*add_ram=*/false);
  sim.alloc->SetPageblockType(Pfn(1024), MigrateType::kCma);
  sim.AddAllRam();
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {9, 9}));
  EXPECT_TRUE(sim.alloc->Validate().ok());
  // Freeing a piece of the movable half does not merge across either.
  struct page* p = sim.alloc->Alloc(GFP_KERNEL, 9);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(sim.PfnOf(p), 1536u);
  sim.alloc->Free(p, 9);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {9, 9}));
}

TEST(PageAllocTest, SetPageblockTypeMovesFreeBlocks) {
  Sim sim(OneRange(4_MiB, 4_MiB));
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
  // Retyping half of a free order-10 block splits it at the pageblock.
  sim.alloc->SetPageblockType(Pfn(1600), MigrateType::kCma);
  EXPECT_EQ(sim.alloc->PageblockType(Pfn(1536)), MigrateType::kCma);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {9, 9}));
  EXPECT_TRUE(sim.alloc->Validate().ok());

  struct page* p = sim.alloc->Alloc(GFP_KERNEL, 9);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(sim.PfnOf(p), 1024u);
  EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL, 0), nullptr);  // only CMA left

  // Retyping a partly used pageblock moves its free blocks as they are.
  struct page* q = sim.alloc->Alloc(GFP_HIGHUSER_MOVABLE, 0);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(sim.PfnOf(q), 1536u);
  sim.alloc->SetPageblockType(Pfn(1536), MigrateType::kUnmovable);
  EXPECT_TRUE(sim.alloc->Validate().ok());
  struct page* r = sim.alloc->Alloc(GFP_KERNEL, 0);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(sim.PfnOf(r), 1537u);
  sim.alloc->Free(r, 0);
  sim.alloc->Free(q, 0);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {9}));

  // Once the types agree again the halves merge.
  sim.alloc->SetPageblockType(Pfn(1536), MigrateType::kMovable);
  sim.alloc->Free(p, 9);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
  EXPECT_TRUE(sim.alloc->Validate().ok());

  sim.alloc->SetPageblockType(Pfn(1 << 20), MigrateType::kCma);  // past the memmap
  sim.alloc->SetPageblockType(Pfn(1024), MigrateType::kCount);
  EXPECT_EQ(sim.ctx.WarnCount(), 2u);
}

TEST(PageAllocTest, CompoundPagesLinkTailsToHead) {
  Sim sim(OneRange(4_MiB, 4_MiB));
  struct page* head = sim.alloc->Alloc(GFP_KERNEL | __GFP_COMP, 4);
  ASSERT_NE(head, nullptr);
  EXPECT_NE(head->flags & (1UL << PG_head), 0u);
  EXPECT_EQ(head->compound_order, 4);
  EXPECT_EQ(head->compound_head, 0u);
  EXPECT_EQ(atomic_read(&head->_refcount), 1);
  for (int i = 1; i < 16; ++i) {
    EXPECT_EQ(head[i].compound_head, reinterpret_cast<unsigned long>(head) | 1UL);
    EXPECT_EQ(atomic_read(&head[i]._refcount), 0);
    EXPECT_EQ(head[i].flags & (1UL << PG_head), 0u);
  }
  head->private_data = 0x1234;
  head->memcg = 7;
  sim.alloc->Free(head, 4);
  EXPECT_EQ(head->flags, 0u);
  EXPECT_EQ(head->compound_order, 0);
  EXPECT_EQ(head->private_data, 0u);
  EXPECT_EQ(head->memcg, 0u);
  for (int i = 1; i < 16; ++i) EXPECT_EQ(head[i].compound_head, 0u);

  // Without __GFP_COMP only the head is set up; order 0 is never compound.
  struct page* plain = sim.alloc->Alloc(GFP_KERNEL, 2);
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->flags, 0u);
  EXPECT_EQ(plain[1].compound_head, 0u);
  struct page* single = sim.alloc->Alloc(GFP_KERNEL | __GFP_COMP, 0);
  ASSERT_NE(single, nullptr);
  EXPECT_EQ(single->flags, 0u);
  sim.alloc->Free(plain, 2);
  sim.alloc->Free(single, 0);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
}

TEST(PageAllocTest, GfpZeroReturnsZeroedMemory) {
  Sim sim(OneRange(4_MiB, 4_MiB));
  struct page* p = sim.alloc->Alloc(GFP_KERNEL, 1);
  ASSERT_NE(p, nullptr);
  const uint64_t pfn = sim.PfnOf(p);
  std::memset(sim.Bytes(pfn), 0x5a, 2 * 4096);
  sim.alloc->Free(p, 1);
  struct page* z = sim.alloc->Alloc(GFP_KERNEL | __GFP_ZERO, 1);
  ASSERT_EQ(z, p);  // lowest pfn first: the same block comes back
  const uint8_t* bytes = sim.Bytes(pfn);
  EXPECT_TRUE(std::all_of(bytes, bytes + 2 * 4096, [](uint8_t b) { return b == 0; }));
  sim.alloc->Free(z, 1);
}

TEST(PageAllocTest, AllocPagesFaultPoint) {
  Sim sim(OneRange(4_MiB, 4_MiB));
  sim.env.fail_at["alloc_pages"] = 2;
  struct page* a = sim.alloc->Alloc(GFP_KERNEL, 0);
  EXPECT_NE(a, nullptr);
  EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL, 0), nullptr);
  struct page* c = sim.alloc->Alloc(GFP_KERNEL, 0);
  EXPECT_NE(c, nullptr);
  EXPECT_EQ(sim.env.hits["alloc_pages"], 3u);
  EXPECT_EQ(sim.alloc->FreePages(), 1022u);

  sim.env.fail_all["alloc_pages"] = true;
  EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL, 0), nullptr);
  struct page* nofail = sim.alloc->Alloc(GFP_KERNEL | __GFP_NOFAIL, 0);
  EXPECT_NE(nofail, nullptr);
  EXPECT_EQ(sim.env.hits["alloc_pages"], 4u);  // __GFP_NOFAIL is not a hit
  sim.alloc->Free(a, 0);
  sim.alloc->Free(c, 0);
  sim.alloc->Free(nofail, 0);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
}

TEST(PageAllocTest, OrderAboveMaxWarnsUnlessNowarn) {
  Sim sim(hw::MemoryLayout::Uniform(64_MiB, 1, 4096));
  EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL, 11), nullptr);
  EXPECT_EQ(sim.ctx.WarnCount(), 1u);
  EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL | __GFP_NOWARN, 11), nullptr);
  EXPECT_EQ(sim.ctx.WarnCount(), 1u);
  EXPECT_EQ(sim.env.hits["alloc_pages"], 0u);
  struct page* max = sim.alloc->Alloc(GFP_KERNEL, 10);
  ASSERT_NE(max, nullptr);
  sim.alloc->Free(max, 10);
}

TEST(PageAllocTest, DoubleFreePanics) {
  {
    Sim sim(OneRange(4_MiB, 4_MiB));
    struct page* p = sim.alloc->Alloc(GFP_KERNEL, 0);
    ASSERT_NE(p, nullptr);
    sim.alloc->Free(p, 0);
    EXPECT_THROW(sim.alloc->Free(p, 0), KernelPanic);
    EXPECT_TRUE(sim.ctx.panicked());
    EXPECT_TRUE(sim.alloc->Validate().ok());  // the panic changed nothing
  }
  {
    // Freeing a bigger block than was allocated overlaps free neighbours.
    Sim sim(OneRange(4_MiB, 4_MiB));
    struct page* p = sim.alloc->Alloc(GFP_KERNEL, 0);
    ASSERT_NE(p, nullptr);
    EXPECT_THROW(sim.alloc->Free(p, 1), KernelPanic);
  }
  {
    // Freeing one page of a block that is free already.
    Sim sim(OneRange(4_MiB, 4_MiB));
    struct page* p = sim.alloc->Alloc(GFP_KERNEL, 3);
    ASSERT_NE(p, nullptr);
    sim.alloc->Free(p, 3);
    EXPECT_THROW(sim.alloc->Free(p + 5, 0), KernelPanic);
  }
  {
    Sim sim(OneRange(4_MiB, 4_MiB));
    struct page* p = sim.alloc->Alloc(GFP_KERNEL, 2);
    ASSERT_NE(p, nullptr);
    EXPECT_THROW(sim.alloc->Free(p + 1, 1), KernelPanic);          // misaligned
    EXPECT_THROW(sim.alloc->Free(sim.Page(100), 0), KernelPanic);  // in the hole
  }
}

TEST(PageAllocTest, AllocRangeTakesExactlyTheRange) {
  Sim sim(OneRange(4_MiB, 4_MiB));
  ASSERT_TRUE(sim.alloc->AllocRange(Pfn(1100), 300));
  EXPECT_TRUE(sim.AllFree(1024, 76));
  EXPECT_TRUE(sim.NoneFree(1100, 300));
  EXPECT_TRUE(sim.AllFree(1400, 648));
  EXPECT_EQ(sim.alloc->FreePages(), 724u);
  EXPECT_TRUE(sim.alloc->Validate().ok());
  EXPECT_EQ(atomic_read(&sim.Page(1100)->_refcount), 0);

  const Counts before = sim.alloc->FreeBlockCounts();
  EXPECT_FALSE(sim.alloc->AllocRange(Pfn(1050), 100));   // ends inside the taken range
  EXPECT_FALSE(sim.alloc->AllocRange(Pfn(1399), 2));     // starts inside it
  EXPECT_FALSE(sim.alloc->AllocRange(Pfn(1000), 30));    // starts in the hole
  EXPECT_FALSE(sim.alloc->AllocRange(Pfn(2040), 16));    // runs past RAM
  EXPECT_FALSE(sim.alloc->AllocRange(Pfn(1 << 20), 1));  // past the memmap
  EXPECT_FALSE(sim.alloc->AllocRange(Pfn(1500), 0));
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), before);
  EXPECT_EQ(sim.alloc->FreePages(), 724u);

  // A range over many free blocks of different orders.
  ASSERT_TRUE(sim.alloc->AllocRange(Pfn(1025), 75));
  ASSERT_TRUE(sim.alloc->AllocRange(Pfn(1400), 647));
  EXPECT_TRUE(sim.alloc->Validate().ok());
  EXPECT_EQ(sim.alloc->FreePages(), 2u);
  EXPECT_TRUE(sim.alloc->IsFree(Pfn(1024)));
  EXPECT_TRUE(sim.alloc->IsFree(Pfn(2047)));

  sim.FreeRange(1025, 75);
  sim.FreeRange(1100, 300);
  sim.FreeRange(1400, 647);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
  EXPECT_TRUE(sim.alloc->Validate().ok());
}

TEST(PageAllocTest, FreeAboveMaxOrderFreesMaxOrderBlocks) {
  Sim sim(OneRange(8_MiB, 8_MiB));  // pfns [2048, 4096)
  ASSERT_TRUE(sim.alloc->AllocRange(Pfn(2048), 2048));
  EXPECT_EQ(sim.alloc->FreePages(), 0u);
  sim.alloc->Free(sim.Page(2048), 11);
  Counts expected(1, std::vector<uint64_t>(11, 0));
  expected[0][10] = 2;
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), expected);
  EXPECT_TRUE(sim.alloc->Validate().ok());
}

TEST(PageAllocTest, FindFreeRunExactAnswers) {
  Sim sim(OneRange(4_MiB, 4_MiB));  // pfns [1024, 2048)
  Pfn out;
  ASSERT_TRUE(sim.alloc->FindFreeRun(16, 1, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(2032));
  ASSERT_TRUE(sim.alloc->FindFreeRun(16, 64, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(1984));
  ASSERT_TRUE(sim.alloc->FindFreeRun(16, 0, Pfn(0), Pfn(1500), &out));
  EXPECT_EQ(out, Pfn(1484));
  ASSERT_TRUE(sim.alloc->FindFreeRun(1024, 1, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(1024));
  EXPECT_FALSE(sim.alloc->FindFreeRun(1025, 1, Pfn(0), kNoLimit, &out));
  EXPECT_FALSE(sim.alloc->FindFreeRun(16, 1, Pfn(1030), Pfn(1040), &out));
  EXPECT_FALSE(sim.alloc->FindFreeRun(0, 1, Pfn(0), kNoLimit, &out));

  // One used page near the top splits the space; runs span many blocks.
  ASSERT_TRUE(sim.alloc->AllocRange(Pfn(2040), 1));
  ASSERT_TRUE(sim.alloc->FindFreeRun(16, 1, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(2024));
  ASSERT_TRUE(sim.alloc->FindFreeRun(7, 1, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(2041));
  ASSERT_TRUE(sim.alloc->FindFreeRun(1000, 1, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(1040));
  ASSERT_TRUE(sim.alloc->FindFreeRun(1000, 32, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(1024));
  ASSERT_TRUE(sim.alloc->FindFreeRun(900, 64, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(1088));
  EXPECT_FALSE(sim.alloc->FindFreeRun(1000, 2048, Pfn(0), kNoLimit, &out));
  EXPECT_FALSE(sim.alloc->FindFreeRun(1017, 1, Pfn(0), kNoLimit, &out));
  ASSERT_TRUE(sim.alloc->FindFreeRun(10, 1, Pfn(1030), Pfn(1040), &out));
  EXPECT_EQ(out, Pfn(1030));
  EXPECT_EQ(sim.alloc->FreePages(), 1023u);  // nothing taken
}

TEST(PageAllocTest, FindFreeRunAcrossNodesButNotHoles) {
  Sim two(hw::MemoryLayout::Uniform(64_MiB, 2, 4096));
  const uint64_t boundary = 34_MiB / 4096;
  Pfn out;
  ASSERT_TRUE(two.alloc->FindFreeRun(20, 1, Pfn(boundary - 10), Pfn(boundary + 10), &out));
  EXPECT_EQ(out, Pfn(boundary - 10));

  Sim holes(hw::MemoryLayout::FromRanges(
      {{PhysAddr(4_MiB), 4_MiB, 0}, {PhysAddr(12_MiB), 4_MiB, 0}}, 4096));
  EXPECT_FALSE(holes.alloc->FindFreeRun(1025, 1, Pfn(0), kNoLimit, &out));
  ASSERT_TRUE(holes.alloc->FindFreeRun(1024, 1, Pfn(0), kNoLimit, &out));
  EXPECT_EQ(out, Pfn(3072));
  ASSERT_TRUE(holes.alloc->FindFreeRun(1024, 1, Pfn(0), Pfn(3500), &out));
  EXPECT_EQ(out, Pfn(1024));
}

TEST(PageAllocTest, AllocationTraceAboveThreshold) {
  Sim sim(OneRange(4_MiB, 4_MiB));
  struct page* small = sim.alloc->Alloc(GFP_KERNEL, 7);  // 512 KiB
  ASSERT_NE(small, nullptr);
  EXPECT_TRUE(sim.env.events.empty());
  struct page* big = sim.alloc->Alloc(GFP_KERNEL, 8);  // 1 MiB, the threshold
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(sim.env.events, std::vector<std::string>{"alloc/pages"});
  sim.alloc->Free(small, 7);
  sim.alloc->Free(big, 8);
}

TEST(PageAllocTest, ValidateReportsInconsistentCounters) {
  Sim sim(OneRange(4_MiB, 4_MiB));
  EXPECT_TRUE(sim.alloc->Validate().ok());
  sim.alloc->AdjustManagedPages(-1);
  absl::Status status = sim.alloc->Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_NE(status.message().find("managed"), std::string::npos) << status;
}

class LargePageTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(LargePageTest, MaxOrderBlocksSplitAndMerge) {
  const uint64_t page_size = GetParam();
  const PageGeometry g = PageGeometry::ForPageSize(page_size);
  const unsigned max = page_size == 16384 ? 11 : 13;
  ASSERT_EQ(g.max_page_order, max);
  ASSERT_EQ(g.pageblock_order, max);
  const uint64_t block_bytes = page_size << max;  // 32 MiB or 512 MiB
  Sim sim(OneRange(block_bytes, block_bytes, page_size));
  const uint64_t first = block_bytes / page_size;
  Counts one_max(1, std::vector<uint64_t>(max + 1, 0));
  one_max[0][max] = 1;
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), one_max);

  struct page* p = sim.alloc->Alloc(GFP_KERNEL, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(sim.PfnOf(p), first);
  Counts each(1, std::vector<uint64_t>(max + 1, 1));
  each[0][max] = 0;
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), each);
  EXPECT_TRUE(sim.alloc->Validate().ok());
  sim.alloc->Free(p, 0);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), one_max);

  EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL, max + 1), nullptr);
  EXPECT_EQ(sim.ctx.WarnCount(), 1u);
  struct page* whole = sim.alloc->Alloc(GFP_KERNEL | __GFP_COMP, max);
  ASSERT_NE(whole, nullptr);
  EXPECT_EQ(whole->compound_order, max);
  EXPECT_EQ(whole[(uint64_t{1} << max) - 1].compound_head,
            reinterpret_cast<unsigned long>(whole) | 1UL);
  EXPECT_EQ(sim.alloc->FreePages(), 0u);
  sim.alloc->Free(whole, max);

  // One pageblock per max-order block: CMA makes it movable-only.
  sim.alloc->SetPageblockType(Pfn(first), MigrateType::kCma);
  EXPECT_EQ(sim.alloc->Alloc(GFP_KERNEL, 0), nullptr);
  struct page* m = sim.alloc->Alloc(GFP_HIGHUSER_MOVABLE, 3);
  ASSERT_NE(m, nullptr);
  sim.alloc->Free(m, 3);
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), one_max);
  EXPECT_TRUE(sim.alloc->Validate().ok());
}

INSTANTIATE_TEST_SUITE_P(PageSizes, LargePageTest, ::testing::Values(16384, 65536),
                         [](const auto& info) { return std::to_string(info.param / 1024) + "K"; });

// Random allocations and frees checked step by step against a map of the
// blocks handed out.
TEST(PageAllocTest, RandomStressAgainstOracle) {
  Sim sim(hw::MemoryLayout::Uniform(24_MiB, 2, 4096), FreeMemoryPolicy::kPoison,
          /*add_ram=*/false);
  // One CMA pageblock range on node 1.
  const uint64_t cma_start = 16_MiB / 4096;
  for (uint64_t pfn = cma_start; pfn < cma_start + 1024; pfn += 512) {
    sim.alloc->SetPageblockType(Pfn(pfn), MigrateType::kCma);
  }
  sim.AddAllRam();
  const uint64_t total = sim.alloc->FreePages();
  const Counts initial_counts = sim.alloc->FreeBlockCounts();
  std::map<uint64_t, unsigned> allocated;  // head pfn -> order
  uint64_t allocated_pages = 0;

  auto overlaps_allocated = [&](uint64_t start, uint64_t n) {
    auto it = allocated.upper_bound(start + n - 1);
    if (it == allocated.begin()) return false;
    --it;
    return it->first + (uint64_t{1} << it->second) > start;
  };
  auto is_ram = [&](uint64_t start, uint64_t n) {
    return sim.memory->layout().IsRam(sim.geometry().PfnToPhys(Pfn(start)), n * 4096);
  };

  int alloc_ok = 0, alloc_failed = 0, range_ok = 0, range_refused = 0;
  std::mt19937_64 rng(20260114);
  const gfp_t kGfps[] = {GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_RECLAIMABLE,
                         GFP_KERNEL | __GFP_COMP, GFP_HIGHUSER_MOVABLE | __GFP_THISNODE};
  for (int step = 0; step < 10000; ++step) {
    const unsigned op = rng() % 20;
    if (op < 10) {
      const unsigned order = rng() % 8 == 0 ? rng() % 11 : rng() % 4;
      const gfp_t gfp = kGfps[rng() % 5];
      const int nid = static_cast<int>(rng() % 3) - 1;
      struct page* p = sim.alloc->Alloc(gfp, order, nid);
      if (p != nullptr) {
        const uint64_t pfn = sim.PfnOf(p);
        ASSERT_TRUE(IsAligned(pfn, uint64_t{1} << order));
        ASSERT_TRUE(is_ram(pfn, uint64_t{1} << order));
        ASSERT_FALSE(overlaps_allocated(pfn, uint64_t{1} << order)) << "step " << step;
        if (gfp & __GFP_THISNODE) {
          ASSERT_EQ(sim.NodeOf(pfn), nid < 0 ? 0 : nid);
        }
        if (!(gfp & __GFP_MOVABLE)) {
          ASSERT_NE(sim.alloc->PageblockType(Pfn(pfn)), MigrateType::kCma);
        }
        ASSERT_FALSE(sim.alloc->IsFree(Pfn(pfn)));
        allocated[pfn] = order;
        allocated_pages += uint64_t{1} << order;
        ++alloc_ok;
      } else {
        ++alloc_failed;
        if ((gfp & __GFP_MOVABLE) && !(gfp & __GFP_THISNODE)) {
          // A movable request may use anything: it fails only when no block
          // is large enough.
          for (const auto& node : sim.alloc->FreeBlockCounts()) {
            for (unsigned o = order; o < node.size(); ++o) ASSERT_EQ(node[o], 0u);
          }
        }
      }
    } else if (op < 18) {
      if (allocated.empty()) continue;
      auto it = allocated.begin();
      std::advance(it, static_cast<long>(rng() % allocated.size()));
      sim.alloc->Free(sim.Page(it->first), it->second);
      ASSERT_TRUE(sim.alloc->IsFree(Pfn(it->first)));
      allocated_pages -= uint64_t{1} << it->second;
      allocated.erase(it);
    } else if (op == 19) {
      // Retype a random pageblock, free or not.
      const uint64_t pfn = rng() % sim.memmap->end_pfn();
      const auto type = static_cast<MigrateType>(rng() % 4);
      sim.alloc->SetPageblockType(Pfn(pfn), type);
      ASSERT_EQ(sim.alloc->PageblockType(Pfn(pfn)), type);
    } else {
      // AllocRange of an aligned block: succeeds exactly when all of it is
      // free RAM.
      const unsigned order = rng() % 6;
      const uint64_t n = uint64_t{1} << order;
      const uint64_t pfn = AlignDown(rng() % sim.memmap->end_pfn(), n);
      const bool expect = is_ram(pfn, n) && !overlaps_allocated(pfn, n);
      ASSERT_EQ(sim.alloc->AllocRange(Pfn(pfn), n), expect) << "step " << step;
      if (expect) {
        allocated[pfn] = order;
        allocated_pages += n;
      }
      ++(expect ? range_ok : range_refused);
    }
    const absl::Status valid = sim.alloc->Validate();
    ASSERT_TRUE(valid.ok()) << "step " << step << ": " << valid;
    ASSERT_EQ(sim.alloc->FreePages(), total - allocated_pages) << "step " << step;
  }
  // The run must have reached every outcome, not just the easy ones.
  EXPECT_GT(alloc_ok, 1000);
  EXPECT_GT(alloc_failed, 100);
  EXPECT_GT(range_ok, 20);
  EXPECT_GT(range_refused, 20);
  for (const auto& [pfn, order] : allocated) sim.alloc->Free(sim.Page(pfn), order);
  EXPECT_TRUE(sim.alloc->Validate().ok());
  EXPECT_EQ(sim.alloc->FreePages(), total);
  // With the original pageblock types back, the free lists are as at boot.
  for (uint64_t pfn = 0; pfn < sim.memmap->end_pfn(); pfn += 512) {
    const bool cma = pfn >= cma_start && pfn < cma_start + 1024;
    sim.alloc->SetPageblockType(Pfn(pfn), cma ? MigrateType::kCma : MigrateType::kMovable);
  }
  EXPECT_TRUE(sim.alloc->Validate().ok());
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), initial_counts);
}

TEST(PageAllocDeathTest, InaccessiblePolicyUnmapsFreeMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Sim sim(OneRange(4_MiB, 4_MiB), FreeMemoryPolicy::kInaccessible);
  EXPECT_EQ(sim.alloc->policy(), FreeMemoryPolicy::kInaccessible);
  // Memory handed over at boot is already unmapped.
  EXPECT_DEATH({ [[maybe_unused]] volatile uint8_t b = *sim.Bytes(1500); }, "");

  struct page* p = sim.alloc->Alloc(GFP_KERNEL, 0);
  ASSERT_NE(p, nullptr);
  const uint64_t pfn = sim.PfnOf(p);
  volatile uint8_t* bytes = sim.Bytes(pfn);
  EXPECT_EQ(bytes[0], 0);
  bytes[0] = 0x77;
  bytes[4095] = 0x78;
  EXPECT_EQ(bytes[0], 0x77);
  EXPECT_EQ(bytes[4095], 0x78);
  sim.alloc->Free(p, 0);
  EXPECT_DEATH({ [[maybe_unused]] volatile uint8_t b = bytes[0]; }, "");

  // Allocated again: mapped, and the old contents are gone.
  struct page* again = sim.alloc->Alloc(GFP_KERNEL, 0);
  ASSERT_EQ(again, p);
  EXPECT_EQ(bytes[0], 0);
  EXPECT_EQ(bytes[4095], 0);
  sim.alloc->Free(again, 0);

  ASSERT_TRUE(sim.alloc->AllocRange(Pfn(1800), 3));
  sim.Bytes(1802)[100] = 1;
  EXPECT_EQ(sim.Bytes(1802)[100], 1);
  sim.FreeRange(1800, 3);
  EXPECT_DEATH({ [[maybe_unused]] volatile uint8_t b = *sim.Bytes(1802); }, "");
  EXPECT_EQ(sim.alloc->FreeBlockCounts(), OneEach(10, {10}));
}

}  // namespace
}  // namespace khosim::mm

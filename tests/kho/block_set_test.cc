// KHO block sets: capacities, growth and rollback, iterators, and the
// reader's checks on chains from the previous kernel.
#include "khosim/kho/block_set.h"

#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "khosim/abi/block.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho_block.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

MachineConfig KhoMachine(uint64_t page_size = 4096) {
  MachineConfig c{.ram = 2 * kGiB, .nodes = 1, .page_size = page_size, .seed = 23};
  c.cmdline = "kho=on";
  return c;
}

struct Entry80 {
  uint8_t bytes[80];
};
struct Entry64 {
  uint8_t bytes[64];
};

// Writes |n| entries whose first 8 bytes are seed+i.
void Fill(struct kho_block_set* bs, size_t entry_size, uint64_t n, uint64_t seed) {
  struct kho_block_set_it it;
  kho_block_set_it_init(&it, bs);
  for (uint64_t i = 0; i < n; ++i) {
    auto* e = static_cast<uint8_t*>(kho_block_set_it_reserve_entry(&it));
    ASSERT_NE(e, nullptr) << i;
    std::memset(e, 0, entry_size);
    const uint64_t v = seed + i;
    std::memcpy(e, &v, 8);
  }
}

std::vector<uint64_t> ReadAll(struct kho_block_set* bs) {
  std::vector<uint64_t> out;
  struct kho_block_set_it it;
  kho_block_set_it_init(&it, bs);
  while (void* e = kho_block_set_it_read_entry(&it)) {
    uint64_t v;
    std::memcpy(&v, e, 8);
    out.push_back(v);
  }
  return out;
}

std::vector<uint64_t> BlockCounts(struct kho_block_set* bs) {
  std::vector<uint64_t> counts;
  for (uint64_t pa = kho_block_set_head_pa(bs); pa != 0;) {
    const auto* h = static_cast<const abi::KhoBlockHeader*>(phys_to_virt(pa));
    counts.push_back(h->count);
    pa = h->next;
  }
  return counts;
}

TEST(BlockSetTest, CapacitiesFollowEntryAndPageSize) {
  for (uint64_t page : {4096u, 16384u, 65536u}) {
    Machine m(KhoMachine(page));
    m.Boot();
    struct kho_block_set sessions = KHO_BLOCK_SET_INIT(sessions, 80);
    struct kho_block_set files = KHO_BLOCK_SET_INIT(files, 64);
    EXPECT_EQ(kho_block_set_count_per_block(&sessions), (page - 16) / 80) << page;
    EXPECT_EQ(kho_block_set_count_per_block(&files), (page - 16) / 64) << page;
  }
  Machine m(KhoMachine());
  m.Boot();
  struct kho_block_set s = KHO_BLOCK_SET_INIT(s, 80);
  struct kho_block_set f = KHO_BLOCK_SET_INIT(f, 64);
  EXPECT_EQ(kho_block_set_count_per_block(&s), 51u);
  EXPECT_EQ(kho_block_set_count_per_block(&f), 63u);
}

TEST(BlockSetTest, FiftyTwoSessionsMakeBlocksOfFiftyOneAndOne) {
  Machine m(KhoMachine());
  m.Boot();
  struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, sizeof(Entry80));
  for (uint64_t count = 0; count < 52; ++count) ASSERT_EQ(kho_block_set_grow(&bs, count + 1), 0);
  EXPECT_EQ(bs.nr_blocks, 2u);
  EXPECT_TRUE(khosim::kho::ValidateBlockSet(bs, 52, /*count_in_blocks=*/false).ok());
  Fill(&bs, 80, 52, 100);
  EXPECT_EQ(BlockCounts(&bs), (std::vector<uint64_t>{51, 1}));
  EXPECT_TRUE(khosim::kho::ValidateBlockSet(bs, 52).ok());
  struct kho_block_set files = KHO_BLOCK_SET_INIT(files, sizeof(Entry64));
  ASSERT_EQ(kho_block_set_grow(&files, 64), 0);
  Fill(&files, 64, 64, 0);
  EXPECT_EQ(BlockCounts(&files), (std::vector<uint64_t>{63, 1}));
  kho_block_set_destroy(&bs);
  kho_block_set_destroy(&files);
}

TEST(BlockSetTest, EmptySetIsPhysicalAddressZero) {
  Machine m(KhoMachine());
  m.Boot();
  struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, 32);
  EXPECT_TRUE(kho_block_set_is_empty(&bs));
  EXPECT_EQ(kho_block_set_head_pa(&bs), 0u);
  ASSERT_EQ(kho_block_set_grow(&bs, 0), 0);
  EXPECT_EQ(bs.nr_blocks, 0u);
  ASSERT_EQ(kho_block_set_grow(&bs, 1), 0);
  EXPECT_NE(kho_block_set_head_pa(&bs), 0u);
  EXPECT_TRUE(kho_is_preserved(kho_block_set_head_pa(&bs), 1));
  kho_block_set_shrink(&bs, 0);
  EXPECT_EQ(kho_block_set_head_pa(&bs), 0u);
}

TEST(BlockSetTest, GrowFailureRollsBackExactly) {
  Machine m(KhoMachine());
  m.Boot();
  struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, 64);
  ASSERT_EQ(kho_block_set_grow(&bs, 63), 0);
  const uint64_t head = kho_block_set_head_pa(&bs);
  m.faults().FailNth("kho_alloc_preserve", 3);
  EXPECT_EQ(kho_block_set_grow(&bs, 63 * 5), -ENOMEM);
  EXPECT_EQ(bs.nr_blocks, 1u);
  EXPECT_EQ(kho_block_set_head_pa(&bs), head);
  EXPECT_TRUE(khosim::kho::ValidateBlockSet(bs, 63, false).ok());
  EXPECT_EQ(static_cast<const abi::KhoBlockHeader*>(phys_to_virt(head))->next, 0u);
}

TEST(BlockSetTest, MoreThanTenThousandBlocksIsEnospc) {
  Machine m(KhoMachine());
  m.Boot();
  struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, 2048);  // one entry per block
  ASSERT_EQ(kho_block_set_count_per_block(&bs), 1u);
  ASSERT_EQ(kho_block_set_grow(&bs, 10000), 0);
  EXPECT_EQ(bs.nr_blocks, 10000u);
  EXPECT_EQ(kho_block_set_grow(&bs, 10001), -ENOSPC);
  EXPECT_EQ(bs.nr_blocks, 10000u);
  kho_block_set_destroy(&bs);
  EXPECT_EQ(kho_block_set_grow(&bs, 10001), -ENOSPC);
  EXPECT_EQ(bs.nr_blocks, 0u) << "a failed grow leaves nothing behind";
}

TEST(BlockSetTest, ShrinkClearAndIteratorStepsBack) {
  Machine m(KhoMachine());
  m.Boot();
  struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, 64);
  ASSERT_EQ(kho_block_set_grow(&bs, 130), 0);
  EXPECT_EQ(bs.nr_blocks, 3u);
  Fill(&bs, 64, 130, 7);
  EXPECT_EQ(ReadAll(&bs).size(), 130u);
  struct kho_block_set_it it;
  kho_block_set_it_init(&it, &bs);
  for (int i = 0; i < 64; ++i) kho_block_set_it_read_entry(&it);
  uint64_t v;
  std::memcpy(&v, kho_block_set_it_prev(&it), 8);
  EXPECT_EQ(v, 7u + 63);
  std::memcpy(&v, kho_block_set_it_prev(&it), 8);
  EXPECT_EQ(v, 7u + 62) << "steps back across the block boundary";
  kho_block_set_clear(&bs);
  EXPECT_EQ(BlockCounts(&bs), (std::vector<uint64_t>{0, 0, 0}));
  EXPECT_TRUE(ReadAll(&bs).empty());
  const auto* payload = static_cast<const uint8_t*>(phys_to_virt(kho_block_set_head_pa(&bs))) + 16;
  for (int i = 0; i < 4080; ++i) ASSERT_EQ(payload[i], 0);
  kho_block_set_shrink(&bs, 126);
  EXPECT_EQ(bs.nr_blocks, 2u);
  kho_block_set_shrink(&bs, 64);
  EXPECT_EQ(bs.nr_blocks, 2u);
  kho_block_set_shrink(&bs, 63);
  EXPECT_EQ(bs.nr_blocks, 1u);
  const uint64_t head = kho_block_set_head_pa(&bs);
  kho_block_set_destroy(&bs);
  EXPECT_FALSE(kho_is_preserved(head, 1));
}

TEST(BlockSetTest, ChainCrossesAKexecAndIsFreedAfterReading) {
  Machine m(KhoMachine());
  m.Boot();
  struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, 80);
  ASSERT_EQ(kho_block_set_grow(&bs, 200), 0);
  Fill(&bs, 80, 200, 1000);
  auto* root = static_cast<uint64_t*>(kho_alloc_preserve(8));
  *root = kho_block_set_head_pa(&bs);
  ASSERT_EQ(kho_add_subtree("blocks", root, 8), 0);
  ASSERT_TRUE(m.Kexec().ok());
  phys_addr_t phys;
  ASSERT_EQ(kho_retrieve_subtree("blocks", &phys, nullptr), 0);
  struct kho_block_set in = KHO_BLOCK_SET_INIT(in, 80);
  ASSERT_EQ(kho_block_set_restore(&in, *static_cast<uint64_t*>(phys_to_virt(phys))), 0);
  const std::vector<uint64_t> got = ReadAll(&in);
  ASSERT_EQ(got.size(), 200u);
  for (uint64_t i = 0; i < 200; ++i) EXPECT_EQ(got[i], 1000 + i);
  EXPECT_EQ(kho_block_set_grow(&in, 201), -EINVAL) << "an incoming set never grows";
  const uint64_t unrestored = m.kernel().kho().UnrestoredBlocks();
  kho_block_set_destroy(&in);
  EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), unrestored - 4);
}

// Builds a chain of |n| preserved blocks with |count| each in kernel A,
// applies |corrupt| to the chain, kexecs, and restores it in kernel B.
int RestoreCorrupted(int n, uint64_t count,
                     const std::function<void(std::vector<abi::KhoBlockHeader*>&)>& corrupt,
                     uint64_t* unrestored_after) {
  Machine m(KhoMachine());
  m.Boot();
  std::vector<abi::KhoBlockHeader*> blocks;
  for (int i = 0; i < n; ++i) {
    auto* h = static_cast<abi::KhoBlockHeader*>(kho_alloc_preserve(PAGE_SIZE));
    h->count = count;
    if (!blocks.empty()) blocks.back()->next = virt_to_phys(h);
    blocks.push_back(h);
  }
  corrupt(blocks);
  auto* root = static_cast<uint64_t*>(kho_alloc_preserve(8));
  *root = virt_to_phys(blocks.front());
  EXPECT_EQ(kho_add_subtree("blocks", root, 8), 0);
  EXPECT_TRUE(m.Kexec().ok());
  phys_addr_t phys;
  EXPECT_EQ(kho_retrieve_subtree("blocks", &phys, nullptr), 0);
  const uint64_t before = m.kernel().kho().UnrestoredBlocks();
  struct kho_block_set in = KHO_BLOCK_SET_INIT(in, 64);
  const int err = kho_block_set_restore(&in, *static_cast<uint64_t*>(phys_to_virt(phys)));
  EXPECT_EQ(in.nr_blocks, err == 0 ? static_cast<uint64_t>(n) : 0u);
  *unrestored_after = before - m.kernel().kho().UnrestoredBlocks();
  return err;
}

TEST(BlockSetReaderTest, RejectsCorruptChainsAndFreesThem) {
  uint64_t freed = 0;
  EXPECT_EQ(RestoreCorrupted(
                4, 10, [](auto&) {}, &freed),
            0);
  // A zero count in the third block: the first two are freed, and so are
  // the third and fourth (the rest of the chain).
  EXPECT_EQ(RestoreCorrupted(
                4, 10, [](auto& b) { b[2]->count = 0; }, &freed),
            -EINVAL);
  EXPECT_EQ(freed, 4u);
  EXPECT_EQ(RestoreCorrupted(
                3, 10, [](auto& b) { b[1]->count = 64; }, &freed),
            -EINVAL)
      << "count above the 63 a 64-byte entry allows";
  EXPECT_EQ(freed, 3u);
  // A cycle: nothing is taken (the chain cannot be walked to its end).
  EXPECT_EQ(RestoreCorrupted(
                3, 10, [](auto& b) { b[2]->next = virt_to_phys(b[0]); }, &freed),
            -EINVAL);
  EXPECT_EQ(freed, 0u);
  EXPECT_EQ(RestoreCorrupted(
                2, 10, [](auto& b) { b[1]->next = 0x123; }, &freed),
            -EINVAL)
      << "unaligned next";
  EXPECT_EQ(freed, 0u);
  EXPECT_EQ(RestoreCorrupted(
                2, 10, [](auto& b) { b[1]->next = 1ull << 45; }, &freed),
            -EINVAL)
      << "next outside RAM";
  EXPECT_EQ(freed, 0u);
}

// The bound is on blocks, not on Floyd iterations (each walks two blocks):
// a chain one block over KHO_MAX_BLOCKS is corrupt (-EINVAL, nothing
// taken), not -ENOSPC from the reader's own list.
TEST(BlockSetReaderTest, ChainOverKhoMaxBlocksIsEinvalAndTakesNothing) {
  uint64_t freed = 0;
  EXPECT_EQ(RestoreCorrupted(
                10000, 1, [](auto&) {}, &freed),
            0);
  EXPECT_EQ(RestoreCorrupted(
                10001, 1, [](auto&) {}, &freed),
            -EINVAL);
  EXPECT_EQ(freed, 0u);
}

// A link may only name an unrestored order-0 block of the previous kernel:
// the reader must not read (under kInaccessible: fault on) or take a page
// it cannot prove to be one. Each case points the head's next at a faithful
// copy of a valid last block.
TEST(BlockSetReaderTest, LinksToPagesThatAreNotUnrestoredOrderZeroHeadsAreEinval) {
  enum class Where { kOrder1Head, kOrder1Tail, kUnpreserved, kRestoredByB };
  for (mm::FreeMemoryPolicy scrub :
       {mm::FreeMemoryPolicy::kPoison, mm::FreeMemoryPolicy::kInaccessible}) {
    for (Where where :
         {Where::kOrder1Head, Where::kOrder1Tail, Where::kUnpreserved, Where::kRestoredByB}) {
      SCOPED_TRACE(static_cast<int>(where) * 10 + static_cast<int>(scrub));
      MachineConfig config = KhoMachine();
      config.scrub = scrub;
      Machine m(config);
      m.Boot();
      auto* head = static_cast<abi::KhoBlockHeader*>(kho_alloc_preserve(PAGE_SIZE));
      head->count = 10;
      abi::KhoBlockHeader last = {0, 10};
      uint64_t target = 0;
      switch (where) {
        case Where::kOrder1Head:
        case Where::kOrder1Tail: {
          auto* big = static_cast<uint8_t*>(kho_alloc_preserve(2 * PAGE_SIZE));
          std::memcpy(big, &last, sizeof(last));
          std::memcpy(big + PAGE_SIZE, &last, sizeof(last));
          target = virt_to_phys(big) + (where == Where::kOrder1Tail ? PAGE_SIZE : 0);
          break;
        }
        case Where::kUnpreserved: {
          struct page* p = alloc_page(GFP_KERNEL);
          std::memcpy(page_address(p), &last, sizeof(last));
          target = page_to_phys(p);
          break;
        }
        case Where::kRestoredByB: {
          // Preserved, but kernel B restores it for itself before reading
          // the chain: a stale link into B's live memory.
          void* other = kho_alloc_preserve(PAGE_SIZE);
          std::memcpy(other, &last, sizeof(last));
          ASSERT_EQ(kho_add_subtree("other", other, PAGE_SIZE), 0);
          target = virt_to_phys(other);
          break;
        }
      }
      head->next = target;
      auto* root = static_cast<uint64_t*>(kho_alloc_preserve(8));
      *root = virt_to_phys(head);
      ASSERT_EQ(kho_add_subtree("blocks", root, 8), 0);
      ASSERT_TRUE(m.Kexec().ok());
      struct folio* mine = nullptr;
      if (where == Where::kRestoredByB) {
        mine = kho_restore_folio(target);
        ASSERT_NE(mine, nullptr);
      }
      phys_addr_t phys;
      ASSERT_EQ(kho_retrieve_subtree("blocks", &phys, nullptr), 0);
      const uint64_t unrestored = m.kernel().kho().UnrestoredBlocks();
      const uint64_t warns = m.kernel().WarnCount();
      struct kho_block_set in = KHO_BLOCK_SET_INIT(in, 64);
      EXPECT_EQ(kho_block_set_restore(&in, *static_cast<uint64_t*>(phys_to_virt(phys))), -EINVAL);
      EXPECT_EQ(in.nr_blocks, 0u);
      kho_block_set_destroy(&in);
      EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), unrestored) << "nothing was taken";
      EXPECT_EQ(m.kernel().WarnCount(), warns);
      if (mine != nullptr) {
        EXPECT_EQ(static_cast<const abi::KhoBlockHeader*>(folio_address(mine))->count, 10u);
        folio_put(mine);
      }
    }
  }
}

TEST(BlockSetPropertyTest, RandomSequencesMatchAVectorAcrossKexecs) {
  Machine m(KhoMachine());
  m.Boot();
  std::mt19937_64 rng(5);
  std::vector<uint64_t> oracle;
  for (int hop = 0; hop < 3; ++hop) {
    struct kho_block_set bs = KHO_BLOCK_SET_INIT(bs, 64);
    // Random appends and tail removals, keeping capacity eager.
    for (int step = 0; step < 400; ++step) {
      if (oracle.empty() || rng() % 3 != 0) {
        ASSERT_EQ(kho_block_set_grow(&bs, oracle.size() + 1), 0);
        oracle.push_back(rng());
      } else {
        oracle.pop_back();
        kho_block_set_shrink(&bs, oracle.size());
      }
      ASSERT_TRUE(khosim::kho::ValidateBlockSet(bs, oracle.size(), false).ok()) << step;
    }
    struct kho_block_set_it it;
    kho_block_set_it_init(&it, &bs);
    for (uint64_t v : oracle) std::memcpy(kho_block_set_it_reserve_entry(&it), &v, 8);
    ASSERT_TRUE(khosim::kho::ValidateBlockSet(bs, oracle.size()).ok());
    auto* root = static_cast<uint64_t*>(kho_alloc_preserve(8));
    *root = kho_block_set_head_pa(&bs);
    ASSERT_EQ(kho_add_subtree("prop", root, 8), 0);
    ASSERT_TRUE(m.Kexec().ok());
    phys_addr_t phys;
    ASSERT_EQ(kho_retrieve_subtree("prop", &phys, nullptr), 0);
    struct kho_block_set in = KHO_BLOCK_SET_INIT(in, 64);
    ASSERT_EQ(kho_block_set_restore(&in, *static_cast<uint64_t*>(phys_to_virt(phys))), 0);
    EXPECT_EQ(ReadAll(&in), oracle) << "hop " << hop;
    kho_block_set_destroy(&in);
    kho_restore_free(phys_to_virt(phys));
    EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), 1u) << "only the root FDT is left";
  }
}

}  // namespace
}  // namespace khosim

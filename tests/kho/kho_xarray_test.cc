// KHO xarray: encodings, shape and exact node counts, rollback, iteration,
// property runs against std::map, the three incoming modes across one and
// several kexecs, hostile restores, and 16K/64K pages.
#include "khosim/abi/kho_xarray.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "khosim/base/errno_status.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_xarray.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho_xarray.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"
#include "khosim/mm/page_alloc.h"

namespace khosim {
namespace {

using kho::KhoXarray;
using ::testing::Contains;
using ::testing::HasSubstr;
using Oracle = std::map<uint64_t, uint64_t>;

constexpr uint64_t kMax = ~uint64_t{0};

MachineConfig XaMachine(uint64_t page_size = 4096) {
  MachineConfig c{.ram = 2 * kGiB, .nodes = 1, .page_size = page_size, .seed = 31};
  c.cmdline = "kho=on";
  return c;
}

// A preserved blob holding one descriptor, registered as subtree |name|.
abi::KhoXarrayDesc* NewHome(const char* name) {
  auto* home = static_cast<abi::KhoXarrayDesc*>(kho_alloc_preserve(sizeof(abi::KhoXarrayDesc)));
  EXPECT_FALSE(IS_ERR_OR_NULL(home));
  EXPECT_EQ(kho_add_subtree(name, home, sizeof(*home)), 0);
  return home;
}

// Kernel B: the descriptor blob of subtree |name|, or nullptr.
abi::KhoXarrayDesc* FindHome(const char* name) {
  phys_addr_t phys = 0;
  size_t size = 0;
  if (kho_retrieve_subtree(name, &phys, &size) != 0 || size != sizeof(abi::KhoXarrayDesc)) {
    return nullptr;
  }
  return static_cast<abi::KhoXarrayDesc*>(phys_to_virt(phys));
}

uint64_t* Words(uint64_t node_pa) { return static_cast<uint64_t*>(phys_to_virt(node_pa)); }

// The node at |level| on |index|'s path (trusting the map).
uint64_t NodeAt(const abi::KhoXarrayDesc& d, uint64_t index, int level) {
  const unsigned slot_bits = abi::KhoXarraySlotBits(PAGE_SHIFT);
  uint64_t node = d.root;
  for (int l = d.depth - 1; l > level && node != 0; --l) {
    node = Words(node)[(index >> (l * slot_bits)) & ((uint64_t{1} << slot_bits) - 1)];
  }
  return node;
}

// Every node page of a map (trusting it), parents first.
std::vector<uint64_t> NodePages(const abi::KhoXarrayDesc& d) {
  std::vector<uint64_t> out;
  if (d.root == 0) return out;
  std::vector<std::pair<uint64_t, int>> stack = {{d.root, d.depth - 1}};
  const uint64_t slots = abi::KhoXarraySlots(PAGE_SHIFT);
  while (!stack.empty()) {
    auto [pa, level] = stack.back();
    stack.pop_back();
    out.push_back(pa);
    if (level == 0) continue;
    for (uint64_t i = 0; i < slots; ++i) {
      if (Words(pa)[i] != 0) stack.push_back({Words(pa)[i], level - 1});
    }
  }
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> Entries(const KhoXarray& xa, uint64_t start = 0) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  xa.ForEach(start, [&](uint64_t i, uint64_t e) {
    out.push_back({i, e});
    return true;
  });
  return out;
}

// The map holds exactly |oracle|: counts, every load, absent neighbours,
// and iteration in index order.
void ExpectMatches(const KhoXarray& xa, const Oracle& oracle) {
  ASSERT_EQ(xa.Count(), oracle.size());
  const uint64_t max = xa.max_index();
  for (const auto& [index, entry] : oracle) {
    uint64_t got = 0;
    ASSERT_TRUE(xa.Load(index, &got)) << index;
    ASSERT_EQ(got, entry) << index;
    for (uint64_t n : {index - 1, index + 1}) {
      if (n > max) continue;
      uint64_t e = 0;
      ASSERT_EQ(xa.Load(n, &e), oracle.contains(n)) << n;
    }
  }
  const std::vector<std::pair<uint64_t, uint64_t>> want(oracle.begin(), oracle.end());
  ASSERT_EQ(Entries(xa), want);
}

using IndexGen = std::function<uint64_t(std::mt19937_64&, uint64_t max)>;

struct Pattern {
  const char* name;
  IndexGen gen;
};

std::vector<Pattern> Patterns() {
  return {
      {"dense", [](std::mt19937_64& r, uint64_t max) { return r() % 3000 & max; }},
      {"strided",
       [](std::mt19937_64& r, uint64_t max) { return ((r() % 300) * 4097 + (r() % 2)) & max; }},
      {"random", [](std::mt19937_64& r, uint64_t max) { return r() & max; }},
      {"edges",
       [](std::mt19937_64& r, uint64_t max) {
         const uint64_t picks[] = {0, 1, 511, 512, max, max - 1, max >> 1, (max >> 1) + 1};
         return picks[r() % 8] & max;
       }},
  };
}

uint64_t RandomEntry(std::mt19937_64& rng) {
  switch (rng() % 5) {
    case 0:
      return KhoXarray::MakeValue(0);
    case 1:
      return KhoXarray::MakeValue(abi::kKhoXarrayMaxValue);
    case 2:
      return KhoXarray::MakePhys(PhysAddr((rng() | 2) & ~uint64_t{1}));
    default:
      return KhoXarray::MakeValue(rng() >> 1);
  }
}

// |ops| random stores, erases and loads, each checked against |oracle|;
// indices come from |gen|, and now and then one beyond the key width.
void RunOps(KhoXarray& xa, Oracle& oracle, std::mt19937_64& rng, int ops, const IndexGen& gen) {
  const uint64_t max = xa.max_index();
  for (int op = 0; op < ops; ++op) {
    uint64_t index = gen(rng, max);
    const unsigned kind = rng() % 20;
    if (kind == 0 && max != kMax) {
      index = max + 1 + rng() % 16;
      ASSERT_EQ(xa.Store(index, KhoXarray::MakeValue(1)), -ERANGE);
      ASSERT_EQ(xa.Erase(index), -ERANGE);
      uint64_t e = 0;
      ASSERT_FALSE(xa.Load(index, &e));
    } else if (kind < 12) {
      const uint64_t entry = RandomEntry(rng);
      ASSERT_EQ(xa.Store(index, entry), 0) << index;
      oracle[index] = entry;
    } else if (kind < 18) {
      // Erase something present most of the time.
      if (!oracle.empty() && rng() % 4 != 0) {
        auto it = oracle.lower_bound(gen(rng, max));
        if (it == oracle.end()) it = oracle.begin();
        index = it->first;
      }
      uint64_t old = 0;
      const int err = xa.Erase(index, &old);
      if (oracle.contains(index)) {
        ASSERT_EQ(err, 0) << index;
        ASSERT_EQ(old, oracle[index]);
        oracle.erase(index);
      } else {
        ASSERT_EQ(err, -ENOENT) << index;
      }
    } else {
      uint64_t e = 0;
      ASSERT_EQ(xa.Load(index, &e), oracle.contains(index)) << index;
      if (oracle.contains(index)) {
        ASSERT_EQ(e, oracle[index]);
      }
    }
    ASSERT_EQ(xa.Count(), oracle.size());
    if (op % 97 == 0) {
      ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();
    }
  }
  ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();
}

// ---------------------------------------------------------------------------
// Encodings and shape

TEST(KhoXarrayTest, ZeroStoredIsNotAbsent) {
  Machine m(XaMachine());
  m.Boot();
  KhoXarray xa;
  ASSERT_EQ(xa.Init(64), 0);
  EXPECT_EQ(xa.Store(5, 0), -EINVAL) << "0 is the absent word";
  EXPECT_EQ(xa.Count(), 0u);
  ASSERT_EQ(xa.Store(5, KhoXarray::MakeValue(0)), 0);
  uint64_t e = 99;
  ASSERT_TRUE(xa.Load(5, &e));
  EXPECT_EQ(e, 1u);
  EXPECT_TRUE(KhoXarray::IsValue(e));
  EXPECT_EQ(KhoXarray::ValueOf(e), 0u);
  EXPECT_FALSE(xa.Load(4, &e));
  EXPECT_FALSE(xa.Load(6, &e));
  // Helpers refuse what they cannot encode, and the map refuses their 0.
  EXPECT_EQ(KhoXarray::MakeValue(abi::kKhoXarrayMaxValue + 1), 0u);
  EXPECT_EQ(xa.Store(6, KhoXarray::MakeValue(kMax)), -EINVAL);
  EXPECT_EQ(xa.Store(6, KhoXarray::MakePhys(PhysAddr(0x1001))), -EINVAL);
  EXPECT_EQ(xa.Store(6, KhoXarray::MakePhys(PhysAddr(0))), -EINVAL);
  const uint64_t phys = KhoXarray::MakePhys(PhysAddr(0x40000000 | 0x6));
  ASSERT_EQ(xa.Store(6, phys), 0);
  ASSERT_TRUE(xa.Load(6, &e));
  EXPECT_TRUE(KhoXarray::IsPhys(e));
  EXPECT_FALSE(KhoXarray::IsValue(e));
  EXPECT_EQ(KhoXarray::PhysOf(e), PhysAddr(0x40000006)) << "bits 1.. belong to the owner";
  ASSERT_EQ(xa.Store(7, KhoXarray::MakeValue(abi::kKhoXarrayMaxValue)), 0);
  ASSERT_TRUE(xa.Load(7, &e));
  EXPECT_EQ(KhoXarray::ValueOf(e), abi::kKhoXarrayMaxValue);
  EXPECT_EQ(xa.Count(), 3u);
  ASSERT_EQ(xa.Erase(5), 0);
  EXPECT_FALSE(xa.Load(5, &e));
  EXPECT_EQ(xa.Erase(5), -ENOENT);
  EXPECT_TRUE(xa.Validate().ok()) << xa.Validate();
  xa.Destroy();
}

TEST(KhoXarrayTest, DepthFollowsKeyWidthAndIndicesBeyondItAreErange) {
  Machine m(XaMachine());
  m.Boot();
  const std::pair<unsigned, unsigned> shapes[] = {{1, 1},  {9, 1},  {10, 2}, {18, 2},
                                                  {19, 3}, {54, 6}, {63, 7}, {64, 8}};
  for (const auto& [bits, depth] : shapes) {
    KhoXarray xa;
    ASSERT_EQ(xa.Init(bits), 0) << bits;
    EXPECT_EQ(xa.depth(), depth) << bits;
    const abi::KhoXarrayDesc d = xa.descriptor();
    EXPECT_EQ(d.magic, abi::kKhoXarrayMagic);
    EXPECT_EQ(d.version, 1u);
    EXPECT_EQ(d.key_bits, bits);
    EXPECT_EQ(d.depth, depth);
    EXPECT_EQ(d.page_shift, 12u);
    EXPECT_EQ(d.root, 0u);
    const uint64_t max = bits == 64 ? kMax : (uint64_t{1} << bits) - 1;
    EXPECT_EQ(xa.max_index(), max);
    ASSERT_EQ(xa.Store(max, KhoXarray::MakeValue(bits)), 0) << bits;
    ASSERT_EQ(xa.Store(0, KhoXarray::MakeValue(0)), 0) << bits;
    EXPECT_EQ(xa.NodeCount(), bits <= 9 ? 1u : 2u * depth - 1) << bits;
    if (bits < 64) {
      EXPECT_EQ(xa.Store(max + 1, KhoXarray::MakeValue(1)), -ERANGE);
      EXPECT_EQ(xa.Erase(max + 1), -ERANGE);
    }
    EXPECT_TRUE(xa.Validate().ok()) << xa.Validate();
    EXPECT_EQ(xa.Init(bits), -EBUSY) << "a map with nodes cannot be re-initialized";
    xa.Destroy();
    EXPECT_EQ(xa.Init(bits), 0);
  }
  KhoXarray xa;
  EXPECT_EQ(xa.Init(0), -EINVAL);
  EXPECT_EQ(xa.Init(65), -EINVAL);
  EXPECT_EQ(xa.Store(0, KhoXarray::MakeValue(1)), -EINVAL) << "not initialized";
  EXPECT_EQ(xa.Erase(0), -EINVAL);
}

TEST(KhoXarrayTest, ExactNodeCountsAndBottomUpFreeing) {
  Machine m(XaMachine());
  m.Boot();
  KhoXarray xa;
  ASSERT_EQ(xa.Init(64), 0);
  const uint64_t v = KhoXarray::MakeValue(7);
  ASSERT_EQ(xa.Store(0, v), 0);
  EXPECT_EQ(xa.NodeCount(), 8u) << "one node per level";
  ASSERT_EQ(xa.Store(511, v), 0);
  EXPECT_EQ(xa.NodeCount(), 8u) << "same leaf";
  ASSERT_EQ(xa.Store(512, v), 0);
  EXPECT_EQ(xa.NodeCount(), 9u) << "a second leaf";
  ASSERT_EQ(xa.Store(uint64_t{1} << 18, v), 0);
  EXPECT_EQ(xa.NodeCount(), 11u) << "a level-1 node and its leaf";
  const std::vector<uint64_t> before_max = NodePages(xa.descriptor());
  ASSERT_EQ(xa.Store(kMax, v), 0);
  EXPECT_EQ(xa.NodeCount(), 18u) << "root slot 1: seven more levels";
  const std::vector<uint64_t> all = NodePages(xa.descriptor());
  for (uint64_t pa : all) EXPECT_TRUE(kho_is_preserved(pa, 1)) << pa;
  // Use counts live in page_private, never in the node bytes.
  const uint64_t root = xa.descriptor().root;
  EXPECT_EQ(page_private(phys_to_page(root)), 2u);
  EXPECT_EQ(page_private(phys_to_page(NodeAt(xa.descriptor(), 0, 0))), 2u) << "0 and 511";
  EXPECT_EQ(page_private(phys_to_page(NodeAt(xa.descriptor(), 0, 1))), 2u) << "two leaves";
  ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();

  ASSERT_EQ(xa.Erase(kMax), 0);
  EXPECT_EQ(xa.NodeCount(), 11u);
  for (uint64_t pa : all) {
    const bool kept = std::find(before_max.begin(), before_max.end(), pa) != before_max.end();
    EXPECT_EQ(kho_is_preserved(pa, 1), kept) << "freed nodes are unpreserved: " << pa;
  }
  EXPECT_EQ(Words(root)[1], 0u) << "the root's slot was cleared";
  EXPECT_EQ(page_private(phys_to_page(root)), 1u);
  ASSERT_EQ(xa.Erase(uint64_t{1} << 18), 0);
  EXPECT_EQ(xa.NodeCount(), 9u);
  ASSERT_EQ(xa.Erase(512), 0);
  EXPECT_EQ(xa.NodeCount(), 8u);
  ASSERT_EQ(xa.Erase(0), 0);
  EXPECT_EQ(xa.NodeCount(), 8u) << "511 keeps the path";
  ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();
  ASSERT_EQ(xa.Erase(511), 0);
  EXPECT_EQ(xa.NodeCount(), 0u);
  EXPECT_EQ(xa.descriptor().root, 0u);
  EXPECT_EQ(xa.Count(), 0u);
  for (uint64_t pa : all) EXPECT_FALSE(kho_is_preserved(pa, 1)) << pa;
  ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();

  // A two-level map: 1024 dense entries are two leaves under one root.
  KhoXarray small;
  ASSERT_EQ(small.Init(18), 0);
  for (uint64_t i = 0; i < 1024; ++i) ASSERT_EQ(small.Store(i, KhoXarray::MakeValue(i)), 0);
  EXPECT_EQ(small.NodeCount(), 3u);
  EXPECT_EQ(page_private(phys_to_page(small.descriptor().root)), 2u);
  ASSERT_EQ(small.Store(1024, KhoXarray::MakeValue(0)), 0);
  EXPECT_EQ(small.NodeCount(), 4u);
  ASSERT_TRUE(small.Validate().ok()) << small.Validate();
  small.Destroy();
  EXPECT_EQ(small.NodeCount(), 0u);
}

TEST(KhoXarrayTest, AllocationFailureRollsBackExactly) {
  Machine m(XaMachine());
  m.Boot();
  KhoXarray xa;
  ASSERT_EQ(xa.Init(64), 0);
  m.faults().FailNth("kho_alloc_preserve", 1);
  EXPECT_EQ(xa.Store(3, KhoXarray::MakeValue(3)), -ENOMEM) << "even the root";
  EXPECT_EQ(xa.descriptor().root, 0u);
  EXPECT_EQ(xa.NodeCount(), 0u);
  ASSERT_EQ(xa.Store(0, KhoXarray::MakeValue(0)), 0);
  // Warm up: the pages a full path needs are taken once, so that the
  // tracker's own nodes for them exist and free-page counts compare exactly.
  ASSERT_EQ(xa.Store(kMax, KhoXarray::MakeValue(1)), 0);
  ASSERT_EQ(xa.Erase(kMax), 0);
  const abi::KhoXarrayDesc desc = xa.descriptor();
  std::vector<std::vector<uint64_t>> bytes;
  for (uint64_t pa : NodePages(desc)) bytes.emplace_back(Words(pa), Words(pa) + 512);
  const uint64_t free_pages = m.kernel().mm().pages().FreePages();
  for (uint64_t n = 1; n <= 7; ++n) {
    m.faults().FailNth("kho_alloc_preserve", n);
    EXPECT_EQ(xa.Store(kMax, KhoXarray::MakeValue(1)), -ENOMEM) << n;
    const abi::KhoXarrayDesc now = xa.descriptor();
    EXPECT_EQ(std::memcmp(&desc, &now, sizeof(desc)), 0) << n;
    EXPECT_EQ(xa.NodeCount(), 8u) << n;
    const std::vector<uint64_t> pages = NodePages(xa.descriptor());
    for (size_t i = 0; i < pages.size(); ++i) {
      EXPECT_TRUE(std::equal(bytes[i].begin(), bytes[i].end(), Words(pages[i]))) << n;
    }
    EXPECT_EQ(m.kernel().mm().pages().FreePages(), free_pages) << "fresh nodes freed, " << n;
    ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();
  }
  ASSERT_EQ(xa.Store(kMax, KhoXarray::MakeValue(1)), 0) << "the eighth attempt needs 7 pages";
  EXPECT_EQ(xa.NodeCount(), 15u);
  // A failure below an existing interior node only drops the new leaf.
  m.faults().FailNth("kho_alloc_preserve", 1);
  EXPECT_EQ(xa.Store(4096, KhoXarray::MakeValue(1)), -ENOMEM);
  EXPECT_EQ(xa.NodeCount(), 15u);
  EXPECT_TRUE(xa.Validate().ok()) << xa.Validate();
  xa.Destroy();
}

TEST(KhoXarrayTest, IterationInIndexOrderFromAStart) {
  Machine m(XaMachine());
  m.Boot();
  struct kho_xarray kxa = {};
  KhoXarray& xa = KhoXarray::From(&kxa);
  ASSERT_EQ(xa.Init(64), 0);
  const std::vector<uint64_t> keys = {0, 1, 511, 512, 4096, uint64_t{1} << 40, kMax - 1, kMax};
  for (uint64_t k : keys) ASSERT_EQ(xa.Store(k, KhoXarray::MakeValue(k >> 1)), 0);
  std::vector<uint64_t> seen;
  for (const auto& [i, e] : Entries(xa)) {
    seen.push_back(i);
    EXPECT_EQ(KhoXarray::ValueOf(e), i >> 1);
  }
  EXPECT_EQ(seen, keys);
  seen.clear();
  for (const auto& [i, e] : Entries(xa, 513)) seen.push_back(i);
  EXPECT_EQ(seen, (std::vector<uint64_t>{4096, uint64_t{1} << 40, kMax - 1, kMax}));
  uint64_t index = 2;
  uint64_t entry = 0;
  ASSERT_TRUE(xa.Find(&index, &entry));
  EXPECT_EQ(index, 511u);
  ASSERT_TRUE(xa.FindAfter(&index, &entry));
  EXPECT_EQ(index, 512u);
  index = kMax;
  EXPECT_FALSE(xa.FindAfter(&index, &entry)) << "no wrap past the last index";
  EXPECT_EQ(index, kMax);
  // The kernel-face loop ends after the entry at the maximum index.
  u64 i = 0;
  u64 e = 0;
  std::vector<uint64_t> walked;
  kho_xa_for_each(&kxa, i, e) walked.push_back(i);
  EXPECT_EQ(walked, keys);
  // Erasing behind the cursor while iterating is allowed.
  xa.ForEach(0, [&](uint64_t at, uint64_t) {
    EXPECT_EQ(xa.Erase(at), 0);
    return true;
  });
  EXPECT_EQ(xa.Count(), 0u);
  EXPECT_EQ(xa.NodeCount(), 0u);
  EXPECT_TRUE(Entries(xa).empty());
}

// ForEach hands out a leaf's entries in batches; a callback that changes
// the map inside the current leaf must still see the change, as it would
// with a fresh lookup per step.
TEST(KhoXarrayTest, ForEachSeesChangesTheCallbackMakesAheadOfTheCursor) {
  Machine m(XaMachine());
  m.Boot();
  KhoXarray xa;
  ASSERT_EQ(xa.Init(20), 0);
  for (uint64_t i : {0, 1, 2, 3, 4, 5, 6, 7, 9, 600, 601}) {
    ASSERT_EQ(xa.Store(i, KhoXarray::MakeValue(i)), 0);
  }
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  xa.ForEach(0, [&](uint64_t i, uint64_t e) {
    seen.push_back({i, KhoXarray::ValueOf(e)});
    if (i == 2) {
      EXPECT_EQ(xa.Erase(5), 0);
      EXPECT_EQ(xa.Store(7, KhoXarray::MakeValue(70)), 0);
      EXPECT_EQ(xa.Store(8, KhoXarray::MakeValue(80)), 0);
      EXPECT_EQ(xa.Store(1, KhoXarray::MakeValue(10)), 0) << "behind the cursor";
    }
    if (i == 9) {
      EXPECT_EQ(xa.Erase(601), 0) << "in the next leaf";
    }
    return true;
  });
  const std::vector<std::pair<uint64_t, uint64_t>> want = {
      {0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}, {6, 6}, {7, 70}, {8, 80}, {9, 9}, {600, 600}};
  EXPECT_EQ(seen, want);
}

TEST(KhoXarrayTest, ValidateCatchesBrokenUseCountsAndStaleHome) {
  Machine m(XaMachine());
  m.Boot();
  abi::KhoXarrayDesc home = {};
  KhoXarray xa;
  ASSERT_EQ(xa.Init(40, &home), 0);
  EXPECT_EQ(home.magic, abi::kKhoXarrayMagic) << "Init publishes at once";
  ASSERT_EQ(xa.Store(9, KhoXarray::MakeValue(9)), 0);
  EXPECT_EQ(home.count, 1u);
  EXPECT_EQ(home.root, xa.descriptor().root);
  ASSERT_TRUE(xa.Validate().ok());
  struct page* root = phys_to_page(home.root);
  set_page_private(root, 2);
  EXPECT_THAT(xa.Validate().message(), HasSubstr("use count"));
  EXPECT_EQ(StatusErrno(xa.Validate()), EINVAL);
  set_page_private(root, 1);
  ASSERT_TRUE(xa.Validate().ok());
  home.count = 5;
  EXPECT_THAT(xa.Validate().message(), HasSubstr("home"));
  home.count = 1;
  // A slot pointing at a page the tracker does not hold.
  struct page* stray = alloc_page(GFP_KERNEL | __GFP_ZERO);
  const uint64_t saved = Words(home.root)[1];
  Words(home.root)[1] = page_to_phys(stray);
  EXPECT_THAT(xa.Validate().message(), HasSubstr("not a preserved page"));
  Words(home.root)[1] = saved;
  __free_page(stray);
  EXPECT_TRUE(xa.Validate().ok());
  xa.Destroy();
  EXPECT_EQ(home.root, 0u);
  EXPECT_EQ(home.count, 0u);
}

// ---------------------------------------------------------------------------
// Property runs (no kexec)

TEST(KhoXarrayPropertyTest, RandomSequencesMatchStdMap) {
  Machine m(XaMachine());
  m.Boot();
  std::mt19937_64 rng(11);
  for (unsigned bits : {64u, 54u, 20u, 9u, 1u}) {
    for (const Pattern& p : Patterns()) {
      SCOPED_TRACE(std::string(p.name) + " key_bits " + std::to_string(bits));
      KhoXarray xa;
      ASSERT_EQ(xa.Init(bits), 0);
      Oracle oracle;
      RunOps(xa, oracle, rng, 500, p.gen);
      ExpectMatches(xa, oracle);
      // Drain in random order: every node goes once the last entry does.
      std::vector<uint64_t> keys;
      for (const auto& kv : oracle) keys.push_back(kv.first);
      std::shuffle(keys.begin(), keys.end(), rng);
      for (uint64_t k : keys) ASSERT_EQ(xa.Erase(k), 0);
      EXPECT_EQ(xa.NodeCount(), 0u);
      EXPECT_EQ(xa.descriptor().root, 0u);
    }
  }
}

// ---------------------------------------------------------------------------
// Across kexecs

TEST(KhoXarrayAcrossKexecTest, StoresAfterRegistrationAreHandedOverAndReadInPlace) {
  Machine m(XaMachine());
  m.Boot();
  std::mt19937_64 rng(3);
  Oracle oracle;
  {
    KhoXarray xa;
    abi::KhoXarrayDesc* home = NewHome("memfd");
    ASSERT_EQ(xa.Init(54, home), 0);
    // Registered before any page exists, like a memfd preserved while empty
    // whose pages fault in afterwards.
    for (int i = 0; i < 3000; ++i) {
      const uint64_t pgoff = i < 2000 ? static_cast<uint64_t>(i) : rng() & ((1ull << 54) - 1);
      const uint64_t entry = KhoXarray::MakePhys(PhysAddr((rng() << 12) | 0x2));
      ASSERT_EQ(xa.Store(pgoff, entry), 0);
      oracle[pgoff] = entry;
    }
    ASSERT_EQ(xa.Store(0, KhoXarray::MakeValue(0)), 0);
    oracle[0] = KhoXarray::MakeValue(0);
    ASSERT_EQ(xa.Erase(1999), 0);
    oracle.erase(1999);
    ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();
  }
  ASSERT_TRUE(m.Kexec().ok());
  const abi::KhoXarrayDesc* home = FindHome("memfd");
  ASSERT_NE(home, nullptr);
  KhoXarray in;
  ASSERT_EQ(in.Restore(*home), 0);
  EXPECT_TRUE(in.incoming());
  ExpectMatches(in, oracle);
  EXPECT_TRUE(in.Validate().ok()) << in.Validate();
  uint64_t e = 0;
  EXPECT_FALSE(in.Load(1999, &e));
  EXPECT_EQ(in.Store(1999, KhoXarray::MakeValue(1)), -EINVAL) << "read-only until adopted";
  EXPECT_EQ(in.Erase(0), -EINVAL);
  EXPECT_EQ(in.Restore(*home), -EBUSY);
  ExpectMatches(in, oracle);
  const uint64_t nodes = in.NodeCount();
  const uint64_t unrestored = m.kernel().kho().UnrestoredBlocks();
  in.Destroy();
  EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), unrestored - nodes);
  EXPECT_EQ(in.Count(), 0u);
  EXPECT_TRUE(in.incoming());
  kho_restore_free(const_cast<abi::KhoXarrayDesc*>(home));
  EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), 1u) << "only the root FDT is left";
}

TEST(KhoXarrayAcrossKexecTest, ConvertToHostMapReleasesNodes) {
  Machine m(XaMachine());
  m.Boot();
  std::mt19937_64 rng(4);
  Oracle oracle;
  {
    KhoXarray xa;
    ASSERT_EQ(xa.Init(64), 0);
    RunOps(xa, oracle, rng, 800, Patterns()[2].gen);
    // The owner embeds the descriptor itself at handover.
    abi::KhoXarrayDesc* home = NewHome("conv");
    *home = xa.descriptor();
  }
  ASSERT_TRUE(m.Kexec().ok());
  KhoXarray in;
  ASSERT_EQ(in.Restore(*FindHome("conv")), 0);
  absl::btree_map<uint64_t, uint64_t> host;
  host[kMax] = 1;  // Convert adds to what the map holds
  const uint64_t unrestored = m.kernel().kho().UnrestoredBlocks();
  const uint64_t nodes = in.NodeCount();
  in.Convert(&host);
  EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), unrestored - nodes);
  if (!oracle.contains(kMax)) oracle[kMax] = 1;
  EXPECT_EQ(host.size(), oracle.size());
  EXPECT_TRUE(std::equal(host.begin(), host.end(), oracle.begin(), oracle.end()));
  EXPECT_EQ(in.NodeCount(), 0u);
}

// Three maps per hop: one adopted and mutated in every kernel, one read in
// place and one converted, each rebuilt by the kernel before.
TEST(KhoXarrayAcrossKexecTest, AllThreeModesAcrossSeveralKexecs) {
  Machine m(XaMachine());
  m.Boot();
  std::mt19937_64 rng(21);
  Oracle live;
  Oracle read_oracle;
  Oracle conv_oracle;
  auto build = [&](const char* name, Oracle& oracle, int pattern) {
    KhoXarray xa;
    ASSERT_EQ(xa.Init(64, NewHome(name)), 0);
    oracle.clear();
    RunOps(xa, oracle, rng, 300, Patterns()[pattern].gen);
  };
  {
    KhoXarray xa;
    ASSERT_EQ(xa.Init(48, NewHome("live")), 0);
    RunOps(xa, live, rng, 600, Patterns()[1].gen);
  }
  build("read", read_oracle, 0);
  build("conv", conv_oracle, 3);
  for (int hop = 1; hop <= 4; ++hop) {
    SCOPED_TRACE("hop " + std::to_string(hop));
    ASSERT_TRUE(m.Kexec().ok());
    // (a) read in place
    {
      abi::KhoXarrayDesc* home = FindHome("read");
      KhoXarray in;
      ASSERT_EQ(in.Restore(*home), 0);
      ExpectMatches(in, read_oracle);
      in.Destroy();
      kho_restore_free(home);
    }
    // (b) convert
    {
      abi::KhoXarrayDesc* home = FindHome("conv");
      KhoXarray in;
      ASSERT_EQ(in.Restore(*home), 0);
      absl::btree_map<uint64_t, uint64_t> host;
      in.Convert(&host);
      EXPECT_TRUE(std::equal(host.begin(), host.end(), conv_oracle.begin(), conv_oracle.end()));
      EXPECT_EQ(host.size(), conv_oracle.size());
      kho_restore_free(home);
    }
    // (c) adopt and keep mutating
    {
      abi::KhoXarrayDesc* old_home = FindHome("live");
      KhoXarray xa;
      ASSERT_EQ(xa.Restore(*old_home), 0);
      ExpectMatches(xa, live);
      const uint64_t nodes = xa.NodeCount();
      const uint64_t unrestored = m.kernel().kho().UnrestoredBlocks();
      abi::KhoXarrayDesc* home = NewHome("live");
      ASSERT_EQ(xa.Adopt(home), 0);
      kho_restore_free(old_home);
      EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), unrestored - nodes - 1);
      EXPECT_FALSE(xa.incoming());
      EXPECT_EQ(home->root, xa.descriptor().root) << "adopted in place: same pages";
      for (uint64_t pa : NodePages(*home)) ASSERT_TRUE(kho_is_preserved(pa, 1));
      ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();
      RunOps(xa, live, rng, 400, Patterns()[hop % 4].gen);
      ExpectMatches(xa, live);
    }
    EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), 1u) << "only the root FDT is left";
    build("read", read_oracle, hop % 4);
    build("conv", conv_oracle, (hop + 1) % 4);
  }
}

TEST(KhoXarrayAcrossKexecTest, AdoptFailureIsUndone) {
  Machine m(XaMachine());
  m.Boot();
  Oracle oracle;
  {
    KhoXarray xa;
    ASSERT_EQ(xa.Init(64, NewHome("xa")), 0);
    // Entries far apart (many nodes), with the nodes spread over physical
    // regions 160 MiB apart: kernel B's tracker (whose leaves cover 128 MiB)
    // has no leaf yet for most of them, so the later failures have
    // preservations to undo.
    uint64_t anchor = 0;
    for (uint64_t i = 0; i < 64; ++i) {
      if (i % 8 == 0 && i > 0) {
        for (int hog = 0; hog < 200000; ++hog) {
          struct page* p = alloc_page(GFP_KERNEL);
          ASSERT_NE(p, nullptr);
          const uint64_t pa = page_to_phys(p);
          if ((pa > anchor ? pa - anchor : anchor - pa) > 160 * kMiB) {
            __free_page(p);
            anchor = pa;
            break;
          }
        }
      }
      ASSERT_EQ(xa.Store(i << 58 | i << 30 | i, KhoXarray::MakeValue(i)), 0);
      oracle[i << 58 | i << 30 | i] = KhoXarray::MakeValue(i);
      if (i == 0) anchor = xa.descriptor().root;
    }
  }
  ASSERT_TRUE(m.Kexec().ok());
  abi::KhoXarrayDesc* old_home = FindHome("xa");
  KhoXarray xa;
  ASSERT_EQ(xa.Restore(*old_home), 0);
  const uint64_t unrestored = m.kernel().kho().UnrestoredBlocks();
  const std::vector<uint64_t> nodes = NodePages(*old_home);
  int failures = 0;
  for (uint64_t n = 1;; ++n) {
    m.faults().FailNth("alloc_pages", n);
    const int err = xa.Adopt();
    m.faults().Clear();
    if (err == 0) break;
    ASSERT_EQ(err, -ENOMEM) << n;
    ++failures;
    EXPECT_TRUE(xa.incoming());
    EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), unrestored);
    for (uint64_t pa : nodes) ASSERT_FALSE(kho_is_preserved(pa, 1)) << n;
    ASSERT_TRUE(xa.Validate().ok()) << xa.Validate();
  }
  EXPECT_GE(failures, 2) << "the tracker needed several nodes for the adopted pages";
  EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), unrestored - nodes.size());
  ExpectMatches(xa, oracle);
  EXPECT_EQ(xa.Adopt(), -EINVAL) << "already outgoing";
  ASSERT_EQ(xa.Store(5, KhoXarray::MakeValue(5)), 0);
  oracle[5] = KhoXarray::MakeValue(5);
  // The adopted map was not given a home: embed it at handover.
  abi::KhoXarrayDesc* home = NewHome("xa");
  *home = xa.descriptor();
  kho_restore_free(old_home);
  ASSERT_TRUE(m.Kexec().ok());
  KhoXarray again;
  ASSERT_EQ(again.Restore(*FindHome("xa")), 0);
  ExpectMatches(again, oracle);
}

TEST(KhoXarrayAcrossKexecTest, KernelFaceRoundTrip) {
  Machine m(XaMachine());
  m.Boot();
  {
    struct kho_xarray xa = {};
    auto* desc = static_cast<struct kho_xa_desc*>(kho_alloc_preserve(sizeof(struct kho_xa_desc)));
    ASSERT_EQ(kho_add_subtree("kxa", desc, sizeof(*desc)), 0);
    ASSERT_EQ(kho_xa_init(&xa, 20, desc), 0);
    EXPECT_EQ(kho_xa_store(&xa, 1u << 20, kho_xa_mk_value(1)), -ERANGE);
    EXPECT_EQ(kho_xa_store(&xa, 3, 0), -EINVAL);
    for (u64 i = 0; i < 100; ++i) ASSERT_EQ(kho_xa_store(&xa, i * 1000, kho_xa_mk_value(i)), 0);
    ASSERT_EQ(kho_xa_store(&xa, 77, kho_xa_mk_phys(0x200000)), 0);
    ASSERT_EQ(kho_xa_erase(&xa, 5000), 0);
    EXPECT_EQ(kho_xa_erase(&xa, 5000), -ENOENT);
    EXPECT_EQ(kho_xa_count(&xa), 100u);
    struct kho_xa_desc copy;
    kho_xa_get_desc(&xa, &copy);
    EXPECT_EQ(std::memcmp(&copy, desc, sizeof(copy)), 0);
  }
  ASSERT_TRUE(m.Kexec().ok());
  phys_addr_t phys = 0;
  ASSERT_EQ(kho_retrieve_subtree("kxa", &phys, nullptr), 0);
  auto* desc = static_cast<struct kho_xa_desc*>(phys_to_virt(phys));
  struct kho_xarray xa = {};
  EXPECT_EQ(kho_xa_restore(&xa, nullptr), -EINVAL);
  ASSERT_EQ(kho_xa_restore(&xa, desc), 0);
  EXPECT_EQ(kho_xa_load(&xa, 5000), 0u);
  EXPECT_EQ(kho_xa_to_value(kho_xa_load(&xa, 7000)), 7u);
  EXPECT_TRUE(kho_xa_is_phys(kho_xa_load(&xa, 77)));
  EXPECT_EQ(kho_xa_to_phys(kho_xa_load(&xa, 77)), 0x200000u);
  u64 index = 0;
  u64 entry = 0;
  u64 n = 0;
  u64 last = 0;
  kho_xa_for_each_start(&xa, index, entry, 1) {
    EXPECT_GT(index, last);
    last = index;
    ++n;
  }
  EXPECT_EQ(n, 99u) << "everything but index 0";
  EXPECT_EQ(kho_xa_store(&xa, 1, kho_xa_mk_value(1)), -EINVAL);
  auto* home = static_cast<struct kho_xa_desc*>(kho_alloc_preserve(sizeof(struct kho_xa_desc)));
  ASSERT_EQ(kho_xa_adopt(&xa, home), 0);
  EXPECT_EQ(std::memcmp(home, desc, sizeof(*home)), 0) << "published at once";
  kho_restore_free(desc);
  ASSERT_EQ(kho_xa_store(&xa, 1, kho_xa_mk_value(1)), 0);
  EXPECT_EQ(home->count, 101u);
  kho_xa_destroy(&xa);
  EXPECT_EQ(home->root, 0u);
  EXPECT_EQ(kho_xa_count(&xa), 0u);
}

// ---------------------------------------------------------------------------
// Hostile restores

struct HostileCase {
  std::string name;
  unsigned key_bits;
  std::vector<uint64_t> indices;
  std::function<void(abi::KhoXarrayDesc&)> corrupt;  // runs in kernel A
  std::string reason;                                // expected in B's log
};

class KhoXarrayHostileTest : public ::testing::TestWithParam<mm::FreeMemoryPolicy> {};

// Under kInaccessible, reading a page kernel B does not know to be preserved
// faults: the restore must prove each node preserved before reading it.
TEST_P(KhoXarrayHostileTest, RejectsHostileMapsWithEinvalAndTakesNothing) {
  MachineConfig config = XaMachine();
  config.scrub = GetParam();
  Machine m(config);
  m.Boot();
  const uint64_t far = 64 * kGiB;  // beyond the machine's 2 GiB
  auto slot0 = [](abi::KhoXarrayDesc& d, int level) { return &Words(NodeAt(d, 0, level))[0]; };
  std::vector<HostileCase> cases = {
      {"control", 64, {0, 1}, [](auto&) {}, ""},
      {"magic", 64, {0}, [](auto& d) { d.magic ^= 1; }, "bad magic"},
      {"version", 64, {0}, [](auto& d) { d.version = 2; }, "version"},
      {"reserved", 64, {0}, [](auto& d) { d.reserved2 = 1; }, "reserved"},
      {"page_shift", 64, {0}, [](auto& d) { d.page_shift = 14; }, "page_shift"},
      {"key_bits_0", 64, {0}, [](auto& d) { d.key_bits = 0; }, "key width"},
      {"key_bits_65", 64, {0}, [](auto& d) { d.key_bits = 65; }, "key width"},
      {"depth", 64, {0}, [](auto& d) { d.depth = 7; }, "depth"},
      {"depth_for_width", 64, {0}, [](auto& d) { d.key_bits = 54; }, "depth"},
      {"count_plus_one", 64, {0, 9}, [](auto& d) { d.count += 1; }, "descriptor says"},
      {"count_zero", 64, {0}, [](auto& d) { d.count = 0; }, "count 0"},
      {"root_zero", 64, {0}, [](auto& d) { d.root = 0; }, "no root"},
      {"root_unaligned", 64, {0}, [](auto& d) { d.root += 8; }, "not a page of RAM"},
      {"root_outside_ram", 64, {0}, [&](auto& d) { d.root = far; }, "not a page of RAM"},
      {"child_outside_ram", 64, {0}, [&](auto& d) { *slot0(d, 3) = far; }, "not a page of RAM"},
      {"child_unaligned", 64, {0}, [&](auto& d) { *slot0(d, 2) += 64; }, "not a page of RAM"},
      {"child_unpreserved",
       64,
       {0},
       [&](auto& d) {
         // A faithful copy of the child in a page nobody preserved.
         struct page* p = alloc_page(GFP_KERNEL | __GFP_ZERO);
         std::memcpy(page_address(p), phys_to_virt(*slot0(d, 4)), PAGE_SIZE);
         *slot0(d, 4) = page_to_phys(p);
       },
       "not a preserved page"},
      {"child_preserved_order_1",
       64,
       {0},
       [&](auto& d) {
         void* big = kho_alloc_preserve(2 * PAGE_SIZE);
         std::memcpy(big, phys_to_virt(*slot0(d, 1)), PAGE_SIZE);
         *slot0(d, 1) = virt_to_phys(big);
       },
       "not a preserved page"},
      {"child_preserved_tail",
       64,
       {0},
       [&](auto& d) {
         auto* big = static_cast<uint8_t*>(kho_alloc_preserve(2 * PAGE_SIZE));
         std::memcpy(big + PAGE_SIZE, phys_to_virt(*slot0(d, 1)), PAGE_SIZE);
         *slot0(d, 1) = virt_to_phys(big + PAGE_SIZE);
       },
       "not a preserved page"},
      {"self_loop", 64, {0}, [](auto& d) { Words(d.root)[0] = d.root; }, "reached twice"},
      {"cycle_to_root", 64, {0}, [&](auto& d) { *slot0(d, 1) = d.root; }, "reached twice"},
      {"shared_child",
       64,
       {0, kMax},
       [](auto& d) { Words(d.root)[1] = Words(d.root)[0]; },
       "reached twice"},
      {"shared_leaf",
       64,
       {0, 512},
       [&](auto& d) { Words(NodeAt(d, 0, 1))[1] = Words(NodeAt(d, 0, 1))[0]; },
       "reached twice"},
      {"slot_beyond_width",
       10,
       {0},
       [](auto& d) { Words(d.root)[5] = Words(d.root)[0]; },
       "beyond the 10-bit key width"},
      {"word_beyond_width_in_root_leaf",
       5,
       {0},
       [](auto& d) { Words(d.root)[40] = 3; },
       "beyond the 5-bit key width"},
      {"empty_leaf",
       64,
       {0, 512},
       [](auto& d) {
         Words(NodeAt(d, 512, 0))[0] = 0;
         d.count -= 1;
       },
       "is empty"},
  };
  std::vector<std::unique_ptr<KhoXarray>> maps;
  for (size_t i = 0; i < cases.size(); ++i) maps.push_back(std::make_unique<KhoXarray>());
  for (size_t i = 0; i < cases.size(); ++i) {
    HostileCase& c = cases[i];
    abi::KhoXarrayDesc* home = NewHome(("x" + std::to_string(i)).c_str());
    ASSERT_EQ(maps[i]->Init(c.key_bits, home), 0) << c.name;
    for (uint64_t index : c.indices) {
      ASSERT_EQ(maps[i]->Store(index & maps[i]->max_index(), KhoXarray::MakeValue(index >> 1)), 0)
          << c.name;
    }
    c.corrupt(*home);
  }
  ASSERT_TRUE(m.Kexec().ok());
  const uint64_t unrestored = m.kernel().kho().UnrestoredBlocks();
  for (size_t i = 0; i < cases.size(); ++i) {
    const HostileCase& c = cases[i];
    SCOPED_TRACE(c.name);
    abi::KhoXarrayDesc* home = FindHome(("x" + std::to_string(i)).c_str());
    ASSERT_NE(home, nullptr);
    KhoXarray in;
    const size_t log_lines = m.kernel().ctx().LogLines().size();
    const int err = in.Restore(*home);
    const std::vector<std::string> log = m.kernel().ctx().LogLines();
    const std::vector<std::string> new_lines(log.begin() + log_lines, log.end());
    if (c.reason.empty()) {
      ASSERT_EQ(err, 0);
      EXPECT_EQ(in.Count(), 2u);
      continue;
    }
    EXPECT_EQ(err, -EINVAL);
    EXPECT_FALSE(in.initialized());
    EXPECT_EQ(in.Count(), 0u);
    uint64_t e = 0;
    EXPECT_FALSE(in.Load(0, &e));
    EXPECT_EQ(in.Adopt(), -EINVAL);
    EXPECT_THAT(new_lines, Contains(HasSubstr(c.reason)));
  }
  EXPECT_EQ(m.kernel().kho().UnrestoredBlocks(), unrestored) << "nothing was taken";
}

INSTANTIATE_TEST_SUITE_P(KhoXarrayScrub, KhoXarrayHostileTest,
                         ::testing::Values(mm::FreeMemoryPolicy::kPoison,
                                           mm::FreeMemoryPolicy::kInaccessible),
                         [](const ::testing::TestParamInfo<mm::FreeMemoryPolicy>& info) {
                           return info.param == mm::FreeMemoryPolicy::kPoison ? "Poison"
                                                                              : "Inaccessible";
                         });

TEST(KhoXarrayRestoreTest, AMapCannotBeRestoredByTheKernelThatWroteIt) {
  Machine m(XaMachine());
  m.Boot();
  KhoXarray xa;
  ASSERT_EQ(xa.Init(64), 0);
  ASSERT_EQ(xa.Store(1, KhoXarray::MakeValue(1)), 0);
  KhoXarray twin;
  EXPECT_EQ(twin.Restore(xa.descriptor()), -EINVAL) << "its nodes carry no KHO tag here";
  KhoXarray empty;
  abi::KhoXarrayDesc d = {};
  d.magic = abi::kKhoXarrayMagic;
  d.version = abi::kKhoXarrayVersion;
  d.key_bits = 64;
  d.depth = 8;
  d.page_shift = 12;
  ASSERT_EQ(empty.Restore(d), 0) << "an empty map needs no pages";
  EXPECT_TRUE(empty.incoming());
  ASSERT_EQ(empty.Adopt(), 0);
  ASSERT_EQ(empty.Store(2, KhoXarray::MakeValue(2)), 0);
  empty.Destroy();
  xa.Destroy();
}

// ---------------------------------------------------------------------------
// Concurrency

TEST(KhoXarrayTest, ConcurrentStoresAndLookupsKeepTheMapConsistent) {
  Machine m(XaMachine());
  m.Boot();
  KhoXarray xa;
  ASSERT_EQ(xa.Init(64), 0);
  constexpr uint64_t kPerThread = 400;
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&m, &xa, t] {
      m.Activate();
      for (uint64_t i = 0; i < kPerThread; ++i) {
        // Interleaved dense indices share leaves; the high bits spread paths.
        const uint64_t index = (i % 8) << 50 | (i * 4 + t);
        EXPECT_EQ(xa.Store(index, KhoXarray::MakeValue(index)), 0);
        uint64_t e = 0;
        EXPECT_TRUE(xa.Load(index, &e));
        if (i % 3 == 0) {
          EXPECT_EQ(xa.Erase(index), 0);
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(xa.Count(), 4 * (kPerThread - (kPerThread + 2) / 3));
  EXPECT_TRUE(xa.Validate().ok()) << xa.Validate();
  xa.Destroy();
}

// ---------------------------------------------------------------------------
// Page sizes

TEST(KhoXarrayPageSizeTest, SixteenAndSixtyFourKiBPages) {
  struct Shape {
    uint64_t page;
    uint64_t slots;
    unsigned depth;
  };
  for (const Shape& shape : {Shape{16384, 2048, 6}, Shape{65536, 8192, 5}}) {
    const uint64_t page = shape.page;
    const uint64_t slots = shape.slots;
    const unsigned depth = shape.depth;
    SCOPED_TRACE(page);
    Machine m(XaMachine(page));
    m.Boot();
    std::mt19937_64 rng(page);
    Oracle oracle;
    {
      KhoXarray xa;
      ASSERT_EQ(xa.Init(64, NewHome("xa")), 0);
      EXPECT_EQ(xa.depth(), depth);
      EXPECT_EQ(xa.descriptor().page_shift, page == 16384 ? 14u : 16u);
      ASSERT_EQ(xa.Store(0, KhoXarray::MakeValue(0)), 0);
      ASSERT_EQ(xa.Store(slots - 1, KhoXarray::MakeValue(1)), 0);
      EXPECT_EQ(xa.NodeCount(), depth);
      ASSERT_EQ(xa.Store(slots, KhoXarray::MakeValue(2)), 0);
      EXPECT_EQ(xa.NodeCount(), depth + 1);
      ASSERT_EQ(xa.Store(kMax, KhoXarray::MakeValue(3)), 0);
      EXPECT_EQ(xa.NodeCount(), 2 * depth);
      oracle = {{0, KhoXarray::MakeValue(0)},
                {slots - 1, KhoXarray::MakeValue(1)},
                {slots, KhoXarray::MakeValue(2)},
                {kMax, KhoXarray::MakeValue(3)}};
      RunOps(xa, oracle, rng, 250, Patterns()[0].gen);
      RunOps(xa, oracle, rng, 120, Patterns()[2].gen);
    }
    for (int hop = 0; hop < 2; ++hop) {
      ASSERT_TRUE(m.Kexec().ok());
      abi::KhoXarrayDesc* old_home = FindHome("xa");
      ASSERT_NE(old_home, nullptr);
      KhoXarray xa;
      ASSERT_EQ(xa.Restore(*old_home), 0);
      ExpectMatches(xa, oracle);
      if (hop == 1) {
        absl::btree_map<uint64_t, uint64_t> host;
        xa.Convert(&host);
        EXPECT_TRUE(std::equal(host.begin(), host.end(), oracle.begin(), oracle.end()));
        break;
      }
      ASSERT_EQ(xa.Adopt(NewHome("xa")), 0);
      kho_restore_free(old_home);
      RunOps(xa, oracle, rng, 200, Patterns()[3].gen);
    }
  }
}

}  // namespace
}  // namespace khosim

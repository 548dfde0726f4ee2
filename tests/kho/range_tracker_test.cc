// Unit tests for the KHO range tracker (kho-range-v1): coalescing of
// equal-order runs, splitting on delete, orders kept apart, exact-block
// delete semantics, Contains, serialization and the incoming walk (exact
// set, radix walk order, page capacity), re-serialization without leaked
// pages, hostile chains, -ENOMEM from the page provider, and randomized runs
// against a std::set oracle, for 4 KiB, 16 KiB and 64 KiB pages.
#include "khosim/kho/range_tracker.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kho/fake_node_memory.h"
#include "khosim/abi/kho_range.h"
#include "khosim/base/errno_status.h"
#include "khosim/base/types.h"
#include "khosim/kho/radix_tree.h"

namespace khosim::kho {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A block as the tests compare them: (pa, order).
using Block = std::pair<uint64_t, unsigned>;
// An extent as the tests compare them: (start pa, nr_blocks, order).
using Extent = std::tuple<uint64_t, uint64_t, unsigned>;

class RangeTrackerTest : public ::testing::TestWithParam<unsigned> {
 protected:
  unsigned shift() const { return GetParam(); }
  uint64_t page_size() const { return uint64_t{1} << shift(); }
  uint64_t capacity() const { return abi::KhoRangeExtentsPerPage(page_size()); }
  // The block of |order| at pfn.
  PhysAddr At(uint64_t pfn) const { return PhysAddr(pfn << shift()); }
  RadixGeometry geometry() const { return RadixGeometry::For(shift()); }

  std::vector<Block> WalkBlocks(PhysAddr handle, int* ret = nullptr) {
    std::vector<Block> out;
    const int r = RangeTracker::Walk(handle, shift(), mem_, [&](PhysAddr pa, unsigned order) {
      out.emplace_back(pa.value(), order);
      return 0;
    });
    if (ret != nullptr) *ret = r;
    return out;
  }
  static std::vector<Extent> LiveExtents(const RangeTracker& tracker) {
    std::vector<Extent> out;
    tracker.ForEachExtent([&](PhysAddr start, uint64_t nr, unsigned order) {
      out.emplace_back(start.value(), nr, order);
      return 0;
    });
    return out;
  }
  PhysAddr Prepare(RangeTracker& tracker) {
    PhysAddr handle;
    EXPECT_EQ(tracker.PrepareHandover(&handle), 0);
    EXPECT_EQ(handle, tracker.handover());
    return handle;
  }

  // Raw access to chain pages, for hand-corrupted chains.
  abi::KhoRangePageHeader Header(PhysAddr page) {
    abi::KhoRangePageHeader h;
    std::memcpy(&h, mem_.MapNode(page), sizeof(h));
    return h;
  }
  void SetHeader(PhysAddr page, const abi::KhoRangePageHeader& h) {
    std::memcpy(mem_.MapNode(page), &h, sizeof(h));
  }
  abi::KhoRangeExtent Record(PhysAddr page, uint64_t i) {
    abi::KhoRangeExtent e;
    std::memcpy(&e, mem_.MapNode(page) + sizeof(abi::KhoRangePageHeader) + i * sizeof(e),
                sizeof(e));
    return e;
  }
  void SetRecord(PhysAddr page, uint64_t i, const abi::KhoRangeExtent& e) {
    std::memcpy(mem_.MapNode(page) + sizeof(abi::KhoRangePageHeader) + i * sizeof(e), &e,
                sizeof(e));
  }

  // Expects Walk and WalkExtents to refuse |handle| with -EINVAL before any
  // callback, and Validate to name |why|.
  void ExpectRejected(PhysAddr handle, const std::string& why) {
    int calls = 0;
    auto count_block = [&](PhysAddr, unsigned) {
      ++calls;
      return 0;
    };
    auto count_page = [&](PhysAddr) {
      ++calls;
      return 0;
    };
    EXPECT_EQ(RangeTracker::Walk(handle, shift(), mem_, count_block, count_page), -EINVAL);
    auto count_extent = [&](PhysAddr, uint64_t, unsigned) {
      ++calls;
      return 0;
    };
    EXPECT_EQ(RangeTracker::WalkExtents(handle, shift(), mem_, count_extent, count_page), -EINVAL);
    EXPECT_EQ(calls, 0);
    const absl::Status status = RangeTracker::Validate(handle, shift(), mem_);
    EXPECT_EQ(StatusErrno(status), EINVAL) << status;
    EXPECT_THAT(status.message(), HasSubstr(why));
  }

  // |n| order-0 blocks two pages apart: n records that never coalesce.
  void AddScattered(RangeTracker& tracker, uint64_t n, uint64_t first_pfn = 16) {
    for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(tracker.Add(At(first_pfn + 2 * i), 0), 0);
  }

  FakeNodeMemory mem_{GetParam()};
};

// ---------------------------------------------------------------------------
// Live form: coalescing, splitting, orders

TEST_P(RangeTrackerTest, AdjacentBlocksMergeInAnyInsertionOrder) {
  RangeTracker t(shift(), mem_);
  for (uint64_t pfn : {12, 10, 14, 11, 13}) ASSERT_EQ(t.Add(At(pfn), 0), 0);
  EXPECT_THAT(LiveExtents(t), ElementsAre(Extent{At(10).value(), 5, 0}));
  EXPECT_EQ(t.Stats().extents, 1u);
  EXPECT_EQ(t.Stats().blocks, 5u);
  EXPECT_EQ(t.Stats().pages, 5u);
}

TEST_P(RangeTrackerTest, AddBridgingTwoRunsJoinsThem) {
  RangeTracker t(shift(), mem_);
  for (uint64_t pfn : {0x200, 0x400, 0x800}) ASSERT_EQ(t.Add(At(pfn), 9), 0);
  EXPECT_EQ(t.Stats().extents, 2u);
  ASSERT_EQ(t.Add(At(0x600), 9), 0);
  EXPECT_THAT(LiveExtents(t), ElementsAre(Extent{At(0x200).value(), 4, 9}));
  EXPECT_EQ(t.Stats().pages, 4u << 9);
}

TEST_P(RangeTrackerTest, DelInTheMiddleSplitsAndAtTheEdgesShrinks) {
  RangeTracker t(shift(), mem_);
  for (uint64_t pfn = 100; pfn < 110; ++pfn) ASSERT_EQ(t.Add(At(pfn), 0), 0);
  ASSERT_EQ(t.Del(At(104), 0), 0);
  EXPECT_THAT(LiveExtents(t),
              ElementsAre(Extent{At(100).value(), 4, 0}, Extent{At(105).value(), 5, 0}));
  ASSERT_EQ(t.Del(At(100), 0), 0);
  ASSERT_EQ(t.Del(At(109), 0), 0);
  EXPECT_THAT(LiveExtents(t),
              ElementsAre(Extent{At(101).value(), 3, 0}, Extent{At(105).value(), 4, 0}));
  for (uint64_t pfn : {101, 102, 103}) ASSERT_EQ(t.Del(At(pfn), 0), 0);
  EXPECT_THAT(LiveExtents(t), ElementsAre(Extent{At(105).value(), 4, 0}));
  EXPECT_EQ(t.Stats().extents, 1u);
  EXPECT_EQ(t.Stats().blocks, 4u);
  // Re-adding the hole joins the run again.
  ASSERT_EQ(t.Add(At(104), 0), 0);
  EXPECT_THAT(LiveExtents(t), ElementsAre(Extent{At(104).value(), 5, 0}));
}

TEST_P(RangeTrackerTest, MixedOrdersAreKeptApart) {
  RangeTracker t(shift(), mem_);
  // Contiguous in memory but of different orders: three runs, not one.
  ASSERT_EQ(t.Add(At(0), 9), 0);
  ASSERT_EQ(t.Add(At(512), 0), 0);
  ASSERT_EQ(t.Add(At(513), 0), 0);
  ASSERT_EQ(t.Add(At(514), 1), 0);
  // Overlapping blocks of different orders are different members.
  ASSERT_EQ(t.Add(At(0), 0), 0);
  EXPECT_THAT(LiveExtents(t), ElementsAre(Extent{0, 1, 9}, Extent{At(514).value(), 1, 1},
                                          Extent{0, 1, 0}, Extent{At(512).value(), 2, 0}));
  EXPECT_TRUE(t.Contains(At(0), 9));
  EXPECT_TRUE(t.Contains(At(0), 0));
  EXPECT_FALSE(t.Contains(At(1), 0));  // inside the order-9 block, not a member
  EXPECT_FALSE(t.Contains(At(512), 1));
  EXPECT_EQ(t.Stats().blocks, 5u);
  EXPECT_EQ(t.Stats().pages, 512u + 1 + 1 + 2 + 1);
}

TEST_P(RangeTrackerTest, AddIsIdempotent) {
  RangeTracker t(shift(), mem_);
  ASSERT_EQ(t.Add(At(8), 3), 0);
  ASSERT_EQ(t.Add(At(16), 3), 0);
  const RangeTrackerStats before = t.Stats();
  ASSERT_EQ(t.Add(At(8), 3), 0);
  ASSERT_EQ(t.Add(At(16), 3), 0);
  EXPECT_EQ(t.Stats().blocks, before.blocks);
  EXPECT_EQ(t.Stats().extents, 1u);
}

TEST_P(RangeTrackerTest, DelOfUntrackedOrPartiallyOverlappingBlockIsENOENT) {
  RangeTracker t(shift(), mem_);
  ASSERT_EQ(t.Add(At(1024), 9), 0);
  for (uint64_t pfn = 4096; pfn < 4100; ++pfn) ASSERT_EQ(t.Add(At(pfn), 0), 0);
  const std::vector<Extent> before = LiveExtents(t);
  EXPECT_EQ(t.Del(At(1024), 0), -ENOENT);  // head page of the order-9 block
  EXPECT_EQ(t.Del(At(1030), 1), -ENOENT);  // inside it
  EXPECT_EQ(t.Del(At(0), 10), -ENOENT);    // covers it
  EXPECT_EQ(t.Del(At(4096), 2), -ENOENT);  // covers four tracked order-0 pages
  EXPECT_EQ(t.Del(At(4100), 0), -ENOENT);  // right after the run
  EXPECT_EQ(t.Del(At(4095), 0), -ENOENT);  // right before it
  EXPECT_EQ(t.Del(At(1536), 9), -ENOENT);  // next block of that order
  EXPECT_EQ(LiveExtents(t), before);
  EXPECT_EQ(t.Stats().blocks, 5u);
  ASSERT_EQ(t.Del(At(1024), 9), 0);
  EXPECT_EQ(t.Del(At(1024), 9), -ENOENT);  // a second delete
}

TEST_P(RangeTrackerTest, RejectsMisalignedBlocksAndOrdersTooLarge) {
  RangeTracker t(shift(), mem_);
  EXPECT_EQ(t.max_order(), 64 - shift());
  EXPECT_EQ(t.Add(PhysAddr(page_size() / 2), 0), -EINVAL);
  EXPECT_EQ(t.Add(At(1), 1), -EINVAL);
  EXPECT_EQ(t.Add(At(512 + 256), 9), -EINVAL);
  EXPECT_EQ(t.Add(PhysAddr(0), t.max_order() + 1), -EINVAL);
  EXPECT_EQ(t.Del(At(1), 1), -EINVAL);
  EXPECT_FALSE(t.Contains(At(1), 1));
  EXPECT_FALSE(t.Contains(PhysAddr(0), t.max_order() + 1));
  EXPECT_EQ(t.Stats().blocks, 0u);
}

TEST_P(RangeTrackerTest, ContainsSeesExactlyTheMembers) {
  RangeTracker t(shift(), mem_);
  for (uint64_t pfn = 64; pfn < 64 + 8 * 4; pfn += 4) ASSERT_EQ(t.Add(At(pfn), 2), 0);
  ASSERT_EQ(t.Del(At(76), 2), 0);
  for (uint64_t pfn = 56; pfn < 104; pfn += 4) {
    const bool member = pfn >= 64 && pfn < 96 && pfn != 76;
    EXPECT_EQ(t.Contains(At(pfn), 2), member) << pfn;
    EXPECT_FALSE(t.Contains(At(pfn), 0)) << pfn;
    EXPECT_FALSE(t.Contains(At(pfn & ~uint64_t{7}), 3)) << pfn;
  }
}

TEST_P(RangeTrackerTest, ExtremesOfTheAddressSpace) {
  RangeTracker t(shift(), mem_);
  const uint64_t top_pfn = (uint64_t{1} << (64 - shift())) - 1;
  ASSERT_EQ(t.Add(PhysAddr(0), t.max_order()), 0);  // the whole space
  ASSERT_EQ(t.Add(At(top_pfn), 0), 0);              // its last page
  ASSERT_EQ(t.Add(At(top_pfn - 1), 0), 0);
  ASSERT_EQ(t.Add(PhysAddr(uint64_t{1} << 63), t.max_order() - 1), 0);  // upper half
  EXPECT_EQ(t.Stats().extents, 3u);
  const PhysAddr handle = Prepare(t);
  int ret = -1;
  EXPECT_THAT(WalkBlocks(handle, &ret),
              ElementsAre(Block{0, t.max_order()}, Block{uint64_t{1} << 63, t.max_order() - 1},
                          Block{At(top_pfn - 1).value(), 0}, Block{At(top_pfn).value(), 0}));
  EXPECT_EQ(ret, 0);
  t.Destroy();
}

// ---------------------------------------------------------------------------
// Serialization and the incoming walk

TEST_P(RangeTrackerTest, EmptySetTakesNoPage) {
  RangeTracker t(shift(), mem_);
  EXPECT_FALSE(t.Stats().serialization_current);
  PhysAddr handle(0x1234);
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  EXPECT_TRUE(handle.IsNull());
  EXPECT_EQ(mem_.live(), 0u);
  EXPECT_TRUE(t.Stats().serialization_current);
  int ret = -1;
  EXPECT_TRUE(WalkBlocks(handle, &ret).empty());
  EXPECT_EQ(ret, 0);
  EXPECT_TRUE(RangeTracker::Validate(handle, shift(), mem_).ok());
}

TEST_P(RangeTrackerTest, RecordsAndHeaderBytes) {
  RangeTracker t(shift(), mem_);
  for (uint64_t pfn = 0x40000; pfn < 0x40000 + 3 * 512; pfn += 512) {
    ASSERT_EQ(t.Add(At(pfn), 9), 0);
  }
  ASSERT_EQ(t.Add(At(0x10), 0), 0);
  const PhysAddr handle = Prepare(t);
  ASSERT_FALSE(handle.IsNull());
  const abi::KhoRangePageHeader h = Header(handle);
  EXPECT_EQ(h.magic, abi::kKhoRangeMagic);
  EXPECT_EQ(h.version, abi::kKhoRangeVersion);
  EXPECT_EQ(h.page_shift, shift());
  EXPECT_EQ(h.count, 2u);
  EXPECT_EQ(h.next, 0u);
  const abi::KhoRangeExtent a = Record(handle, 0);
  EXPECT_EQ(a.pfn, 0x40000u);
  EXPECT_EQ(a.nr_blocks, 3u);
  EXPECT_EQ(a.order, 9u);
  const abi::KhoRangeExtent b = Record(handle, 1);
  EXPECT_EQ(b.pfn, 0x10u);
  EXPECT_EQ(b.nr_blocks, 1u);
  EXPECT_EQ(b.order, 0u);
  // The rest of the page is zero.
  const uint8_t* bytes = mem_.MapNode(handle);
  const uint64_t used = sizeof(abi::KhoRangePageHeader) + 2 * sizeof(abi::KhoRangeExtent);
  EXPECT_TRUE(std::all_of(bytes + used, bytes + page_size(), [](uint8_t v) { return v == 0; }));
  EXPECT_EQ(t.Stats().serialized_records, 2u);
  EXPECT_EQ(t.Stats().serialized_pages, 1u);
  EXPECT_EQ(t.Stats().serialized_bytes, page_size());
  t.Destroy();
  EXPECT_EQ(mem_.live(), 0u);
}

TEST_P(RangeTrackerTest, PageCapacityAndChaining) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, capacity());
  PhysAddr handle = Prepare(t);
  EXPECT_EQ(t.Stats().serialized_pages, 1u);
  EXPECT_EQ(Header(handle).count, capacity());
  EXPECT_EQ(Header(handle).next, 0u);

  AddScattered(t, 1, 16 + 2 * capacity());
  handle = Prepare(t);
  EXPECT_EQ(t.Stats().serialized_pages, 2u);
  EXPECT_EQ(mem_.live(), 2u);
  EXPECT_EQ(Header(handle).count, capacity());
  const PhysAddr second(Header(handle).next);
  EXPECT_EQ(Header(second).count, 1u);
  EXPECT_EQ(Header(second).next, 0u);

  std::vector<uint64_t> pages;
  int ret = RangeTracker::Walk(
      handle, shift(), mem_, [](PhysAddr, unsigned) { return 0; },
      [&](PhysAddr page) {
        pages.push_back(page.value());
        return 0;
      });
  EXPECT_EQ(ret, 0);
  EXPECT_THAT(pages, ElementsAre(handle.value(), second.value()));
  EXPECT_EQ(WalkBlocks(handle, &ret).size(), capacity() + 1);
  t.Destroy();
}

TEST_P(RangeTrackerTest, WalkOrderIsTheRadixWalkOrder) {
  RangeTracker t(shift(), mem_);
  FakeNodeMemory radix_mem(shift());
  RadixTree radix(geometry(), radix_mem);
  ASSERT_EQ(radix.Init(), 0);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 2000; ++i) {
    const unsigned order = static_cast<unsigned>(rng() % 11);
    const uint64_t pfn = ((rng() % (uint64_t{1} << 20)) >> order) << order;
    ASSERT_EQ(t.Add(At(pfn), order), 0);
    ASSERT_EQ(radix.AddBlock(At(pfn), order), 0);
  }
  std::vector<Block> from_radix;
  ASSERT_EQ(radix.Walk([&](uint64_t key) {
    PhysAddr pa;
    unsigned order;
    if (!DecodeKey(geometry(), key, &pa, &order)) return -EINVAL;
    from_radix.emplace_back(pa.value(), order);
    return 0;
  }),
            0);
  int ret = -1;
  EXPECT_EQ(WalkBlocks(Prepare(t), &ret), from_radix);
  EXPECT_EQ(ret, 0);
  radix.Destroy();
  t.Destroy();
}

TEST_P(RangeTrackerTest, WalkExtentsReportsRecords) {
  RangeTracker t(shift(), mem_);
  for (uint64_t pfn = 0; pfn < 64; pfn += 8) ASSERT_EQ(t.Add(At(pfn + 1024), 3), 0);
  ASSERT_EQ(t.Add(At(7), 0), 0);
  std::vector<Extent> extents;
  ASSERT_EQ(RangeTracker::WalkExtents(Prepare(t), shift(), mem_,
                                      [&](PhysAddr start, uint64_t nr, unsigned order) {
                                        extents.emplace_back(start.value(), nr, order);
                                        return 0;
                                      }),
            0);
  EXPECT_THAT(extents, ElementsAre(Extent{At(1024).value(), 8, 3}, Extent{At(7).value(), 1, 0}));
  EXPECT_EQ(extents, LiveExtents(t));
  t.Destroy();
}

TEST_P(RangeTrackerTest, ForEachBlockMatchesTheWalkAndCallbacksMayBeNull) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, capacity() + 3);
  for (uint64_t pfn = 1 << 16; pfn < (1 << 16) + 64; pfn += 16) ASSERT_EQ(t.Add(At(pfn), 4), 0);
  const PhysAddr handle = Prepare(t);
  std::vector<Block> live;
  std::vector<uint64_t> live_pages;
  ASSERT_EQ(t.ForEachBlock(
                [&](PhysAddr pa, unsigned order) {
                  live.emplace_back(pa.value(), order);
                  return 0;
                },
                [&](PhysAddr page) {
                  live_pages.push_back(page.value());
                  return 0;
                }),
            0);
  EXPECT_EQ(live, WalkBlocks(handle));
  EXPECT_EQ(live.size(), capacity() + 3 + 4);
  std::vector<uint64_t> chain;
  ASSERT_EQ(RangeTracker::Walk(handle, shift(), mem_, nullptr,
                               [&](PhysAddr page) {
                                 chain.push_back(page.value());
                                 return 0;
                               }),
            0);
  EXPECT_EQ(chain, live_pages);
  EXPECT_EQ(chain.size(), 2u);
  EXPECT_EQ(RangeTracker::WalkExtents(handle, shift(), mem_, nullptr, nullptr), 0);
  EXPECT_EQ(t.ForEachBlock(nullptr, nullptr), 0);
  EXPECT_EQ(t.ForEachBlock([](PhysAddr, unsigned) { return 9; }), 9);
  t.Destroy();
}

TEST_P(RangeTrackerTest, CallbackResultStopsTheWalk) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, capacity() + 10);
  const PhysAddr handle = Prepare(t);
  int blocks = 0;
  EXPECT_EQ(RangeTracker::Walk(handle, shift(), mem_,
                               [&](PhysAddr, unsigned) { return ++blocks == 3 ? 42 : 0; }),
            42);
  EXPECT_EQ(blocks, 3);
  int pages = 0;
  blocks = 0;
  EXPECT_EQ(RangeTracker::Walk(
                handle, shift(), mem_,
                [&](PhysAddr, unsigned) {
                  ++blocks;
                  return 0;
                },
                [&](PhysAddr) { return ++pages == 2 ? -EIO : 0; }),
            -EIO);
  EXPECT_EQ(blocks, static_cast<int>(capacity()));  // the first page's, not the second's
  t.Destroy();
}

TEST_P(RangeTrackerTest, ReserializationFreesThePreviousChain) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, 3 * capacity());
  const PhysAddr first = Prepare(t);
  EXPECT_EQ(mem_.live(), 3u);
  EXPECT_TRUE(t.Stats().serialization_current);

  ASSERT_EQ(t.Del(At(16), 0), 0);
  EXPECT_FALSE(t.Stats().serialization_current);
  const PhysAddr second = Prepare(t);
  EXPECT_TRUE(t.Stats().serialization_current);
  EXPECT_EQ(mem_.live(), 3u);
  EXPECT_NE(first, second);  // new pages were taken before the old ones went

  // Shrinking to one page and to nothing gives the pages back.
  for (uint64_t i = 1; i < 3 * capacity() - 5; ++i) ASSERT_EQ(t.Del(At(16 + 2 * i), 0), 0);
  Prepare(t);
  EXPECT_EQ(mem_.live(), 1u);
  EXPECT_EQ(WalkBlocks(t.handover()).size(), 5u);
  for (uint64_t i = 3 * capacity() - 5; i < 3 * capacity(); ++i) {
    ASSERT_EQ(t.Del(At(16 + 2 * i), 0), 0);
  }
  EXPECT_TRUE(Prepare(t).IsNull());
  EXPECT_EQ(mem_.live(), 0u);

  // Destroy frees the chain and the set.
  AddScattered(t, 4);
  Prepare(t);
  EXPECT_EQ(mem_.live(), 1u);
  t.Destroy();
  EXPECT_EQ(mem_.live(), 0u);
  EXPECT_TRUE(t.handover().IsNull());
  EXPECT_EQ(t.Stats().blocks, 0u);
  EXPECT_EQ(t.Stats().extents, 0u);
  EXPECT_FALSE(t.Stats().serialization_current);
  EXPECT_FALSE(t.Contains(At(16), 0));
}

TEST_P(RangeTrackerTest, AllocationFailureKeepsThePreviousChainAndTheSet) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, 2 * capacity());
  const PhysAddr old_handle = Prepare(t);
  const std::vector<Block> old_blocks = WalkBlocks(old_handle);
  AddScattered(t, capacity(), 16 + 4 * capacity());  // now three pages' worth
  const std::vector<Extent> live = LiveExtents(t);
  const RangeTrackerStats before = t.Stats();

  for (uint64_t nth = 1; nth <= 3; ++nth) {
    SCOPED_TRACE(nth);
    mem_.FailNth(nth);
    PhysAddr handle = old_handle;
    EXPECT_EQ(t.PrepareHandover(&handle), -ENOMEM);
    mem_.FailNth(0);
    EXPECT_EQ(handle, old_handle);
    EXPECT_EQ(t.handover(), old_handle);
    EXPECT_EQ(mem_.live(), 2u);  // the old chain only: the attempt's pages were freed
    EXPECT_EQ(WalkBlocks(old_handle), old_blocks);
    EXPECT_EQ(LiveExtents(t), live);
    EXPECT_EQ(t.Stats().serialized_pages, 2u);
    EXPECT_EQ(t.Stats().blocks, before.blocks);
    EXPECT_FALSE(t.Stats().serialization_current);
  }
  const PhysAddr handle = Prepare(t);
  EXPECT_EQ(mem_.live(), 3u);
  EXPECT_EQ(WalkBlocks(handle).size(), 3 * capacity());
  t.Destroy();
  EXPECT_EQ(mem_.live(), 0u);
}

TEST_P(RangeTrackerTest, AllocationFailureOnFirstPrepareLeavesNoChain) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, 10);
  mem_.FailAll(true);
  PhysAddr handle;
  EXPECT_EQ(t.PrepareHandover(&handle), -ENOMEM);
  EXPECT_TRUE(handle.IsNull());
  EXPECT_TRUE(t.handover().IsNull());
  EXPECT_EQ(mem_.live(), 0u);
  EXPECT_FALSE(t.Stats().serialization_current);
  mem_.FailAll(false);
  EXPECT_EQ(WalkBlocks(Prepare(t)).size(), 10u);
  t.Destroy();
}

// ---------------------------------------------------------------------------
// Hostile chains

TEST_P(RangeTrackerTest, HostileBadHeader) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, 5);
  const PhysAddr handle = Prepare(t);
  const abi::KhoRangePageHeader good = Header(handle);
  abi::KhoRangePageHeader h = good;

  h.magic ^= 1;
  SetHeader(handle, h);
  ExpectRejected(handle, "bad magic");
  h = good;
  h.version = 2;
  SetHeader(handle, h);
  ExpectRejected(handle, "unknown version 2");
  h = good;
  h.page_shift = static_cast<uint8_t>(shift() == 12 ? 14 : 12);
  SetHeader(handle, h);
  ExpectRejected(handle, "page_shift");
  h = good;
  h.count = 0;
  SetHeader(handle, h);
  ExpectRejected(handle, "count 0");
  h = good;
  h.count = static_cast<uint16_t>(capacity() + 1);
  SetHeader(handle, h);
  ExpectRejected(handle, "outside 1..");
  h = good;
  h.count = UINT16_MAX;
  SetHeader(handle, h);
  ExpectRejected(handle, "outside 1..");

  SetHeader(handle, good);
  EXPECT_TRUE(RangeTracker::Validate(handle, shift(), mem_).ok());
  // A walker built for another page size refuses the chain too.
  EXPECT_EQ(RangeTracker::Walk(handle, shift() == 12 ? 14 : 12, mem_,
                               [](PhysAddr, unsigned) { return 0; }),
            -EINVAL);
  EXPECT_EQ(RangeTracker::Walk(handle, 13, mem_, [](PhysAddr, unsigned) { return 0; }), -EINVAL);
  t.Destroy();
}

TEST_P(RangeTrackerTest, HostileNextPointers) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, 3 * capacity());
  const PhysAddr handle = Prepare(t);
  const PhysAddr second(Header(handle).next);
  const PhysAddr third(Header(second).next);
  abi::KhoRangePageHeader h = Header(third);
  ASSERT_EQ(h.next, 0u);

  h.next = third.value();  // a page pointing at itself
  SetHeader(third, h);
  ExpectRejected(handle, "reached twice");
  h.next = handle.value();  // back to the first page
  SetHeader(third, h);
  ExpectRejected(handle, "reached twice");
  h.next = second.value() + 8;
  SetHeader(third, h);
  ExpectRejected(handle, "not page aligned");
  h.next = mem_.End().value();
  SetHeader(third, h);
  ExpectRejected(handle, "not a usable RAM page");
  ExpectRejected(PhysAddr(handle.value() + page_size() / 2), "not page aligned");

  h.next = 0;
  SetHeader(third, h);
  EXPECT_TRUE(RangeTracker::Validate(handle, shift(), mem_).ok());
  t.Destroy();
}

TEST_P(RangeTrackerTest, HostileRecords) {
  RangeTracker t(shift(), mem_);
  for (uint64_t pfn = 0; pfn < 3 * 1024; pfn += 1024) ASSERT_EQ(t.Add(At(pfn + 4096), 9), 0);
  for (uint64_t pfn = 0; pfn < 6; pfn += 2) ASSERT_EQ(t.Add(At(pfn + 100), 0), 0);
  const PhysAddr handle = Prepare(t);
  ASSERT_EQ(Header(handle).count, 6u);  // three order-9, then three order-0 records
  struct Case {
    uint64_t index;
    void (*corrupt)(abi::KhoRangeExtent& e);
    const char* why;
  };
  const Case cases[] = {
      {1, [](abi::KhoRangeExtent& e) { e.reserved[1] = 1; }, "reserved bytes"},
      {1, [](abi::KhoRangeExtent& e) { e.nr_blocks = 0; }, "no blocks"},
      {1, [](abi::KhoRangeExtent& e) { e.order = 65; }, "order too large"},
      {1, [](abi::KhoRangeExtent& e) { e.pfn += 256; }, "pfn not aligned"},
      // Overlaps record 0 (pfn 4096, 1 block): starts inside it.
      {1, [](abi::KhoRangeExtent& e) { e.pfn = 4096; }, "overlaps or precedes"},
      // Record 2 moved before record 1: unsorted.
      {2, [](abi::KhoRangeExtent& e) { e.pfn = 4096 + 512; }, "overlaps or precedes"},
      // Record 1 grown to cover record 2.
      {1, [](abi::KhoRangeExtent& e) { e.nr_blocks = 3; }, "overlaps or precedes"},
      // Record 1 ends exactly where record 2 starts: should have been one.
      {1, [](abi::KhoRangeExtent& e) { e.nr_blocks = 2; }, "touches"},
      // An order-0 record among the order-9 ones: the next order-9 record
      // then breaks the descending order.
      {1, [](abi::KhoRangeExtent& e) { e.order = 0; }, "orders not descending"},
      // An order-9 record after the order-0 ones: orders ascend.
      {4, [](abi::KhoRangeExtent& e) { e.order = 1; }, "orders not descending"},
      {5,
       [](abi::KhoRangeExtent& e) {
         e.pfn = ~uint64_t{0} << 2;  // beyond 2^(64 - page_shift) pfns
         e.order = 2;
       },
       "ends beyond the physical address space"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.why);
    const abi::KhoRangeExtent good = Record(handle, c.index);
    abi::KhoRangeExtent bad = good;
    c.corrupt(bad);
    SetRecord(handle, c.index, bad);
    ExpectRejected(handle, c.why);
    SetRecord(handle, c.index, good);
    ASSERT_TRUE(RangeTracker::Validate(handle, shift(), mem_).ok());
  }
  // A record that runs past the end of the physical address space.
  abi::KhoRangeExtent last = Record(handle, 5);
  last.pfn = (uint64_t{1} << (64 - shift())) - 2;
  last.nr_blocks = 3;
  SetRecord(handle, 5, last);
  ExpectRejected(handle, "ends beyond the physical address space");
  last.nr_blocks = 2;  // ends exactly at the top: fine
  SetRecord(handle, 5, last);
  EXPECT_TRUE(RangeTracker::Validate(handle, shift(), mem_).ok());
  t.Destroy();
}

TEST_P(RangeTrackerTest, HostileRecordsAcrossPages) {
  RangeTracker t(shift(), mem_);
  AddScattered(t, capacity() + 1);
  const PhysAddr handle = Prepare(t);
  const PhysAddr second(Header(handle).next);
  abi::KhoRangeExtent e = Record(second, 0);
  const abi::KhoRangeExtent good = e;
  e.pfn = Record(handle, capacity() - 1).pfn;  // repeats the first page's last block
  SetRecord(second, 0, e);
  ExpectRejected(handle, "overlaps or precedes");
  SetRecord(second, 0, good);
  EXPECT_TRUE(RangeTracker::Validate(handle, shift(), mem_).ok());
  t.Destroy();
}

TEST_P(RangeTrackerTest, FullRecordMayBeFollowedByItsContinuation) {
  // A run longer than a u32 count is two records that touch; only a full
  // first record makes that canonical. Built by hand: no test adds 2^32
  // blocks.
  PhysAddr page = mem_.AllocNode();
  ASSERT_FALSE(page.IsNull());
  SetHeader(page, {.magic = abi::kKhoRangeMagic,
                   .version = abi::kKhoRangeVersion,
                   .page_shift = static_cast<uint8_t>(shift()),
                   .count = 2,
                   .next = 0});
  SetRecord(page, 0, {.pfn = 0, .nr_blocks = UINT32_MAX, .order = 0, .reserved = {0, 0, 0}});
  SetRecord(page, 1,
            {.pfn = uint64_t{UINT32_MAX}, .nr_blocks = 2, .order = 0, .reserved = {0, 0, 0}});
  std::vector<Extent> extents;
  EXPECT_EQ(RangeTracker::WalkExtents(page, shift(), mem_,
                                      [&](PhysAddr start, uint64_t nr, unsigned order) {
                                        extents.emplace_back(start.value(), nr, order);
                                        return 0;
                                      }),
            0);
  EXPECT_THAT(extents, ElementsAre(Extent{0, UINT32_MAX, 0}, Extent{At(UINT32_MAX).value(), 2, 0}));
  SetRecord(page, 0, {.pfn = 0, .nr_blocks = UINT32_MAX - 1, .order = 0, .reserved = {0, 0, 0}});
  SetRecord(page, 1,
            {.pfn = uint64_t{UINT32_MAX} - 1, .nr_blocks = 2, .order = 0, .reserved = {0, 0, 0}});
  ExpectRejected(page, "touches");
  mem_.FreeNode(page);
}

// ---------------------------------------------------------------------------
// Randomized against a std::set oracle of radix keys (whose ascending order
// is the expected walk order)

// Runs of consecutive equal-order blocks in ascending key order: what the
// tracker's extent count must be.
uint64_t OracleRuns(const RadixGeometry& g, const std::set<uint64_t>& keys) {
  uint64_t runs = 0;
  bool have_prev = false;
  uint64_t prev_key = 0;
  unsigned prev_order = 0;
  for (uint64_t key : keys) {
    PhysAddr pa;
    unsigned order = 0;
    EXPECT_TRUE(DecodeKey(g, key, &pa, &order));
    if (!have_prev || order != prev_order || key != prev_key + 1) ++runs;
    have_prev = true;
    prev_key = key;
    prev_order = order;
  }
  return runs;
}

void ExpectMatchesOracle(RangeTracker& t, FakeNodeMemory& mem, const RadixGeometry& g,
                         const std::set<uint64_t>& oracle) {
  std::vector<Block> want;
  uint64_t pages = 0;
  for (uint64_t key : oracle) {
    PhysAddr pa;
    unsigned order;
    ASSERT_TRUE(DecodeKey(g, key, &pa, &order));
    want.emplace_back(pa.value(), order);
    pages += uint64_t{1} << order;
  }
  PhysAddr handle;
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  std::vector<Block> got;
  std::vector<uint64_t> chain;
  const int ret = RangeTracker::Walk(
      handle, g.page_shift, mem,
      [&](PhysAddr pa, unsigned order) {
        got.emplace_back(pa.value(), order);
        return 0;
      },
      [&](PhysAddr page) {
        chain.push_back(page.value());
        return 0;
      });
  ASSERT_EQ(ret, 0);
  EXPECT_EQ(got, want);
  const RangeTrackerStats stats = t.Stats();
  EXPECT_EQ(stats.blocks, oracle.size());
  EXPECT_EQ(stats.pages, pages);
  EXPECT_EQ(stats.extents, OracleRuns(g, oracle));
  EXPECT_EQ(stats.serialized_records, stats.extents);  // no run reaches 2^32 blocks
  EXPECT_EQ(stats.serialized_pages, chain.size());
  EXPECT_EQ(mem.live(), chain.size());  // nothing else is held: no leak
}

class RangeTrackerRandomTest : public RangeTrackerTest {};

TEST_P(RangeTrackerRandomTest, RandomOpsMatchOracle) {
  const RadixGeometry g = geometry();
  for (uint64_t seed : {1, 2, 3, 4}) {
    SCOPED_TRACE(seed);
    RangeTracker t(shift(), mem_);
    std::mt19937_64 rng(seed * 7919 + shift());
    std::set<uint64_t> oracle;
    // A small window and a few orders, so that runs form, join and split.
    auto random_block = [&]() -> std::pair<PhysAddr, unsigned> {
      if (rng() % 100 == 0) {
        const unsigned order = static_cast<unsigned>(rng() % (t.max_order() + 1));
        const unsigned s = shift() + order;
        return {PhysAddr(s >= 64 ? 0 : (rng() >> s) << s), order};
      }
      const unsigned order = static_cast<unsigned>(rng() % 4);
      const uint64_t pfn = ((rng() % 4096) >> order) << order;
      return {At(pfn), order};
    };
    for (int op = 0; op < 20000; ++op) {
      const auto [pa, order] = random_block();
      const uint64_t key = EncodeKey(g, pa, order);
      if (rng() % 10 < 6) {
        ASSERT_EQ(t.Add(pa, order), 0);
        oracle.insert(key);
      } else {
        ASSERT_EQ(t.Del(pa, order), oracle.erase(key) ? 0 : -ENOENT);
      }
      if (op % 97 == 0) {
        const auto [qpa, qorder] = random_block();
        ASSERT_EQ(t.Contains(qpa, qorder), oracle.count(EncodeKey(g, qpa, qorder)) > 0);
      }
      if (op % 5000 == 4999) ExpectMatchesOracle(t, mem_, g, oracle);
    }
    t.Destroy();
    EXPECT_EQ(mem_.live(), 0u);
  }
}

// The published maple-tree workload, scaled down: folios of random order
// 0..10, ~N per order, placed one after another in a shuffled order, each
// aligned to its size; then a random third of them unpreserved.
TEST_P(RangeTrackerRandomTest, RandomOrderFolios) {
  const RadixGeometry g = geometry();
  for (uint64_t seed : {11, 12, 13}) {
    SCOPED_TRACE(seed);
    RangeTracker t(shift(), mem_);
    std::mt19937_64 rng(seed);
    std::vector<unsigned> orders;
    for (unsigned order = 0; order <= 10; ++order) {
      orders.insert(orders.end(), 100, order);
    }
    std::shuffle(orders.begin(), orders.end(), rng);
    std::set<uint64_t> oracle;
    std::vector<std::pair<PhysAddr, unsigned>> folios;
    uint64_t pfn = 1 << 20;
    for (unsigned order : orders) {
      pfn = (pfn + (uint64_t{1} << order) - 1) >> order << order;
      folios.emplace_back(At(pfn), order);
      ASSERT_EQ(t.Add(At(pfn), order), 0);
      oracle.insert(EncodeKey(g, At(pfn), order));
      pfn += uint64_t{1} << order;
    }
    ExpectMatchesOracle(t, mem_, g, oracle);
    std::shuffle(folios.begin(), folios.end(), rng);
    for (size_t i = 0; i < folios.size() / 3; ++i) {
      ASSERT_EQ(t.Del(folios[i].first, folios[i].second), 0);
      oracle.erase(EncodeKey(g, folios[i].first, folios[i].second));
    }
    ExpectMatchesOracle(t, mem_, g, oracle);
    t.Destroy();
    EXPECT_EQ(mem_.live(), 0u);
  }
}

std::string ShiftName(const ::testing::TestParamInfo<unsigned>& info) {
  return "Shift" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(PageSizes, RangeTrackerTest, ::testing::Values(12u, 14u, 16u), ShiftName);
INSTANTIATE_TEST_SUITE_P(PageSizes, RangeTrackerRandomTest, ::testing::Values(12u, 14u, 16u),
                         ShiftName);

}  // namespace
}  // namespace khosim::kho

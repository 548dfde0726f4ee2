// The kho-v1 profile: the legacy bitmap tracker and its khoser_mem_chunk
// list (unit tests on fake pages: bit layout, chunk bytes, the 255-entry
// limit, re-runnable serialization, hostile lists), the kho-v1 root FDT,
// and whole machines: random-order folios across one and two kexecs,
// finalize without leaks, kho-v1 <-> kho-v4 refusals, LUO switched off, and
// corrupted chunk lists in kernel B.
#include <libfdt.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kho/fake_node_memory.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/kho/bitmap_tracker.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_fdt.h"
#include "khosim/kho/preservation_tracker.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using kho::BitmapTracker;
using kho::FakeNodeMemory;

using Block = std::pair<uint64_t, unsigned>;  // (pa, order)

abi::KhoserMemChunkHeader ReadHeader(const uint8_t* chunk) {
  abi::KhoserMemChunkHeader h;
  std::memcpy(&h, chunk, sizeof(h));
  return h;
}

abi::KhoserMemBitmapPtr ReadEntry(const uint8_t* chunk, uint64_t i) {
  abi::KhoserMemBitmapPtr e;
  std::memcpy(&e, chunk + sizeof(abi::KhoserMemChunkHeader) + i * sizeof(e), sizeof(e));
  return e;
}

void WriteHeader(uint8_t* chunk, const abi::KhoserMemChunkHeader& h) {
  std::memcpy(chunk, &h, sizeof(h));
}

void WriteEntry(uint8_t* chunk, uint64_t i, const abi::KhoserMemBitmapPtr& e) {
  std::memcpy(chunk + sizeof(abi::KhoserMemChunkHeader) + i * sizeof(e), &e, sizeof(e));
}

std::vector<Block> Incoming(const kho::PreservationTracker& t, PhysAddr handle, int* ret,
                            std::vector<uint64_t>* pages = nullptr) {
  std::vector<Block> blocks;
  *ret = t.WalkIncoming(
      handle,
      [&](PhysAddr pa, unsigned order) {
        blocks.emplace_back(pa.value(), order);
        return 0;
      },
      [&](PhysAddr page) {
        if (pages != nullptr) pages->push_back(page.value());
        return 0;
      });
  return blocks;
}

std::vector<Block> Outgoing(const kho::PreservationTracker& t) {
  std::vector<Block> blocks;
  t.ForEachBlock(
      [&](PhysAddr pa, unsigned order) {
        blocks.emplace_back(pa.value(), order);
        return 0;
      },
      nullptr);
  return blocks;
}

// ---------------------------------------------------------------------------
// BitmapTracker on fake pages

TEST(BitmapTrackerTest, OneBitPerBlockInTheBitmapOfItsOrderAndIndex) {
  FakeNodeMemory mem(12);
  BitmapTracker t(12, mem);
  EXPECT_TRUE(t.ready()) << "static data: no Init needed";
  EXPECT_EQ(t.preserve_bits(), 32768u);
  EXPECT_EQ(t.chunk_capacity(), 255u);
  // pfn 0x40005, order 0: bitmap index 0x40005 / 32768 = 8, bit 5.
  ASSERT_EQ(t.Add(PhysAddr(0x40005ull << 12), 0), 0);
  // Order 9 at 1 GiB: pfn >> 9 = 0x200, bitmap 0, bit 512.
  ASSERT_EQ(t.Add(PhysAddr(1ull << 30), 9), 0);
  EXPECT_EQ(t.Add(PhysAddr(1ull << 30), 9), 0) << "a set: adding again is success";
  EXPECT_EQ(t.Stats().bitmaps, 2u);
  EXPECT_EQ(t.Stats().orders, 2u);
  EXPECT_EQ(mem.live(), 2u);

  PhysAddr handle;
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  const uint8_t* chunk0 = mem.MapNode(handle);
  const abi::KhoserMemChunkHeader h0 = ReadHeader(chunk0);
  EXPECT_EQ(h0.order, 0u);
  EXPECT_EQ(h0.num_elms, 1u);
  const abi::KhoserMemBitmapPtr e0 = ReadEntry(chunk0, 0);
  EXPECT_EQ(e0.phys_start, (8ull * 32768) << 12);
  const uint8_t* bits0 = mem.MapNode(PhysAddr(e0.bitmap));
  EXPECT_EQ(bits0[0], 1u << 5);
  const uint8_t* chunk1 = mem.MapNode(PhysAddr(h0.next));
  const abi::KhoserMemChunkHeader h1 = ReadHeader(chunk1);
  EXPECT_EQ(h1.order, 9u);
  EXPECT_EQ(h1.num_elms, 1u);
  EXPECT_EQ(h1.next, 0u);
  const abi::KhoserMemBitmapPtr e1 = ReadEntry(chunk1, 0);
  EXPECT_EQ(e1.phys_start, 0u);
  EXPECT_EQ(mem.MapNode(PhysAddr(e1.bitmap))[512 / 8], 1u);

  EXPECT_TRUE(t.Contains(PhysAddr(0x40005ull << 12), 0));
  EXPECT_FALSE(t.Contains(PhysAddr(0x40006ull << 12), 0));
  EXPECT_FALSE(t.Contains(PhysAddr(1ull << 30), 8)) << "orders never alias";
  EXPECT_EQ(t.Add(PhysAddr(0x1000), 1), -EINVAL) << "not aligned to its order";
  EXPECT_EQ(t.Add(PhysAddr(0), t.max_order() + 1), -EINVAL);
  EXPECT_EQ(t.Stats().chunks, 2u);
  EXPECT_EQ(t.Stats().metadata_pages, 4u);
  EXPECT_EQ(t.Stats().metadata_bytes, 4u * 4096);
}

TEST(BitmapTrackerTest, DelClearsTheBitKeepsThePageAndReportsMissingMetadata) {
  FakeNodeMemory mem(12);
  BitmapTracker t(12, mem);
  const PhysAddr pa(0x12345ull << 12);
  ASSERT_EQ(t.Add(pa, 0), 0);
  EXPECT_EQ(t.Del(pa, 0), 0);
  EXPECT_FALSE(t.Contains(pa, 0));
  EXPECT_EQ(t.Del(pa, 0), 0) << "bit already clear: success";
  EXPECT_EQ(mem.live(), 1u) << "the bitmap page stays";
  EXPECT_EQ(t.Del(PhysAddr(0x12340ull << 12), 3), -ENOENT) << "no such order";
  EXPECT_EQ(t.Del(PhysAddr(8ull << 30), 0), -ENOENT) << "no bitmap for that index";
  EXPECT_EQ(t.Del(PhysAddr(0x800), 0), -EINVAL);
  EXPECT_THAT(Outgoing(t), IsEmpty());
}

TEST(BitmapTrackerTest, ChunkListHas255EntriesPerChunkAndOneRunPerOrderAscending) {
  FakeNodeMemory mem(12);
  BitmapTracker t(12, mem);
  // 256 order-0 bitmaps (one page in each of 256 windows of 128 MiB), two
  // order-3 bitmaps and one order-9 bitmap, added in descending order.
  ASSERT_EQ(t.Add(PhysAddr(5ull << 30), 9), 0);
  ASSERT_EQ(t.Add(PhysAddr(3ull << 40), 3), 0);
  ASSERT_EQ(t.Add(PhysAddr(1ull << 20), 3), 0);
  for (uint64_t w = 256; w-- > 0;) {
    ASSERT_EQ(t.Add(PhysAddr(w * (128ull << 20) + (w << 12)), 0), 0);
  }
  PhysAddr handle;
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  ASSERT_EQ(t.handover(), handle);
  std::vector<abi::KhoserMemChunkHeader> headers;
  std::vector<std::vector<abi::KhoserMemBitmapPtr>> entries;
  for (uint64_t c = handle.value(); c != 0; c = headers.back().next) {
    const uint8_t* chunk = mem.MapNode(PhysAddr(c));
    ASSERT_NE(chunk, nullptr);
    headers.push_back(ReadHeader(chunk));
    entries.emplace_back();
    for (uint64_t i = 0; i < headers.back().num_elms; ++i) {
      entries.back().push_back(ReadEntry(chunk, i));
    }
    // Bytes after the last entry stay zero.
    for (uint64_t b = 16 + 16 * headers.back().num_elms; b < 4096; ++b) ASSERT_EQ(chunk[b], 0);
  }
  ASSERT_EQ(headers.size(), 4u);
  EXPECT_EQ(headers[0].order, 0u);
  EXPECT_EQ(headers[0].num_elms, 255u) << "full";
  EXPECT_EQ(headers[1].order, 0u);
  EXPECT_EQ(headers[1].num_elms, 1u) << "the 256th bitmap forces a second chunk";
  EXPECT_EQ(headers[2].order, 3u);
  EXPECT_EQ(headers[2].num_elms, 2u);
  EXPECT_EQ(headers[3].order, 9u);
  EXPECT_EQ(headers[3].num_elms, 1u);
  EXPECT_EQ(headers[3].next, 0u);
  // Entries ascend within an order; phys_start = (index * 32768) << (order + 12).
  for (uint64_t w = 0; w < 256; ++w) {
    const abi::KhoserMemBitmapPtr& e = w < 255 ? entries[0][w] : entries[1][0];
    EXPECT_EQ(e.phys_start, w * (128ull << 20)) << w;
    const uint8_t* bits = mem.MapNode(PhysAddr(e.bitmap));
    EXPECT_EQ(bits[w / 8], 1u << (w % 8)) << w;
  }
  EXPECT_EQ(entries[2][0].phys_start, 0u);
  EXPECT_EQ(entries[2][1].phys_start, (3ull << 40) & ~((32768ull << 15) - 1));
  EXPECT_EQ(entries[3][0].phys_start, 0u);
  EXPECT_EQ(t.Stats().chunks, 4u);
  EXPECT_EQ(mem.live(), 259u + 4u);
}

TEST(BitmapTrackerTest, PreparingAgainFreesThePreviousListOnlyOnSuccess) {
  FakeNodeMemory mem(12);
  BitmapTracker t(12, mem);
  PhysAddr empty;
  ASSERT_EQ(t.PrepareHandover(&empty), 0);
  EXPECT_TRUE(empty.IsNull()) << "nothing ever preserved: no chunk at all";
  for (unsigned order : {0u, 2u, 5u}) ASSERT_EQ(t.Add(PhysAddr(64ull << 20), order), 0);
  PhysAddr first;
  ASSERT_EQ(t.PrepareHandover(&first), 0);
  const uint64_t live = mem.live();
  EXPECT_EQ(live, 3u + 3u);
  ASSERT_EQ(t.Add(PhysAddr(3ull << 30), 0), 0);
  PhysAddr second;
  ASSERT_EQ(t.PrepareHandover(&second), 0);
  EXPECT_EQ(mem.live(), live + 1) << "one more bitmap; three chunks freed, three built";
  EXPECT_EQ(mem.frees(), 3u);
  int ret = 0;
  EXPECT_THAT(Incoming(t, second, &ret), ElementsAre(Block{64ull << 20, 0}, Block{3ull << 30, 0},
                                                     Block{64ull << 20, 2}, Block{64ull << 20, 5}));
  EXPECT_EQ(ret, 0);

  // The second chunk page of a third run cannot be allocated: the new pages
  // go, the second list stays the handover.
  mem.FailNth(2);
  PhysAddr third;
  EXPECT_EQ(t.PrepareHandover(&third), -ENOMEM);
  EXPECT_EQ(t.handover(), second);
  EXPECT_EQ(mem.live(), live + 1);
  EXPECT_EQ(Incoming(t, second, &ret).size(), 4u);
  EXPECT_EQ(ret, 0);

  t.Destroy();
  EXPECT_EQ(mem.live(), 0u);
  EXPECT_TRUE(t.handover().IsNull());
  EXPECT_EQ(t.Stats().metadata_pages, 0u);
}

TEST(BitmapTrackerTest, AnOrderWhoseFirstBitmapFailedStillGetsAnEmptyChunk) {
  FakeNodeMemory mem(12);
  BitmapTracker t(12, mem);
  mem.FailNth(1);
  EXPECT_EQ(t.Add(PhysAddr(1ull << 30), 4), -ENOMEM);
  EXPECT_EQ(mem.live(), 0u);
  EXPECT_FALSE(t.Contains(PhysAddr(1ull << 30), 4));
  EXPECT_EQ(t.Del(PhysAddr(1ull << 30), 4), -ENOENT);
  PhysAddr handle;
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  ASSERT_FALSE(handle.IsNull());
  const abi::KhoserMemChunkHeader h = ReadHeader(mem.MapNode(handle));
  EXPECT_EQ(h.order, 4u);
  EXPECT_EQ(h.num_elms, 0u);
  int ret = 0;
  EXPECT_THAT(Incoming(t, handle, &ret), IsEmpty());
  EXPECT_EQ(ret, 0);
}

TEST(BitmapTrackerTest, SixteenKibPagesHold1023EntriesPerChunk) {
  FakeNodeMemory mem(14);
  BitmapTracker t(14, mem);
  EXPECT_EQ(t.chunk_capacity(), 1023u);
  EXPECT_EQ(t.preserve_bits(), 131072u);
  ASSERT_EQ(t.Add(PhysAddr(131072ull << 14), 0), 0);
  PhysAddr handle;
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  EXPECT_EQ(ReadEntry(mem.MapNode(handle), 0).phys_start, 131072ull << 14);
  int ret = 0;
  EXPECT_THAT(Incoming(t, handle, &ret), ElementsAre(Block{131072ull << 14, 0}));
}

TEST(BitmapTrackerTest, RandomSetsRoundTripThroughTheChunkList) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 20; ++round) {
    FakeNodeMemory mem(12);
    BitmapTracker t(12, mem);
    std::set<std::pair<unsigned, uint64_t>> oracle;  // (order, pa): the walk's order
    for (int i = 0; i < 400; ++i) {
      const unsigned order = static_cast<unsigned>(rng() % 19);
      const uint64_t pa = (rng() % (1ull << 40)) & ~((4096ull << order) - 1);
      if (rng() % 4 == 0 && !oracle.empty()) {
        auto it = oracle.begin();
        std::advance(it, static_cast<long>(rng() % oracle.size()));
        ASSERT_EQ(t.Del(PhysAddr(it->second), it->first), 0);
        oracle.erase(it);
      } else {
        ASSERT_EQ(t.Add(PhysAddr(pa), order), 0);
        oracle.emplace(order, pa);
      }
    }
    std::vector<Block> expected;
    for (const auto& [order, pa] : oracle) expected.emplace_back(pa, order);
    EXPECT_EQ(Outgoing(t), expected);
    PhysAddr handle;
    ASSERT_EQ(t.PrepareHandover(&handle), 0);
    int ret = 0;
    std::vector<uint64_t> pages;
    EXPECT_EQ(Incoming(t, handle, &ret, &pages), expected);
    EXPECT_EQ(ret, 0);
    EXPECT_EQ(pages.size(), t.Stats().metadata_pages) << "every chunk and bitmap, once";
  }
}

// A serialized list kernel B must refuse: built honestly, then corrupted.
class HostileChunkListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(t_.Add(PhysAddr(1ull << 30), 0), 0);
    ASSERT_EQ(t_.Add(PhysAddr(2ull << 30), 0), 0);
    ASSERT_EQ(t_.Add(PhysAddr(1ull << 30), 9), 0);
    ASSERT_EQ(t_.PrepareHandover(&head_), 0);
    first_ = mem_.MapNode(head_);
    second_ = mem_.MapNode(PhysAddr(ReadHeader(first_).next));
    ASSERT_NE(second_, nullptr);
  }
  int Walk() {
    int ret = 0;
    Incoming(t_, head_, &ret);
    return ret;
  }
  void SetFirst(const abi::KhoserMemChunkHeader& h) { WriteHeader(first_, h); }

  FakeNodeMemory mem_{12};
  BitmapTracker t_{12, mem_};
  PhysAddr head_;
  uint8_t* first_ = nullptr;
  uint8_t* second_ = nullptr;
};

TEST_F(HostileChunkListTest, PristineListWalks) {
  EXPECT_EQ(Walk(), 0);
  EXPECT_EQ(t_.WalkIncoming(PhysAddr(), nullptr, nullptr), 0) << "no list: nothing";
}

TEST_F(HostileChunkListTest, ChunkCycles) {
  abi::KhoserMemChunkHeader h = ReadHeader(second_);
  h.next = head_.value();  // back to the first chunk
  WriteHeader(second_, h);
  EXPECT_EQ(Walk(), -EINVAL);
  h = ReadHeader(first_);
  h.next = head_.value();  // to itself
  SetFirst(h);
  EXPECT_EQ(Walk(), -EINVAL);
}

TEST_F(HostileChunkListTest, ChunkAddressUnalignedOrOutsideRam) {
  abi::KhoserMemChunkHeader h = ReadHeader(first_);
  h.next += 8;
  SetFirst(h);
  EXPECT_EQ(Walk(), -EINVAL);
  h.next = mem_.End().value();
  SetFirst(h);
  EXPECT_EQ(Walk(), -EINVAL);
  h.next = ~0ull & ~4095ull;
  SetFirst(h);
  EXPECT_EQ(Walk(), -EINVAL);
  EXPECT_EQ(t_.WalkIncoming(PhysAddr(head_.value() + 16), nullptr, nullptr), -EINVAL);
}

TEST_F(HostileChunkListTest, TooManyEntriesOrAnUnaddressableOrder) {
  const abi::KhoserMemChunkHeader good = ReadHeader(first_);
  abi::KhoserMemChunkHeader h = good;
  h.num_elms = 255;  // the capacity, but the entries past 2 are zero
  SetFirst(h);
  EXPECT_EQ(Walk(), -EINVAL) << "a zero bitmap pointer";
  h.num_elms = 256;
  SetFirst(h);
  EXPECT_EQ(Walk(), -EINVAL);
  h.num_elms = 0xffffffffu;
  SetFirst(h);
  EXPECT_EQ(Walk(), -EINVAL);
  SetFirst(good);
  EXPECT_EQ(Walk(), 0);
  h = ReadHeader(second_);
  h.order = 52;  // 4 KiB << 52 is 2^64
  WriteHeader(second_, h);
  EXPECT_EQ(Walk(), -EINVAL);
}

TEST_F(HostileChunkListTest, BadBitmapPointers) {
  const abi::KhoserMemBitmapPtr good = ReadEntry(first_, 0);
  for (uint64_t bad : {good.bitmap + 64, uint64_t{0}, mem_.End().value(), head_.value(),
                       ReadEntry(first_, 1).bitmap}) {
    abi::KhoserMemBitmapPtr e = good;
    e.bitmap = bad;
    WriteEntry(first_, 0, e);
    EXPECT_EQ(Walk(), -EINVAL) << std::hex << bad;
  }
  WriteEntry(first_, 0, good);
  EXPECT_EQ(Walk(), 0);
}

TEST_F(HostileChunkListTest, MisalignedOrWrappingPhysStart) {
  abi::KhoserMemBitmapPtr e = ReadEntry(first_, 0);
  e.phys_start += 4096;
  WriteEntry(first_, 0, e);
  EXPECT_EQ(Walk(), -EINVAL);
  // The last 128 MiB of the 64-bit space, aligned: the block at bit 32767
  // still ends at 2^64 - 1, so it is accepted; an order-9 bitmap there
  // would wrap.
  e.phys_start = 0ull - (128ull << 20);
  WriteEntry(first_, 0, e);
  EXPECT_EQ(Walk(), 0);
  abi::KhoserMemChunkHeader h = ReadHeader(second_);
  abi::KhoserMemBitmapPtr big = ReadEntry(second_, 0);
  ASSERT_EQ(h.order, 9u);
  big.phys_start = 0ull - (64ull << 30);  // aligned to 64 GiB; bit 512 is 1 GiB in
  WriteEntry(second_, 0, big);
  EXPECT_EQ(Walk(), 0);
  h.order = 22;  // an order-22 bitmap covers 2^49 bytes: phys_start is misaligned
  WriteHeader(second_, h);
  EXPECT_EQ(Walk(), -EINVAL);
  // From order 37 on, one bitmap covers the whole 64-bit space: phys_start
  // must be 0, and a bit whose block lies beyond 2^64 is refused.
  big.phys_start = 0;
  WriteEntry(second_, 0, big);
  h.order = 40;
  WriteHeader(second_, h);
  EXPECT_EQ(Walk(), 0) << "bit 512 of order 40 is at 2^61";
  h.order = 45;
  WriteHeader(second_, h);
  EXPECT_EQ(Walk(), -EINVAL) << "bit 512 of order 45 would be at 2^66";
  big.phys_start = 1ull << 63;
  WriteEntry(second_, 0, big);
  h.order = 40;
  WriteHeader(second_, h);
  EXPECT_EQ(Walk(), -EINVAL);
}

// ---------------------------------------------------------------------------
// The kho-v1 root FDT

TEST(KhoV1FdtTest, SubtreesCarryFdtAndNoSize) {
  alignas(8) uint8_t buf[4096];
  ASSERT_EQ(kho::CreateRootFdt(buf, sizeof(buf), "kho-v1", 0), 0);
  ASSERT_EQ(kho::AddSubtree(buf, "memblock", 0x123000, 77, kho::SubtreeLayout::kFdtV1), 0);
  EXPECT_EQ(kho::AddSubtree(buf, "memblock", 0x124000, 1, kho::SubtreeLayout::kFdtV1), -EEXIST);
  const int node = fdt_subnode_offset(buf, 0, "memblock");
  ASSERT_GE(node, 0);
  int len = 0;
  const void* data = fdt_getprop(buf, node, "fdt", &len);
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(len, 8);
  uint64_t phys = 0;
  std::memcpy(&phys, data, 8);
  EXPECT_EQ(phys, 0x123000u);
  EXPECT_EQ(fdt_getprop(buf, node, "blob-size", &len), nullptr);
  EXPECT_EQ(fdt_getprop(buf, node, "preserved-data", &len), nullptr);

  uint64_t map = 0;
  std::string why;
  EXPECT_EQ(kho::ValidateIncomingRoot(buf, sizeof(buf), "kho-v1", &map, &why), -EINVAL)
      << "a map of 0 is refused, as kho-v1's kho_populate does";
  ASSERT_EQ(kho::SetPreservedMemoryMap(buf, 0xabc000), 0);
  ASSERT_EQ(kho::ValidateIncomingRoot(buf, sizeof(buf), "kho-v1", &map, &why), 0) << why;
  EXPECT_EQ(map, 0xabc000u);
  kho::RootCheck failed = kho::RootCheck::kPassed;
  EXPECT_EQ(kho::ValidateIncomingRoot(buf, sizeof(buf), "kho-v4", &map, &why, &failed), -EINVAL);
  EXPECT_EQ(failed, kho::RootCheck::kIncompatible);
  EXPECT_EQ(why, "wrong compatible 'kho-v1' (expected 'kho-v4')");

  uint64_t size = 99;
  EXPECT_EQ(kho::RetrieveSubtree(buf, "memblock", &phys, &size, kho::SubtreeLayout::kFdtV1), 0);
  EXPECT_EQ(phys, 0x123000u);
  EXPECT_EQ(size, 0u);
  EXPECT_EQ(kho::RetrieveSubtree(buf, "memblock", &phys, &size), -EINVAL)
      << "a kho-v4 reader finds no preserved-data";
  const std::vector<kho::SubtreeInfo> list = kho::ListSubtrees(buf, kho::SubtreeLayout::kFdtV1);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_TRUE(list[0].has_data);
  EXPECT_FALSE(list[0].has_size);
  EXPECT_TRUE(kho::RemoveSubtree(buf, 0x123000, kho::SubtreeLayout::kFdtV1));
  EXPECT_TRUE(kho::ListSubtrees(buf, kho::SubtreeLayout::kFdtV1).empty());
}

// ---------------------------------------------------------------------------
// Machines

MachineConfig V1Machine(uint64_t ram = 4 * kGiB, std::string extra = "") {
  MachineConfig c{.ram = ram, .nodes = 1, .seed = 23};
  c.cmdline = "kho=on " + extra;
  c.kho.profile = kho::KhoProfile::kV1;
  return c;
}

kho::Kho& Kho(Machine& m) { return m.kernel().kho(); }

uint8_t PatternByte(uint64_t pa, uint64_t offset) {
  return static_cast<uint8_t>((pa >> 12) * 31 + offset / 512);
}

struct Sent {
  std::vector<Block> folios;
};

// Preserves |n| folios of random order in [0, MAX_PAGE_ORDER], each filled
// with a pattern of its own.
Sent PreserveRandomFolios(Machine& m, int n) {
  Sent sent;
  for (int i = 0; i < n; ++i) {
    const unsigned order = static_cast<unsigned>(m.RandomBelow(MAX_PAGE_ORDER + 1));
    struct folio* f = folio_alloc(GFP_KERNEL, order);
    EXPECT_NE(f, nullptr);
    if (f == nullptr) break;
    auto* p = static_cast<uint8_t*>(folio_address(f));
    for (uint64_t off = 0; off < folio_size(f); off += 512) {
      std::memset(p + off, PatternByte(folio_phys(f), off), 512);
    }
    EXPECT_EQ(kho_preserve_folio(f), 0);
    sent.folios.emplace_back(folio_phys(f), order);
  }
  return sent;
}

// Restores every folio in kernel B and checks order and bytes; with |keep|
// the folios stay allocated (and are returned for the next hop).
bool RestoreAll(const Sent& sent, bool keep) {
  for (const auto& [pa, order] : sent.folios) {
    struct folio* f = kho_restore_folio(pa);
    if (f == nullptr || folio_order(f) != order) {
      ADD_FAILURE() << std::hex << "folio 0x" << pa << " order " << std::dec << order;
      return false;
    }
    const auto* p = static_cast<const uint8_t*>(folio_address(f));
    for (uint64_t off = 0; off < folio_size(f); off += 512) {
      if (p[off] != PatternByte(pa, off) || p[off + 511] != PatternByte(pa, off)) {
        ADD_FAILURE() << std::hex << "folio 0x" << pa << " differs at 0x" << off;
        return false;
      }
    }
    if (!keep) folio_put(f);
  }
  return true;
}

uint64_t RootMemoryMap(Machine& m) {
  const void* fdt = phys_to_virt(Kho(m).out_fdt().value());
  int len = 0;
  const void* p = fdt_getprop(fdt, 0, "preserved-memory-map", &len);
  EXPECT_EQ(len, 8);
  uint64_t v = 0;
  if (p != nullptr) std::memcpy(&v, p, 8);
  return v;
}

TEST(KhoV1MachineTest, RandomOrderFoliosCrossTheKexec) {
  Machine m(V1Machine());
  m.Boot();
  ASSERT_TRUE(kho_is_enabled());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kV1);
  EXPECT_EQ(Kho(m).out_tree(), nullptr) << "no radix tree in this profile";
  EXPECT_EQ(RootMemoryMap(m), 0u) << "nothing serialized before finalize";
  const Sent sent = PreserveRandomFolios(m, 60);
  std::set<unsigned> orders;
  for (const auto& [pa, order] : sent.folios) orders.insert(order);
  ASSERT_GE(orders.size(), 5u) << "the seed should give a mix of orders";
  for (const auto& [pa, order] : sent.folios) EXPECT_TRUE(kho_is_preserved(pa, 1ull << order));

  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kV1);
  EXPECT_EQ(Kho(m).retrieved_blocks(), sent.folios.size() + 1) << "+ the root FDT";
  EXPECT_TRUE(RestoreAll(sent, /*keep=*/false));
  EXPECT_EQ(Kho(m).UnrestoredBlocks(), 1u) << "only KHO's own incoming root FDT";
  phys_addr_t phys = 0;
  EXPECT_EQ(kho_retrieve_subtree("kexec-metadata", &phys, nullptr), -ENOENT)
      << "kexec-metadata came with kho-v3";
  EXPECT_EQ(Kho(m).incoming_kexec_count(), 0u);
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
  EXPECT_TRUE(m.kernel().mm().memblock().Validate().ok());
}

TEST(KhoV1MachineTest, SubtreeBlobCrossesWithoutASize) {
  Machine m(V1Machine());
  m.Boot();
  void* blob = kho_alloc_preserve(64);
  ASSERT_FALSE(IS_ERR(blob));
  std::memcpy(blob, "legacy state", 13);
  ASSERT_EQ(kho_add_subtree("legacy", blob, 64), 0);
  const kho::KhoDebugView out = Kho(m).DebugView();
  ASSERT_EQ(out.out_subtrees.size(), 1u) << "no kexec-metadata in kho-v1";
  EXPECT_EQ(out.out_subtrees[0].name, "legacy");
  ASSERT_TRUE(m.Kexec().ok());
  phys_addr_t phys = 0;
  size_t size = 99;
  ASSERT_EQ(kho_retrieve_subtree("legacy", &phys, &size), 0);
  EXPECT_EQ(size, 0u) << "kho-v1 hands over no size";
  EXPECT_STREQ(static_cast<const char*>(phys_to_virt(phys)), "legacy state");
  kho_restore_free(phys_to_virt(phys));
  EXPECT_THAT(Kho(m).DebugView().ToString(), HasSubstr("kho/in/sub_fdts/legacy"));
}

TEST(KhoV1MachineTest, ChunkListInMemoryMatchesTheTrackerExactly) {
  // 256 order-0 pages 128 MiB apart need 256 bitmaps of their own, plus
  // the root FDT's: two order-0 chunks (255 + 2), then one chunk per order.
  Machine m(V1Machine(40 * kGiB));
  m.Boot();
  mm::PageAllocator& pages = m.kernel().mm().pages();
  for (uint64_t w = 0; w < 256; ++w) {
    const uint64_t pfn = ((4 * kGiB + w * 128 * kMiB) >> 12) + w;
    ASSERT_TRUE(pages.AllocRange(Pfn(pfn), 1)) << w;
    ASSERT_EQ(kho_preserve_pages(pfn_to_page(pfn), 1), 0);
  }
  struct folio* f9 = folio_alloc(GFP_KERNEL, 9);
  struct folio* f3 = folio_alloc(GFP_KERNEL, 3);
  ASSERT_EQ(kho_preserve_folio(f9), 0);
  ASSERT_EQ(kho_preserve_folio(f3), 0);
  ASSERT_EQ(Kho(m).Finalize(), 0);

  // What the chunks must say, from the tracker's own view of its blocks.
  std::map<unsigned, std::set<uint64_t>> expected;  // order -> bitmap indices
  for (const auto& [pa, order] : Outgoing(*Kho(m).tracker())) {
    expected[order].insert(((pa >> 12) >> order) / 32768);
  }
  ASSERT_EQ(expected[0].size(), 257u);
  const uint64_t head = RootMemoryMap(m);
  ASSERT_EQ(head, Kho(m).tracker()->handover().value());
  uint64_t c = head;
  int chunks = 0;
  for (const auto& [order, indices] : expected) {
    auto it = indices.begin();
    while (it != indices.end()) {
      ASSERT_NE(c, 0u) << "list ends early at order " << order;
      const auto* chunk = static_cast<const uint8_t*>(phys_to_virt(c));
      const abi::KhoserMemChunkHeader h = ReadHeader(chunk);
      ++chunks;
      EXPECT_EQ(h.order, order);
      const uint64_t n =
          std::min<uint64_t>(255, static_cast<uint64_t>(std::distance(it, indices.end())));
      ASSERT_EQ(h.num_elms, n);
      for (uint64_t i = 0; i < n; ++i, ++it) {
        const abi::KhoserMemBitmapPtr e = ReadEntry(chunk, i);
        EXPECT_EQ(e.phys_start, (*it * 32768) << (order + 12));
        EXPECT_EQ(e.bitmap % 4096, 0u);
      }
      c = h.next;
    }
  }
  EXPECT_EQ(c, 0u) << "nothing after the last order";
  EXPECT_EQ(chunks, 4);
  // Each page's bit, found through the chunks alone.
  std::map<uint64_t, uint64_t> order0_bitmaps;  // phys_start -> bitmap
  for (uint64_t p = head; p != 0;) {
    const auto* chunk = static_cast<const uint8_t*>(phys_to_virt(p));
    const abi::KhoserMemChunkHeader h = ReadHeader(chunk);
    for (uint64_t i = 0; h.order == 0 && i < h.num_elms; ++i) {
      const abi::KhoserMemBitmapPtr e = ReadEntry(chunk, i);
      order0_bitmaps[e.phys_start] = e.bitmap;
    }
    p = h.next;
  }
  for (uint64_t w = 0; w < 256; ++w) {
    const uint64_t pfn = ((4 * kGiB + w * 128 * kMiB) >> 12) + w;
    const uint64_t bitmap = order0_bitmaps[(pfn / 32768) * 32768 * 4096];
    ASSERT_NE(bitmap, 0u) << w;
    const auto* bits = static_cast<const uint8_t*>(phys_to_virt(bitmap));
    EXPECT_EQ(bits[(pfn % 32768) / 8], 1u << (pfn % 8)) << w;
  }
  EXPECT_EQ(Kho(m).tracker()->Stats().chunks, 4u);
  EXPECT_EQ(Kho(m).tracker()->Stats().bitmaps, 259u);
}

TEST(KhoV1MachineTest, FinalizeAgainFreesTheOldListAndLeaksNothing) {
  Machine m(V1Machine());
  m.Boot();
  PreserveRandomFolios(m, 10);
  mm::PageAllocator& pages = m.kernel().mm().pages();
  const uint64_t before = pages.FreePages();
  ASSERT_EQ(Kho(m).Finalize(), 0);
  const uint64_t chunks = Kho(m).tracker()->Stats().chunks;
  ASSERT_GE(chunks, 1u);
  EXPECT_EQ(pages.FreePages(), before - chunks);
  const uint64_t first = RootMemoryMap(m);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Kho(m).Finalize(), 0);
    EXPECT_EQ(pages.FreePages(), before - chunks) << "the previous list is freed, run " << i;
  }
  EXPECT_NE(RootMemoryMap(m), 0u);
  EXPECT_EQ(RootMemoryMap(m), Kho(m).tracker()->handover().value());
  (void)first;
  // A failed run keeps the list the FDT names.
  const uint64_t current = RootMemoryMap(m);
  m.faults().FailNth("alloc_pages", 1);
  EXPECT_EQ(Kho(m).Finalize(), -ENOMEM);
  EXPECT_EQ(RootMemoryMap(m), current);
  EXPECT_EQ(pages.FreePages(), before - chunks);
  EXPECT_TRUE(pages.Validate().ok());
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_TRUE(is_kho_boot());
}

TEST(KhoV1MachineTest, UnpreserveClearsTheBitAndTheBlockIsGoneInKernelB) {
  Machine m(V1Machine());
  m.Boot();
  struct folio* kept = folio_alloc(GFP_KERNEL, 2);
  struct folio* dropped = folio_alloc(GFP_KERNEL, 2);
  std::memset(folio_address(dropped), 0x77, folio_size(dropped));
  ASSERT_EQ(kho_preserve_folio(kept), 0);
  ASSERT_EQ(kho_preserve_folio(dropped), 0);
  const uint64_t bitmaps = Kho(m).tracker()->Stats().bitmaps;
  kho_unpreserve_folio(dropped);
  EXPECT_FALSE(kho_is_preserved(folio_phys(dropped), 4));
  EXPECT_TRUE(kho_is_preserved(folio_phys(kept), 4));
  EXPECT_EQ(Kho(m).tracker()->Stats().bitmaps, bitmaps) << "pages are never freed";
  EXPECT_THAT(Outgoing(*Kho(m).tracker()), Not(Contains(Block{folio_phys(dropped), 2})));
  // Unpreserving an order that never had a bitmap is a WARN, as upstream's
  // WARN_ON_ONCE(!physxa).
  const uint64_t warns = m.kernel().WarnCount();
  struct folio* never = folio_alloc(GFP_KERNEL, 7);
  kho_unpreserve_folio(never);
  EXPECT_EQ(m.kernel().WarnCount(), warns + 1);
  const phys_addr_t gone = folio_phys(dropped);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_NE(kho_restore_folio(folio_phys(kept)), nullptr);
  EXPECT_EQ(kho_restore_folio(gone), nullptr);
  EXPECT_NE(*static_cast<const uint8_t*>(phys_to_virt(gone)), 0x77) << "scrubbed";
}

TEST(KhoV1MachineTest, TwoKexecsInARow) {
  Machine m(V1Machine());
  m.Boot();
  const Sent first = PreserveRandomFolios(m, 20);
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  // Kernel B keeps the first set and preserves it again, plus a second set.
  ASSERT_TRUE(RestoreAll(first, /*keep=*/true));
  for (const auto& [pa, order] : first.folios) {
    ASSERT_EQ(kho_preserve_folio(page_folio(phys_to_page(pa))), 0);
  }
  const Sent second = PreserveRandomFolios(m, 20);
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  EXPECT_EQ(Kho(m).retrieved_blocks(), first.folios.size() + second.folios.size() + 1);
  EXPECT_TRUE(RestoreAll(first, false));
  EXPECT_TRUE(RestoreAll(second, false));
  EXPECT_EQ(Kho(m).UnrestoredBlocks(), 1u);
  EXPECT_EQ(m.kexec_count(), 2u);
}

TEST(KhoV1MachineTest, EraSemanticsSplitWithoutNumaBoundAndNoRestoreAboveMaxOrder) {
  MachineConfig c = V1Machine(2 * kGiB);
  c.nodes = 2;
  Machine m(c);
  m.Boot();
  // Node 1 starts at pfn 0x40200: the kho-v1 split ignores it and records
  // one order-10 block where kho-v4 records two order-9 blocks.
  ASSERT_EQ(m.memory().layout().ranges()[1].start.value() >> 12, 0x40200u);
  ASSERT_EQ(kho_preserve_pages(pfn_to_page(0x40000), 1024), 0);
  EXPECT_TRUE(Kho(m).tracker()->Contains(PhysAddr(0x40000ull << 12), 10));
  EXPECT_FALSE(Kho(m).tracker()->Contains(PhysAddr(0x40000ull << 12), 9));
  // An order-11 block preserves and crosses, but a kho-v1 kernel will not
  // restore a block above MAX_PAGE_ORDER (10).
  ASSERT_TRUE(m.kernel().mm().pages().AllocRange(Pfn(0x30000), 2048));
  ASSERT_EQ(kho_preserve_pages(pfn_to_page(0x30000), 2048), 0);
  EXPECT_TRUE(Kho(m).tracker()->Contains(PhysAddr(0x30000ull << 12), 11));
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  const uint64_t warns = m.kernel().WarnCount();
  EXPECT_EQ(kho_restore_pages(0x30000ull << 12, 2048), nullptr);
  EXPECT_EQ(m.kernel().WarnCount(), warns + 1);
  unsigned order = 0;
  EXPECT_TRUE(Kho(m).IsPreservedHead(PhysAddr(0x30000ull << 12), &order)) << "tag kept";
  EXPECT_EQ(order, 11u);
  EXPECT_NE(kho_restore_pages(0x40000ull << 12, 1024), nullptr);
}

TEST(KhoV1MachineTest, PreservationWorksEvenWithKhoDisabled) {
  // The legacy tracker is static data: upstream's preserve calls succeeded
  // without kho=on (there is just no handover).
  MachineConfig c = V1Machine();
  c.cmdline = "";
  Machine m(c);
  m.Boot();
  ASSERT_FALSE(kho_is_enabled());
  struct folio* f = folio_alloc(GFP_KERNEL, 0);
  EXPECT_EQ(kho_preserve_folio(f), 0);
  EXPECT_TRUE(kho_is_preserved(folio_phys(f), 1));
  EXPECT_EQ(Kho(m).Finalize(), -EOPNOTSUPP);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_FALSE(is_kho_boot());
}

// ---------------------------------------------------------------------------
// Profile selection and hops

std::string IncompatibleLine(uint64_t fdt, const char* expected) {
  char line[160];
  std::snprintf(line, sizeof(line),
                "KHO: setup: handover FDT (0x%llx) is incompatible with '%s': 1",
                static_cast<unsigned long long>(fdt), expected);
  return line;
}

void ExpectColdBootLosingData(Machine& m, uint64_t fdt, const char* own, const Block& lost,
                              uint8_t byte) {
  EXPECT_FALSE(is_kho_boot());
  EXPECT_FALSE(m.kernel().mm().memblock().scratch_only());
  const std::vector<std::string> log = m.kernel().ctx().LogLines();
  EXPECT_THAT(log, Contains(IncompatibleLine(fdt, own)));
  EXPECT_THAT(log, Contains(HasSubstr("KHO: disabling KHO revival")));
  EXPECT_EQ(kho_restore_folio(lost.first), nullptr);
  EXPECT_NE(*static_cast<const uint8_t*>(phys_to_virt(lost.first)), byte) << "data lost";
  EXPECT_TRUE(kho_is_enabled()) << "a cold boot: fresh boot memory for the next hop";
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
}

TEST(KhoProfileTest, CommandLineSelectsTheProfilePerBoot) {
  Machine m(MachineConfig{.ram = 2 * kGiB, .cmdline = "kho=on khosim.kho_profile=kho-v1"});
  m.Boot();
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kV1);
  EXPECT_EQ(Kho(m).compatible(), "kho-v1");
  EXPECT_FALSE(Kho(m).HasBlobSubtrees());
  EXPECT_EQ(Kho(m).tracker()->name(), "bitmap_v1");
  ASSERT_TRUE(m.Kexec(KexecOptions{.cmdline = "kho=on khosim.kho_profile=kho-v9"}).ok());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kV4) << "unknown: the machine's default";
  EXPECT_THAT(m.kernel().ctx().LogLines(),
              Contains("KHO: warning: unknown khosim.kho_profile=kho-v9, using kho-v4"));
  EXPECT_EQ(Kho(m).tracker()->name(), "radix");
}

TEST(KhoProfileTest, KhoV1ToKhoV4IsRefusedAndBootsCold) {
  Machine m(V1Machine());
  m.Boot();
  struct folio* f = folio_alloc(GFP_KERNEL, 1);
  std::memset(folio_address(f), 0x5c, folio_size(f));
  ASSERT_EQ(kho_preserve_folio(f), 0);
  const Block lost{folio_phys(f), 1};
  const uint64_t fdt = Kho(m).out_fdt().value();
  ASSERT_TRUE(m.Kexec(KexecOptions{.cmdline = "kho=on khosim.kho_profile=kho-v4"}).ok());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kV4);
  ExpectColdBootLosingData(m, fdt, "kho-v4", lost, 0x5c);
}

TEST(KhoProfileTest, KhoV4ToKhoV1IsRefusedAndBootsCold) {
  Machine m(MachineConfig{.ram = 4 * kGiB, .seed = 5, .cmdline = "kho=on"});
  m.Boot();
  struct folio* f = folio_alloc(GFP_KERNEL, 1);
  std::memset(folio_address(f), 0x5d, folio_size(f));
  ASSERT_EQ(kho_preserve_folio(f), 0);
  const Block lost{folio_phys(f), 1};
  const uint64_t fdt = Kho(m).out_fdt().value();
  ASSERT_TRUE(m.Kexec(KexecOptions{.cmdline = "kho=on khosim.kho_profile=kho-v1"}).ok());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kV1);
  ExpectColdBootLosingData(m, fdt, "kho-v1", lost, 0x5d);
  // The cold-booted kho-v1 kernel hands over to the next kho-v1 kernel.
  struct folio* g = folio_alloc(GFP_KERNEL, 0);
  ASSERT_EQ(kho_preserve_folio(g), 0);
  const phys_addr_t pa = folio_phys(g);
  ASSERT_TRUE(m.Kexec(KexecOptions{.cmdline = "kho=on khosim.kho_profile=kho-v1"}).ok());
  EXPECT_TRUE(is_kho_boot());
  EXPECT_NE(kho_restore_folio(pa), nullptr);
}

TEST(KhoProfileTest, LiveUpdateIsSwitchedOffOnAKhoV1Kernel) {
  Machine m(V1Machine(2 * kGiB, "liveupdate=on"));
  m.Boot();
  EXPECT_TRUE(kho_is_enabled());
  EXPECT_FALSE(m.kernel().luo().enabled());
  EXPECT_THAT(m.kernel().ctx().LogLines(),
              Contains("luo: warning: KHO profile kho-v1 has no blob-size subtrees (kho-v3+ "
                       "needed); live update disabled"));
  // The machine keeps working across kexecs, LUO off every time.
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_TRUE(is_kho_boot());
  EXPECT_FALSE(m.kernel().luo().enabled());
  // Back on kho-v4, LUO runs again (on a cold KHO boot: the handover is
  // refused).
  ASSERT_TRUE(
      m.Kexec(KexecOptions{.cmdline = "kho=on liveupdate=on khosim.kho_profile=kho-v4"}).ok());
  EXPECT_TRUE(m.kernel().luo().enabled());
}

// ---------------------------------------------------------------------------
// Kernel B against a corrupted chunk list

enum class Corruption { kCycle, kUnalignedNext, kNextOutsideRam, kTooManyEntries, kBadBitmap };

class KhoV1HostileTest : public ::testing::TestWithParam<Corruption> {};

TEST_P(KhoV1HostileTest, KernelBRefusesTheListAndBootsWithoutKhoData) {
  Machine m(V1Machine());
  const Corruption corruption = GetParam();
  // After the load-time finalize (reboot hooks run after the image is
  // loaded), damage the list kernel B will read.
  KernelModule corrupter{.name = "corrupter"};
  corrupter.reboot_hooks.push_back({"corrupt", [&m, corruption](const RebootInfo&) {
                                      const uint64_t head = RootMemoryMap(m);
                                      auto* chunk = static_cast<uint8_t*>(phys_to_virt(head));
                                      abi::KhoserMemChunkHeader h = ReadHeader(chunk);
                                      abi::KhoserMemBitmapPtr e = ReadEntry(chunk, 0);
                                      switch (corruption) {
                                        case Corruption::kCycle:
                                          h.next = head;
                                          break;
                                        case Corruption::kUnalignedNext:
                                          h.next = head + 8;
                                          break;
                                        case Corruption::kNextOutsideRam:
                                          h.next = 64 * kGiB;
                                          break;
                                        case Corruption::kTooManyEntries:
                                          h.num_elms = 256;
                                          break;
                                        case Corruption::kBadBitmap:
                                          e.bitmap = 1ull << 50;
                                          break;
                                      }
                                      WriteHeader(chunk, h);
                                      WriteEntry(chunk, 0, e);
                                      return 0;
                                    }});
  ASSERT_TRUE(m.AddModule(std::move(corrupter)).ok());
  m.Boot();
  PreserveRandomFolios(m, 8);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_FALSE(is_kho_boot());
  EXPECT_THAT(m.kernel().ctx().LogLines(),
              Contains("KHO: failed to retrieve preserved memory: -22"));
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
  EXPECT_TRUE(m.kernel().mm().memblock().Validate().ok());
  EXPECT_TRUE(kho_is_enabled()) << "the outgoing side still works";
  ASSERT_TRUE(m.Kexec().ok());
}

INSTANTIATE_TEST_SUITE_P(Corruptions, KhoV1HostileTest,
                         ::testing::Values(Corruption::kCycle, Corruption::kUnalignedNext,
                                           Corruption::kNextOutsideRam, Corruption::kTooManyEntries,
                                           Corruption::kBadBitmap));

TEST(KhoV1ExtendedScratchTest, BitmapAndChunkPagesKeepTheirBlocksBusy) {
  MachineConfig c = V1Machine(16 * kGiB);
  c.kho.extended_scratch = true;
  Machine m(c);
  m.Boot();
  mm::PageAllocator& pages = m.kernel().mm().pages();
  ASSERT_TRUE(pages.AllocRange(Pfn((5 * kGiB) >> 12), 512));
  ASSERT_EQ(kho_preserve_pages(pfn_to_page((5 * kGiB) >> 12), 512), 0);
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  // At least the block at 5 GiB and the blocks of the metadata pages, the
  // root FDT and the first GiB stay busy; the rest is recovered.
  EXPECT_GT(Kho(m).extended_scratch_bytes(), 8 * kGiB);
  EXPECT_LT(Kho(m).extended_scratch_bytes(), 15 * kGiB);
  EXPECT_NE(kho_restore_pages((5 * kGiB), 512), nullptr);
}

}  // namespace
}  // namespace khosim

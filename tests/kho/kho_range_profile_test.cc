// The kho-range-v1 profile: Kho running on RangeTracker through
// RangePreservationTracker. Whole machines: random-order folios across two
// kexecs, the root FDT's compatible and kho-v4 rules (kexec-metadata,
// blob-size subtrees), refusal of kho-range-v1 -> kho-v4 with a cold boot,
// a LUO memfd session preserved and retrieved, re-running handover
// preparation without leaking pages, and the adapter's Del contract.
#include <libfdt.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "handlers/memfd_test_util.h"
#include "kho/fake_node_memory.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/range_preservation_tracker.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/luo/client.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

using Block = std::pair<uint64_t, unsigned>;  // (pa, order)

constexpr char kRangeCmdline[] = "kho=on khosim.kho_profile=kho-range-v1";

MachineConfig RangeMachine(uint64_t ram = 4 * kGiB, std::string extra = "") {
  MachineConfig c{.ram = ram, .nodes = 1, .seed = 29};
  c.cmdline = "kho=on " + extra;
  c.kho.profile = kho::KhoProfile::kRangeV1;
  return c;
}

kho::Kho& Kho(Machine& m) { return m.kernel().kho(); }

uint8_t PatternByte(uint64_t pa, uint64_t offset) {
  return static_cast<uint8_t>((pa >> 12) * 37 + offset / 512);
}

// Preserves |n| folios of random order in [0, MAX_PAGE_ORDER], each filled
// with a pattern of its own.
std::vector<Block> PreserveRandomFolios(Machine& m, int n) {
  std::vector<Block> sent;
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
    sent.emplace_back(folio_phys(f), order);
  }
  return sent;
}

// Restores every folio in kernel B and checks order and bytes; with |keep|
// the folios stay allocated and are preserved again for the next hop.
bool RestoreAll(const std::vector<Block>& sent, bool keep) {
  for (const auto& [pa, order] : sent) {
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
    if (keep) {
      if (kho_preserve_folio(f) != 0) return false;
    } else {
      folio_put(f);
    }
  }
  return true;
}

std::string RootCompatible(Machine& m) {
  const void* fdt = phys_to_virt(Kho(m).out_fdt().value());
  const char* compat = static_cast<const char*>(fdt_getprop(fdt, 0, "compatible", nullptr));
  return compat == nullptr ? "" : compat;
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

// ---------------------------------------------------------------------------
// The adapter on fake pages

TEST(RangePreservationTrackerTest, DelOfAnUntrackedBlockIsZeroNotEnoent) {
  kho::FakeNodeMemory memory(12);
  kho::RangePreservationTracker t(12, memory);
  EXPECT_FALSE(t.ready()) << "kho-v4 rules: not ready before Init";
  ASSERT_EQ(t.Init(), 0);
  EXPECT_EQ(t.Init(), -EEXIST);
  EXPECT_TRUE(t.ready());
  EXPECT_EQ(t.name(), "range_v1");
  EXPECT_TRUE(t.serializes());
  ASSERT_EQ(t.Add(PhysAddr(0x200000), 9), 0);
  // RangeTracker says -ENOENT for each of these; the interface reserves it
  // for missing metadata, which the range tracker never has.
  EXPECT_EQ(t.Del(PhysAddr(0x200000), 0), 0) << "an order-0 page inside the order-9 block";
  EXPECT_EQ(t.Del(PhysAddr(0x400000), 9), 0) << "never recorded";
  EXPECT_TRUE(t.Contains(PhysAddr(0x200000), 9));
  EXPECT_EQ(t.Del(PhysAddr(0x200001), 0), -EINVAL) << "unaligned stays -EINVAL";
  EXPECT_EQ(t.Del(PhysAddr(0x200000), 9), 0);
  EXPECT_FALSE(t.Contains(PhysAddr(0x200000), 9));
  t.Destroy();
  EXPECT_FALSE(t.ready());
}

TEST(RangePreservationTrackerTest, HandoverIsASnapshotWalkedBackExactly) {
  kho::FakeNodeMemory memory(12);
  kho::RangePreservationTracker t(12, memory);
  ASSERT_EQ(t.Init(), 0);
  EXPECT_TRUE(t.handover().IsNull()) << "nothing serialized yet";
  std::set<Block> added;
  for (uint64_t i = 0; i < 64; ++i) {
    const unsigned order = static_cast<unsigned>(i % 4);
    const uint64_t pa = (i * 64) << 12;  // aligned for order <= 6
    ASSERT_EQ(t.Add(PhysAddr(pa), order), 0);
    added.emplace(pa, order);
  }
  PhysAddr handle;
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  EXPECT_FALSE(handle.IsNull());
  EXPECT_EQ(t.handover(), handle);
  const kho::TrackerStats stats = t.Stats();
  EXPECT_GE(stats.metadata_pages, 1u);
  EXPECT_EQ(stats.metadata_bytes, stats.metadata_pages * 4096);
  EXPECT_EQ(stats.range_records, stats.extents);
  // A later Add does not reach the snapshot.
  ASSERT_EQ(t.Add(PhysAddr(0x40000000), 0), 0);
  std::set<Block> walked;
  uint64_t pages = 0;
  ASSERT_EQ(t.WalkIncoming(
                handle,
                [&](PhysAddr pa, unsigned order) {
                  walked.emplace(pa.value(), order);
                  return 0;
                },
                [&](PhysAddr) {
                  ++pages;
                  return 0;
                }),
            0);
  EXPECT_EQ(walked, added);
  EXPECT_EQ(pages, stats.metadata_pages);
  t.Destroy();
  EXPECT_EQ(memory.live(), 0u);
}

// Kernel B reserves by run on this profile: a run of equal-order neighbours
// is reported once, a lone block as a run of one.
TEST(RangePreservationTrackerTest, IncomingExtentsAreTheRunsNotTheBlocks) {
  kho::FakeNodeMemory memory(12);
  kho::RangePreservationTracker t(12, memory);
  ASSERT_EQ(t.Init(), 0);
  constexpr uint64_t kRunStart = 0x100000;  // 8 order-2 blocks
  for (uint64_t i = 0; i < 8; ++i) ASSERT_EQ(t.Add(PhysAddr(kRunStart + (i << 14)), 2), 0);
  ASSERT_EQ(t.Add(PhysAddr(0x400000), 0), 0);
  PhysAddr handle;
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  std::vector<std::tuple<uint64_t, uint64_t, unsigned>> runs;
  ASSERT_EQ(t.WalkIncomingExtents(
                handle,
                [&](PhysAddr start, uint64_t nr_blocks, unsigned order) {
                  runs.emplace_back(start.value(), nr_blocks, order);
                  return 0;
                },
                nullptr),
            0);
  EXPECT_THAT(runs, ::testing::UnorderedElementsAre(std::make_tuple(kRunStart, 8u, 2u),
                                                    std::make_tuple(0x400000u, 1u, 0u)));
  t.Destroy();
}

// The radix tree stores no runs: the default reports each block alone, so
// kernel B reserves them one at a time, as upstream does.
TEST(RangePreservationTrackerTest, RadixIncomingExtentsAreSingleBlocks) {
  kho::FakeNodeMemory memory(12);
  kho::RadixTracker t(12, memory);
  ASSERT_EQ(t.Init(), 0);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_EQ(t.Add(PhysAddr(0x100000 + (i << 12)), 0), 0);
  PhysAddr handle;
  ASSERT_EQ(t.PrepareHandover(&handle), 0);
  std::set<uint64_t> starts;
  ASSERT_EQ(t.WalkIncomingExtents(
                handle,
                [&](PhysAddr start, uint64_t nr_blocks, unsigned order) {
                  EXPECT_EQ(nr_blocks, 1u);
                  EXPECT_EQ(order, 0u);
                  starts.insert(start.value());
                  return 0;
                },
                nullptr),
            0);
  EXPECT_EQ(starts, (std::set<uint64_t>{0x100000, 0x101000, 0x102000, 0x103000}));
  t.Destroy();
}

// ---------------------------------------------------------------------------
// Machines

TEST(KhoRangeProfileTest, CommandLineSelectsTheProfileAndItsRootFdt) {
  Machine m(MachineConfig{.ram = 2 * kGiB, .cmdline = kRangeCmdline});
  m.Boot();
  ASSERT_TRUE(kho_is_enabled());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kRangeV1);
  EXPECT_EQ(Kho(m).compatible(), "kho-range-v1");
  EXPECT_EQ(RootCompatible(m), "kho-range-v1");
  EXPECT_TRUE(Kho(m).HasBlobSubtrees()) << "kho-v4's root FDT rules";
  EXPECT_EQ(Kho(m).tracker()->name(), "range_v1");
  EXPECT_EQ(Kho(m).out_tree(), nullptr) << "no radix tree in this profile";
  kho::KhoProfile parsed = kho::KhoProfile::kV4;
  EXPECT_TRUE(kho::ParseKhoProfile("kho-range-v1", &parsed));
  EXPECT_EQ(parsed, kho::KhoProfile::kRangeV1);
  EXPECT_EQ(kho::KhoProfileName(kho::KhoProfile::kRangeV1), "kho-range-v1");
}

TEST(KhoRangeProfileTest, RandomOrderFoliosCrossTwoKexecs) {
  Machine m(RangeMachine());
  m.Boot();
  ASSERT_TRUE(kho_is_enabled());
  EXPECT_EQ(RootMemoryMap(m), 0u) << "nothing serialized before finalize";
  const std::vector<Block> sent = PreserveRandomFolios(m, 60);
  std::set<unsigned> orders;
  for (const auto& [pa, order] : sent) orders.insert(order);
  ASSERT_GE(orders.size(), 5u) << "the seed should give a mix of orders";
  for (const auto& [pa, order] : sent) EXPECT_TRUE(kho_is_preserved(pa, 1ull << order));

  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kRangeV1);
  // + the root FDT and the kexec-metadata blob.
  EXPECT_EQ(Kho(m).retrieved_blocks(), sent.size() + 2);
  EXPECT_EQ(Kho(m).incoming_kexec_count(), 0u);
  ASSERT_TRUE(RestoreAll(sent, /*keep=*/true));

  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  EXPECT_EQ(Kho(m).incoming_kexec_count(), 1u) << "kexec-metadata crossed twice";
  EXPECT_TRUE(RestoreAll(sent, /*keep=*/false));
  EXPECT_EQ(Kho(m).UnrestoredBlocks(), 1u) << "only KHO's own incoming root FDT";
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
  EXPECT_TRUE(m.kernel().mm().memblock().Validate().ok());
}

// A run crosses as one reservation, and every block of it is still a head
// of its own in kernel B: tagged with its order, restorable once.
TEST(KhoRangeProfileTest, ARunIsReservedWholeAndEachHeadRestoresAlone) {
  Machine m(RangeMachine());
  m.Boot();
  constexpr uint64_t kPages = 64;
  struct page* first = alloc_pages(GFP_KERNEL, 6);
  ASSERT_NE(first, nullptr);
  const uint64_t base = page_to_pfn(first) << 12;
  for (uint64_t i = 0; i < kPages; ++i) {
    ASSERT_EQ(kho_preserve_pages(pfn_to_page((base >> 12) + i), 1), 0);
  }
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  EXPECT_EQ(Kho(m).retrieved_blocks(), kPages + 2);
  EXPECT_TRUE(m.kernel().mm().memblock().IsReserved(PhysAddr(base), kPages << 12));
  for (uint64_t i = 0; i < kPages; ++i) {
    unsigned order = 99;
    EXPECT_TRUE(Kho(m).IsPreservedHead(PhysAddr(base + (i << 12)), &order)) << i;
    EXPECT_EQ(order, 0u);
  }
  for (uint64_t i = 0; i < kPages; ++i) {
    struct page* p = kho_restore_pages(base + (i << 12), 1);
    ASSERT_NE(p, nullptr) << i;
    __free_pages(p, 0);
  }
  EXPECT_EQ(Kho(m).UnrestoredBlocks(), 1u) << "only KHO's own incoming root FDT";
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
}

// The handover is serialized when the image is loaded, and a cancelled
// kexec leaves the image loaded: what is preserved before the retry must
// still reach kernel B (serialized again at reboot, after LUO).
TEST(KhoRangeProfileTest, PreservedAfterACancelledKexecStillCrosses) {
  Machine m(RangeMachine());
  m.Boot();
  const std::vector<Block> first = PreserveRandomFolios(m, 10);
  bool cancel = true;
  m.kernel().RegisterRebootHook("test_cancel",
                                [&](const RebootInfo&) { return cancel ? -EBUSY : 0; });
  ASSERT_FALSE(m.Kexec().ok()) << "the first attempt is cancelled, the image stays loaded";
  const std::vector<Block> late = PreserveRandomFolios(m, 10);
  cancel = false;
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  EXPECT_EQ(Kho(m).retrieved_blocks(), first.size() + late.size() + 2);
  EXPECT_TRUE(RestoreAll(first, /*keep=*/false));
  EXPECT_TRUE(RestoreAll(late, /*keep=*/false));
}

TEST(KhoRangeProfileTest, KhoRangeV1ToKhoV4IsRefusedAndBootsCold) {
  Machine m(RangeMachine());
  m.Boot();
  struct folio* f = folio_alloc(GFP_KERNEL, 1);
  std::memset(folio_address(f), 0x5e, folio_size(f));
  ASSERT_EQ(kho_preserve_folio(f), 0);
  const uint64_t lost = folio_phys(f);
  const uint64_t fdt = Kho(m).out_fdt().value();
  ASSERT_TRUE(m.Kexec(KexecOptions{.cmdline = "kho=on khosim.kho_profile=kho-v4"}).ok());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kV4);
  EXPECT_FALSE(is_kho_boot());
  EXPECT_FALSE(m.kernel().mm().memblock().scratch_only());
  char line[160];
  std::snprintf(line, sizeof(line),
                "KHO: setup: handover FDT (0x%llx) is incompatible with 'kho-v4': 1",
                static_cast<unsigned long long>(fdt));
  EXPECT_THAT(m.kernel().ctx().LogLines(), Contains(std::string(line)));
  EXPECT_EQ(kho_restore_folio(lost), nullptr);
  EXPECT_TRUE(kho_is_enabled()) << "a cold boot: fresh boot memory for the next hop";
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
}

TEST(KhoRangeProfileTest, KhoV4ToKhoRangeV1IsRefusedToo) {
  Machine m(MachineConfig{.ram = 2 * kGiB, .seed = 5, .cmdline = "kho=on"});
  m.Boot();
  struct folio* f = folio_alloc(GFP_KERNEL, 0);
  ASSERT_EQ(kho_preserve_folio(f), 0);
  const uint64_t lost = folio_phys(f);
  ASSERT_TRUE(m.Kexec(KexecOptions{.cmdline = kRangeCmdline}).ok());
  EXPECT_EQ(Kho(m).profile(), kho::KhoProfile::kRangeV1);
  EXPECT_FALSE(is_kho_boot());
  EXPECT_THAT(m.kernel().ctx().LogLines(), Contains(HasSubstr("incompatible with 'kho-range-v1'")));
  EXPECT_EQ(kho_restore_folio(lost), nullptr);
  // The cold-booted kho-range-v1 kernel hands over to the next one.
  struct folio* g = folio_alloc(GFP_KERNEL, 3);
  ASSERT_EQ(kho_preserve_folio(g), 0);
  const phys_addr_t pa = folio_phys(g);
  ASSERT_TRUE(m.Kexec(KexecOptions{.cmdline = kRangeCmdline}).ok());
  EXPECT_TRUE(is_kho_boot());
  struct folio* back = kho_restore_folio(pa);
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(folio_order(back), 3u);
}

TEST(KhoRangeProfileTest, PreparingTheHandoverAgainLeaksNoPages) {
  Machine m(RangeMachine());
  m.Boot();
  PreserveRandomFolios(m, 20);
  mm::PageAllocator& pages = m.kernel().mm().pages();
  const uint64_t before = pages.FreePages();
  ASSERT_EQ(Kho(m).Finalize(), 0);
  const uint64_t chain = Kho(m).tracker()->Stats().metadata_pages;
  ASSERT_GE(chain, 1u);
  EXPECT_EQ(pages.FreePages(), before - chain);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Kho(m).Finalize(), 0);
    EXPECT_EQ(pages.FreePages(), before - chain) << "the previous chain is freed, run " << i;
    EXPECT_EQ(RootMemoryMap(m), Kho(m).tracker()->handover().value());
  }
  // A failed run keeps the chain the FDT names.
  const uint64_t current = RootMemoryMap(m);
  m.faults().FailNth("alloc_pages", 1);
  EXPECT_EQ(Kho(m).Finalize(), -ENOMEM);
  EXPECT_EQ(RootMemoryMap(m), current);
  EXPECT_EQ(pages.FreePages(), before - chain);
  EXPECT_TRUE(pages.Validate().ok());
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_TRUE(is_kho_boot());
}

TEST(KhoRangeProfileTest, UnpreserveOfAnUnrecordedBlockDoesNotWarn) {
  Machine m(RangeMachine());
  m.Boot();
  struct folio* kept = folio_alloc(GFP_KERNEL, 2);
  struct folio* dropped = folio_alloc(GFP_KERNEL, 2);
  struct folio* never = folio_alloc(GFP_KERNEL, 0);
  ASSERT_EQ(kho_preserve_folio(kept), 0);
  ASSERT_EQ(kho_preserve_folio(dropped), 0);
  const uint64_t warns = m.kernel().ctx().WarnCount();
  kho_unpreserve_folio(dropped);
  kho_unpreserve_folio(never);
  EXPECT_EQ(m.kernel().ctx().WarnCount(), warns);
  const uint64_t kept_pa = folio_phys(kept);
  const uint64_t dropped_pa = folio_phys(dropped);
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  EXPECT_NE(kho_restore_folio(kept_pa), nullptr);
  EXPECT_EQ(kho_restore_folio(dropped_pa), nullptr);
}

// ---------------------------------------------------------------------------
// LUO on kho-range-v1

class RangeMemfdTest : public testing::MemfdFixture {
 protected:
  MachineConfig Config() override {
    MachineConfig config = MemfdFixture::Config();
    config.kho.profile = kho::KhoProfile::kRangeV1;
    return config;
  }
};

TEST_F(RangeMemfdTest, SessionIsPreservedAndRetrieved) {
  ASSERT_EQ(kho().profile(), kho::KhoProfile::kRangeV1);
  ASSERT_TRUE(luo().enabled()) << "kho-range-v1 has blob-size subtrees";
  constexpr size_t kBytes = 1 << 20;
  const int s = Create("vm0");
  ASSERT_GE(s, 0);
  const int fd = testing::MemfdFixture::NewMemfd(kBytes, 42);
  ASSERT_EQ(p().Lseek(fd, 4097, SEEK_SET), 4097);
  ASSERT_EQ(luo::PreserveFd(p(), s, fd, 7), 0);
  Kexec();
  ASSERT_TRUE(is_kho_boot());
  EXPECT_EQ(kho().profile(), kho::KhoProfile::kRangeV1);
  const int r = Retrieve("vm0");
  ASSERT_GE(r, 0);
  const int got = luo::RetrieveFd(p(), r, 7);
  ASSERT_GE(got, 0);
  EXPECT_EQ(p().Lseek(got, 0, SEEK_CUR), 4097);
  EXPECT_EQ(p().Lseek(got, 0, SEEK_END), static_cast<loff_t>(kBytes));
  EXPECT_EQ(ReadAll(got, kBytes), testing::RandomBytes(kBytes, 42));
  EXPECT_EQ(luo::FinishSession(p(), r), 0);
  EXPECT_EQ(p().Close(got), 0);
  EXPECT_EQ(kho().UnrestoredBlocks(), 1u) << "only the previous root FDT is left";
}

}  // namespace
}  // namespace khosim

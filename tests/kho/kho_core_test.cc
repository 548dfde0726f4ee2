// KHO across the kexec boundary: boot memory, preservation, retrieval,
// restore, subtrees, metadata, and the upstream test module's scenario.
#include <cerrno>
#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kho/kho_test_module.h"
#include "khosim/base/errno_status.h"
#include "khosim/base/panic.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_fdt.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/vmalloc.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

MachineConfig KhoMachine(uint64_t ram = 2 * kGiB, int nodes = 2, std::string extra = "") {
  MachineConfig c{.ram = ram, .nodes = nodes, .seed = 17};
  c.cmdline = "kho=on " + extra;
  return c;
}

kho::Kho& Kho(Machine& m) { return m.kernel().kho(); }

struct folio* FilledFolio(unsigned order, uint8_t byte) {
  struct folio* f = folio_alloc(GFP_KERNEL, order);
  EXPECT_NE(f, nullptr);
  std::memset(folio_address(f), byte, folio_size(f));
  return f;
}

bool AllBytes(phys_addr_t pa, uint64_t len, uint8_t byte) {
  const auto* p = static_cast<const uint8_t*>(phys_to_virt(pa));
  for (uint64_t i = 0; i < len; ++i) {
    if (p[i] != byte) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Boot memory

TEST(KhoScratchTest, DisabledUnlessAskedFor) {
  Machine m(MachineConfig{.ram = 1 * kGiB});
  m.Boot();
  EXPECT_FALSE(kho_is_enabled());
  EXPECT_FALSE(is_kho_boot());
  EXPECT_TRUE(Kho(m).scratch().empty());
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(m.last_handover().fdt_addr, 0u);
}

TEST(KhoScratchTest, ColdBootTableIsLowmemGlobalAndOnePerNodeSizedFromKernelReservations) {
  // The same machine without KHO shows the RSRV_KERN bytes the sizing uses.
  Machine plain(MachineConfig{.ram = 8 * kGiB, .nodes = 2, .seed = 17});
  plain.Boot();
  mm::Memblock& mb = plain.kernel().mm().memblock();
  const uint64_t align = 4 * kMiB;
  const uint64_t low = AlignUp(mb.ReservedKernSize(PhysAddr(4 * kGiB)) * 2, align);
  const uint64_t global = AlignUp(mb.ReservedKernSize() * 2 - low, align);
  const uint64_t node0 = AlignUp(mb.ReservedKernSize(PhysAddr(~0ull), 0) * 2, align);
  const uint64_t node1 = AlignUp(mb.ReservedKernSize(PhysAddr(~0ull), 1) * 2, align);

  Machine m(KhoMachine(8 * kGiB));
  m.Boot();
  ASSERT_TRUE(kho_is_enabled());
  const auto& s = Kho(m).scratch();
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].size, low);
  EXPECT_EQ(s[1].size, global);
  EXPECT_EQ(s[2].size, node0);
  EXPECT_EQ(s[3].size, node1);
  EXPECT_LE(s[0].addr + s[0].size, 4 * kGiB) << "lowmem is below 4 GiB";
  EXPECT_EQ(m.memory().layout().NodeOf(PhysAddr(s[2].addr)), 0);
  EXPECT_EQ(m.memory().layout().NodeOf(PhysAddr(s[3].addr)), 1);
  for (const auto& r : s) {
    EXPECT_EQ(r.addr % align, 0u);
    // Boot memory is CMA in kernel A: movable allocations only.
    EXPECT_EQ(m.kernel().mm().pages().PageblockType(
                  m.kernel().ctx().geometry().PhysToPfn(PhysAddr(r.addr))),
              mm::MigrateType::kCma);
  }
}

TEST(KhoScratchTest, CommandLineSizing) {
  Machine m(KhoMachine(4 * kGiB, 2, "kho_scratch=16M,512M,256M"));
  m.Boot();
  const auto& s = Kho(m).scratch();
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].size, 16 * kMiB);
  EXPECT_EQ(s[1].size, 512 * kMiB);
  EXPECT_EQ(s[2].size, 256 * kMiB);
  EXPECT_EQ(s[3].size, 256 * kMiB);

  Machine half(KhoMachine(4 * kGiB, 2, "kho_scratch=50%"));
  half.Boot();
  Machine full(KhoMachine(4 * kGiB, 2));
  full.Boot();
  EXPECT_EQ(Kho(half).scratch()[3].size, AlignUp(Kho(full).scratch()[3].size / 4, 4 * kMiB));
}

TEST(KhoScratchTest, ParseScratchSizingRules) {
  kho::ScratchSizing s;
  EXPECT_EQ(kho::ParseScratchSizing("50%", &s), 0);
  EXPECT_EQ(s.scale_percent, 50u);
  EXPECT_EQ(kho::ParseScratchSizing("16M,512M,1G", &s), 0);
  EXPECT_EQ(s.scale_percent, 0u);
  EXPECT_EQ(s.lowmem, 16 * kMiB);
  EXPECT_EQ(s.global, 512 * kMiB);
  EXPECT_EQ(s.pernode, 1 * kGiB);
  EXPECT_EQ(kho::ParseScratchSizing("0,4K,0", &s), 0) << "zero parts are fine if the total is not";
  for (const char* bad : {"", "%", "12345678901%", "1x%", "16M,512M", "16M,512M,256M,", "0,0,0",
                          "16M;512M;256M", "M,1,1", "16M,512M,256Mx"}) {
    EXPECT_EQ(kho::ParseScratchSizing(bad, &s), -EINVAL) << bad;
  }
}

TEST(KhoScratchTest, MalformedParameterKeepsTheDefault) {
  Machine bad(KhoMachine(2 * kGiB, 1, "kho_scratch=16M,,1"));
  bad.Boot();
  Machine good(KhoMachine(2 * kGiB, 1));
  good.Boot();
  EXPECT_EQ(Kho(bad).scratch()[2].size, Kho(good).scratch()[2].size);
  EXPECT_THAT(bad.kernel().ctx().LogLines(), Contains(HasSubstr("malformed kho_scratch")));
}

TEST(KhoScratchTest, ReservationFailureDisablesKho) {
  Machine m(KhoMachine(1 * kGiB, 1, "kho_scratch=64M,2G,64M"));
  m.Boot();
  EXPECT_FALSE(kho_is_enabled());
  EXPECT_THAT(m.kernel().ctx().LogLines(), Contains(HasSubstr("disabling kexec handover")));
  EXPECT_TRUE(m.kernel().mm().memblock().Validate().ok());
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_FALSE(is_kho_boot());
}

TEST(KhoScratchTest, SegmentsLandInBootMemoryAndBootMemoryIsInheritedUnchanged) {
  Machine m(KhoMachine());
  m.Boot();
  const auto table = Kho(m).scratch();
  for (int hop = 1; hop <= 3; ++hop) {
    ASSERT_TRUE(m.Kexec().ok());
    ASSERT_TRUE(is_kho_boot());
    const auto& now = Kho(m).scratch();
    ASSERT_EQ(now.size(), table.size());
    for (size_t i = 0; i < table.size(); ++i) {
      EXPECT_EQ(now[i].addr, table[i].addr) << hop;
      EXPECT_EQ(now[i].size, table[i].size) << hop;
    }
    EXPECT_TRUE(kho_scratch_overlap(m.last_handover().scratch_addr, 1));
    EXPECT_TRUE(kho_scratch_overlap(m.kernel().ctx().boot_params().image_base.value(), 1))
        << "the kernel image was placed inside boot memory";
  }
}

TEST(KhoScratchTest, NextImageMustFitInBootMemory) {
  // 4 MiB regions cannot take the 32 MiB kernel image: the kexec load fails
  // with -EADDRNOTAVAIL and kernel A keeps running.
  Machine m(KhoMachine(2 * kGiB, 1, "kho_scratch=4M,4M,4M"));
  m.Boot();
  ASSERT_TRUE(kho_is_enabled());
  EXPECT_EQ(StatusErrno(m.Kexec()), EADDRNOTAVAIL);
  EXPECT_EQ(m.kernel().generation(), 1u);
  EXPECT_EQ(m.kernel().phase(), BootPhase::kRunning);
}

TEST(KhoScratchTest, ExhaustingBootMemoryInKernelBFailsLoudly) {
  // Room for the image, none for kernel B's 16 MiB of early allocations per
  // node: the allocation fails in the scratch-only phase, with no fallback
  // to the rest of RAM.
  Machine m(KhoMachine(2 * kGiB, 1, "kho_scratch=4M,40M,4M"));
  m.Boot();
  ASSERT_TRUE(kho_is_enabled());
  try {
    (void)m.Kexec();
    FAIL() << "kernel B should not boot";
  } catch (const KernelPanic& panic) {
    EXPECT_THAT(panic.what(), HasSubstr("scratch only"));
  }
}

// ---------------------------------------------------------------------------
// Preserve, retrieve, restore

TEST(KhoPreserveTest, FolioCrossesTheKexecAndRestoresOnce) {
  Machine m(KhoMachine());
  m.Boot();
  struct folio* f = FilledFolio(3, 0xa5);
  const phys_addr_t pa = folio_phys(f);
  ASSERT_EQ(kho_preserve_folio(f), 0);
  EXPECT_TRUE(kho_is_preserved(pa, 8));
  EXPECT_FALSE(kho_is_preserved(pa, 9));
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  // Every preserved head is tagged; other pages of the block are not.
  EXPECT_EQ(page_private(phys_to_page(pa)), (0x4b484f50ull << 32) | 3);
  EXPECT_EQ(page_private(phys_to_page(pa + PAGE_SIZE)), 0u);
  EXPECT_TRUE(m.kernel().mm().memblock().IsReserved(PhysAddr(pa), 8 * PAGE_SIZE));
  const uint64_t managed = m.kernel().mm().pages().ManagedPages();
  struct folio* r = kho_restore_folio(pa);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(folio_order(r), 3u);
  EXPECT_EQ(folio_ref_count(r), 1);
  for (int i = 1; i < 8; ++i) {
    EXPECT_EQ(page_ref_count(folio_page(r, i)), 0);
    EXPECT_EQ(page_folio(folio_page(r, i)), r);
  }
  EXPECT_EQ(m.kernel().mm().pages().ManagedPages(), managed + 8);
  EXPECT_TRUE(AllBytes(pa, 8 * PAGE_SIZE, 0xa5));
  EXPECT_EQ(page_private(&r->page), 0u);
  const uint64_t warns = m.kernel().WarnCount();
  EXPECT_EQ(kho_restore_folio(pa), nullptr) << "a head restores once";
  EXPECT_EQ(kho_restore_folio(pa), nullptr);
  EXPECT_EQ(m.kernel().WarnCount(), warns + 1) << "WARN_ON_ONCE";
  folio_put(r);
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
}

TEST(KhoPreserveTest, TailAndUnpreservedAddressesDoNotRestore) {
  Machine m(KhoMachine());
  m.Boot();
  struct folio* f = FilledFolio(3, 1);
  ASSERT_EQ(kho_preserve_folio(f), 0);
  const phys_addr_t pa = folio_phys(f);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(kho_restore_folio(pa + 2 * PAGE_SIZE), nullptr);
  EXPECT_EQ(kho_restore_folio(pa + 1), nullptr);
  // Retrieved: the folio, the root FDT and kexec-metadata. KHO restored the
  // metadata itself and keeps the root FDT for the whole boot.
  EXPECT_EQ(Kho(m).retrieved_blocks(), 3u);
  EXPECT_EQ(Kho(m).UnrestoredBlocks(), 2u);
  EXPECT_NE(kho_restore_folio(pa), nullptr);
  EXPECT_EQ(Kho(m).UnrestoredBlocks(), 1u);
}

TEST(KhoPreserveTest, PreservePagesSplitsGreedilyAndRestoresOrderZeroPages) {
  Machine m(KhoMachine());
  m.Boot();
  // Take pfns 0x20000..0x2000f and preserve 0x20003..0x2000a (upstream's
  // example 3..10, moved to where this machine has free RAM).
  const Pfn base(0x20000);
  ASSERT_TRUE(m.kernel().mm().pages().AllocRange(base, 16));
  struct page* first = pfn_to_page(0x20003);
  for (int i = 0; i < 8; ++i) std::memset(page_address(first + i), 0x30 + i, PAGE_SIZE);
  ASSERT_EQ(kho_preserve_pages(first, 8), 0);
  kho::RadixTree* tree = Kho(m).out_tree();
  const auto has = [&](uint64_t pfn, unsigned order) {
    return tree->ContainsBlock(PhysAddr(pfn << 12), order);
  };
  EXPECT_TRUE(has(0x20003, 0));
  EXPECT_TRUE(has(0x20004, 2));
  EXPECT_TRUE(has(0x20008, 1));
  EXPECT_TRUE(has(0x2000a, 0));
  EXPECT_FALSE(has(0x20004, 0)) << "no smaller key inside a larger block";
  ASSERT_TRUE(m.Kexec().ok());
  struct page* r = kho_restore_pages(0x20003ull << 12, 8);
  ASSERT_NE(r, nullptr);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(page_ref_count(r + i), 1);
    EXPECT_FALSE(PageCompound(r + i));
    EXPECT_TRUE(AllBytes(page_to_phys(r + i), PAGE_SIZE, 0x30 + i)) << i;
  }
  for (int i = 0; i < 8; ++i) __free_page(r + i);
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
}

TEST(KhoPreserveTest, RestoringFewerPagesStillInitializesTheWholeBlock) {
  Machine m(KhoMachine());
  m.Boot();
  ASSERT_TRUE(m.kernel().mm().pages().AllocRange(Pfn(0x21000), 8));
  ASSERT_EQ(kho_preserve_pages(pfn_to_page(0x21000), 8), 0);
  ASSERT_TRUE(m.Kexec().ok());
  struct page* r = kho_restore_pages(0x21000ull << 12, 4);
  ASSERT_NE(r, nullptr);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(page_ref_count(r + i), 1) << i;
}

TEST(KhoPreserveTest, PreserveRangeNeverCrossesANumaNodeButRestoreIgnoresNodes) {
  Machine m(KhoMachine(2 * kGiB, 2));
  m.Boot();
  // Node 1 starts at 1 GiB + 2 MiB (pfn 0x40200); the order-10 block at
  // pfn 0x40000 straddles it. (The memory is node 0's early allocations:
  // preserving it is legal, only the keys matter here.)
  ASSERT_EQ(m.memory().layout().ranges()[1].start.value() >> 12, 0x40200u);
  ASSERT_EQ(kho_preserve_pages(pfn_to_page(0x40000), 1024), 0);
  kho::RadixTree* tree = Kho(m).out_tree();
  EXPECT_FALSE(tree->ContainsBlock(PhysAddr(0x40000ull << 12), 10));
  EXPECT_TRUE(tree->ContainsBlock(PhysAddr(0x40000ull << 12), 9));
  EXPECT_TRUE(tree->ContainsBlock(PhysAddr(0x40200ull << 12), 9));
  ASSERT_TRUE(m.Kexec().ok());
  const uint64_t unrestored = Kho(m).UnrestoredBlocks();
  // Upstream's restore walk splits without the node bound: one order-10
  // step, which restores the first block (order 9 from its tag) and never
  // visits the second. The call reports success.
  struct page* r = kho_restore_pages(0x40000ull << 12, 1024);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(page_ref_count(r + 511), 1);
  EXPECT_EQ(page_ref_count(r + 512), 0) << "second block left unrestored";
  EXPECT_EQ(Kho(m).UnrestoredBlocks(), unrestored - 1);
}

TEST(KhoPreserveTest, DuplicatePreserveThenOneUnpreserveDropsTheBlock) {
  Machine m(KhoMachine());
  m.Boot();
  struct folio* f = FilledFolio(0, 0x77);
  const phys_addr_t pa = folio_phys(f);
  ASSERT_EQ(kho_preserve_folio(f), 0);
  ASSERT_EQ(kho_preserve_folio(f), 0);
  kho_unpreserve_folio(f);
  EXPECT_FALSE(kho_is_preserved(pa, 1));
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(kho_restore_folio(pa), nullptr);
  EXPECT_FALSE(AllBytes(pa, PAGE_SIZE, 0x77)) << "an unpreserved page is scrubbed";
}

TEST(KhoPreserveTest, AllocPreserveErrorsAndSizes) {
  Machine m(KhoMachine());
  m.Boot();
  EXPECT_EQ(PTR_ERR(kho_alloc_preserve(0)), -EINVAL);
  EXPECT_EQ(PTR_ERR(kho_alloc_preserve((PAGE_SIZE << MAX_PAGE_ORDER) + 1)), -E2BIG);
  void* big = kho_alloc_preserve(PAGE_SIZE << MAX_PAGE_ORDER);
  ASSERT_FALSE(IS_ERR(big));
  EXPECT_EQ(folio_order(virt_to_folio(big)), MAX_PAGE_ORDER);
  EXPECT_TRUE(AllBytes(virt_to_phys(big), PAGE_SIZE << MAX_PAGE_ORDER, 0)) << "zeroed";
  EXPECT_TRUE(Kho(m).out_tree()->ContainsBlock(PhysAddr(virt_to_phys(big)), MAX_PAGE_ORDER));
  m.faults().FailOnce("kho_alloc_preserve");
  EXPECT_EQ(PTR_ERR(kho_alloc_preserve(100)), -ENOMEM);
  void* small = kho_alloc_preserve(100);
  ASSERT_FALSE(IS_ERR(small));
  const phys_addr_t pa = virt_to_phys(small);
  kho_unpreserve_free(small);
  EXPECT_FALSE(kho_is_preserved(pa, 1));
  kho_unpreserve_free(nullptr);
}

TEST(KhoPreserveTest, NodeAllocationFailureLeavesTheTreeUnchanged) {
  Machine m(KhoMachine());
  m.Boot();
  // A page 768 MiB up needs a leaf of its own (128 MiB per leaf).
  ASSERT_TRUE(m.kernel().mm().pages().AllocRange(Pfn(0x30000), 1));
  const uint64_t nodes = Kho(m).out_tree()->NodeCount();
  m.faults().FailNth("alloc_pages", 1);
  EXPECT_EQ(kho_preserve_pages(pfn_to_page(0x30000), 1), -ENOMEM);
  EXPECT_EQ(Kho(m).out_tree()->NodeCount(), nodes);
  EXPECT_FALSE(kho_is_preserved(0x30000ull << 12, 1));
  EXPECT_EQ(kho_preserve_pages(pfn_to_page(0x30000), 1), 0);
  EXPECT_EQ(Kho(m).out_tree()->NodeCount(), nodes + 1);
}

struct folio* FolioInsideScratch(Machine& m) {
  const auto& s = Kho(m).scratch()[0];  // lowmem: never empty
  const Pfn pfn = m.kernel().ctx().geometry().PhysToPfn(PhysAddr(s.addr));
  EXPECT_TRUE(m.kernel().mm().pages().AllocRange(pfn, 1));
  struct page* p = pfn_to_page(pfn.value());
  init_page_count(p);
  return page_folio(p);
}

TEST(KhoPreserveTest, PreservingBootMemoryIsAlwaysReported) {
  Machine m(KhoMachine());
  m.Boot();
  struct folio* f = FolioInsideScratch(m);
  EXPECT_EQ(kho_preserve_folio(f), 0) << "without the debug option upstream lets it through";
  EXPECT_EQ(m.kernel().WarnCount("inside KHO boot memory"), 1u);

  MachineConfig debug = KhoMachine();
  debug.kho.debug = true;
  Machine d(debug);
  d.Boot();
  struct folio* g = FolioInsideScratch(d);
  EXPECT_EQ(kho_preserve_folio(g), -EINVAL);
  EXPECT_EQ(kho_preserve_pages(&g->page, 1), -EINVAL);
  EXPECT_EQ(d.kernel().WarnCount("inside KHO boot memory"), 2u);
  EXPECT_FALSE(kho_is_preserved(folio_phys(g), 1));
}

class KhoPageSizeTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(KhoPageSizeTest, FolioAndVmallocCrossTheKexec) {
  MachineConfig config = KhoMachine(4 * kGiB, 2);
  config.page_size = GetParam();
  Machine m(config);
  m.Boot();
  ASSERT_TRUE(kho_is_enabled());
  struct folio* f = FilledFolio(2, 0x3c);
  const phys_addr_t pa = folio_phys(f);
  ASSERT_EQ(kho_preserve_folio(f), 0);
  auto* area = static_cast<uint8_t*>(vmalloc(700 * PAGE_SIZE));
  std::memset(area, 0x5d, 700 * PAGE_SIZE);
  auto* desc = static_cast<struct kho_vmalloc*>(kho_alloc_preserve(sizeof(struct kho_vmalloc)));
  ASSERT_EQ(kho_preserve_vmalloc(area, desc), 0);
  ASSERT_EQ(kho_add_subtree("vm", desc, sizeof(*desc)), 0);
  ASSERT_TRUE(m.Kexec().ok());
  ASSERT_TRUE(is_kho_boot());
  struct folio* r = kho_restore_folio(pa);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(folio_size(r), 4 * GetParam());
  EXPECT_TRUE(AllBytes(pa, 4 * PAGE_SIZE, 0x3c));
  phys_addr_t phys;
  ASSERT_EQ(kho_retrieve_subtree("vm", &phys, nullptr), 0);
  auto* restored = static_cast<uint8_t*>(
      kho_restore_vmalloc(static_cast<struct kho_vmalloc*>(phys_to_virt(phys))));
  ASSERT_NE(restored, nullptr);
  for (unsigned long i = 0; i < 700 * PAGE_SIZE; i += 512) ASSERT_EQ(restored[i], 0x5d) << i;
}

INSTANTIATE_TEST_SUITE_P(PageSizes, KhoPageSizeTest, ::testing::Values(4096, 16384, 65536));

// ---------------------------------------------------------------------------
// vmalloc

TEST(KhoVmallocTest, TwoThousandPagesMakeFourChunksAndRestoreByteExact) {
  Machine m(KhoMachine());
  m.Boot();
  const unsigned long size = 2000 * PAGE_SIZE;
  auto* area = static_cast<uint8_t*>(vmalloc(size));
  ASSERT_NE(area, nullptr);
  for (unsigned long i = 0; i < size; i += 8) {
    const uint64_t v = i * 0x9e3779b97f4a7c15ull;
    std::memcpy(area + i, &v, 8);
  }
  auto* desc = static_cast<struct kho_vmalloc*>(kho_alloc_preserve(sizeof(struct kho_vmalloc)));
  ASSERT_FALSE(IS_ERR(desc));
  ASSERT_EQ(kho_preserve_vmalloc(area, desc), 0);
  EXPECT_EQ(desc->total_pages, 2000u);
  EXPECT_EQ(desc->flags, khosim::abi::kKhoVmallocAlloc);
  EXPECT_EQ(desc->order, 0u);
  int chunks = 0;
  for (phys_addr_t c = desc->first; c != 0; c = *static_cast<uint64_t*>(phys_to_virt(c))) {
    ++chunks;
  }
  EXPECT_EQ(chunks, 4) << "511 entries per chunk";
  ASSERT_EQ(kho_add_subtree("vm", desc, sizeof(*desc)), 0);
  ASSERT_TRUE(m.Kexec().ok());
  phys_addr_t phys;
  size_t blob;
  ASSERT_EQ(kho_retrieve_subtree("vm", &phys, &blob), 0);
  auto* in = static_cast<struct kho_vmalloc*>(phys_to_virt(phys));
  auto* restored = static_cast<uint8_t*>(kho_restore_vmalloc(in));
  ASSERT_NE(restored, nullptr);
  for (unsigned long i = 0; i < size; i += 8) {
    uint64_t v;
    std::memcpy(&v, restored + i, 8);
    ASSERT_EQ(v, i * 0x9e3779b97f4a7c15ull) << i;
  }
  const uint64_t free_before = m.kernel().mm().pages().FreePages();
  vfree(restored);
  EXPECT_EQ(m.kernel().mm().pages().FreePages(), free_before + 2000);
}

TEST(KhoVmallocTest, RestoreRefusesInconsistentDescriptors) {
  for (int tamper = 0; tamper < 4; ++tamper) {
    Machine m(KhoMachine());
    m.Boot();
    auto* area = vmalloc(10 * PAGE_SIZE);
    auto* desc = static_cast<struct kho_vmalloc*>(kho_alloc_preserve(sizeof(struct kho_vmalloc)));
    ASSERT_EQ(kho_preserve_vmalloc(area, desc), 0);
    ASSERT_EQ(kho_add_subtree("vm", desc, sizeof(*desc)), 0);
    ASSERT_TRUE(m.Kexec().ok());
    phys_addr_t phys;
    ASSERT_EQ(kho_retrieve_subtree("vm", &phys, nullptr), 0);
    auto* in = static_cast<struct kho_vmalloc*>(phys_to_virt(phys));
    if (tamper == 0) in->total_pages = 9;           // more pages than announced
    if (tamper == 1) in->total_pages = 11;          // count mismatch
    if (tamper == 2) in->flags = 0x8;               // unknown flag
    if (tamper == 3) in->total_pages = 0xffffffff;  // sized before any check
    EXPECT_EQ(kho_restore_vmalloc(in), nullptr) << tamper;
  }
}

TEST(KhoVmallocTest, PreserveErrors) {
  Machine m(KhoMachine());
  m.Boot();
  struct kho_vmalloc desc;
  int local = 0;
  EXPECT_EQ(kho_preserve_vmalloc(&local, &desc), -EINVAL);
  struct page* pages[2] = {alloc_page(GFP_KERNEL), alloc_page(GFP_KERNEL)};
  void* mapped = vmap(pages, 2, VM_MAP, PAGE_KERNEL);
  ASSERT_NE(mapped, nullptr);
  EXPECT_EQ(kho_preserve_vmalloc(mapped, &desc), -EOPNOTSUPP);
  EXPECT_FALSE(kho_is_preserved(page_to_phys(pages[0]), 1));
  // A page-allocation failure while adding chunk pages unwinds everything.
  void* area = vmalloc(600 * PAGE_SIZE);
  const uint64_t nodes_before = Kho(m).out_tree()->NodeCount();
  m.faults().FailNth("alloc_pages", 2);  // the second chunk page
  EXPECT_EQ(kho_preserve_vmalloc(area, &desc), -ENOMEM);
  EXPECT_FALSE(kho_is_preserved(page_to_phys(vmalloc_to_page(area)), 1));
  EXPECT_GE(Kho(m).out_tree()->NodeCount(), nodes_before);
}

TEST(KhoVmallocTest, HugeAreasKeepTheirOrder) {
  Machine m(KhoMachine());
  m.Boot();
  const unsigned long size = 2 * (PAGE_SIZE << 9);
  auto* area = static_cast<uint8_t*>(vmalloc_huge(size, GFP_KERNEL));
  ASSERT_NE(area, nullptr);
  std::memset(area, 0x42, size);
  auto* desc = static_cast<struct kho_vmalloc*>(kho_alloc_preserve(sizeof(struct kho_vmalloc)));
  ASSERT_EQ(kho_preserve_vmalloc(area, desc), 0);
  EXPECT_EQ(desc->order, 9u);
  EXPECT_EQ(desc->flags, khosim::abi::kKhoVmallocAlloc | khosim::abi::kKhoVmallocHugeVmap);
  ASSERT_EQ(kho_add_subtree("huge", desc, sizeof(*desc)), 0);
  ASSERT_TRUE(m.Kexec().ok());
  phys_addr_t phys;
  ASSERT_EQ(kho_retrieve_subtree("huge", &phys, nullptr), 0);
  auto* restored = static_cast<uint8_t*>(
      kho_restore_vmalloc(static_cast<struct kho_vmalloc*>(phys_to_virt(phys))));
  ASSERT_NE(restored, nullptr);
  EXPECT_EQ(find_vm_area(restored)->page_order, 9u);
  for (unsigned long i = 0; i < size; i += 4096) ASSERT_EQ(restored[i], 0x42);
}

// ---------------------------------------------------------------------------
// Subtrees and the root FDT

TEST(KhoSubtreeTest, AddRetrieveAndErrorOrder) {
  Machine m(KhoMachine());
  m.Boot();
  phys_addr_t phys = 0;
  size_t size = 0;
  EXPECT_EQ(kho_retrieve_subtree("x", &phys, &size), -ENOENT) << "not a KHO boot: checked first";
  void* blob = kho_alloc_preserve(100);
  ASSERT_EQ(kho_add_subtree("x", blob, 100), 0);
  EXPECT_EQ(kho_add_subtree("x", blob, 100), -EEXIST);
  void* other = kho_alloc_preserve(10);
  ASSERT_EQ(kho_add_subtree("gone", other, 10), 0);
  kho_remove_subtree(other);
  int unknown = 0;
  kho_remove_subtree(&unknown);  // no node: no change, no error
  std::memcpy(blob, "payload", 8);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(kho_retrieve_subtree("x", nullptr, &size), -EINVAL);
  EXPECT_EQ(kho_retrieve_subtree("gone", &phys, &size), -ENOENT);
  ASSERT_EQ(kho_retrieve_subtree("x", &phys, &size), 0);
  EXPECT_EQ(size, 100u);
  EXPECT_STREQ(static_cast<char*>(phys_to_virt(phys)), "payload");
  kho_restore_free(phys_to_virt(phys));
}

TEST(KhoSubtreeTest, FullRootFdtReportsEnomemAndStaysValid) {
  Machine m(KhoMachine());
  m.Boot();
  void* blob = kho_alloc_preserve(8);
  int added = 0;
  int err = 0;
  while ((err = kho_add_subtree(("subsystem-" + std::to_string(added)).c_str(), blob, 8)) == 0) {
    ++added;
  }
  EXPECT_EQ(err, -ENOMEM);
  EXPECT_GT(added, 20);
  const kho::KhoDebugView view = Kho(m).DebugView();
  EXPECT_EQ(view.out_subtrees.size(), static_cast<size_t>(added) + 1) << "+ kexec-metadata";
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_TRUE(is_kho_boot());
}

TEST(KhoSubtreeTest, ABlobThatWasNeverPreservedIsGoneInKernelB) {
  // The classic handler bug: kho_add_subtree records an address but does not
  // preserve the memory behind it.
  Machine m(KhoMachine());
  m.Boot();
  struct folio* f = FilledFolio(0, 0);
  std::memcpy(folio_address(f), "important state", 16);
  ASSERT_EQ(kho_add_subtree("forgot", folio_address(f), 16), 0);
  ASSERT_TRUE(m.Kexec().ok());
  phys_addr_t phys;
  size_t size;
  ASSERT_EQ(kho_retrieve_subtree("forgot", &phys, &size), 0);
  const auto* bytes = static_cast<const uint8_t*>(phys_to_virt(phys));
  // Scrubbed, or already reused and zeroed by kernel B's own allocations.
  EXPECT_NE(std::memcmp(bytes, "important state", 16), 0);
  EXPECT_EQ(kho_restore_folio(phys), nullptr);
}

TEST(KhoSubtreeTest, WrongCompatibleBootsKernelBColdAndLosesTheData) {
  Machine m(KhoMachine());
  m.Boot();
  struct folio* f = FilledFolio(2, 0x66);
  const phys_addr_t pa = folio_phys(f);
  ASSERT_EQ(kho_preserve_folio(f), 0);
  // Rewrite the root FDT as an older kernel would have written it.
  void* fdt = phys_to_virt(Kho(m).out_fdt().value());
  ASSERT_EQ(kho::CreateRootFdt(fdt, PAGE_SIZE, "kho-v3", Kho(m).out_tree()->root().value()), 0);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_FALSE(is_kho_boot());
  EXPECT_FALSE(m.kernel().mm().memblock().scratch_only());
  EXPECT_THAT(m.kernel().ctx().LogLines(), Contains(HasSubstr("disabling KHO revival")));
  EXPECT_EQ(kho_restore_folio(pa), nullptr);
  EXPECT_FALSE(AllBytes(pa, 4 * PAGE_SIZE, 0x66));
  // Cold-boot path: KHO sized fresh boot memory and works for the next hop.
  EXPECT_TRUE(kho_is_enabled());
}

TEST(KhoRetrieveTest, ACorruptTreeLeavesKernelBRunningWithoutKhoData) {
  // Found by kho_incoming_fuzzer: kernel B used to release the inherited
  // boot memory to the buddy allocator twice after a failed retrieval.
  Machine m(KhoMachine());
  m.Boot();
  struct folio* f = FilledFolio(0, 0x11);
  ASSERT_EQ(kho_preserve_folio(f), 0);
  auto* root = static_cast<uint64_t*>(phys_to_virt(Kho(m).out_tree()->root().value()));
  root[2] += 8;  // the order-0 subtree's pointer, no longer page aligned
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_FALSE(is_kho_boot());
  EXPECT_THAT(m.kernel().ctx().LogLines(),
              Contains(HasSubstr("failed to retrieve preserved memory")));
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
  EXPECT_TRUE(kho_is_enabled()) << "the outgoing side still works";
  ASSERT_TRUE(m.Kexec().ok());
}

TEST(KhoSubtreeTest, ZeroPreservedMemoryMapIsRejected) {
  Machine m(KhoMachine());
  m.Boot();
  void* fdt = phys_to_virt(Kho(m).out_fdt().value());
  ASSERT_EQ(kho::CreateRootFdt(fdt, PAGE_SIZE, "kho-v4", 0), 0);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_FALSE(is_kho_boot());
}

TEST(KhoMetadataTest, KexecCountAndPreviousReleaseAlongAChain) {
  MachineConfig config = KhoMachine();
  config.kho.release = "7.3.0-first";
  Machine m(config);
  m.Boot();
  for (uint32_t hop = 1; hop <= 3; ++hop) {
    ASSERT_TRUE(m.Kexec().ok());
    EXPECT_EQ(Kho(m).previous_release(), "7.3.0-first");
    EXPECT_EQ(Kho(m).incoming_kexec_count(), hop - 1);
    // What this kernel publishes for the next one.
    const kho::KhoDebugView view = Kho(m).DebugView();
    auto it = std::find_if(view.out_subtrees.begin(), view.out_subtrees.end(),
                           [](const auto& b) { return b.name == "kexec-metadata"; });
    ASSERT_NE(it, view.out_subtrees.end());
    EXPECT_EQ(it->size, 73u);
    abi::KexecMetadata md;
    std::memcpy(&md, phys_to_virt(it->phys), sizeof(md));
    // Copies: the record is packed, gtest binds references.
    const uint32_t version = md.version;
    const uint32_t count = md.kexec_count;
    EXPECT_EQ(version, 1u);
    EXPECT_EQ(count, hop);
  }
}

TEST(KhoDebugViewTest, ShowsOutAndIn) {
  Machine m(KhoMachine());
  m.Boot();
  void* blob = kho_alloc_preserve(32);
  ASSERT_EQ(kho_add_subtree("mine", blob, 32), 0);
  ASSERT_TRUE(m.Kexec().ok());
  const std::string text = Kho(m).DebugView().ToString();
  EXPECT_THAT(text, HasSubstr("kho/out/scratch_phys: 0x"));
  EXPECT_THAT(text, HasSubstr("kho/in/sub_fdts/mine"));
  EXPECT_THAT(text, HasSubstr("kho/out/sub_fdts/kexec-metadata"));
}

// ---------------------------------------------------------------------------
// The upstream test module's scenario

TEST(KhoTestModuleTest, RandomFoliosAndIndexRestoreWithMatchingChecksum) {
  Machine m(KhoMachine());
  m.Boot();
  const testing::KhoTestSet sent = testing::PreserveTestSet(m, "kho_test", 8 * kMiB);
  ASSERT_GT(sent.nr_folios, 0u);
  ASSERT_TRUE(m.Kexec().ok());
  bool ok = false;
  const testing::KhoTestSet got = testing::RestoreTestSet(m, "kho_test", false, &ok);
  EXPECT_TRUE(ok);
  EXPECT_EQ(got.nr_folios, sent.nr_folios);
  EXPECT_EQ(got.csum, sent.csum);
  EXPECT_EQ(Kho(m).UnrestoredBlocks(), 1u) << "every block but KHO's own root FDT was claimed";
}

TEST(KhoTestModuleTest, ThreeBootChainRestoresExactlyFourDataSets) {
  Machine m(KhoMachine());
  m.Boot();
  testing::PreserveTestSet(m, "set0", 2 * kMiB);
  testing::PreserveTestSet(m, "set1", 2 * kMiB);
  ASSERT_TRUE(m.Kexec().ok());
  for (const char* name : {"set0", "set1"}) {
    bool ok = false;
    testing::RestoreTestSet(m, name, /*keep=*/true, &ok);
    EXPECT_TRUE(ok) << name;
  }
  testing::PreserveTestSet(m, "set2", 2 * kMiB);
  testing::PreserveTestSet(m, "set3", 2 * kMiB);
  ASSERT_TRUE(m.Kexec().ok());
  int restored = 0;
  for (const char* name : {"set0", "set1", "set2", "set3", "set4"}) {
    bool ok = false;
    testing::RestoreTestSet(m, name, false, &ok);
    restored += ok;
  }
  EXPECT_EQ(restored, 4);
}

TEST(KhoTestModuleTest, TwoGibPreservedOnAnEightGibMachine) {
  Machine m(KhoMachine(8 * kGiB, 2));
  m.Boot();
  const testing::KhoTestSet sent = testing::PreserveTestSet(m, "big", 2 * kGiB);
  ASSERT_GE(sent.bytes, 2 * kGiB);
  ASSERT_TRUE(m.Kexec().ok());
  bool ok = false;
  const testing::KhoTestSet got = testing::RestoreTestSet(m, "big", false, &ok);
  EXPECT_TRUE(ok);
  EXPECT_EQ(got.csum, sent.csum);
  EXPECT_TRUE(m.kernel().mm().pages().Validate().ok());
}

// ---------------------------------------------------------------------------
// Extended scratch

TEST(KhoExtendedScratchTest, FiftyGigabytePagesOnA64GibMachine) {
  for (bool extended : {false, true}) {
    MachineConfig config = KhoMachine(64 * kGiB, 1);
    config.kho.extended_scratch = extended;
    Machine m(config);
    m.Boot();
    // 50 x 1 GiB blocks, as a hypervisor's gigantic pages would be.
    mm::PageAllocator& pages = m.kernel().mm().pages();
    int preserved = 0;
    for (uint64_t gib = 2; gib < 64 && preserved < 50; ++gib) {
      const Pfn pfn(gib << 18);
      if (!pages.AllocRange(pfn, 1 << 18)) continue;
      ASSERT_EQ(kho_preserve_pages(pfn_to_page(pfn.value()), 1 << 18), 0);
      ++preserved;
    }
    ASSERT_EQ(preserved, 50);
    ASSERT_TRUE(m.Kexec().ok());
    ASSERT_TRUE(is_kho_boot());
    EXPECT_EQ(Kho(m).retrieved_blocks(), 50u + 2u) << "+ the root FDT and kexec-metadata";
    if (!extended) {
      EXPECT_EQ(Kho(m).extended_scratch_bytes(), 0u);
      continue;
    }
    // Everything but the 50 busy blocks and the blocks holding tree pages,
    // the FDT and the metadata blob.
    RecordProperty("recovered_gib", std::to_string(Kho(m).extended_scratch_bytes() >> 30));
    EXPECT_GE(Kho(m).extended_scratch_bytes(), 9 * kGiB);
    EXPECT_LE(Kho(m).extended_scratch_bytes(), 14 * kGiB);
  }
}

}  // namespace
}  // namespace khosim

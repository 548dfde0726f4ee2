// The kexec boundary's scrub: with nothing preserved, no byte a kernel wrote
// is readable by the next one.
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "khosim/hw/physical_memory.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/vmalloc.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr uint8_t kSecret = 0x5a;

struct Written {
  phys_addr_t pa;
  uint64_t size;
};

// Fills folios of several orders, a vmalloc area, and the kernel's own
// early memory with kSecret; returns where.
std::vector<Written> WriteSecrets(Machine& m) {
  std::vector<Written> out;
  for (unsigned order = 0; order <= 4; ++order) {
    for (int i = 0; i < 8; ++i) {
      struct folio* f = folio_alloc(GFP_KERNEL, order);
      EXPECT_NE(f, nullptr);
      std::memset(folio_address(f), kSecret, folio_size(f));
      out.push_back({folio_phys(f), folio_size(f)});
      if (i % 2 == 0) folio_put(f);  // half of them freed again
    }
  }
  auto* area = static_cast<uint8_t*>(vmalloc(16 * PAGE_SIZE));
  std::memset(area, kSecret, 16 * PAGE_SIZE);
  for (unsigned i = 0; i < 16; ++i) {
    out.push_back({page_to_phys(vmalloc_to_page(area + i * PAGE_SIZE)), PAGE_SIZE});
  }
  // The whole of RAM sampled: every 1 MiB, one page.
  for (const hw::RamRange& r : m.memory().layout().ranges()) {
    for (uint64_t off = 0; off < r.size; off += kMiB) {
      const PhysAddr pa = r.start + off;
      if (m.kernel().mm().pages().IsFree(m.kernel().ctx().geometry().PhysToPfn(pa))) {
        std::memset(m.memory().Virt(pa), kSecret, 4096);
        out.push_back({pa.value(), 4096});
      }
    }
  }
  return out;
}

uint64_t SurvivingBytes(Machine& m, const std::vector<Written>& written) {
  uint64_t survived = 0;
  for (const Written& w : written) {
    const uint8_t* p = m.memory().Virt(PhysAddr(w.pa));
    for (uint64_t i = 0; i < w.size; ++i) survived += p[i] == kSecret;
  }
  return survived;
}

TEST(ScrubTest, PoisonPolicyLeavesNoByteOfTheLastBootReadable) {
  Machine m(MachineConfig{.ram = 1 * kGiB, .nodes = 2, .seed = 11});
  m.Boot();
  const std::vector<Written> written = WriteSecrets(m);
  ASSERT_GT(written.size(), 500u);
  ASSERT_TRUE(m.Kexec().ok());
  EXPECT_EQ(SurvivingBytes(m, written), 0u);
  // What was written and not reused by B reads as the poison pattern.
  uint64_t poisoned = 0;
  for (const Written& w : written) {
    poisoned += m.memory().Virt(PhysAddr(w.pa))[w.size - 1] == hw::kPoisonByte;
  }
  EXPECT_GT(poisoned, written.size() / 2);
}

TEST(ScrubTest, ScrubHoldsAcrossAChainOfKexecs) {
  Machine m(MachineConfig{.ram = 512 * kMiB, .seed = 12});
  m.Boot();
  for (int round = 0; round < 3; ++round) {
    const std::vector<Written> written = WriteSecrets(m);
    ASSERT_TRUE(m.Kexec().ok());
    EXPECT_EQ(SurvivingBytes(m, written), 0u) << "round " << round;
  }
}

TEST(ScrubTest, FreshAllocationsInKernelBNeverShowKernelAData) {
  Machine m(MachineConfig{.ram = 256 * kMiB, .seed = 13});
  m.Boot();
  WriteSecrets(m);
  ASSERT_TRUE(m.Kexec().ok());
  // Allocate everything kernel B has and look at it.
  uint64_t secret_bytes = 0;
  while (struct page* p = alloc_pages(GFP_KERNEL | __GFP_NOWARN, 0)) {
    const auto* bytes = static_cast<const uint8_t*>(page_address(p));
    for (uint64_t i = 0; i < PAGE_SIZE; i += 64) secret_bytes += bytes[i] == kSecret;
  }
  EXPECT_EQ(secret_bytes, 0u);
}

TEST(ScrubDeathTest, InaccessiblePolicyFaultsOnAStrayReadOfFreeMemory) {
  Machine m(
      MachineConfig{.ram = 512 * kMiB, .seed = 14, .scrub = mm::FreeMemoryPolicy::kInaccessible});
  m.Boot();
  struct folio* f = folio_alloc(GFP_KERNEL, 0);
  ASSERT_NE(f, nullptr);
  std::memset(folio_address(f), kSecret, PAGE_SIZE);
  const phys_addr_t pa = folio_phys(f);
  ASSERT_TRUE(m.Kexec().ok());
  // A handler that "forgot to preserve" this page dies at the read.
  EXPECT_DEATH({ [[maybe_unused]] volatile uint8_t v = *static_cast<uint8_t*>(phys_to_virt(pa)); },
               "");
  // Memory the new kernel allocates is accessible and zero.
  struct page* p = alloc_pages(GFP_KERNEL | __GFP_ZERO, 3);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(static_cast<uint8_t*>(page_address(p))[0], 0);
}

}  // namespace
}  // namespace khosim

#include "kho/kho_test_module.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/vmalloc.h"

namespace khosim::testing {
namespace {

// A simple position-dependent checksum (any change of any byte or of the
// folio order shows).
uint64_t Checksum(uint64_t csum, const uint8_t* p, uint64_t len) {
  for (uint64_t i = 0; i < len; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    csum = (csum ^ v) * 0x100000001b3ull + i;
  }
  return csum;
}

// Preserves the folios listed in |index| plus the index and the record.
bool PreserveAll(const std::string& name, uint64_t* index, uint32_t nr, uint64_t csum) {
  for (uint32_t i = 0; i < nr; ++i) {
    const unsigned order = index[i] & 0xfff;
    struct folio* f = pfn_folio(PHYS_PFN(index[i] & ~0xfffull));
    EXPECT_EQ(folio_order(f), order);
    if (kho_preserve_folio(f) != 0) return false;
  }
  auto* record = static_cast<KhoTestRecord*>(kho_alloc_preserve(sizeof(KhoTestRecord)));
  if (IS_ERR(record)) return false;
  std::snprintf(record->compatible, sizeof(record->compatible), "kho-test-v1");
  record->magic = kKhoTestMagic;
  record->nr_folios = nr;
  record->csum = csum;
  if (kho_preserve_vmalloc(index, reinterpret_cast<struct kho_vmalloc*>(record->folios_info)) !=
      0) {
    return false;
  }
  return kho_add_subtree(name.c_str(), record, sizeof(*record)) == 0;
}

}  // namespace

KhoTestSet PreserveTestSet(Machine& m, const std::string& name, uint64_t max_mem) {
  KhoTestSet set;
  std::vector<uint64_t> entries;
  while (set.bytes < max_mem) {
    const unsigned order = static_cast<unsigned>(m.RandomBelow(MAX_PAGE_ORDER + 1));
    struct folio* f = folio_alloc(GFP_KERNEL, order);
    if (f == nullptr) break;
    auto* p = static_cast<uint8_t*>(folio_address(f));
    for (uint64_t i = 0; i < folio_size(f); i += 8) {
      const uint64_t v = m.Random();
      std::memcpy(p + i, &v, 8);
    }
    set.csum = Checksum(set.csum, p, folio_size(f));
    entries.push_back(folio_phys(f) | order);
    set.bytes += folio_size(f);
  }
  set.nr_folios = static_cast<uint32_t>(entries.size());
  auto* index = static_cast<uint64_t*>(vmalloc(entries.size() * sizeof(uint64_t)));
  EXPECT_NE(index, nullptr);
  std::memcpy(index, entries.data(), entries.size() * sizeof(uint64_t));
  EXPECT_TRUE(PreserveAll(name, index, set.nr_folios, set.csum));
  return set;
}

KhoTestSet RestoreTestSet(Machine& m, const std::string& name, bool keep, bool* ok) {
  *ok = false;
  KhoTestSet set;
  phys_addr_t phys = 0;
  size_t size = 0;
  if (kho_retrieve_subtree(name.c_str(), &phys, &size) != 0) return set;
  if (size != sizeof(KhoTestRecord)) return set;
  auto* record = static_cast<KhoTestRecord*>(phys_to_virt(phys));
  if (std::strcmp(record->compatible, "kho-test-v1") != 0 || record->magic != kKhoTestMagic) {
    return set;
  }
  KhoTestRecord saved = *record;
  kho_restore_free(record);
  auto* index = static_cast<uint64_t*>(
      kho_restore_vmalloc(reinterpret_cast<const struct kho_vmalloc*>(saved.folios_info)));
  if (index == nullptr) return set;
  bool good = true;
  for (uint32_t i = 0; i < saved.nr_folios; ++i) {
    const unsigned order = index[i] & 0xfff;
    struct folio* f = kho_restore_folio(index[i] & ~0xfffull);
    if (f == nullptr || folio_order(f) != order) {
      good = false;
      break;
    }
    set.csum = Checksum(set.csum, static_cast<uint8_t*>(folio_address(f)), folio_size(f));
    set.bytes += folio_size(f);
    ++set.nr_folios;
    if (!keep) folio_put(f);
  }
  good = good && set.csum == saved.csum && set.nr_folios == saved.nr_folios;
  if (keep && good) {
    good = PreserveAll(name, index, saved.nr_folios, saved.csum);
  } else {
    vfree(index);
  }
  *ok = good;
  return set;
}

}  // namespace khosim::testing

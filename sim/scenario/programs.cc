// Built-in scenarios (see the header).
#include "khosim/scenario/programs.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/vmalloc.h"

namespace khosim::scenario {
namespace {

constexpr char kSubtree[] = "khosim-scenario";
constexpr uint32_t kRecordMagic = 0x53434e31;  // "SCN1"
// What kernel A fills the pages with that kernel B must not find again.
constexpr uint8_t kFill = 0x5a;

struct Record {
  uint32_t magic;
  uint32_t nr_folios;
  uint64_t checksum;
  uint64_t bytes;
  uint64_t unpreserved_pa;  // a folio written but deliberately not preserved
  abi::KhoVmalloc index;    // phys | order of every folio
};

uint64_t Mix(uint64_t h, const uint8_t* p, uint64_t len) {
  for (uint64_t i = 0; i < len; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    h = (h ^ v) * 0x100000001b3ull + i;
  }
  return h;
}

// Preserves a fresh data set; returns false (and says why) on any error.
bool PreserveSet(Machine& m, uint64_t bytes, const KhoProgramOptions& options, ProgramResult& r) {
  std::vector<uint64_t> index;
  uint64_t checksum = 0;
  uint64_t total = 0;
  while (total < bytes) {
    const unsigned order = static_cast<unsigned>(m.RandomBelow(MAX_PAGE_ORDER + 1));
    struct folio* f = folio_alloc(GFP_KERNEL, order);
    if (f == nullptr) break;
    auto* p = static_cast<uint8_t*>(folio_address(f));
    for (uint64_t i = 0; i < folio_size(f); i += 8) {
      const uint64_t v = m.Random();
      std::memcpy(p + i, &v, 8);
    }
    checksum = Mix(checksum, p, folio_size(f));
    if (options.skip_preserve_folio && index.empty()) {
      r.lines.push_back(absl::StrFormat("  folio 0 at 0x%x (order %d) deliberately not preserved",
                                        folio_phys(f), order));
    } else if (int err = kho_preserve_folio(f); err != 0) {
      r.Check(false, absl::StrCat("kho_preserve_folio: ", err));
      return false;
    }
    index.push_back(folio_phys(f) | order);
    total += folio_size(f);
  }
  auto* vindex = static_cast<uint64_t*>(vmalloc(index.size() * sizeof(uint64_t)));
  auto* record = static_cast<Record*>(kho_alloc_preserve(sizeof(Record)));
  struct folio* scratch_folio = folio_alloc(GFP_KERNEL, 0);
  if (vindex == nullptr || IS_ERR(record) || scratch_folio == nullptr) {
    r.Check(false, "allocation failed");
    return false;
  }
  std::memcpy(vindex, index.data(), index.size() * sizeof(uint64_t));
  std::memset(folio_address(scratch_folio), kFill, PAGE_SIZE);
  *record = Record{kRecordMagic, static_cast<uint32_t>(index.size()), checksum,
                   total,        folio_phys(scratch_folio),           {}};
  if (int err = kho_preserve_vmalloc(vindex, &record->index); err != 0) {
    r.Check(false, absl::StrCat("kho_preserve_vmalloc: ", err));
    return false;
  }
  if (int err = kho_add_subtree(kSubtree, record, sizeof(Record)); err != 0) {
    r.Check(false, absl::StrCat("kho_add_subtree: ", err));
    return false;
  }
  r.lines.push_back(absl::StrFormat("  preserved %d folios, %d KiB, checksum %016x", index.size(),
                                    total >> 10, checksum));
  return true;
}

// Words of the page at |pa| that still hold what the previous kernel
// wrote there (kFill in every byte). A whole word of it by chance is about
// 2^-64; a single byte of that value is not evidence (a page reused for
// pointers has them: a false loss the byte count once reported).
uint64_t SurvivingWords(phys_addr_t pa) {
  const auto* p = static_cast<const uint8_t*>(phys_to_virt(pa));
  uint64_t fill = 0;
  std::memset(&fill, kFill, sizeof(fill));
  uint64_t n = 0;
  for (uint64_t i = 0; i < PAGE_SIZE; i += sizeof(uint64_t)) {
    uint64_t word = 0;
    std::memcpy(&word, p + i, sizeof(word));
    n += word == fill;
  }
  return n;
}

void VerifySet(Machine& m, ProgramResult& r) {
  phys_addr_t phys = 0;
  size_t size = 0;
  if (int err = kho_retrieve_subtree(kSubtree, &phys, &size); err != 0) {
    r.Check(false, absl::StrCat("kho_retrieve_subtree: ", err));
    return;
  }
  Record record;
  std::memcpy(&record, phys_to_virt(phys), sizeof(record));
  kho_restore_free(phys_to_virt(phys));
  r.Check(record.magic == kRecordMagic, "record magic");
  auto* index = static_cast<uint64_t*>(kho_restore_vmalloc(&record.index));
  r.Check(index != nullptr, "kho_restore_vmalloc of the index");
  if (index == nullptr) return;
  uint64_t checksum = 0;
  uint64_t total = 0;
  for (uint32_t i = 0; i < record.nr_folios; ++i) {
    struct folio* f = kho_restore_folio(index[i] & ~0xfffull);
    if (f == nullptr || folio_order(f) != (index[i] & 0xfff)) {
      r.Check(false, absl::StrFormat("folio %d did not restore at its order", i));
      return;
    }
    checksum = Mix(checksum, static_cast<uint8_t*>(folio_address(f)), folio_size(f));
    total += folio_size(f);
    folio_put(f);
  }
  vfree(index);
  r.Check(checksum == record.checksum && total == record.bytes,
          absl::StrFormat("restored %d folios, %d KiB, checksum %016x", record.nr_folios,
                          total >> 10, checksum));
  const uint64_t survived = SurvivingWords(record.unpreserved_pa);
  r.Check(survived == 0, absl::StrFormat("unpreserved folio: %d of its %d words survived", survived,
                                         PAGE_SIZE / sizeof(uint64_t)));
  r.Check(m.kernel().kho().UnrestoredBlocks() == 1,
          absl::StrFormat("%d preserved blocks left unclaimed (only the root FDT may be)",
                          m.kernel().kho().UnrestoredBlocks()));
}

std::string KernelLine(Machine& m) {
  Kernel& k = m.kernel();
  return absl::StrFormat(
      "  generation %d, %s, %d MiB free, %d WARNs", k.generation(), BootPhaseName(k.phase()),
      k.mm().pages().FreePages() * k.ctx().geometry().page_size() >> 20, k.WarnCount());
}

// The options of kexec |round| (1-based).
KexecOptions NextKernel(const std::vector<std::string>& cmdlines, int round) {
  KexecOptions options;
  if (round >= 1 && static_cast<size_t>(round) <= cmdlines.size()) {
    options.cmdline = cmdlines[round - 1];
  }
  return options;
}

}  // namespace

void ProgramResult::Check(bool ok, std::string what) {
  lines.push_back(absl::StrCat(ok ? "  ok    " : "  FAIL  ", what));
  passed = passed && ok;
}

std::vector<std::string> ProgramNames() { return {"kho", "kexec-scrub"}; }

ProgramResult RunKexecScrubProgram(Machine& m, int kexecs,
                                   const std::vector<std::string>& kexec_cmdlines) {
  ProgramResult r;
  m.Boot();
  r.lines.push_back("cold boot");
  r.lines.push_back(KernelLine(m));
  for (int round = 1; round <= kexecs; ++round) {
    std::vector<phys_addr_t> written;
    for (int i = 0; i < 64; ++i) {
      struct folio* f = folio_alloc(GFP_KERNEL, static_cast<unsigned>(m.RandomBelow(4)));
      if (f == nullptr) break;
      std::memset(folio_address(f), kFill, folio_size(f));
      written.push_back(folio_phys(f));
    }
    const absl::Status s = m.Kexec(NextKernel(kexec_cmdlines, round));
    r.Check(s.ok(), absl::StrCat("kexec ", round, ": ", s.ToString()));
    if (!s.ok()) return r;
    uint64_t survived = 0;
    for (phys_addr_t pa : written) survived += SurvivingWords(pa);
    r.Check(survived == 0, absl::StrFormat("%d folios of the previous boot: %d words survived",
                                           written.size(), survived));
    r.lines.push_back(KernelLine(m));
  }
  return r;
}

ProgramResult RunKhoProgram(Machine& m, int kexecs, uint64_t bytes_per_boot,
                            KhoProgramOptions options) {
  ProgramResult r;
  m.Boot();
  r.lines.push_back("cold boot");
  r.lines.push_back(KernelLine(m));
  r.Check(kho_is_enabled(), "KHO enabled (kho=on)");
  if (!r.passed) return r;
  const kho::KhoDebugView view = m.kernel().kho().DebugView();
  for (size_t i = 0; i < view.scratch_phys.size(); ++i) {
    r.lines.push_back(absl::StrFormat("  boot memory %d: 0x%x + %d MiB", i, view.scratch_phys[i],
                                      view.scratch_len[i] >> 20));
  }
  if (!PreserveSet(m, bytes_per_boot, options, r)) return r;
  for (int round = 1; round <= kexecs; ++round) {
    const absl::Status s = m.Kexec(NextKernel(options.kexec_cmdlines, round));
    r.Check(s.ok(), absl::StrCat("kexec ", round, ": ", s.ToString()));
    if (!s.ok()) return r;
    r.lines.push_back(KernelLine(m));
    r.Check(is_kho_boot(), absl::StrFormat("KHO boot, %d blocks retrieved, kexec count %d",
                                           m.kernel().kho().retrieved_blocks(),
                                           m.kernel().kho().incoming_kexec_count() + 1));
    VerifySet(m, r);
    if (round < kexecs && !PreserveSet(m, bytes_per_boot, options, r)) return r;
  }
  return r;
}

}  // namespace khosim::scenario

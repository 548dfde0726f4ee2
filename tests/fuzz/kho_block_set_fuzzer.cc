// kho_block_set_fuzzer: BlockSet::Restore (kho_block_set_restore) on block
// chains that the input corrupted, on a real Machine.
//
// Kernel A (a small machine booted with kho=on, 4, 16 or 64 KiB pages)
// builds two genuine block sets with the library's own writer (Grow, then
// the iterator's ReserveEntry), entry size and entry counts taken from the
// input, and publishes both heads in a blob behind a KHO subtree. It also
// leaves copies of the last block where a pointer could be sent: in a page
// nobody preserved, and in both pages of a preserved order-1 block. The
// input's patch records (container_fuzz_format.h) then overwrite bytes of
// the blocks and of the blob: raw bytes, counts around the capacity, and
// pointers to other blocks (cycles, self-loops, blocks shared by both
// sets), to the copies, below RAM, into the hole, past RAM, unaligned.
//
// Kernel B restores the primary set (and, by the mode, the secondary one,
// before or after the primary's pages were given back) and checks the
// header's contract against an independent model of the chain:
//   - Restore returns 0 exactly when the chain is valid: every block
//     address page-aligned RAM and the head of an order-0 block the previous
//     kernel preserved and nobody restored, no block reached twice, at most
//     KHO_MAX_BLOCKS blocks, every count in 1..capacity (of kernel B's entry
//     size); otherwise -EINVAL and an empty set;
//   - on success: Validate(), the blocks are the chain, the iterator yields
//     exactly the bytes kernel A left in each block (honouring each count),
//     and an untouched chain reads back entry for entry;
//   - when the chain's shape is valid but a count is not, every block is
//     freed; in all cases no page is lost: free pages plus pages still
//     carrying the KHO tag stay constant across restores and destroys;
//   - an incoming set never grows (-EINVAL); no WARN unless two sets were
//     made to own the same block;
//   - the allocator and memblock stay valid; optionally B hands what it read
//     on in a fresh set and kernel C must read exactly that.
// A KernelPanic is a finding: nothing on this path documents one.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unordered_set>
#include <vector>

#include "container_fuzz_format.h"
#include "container_fuzz_machine.h"
#include "fuzz_util.h"
#include "khosim/abi/block.h"
#include "khosim/kho/block_set.h"
#include "khosim/kho/kho.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace {

namespace fz = khosim::fuzz;
using fz::BlockFuzzBlob;
using fz::InputReader;
using khosim::PhysAddr;
using khosim::abi::KhoBlockHeader;
using khosim::kho::BlockSet;

constexpr uint64_t kHeaderBytes = sizeof(KhoBlockHeader);

// Long chains (kBlockModeLongChain) cost about half a second each, so the
// libFuzzer binary ignores the mode unless KHOSIM_FUZZ_LONG_CHAINS is set
// (set it to reproduce such an input); the corpus replay, compiled with
// LLVMFuzzerTestOneInput renamed, always honours it.
bool LongChainsAllowed() {
#ifdef LLVMFuzzerTestOneInput
  return true;
#else
  static const bool allowed = std::getenv("KHOSIM_FUZZ_LONG_CHAINS") != nullptr;
  return allowed;
#endif
}

// Kernel A's entry |entry| of set |set|: byte j is EntryKey(set, entry) ^
// (7 * j), or the key alone in every byte (long chains).
uint8_t EntryKey(uint64_t set, uint64_t entry) {
  return static_cast<uint8_t>(0x5a ^ (set * 0x3d) ^ (entry * 131) ^ (entry >> 7));
}
void WriteEntry(uint8_t* e, uint64_t es, uint64_t set, uint64_t entry, bool pattern) {
  const uint8_t key = EntryKey(set, entry);
  if (!pattern) {
    std::memset(e, key, es);
    return;
  }
  for (uint64_t j = 0; j < es; ++j) e[j] = static_cast<uint8_t>(key ^ (7 * j));
}

const KhoBlockHeader* Header(uint64_t pa) {
  return static_cast<const KhoBlockHeader*>(phys_to_virt(pa));
}

// Kernel A: a set of |count| entries written by the library's writer; the
// blocks in chain order.
std::vector<uint64_t> BuildSet(BlockSet& bs, uint64_t set_id, uint64_t count, bool pattern) {
  KHOSIM_FUZZ_CHECK(bs.Grow(count) == 0);
  BlockSet::Iterator it(bs);
  const uint64_t es = bs.entry_size();
  for (uint64_t i = 0; i < count; ++i) {
    auto* e = static_cast<uint8_t*>(it.ReserveEntry());
    KHOSIM_FUZZ_CHECK(e != nullptr);
    WriteEntry(e, es, set_id, i, pattern);
  }
  KHOSIM_FUZZ_CHECK(bs.Validate(count).ok());
  std::vector<uint64_t> blocks;
  for (uint64_t pa = bs.head_pa(); pa != 0; pa = Header(pa)->next) blocks.push_back(pa);
  KHOSIM_FUZZ_CHECK(blocks.size() == bs.nblocks());
  return blocks;
}

// What Restore must do with a chain, decided without the library: walk it
// reading only pages proved to be unrestored order-0 preserved heads.
enum class Verdict { kOk, kShape, kCount };
struct ChainModel {
  Verdict verdict = Verdict::kOk;
  std::vector<uint64_t> pages;  // the chain (a prefix of it for kShape)
};

ChainModel ModelChain(khosim::Machine& m, uint64_t head, uint64_t capacity) {
  ChainModel model;
  const uint64_t page = PAGE_SIZE;
  const khosim::kho::Kho& kho = m.kernel().kho();
  std::unordered_set<uint64_t> seen;
  for (uint64_t pa = head; pa != 0; pa = Header(pa)->next) {
    unsigned order = 0;
    if (pa % page != 0 || !m.memory().IsRam(PhysAddr(pa), page) ||
        !kho.IsPreservedHead(PhysAddr(pa), &order) || order != 0 || !seen.insert(pa).second ||
        model.pages.size() == khosim::abi::kKhoMaxBlocks) {
      model.verdict = Verdict::kShape;
      return model;
    }
    model.pages.push_back(pa);
  }
  for (uint64_t pa : model.pages) {
    const uint64_t count = Header(pa)->count;
    if (count == 0 || count > capacity) {
      model.verdict = Verdict::kCount;
      break;
    }
  }
  return model;
}

struct SetResult {
  int rc = 1;  // 1: not restored
  Verdict verdict = Verdict::kOk;
  std::vector<uint64_t> pages;
  std::vector<uint8_t> entries;  // every entry read, concatenated
  uint64_t nentries = 0;
};

// Kernel B: restores |head| into |bs| and checks everything but the page
// accounting.
SetResult RestoreAndCheck(khosim::Machine& m, BlockSet& bs, uint64_t head,
                          const fz::PageSnapshots& snapshots) {
  SetResult r;
  const ChainModel model = ModelChain(m, head, bs.count_per_block());
  r.verdict = model.verdict;
  r.pages = model.pages;
  r.rc = bs.Restore(head);
  KHOSIM_FUZZ_CHECK(r.rc == 0 || r.rc == -EINVAL);
  KHOSIM_FUZZ_CHECK((r.rc == 0) == (model.verdict == Verdict::kOk));
  KHOSIM_FUZZ_CHECK(bs.incoming());
  if (r.rc != 0) {
    KHOSIM_FUZZ_CHECK(bs.empty() && bs.nblocks() == 0 && bs.head_pa() == 0);
    KHOSIM_FUZZ_CHECK(bs.EntryCount() == 0);
    if (model.verdict == Verdict::kCount) {
      // The chain could be walked: all of it was given back.
      for (uint64_t pa : model.pages) {
        KHOSIM_FUZZ_CHECK(!m.kernel().kho().IsPreservedHead(PhysAddr(pa)));
        KHOSIM_FUZZ_CHECK(
            m.kernel().mm().pages().IsFree(m.kernel().mm().geometry().PhysToPfn(PhysAddr(pa))));
      }
    }
    return r;
  }
  KHOSIM_FUZZ_CHECK(bs.nblocks() == model.pages.size());
  KHOSIM_FUZZ_CHECK(bs.head_pa() == head);
  KHOSIM_FUZZ_CHECK(bs.Validate(bs.EntryCount()).ok());
  const uint64_t page = PAGE_SIZE;
  const uint64_t es = bs.entry_size();
  BlockSet::Iterator it(bs);
  for (uint64_t pa : model.pages) {
    // Kernel B sees exactly the bytes kernel A left.
    if (const uint8_t* snap = snapshots.At(pa, 0); snap != nullptr) {
      KHOSIM_FUZZ_CHECK(std::memcmp(phys_to_virt(pa), snap, page) == 0);
    }
    const uint64_t count = Header(pa)->count;
    for (uint64_t i = 0; i < count; ++i) {
      auto* e = static_cast<uint8_t*>(it.ReadEntry());
      KHOSIM_FUZZ_CHECK(e == static_cast<uint8_t*>(phys_to_virt(pa)) + kHeaderBytes + i * es);
      r.entries.insert(r.entries.end(), e, e + es);
      ++r.nentries;
    }
  }
  KHOSIM_FUZZ_CHECK(it.ReadEntry() == nullptr);
  KHOSIM_FUZZ_CHECK(r.nentries == bs.EntryCount());
  return r;
}

// An untouched set reads back exactly what kernel A wrote.
void CheckPristine(const SetResult& r, const std::vector<uint64_t>& blocks, uint64_t set_id,
                   uint64_t count, uint64_t es, bool pattern) {
  KHOSIM_FUZZ_CHECK(r.rc == 0);
  KHOSIM_FUZZ_CHECK(r.pages == blocks);
  KHOSIM_FUZZ_CHECK(r.nentries == count);
  std::vector<uint8_t> want(es);
  for (uint64_t i = 0; i < count; ++i) {
    WriteEntry(want.data(), es, set_id, i, pattern);
    KHOSIM_FUZZ_CHECK(std::memcmp(r.entries.data() + i * es, want.data(), es) == 0);
  }
}

bool Intersect(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  const std::unordered_set<uint64_t> set(a.begin(), a.end());
  return std::any_of(b.begin(), b.end(), [&](uint64_t x) { return set.count(x) != 0; });
}

// Kernel B hands what it read on in a fresh set; kernel C reads it back.
void KexecAgain(khosim::Machine& m, uint64_t es, const SetResult& read) {
  BlockSet out(es);
  KHOSIM_FUZZ_CHECK(out.Grow(read.nentries) == 0);
  BlockSet::Iterator it(out);
  for (uint64_t i = 0; i < read.nentries; ++i) {
    void* e = it.ReserveEntry();
    KHOSIM_FUZZ_CHECK(e != nullptr);
    std::memcpy(e, read.entries.data() + i * es, es);
  }
  KHOSIM_FUZZ_CHECK(out.Validate(read.nentries).ok());
  auto* blob = static_cast<BlockFuzzBlob*>(kho_alloc_preserve(sizeof(BlockFuzzBlob)));
  KHOSIM_FUZZ_CHECK(!IS_ERR_OR_NULL(blob));
  *blob = BlockFuzzBlob{out.head_pa(), 0, fz::kBlockBlobMagic};
  KHOSIM_FUZZ_CHECK(kho_add_subtree(fz::kBlockSubtree, blob, sizeof(*blob)) == 0);
  const uint64_t nblocks = out.nblocks();

  KHOSIM_FUZZ_CHECK(m.Kexec().ok());
  phys_addr_t phys = 0;
  size_t size = 0;
  KHOSIM_FUZZ_CHECK(kho_retrieve_subtree(fz::kBlockSubtree, &phys, &size) == 0);
  struct folio* f = kho_restore_folio(phys);
  KHOSIM_FUZZ_CHECK(f != nullptr);
  const uint64_t head = static_cast<const BlockFuzzBlob*>(phys_to_virt(phys))->primary_head;
  folio_put(f);
  BlockSet in(es);
  KHOSIM_FUZZ_CHECK(in.Restore(head) == 0);
  KHOSIM_FUZZ_CHECK(in.nblocks() == nblocks);
  KHOSIM_FUZZ_CHECK(in.Validate(read.nentries).ok());
  BlockSet::Iterator rit(in);
  for (uint64_t i = 0; i < read.nentries; ++i) {
    const void* e = rit.ReadEntry();
    KHOSIM_FUZZ_CHECK(e != nullptr && std::memcmp(e, read.entries.data() + i * es, es) == 0);
  }
  KHOSIM_FUZZ_CHECK(rit.ReadEntry() == nullptr);
  in.Destroy();
  // Only kernel B's root FDT is left unclaimed.
  KHOSIM_FUZZ_CHECK(m.kernel().kho().UnrestoredBlocks() == 1);
}

void Run(const uint8_t* data, size_t size) {
  InputReader in(data, size);
  const uint8_t mode = in.U8();
  const uint8_t entry_sel = in.U8();
  const uint16_t primary_sel = in.U16();
  const uint8_t secondary_sel = in.U8();
  const uint8_t other_sel = in.U8();
  const uint64_t page_size = fz::FuzzPageSize(mode);
  const bool long_chain = (mode & fz::kBlockModeLongChain) != 0 &&
                          other_sel == fz::kBlockLongChainKey && LongChainsAllowed();
  const bool secondary = (mode & (fz::kBlockModeSecondary | fz::kBlockModeSecondaryLate)) != 0;
  const bool late = (mode & fz::kBlockModeSecondaryLate) != 0;

  absl::StatusOr<std::unique_ptr<khosim::Machine>> made =
      khosim::Machine::Create(fz::ContainerFuzzMachine(mode));
  KHOSIM_FUZZ_CHECK(made.ok());
  khosim::Machine& m = **made;
  m.Boot();
  KHOSIM_FUZZ_CHECK(kho_is_enabled());

  // ---- kernel A
  const uint64_t es_a =
      long_chain ? page_size - kHeaderBytes : fz::BlockEntrySize(entry_sel, page_size);
  const uint64_t es_b = (mode & fz::kBlockModeOtherEntrySize) != 0 && !long_chain
                            ? fz::BlockEntrySize(other_sel, page_size)
                            : es_a;
  const uint64_t cap_a = khosim::abi::KhoBlockEntriesPerBlock(page_size, es_a);
  const uint64_t cap_b = khosim::abi::KhoBlockEntriesPerBlock(page_size, es_b);
  const uint64_t n1 = long_chain ? fz::kBlockLongChainBlocks
                                 : primary_sel % (cap_a * fz::BlockMaxPrimaryBlocks(page_size) + 1);
  const uint64_t n2 = secondary_sel % (cap_a * fz::BlockMaxSecondaryBlocks(page_size) + 1);
  auto* blob = static_cast<BlockFuzzBlob*>(kho_alloc_preserve(sizeof(BlockFuzzBlob)));
  KHOSIM_FUZZ_CHECK(!IS_ERR_OR_NULL(blob));
  const uint64_t blob_pa = virt_to_phys(blob);
  std::vector<uint64_t> primary_blocks;
  std::vector<uint64_t> secondary_blocks;
  {
    BlockSet a1(es_a);
    BlockSet a2(es_a);
    primary_blocks = BuildSet(a1, 1, n1, !long_chain);
    secondary_blocks = BuildSet(a2, 2, n2, true);
    *blob = BlockFuzzBlob{a1.head_pa(), a2.head_pa(), fz::kBlockBlobMagic};
  }
  KHOSIM_FUZZ_CHECK(kho_add_subtree(fz::kBlockSubtree, blob, sizeof(*blob)) == 0);
  const uint64_t copy_of = !primary_blocks.empty()     ? primary_blocks.back()
                           : !secondary_blocks.empty() ? secondary_blocks.back()
                                                       : blob_pa;

  std::vector<uint64_t> pages = primary_blocks;
  pages.insert(pages.end(), secondary_blocks.begin(), secondary_blocks.end());
  std::vector<uint64_t> refs = pages;
  pages.push_back(blob_pa);
  const std::vector<uint64_t> specials = fz::MakeSpecialRefs(m, blob_pa, copy_of);
  refs.insert(refs.end(), specials.begin(), specials.end());
  std::vector<uint64_t> numbers(fz::kBlockNumbers);
  numbers[fz::kBlockNumZero] = 0;
  numbers[fz::kBlockNumOne] = 1;
  numbers[fz::kBlockNumCapMinus1] = cap_a - 1;
  numbers[fz::kBlockNumCap] = cap_a;
  numbers[fz::kBlockNumCapPlus1] = cap_a + 1;
  numbers[fz::kBlockNumCapB] = cap_b;
  numbers[fz::kBlockNumCapBPlus1] = cap_b + 1;
  numbers[fz::kBlockNumAllOnes] = ~uint64_t{0};
  numbers[fz::kBlockNum2Pow32] = uint64_t{1} << 32;
  numbers[fz::kBlockNum2Pow63] = uint64_t{1} << 63;
  numbers[fz::kBlockNumPageSize] = page_size;
  numbers[fz::kBlockNumMaxBlocksPlus1] = khosim::abi::kKhoMaxBlocks + 1;
  fz::ContainerPatcher patcher(pages, refs, numbers, page_size);
  patcher.Apply(in);

  fz::PageSnapshots snapshots;
  if (!long_chain) {
    for (uint64_t pa : pages) snapshots.Take(pa, page_size);
    for (fz::RefSpecial s : {fz::kRefOrder1Head, fz::kRefOrder1Tail}) {
      snapshots.Take(specials[s], page_size);
    }
  }
  const bool primary_pristine =
      !patcher.Changed(blob_pa, offsetof(BlockFuzzBlob, primary_head), 8) &&
      std::none_of(primary_blocks.begin(), primary_blocks.end(),
                   [&](uint64_t pa) { return patcher.PageChanged(pa); });
  const bool secondary_pristine =
      !patcher.Changed(blob_pa, offsetof(BlockFuzzBlob, secondary_head), 8) &&
      std::none_of(secondary_blocks.begin(), secondary_blocks.end(),
                   [&](uint64_t pa) { return patcher.PageChanged(pa); });
  fz::PreservedLedger ledger;
  ledger.Record(m.kernel().kho());

  // ---- kernel B
  KHOSIM_FUZZ_CHECK(m.Kexec().ok());
  KHOSIM_FUZZ_CHECK(is_kho_boot());
  phys_addr_t phys = 0;
  size_t blob_size = 0;
  KHOSIM_FUZZ_CHECK(kho_retrieve_subtree(fz::kBlockSubtree, &phys, &blob_size) == 0);
  KHOSIM_FUZZ_CHECK(phys == blob_pa && blob_size == sizeof(BlockFuzzBlob));
  struct folio* blob_folio = kho_restore_folio(phys);
  KHOSIM_FUZZ_CHECK(blob_folio != nullptr);
  BlockFuzzBlob heads;
  std::memcpy(&heads, phys_to_virt(phys), sizeof(heads));
  folio_put(blob_folio);

  const fz::PageAccount before = fz::PageAccount::Take(m, ledger);
  const uint64_t warns_before = m.kernel().WarnCount();
  BlockSet s1(es_b);
  BlockSet s2(es_b);
  SetResult r1 = RestoreAndCheck(m, s1, heads.primary_head, snapshots);
  if (primary_pristine && es_b == es_a) CheckPristine(r1, primary_blocks, 1, n1, es_a, !long_chain);
  SetResult r2;
  bool shared = false;
  if (secondary && !late) {
    r2 = RestoreAndCheck(m, s2, heads.secondary_head, snapshots);
    shared = Intersect(r1.pages, r2.pages) &&
             (r1.rc == 0 || r2.rc == 0 || r1.verdict == Verdict::kCount ||
              r2.verdict == Verdict::kCount);
  }
  s1.Destroy();
  if (r1.rc == 0) {
    for (uint64_t pa : r1.pages) KHOSIM_FUZZ_CHECK(!m.kernel().kho().IsPreservedHead(PhysAddr(pa)));
  }
  if (late) r2 = RestoreAndCheck(m, s2, heads.secondary_head, snapshots);
  if (secondary && secondary_pristine && es_b == es_a && r2.verdict == Verdict::kOk) {
    CheckPristine(r2, secondary_blocks, 2, n2, es_a, true);
  }
  if (secondary && secondary_pristine && es_b == es_a && !late && r1.verdict != Verdict::kCount) {
    KHOSIM_FUZZ_CHECK(r2.rc == 0);
  }
  s2.Destroy();
  const fz::PageAccount after = fz::PageAccount::Take(m, ledger);
  // No page lost: what stopped being preserved is free again.
  KHOSIM_FUZZ_CHECK(after.FreedSince(before) == after.RestoredSince(before));
  // Restores and destroys WARN only when two sets were made to own a block.
  if (!shared) KHOSIM_FUZZ_CHECK(m.kernel().WarnCount() == warns_before);
  // An incoming set never grows.
  KHOSIM_FUZZ_CHECK(s1.Grow(1) == -EINVAL && s1.empty());
  if (secondary) KHOSIM_FUZZ_CHECK(s2.Grow(r2.nentries + 1) == -EINVAL && s2.empty());
  KHOSIM_FUZZ_CHECK(m.kernel().mm().memblock().Validate().ok());
  KHOSIM_FUZZ_CHECK(m.kernel().mm().pages().Validate().ok());

  if (fz::Verbose()) {
    std::fprintf(stderr,
                 "[block_set] page %llu es %llu/%llu n %llu/%llu changed %zu: primary rc %d "
                 "verdict %d blocks %zu entries %llu; secondary rc %d verdict %d%s%s\n",
                 static_cast<unsigned long long>(page_size), static_cast<unsigned long long>(es_a),
                 static_cast<unsigned long long>(es_b), static_cast<unsigned long long>(n1),
                 static_cast<unsigned long long>(n2), patcher.changed_bytes(), r1.rc,
                 static_cast<int>(r1.verdict), r1.pages.size(),
                 static_cast<unsigned long long>(r1.nentries), r2.rc, static_cast<int>(r2.verdict),
                 late ? " (late)" : "", shared ? " shared" : "");
  }
  if ((mode & fz::kBlockModeKexecAgain) != 0) KexecAgain(m, es_b, r1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  KHOSIM_FUZZ_NO_PANIC(Run(data, size));
  return 0;
}

// khosim_fuzz_seedgen: writes the seed corpus of the KHO fuzz targets.
//
//   khosim_fuzz_seedgen <corpus dir>     (e.g. tests/fuzz/corpus)
//
// Run by hand when a target's input format changes; the output is checked
// in. Every seed is a valid or nearly valid input built with the library's
// own writers, so the fuzzers start from deep inside the parsers.
#include <libfdt.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "container_fuzz_format.h"
#include "incoming_fuzz_format.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/kho/kho_fdt.h"
#include "khosim/kho/radix_tree.h"
#include "luo_fuzz_format.h"
#include "radix_fuzz_memory.h"

namespace {

namespace fs = std::filesystem;
namespace fz = khosim::fuzz;
namespace kho = khosim::kho;
using Bytes = std::vector<uint8_t>;

fs::path g_root;

void Write(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

void PutU16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void PutU64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// ---------------------------------------------------------------------------
// kho_fdt_fuzzer

struct Sub {
  std::string name;
  uint64_t phys;
  uint64_t size;
};

// A root FDT as kernel A leaves it: open over the whole 4 KiB page.
Bytes RootPage(const char* compat, uint64_t map, const std::vector<Sub>& subs) {
  alignas(8) static uint8_t page[4096];
  std::memset(page, 0, sizeof(page));
  if (kho::CreateRootFdt(page, sizeof(page), compat, map) != 0) std::abort();
  for (const Sub& s : subs) {
    if (kho::AddSubtree(page, s.name, s.phys, s.size) != 0) std::abort();
  }
  return Bytes(page, page + sizeof(page));
}

// The same tree packed: totalsize is the tree's real size.
Bytes Packed(Bytes page) {
  if (fdt_pack(page.data()) != 0) std::abort();
  page.resize(fdt_totalsize(page.data()));
  return page;
}

void FdtSeeds() {
  const std::string t = "kho_fdt_fuzzer";
  const char* v4 = khosim::abi::kKhoFdtCompatible;
  const std::vector<Sub> typical = {
      {khosim::abi::kKexecMetadataName, 0x5000000, sizeof(khosim::abi::KexecMetadata)},
      {"LUO", 0x5001000, 0x1000},
      {"memfd", 0x5002000, 0x200},
      // Added second, "foo@1" comes first in document order and is what a
      // lookup of "foo" finds.
      {"foo", 0x5004000, 0x20},
      {"foo@1", 0x5003000, 0x10},
  };
  Write(t, "root-page-typical", RootPage(v4, 0x4000000, typical));
  Write(t, "root-packed-typical", Packed(RootPage(v4, 0x4000000, typical)));
  Write(t, "root-packed-empty", Packed(RootPage(v4, 0x4000000, {})));
  Write(t, "root-packed-v3", Packed(RootPage(khosim::abi::kKhoCompatV3, 0x4000000, typical)));
  // Name taken from the tail: "LUO" then its length.
  Bytes named = Packed(RootPage(v4, 0x4000000, typical));
  for (char c : std::string("LUO")) named.push_back(static_cast<uint8_t>(c));
  named.push_back(3);
  Write(t, "root-packed-tail-name-LUO", named);

  // Children with malformed properties, built with libfdt directly.
  Bytes odd = RootPage(v4, 0x4000000, {{"kexec-metadata", 0x5000000, 73}});
  void* fdt = odd.data();
  int node = fdt_add_subnode(fdt, 0, "short-data");
  const uint32_t four = 0x1234;
  fdt_setprop(fdt, node, khosim::abi::kPropPreservedData, &four, sizeof(four));
  node = fdt_add_subnode(fdt, 0, "no-size");
  const uint64_t phys = 0x6000000;
  fdt_setprop(fdt, node, khosim::abi::kPropPreservedData, &phys, sizeof(phys));
  node = fdt_add_subnode(fdt, 0, "LUO");
  fdt_setprop(fdt, node, khosim::abi::kPropBlobSize, &phys, sizeof(phys));
  Write(t, "root-packed-odd-children", Packed(odd));

  // Known findings (README.md): a reservation map that is unaligned and
  // overlaps the structure block validates, yet libfdt's writers refuse the
  // layout, so RemoveSubtree finds the child and cannot delete it.
  Bytes misordered = Packed(RootPage(v4, 0x4000000, typical));
  misordered[16 + 3] = 41;  // off_mem_rsvmap = 41
  Write(t, "finding-rsvmap-unaligned-overlaps-struct", misordered);
  // A header version above 17 validates; an AddSubtree that fails with
  // -EEXIST ("LUO", the name in the tail) still rewrites it to 17.
  Bytes v18 = named;
  v18[20 + 3] = 18;
  Write(t, "finding-version-18-eexist-rewrites-header", v18);

  // A full page: every add beyond this fails with -ENOMEM.
  std::vector<Sub> many;
  for (int i = 0; i < 40; ++i) {
    many.push_back({"subsystem-" + std::to_string(i), 0x7000000 + uint64_t(i) * 0x1000, 64});
  }
  Write(t, "root-page-many", RootPage(v4, 0x4000000, many));
}

// ---------------------------------------------------------------------------
// kho_radix_walk_fuzzer

// A tree of `keys` built by RadixTree itself in fake pages 0, 1, 2, ...;
// the root is page 0.
Bytes RadixImage(uint8_t flags, uint64_t extra_key,
                 const std::vector<std::pair<uint64_t, unsigned>>& blocks) {
  const unsigned shift = fz::RadixPageShift(flags);
  fz::FuzzNodeMemory memory(shift, 0, fz::kRadixMaxPages);
  kho::RadixTree tree(kho::RadixGeometry::For(shift), memory);
  if (tree.Init() != 0) std::abort();
  for (const auto& [pa, order] : blocks) {
    if (tree.AddBlock(khosim::PhysAddr(pa), order) != 0) std::abort();
  }
  if (!tree.Validate().ok()) std::abort();
  const size_t used = memory.allocs();
  const size_t offset = (flags & 4) != 0 ? memory.page_size() - fz::kRadixChunk : 0;
  Bytes b;
  b.push_back(flags);
  PutU64(b, 0);  // root: page 0
  PutU64(b, extra_key);
  for (size_t i = 0; i < used; ++i) {
    const uint8_t* page = memory.PageBytes(i);
    // Only the chunk the fuzzer fills may hold data.
    for (uint64_t j = 0; j < memory.page_size(); ++j) {
      if (page[j] != 0 && (j < offset || j >= offset + fz::kRadixChunk)) std::abort();
    }
    b.insert(b.end(), page + offset, page + offset + fz::kRadixChunk);
  }
  // Trailing all-zero pages cost nothing to describe: drop them.
  while (b.size() > fz::kRadixHeader && b.back() == 0) b.pop_back();
  return b;
}

void RadixSeeds() {
  const std::string t = "kho_radix_walk_fuzzer";
  const kho::RadixGeometry g4 = kho::RadixGeometry::For(12);
  const uint64_t extra4 = kho::EncodeKey(g4, khosim::PhysAddr(0x300000), 0);
  Write(t, "tree-4k-one-block", RadixImage(0, extra4, {{0x200000, 0}}));
  Write(t, "tree-4k-mixed-orders",
        RadixImage(0, extra4,
                   {{0x1000, 0},
                    {0x200000, 0},
                    {0x7fff000, 0},
                    {0x3000000, 0},
                    {0x10000000, 0},
                    {0x400000, 9}}));
  Write(t, "tree-4k-empty", RadixImage(0, extra4, {}));
  const kho::RadixGeometry g16 = kho::RadixGeometry::For(14);
  Write(t, "tree-16k",
        RadixImage(1, kho::EncodeKey(g16, khosim::PhysAddr(0x300000), 0),
                   {{0x4000, 0}, {0x200000, 0}, {0x1000000, 4}}));
  const kho::RadixGeometry g64 = kho::RadixGeometry::For(16);
  Write(t, "tree-64k",
        RadixImage(2, kho::EncodeKey(g64, khosim::PhysAddr(0x300000), 0),
                   {{0x10000, 0}, {0x400000, 2}, {0x20000000, 0}}));

  // Hostile shapes: the root pointing at itself, and two slots sharing a
  // child.
  Bytes cycle;
  cycle.push_back(0);
  PutU64(cycle, 0);
  PutU64(cycle, extra4);
  Bytes page(fz::kRadixChunk, 0);
  std::memcpy(page.data() + 2 * 8, &fz::kRadixBase, 8);
  cycle.insert(cycle.end(), page.begin(), page.end());
  Write(t, "hostile-4k-root-cycle", cycle);

  Bytes shared;
  shared.push_back(0);
  PutU64(shared, 0);
  PutU64(shared, extra4);
  Bytes root(fz::kRadixChunk, 0);
  const uint64_t child = fz::kRadixBase + 4096;
  std::memcpy(root.data() + 2 * 8, &child, 8);
  std::memcpy(root.data() + 3 * 8, &child, 8);
  shared.insert(shared.end(), root.begin(), root.end());
  Write(t, "hostile-4k-shared-child", shared);
}

// ---------------------------------------------------------------------------
// kho_incoming_fuzzer

void IncomingSeeds() {
  const std::string t = "kho_incoming_fuzzer";
  const uint8_t large = fz::kIncomingLargeArea;
  for (uint8_t target = 0; target < fz::kIncomingTargets; ++target) {
    Write(t, "pristine-target-" + std::to_string(target), Bytes{target, 0});
  }
  Write(t, "pristine-large-first-chunk", Bytes{static_cast<uint8_t>(fz::kFirstChunk | large), 0});
  Write(t, "pristine-large-last-chunk", Bytes{static_cast<uint8_t>(fz::kLastChunk | large), 0});
  Write(t, "pristine-radix-node-3-kexec-twice",
        Bytes{static_cast<uint8_t>(fz::kRadixNode | fz::kIncomingKexecAgain), 3});

  auto patched = [](uint8_t mode, uint8_t selector, uint16_t offset, Bytes bytes) {
    Bytes b{mode, selector};
    PutU16(b, offset);
    b.push_back(static_cast<uint8_t>(bytes.size()));
    b.insert(b.end(), bytes.begin(), bytes.end());
    return b;
  };
  // The blob sits at the start of its page (kho_alloc_preserve).
  const uint16_t total_at = offsetof(fz::IncomingBlob, vm_total_pages);
  const uint16_t flags_at = offsetof(fz::IncomingBlob, vm_flags);
  const uint16_t folio_at = offsetof(fz::IncomingBlob, folio_phys);
  // Root FDT: bad magic.
  Write(t, "fdt-bad-magic", patched(fz::kRootFdt, 0, 0, {0, 0, 0, 0}));
  // Radix root: slot 2 (where every low order-0 key lives) unaligned.
  Write(t, "radix-root-slot2-unaligned", patched(fz::kRadixRoot, 0, 16, {0x08}));
  // Extra bits in some node (a pointer or a leaf, depending on the tree).
  Write(t, "radix-node-5-extra-bits", patched(fz::kRadixNode, 5, 0, {0xff, 0xff, 0xff, 0xff}));
  // Blob: unknown flag, the folio address moved, one page too many.
  Write(t, "blob-bad-flags", patched(fz::kVmallocDesc, 0, flags_at, {0x08, 0x00}));
  Write(t, "blob-folio-moved", patched(fz::kVmallocDesc, 0, folio_at + 1, {0x10}));
  Write(t, "blob-total-pages-plus-one",
        patched(fz::kVmallocDesc, 0, total_at,
                {static_cast<uint8_t>(fz::kSmallAreaPages + 1), 0x00}));
  Write(t, "blob-large-total-pages-plus-one",
        patched(fz::kVmallocDesc | large, 0, total_at,
                {static_cast<uint8_t>(fz::kLargeAreaPages + 1),
                 static_cast<uint8_t>((fz::kLargeAreaPages + 1) >> 8)}));
  // Chunks: the list cut short, an entry cleared.
  Write(t, "chunk-large-first-next-zero", patched(fz::kFirstChunk | large, 0, 0, Bytes(8, 0)));
  Write(t, "chunk-large-last-entry-cleared", patched(fz::kLastChunk | large, 0, 8, Bytes(8, 0)));
  Write(t, "chunk-small-entry-cleared", patched(fz::kFirstChunk, 0, 16, Bytes(8, 0)));
  // Known finding (README.md): a descriptor claiming 2^32 - 1 pages.
  Write(t, "finding-vmalloc-total-pages-huge",
        patched(fz::kVmallocDesc, 0, total_at, {0xff, 0xff, 0xff, 0xff}));
  // kexec-metadata: wrong version.
  Write(t, "metadata-bad-version", patched(fz::kMetadataBlob, 0, 0, {2}));
  // kho-v1 chunk list: the next pointer unaligned, an order no address can
  // hold, more entries than a chunk has, a bitmap pointer moved; a bitmap
  // with 64 more blocks in it; and a second kexec of an untouched list.
  Write(t, "v1-chunk-next-unaligned", patched(fz::kV1Chunk, 0, 0, {0x08}));
  Write(t, "v1-chunk-order-52", patched(fz::kV1Chunk, 0, 8, {52, 0, 0, 0}));
  Write(t, "v1-chunk-num-elms-huge", patched(fz::kV1Chunk, 0, 12, {0xff, 0xff, 0xff, 0xff}));
  Write(t, "v1-chunk-bitmap-moved", patched(fz::kV1Chunk, 0, 24, {0x10}));
  Write(t, "v1-bitmap-1-extra-blocks", patched(fz::kV1Bitmap, 1, 64, Bytes(8, 0xff)));
  Write(t, "pristine-v1-kexec-twice",
        Bytes{static_cast<uint8_t>(fz::kV1Chunk | fz::kIncomingKexecAgain), 0});
}

// ---------------------------------------------------------------------------
// Patch records of the container targets (container_fuzz_format.h)

struct Patches {
  Bytes b;
  Patches& Raw(uint8_t page, uint16_t offset, const Bytes& bytes) {
    b.push_back(page);
    b.push_back(fz::kPatchBytes);
    PutU16(b, offset);
    b.push_back(static_cast<uint8_t>(bytes.size()));
    b.insert(b.end(), bytes.begin(), bytes.end());
    return *this;
  }
  Patches& Pointer(uint8_t page, uint16_t offset, uint8_t ref, int8_t delta = 0) {
    b.push_back(page);
    b.push_back(fz::kPatchPointer);
    PutU16(b, offset);
    b.push_back(ref);
    b.push_back(static_cast<uint8_t>(delta));
    return *this;
  }
  Patches& Number(uint8_t page, uint16_t offset, uint8_t which) {
    b.push_back(page);
    b.push_back(fz::kPatchNumber);
    PutU16(b, offset);
    b.push_back(which);
    return *this;
  }
  Patches& U64(uint8_t page, uint16_t offset, uint64_t value) {
    b.push_back(page);
    b.push_back(fz::kPatchU64);
    PutU16(b, offset);
    PutU64(b, value);
    return *this;
  }
};

Bytes With(Bytes header, const Patches& p) {
  header.insert(header.end(), p.b.begin(), p.b.end());
  return header;
}

// ---------------------------------------------------------------------------
// kho_block_set_fuzzer

Bytes BlockHeader(uint8_t mode, uint8_t entry_sel, uint16_t primary, uint8_t secondary,
                  uint8_t other = 0) {
  Bytes b{mode, entry_sel};
  PutU16(b, primary);
  b.push_back(secondary);
  b.push_back(other);
  return b;
}

void BlockSetSeeds() {
  const std::string t = "kho_block_set_fuzzer";
  const uint8_t sec = fz::kBlockModeSecondary;
  const uint8_t late = fz::kBlockModeSecondaryLate;
  const uint8_t other = fz::kBlockModeOtherEntrySize;
  const uint8_t again = fz::kBlockModeKexecAgain;
  const uint8_t inacc = fz::kModeInaccessible;
  const uint8_t blob = 0xff;  // the last page of the list
  auto special = [](fz::RefSpecial s) { return fz::RefSelector(s); };
  // Untouched sets: LUO's session (80 bytes: blocks of 51 and 1) and file
  // (64 bytes) entries, extremes, the three page sizes.
  Write(t, "pristine-4k-80x52", BlockHeader(0, 0, 52, 0));
  Write(t, "pristine-4k-64x130-secondary-64x70", BlockHeader(sec, 1, 130, 70));
  Write(t, "pristine-4k-1-byte-entries", BlockHeader(0, 5, 5000, 0));
  Write(t, "pristine-4k-one-entry-per-block", BlockHeader(0, 15, 7, 2));
  Write(t, "pristine-4k-empty", BlockHeader(sec, 0, 0, 0));
  Write(t, "pristine-16k-80x300-kexec-again", BlockHeader(fz::kModePage16K | again, 0, 300, 0));
  Write(t, "pristine-64k-32x3000", BlockHeader(fz::kModePage64K | sec, 3, 3000, 5));
  Write(t, "pristine-4k-inaccessible-late-kexec-again",
        BlockHeader(inacc | late | again, 0, 52, 60));
  // Kernel B reads 80-byte entries as 64-byte ones (51 fit 63) and 64-byte
  // entries as 80-byte ones (63 do not fit 51: every block freed).
  Write(t, "pristine-4k-80-read-as-64", BlockHeader(other, 0, 52, 0, 1));
  Write(t, "pristine-4k-64-read-as-80", BlockHeader(other, 1, 100, 0, 0));
  // KHO_MAX_BLOCKS blocks exactly: accepted (slow, see kBlockModeLongChain).
  Write(t, "pristine-4k-long-chain-10000-blocks",
        BlockHeader(fz::kBlockModeLongChain, 0, 0, 0, fz::kBlockLongChainKey));

  // 80-byte entries, 156 of them: blocks 0-3 hold 51, 51, 51, 3; with the
  // secondary set (60 entries: blocks 4-5) the blob is page 6.
  const Bytes four = BlockHeader(0, 0, 156, 0);
  const Bytes four_sec = BlockHeader(sec, 0, 156, 60);
  Write(t, "cycle-block2-to-block0", With(four, Patches().Pointer(2, 0, 0)));
  Write(t, "cycle-last-to-block1", With(four, Patches().Pointer(3, 0, 1)));
  Write(t, "self-loop-head", With(four, Patches().Pointer(0, 0, 0)));
  Write(t, "self-loop-block1", With(four, Patches().Pointer(1, 0, 1)));
  Write(t, "zero-count-block1", With(four, Patches().Number(1, 8, fz::kBlockNumZero)));
  Write(t, "count-over-capacity-block2", With(four, Patches().Number(2, 8, fz::kBlockNumCapPlus1)));
  Write(t, "count-at-capacity-last", With(four, Patches().Number(3, 8, fz::kBlockNumCap)));
  Write(t, "count-all-ones-head", With(four, Patches().Number(0, 8, fz::kBlockNumAllOnes)));
  Write(t, "next-out-of-ram", With(four, Patches().Pointer(3, 0, special(fz::kRefRamEnd))));
  Write(t, "next-below-ram", With(four, Patches().Pointer(1, 0, special(fz::kRefBelowRam))));
  Write(t, "next-into-hole", With(four, Patches().Pointer(2, 0, special(fz::kRefHole))));
  Write(t, "next-far", With(four, Patches().Pointer(3, 0, special(fz::kRefFar))));
  Write(t, "next-unaligned", With(four, Patches().Pointer(0, 0, 1, 8)));
  Write(t, "next-unpreserved", With(four, Patches().Pointer(3, 0, special(fz::kRefUnpreserved))));
  Write(t, "next-order1-head", With(four, Patches().Pointer(3, 0, special(fz::kRefOrder1Head))));
  Write(t, "next-order1-tail", With(four, Patches().Pointer(3, 0, special(fz::kRefOrder1Tail))));
  Write(t, "head-zero", With(four, Patches().Number(blob, 0, fz::kBlockNumZero)));
  Write(t, "head-unaligned", With(four, Patches().Pointer(blob, 0, 0, 16)));
  Write(t, "head-to-secondary", With(four_sec, Patches().Pointer(blob, 0, 4)));
  // Both sets end in the primary's last two blocks.
  Write(t, "shared-tail", With(four_sec, Patches().Pointer(5, 0, 2)));
  Write(t, "shared-tail-late", With(BlockHeader(late, 0, 156, 60), Patches().Pointer(5, 0, 2)));
  Write(t, "shared-tail-secondary-count-zero",
        With(four_sec, Patches().Pointer(5, 0, 2).Number(4, 8, fz::kBlockNumZero)));
  Write(t, "blob-overwritten", With(four_sec, Patches().Raw(blob, 0, Bytes(24, 0xaa))));
  Write(t, "16k-cycle", With(BlockHeader(fz::kModePage16K, 0, 600, 0), Patches().Pointer(2, 0, 1)));
  Write(t, "64k-count-over-capacity",
        With(BlockHeader(fz::kModePage64K, 1, 1500, 0),
             Patches().Number(1, 8, fz::kBlockNumCapPlus1)));
  Write(t, "inaccessible-next-unpreserved-kexec-again",
        With(BlockHeader(inacc | again, 0, 156, 0),
             Patches().Pointer(3, 0, special(fz::kRefUnpreserved))));
  Write(t, "inaccessible-shared-tail-late",
        With(BlockHeader(inacc | late, 0, 156, 60), Patches().Pointer(5, 0, 2)));

  // Findings (README.md, fixed). The reader read a link before knowing it
  // names a preserved block: with kernel B's free memory unmapped, a head
  // pointing at the blob page (restored and freed by B) faulted.
  Write(t, "finding-head-to-freed-page-inaccessible",
        With(BlockHeader(inacc, 0, 52, 0), Patches().Pointer(blob, 0, special(fz::kRefBlob))));
  Write(t, "finding-next-to-order1-block-taken",
        With(BlockHeader(0, 0, 52, 0), Patches().Pointer(1, 0, special(fz::kRefOrder1Head))));
  // KHO_MAX_BLOCKS + 1 blocks: the last of 10000 one-entry blocks linked
  // to the secondary's single block. The reader's bound counted Floyd
  // iterations (two blocks each) and its list then refused the 10001st
  // block with -ENOSPC.
  // Pages: 10000 primary, 1 secondary, the blob; references: 10000
  // primary, 1 secondary, 9 specials.
  Write(t, "finding-long-chain-10001-blocks",
        With(BlockHeader(fz::kBlockModeLongChain, 0, 0, 1, fz::kBlockLongChainKey),
             Patches().Pointer(0xff - 2, 0, static_cast<uint8_t>(0xff - fz::kRefSpecials))));
}

// ---------------------------------------------------------------------------
// kho_xarray_fuzzer

Bytes XaHeader(uint8_t mode, unsigned key_bits, uint8_t n, uint8_t param,
               uint8_t follow_param = 0) {
  return Bytes{mode, static_cast<uint8_t>(key_bits - 1), n, param, follow_param};
}

void XarraySeeds() {
  const std::string t = "kho_xarray_fuzzer";
  auto mode = [](uint8_t page_bits, fz::XaFollowUp f, fz::XaPattern p) {
    return fz::XaMode(page_bits, f, p);
  };
  auto special = [](fz::RefSpecial s) { return fz::RefSelector(s); };
  const char* follow_names[] = {"read", "convert", "adopt", "adopt-kexec"};
  const char* pattern_names[] = {"dense", "strided", "random", "edges"};
  // Untouched maps: every pattern with every follow-up at 4 KiB, 64-bit
  // keys; other widths and page sizes.
  for (uint8_t f = 0; f < 4; ++f) {
    for (uint8_t p = 0; p < 4; ++p) {
      Write(t, std::string("pristine-4k-64bit-") + pattern_names[p] + "-" + follow_names[f],
            XaHeader(mode(0, fz::XaFollowUp(f), fz::XaPattern(p)), 64, 30, 3, 11));
    }
  }
  Write(t, "pristine-4k-52bit-strided-adopt-kexec",
        XaHeader(mode(0, fz::kXaAdoptKexec, fz::kXaStrided), 52, 40, 9, 14));
  Write(t, "pristine-4k-9bit-root-is-leaf",
        XaHeader(mode(0, fz::kXaReadInPlace, fz::kXaDense), 9, 40, 1));
  Write(t, "pristine-4k-1bit-convert", XaHeader(mode(0, fz::kXaConvert, fz::kXaEdges), 1, 4, 0));
  Write(t, "pristine-4k-empty-adopt-kexec",
        XaHeader(mode(0, fz::kXaAdoptKexec, fz::kXaDense), 64, 0, 0, 5));
  Write(
      t, "pristine-4k-adopt-stores-under-allocation-failures",
      XaHeader(mode(0, fz::kXaAdoptKexec, fz::kXaRandom) | fz::kXaModeStoreFaults, 64, 30, 3, 15));
  Write(t, "pristine-4k-inaccessible-adopt-kexec",
        XaHeader(mode(fz::kModeInaccessible, fz::kXaAdoptKexec, fz::kXaRandom), 48, 20, 7, 9));
  Write(t, "pristine-16k-edges-adopt-kexec",
        XaHeader(mode(fz::kModePage16K, fz::kXaAdoptKexec, fz::kXaEdges), 64, 30, 2, 6));
  Write(t, "pristine-16k-dense-convert",
        XaHeader(mode(fz::kModePage16K, fz::kXaConvert, fz::kXaDense), 40, 40, 5));
  Write(t, "pristine-64k-strided-read",
        XaHeader(mode(fz::kModePage64K, fz::kXaReadInPlace, fz::kXaStrided), 64, 40, 13));
  Write(t, "pristine-64k-random-adopt",
        XaHeader(mode(fz::kModePage64K, fz::kXaAdopt, fz::kXaRandom), 64, 8, 1, 7));

  // Indices 0..3 (strided with shift 0) in a 64-bit map at 4 KiB: a single
  // path of 8 nodes, root first. Pages: 0 the descriptor, 1 the root
  // (level 7, two usable slots), ..., 8 the leaf. References: 0 the root,
  // ..., 7 the leaf, then the specials (copies of the leaf).
  const Bytes path = XaHeader(mode(0, fz::kXaReadInPlace, fz::kXaStrided), 64, 4, 0);
  const Bytes path_adopt = XaHeader(mode(0, fz::kXaAdoptKexec, fz::kXaStrided), 64, 4, 0, 9);
  Write(t, "desc-bad-magic",
        With(path, Patches().Raw(0, fz::kXaDescMagic, {0x52, 0x41, 0x58, 0x4c})));
  Write(t, "desc-bad-version", With(path, Patches().Raw(0, fz::kXaDescVersion, {2, 0})));
  Write(t, "desc-bad-depth", With(path, Patches().Raw(0, fz::kXaDescDepth, {7})));
  Write(t, "desc-key-bits-0", With(path, Patches().Raw(0, fz::kXaDescKeyBits, {0})));
  Write(t, "desc-key-bits-65", With(path, Patches().Raw(0, fz::kXaDescKeyBits, {65})));
  Write(t, "desc-key-bits-54-depth-8", With(path, Patches().Raw(0, fz::kXaDescKeyBits, {54})));
  Write(t, "desc-key-bits-60", With(path, Patches().Raw(0, fz::kXaDescKeyBits, {60})));
  // One level either way: a 9-bit root read as 5 bits (entries beyond the
  // 32 usable slots), a 5-bit one read as 9 bits (still consistent).
  Write(t, "desc-key-bits-narrowed-same-depth",
        With(XaHeader(mode(0, fz::kXaReadInPlace, fz::kXaDense), 9, 40, 1),
             Patches().Raw(0, fz::kXaDescKeyBits, {5})));
  Write(t, "desc-key-bits-widened-same-depth-adopt-kexec",
        With(XaHeader(mode(0, fz::kXaAdoptKexec, fz::kXaDense), 5, 20, 1, 12),
             Patches().Raw(0, fz::kXaDescKeyBits, {9})));
  Write(t, "desc-page-shift-14", With(path, Patches().Raw(0, fz::kXaDescPageShift, {14})));
  Write(t, "desc-reserved", With(path, Patches().Raw(0, fz::kXaDescReserved2, {1})));
  Write(t, "desc-count-plus-one",
        With(path, Patches().Number(0, fz::kXaDescCount, fz::kXaNumCountPlus1)));
  Write(t, "desc-count-zero", With(path, Patches().Number(0, fz::kXaDescCount, fz::kXaNumZero)));
  Write(t, "desc-root-zero", With(path, Patches().Number(0, fz::kXaDescRoot, fz::kXaNumZero)));
  Write(t, "desc-root-zero-count-zero",
        With(path_adopt, Patches()
                             .Number(0, fz::kXaDescRoot, fz::kXaNumZero)
                             .Number(0, fz::kXaDescCount, fz::kXaNumZero)));
  Write(t, "desc-root-unaligned", With(path, Patches().Pointer(0, fz::kXaDescRoot, 0, 8)));
  Write(t, "desc-root-out-of-ram",
        With(path, Patches().Pointer(0, fz::kXaDescRoot, special(fz::kRefRamEnd))));
  Write(t, "desc-root-into-hole",
        With(path, Patches().Pointer(0, fz::kXaDescRoot, special(fz::kRefHole))));
  Write(t, "desc-root-below-ram",
        With(path, Patches().Pointer(0, fz::kXaDescRoot, special(fz::kRefBelowRam))));
  Write(t, "desc-root-to-own-page",
        With(path, Patches().Pointer(0, fz::kXaDescRoot, special(fz::kRefBlob))));
  // The root is skipped: level 6 as the root (one level short).
  Write(t, "desc-root-to-level6", With(path, Patches().Pointer(0, fz::kXaDescRoot, 1)));
  Write(t, "root-self-loop", With(path, Patches().Pointer(1, 0, 0)));
  Write(t, "level1-cycle-to-root", With(path, Patches().Pointer(7, 0, 0)));
  Write(t, "level3-self-loop", With(path, Patches().Pointer(5, 0, 4)));
  Write(t, "shared-child-root-slot1", With(path, Patches().Pointer(1, 8, 1)));
  Write(t, "shared-leaf-level1-slot1", With(path, Patches().Pointer(7, 8, 7)));
  Write(t, "child-unpreserved", With(path, Patches().Pointer(7, 0, special(fz::kRefUnpreserved))));
  Write(t, "child-order1-head", With(path, Patches().Pointer(7, 0, special(fz::kRefOrder1Head))));
  Write(t, "child-order1-tail", With(path, Patches().Pointer(7, 0, special(fz::kRefOrder1Tail))));
  Write(t, "child-unaligned", With(path, Patches().Pointer(3, 0, 3, 64)));
  Write(t, "child-out-of-ram", With(path, Patches().Pointer(4, 0, special(fz::kRefFar))));
  Write(t, "root-slot-beyond-width", With(path, Patches().U64(1, 16, 0x1000)));
  Write(t, "leaf-entry-cleared", With(path, Patches().Number(8, 0, fz::kXaNumZero)));
  // Level 2 pointing at the leaf: its entry words read as node addresses.
  Write(t, "level2-to-leaf", With(path, Patches().Pointer(6, 0, 7)));
  Write(t, "inaccessible-child-unpreserved",
        With(XaHeader(mode(fz::kModeInaccessible, fz::kXaReadInPlace, fz::kXaStrided), 64, 4, 0),
             Patches().Pointer(7, 0, special(fz::kRefUnpreserved))));
  // A corrupted map that is still consistent is accepted: an extra entry
  // with the count raised to match, then adopted, changed and handed on.
  Write(t, "leaf-extra-entry-consistent-adopt-kexec",
        With(path_adopt,
             Patches().U64(8, 100 * 8, 0x123).Number(0, fz::kXaDescCount, fz::kXaNumCountPlus1)));
  Write(t, "leaf-extra-entry-consistent-convert",
        With(XaHeader(mode(0, fz::kXaConvert, fz::kXaStrided), 64, 4, 0),
             Patches()
                 .U64(8, 511 * 8, 0xfffffffffffffffe)
                 .Number(0, fz::kXaDescCount, fz::kXaNumCountPlus1)));
  // A 5-bit map: the root is the only node, 32 usable slots.
  Write(t, "5bit-word-beyond-width",
        With(XaHeader(mode(0, fz::kXaReadInPlace, fz::kXaDense), 5, 3, 0),
             Patches().U64(1, 40 * 8, 3)));
  Write(t, "16k-shared-child",
        With(XaHeader(mode(fz::kModePage16K, fz::kXaReadInPlace, fz::kXaStrided), 64, 4, 0),
             Patches().Pointer(5, 8, 5)));
  Write(t, "64k-cycle",
        With(XaHeader(mode(fz::kModePage64K, fz::kXaConvert, fz::kXaStrided), 64, 4, 0),
             Patches().Pointer(4, 0, 1)));
}

// ---------------------------------------------------------------------------
// luo_incoming_fuzzer (luo_fuzz_format.h)

// Header byte 0 for |sessions| sessions (a count of kLuoSessionCounts)
// and the name and token bits.
uint8_t LuoSessionsByte(int sessions, uint8_t bits = 0) {
  for (uint8_t i = 0; i <= fz::kSessionsCountMask; ++i) {
    if (fz::kLuoSessionCounts[i] == sessions) return static_cast<uint8_t>(i | bits);
  }
  std::abort();
}

// One input: the four header bytes, then patch records.
struct LuoInput {
  Bytes b;
  LuoInput(uint8_t sessions, uint8_t files, uint8_t a, uint8_t kernel_b)
      : b{sessions, files, a, kernel_b} {}
  LuoInput(int sessions, uint8_t files, uint8_t a, uint8_t kernel_b)
      : b{LuoSessionsByte(sessions), files, a, kernel_b} {}

  // The reference selectors of kernel A's own pages for this header.
  uint64_t SessionBlocks() const { return (fz::LuoSessionCount(b[0]) + 50) / 51; }
  uint64_t FileBlocks() const {
    uint64_t n = 0;
    for (int i = 0; i < fz::LuoSessionCount(b[0]); ++i) {
      n += (fz::LuoSessionFiles(b[0], b[1], i) + 62) / 63;
    }
    return n;
  }
  uint8_t SessionBlockRef(uint64_t k) const { return static_cast<uint8_t>(k); }
  uint8_t FileBlockRef(uint64_t k) const { return static_cast<uint8_t>(SessionBlocks() + k); }
  uint8_t RecordRef(uint64_t k) const {
    return static_cast<uint8_t>(SessionBlocks() + FileBlocks() + 2 + k);
  }
  // Page selectors: luo_ser, the FLB page, then the blocks and records.
  uint8_t SessionBlockPage(uint64_t k) const { return static_cast<uint8_t>(2 + k); }
  uint8_t RecordPage(uint64_t k) const {
    return static_cast<uint8_t>(2 + SessionBlocks() + FileBlocks() + k);
  }

  // Values.
  LuoInput& Pointer(uint8_t ref, int8_t delta = 0) {
    b.insert(b.end(), {fz::kValPointer, ref, static_cast<uint8_t>(delta)});
    return *this;
  }
  LuoInput& Special(fz::LuoRefSpecial s, int8_t delta = 0) {
    return Pointer(fz::LuoRefSelector(s), delta);
  }
  LuoInput& Number(uint64_t value) {
    for (size_t i = 0; i < fz::kLuoNumberCount; ++i) {
      if (fz::kLuoNumbers[i] == value) {
        b.insert(b.end(), {fz::kValNumber, static_cast<uint8_t>(i)});
        return *this;
      }
    }
    std::abort();
  }
  LuoInput& U64(uint64_t value) {
    b.push_back(fz::kValU64);
    PutU64(b, value);
    return *this;
  }
  LuoInput& Str(const std::string& s, size_t pad_to = 0) {
    std::string padded = s;
    if (padded.size() < pad_to) padded.resize(pad_to, '\0');
    b.insert(b.end(), {fz::kValBytes, static_cast<uint8_t>(padded.size())});
    b.insert(b.end(), padded.begin(), padded.end());
    return *this;
  }

  // Records; each is followed by its value where it takes one.
  LuoInput& Field(fz::LuoField field, uint8_t instance) {
    b.insert(b.end(), {fz::kOpField, field, instance});
    return *this;
  }
  LuoInput& Raw(uint8_t page, uint16_t offset, const Bytes& bytes) {
    b.insert(b.end(), {fz::kOpRaw, page});
    PutU16(b, offset);
    b.push_back(static_cast<uint8_t>(bytes.size()));
    b.insert(b.end(), bytes.begin(), bytes.end());
    return *this;
  }
  LuoInput& Word(uint8_t page, uint16_t offset) {
    b.insert(b.end(), {fz::kOpWord, page});
    PutU16(b, offset);
    return *this;
  }
  LuoInput& Size() {
    b.push_back(fz::kOpSize);
    return *this;
  }
  LuoInput& Drop() {
    b.push_back(fz::kOpDrop);
    return *this;
  }
};

void LuoSeeds() {
  const std::string t = "luo_incoming_fuzzer";
  auto write = [&](const std::string& name, const LuoInput& in) { Write(t, name, in.b); };
  // Shapes. small: sessions s0..s2 with 1, 2, 3 files and test_flb linked.
  auto small = [](uint8_t kernel_b = 0) { return LuoInput(3, 0x03, fz::kALinkFlb, kernel_b); };
  // multi: 52 sessions (two session blocks), 0..2 files each.
  auto multi = [](uint8_t kernel_b = fz::kBFlbGet) {
    return LuoInput(52, 0x02, fz::kALinkFlb, kernel_b);
  };
  // big: session 0 holds 65 files (two file blocks), session 1 none; both FLBs.
  auto big = [](uint8_t kernel_b = fz::kBFlbGet | fz::kBReverse) {
    return LuoInput(2, fz::kFilesBig | 0x10 | 0x01, fz::kALinkFlb | fz::kALinkFlb2, kernel_b);
  };
  // one: a single session holding a single file.
  auto one = [](uint8_t kernel_b = 0) { return LuoInput(1, 0x01, 0, kernel_b); };

  // Untouched handovers of several shapes and kernel-B behaviours.
  write("pristine-no-sessions", LuoInput(0, 0, 0, 0));
  write("pristine-empty-sessions", LuoInput(8, 0, fz::kALinkFlb, fz::kBFlbGet));
  write("pristine-small", small());
  write("pristine-small-close-finish", small(fz::kBCloseFinish));
  write("pristine-small-no-retrieve", small(fz::kBNoRetrieve | fz::kBFlbGet));
  write("pristine-small-skip-odd-kexec-again", small(fz::kBSkipOdd | fz::kBKexecAgain));
  write("pristine-small-no-flb-in-b", small(fz::kBNoFlb));
  write("pristine-multi-block-sessions", multi());
  write("pristine-multi-block-files", big());
  write("pristine-long-names-wide-tokens",
        LuoInput(LuoSessionsByte(4, fz::kSessionsLongNames | fz::kSessionsWideTokens), 0x03,
                 fz::kALinkFlb2, fz::kBCloseFinish | fz::kBReverse));
  write("pristine-largest", LuoInput(52, 0x0f, fz::kALinkFlb | fz::kALinkFlb2, fz::kBFlbGet));

  // luo_ser and the subtree: panics at early boot, or a cold start.
  write("ser-compatible-luo-v4", small().Field(fz::kFieldSerCompatible, 0).Str("luo-v4", 8));
  write("ser-compatible-unterminated", small().Field(fz::kFieldSerCompatible, 0).Str("luo-v5xy"));
  write("subtree-short-blob", small().Size().Number(31));
  write("subtree-huge-blob", small().Size().U64(~uint64_t{0}));
  write("subtree-dropped", small(fz::kBFlbGet).Drop());
  write("ser-num-max-kexec-again",
        small(fz::kBKexecAgain).Field(fz::kFieldSerNum, 0).Number(~uint64_t{0}));
  write("ser-sessions-zero", small().Field(fz::kFieldSerSessions, 0).Number(0));
  write("ser-sessions-preserved-copy",
        multi().Field(fz::kFieldSerSessions, 0).Special(fz::kLuoRefPreservedCopy));
  write("ser-sessions-unpreserved",
        small().Field(fz::kFieldSerSessions, 0).Special(fz::kLuoRefUnpreserved));
  write("ser-sessions-order1-head",
        small().Field(fz::kFieldSerSessions, 0).Special(fz::kLuoRefOrder1Head));
  write("ser-sessions-order1-tail",
        small().Field(fz::kFieldSerSessions, 0).Special(fz::kLuoRefOrder1Tail));
  write("ser-sessions-root-fdt",
        small().Field(fz::kFieldSerSessions, 0).Special(fz::kLuoRefRootFdt));
  write("ser-sessions-past-ram",
        small().Field(fz::kFieldSerSessions, 0).Special(fz::kLuoRefRamEnd));
  write("ser-sessions-far", small().Field(fz::kFieldSerSessions, 0).Special(fz::kLuoRefFar));
  write("ser-sessions-unaligned", small().Field(fz::kFieldSerSessions, 0).Pointer(0, 8));
  write("ser-flbs-zero-get", small(fz::kBFlbGet).Field(fz::kFieldSerFlbs, 0).Number(0));
  write("ser-flbs-unpreserved",
        small().Field(fz::kFieldSerFlbs, 0).Special(fz::kLuoRefUnpreserved));
  write("ser-flbs-session-block", small().Field(fz::kFieldSerFlbs, 0).Pointer(0));

  // The session chain.
  write("session-chain-cycle", small().Field(fz::kFieldSessionNext, 0).Pointer(0));
  {
    LuoInput in = multi();
    write("session-chain-cycle-two-blocks",
          in.Field(fz::kFieldSessionNext, 1).Pointer(in.SessionBlockRef(0)));
  }
  write("session-block-zero-count", small().Field(fz::kFieldSessionCount, 0).Number(0));
  write("session-block-count-above-capacity", small().Field(fz::kFieldSessionCount, 0).Number(52));
  write("session-block-count-short", multi().Field(fz::kFieldSessionCount, 0).Number(50));
  write("session-block-zero-count-word", small().Word(small().SessionBlockPage(0), 8).Number(0));
  {
    LuoInput in = multi();
    write("session-next-to-file-block",
          in.Field(fz::kFieldSessionNext, 1).Pointer(in.FileBlockRef(0)));
  }
  write("session-names-duplicate", small().Field(fz::kFieldSessionName, 1).Str("s0", 3));
  write("session-name-64-bytes", small().Field(fz::kFieldSessionName, 0).Str(std::string(64, 'n')));
  write("session-name-empty", small().Field(fz::kFieldSessionName, 2).Str("", 1));

  // File chains and records.
  write("file-count-mismatch", small().Field(fz::kFieldSessionFileCount, 0).Number(2));
  write("file-count-without-chain", small().Field(fz::kFieldSessionFiles, 1).Number(0));
  write("file-block-zero-count", small().Field(fz::kFieldFileCount, 1).Number(0));
  write("file-block-count-above-capacity", big().Field(fz::kFieldFileCount, 0).Number(64));
  {
    LuoInput in = big();
    write("file-chain-cycle", in.Field(fz::kFieldFileNext, 1).Pointer(in.FileBlockRef(0)));
  }
  write("file-compatible-unknown",
        small().Field(fz::kFieldFileCompatible, 1).Str("test-file-v2", 13));
  write("file-handler-missing-in-b", small(fz::kBNoHandler));
  write("finding-duplicate-tokens-in-session", small().Field(fz::kFieldFileToken, 2).Number(0));
  {
    // Sessions s0 and s1 share s0's one-entry file block.
    LuoInput in = small();
    write("file-chain-shared", in.Field(fz::kFieldSessionFiles, 1)
                                   .Pointer(in.FileBlockRef(0))
                                   .Field(fz::kFieldSessionFileCount, 1)
                                   .Number(1));
  }
  write("file-chain-unpreserved",
        small().Field(fz::kFieldSessionFiles, 0).Special(fz::kLuoRefUnpreserved));
  write("file-chain-preserved-copy",
        small().Field(fz::kFieldSessionFiles, 0).Special(fz::kLuoRefPreservedCopy));
  // The session block read as a file block: session "test-file-v1" is its
  // own file, with data 0 and token 0.
  write("file-chain-is-session-block", one()
                                           .Field(fz::kFieldSessionName, 0)
                                           .Str("test-file-v1", 13)
                                           .Field(fz::kFieldSessionFiles, 0)
                                           .Pointer(0));
  {
    LuoInput in = small();
    write("file-data-shared-record", in.Field(fz::kFieldFileData, 1).Pointer(in.RecordRef(0)));
  }
  write("file-data-far", small().Field(fz::kFieldFileData, 0).Special(fz::kLuoRefFar));
  write("file-data-unaligned",
        small().Field(fz::kFieldFileData, 0).Pointer(small().RecordRef(0), 4));
  write("record-magic-cleared", small().Raw(small().RecordPage(0), 0, Bytes(8, 0)));

  // The FLB page.
  write("flb-count-64", small().Field(fz::kFieldFlbCount, 0).Number(64));
  write("flb-pgcnt-2", small().Field(fz::kFieldFlbPgcnt, 0).Number(2));
  write("flb-header-raw", small().Raw(1, 0, {0x01, 0, 0, 0, 0, 0, 0, 0, 0x3f}));
  write("flb-entry-count-zero", small(fz::kBFlbGet).Field(fz::kFieldFlbEntryCount, 0).Number(0));
  write("flb-entry-count-minus-one",
        small(fz::kBFlbGet).Field(fz::kFieldFlbEntryCount, 0).Number(~uint64_t{0}));
  write("finding-flb-incoming-count-long-max",
        small(fz::kBFlbGet).Field(fz::kFieldFlbEntryCount, 0).Number(0x7fffffffffffffff));
  write("flb-data-file-record",
        small(fz::kBFlbGet).Field(fz::kFieldFlbData, 0).Pointer(small().RecordRef(0)));
  write("flb-data-far", small(fz::kBFlbGet).Field(fz::kFieldFlbData, 0).Special(fz::kLuoRefFar));
  write("flb-name-duplicate", big().Field(fz::kFieldFlbName, 1).Str("test-flb-v1", 12));
  write("flb-name-unknown", small(fz::kBFlbGet).Field(fz::kFieldFlbName, 0).Str("nope", 5));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  FdtSeeds();
  RadixSeeds();
  IncomingSeeds();
  BlockSetSeeds();
  XarraySeeds();
  LuoSeeds();
  return 0;
}

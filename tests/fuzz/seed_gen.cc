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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "incoming_fuzz_format.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/kho/kho_fdt.h"
#include "khosim/kho/radix_tree.h"
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
  return 0;
}

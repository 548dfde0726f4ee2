// kho_incoming_fuzzer: the whole incoming KHO path of a real Machine, fed
// metadata that the input corrupted.
//
// Kernel A (a small machine booted with kho=on) preserves a folio and a
// vmalloc area (one or two chunk pages long, chosen by the input) and
// publishes both in a subtree. The input then overwrites bytes of one page of
// preserved metadata (format in incoming_fuzz_format.h): the root FDT, a
// radix tree node, the subtree's blob, a vmalloc chunk page, or the
// kexec-metadata blob; or, with every kernel on the kho-v1 profile, a
// khoser_mem_chunk or bitmap page of the serialized tracker. The kexec runs
// kernel B's kho_populate (FDT and scratch validation), the retrieval walk
// of the radix tree (or the kho-v1 chunk list) and the kexec-metadata read;
// B then looks the subtree up
// and runs kho_restore_folio / kho_restore_vmalloc on whatever it finds. A
// KernelPanic is a clean outcome; any other crash, sanitizer report or leak
// is a bug. An input whose patches change no byte must round-trip exactly.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "container_fuzz_machine.h"
#include "fuzz_util.h"
#include "incoming_fuzz_format.h"
#include "khosim/base/panic.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_fdt.h"
#include "khosim/kho/preservation_tracker.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/vmalloc.h"
#include "khosim/machine/machine.h"

namespace {

using khosim::fuzz::IncomingBlob;
using khosim::fuzz::InputReader;
namespace fz = khosim::fuzz;

constexpr unsigned kFolioOrder = 2;
constexpr uint8_t kFolioByte = 0xc3;

// Every descriptor goes to kho_restore_vmalloc, however large its
// total_pages: the library must refuse absurd counts itself (finding 1 in
// README.md, fixed).
bool PlausibleVmallocSize(const khosim::Machine&, const struct kho_vmalloc&) { return true; }

struct Outcome {
  int retrieve = 1;  // 1: not tried
  bool blob = false;
  bool vmalloc = false;
  bool folio = false;
};

uint8_t VmallocByte(unsigned long page) { return static_cast<uint8_t>(0x11 + page * 7); }

// What kernel A preserved, as physical addresses.
struct Preserved {
  uint64_t folio = 0;
  uint64_t blob = 0;
  std::vector<uint64_t> chunks;
};

bool PreserveInKernelA(unsigned long area_pages, Preserved* out) {
  struct folio* f = folio_alloc(GFP_KERNEL, kFolioOrder);
  if (f == nullptr) return false;
  std::memset(folio_address(f), kFolioByte, folio_size(f));
  if (kho_preserve_folio(f) != 0) return false;
  out->folio = folio_phys(f);

  auto* area = static_cast<uint8_t*>(vmalloc(area_pages * PAGE_SIZE));
  if (area == nullptr) return false;
  for (unsigned long i = 0; i < area_pages; ++i) area[i * PAGE_SIZE] = VmallocByte(i);
  auto* blob = static_cast<IncomingBlob*>(kho_alloc_preserve(sizeof(IncomingBlob)));
  if (IS_ERR(blob)) return false;
  struct kho_vmalloc desc = {};
  if (kho_preserve_vmalloc(area, &desc) != 0) return false;
  blob->vm_first = desc.first;
  blob->vm_total_pages = desc.total_pages;
  blob->vm_flags = desc.flags;
  blob->vm_order = desc.order;
  blob->folio_phys = out->folio;
  blob->folio_order = kFolioOrder;
  blob->magic = fz::kIncomingBlobMagic;
  if (kho_add_subtree(fz::kIncomingSubtree, blob, sizeof(*blob)) != 0) return false;
  out->blob = virt_to_phys(blob);
  for (uint64_t c = desc.first; c != 0; c = *static_cast<uint64_t*>(phys_to_virt(c))) {
    out->chunks.push_back(c);
  }
  return true;
}

// The physical page the input's first bytes select; 0 if there is none.
uint64_t TargetPage(khosim::Machine& m, const Preserved& p, uint8_t target, uint8_t selector) {
  khosim::kho::Kho& kho = m.kernel().kho();
  switch (target) {
    case fz::kRootFdt:
      return kho.out_fdt().value();
    case fz::kRadixRoot:
      return kho.out_tree()->root().value();
    case fz::kRadixNode: {
      std::vector<uint64_t> nodes;
      kho.out_tree()->Walk(nullptr, [&](khosim::PhysAddr node, int) {
        nodes.push_back(node.value());
        return 0;
      });
      return nodes.empty() ? 0 : nodes[selector % nodes.size()];
    }
    case fz::kVmallocDesc:
      return p.blob & ~uint64_t{PAGE_SIZE - 1};
    case fz::kFirstChunk:
      return p.chunks.empty() ? 0 : p.chunks.front();
    case fz::kLastChunk:
      return p.chunks.empty() ? 0 : p.chunks.back();
    case fz::kMetadataBlob: {
      uint64_t phys = 0;
      uint64_t size = 0;
      if (khosim::kho::RetrieveSubtree(phys_to_virt(kho.out_fdt().value()),
                                       khosim::abi::kKexecMetadataName, &phys, &size) != 0) {
        return 0;
      }
      return phys & ~uint64_t{PAGE_SIZE - 1};
    }
    case fz::kV1Chunk:
      return kho.tracker()->handover().value();
    case fz::kV1Bitmap: {
      // Chunk pages come first in ForEachBlock, then the bitmaps.
      std::vector<uint64_t> pages;
      kho.tracker()->ForEachBlock(nullptr, [&](khosim::PhysAddr page) {
        pages.push_back(page.value());
        return 0;
      });
      const uint64_t chunks = kho.tracker()->Stats().chunks;
      if (pages.size() <= chunks) return 0;
      return pages[chunks + selector % (pages.size() - chunks)];
    }
  }
  return 0;
}

bool IsV1Target(uint8_t target) { return target == fz::kV1Chunk || target == fz::kV1Bitmap; }

// Applies the input's patches to the page; true if any byte changed.
bool ApplyPatches(InputReader& in, uint8_t* page, uint64_t page_size) {
  bool changed = false;
  for (int i = 0; i < fz::kMaxPatches && !in.empty(); ++i) {
    const uint64_t offset = in.U16() % page_size;
    const size_t len = in.U8();
    size_t got = 0;
    const uint8_t* bytes = in.Bytes(len, &got);
    const size_t n = std::min<uint64_t>(got, page_size - offset);
    if (n != 0 && std::memcmp(page + offset, bytes, n) != 0) {
      changed = true;
      std::memcpy(page + offset, bytes, n);
    }
  }
  return changed;
}

// Kernel B: what a handler does with the subtree it finds. With pristine
// metadata everything must come back intact.
void RestoreInKernelB(khosim::Machine& m, const Preserved& p, unsigned long area_pages,
                      bool pristine, Outcome* out) {
  if (pristine) KHOSIM_FUZZ_CHECK(is_kho_boot());
  phys_addr_t phys = 0;
  size_t size = 0;
  const int rc = kho_retrieve_subtree(fz::kIncomingSubtree, &phys, &size);
  out->retrieve = rc;
  // kho-v1 hands over no blob size: the handler knows its own record.
  const bool sized = m.kernel().kho().HasBlobSubtrees();
  if (!sized && rc == 0) size = sizeof(IncomingBlob);
  if (pristine) KHOSIM_FUZZ_CHECK(rc == 0 && phys == p.blob && size == sizeof(IncomingBlob));
  if (rc != 0 || size < sizeof(IncomingBlob)) return;

  // The blob is a preserved folio of its own: restore it before reading.
  struct folio* blob_folio = kho_restore_folio(phys);
  if (pristine) KHOSIM_FUZZ_CHECK(blob_folio != nullptr);
  if (blob_folio == nullptr) return;
  out->blob = true;
  IncomingBlob blob;
  std::memcpy(&blob, phys_to_virt(phys), sizeof(blob));
  folio_put(blob_folio);

  struct kho_vmalloc desc = {};
  desc.first = blob.vm_first;
  desc.total_pages = blob.vm_total_pages;
  desc.flags = blob.vm_flags;
  desc.order = blob.vm_order;
  uint8_t* area = nullptr;
  if (PlausibleVmallocSize(m, desc)) {
    area = static_cast<uint8_t*>(kho_restore_vmalloc(&desc));
  }
  if (pristine) KHOSIM_FUZZ_CHECK(area != nullptr);
  if (area != nullptr) {
    out->vmalloc = true;
    const unsigned long bytes = static_cast<unsigned long>(desc.total_pages) * PAGE_SIZE;
    // Whatever was restored is mapped in full.
    volatile uint8_t sink = area[0];
    sink = area[bytes - 1];
    (void)sink;
    if (pristine) {
      KHOSIM_FUZZ_CHECK(desc.total_pages == area_pages);
      for (unsigned long i = 0; i < area_pages; ++i) {
        KHOSIM_FUZZ_CHECK(area[i * PAGE_SIZE] == VmallocByte(i));
      }
    }
    vfree(area);
  }

  struct folio* f = kho_restore_folio(blob.folio_phys);
  if (pristine) KHOSIM_FUZZ_CHECK(f != nullptr && folio_order(f) == kFolioOrder);
  if (f != nullptr) {
    out->folio = true;
    const auto* bytes = static_cast<const uint8_t*>(folio_address(f));
    const size_t n = folio_size(f);
    volatile uint8_t sink = bytes[n - 1];
    (void)sink;
    if (pristine) {
      for (size_t i = 0; i < n; ++i) KHOSIM_FUZZ_CHECK(bytes[i] == kFolioByte);
    }
    folio_put(f);
  }
  // Restoring the same heads again must fail cleanly.
  KHOSIM_FUZZ_CHECK(kho_restore_folio(blob.folio_phys) == nullptr);
  KHOSIM_FUZZ_CHECK(kho_restore_folio(phys) == nullptr);
  if (pristine) {
    // Every block but KHO's own incoming root FDT has been claimed.
    KHOSIM_FUZZ_CHECK(m.kernel().kho().UnrestoredBlocks() == 1);
    KHOSIM_FUZZ_CHECK(m.kernel().kho().incoming_kexec_count() == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  InputReader in(data, size);
  const uint8_t mode = in.U8();
  const uint8_t selector = in.U8();
  const uint8_t target_kind = (mode & fz::kIncomingTargetMask) % fz::kIncomingTargets;
  const unsigned long area_pages =
      (mode & fz::kIncomingLargeArea) != 0 ? fz::kLargeAreaPages : fz::kSmallAreaPages;

  const bool v1 = IsV1Target(target_kind);
  khosim::MachineConfig config = fz::SmallKhoMachine();
  if (v1) config.kho.profile = khosim::kho::KhoProfile::kV1;
  absl::StatusOr<std::unique_ptr<khosim::Machine>> made =
      khosim::Machine::Create(std::move(config));
  KHOSIM_FUZZ_CHECK(made.ok());
  khosim::Machine& m = **made;
  Preserved preserved;
  uint64_t target = 0;
  bool changed = false;
  if (v1) {
    // The chunk list exists from the load on: patch it after the load, in
    // kernel A's reboot path (only the first kexec's).
    khosim::KernelModule patcher{.name = "fuzz-patcher"};
    patcher.reboot_hooks.push_back(
        {"fuzz_patch", [&](const khosim::RebootInfo&) {
           if (khosim::RequireKernelContext().generation() != 1) {
             return 0;
           }
           target = TargetPage(m, preserved, target_kind, selector);
           KHOSIM_FUZZ_CHECK(target != 0);
           changed = ApplyPatches(in, static_cast<uint8_t*>(phys_to_virt(target)), PAGE_SIZE);
           return 0;
         }});
    KHOSIM_FUZZ_CHECK(m.AddModule(std::move(patcher)).ok());
  }
  m.Boot();
  KHOSIM_FUZZ_CHECK(kho_is_enabled());
  KHOSIM_FUZZ_CHECK(PreserveInKernelA(area_pages, &preserved));

  if (!v1) {
    target = TargetPage(m, preserved, target_kind, selector);
    KHOSIM_FUZZ_CHECK(target != 0);
    changed = ApplyPatches(in, static_cast<uint8_t*>(phys_to_virt(target)), PAGE_SIZE);
  }

  Outcome outcome;
  bool panicked = false;
  bool kho_boot = false;
  try {
    const absl::Status kexec = m.Kexec();
    KHOSIM_FUZZ_CHECK(kexec.ok());
    kho_boot = is_kho_boot();
    RestoreInKernelB(m, preserved, area_pages, /*pristine=*/!changed, &outcome);
    // Whatever kernel B accepted, its memory bookkeeping stays consistent.
    KHOSIM_FUZZ_CHECK(m.kernel().mm().memblock().Validate().ok());
    KHOSIM_FUZZ_CHECK(m.kernel().mm().pages().Validate().ok());
    if ((mode & fz::kIncomingKexecAgain) != 0) {
      KHOSIM_FUZZ_CHECK(m.Kexec().ok());
      // kho-v1 has no kexec-metadata to count with.
      if (!changed && !v1) KHOSIM_FUZZ_CHECK(m.kernel().kho().incoming_kexec_count() == 1);
      if (!changed && v1) KHOSIM_FUZZ_CHECK(is_kho_boot());
    }
  } catch (const khosim::KernelPanic& e) {
    // A kernel that refuses hostile metadata by panicking is a clean outcome,
    // but not for metadata nobody touched.
    KHOSIM_FUZZ_CHECK(changed);
    panicked = true;
    if (fz::Verbose()) std::fprintf(stderr, "[incoming] panic: %s\n", e.what());
  }
  if (fz::Verbose()) {
    std::fprintf(stderr,
                 "[incoming] target %d page 0x%llx changed %d: %s kho_boot %d retrieve %d "
                 "blob %d vmalloc %d folio %d\n",
                 target_kind, static_cast<unsigned long long>(target), changed,
                 panicked ? "PANIC" : "booted", kho_boot, outcome.retrieve, outcome.blob,
                 outcome.vmalloc, outcome.folio);
  }
  return 0;
}

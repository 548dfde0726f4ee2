// Kho: Kexec HandOver for one kernel (kho-v4 semantics, or the legacy
// kho-v1 profile).
//
// Outgoing side (any kernel with kho=on): a preservation tracker and a
// one-page root FDT, both in simulated physical memory. With kho-v4 the
// radix tree and the FDT ARE the handover state at every moment (KHO is
// stateless: no finalize step). With kho-v1 the per-order bitmaps are
// serialized into a chunk list when the handover is prepared (Finalize,
// upstream's re-runnable kho_finalize), subtrees carry `fdt` and no size,
// and there is no kexec-metadata.
// Incoming side (a kernel booted by a KHO kexec): the root FDT and scratch
// table named by the handover record, validated, and the preserved blocks
// reserved before the page allocator starts, each head page tagged so it can
// be restored exactly once.
//
// Boot steps, called by the Kernel in this order:
//   Populate()    setup_arch: accept or reject the incoming handover; on
//                 accept, mark the inherited boot memory (scratch) and enter
//                 memblock's scratch-only phase
//   ExtendScratch()  right after Populate() (its own step so that its cost
//                 can be timed): with KhoConfig::extended_scratch on an
//                 accepted KHO boot, every 1 GiB block without a preserved
//                 byte or a tracker page becomes boot memory; else nothing
//   MemoryInit()  before memblock_free_all: KHO boot -> reserve every
//                 preserved block; cold boot ->
//                 size and reserve boot memory
//   Init()        fs_initcall: build the outgoing tree, root FDT and
//                 kexec-metadata; on a cold boot hand boot memory to the
//                 buddy allocator as CMA pageblocks
// and PrepareHandover() when the next image is loaded (which, for kho-v1,
// finalizes first).
//
// Profiles: KhoConfig::profile, overridden per boot by the command line's
// khosim.kho_profile=kho-v1|kho-v4|kho-range-v1. A kernel accepts an incoming handover
// only if the root FDT's compatible is exactly its own profile's string;
// otherwise it logs, ignores the handover and boots cold.
//
// Errors follow upstream exactly; see each method. The kernel face
// (khosim/linux/kexec_handover.h) is a thin layer over these methods.
// Context: preservation calls may be made from any thread; the tree and the
// FDT have their own locks.
#ifndef KHOSIM_KHO_KHO_H_
#define KHOSIM_KHO_KHO_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/abi/kho_data.h"
#include "khosim/base/kernel_context.h"
#include "khosim/kho/kho_fdt.h"
#include "khosim/kho/preservation_tracker.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/mm/mm.h"

namespace khosim::kho {

// The KHO ABI a kernel speaks; its name is the root FDT's compatible.
enum class KhoProfile {
  kV1,  // v6.16 .. early 2026: bitmaps + chunk list, `fdt` subtrees
  kV4,  // radix tree in place, blob-size subtrees, kexec-metadata, blocks
  // khosim's proposal: kho-v4's root FDT (blob-size subtrees,
  // kexec-metadata, so LUO runs on it) with the range tracker's extent
  // chain (docs/kho-range-tracker.md), serialized at finalize like kho-v1.
  kRangeV1,
};
absl::string_view KhoProfileName(KhoProfile profile);
// "kho-v1", "kho-v4" or "kho-range-v1"; false for anything else.
bool ParseKhoProfile(absl::string_view name, KhoProfile* profile);

struct KhoConfig {
  // The ABI this kernel build speaks unless khosim.kho_profile= says
  // otherwise.
  KhoProfile profile = KhoProfile::kV4;
  // CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT: KHO on without kho=on.
  bool enabled_by_default = false;
  // CONFIG_KEXEC_HANDOVER_DEBUG: preserving memory inside boot memory fails
  // with -EINVAL. Without it the simulator still reports it (a counted WARN)
  // and the preservation goes ahead, as upstream's non-debug build does.
  bool debug = false;
  // The Aug 2026 extended scratch: kernel B also uses every 1 GiB block that
  // holds no preserved byte and no tree page for early allocations.
  bool extended_scratch = false;
  // The release string this kernel publishes in kexec-metadata.
  std::string release = "7.3.0-khosim";
};

// Boot-memory sizing from the command line (kho_scratch=).
struct ScratchSizing {
  unsigned scale_percent = 200;  // 0 = explicit sizes below
  uint64_t lowmem = 0;
  uint64_t global = 0;
  uint64_t pernode = 0;
};
// Parses a kho_scratch= value: "N%" or "L,G,P" with K/M/G/T suffixes.
// -EINVAL for anything malformed (the caller keeps the default).
int ParseScratchSizing(absl::string_view value, ScratchSizing* out);

// The boot handover record as a setup_data entry (SETUP_KEXEC_KHO), for
// the next kernel's BootParams; an all-zero record is no entry at all.
std::vector<SetupData> HandoverSetupData(const abi::KhoData& handover);
// The record |params| carries; all zero when there is none or its entry is
// not exactly one record long.
abi::KhoData IncomingHandover(const BootParams& params);

// What /sys/kernel/debug/kho shows.
struct KhoDebugView {
  struct Blob {
    std::string name;
    uint64_t phys = 0;
    uint64_t size = 0;
  };
  std::vector<uint8_t> out_fdt;
  std::vector<uint64_t> scratch_phys;
  std::vector<uint64_t> scratch_len;
  std::vector<Blob> out_subtrees;
  std::vector<uint8_t> in_fdt;  // empty unless a KHO boot
  std::vector<Blob> in_subtrees;
  std::string ToString() const;
};

class Kho {
 public:
  Kho(KernelContext& ctx, mm::Mm& mm, KhoConfig config);
  ~Kho();
  Kho(const Kho&) = delete;
  Kho& operator=(const Kho&) = delete;

  static Kho& Current();

  // Boot steps (see the file comment).
  void Populate();
  void ExtendScratch();
  void MemoryInit();
  int Init();
  // Writes the scratch table into a kexec segment inside boot memory and
  // fills the handover record. -EADDRNOTAVAIL if it cannot be placed.
  int PrepareHandover(abi::KhoData* out);

  // kho_finalize (kho-v1): serializes the tracker and points the root FDT's
  // preserved-memory-map at the result, freeing a previous serialization.
  // Re-runnable. A no-op for trackers handed over in place (kho-v4).
  // -EOPNOTSUPP if KHO is disabled, else the tracker's error (-ENOMEM).
  int Finalize();

  bool enabled() const { return enabled_; }
  bool is_kho_boot() const { return in_fdt_phys_ != 0; }
  KhoProfile profile() const { return profile_; }
  absl::string_view compatible() const { return KhoProfileName(profile_); }
  // kho_add_subtree/kho_retrieve_subtree carry a blob size (kho-v3+). A
  // kernel without it cannot host clients that hand over raw blobs (LUO).
  bool HasBlobSubtrees() const { return profile_ != KhoProfile::kV1; }

  // Preservation (outgoing). 0 or -errno.
  int PreserveFolio(struct folio* folio);
  void UnpreserveFolio(struct folio* folio);
  int PreservePages(struct page* page, uint64_t nr_pages);
  void UnpreservePages(struct page* page, uint64_t nr_pages);
  int PreserveVmalloc(void* ptr, abi::KhoVmalloc* preservation);
  void UnpreserveVmalloc(abi::KhoVmalloc* preservation);
  // kho_alloc_preserve: ERR_PTR(-EINVAL) size 0, ERR_PTR(-E2BIG) above
  // MAX_PAGE_ORDER, ERR_PTR(-ENOMEM), or a preserve error.
  void* AllocPreserve(uint64_t size);
  void UnpreserveFree(void* mem);
  // True iff every page of [pa, pa + nr_pages pages) is covered by a
  // preserved block of the outgoing tree.
  bool IsPreserved(PhysAddr pa, uint64_t nr_pages);
  bool ScratchOverlap(PhysAddr pa, uint64_t len) const;

  // Restore (incoming). NULL + WARN_ON_ONCE for an address that is not a
  // preserved head still waiting to be restored.
  struct folio* RestoreFolio(PhysAddr pa);
  struct page* RestorePages(PhysAddr pa, uint64_t nr_pages);
  // True iff |pa| is page-aligned RAM whose page carries the KHO tag: the
  // head of a block the previous kernel preserved that nobody has restored
  // yet. Reads the tag only; restores nothing. |order| (optional) receives
  // the block's order.
  bool IsPreservedHead(PhysAddr pa, unsigned* order = nullptr) const;
  void* RestoreVmalloc(const abi::KhoVmalloc* preservation);
  void RestoreFree(void* mem);

  // Subtrees of the root FDT.
  int AddSubtree(absl::string_view name, const void* blob, uint64_t size);
  void RemoveSubtree(const void* blob);
  int RetrieveSubtree(absl::string_view name, uint64_t* phys, uint64_t* size) const;

  // Inspection.
  const std::vector<abi::KhoScratch>& scratch() const { return scratch_; }
  // The outgoing tracker of this kernel's profile (never null; not ready()
  // before Init or after a failed Init).
  PreservationTracker* tracker() { return tracker_.get(); }
  // The outgoing radix tree: null unless the profile's tracker is a ready
  // radix tree.
  RadixTree* out_tree();
  PhysAddr out_fdt() const { return out_fdt_; }
  PhysAddr in_fdt() const { return PhysAddr(in_fdt_phys_); }
  // The handover record this kernel booted with (all zero on a cold boot),
  // whether or not it was accepted.
  const abi::KhoData& incoming_handover() const { return incoming_handover_; }
  // Blocks reserved at retrieval whose head was never restored.
  uint64_t UnrestoredBlocks() const;
  uint64_t retrieved_blocks() const { return retrieved_blocks_; }
  uint64_t incoming_kexec_count() const { return in_kexec_count_; }
  const std::string& previous_release() const { return previous_release_; }
  // Bytes recovered by extended scratch (0 unless enabled on a KHO boot).
  uint64_t extended_scratch_bytes() const { return extended_scratch_bytes_; }
  KhoDebugView DebugView() const;

 private:
  class NodeMemory;

  int PreserveOrder(uint64_t pfn, unsigned order);
  void UnpreserveRange(uint64_t start_pfn, uint64_t end_pfn);
  // The deterministic split kho_preserve_pages, unpreserve and restore use.
  unsigned SplitOrder(uint64_t pfn, uint64_t end_pfn, bool numa_bounded) const;
  struct page* RestorePage(PhysAddr pa, bool is_folio);
  void ReserveScratch();
  void ReleaseScratchAsCma();
  int RetrieveMemory();
  bool ReadIncomingMetadata();
  std::vector<KhoDebugView::Blob> ListSubtrees(PhysAddr fdt) const;
  SubtreeLayout subtree_layout() const {
    return HasBlobSubtrees() ? SubtreeLayout::kBlobSize : SubtreeLayout::kFdtV1;
  }

  KernelContext& ctx_;
  mm::Mm& mm_;
  const KhoConfig config_;
  KhoProfile profile_;
  bool enabled_ = false;

  std::vector<abi::KhoScratch> scratch_;
  PhysAddr scratch_table_;  // where this kernel keeps the table
  // Cold boot: memblock holds the regions until Init releases them as CMA.
  bool scratch_reserved_here_ = false;

  std::unique_ptr<NodeMemory> node_memory_;
  std::unique_ptr<PreservationTracker> tracker_;
  mutable absl::Mutex fdt_mu_;  // kho_out.lock: protects the root FDT
  PhysAddr out_fdt_;
  // What the root FDT's preserved-memory-map holds now.
  PhysAddr published_map_ ABSL_GUARDED_BY(fdt_mu_);
  void* metadata_blob_ = nullptr;

  const abi::KhoData incoming_handover_;
  uint64_t in_fdt_phys_ = 0;
  // The incoming preserved-memory-map: radix root or first kho-v1 chunk.
  uint64_t in_memory_map_ = 0;
  uint64_t retrieved_blocks_ = 0;
  std::vector<PhysAddr> retrieved_heads_;
  uint64_t in_kexec_count_ = 0;
  std::string previous_release_;
  uint64_t extended_scratch_bytes_ = 0;
};

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_KHO_H_

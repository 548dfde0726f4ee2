// Inspecting a machine's handover state the way debugfs would show it, and
// exporting it as a machine image an external tool can decode.
//
// Machine image ("KHOSIMG1", version 1): a sparse file whose byte at offset
// P is the byte at physical address P, written only for what the next
// kernel would read: every block of the outgoing KHO tracker (which
// includes the root FDT and every subtree blob), the tracker's own node
// pages, and the boot-memory (scratch) table. Physical page 0 is never RAM,
// so the first 4 KiB hold the ImageHeader below instead; the range table
// (ImageRange entries) follows the highest physical address, at
// ranges_offset. All fields are little-endian.
#ifndef KHOSIM_SCENARIO_INSPECT_H_
#define KHOSIM_SCENARIO_INSPECT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "khosim/abi/kho_data.h"
#include "khosim/machine/machine.h"

namespace khosim::scenario {

inline constexpr char kImageMagic[8] = {'K', 'H', 'O', 'S', 'I', 'M', 'G', '1'};

struct __attribute__((packed)) ImageHeader {
  char magic[8];
  uint32_t version;      // 1
  uint32_t header_size;  // sizeof(ImageHeader)
  uint64_t page_size;
  abi::KhoData handover;  // the boot handover record of the kexec
  uint64_t phys_end;      // one past the highest physical address
  uint64_t ranges_offset;
  uint64_t nr_ranges;
  uint64_t generation;  // the kernel that wrote the state
  char cmdline[256];    // the next kernel's command line, NUL-padded
};
static_assert(sizeof(ImageHeader) <= 4096);

enum class ImageRangeKind : uint32_t {
  kPreservedBlock = 1,  // a block of the KHO tracker (root FDT and blobs included)
  kTrackerNode = 2,     // a radix tree node page
  kScratchTable = 3,    // the kho_scratch array named by the handover record
};

struct __attribute__((packed)) ImageRange {
  uint64_t phys;
  uint64_t len;
  uint32_t kind;   // ImageRangeKind
  uint32_t order;  // kPreservedBlock: the block's order
};
static_assert(sizeof(ImageRange) == 24);

// Human-readable handover state of the machine's running kernel:
// the handover record, the root FDTs (outgoing, and incoming on a KHO boot)
// as trees, boot memory, tracker statistics, LUO sessions, files and FLBs,
// and the outgoing LUO block chains once LUO has serialized.
std::string InspectText(Machine& m, const abi::KhoData& handover);

struct ImageStats {
  uint64_t ranges = 0;
  uint64_t bytes = 0;  // bytes of the ranges
  uint64_t file_size = 0;
};
// Writes the image of the running kernel's outgoing state with |handover|
// (the record built when the next image was loaded). The machine must not
// run on afterwards: every RAM page is made readable for the dump.
absl::StatusOr<ImageStats> WriteMachineImage(Machine& m, const abi::KhoData& handover,
                                             const std::string& next_cmdline,
                                             const std::string& path);

}  // namespace khosim::scenario

#endif  // KHOSIM_SCENARIO_INSPECT_H_

// The KHO root FDT: the one-page flattened device tree through which kernel A
// tells kernel B where everything preserved lives.
//
// Layout (kho-v3 and later; names and compatible strings in
// khosim/abi/kexec_handover.h):
//   /                      compatible = "kho-vN" (NUL-terminated string)
//                          preserved-memory-map = u64 phys of the tracker root
//     <subsystem name>     preserved-data = u64 phys of the subsystem's blob
//                          blob-size = u64 byte size of that blob
// kho-v1 (SubtreeLayout::kFdtV1) differs only in the children: one property
// `fdt` = u64 phys of the subsystem's sub-FDT, no size (kernel B can read
// the size from that FDT's header). Its `preserved-memory-map` is the first
// chunk of the serialized bitmaps, 0 until the handover is prepared.
// KHO uses the FDT only as a container: every u64 is stored as raw
// native-endian bytes (not the big-endian fdt64 convention), and there are no
// #address-cells, reg or phandles. Property values inside an FDT are only
// 4-byte aligned, so this component never dereferences them as u64.
//
// Buffers. Every function works on memory the caller owns (in the simulator:
// a mapped physical page). Nothing here allocates simulated memory, takes a
// lock or keeps state between calls; the caller serializes writers (upstream:
// kho_out.lock). The buffer must be 8-byte aligned (libfdt requires it).
//
// Outgoing side (kernel A): CreateRootFdt, AddSubtree, RemoveSubtree, and
// ListSubtrees for introspection. The FDT is kept "open" over the whole
// buffer (totalsize == buffer size), so adds consume the buffer's free space
// until it is full.
//
// Incoming side (kernel B): ValidateIncomingRoot, then RetrieveSubtree and
// ListSubtrees.
//
// Hostility contract. An incoming FDT is bytes written by another kernel and
// may be anything.
//   - ValidateIncomingRoot reads at most fdt_len bytes from fdt, whatever
//     they contain, and accepts only a structurally sound tree (header, block
//     bounds, and a full walk of the structure block) whose totalsize fits in
//     fdt_len. It never crashes, loops forever or reads out of bounds.
//   - Every other reader (ListSubtrees, RetrieveSubtree, RemoveSubtree,
//     AddSubtree, FdtTotalSize) first checks the header itself and treats a
//     bad one as "no tree"; after that it reads only inside
//     [fdt, fdt + totalsize), with every offset bounds-checked by libfdt. It
//     is therefore safe on arbitrary bytes provided the buffer really holds
//     totalsize readable bytes, which is exactly what ValidateIncomingRoot
//     establishes. Call ValidateIncomingRoot before trusting anything else.
//   - Malformed children are skipped or reported (has_data/has_size false,
//     -EINVAL), never dereferenced.
//   - Only the version 17 layout (header version >= 17, the one libfdt
//     writes) is read; older layouts count as a bad header rather than being
//     parsed.
//
// Name matching follows libfdt, as the kernel does: looking up "foo" also
// matches a child named "foo@<unit>" when no exact "foo" comes first, so
// AddSubtree("foo") fails with -EEXIST if "foo@1" exists (but not the other
// way round), and RetrieveSubtree("foo") may return "foo@1"'s data.
//
// Child order: libfdt inserts a new node directly after its parent's
// properties, i.e. before existing children. Document order (what
// ListSubtrees returns and what kernel B iterates) is therefore newest
// first, and RemoveSubtree's "first match" is the most recently added.
#ifndef KHOSIM_KHO_KHO_FDT_H_
#define KHOSIM_KHO_KHO_FDT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace khosim::kho {

// Builds a root FDT in buf: header, empty reservation map, root node with
// `compatible` and `preserved-memory-map` (native u64), then reopens it so
// that its totalsize is buf_size and later AddSubtree calls can grow it.
// Returns:
//   0        success;
//   -EINVAL  buf is null or not 8-byte aligned, buf_size exceeds INT_MAX, or
//            compatible is empty or contains a NUL byte;
//   -ENOMEM  buf_size is too small for the tree (any libfdt failure).
// On failure the contents of buf are unspecified.
int CreateRootFdt(void* buf, size_t buf_size, absl::string_view compatible,
                  uint64_t preserved_memory_map);

// Rewrites the root's `preserved-memory-map` in place (its size never
// changes): what kho-v1's finalize does each time it serializes. 0, or
// -EINVAL if the FDT header is bad or the property is missing or not 8
// bytes.
int SetPreservedMemoryMap(void* fdt, uint64_t preserved_memory_map);

// How a child of the root names its blob.
enum class SubtreeLayout {
  kBlobSize,  // kho-v3+: preserved-data and blob-size
  kFdtV1,     // kho-v1: fdt only
};

// Adds a child `name` under the root with `preserved-data` = blob_phys and
// `blob-size` = blob_size (native u64). The blob's pages are not preserved
// here; the caller must preserve them. Returns:
//   0        success;
//   -EINVAL  name is empty or contains '/' or a NUL byte (caller strings);
//   -EEXIST  a child with that name exists (libfdt matching, see above); the
//            FDT is not touched;
//   -ENOMEM  the FDT cannot be opened for writing (bad header) or any libfdt
//            step fails, including the buffer being full. If the node had
//            already been created it is deleted again, so the FDT stays valid
//            and holds exactly the nodes and properties it held before.
// With SubtreeLayout::kFdtV1 the child gets `fdt` = blob_phys only and
// blob_size is ignored (kho-v1's kho_add_subtree takes no size).
int AddSubtree(void* fdt, absl::string_view name, uint64_t blob_phys, uint64_t blob_size,
               SubtreeLayout layout = SubtreeLayout::kBlobSize);

// Deletes the first child (document order) whose `preserved-data` (`fdt`
// for kFdtV1) is exactly 8 bytes equal to blob_phys. Returns true if one was
// deleted; false, with no change, if none matches or the FDT header is bad.
// Never fails otherwise.
bool RemoveSubtree(void* fdt, uint64_t blob_phys, SubtreeLayout layout = SubtreeLayout::kBlobSize);

// One child of the root as found; has_* say whether the property exists with
// exactly 8 bytes (otherwise the value is 0).
struct SubtreeInfo {
  std::string name;
  bool has_data = false;
  uint64_t phys = 0;
  bool has_size = false;
  uint64_t size = 0;
};

// All children of the root in document order (newest first for a tree built
// by AddSubtree). Empty if the header is bad. On a corrupted structure block
// the walk stops at the first unreadable tag and returns what it found.
// With kFdtV1, has_data/phys come from `fdt` and has_size is always false.
std::vector<SubtreeInfo> ListSubtrees(const void* fdt,
                                      SubtreeLayout layout = SubtreeLayout::kBlobSize);

// Checks an incoming root FDT of fdt_len readable bytes, in this order:
// header (magic, version >= 17, block bounds, 8-byte alignment), totalsize <=
// fdt_len, full structure walk, root `compatible` equal to
// expected_compatible byte for byte (one NUL-terminated string, no prefix or
// string-list matching), `preserved-memory-map` present, exactly 8 bytes,
// non-zero. Returns 0 and stores the map in *preserved_memory_map (if not
// null), or -EINVAL with a human-readable reason in *why (if not null), e.g.
// "wrong compatible 'kho-v3' (expected 'kho-v4')". Nothing is written to
// *preserved_memory_map on failure. *failed (if not null) says which check
// refused the tree, so that the caller can log as upstream does.
enum class RootCheck {
  kPassed,
  kBadFdt,        // header, size or structure
  kNoCompatible,  // no compatible property at the root
  kIncompatible,  // compatible present, not the expected string
  kNoMemoryMap,   // preserved-memory-map missing, not 8 bytes, or zero
};
int ValidateIncomingRoot(const void* fdt, size_t fdt_len, absl::string_view expected_compatible,
                         uint64_t* preserved_memory_map, std::string* why,
                         RootCheck* failed = nullptr);

// Looks up the child `name` of a validated incoming root, in this order:
//   -EINVAL  phys is null;
//   -ENOENT  no such child (also: bad header, empty name, or a name holding
//            '/' or NUL, none of which can name a child);
//   -EINVAL  `preserved-data` missing or not 8 bytes;
//   (*phys is written here)
//   -EINVAL  `blob-size` missing or not 8 bytes, with *phys already written,
//            as upstream does;
//   0        success; *size written if size is not null.
// The upstream checks that run before these belong to the caller, in this
// order: "not a KHO boot" returns -ENOENT first, then a null phys -EINVAL.
// With kFdtV1 the data property is `fdt`, there is no blob-size check, and
// *size (if not null) is set to 0: kho-v1 hands over no size.
int RetrieveSubtree(const void* fdt, absl::string_view name, uint64_t* phys, uint64_t* size,
                    SubtreeLayout layout = SubtreeLayout::kBlobSize);

// The header's totalsize (the bytes the FDT occupies, free space included),
// or 0 if the header is bad.
uint64_t FdtTotalSize(const void* fdt);

}  // namespace khosim::kho

#endif  // KHOSIM_KHO_KHO_FDT_H_

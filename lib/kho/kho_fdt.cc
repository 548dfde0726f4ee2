// The KHO root FDT over a caller-provided buffer.
//
// Lifecycle. Kernel A's KHO init maps one preserved page and calls
// CreateRootFdt, which writes the tree with libfdt's sequential-write API
// and then reopens it over the whole page, leaving the unused tail as free
// space. Subsystems then AddSubtree / RemoveSubtree through the read-write
// API until the kexec. Kernel B receives the page's address and length in the
// handover record, runs ValidateIncomingRoot before anything else reads the
// page, and afterwards looks children up with RetrieveSubtree.
//
// Safety. libfdt bounds-checks every offset against the header's block sizes
// once the header has been checked, so each entry point begins with
// TreeReadable(). Values are copied out with memcpy because property data is
// only 4-byte aligned, and every length is compared before the copy.
#include "khosim/kho/kho_fdt.h"

#include <libfdt.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "khosim/abi/kexec_handover.h"

namespace khosim::kho {
namespace {

// The FDT layout version libfdt writes; earlier ones keep full paths in node
// names and pad some property values, which we refuse to parse.
constexpr uint32_t kFdtVersion = 17;

// How much of a hostile string goes into an error message.
constexpr size_t kMaxQuotedBytes = 64;

// 0 when the tag stream is one well-nested tree of readable properties
// ending in FDT_END, else a libfdt error. Every step must move forward and
// there are at most size_dt_struct / 4 + 1 of them.
int CheckStructure(const void* fdt) {
  const uint64_t max_steps = fdt_size_dt_struct(fdt) / 4 + 1;
  int next = 0;
  uint64_t depth = 0;
  bool expect_end = false;
  for (uint64_t step = 0; step < max_steps; ++step) {
    const int offset = next;
    const uint32_t tag = fdt_next_tag(fdt, offset, &next);
    if (next < 0) return next;
    if (next <= offset) return -FDT_ERR_BADSTRUCTURE;
    if (expect_end && tag != FDT_END && tag != FDT_NOP) return -FDT_ERR_BADSTRUCTURE;
    switch (tag) {
      case FDT_NOP:
        break;
      case FDT_END:
        return depth == 0 ? 0 : -FDT_ERR_BADSTRUCTURE;
      case FDT_BEGIN_NODE:
        ++depth;
        break;
      case FDT_END_NODE:
        if (depth == 0) return -FDT_ERR_BADSTRUCTURE;
        if (--depth == 0) expect_end = true;
        break;
      case FDT_PROP: {
        const char* name = nullptr;
        int len = 0;
        if (fdt_getprop_by_offset(fdt, offset, &name, &len) == nullptr) return len;
        break;
      }
      default:
        return -FDT_ERR_BADSTRUCTURE;
    }
  }
  return -FDT_ERR_BADSTRUCTURE;
}

// libfdt's readers assume a sound tag stream: on some corrupt ones Debian's
// libfdt 1.6.1 loops forever (kho_fdt_fuzzer, finding-reader-hang). The
// readers therefore also require the bounded structure walk to pass.
// Only the header is read: what callers check before trusting totalsize.
bool HeaderReadable(const void* fdt) {
  return fdt != nullptr && fdt_check_header(fdt) == 0 && fdt_version(fdt) == kFdtVersion;
}

// The walk reads up to totalsize bytes: callers guarantee they are there.
bool TreeReadable(const void* fdt) { return HeaderReadable(fdt) && CheckStructure(fdt) == 0; }

// A child name the caller may legitimately ask for.
bool IsPlainNodeName(absl::string_view name) {
  return !name.empty() && name.find('/') == absl::string_view::npos &&
         name.find('\0') == absl::string_view::npos;
}

// Reads property `prop` of node `node` as a native u64. False if it is
// missing or not exactly 8 bytes.
bool GetU64(const void* fdt, int node, const char* prop, uint64_t* out) {
  int len = 0;
  const void* value = fdt_getprop(fdt, node, prop, &len);
  if (value == nullptr || len != static_cast<int>(sizeof(uint64_t))) return false;
  std::memcpy(out, value, sizeof(uint64_t));
  return true;
}

// True if a property value is exactly `expected` plus one terminating NUL:
// no prefix match, no trailing bytes, no second string of a string list.
bool IsExactString(const void* value, int len, absl::string_view expected) {
  if (value == nullptr || len < 1 || static_cast<size_t>(len) != expected.size() + 1) return false;
  const char* bytes = static_cast<const char*>(value);
  return bytes[expected.size()] == '\0' &&
         std::memcmp(bytes, expected.data(), expected.size()) == 0;
}

// The property that holds a child's blob address.
const char* DataProperty(SubtreeLayout layout) {
  return layout == SubtreeLayout::kFdtV1 ? abi::kPropSubFdtV1 : abi::kPropPreservedData;
}

int SetU64(void* fdt, int node, const char* prop, uint64_t value) {
  return fdt_setprop(fdt, node, prop, &value, sizeof(value));
}

// A property value from an untrusted tree, printable and bounded.
std::string Quote(const void* value, int len) {
  if (value == nullptr || len <= 0) return "''";
  absl::string_view bytes(static_cast<const char*>(value), static_cast<size_t>(len));
  if (bytes.back() == '\0') bytes.remove_suffix(1);
  const bool cut = bytes.size() > kMaxQuotedBytes;
  if (cut) bytes = bytes.substr(0, kMaxQuotedBytes);
  return absl::StrCat("'", absl::CHexEscape(bytes), cut ? "'..." : "'");
}

int Reject(std::string* why, std::string reason) {
  if (why != nullptr) *why = std::move(reason);
  return -EINVAL;
}

}  // namespace

int CreateRootFdt(void* buf, size_t buf_size, absl::string_view compatible,
                  uint64_t preserved_memory_map) {
  if (buf == nullptr || reinterpret_cast<uintptr_t>(buf) % 8 != 0) return -EINVAL;
  if (buf_size > static_cast<size_t>(INT_MAX)) return -EINVAL;
  if (compatible.empty() || compatible.find('\0') != absl::string_view::npos) return -EINVAL;
  if (compatible.size() >= buf_size) return -ENOMEM;  // cannot fit, whatever else
  const std::string compat(compatible);
  const int size = static_cast<int>(buf_size);

  int err = fdt_create(buf, size);
  if (err == 0) err = fdt_finish_reservemap(buf);
  if (err == 0) err = fdt_begin_node(buf, "");
  if (err == 0) {
    err = fdt_property(buf, abi::kPropCompatible, compat.c_str(),
                       static_cast<int>(compat.size() + 1));
  }
  if (err == 0) {
    err = fdt_property(buf, abi::kPropPreservedMemoryMap, &preserved_memory_map,
                       sizeof(preserved_memory_map));
  }
  if (err == 0) err = fdt_end_node(buf);
  if (err == 0) err = fdt_finish(buf);
  if (err == 0) err = fdt_open_into(buf, buf, size);
  return err == 0 ? 0 : -ENOMEM;
}

int SetPreservedMemoryMap(void* fdt, uint64_t preserved_memory_map) {
  if (!TreeReadable(fdt)) return -EINVAL;
  int len = 0;
  if (fdt_getprop(fdt, 0, abi::kPropPreservedMemoryMap, &len) == nullptr ||
      len != static_cast<int>(sizeof(uint64_t))) {
    return -EINVAL;
  }
  return fdt_setprop_inplace(fdt, 0, abi::kPropPreservedMemoryMap, &preserved_memory_map,
                             sizeof(preserved_memory_map)) == 0
             ? 0
             : -EINVAL;
}

int AddSubtree(void* fdt, absl::string_view name, uint64_t blob_phys, uint64_t blob_size,
               SubtreeLayout layout) {
  if (!IsPlainNodeName(name) || name.size() > static_cast<size_t>(INT_MAX)) return -EINVAL;
  if (!TreeReadable(fdt)) return -ENOMEM;

  const int node = fdt_add_subnode_namelen(fdt, 0, name.data(), static_cast<int>(name.size()));
  if (node == -FDT_ERR_EXISTS) return -EEXIST;
  if (node < 0) return -ENOMEM;

  if (layout == SubtreeLayout::kFdtV1) {
    if (SetU64(fdt, node, abi::kPropSubFdtV1, blob_phys) == 0) return 0;
  } else if (SetU64(fdt, node, abi::kPropPreservedData, blob_phys) == 0 &&
             SetU64(fdt, node, abi::kPropBlobSize, blob_size) == 0) {
    return 0;
  }
  // Take the half-made node out again. Deleting only shrinks the tree, so
  // it cannot run out of space; the offset is still the node we created
  // because setprop only grows the tree after it.
  fdt_del_node(fdt, node);
  return -ENOMEM;
}

bool RemoveSubtree(void* fdt, uint64_t blob_phys, SubtreeLayout layout) {
  if (!TreeReadable(fdt)) return false;
  int node;
  fdt_for_each_subnode(node, fdt, 0) {
    uint64_t phys = 0;
    if (GetU64(fdt, node, DataProperty(layout), &phys) && phys == blob_phys) {
      return fdt_del_node(fdt, node) == 0;
    }
  }
  return false;
}

std::vector<SubtreeInfo> ListSubtrees(const void* fdt, SubtreeLayout layout) {
  std::vector<SubtreeInfo> out;
  if (!TreeReadable(fdt)) return out;
  int node;
  fdt_for_each_subnode(node, fdt, 0) {
    int len = 0;
    const char* name = fdt_get_name(fdt, node, &len);
    if (name == nullptr || len < 0) break;
    SubtreeInfo info;
    info.name.assign(name, static_cast<size_t>(len));
    info.has_data = GetU64(fdt, node, DataProperty(layout), &info.phys);
    if (layout == SubtreeLayout::kBlobSize) {
      info.has_size = GetU64(fdt, node, abi::kPropBlobSize, &info.size);
    }
    out.push_back(std::move(info));
  }
  return out;
}

int ValidateIncomingRoot(const void* fdt, size_t fdt_len, absl::string_view expected_compatible,
                         uint64_t* preserved_memory_map, std::string* why, RootCheck* failed) {
  RootCheck ignored;
  RootCheck& check = failed != nullptr ? *failed : ignored;
  check = RootCheck::kBadFdt;
  if (fdt == nullptr) return Reject(why, "no FDT");
  if (fdt_len < sizeof(struct fdt_header)) {
    return Reject(why, absl::StrCat("buffer of ", fdt_len, " bytes cannot hold an FDT header"));
  }
  if (int err = fdt_check_header(fdt); err != 0) {
    return Reject(why, absl::StrCat("bad FDT header: ", fdt_strerror(err)));
  }
  // Exactly the version libfdt writes: a later one would be rewritten by
  // libfdt's first modification, an earlier one has another node layout.
  if (fdt_version(fdt) != kFdtVersion) {
    return Reject(why, absl::StrCat("unsupported FDT version ", fdt_version(fdt)));
  }
  if (fdt_totalsize(fdt) > fdt_len) {
    return Reject(why, absl::StrCat("FDT totalsize ", fdt_totalsize(fdt), " exceeds the ", fdt_len,
                                    " bytes handed over"));
  }
  // A bounded walk first: Debian's libfdt 1.6.1 fdt_check_full never
  // returns on some corrupt tag streams (kho_fdt_fuzzer, finding-reader-hang).
  if (int err = CheckStructure(fdt); err != 0) {
    return Reject(why, absl::StrCat("corrupt FDT structure: ", fdt_strerror(err)));
  }
  if (int err = fdt_check_full(fdt, fdt_len); err != 0) {
    return Reject(why, absl::StrCat("corrupt FDT structure: ", fdt_strerror(err)));
  }
  // fdt_check_full does not look at the memory reservation map. KHO's root
  // has none: the map must be one aligned terminator entry placed before
  // the structure block, and the blocks must follow each other in order.
  {
    const uint64_t rsv = fdt_off_mem_rsvmap(fdt);
    const uint64_t rsv_end = rsv + sizeof(struct fdt_reserve_entry);
    if (rsv % 8 != 0 || rsv < sizeof(struct fdt_header) || rsv_end > fdt_off_dt_struct(fdt)) {
      return Reject(why, "misplaced memory reservation map");
    }
    struct fdt_reserve_entry entry;
    std::memcpy(&entry, static_cast<const char*>(fdt) + rsv, sizeof(entry));
    if (entry.address != 0 || entry.size != 0) {
      return Reject(why, "memory reservation map is not empty");
    }
    if (uint64_t{fdt_off_dt_struct(fdt)} + fdt_size_dt_struct(fdt) > fdt_off_dt_strings(fdt)) {
      return Reject(why, "structure and strings blocks overlap");
    }
  }

  int len = 0;
  const void* compat = fdt_getprop(fdt, 0, abi::kPropCompatible, &len);
  check = RootCheck::kNoCompatible;
  if (compat == nullptr) return Reject(why, "root has no compatible property");
  check = RootCheck::kIncompatible;
  if (!IsExactString(compat, len, expected_compatible)) {
    return Reject(why, absl::StrCat("wrong compatible ", Quote(compat, len), " (expected '",
                                    absl::CHexEscape(expected_compatible), "')"));
  }

  check = RootCheck::kNoMemoryMap;
  const void* map = fdt_getprop(fdt, 0, abi::kPropPreservedMemoryMap, &len);
  if (map == nullptr) return Reject(why, "root has no preserved-memory-map property");
  if (len != static_cast<int>(sizeof(uint64_t))) {
    return Reject(why, absl::StrCat("preserved-memory-map is ", len, " bytes, expected 8"));
  }
  uint64_t value = 0;
  std::memcpy(&value, map, sizeof(value));
  if (value == 0) return Reject(why, "preserved-memory-map is zero");
  if (preserved_memory_map != nullptr) *preserved_memory_map = value;
  check = RootCheck::kPassed;
  return 0;
}

int RetrieveSubtree(const void* fdt, absl::string_view name, uint64_t* phys, uint64_t* size,
                    SubtreeLayout layout) {
  if (phys == nullptr) return -EINVAL;
  if (!TreeReadable(fdt) || !IsPlainNodeName(name) || name.size() > static_cast<size_t>(INT_MAX)) {
    return -ENOENT;
  }
  const int node = fdt_subnode_offset_namelen(fdt, 0, name.data(), static_cast<int>(name.size()));
  if (node < 0) return -ENOENT;
  uint64_t value = 0;
  if (!GetU64(fdt, node, DataProperty(layout), &value)) return -EINVAL;
  *phys = value;
  if (layout == SubtreeLayout::kFdtV1) {
    if (size != nullptr) *size = 0;
    return 0;
  }
  if (!GetU64(fdt, node, abi::kPropBlobSize, &value)) return -EINVAL;
  if (size != nullptr) *size = value;
  return 0;
}

uint64_t FdtTotalSize(const void* fdt) { return HeaderReadable(fdt) ? fdt_totalsize(fdt) : 0; }

}  // namespace khosim::kho

// kho_fdt_fuzzer: the incoming KHO root FDT as hostile bytes.
//
// The input is the page kernel A handed over. It is checked twice with
// ValidateIncomingRoot: once with fdt_len = the input size (the buffer ends
// at a guard page, with ASan poisoning the alignment padding) and once as a
// whole zero-padded 4 KiB page. Where a check accepts the tree, the readers
// (ListSubtrees, RetrieveSubtree, FdtTotalSize) run on it and their answers
// are cross-checked; a copy of the accepted page then goes through
// AddSubtree / RemoveSubtree, which must leave a tree that still validates.
// The readers also run on unvalidated pages whose header claims at most one
// page, which kho_fdt.h promises is safe.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "fuzz_util.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/kho/kho_fdt.h"

namespace {

using khosim::fuzz::GuardedRegion;
using khosim::fuzz::RoundUp8;
namespace kho = khosim::kho;

constexpr size_t kPage = 4096;

// libfdt's name matching: "foo" also matches "foo@unit".
bool NameMatches(const std::string& node, absl::string_view want) {
  if (node == want) return true;
  return want.find('@') == absl::string_view::npos && node.size() > want.size() &&
         absl::string_view(node).substr(0, want.size()) == want && node[want.size()] == '@';
}

bool PlainName(absl::string_view name) {
  return !name.empty() && name.find('/') == absl::string_view::npos &&
         name.find('\0') == absl::string_view::npos;
}

uint32_t LoadBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// True if the blocks are laid out the way libfdt's read-write functions
// require (fdt_rw_probe_): reservation map 8-byte aligned after the header
// and terminated (a zero-size entry) before the structure block, then the
// structure block, then the strings, all inside totalsize.
// ValidateIncomingRoot checks this itself (fdt_check_full does not; finding
// 2 in README.md, fixed), so the writer contracts are asserted for every
// tree it accepts.
bool WritableLayout(const uint8_t* fdt) {
  const uint64_t total = LoadBe32(fdt + 4);
  const uint64_t off_struct = LoadBe32(fdt + 8);
  const uint64_t off_strings = LoadBe32(fdt + 12);
  const uint64_t off_rsvmap = LoadBe32(fdt + 16);
  const uint64_t size_strings = LoadBe32(fdt + 32);
  const uint64_t size_struct = LoadBe32(fdt + 36);
  if (off_rsvmap < 40 || off_rsvmap % 8 != 0) return false;
  uint64_t end_rsvmap = 0;
  for (uint64_t at = off_rsvmap; at + 16 <= off_struct && at + 16 <= kPage; at += 16) {
    bool zero_size = true;
    for (uint64_t i = 8; i < 16; ++i) zero_size = zero_size && fdt[at + i] == 0;
    if (zero_size) {
      end_rsvmap = at + 16;
      break;
    }
  }
  return end_rsvmap != 0 && off_struct >= end_rsvmap && off_strings >= off_struct + size_struct &&
         total >= off_strings + size_strings;
}

bool SameList(const std::vector<kho::SubtreeInfo>& a, const std::vector<kho::SubtreeInfo>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].has_data != b[i].has_data || a[i].phys != b[i].phys ||
        a[i].has_size != b[i].has_size || a[i].size != b[i].size) {
      return false;
    }
  }
  return true;
}

// RetrieveSubtree must agree with the first ListSubtrees entry libfdt's
// matching selects.
void CheckRetrieveAgainstList(const void* fdt, const std::vector<kho::SubtreeInfo>& list,
                              absl::string_view name) {
  uint64_t phys = 0xdead;
  uint64_t size = 0xbeef;
  const int rc = kho::RetrieveSubtree(fdt, name, &phys, &size);
  if (!PlainName(name)) {
    KHOSIM_FUZZ_CHECK(rc == -ENOENT);
    return;
  }
  const kho::SubtreeInfo* hit = nullptr;
  for (const kho::SubtreeInfo& info : list) {
    if (NameMatches(info.name, name)) {
      hit = &info;
      break;
    }
  }
  if (hit == nullptr) {
    KHOSIM_FUZZ_CHECK(rc == -ENOENT);
    KHOSIM_FUZZ_CHECK(phys == 0xdead);
    return;
  }
  if (!hit->has_data) {
    KHOSIM_FUZZ_CHECK(rc == -EINVAL);
    KHOSIM_FUZZ_CHECK(phys == 0xdead);
    return;
  }
  KHOSIM_FUZZ_CHECK(phys == hit->phys);
  if (!hit->has_size) {
    KHOSIM_FUZZ_CHECK(rc == -EINVAL);
    KHOSIM_FUZZ_CHECK(size == 0xbeef);
    return;
  }
  KHOSIM_FUZZ_CHECK(rc == 0);
  KHOSIM_FUZZ_CHECK(size == hit->size);
}

// The readers on a tree whose buffer holds at least totalsize bytes.
void ExerciseReaders(const void* fdt, absl::string_view input_name, bool validated) {
  const std::vector<kho::SubtreeInfo> list = kho::ListSubtrees(fdt);
  const uint64_t total = kho::FdtTotalSize(fdt);
  if (total == 0) KHOSIM_FUZZ_CHECK(list.empty());
  uint64_t phys = 0;
  KHOSIM_FUZZ_CHECK(kho::RetrieveSubtree(fdt, "LUO", nullptr, nullptr) == -EINVAL);
  for (absl::string_view name :
       {absl::string_view("LUO"), absl::string_view(khosim::abi::kKexecMetadataName), input_name}) {
    if (validated) {
      CheckRetrieveAgainstList(fdt, list, name);
    } else {
      (void)kho::RetrieveSubtree(fdt, name, &phys, nullptr);
    }
  }
  if (!validated) return;
  for (const kho::SubtreeInfo& info : list) CheckRetrieveAgainstList(fdt, list, info.name);
}

// AddSubtree / RemoveSubtree on a private copy of a validated page.
void ExerciseWriters(const uint8_t* page, absl::string_view input_name, uint64_t input_phys) {
  static GuardedRegion region(kPage);
  static GuardedRegion before_region(kPage);
  uint8_t* fdt = region.Place(page, kPage, kPage);
  uint8_t* before = before_region.Place(page, kPage, kPage);
  const char* compat = khosim::abi::kKhoFdtCompatible;
  uint64_t map = 0;
  KHOSIM_FUZZ_CHECK(kho::ValidateIncomingRoot(fdt, kPage, compat, &map, nullptr) == 0);
  // Whatever validates is a layout libfdt's writers accept.
  KHOSIM_FUZZ_CHECK(WritableLayout(fdt));
  const bool strict = khosim::fuzz::StrictMode();

  auto still_valid = [&] {
    if (!strict) return;
    uint64_t now = 0;
    std::string why;
    const int rc = kho::ValidateIncomingRoot(fdt, kPage, compat, &now, &why);
    if (rc != 0) std::fprintf(stderr, "tree no longer validates: %s\n", why.c_str());
    KHOSIM_FUZZ_CHECK(rc == 0);
    KHOSIM_FUZZ_CHECK(now == map);
  };

  // One add with the input's name.
  std::vector<kho::SubtreeInfo> list = kho::ListSubtrees(fdt);
  int rc = kho::AddSubtree(fdt, input_name, input_phys, 0x1000);
  if (!PlainName(input_name)) KHOSIM_FUZZ_CHECK(rc == -EINVAL);
  if (rc == 0) {
    still_valid();
    uint64_t phys = 0;
    uint64_t size = 0;
    KHOSIM_FUZZ_CHECK(kho::RetrieveSubtree(fdt, input_name, &phys, &size) == 0);
    KHOSIM_FUZZ_CHECK(phys == input_phys && size == 0x1000);
    const std::vector<kho::SubtreeInfo> after = kho::ListSubtrees(fdt);
    KHOSIM_FUZZ_CHECK(after.size() == list.size() + 1);
    KHOSIM_FUZZ_CHECK(after.front().name == input_name);
  } else if (rc == -EEXIST || rc == -EINVAL) {
    // Untouched, header version included (finding 3 in README.md, fixed:
    // only version 17 validates).
    KHOSIM_FUZZ_CHECK(std::memcmp(fdt, before, 20) == 0);
    KHOSIM_FUZZ_CHECK(std::memcmp(fdt + 24, before + 24, kPage - 24) == 0);
    const uint32_t was = LoadBe32(before + 20);
    const uint32_t now = LoadBe32(fdt + 20);
    KHOSIM_FUZZ_CHECK(now == was);
  } else {
    KHOSIM_FUZZ_CHECK(rc == -ENOMEM);
    still_valid();
    KHOSIM_FUZZ_CHECK(SameList(list, kho::ListSubtrees(fdt)));
  }

  // Remove: by the input's address, then by each listed address.
  list = kho::ListSubtrees(fdt);
  std::vector<uint64_t> targets = {input_phys ^ 1, input_phys};
  for (const kho::SubtreeInfo& info : list) {
    if (info.has_data && targets.size() < 8) targets.push_back(info.phys);
  }
  for (uint64_t target : targets) {
    list = kho::ListSubtrees(fdt);
    size_t first = list.size();
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i].has_data && list[i].phys == target) {
        first = i;
        break;
      }
    }
    const bool removed = kho::RemoveSubtree(fdt, target);
    if (removed) KHOSIM_FUZZ_CHECK(first != list.size());
    if (strict) KHOSIM_FUZZ_CHECK(removed == (first != list.size()));
    still_valid();
    if (removed) {
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(first));
      KHOSIM_FUZZ_CHECK(SameList(list, kho::ListSubtrees(fdt)));
    }
  }

  // Fill the page until libfdt runs out of room; the failing add must roll
  // back completely.
  for (int i = 0; i < 128; ++i) {
    list = kho::ListSubtrees(fdt);
    const std::string name = absl::StrCat("fill-", i, "-", input_phys & 0xffff);
    rc = kho::AddSubtree(fdt, name, 0x200000 + static_cast<uint64_t>(i) * 0x1000, 8);
    if (rc == 0) continue;
    KHOSIM_FUZZ_CHECK(rc == -ENOMEM || rc == -EEXIST);
    still_valid();
    KHOSIM_FUZZ_CHECK(SameList(list, kho::ListSubtrees(fdt)));
    break;
  }
  still_valid();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuardedRegion tight_region(kPage);
  static GuardedRegion page_region(kPage);
  const size_t n = size < kPage ? size : kPage;
  const char* compat = khosim::abi::kKhoFdtCompatible;

  // A name and an address taken from the input's tail.
  std::string input_name;
  uint64_t input_phys = 0;
  if (size > 0) {
    const size_t len = data[size - 1] % 32;
    const size_t start = size - 1 >= len ? size - 1 - len : 0;
    input_name.assign(reinterpret_cast<const char*>(data + start), size - 1 - start);
    for (size_t i = 0; i < 8 && i < size; ++i) input_phys |= uint64_t{data[i]} << (8 * i);
    input_phys = (input_phys ^ 0x5a5a5a5a5a5a5a5aull) & ~uint64_t{0xfff};
  }

  // 1. Exactly the bytes handed over.
  const uint8_t* tight = tight_region.Place(data, n, RoundUp8(n), n);
  uint64_t map_tight = 0;
  std::string why;
  const int rc_tight = kho::ValidateIncomingRoot(tight, n, compat, &map_tight, &why);
  if (rc_tight == 0) {
    KHOSIM_FUZZ_CHECK(map_tight != 0);
    KHOSIM_FUZZ_CHECK(kho::FdtTotalSize(tight) <= n);
    ExerciseReaders(tight, input_name, /*validated=*/true);
  } else {
    KHOSIM_FUZZ_CHECK(rc_tight == -EINVAL);
    KHOSIM_FUZZ_CHECK(!why.empty());
  }

  // 2. The same bytes as a whole page.
  uint8_t* page = page_region.Place(data, n, kPage);
  uint64_t map_page = 0;
  const int rc_page = kho::ValidateIncomingRoot(page, kPage, compat, &map_page, nullptr);
  KHOSIM_FUZZ_CHECK(rc_page == 0 || rc_page == -EINVAL);
  if (rc_tight == 0) {
    // More readable bytes behind a valid tree change nothing.
    KHOSIM_FUZZ_CHECK(rc_page == 0);
    KHOSIM_FUZZ_CHECK(map_page == map_tight);
  }
  // Another expected version, and an absurd length, reject or agree.
  uint64_t map_v3 = 0;
  if (kho::ValidateIncomingRoot(page, kPage, khosim::abi::kKhoCompatV3, &map_v3, nullptr) == 0) {
    KHOSIM_FUZZ_CHECK(rc_page != 0);
  }
  KHOSIM_FUZZ_CHECK(kho::ValidateIncomingRoot(page, 7, compat, nullptr, &why) == -EINVAL);
  KHOSIM_FUZZ_CHECK(kho::ValidateIncomingRoot(nullptr, kPage, compat, nullptr, nullptr) == -EINVAL);

  if (rc_page == 0) {
    ExerciseReaders(page, input_name, /*validated=*/true);
    ExerciseWriters(page, input_name, input_phys);
  } else if (kho::FdtTotalSize(page) <= kPage) {
    // kho_fdt.h: the readers only need totalsize readable bytes.
    ExerciseReaders(page, input_name, /*validated=*/false);
  }
  return 0;
}

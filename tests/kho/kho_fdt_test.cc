// Unit tests for the KHO root FDT: building it, adding, listing, removing and
// retrieving subtrees, rollback when the page is full, and validation of
// incoming (hostile) trees, including a randomized mutation loop that must
// stay clean under AddressSanitizer.
#include "khosim/kho/kho_fdt.h"

#include <libfdt.h>

#include <bit>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "khosim/abi/kexec_handover.h"

namespace khosim::kho {
namespace {

static_assert(std::endian::native == std::endian::little, "tests assume a little-endian host");
static_assert(__STDCPP_DEFAULT_NEW_ALIGNMENT__ >= 8, "heap buffers must satisfy libfdt alignment");

constexpr size_t kPage = 4096;
constexpr uint64_t kMap = 0x1122334455667788;

// Heap buffers of exactly the requested size, so that AddressSanitizer
// catches a read one byte past the end.
using Bytes = std::vector<uint8_t>;

Bytes FreshRoot(size_t size = kPage, uint64_t map = kMap) {
  Bytes buf(size);
  EXPECT_EQ(CreateRootFdt(buf.data(), buf.size(), abi::kKhoFdtCompatible, map), 0);
  return buf;
}

bool SameSubtrees(const std::vector<SubtreeInfo>& a, const std::vector<SubtreeInfo>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].has_data != b[i].has_data || a[i].phys != b[i].phys ||
        a[i].has_size != b[i].has_size || a[i].size != b[i].size) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> Names(const void* fdt) {
  std::vector<std::string> names;
  for (const SubtreeInfo& s : ListSubtrees(fdt)) names.push_back(s.name);
  return names;
}

// The structure block of a tree, the part that holds nodes and properties.
Bytes StructBlock(const Bytes& fdt) {
  const uint8_t* p = fdt.data() + fdt_off_dt_struct(fdt.data());
  return Bytes(p, p + fdt_size_dt_struct(fdt.data()));
}

// Hand-crafted trees with libfdt's sequential-write API. Starts the root
// node; the caller adds properties and children, then Finish() closes the
// root and reopens the tree over a whole page, as kernel A leaves it.
class TreeWriter {
 public:
  TreeWriter() : buf_(kPage) {
    Check(fdt_create(buf_.data(), static_cast<int>(buf_.size())));
    Check(fdt_finish_reservemap(buf_.data()));
    Check(fdt_begin_node(buf_.data(), ""));
  }

  // A root with the expected compatible and a valid map.
  static TreeWriter KhoRoot() {
    TreeWriter w;
    w.String(abi::kPropCompatible, abi::kKhoFdtCompatible).U64(abi::kPropPreservedMemoryMap, kMap);
    return w;
  }

  TreeWriter& Raw(const char* name, const void* value, int len) {
    Check(fdt_property(buf_.data(), name, value, len));
    return *this;
  }
  TreeWriter& String(const char* name, absl::string_view s) {
    std::string with_nul(s);
    return Raw(name, with_nul.c_str(), static_cast<int>(with_nul.size() + 1));
  }
  TreeWriter& U64(const char* name, uint64_t v) { return Raw(name, &v, sizeof(v)); }
  TreeWriter& U32(const char* name, uint32_t v) { return Raw(name, &v, sizeof(v)); }
  TreeWriter& Begin(const char* name) {
    Check(fdt_begin_node(buf_.data(), name));
    return *this;
  }
  TreeWriter& End() {
    Check(fdt_end_node(buf_.data()));
    return *this;
  }
  // A complete child with both properties.
  TreeWriter& Child(const char* name, uint64_t phys, uint64_t size) {
    return Begin(name).U64(abi::kPropPreservedData, phys).U64(abi::kPropBlobSize, size).End();
  }

  Bytes Finish(bool open = true) {
    Check(fdt_end_node(buf_.data()));
    Check(fdt_finish(buf_.data()));
    if (open) Check(fdt_open_into(buf_.data(), buf_.data(), static_cast<int>(buf_.size())));
    return buf_;
  }

 private:
  static void Check(int err) { ASSERT_EQ(err, 0) << fdt_strerror(err); }
  Bytes buf_;
};

// ---------------------------------------------------------------------------
// CreateRootFdt

TEST(KhoFdtCreateTest, RootCarriesCompatibleAndNativeMap) {
  Bytes buf = FreshRoot();
  ASSERT_EQ(fdt_check_full(buf.data(), buf.size()), 0);
  EXPECT_EQ(fdt_totalsize(buf.data()), kPage) << "open over the whole page";
  EXPECT_EQ(FdtTotalSize(buf.data()), kPage);

  int len = 0;
  const char* compat =
      static_cast<const char*>(fdt_getprop(buf.data(), 0, abi::kPropCompatible, &len));
  ASSERT_NE(compat, nullptr);
  EXPECT_EQ(len, 7);
  EXPECT_EQ(absl::string_view(compat, len), absl::string_view("kho-v4\0", 7));

  const uint8_t* map =
      static_cast<const uint8_t*>(fdt_getprop(buf.data(), 0, abi::kPropPreservedMemoryMap, &len));
  ASSERT_NE(map, nullptr);
  ASSERT_EQ(len, 8);
  const uint8_t little_endian[8] = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
  EXPECT_EQ(std::memcmp(map, little_endian, 8), 0) << "raw native bytes, not fdt64";

  EXPECT_TRUE(ListSubtrees(buf.data()).empty());
  uint64_t got = 0;
  std::string why;
  EXPECT_EQ(ValidateIncomingRoot(buf.data(), buf.size(), abi::kKhoFdtCompatible, &got, &why), 0)
      << why;
  EXPECT_EQ(got, kMap);
}

TEST(KhoFdtCreateTest, RejectsBadArguments) {
  Bytes buf(kPage + 8);
  EXPECT_EQ(CreateRootFdt(nullptr, kPage, "kho-v4", 1), -EINVAL);
  EXPECT_EQ(CreateRootFdt(buf.data() + 4, kPage, "kho-v4", 1), -EINVAL) << "misaligned";
  EXPECT_EQ(CreateRootFdt(buf.data(), kPage, "", 1), -EINVAL);
  EXPECT_EQ(CreateRootFdt(buf.data(), kPage, absl::string_view("kho\0v4", 6), 1), -EINVAL);
  EXPECT_EQ(CreateRootFdt(buf.data(), size_t{INT_MAX} + 1, "kho-v4", 1), -EINVAL);
}

TEST(KhoFdtCreateTest, TooSmallBufferIsNoMem) {
  for (size_t size : {size_t{0}, size_t{8}, size_t{40}, size_t{64}, size_t{96}}) {
    Bytes buf(size + 8);
    EXPECT_EQ(CreateRootFdt(buf.data(), size, "kho-v4", 1), -ENOMEM) << size;
  }
}

// ---------------------------------------------------------------------------
// AddSubtree / ListSubtrees / RemoveSubtree

TEST(KhoFdtAddTest, ListIsDocumentOrderNewestFirst) {
  Bytes buf = FreshRoot();
  ASSERT_EQ(AddSubtree(buf.data(), "memblock", 0x10000, 100), 0);
  ASSERT_EQ(AddSubtree(buf.data(), "LUO", 0x20000, 200), 0);
  ASSERT_EQ(AddSubtree(buf.data(), "kho_test", 0x30000, 300), 0);
  ASSERT_EQ(fdt_check_full(buf.data(), buf.size()), 0);

  // libfdt places a new node right after the parent's properties, so the
  // newest child comes first in the tree.
  std::vector<SubtreeInfo> list = ListSubtrees(buf.data());
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "kho_test");
  EXPECT_EQ(list[1].name, "LUO");
  EXPECT_EQ(list[2].name, "memblock");
  for (size_t i = 0; i < list.size(); ++i) {
    EXPECT_TRUE(list[i].has_data);
    EXPECT_TRUE(list[i].has_size);
    EXPECT_EQ(list[i].phys, 0x30000 - 0x10000 * i);
    EXPECT_EQ(list[i].size, 300 - 100 * i);
  }

  int len = 0;
  const int node = fdt_subnode_offset(buf.data(), 0, "LUO");
  ASSERT_GE(node, 0);
  const void* raw = fdt_getprop(buf.data(), node, abi::kPropPreservedData, &len);
  ASSERT_EQ(len, 8);
  uint64_t native = 0;
  std::memcpy(&native, raw, 8);
  EXPECT_EQ(native, 0x20000u) << "stored native-endian";
}

TEST(KhoFdtAddTest, InvalidNamesAreRejectedWithoutChange) {
  Bytes buf = FreshRoot();
  const Bytes before = buf;
  EXPECT_EQ(AddSubtree(buf.data(), "", 1, 1), -EINVAL);
  EXPECT_EQ(AddSubtree(buf.data(), "a/b", 1, 1), -EINVAL);
  EXPECT_EQ(AddSubtree(buf.data(), "/", 1, 1), -EINVAL);
  EXPECT_EQ(AddSubtree(buf.data(), absl::string_view("a\0b", 3), 1, 1), -EINVAL);
  EXPECT_EQ(buf, before);
}

TEST(KhoFdtAddTest, NameNeedNotBeNulTerminated) {
  Bytes buf = FreshRoot();
  const absl::string_view full = "memblockXYZ";
  ASSERT_EQ(AddSubtree(buf.data(), full.substr(0, 8), 0x1000, 8), 0);
  EXPECT_EQ(Names(buf.data()), std::vector<std::string>{"memblock"});
}

TEST(KhoFdtAddTest, DuplicateIsEexistAndLeavesBytesUntouched) {
  Bytes buf = FreshRoot();
  ASSERT_EQ(AddSubtree(buf.data(), "x", 0x1000, 16), 0);
  const Bytes before = buf;
  EXPECT_EQ(AddSubtree(buf.data(), "x", 0x2000, 32), -EEXIST);
  EXPECT_EQ(buf, before) << "byte for byte";
  EXPECT_EQ(fdt_check_full(buf.data(), buf.size()), 0);
  uint64_t phys = 0, size = 0;
  ASSERT_EQ(RetrieveSubtree(buf.data(), "x", &phys, &size), 0);
  EXPECT_EQ(phys, 0x1000u);
  EXPECT_EQ(size, 16u);
}

TEST(KhoFdtAddTest, UnitAddressMatchingFollowsLibfdt) {
  Bytes buf = FreshRoot();
  ASSERT_EQ(AddSubtree(buf.data(), "foo@1", 0x1000, 1), 0);
  // "foo" is found as "foo@1" by libfdt's lookup, so it counts as taken.
  EXPECT_EQ(AddSubtree(buf.data(), "foo", 0x2000, 2), -EEXIST);
  uint64_t phys = 0;
  EXPECT_EQ(RetrieveSubtree(buf.data(), "foo", &phys, nullptr), 0);
  EXPECT_EQ(phys, 0x1000u);
  // The other way round, the names differ.
  ASSERT_EQ(AddSubtree(buf.data(), "bar", 0x3000, 3), 0);
  EXPECT_EQ(AddSubtree(buf.data(), "bar@1", 0x4000, 4), 0);
}

TEST(KhoFdtAddTest, BadHeaderIsNoMem) {
  Bytes buf(kPage);
  EXPECT_EQ(AddSubtree(buf.data(), "x", 1, 1), -ENOMEM);
  EXPECT_EQ(AddSubtree(nullptr, "x", 1, 1), -ENOMEM);
  EXPECT_EQ(buf, Bytes(kPage));
}

TEST(KhoFdtAddTest, FillingThePageEndsInNoMemAndKeepsEverythingElse) {
  Bytes buf = FreshRoot();
  std::vector<std::string> added;
  int rc = 0;
  Bytes before;
  std::vector<SubtreeInfo> list_before;
  std::string failing;
  for (int i = 0; i < 1000; ++i) {
    const std::string name = absl::StrFormat("subsystem-%03d", i);
    before = buf;
    list_before = ListSubtrees(buf.data());
    rc = AddSubtree(buf.data(), name, 0x100000 + 0x1000 * i, i);
    if (rc != 0) {
      failing = name;
      break;
    }
    added.push_back(name);
  }
  ASSERT_EQ(rc, -ENOMEM);
  ASSERT_GT(added.size(), 10u);

  ASSERT_EQ(fdt_check_header(buf.data()), 0);
  ASSERT_EQ(fdt_check_full(buf.data(), buf.size()), 0);
  EXPECT_EQ(fdt_totalsize(buf.data()), kPage);
  EXPECT_EQ(StructBlock(buf), StructBlock(before)) << "no partial node remains";
  EXPECT_TRUE(SameSubtrees(ListSubtrees(buf.data()), list_before));
  uint64_t phys = 0, size = 0;
  EXPECT_EQ(RetrieveSubtree(buf.data(), failing, &phys, &size), -ENOENT);
  for (size_t i = 0; i < added.size(); ++i) {
    ASSERT_EQ(RetrieveSubtree(buf.data(), added[i], &phys, &size), 0) << added[i];
    EXPECT_EQ(phys, 0x100000 + 0x1000 * i);
    EXPECT_EQ(size, i);
  }
  std::string why;
  EXPECT_EQ(ValidateIncomingRoot(buf.data(), buf.size(), abi::kKhoFdtCompatible, nullptr, &why), 0)
      << why;

  // Removing one subtree gives the space back.
  ASSERT_TRUE(RemoveSubtree(buf.data(), 0x100000));
  EXPECT_EQ(AddSubtree(buf.data(), "subsystem-000", 0x100000, 0), 0);
}

// Sweeps the page size byte by byte so that the add fails at each of its
// steps: creating the node, its first property, its second property. Each
// failure must leave the tree as it was; success needs the exact room.
TEST(KhoFdtAddTest, EveryFailurePointRollsBack) {
  // Costs in the FDT format: a node "node" is BEGIN_NODE + "node\0" padded
  // to 8 + END_NODE = 16 bytes; each u64 property is a 12-byte header + 8
  // bytes of value; the names "preserved-data" and "blob-size" are new
  // strings of 15 and 10 bytes.
  constexpr uint64_t kNode = 16, kProp = 20;
  constexpr uint64_t kNeeded = kNode + kProp + 15 + kProp + 10;
  int failures_after_node = 0, failures_after_first_prop = 0, successes = 0;
  for (size_t size = 96; size <= 256; ++size) {
    Bytes buf(size);
    if (CreateRootFdt(buf.data(), size, abi::kKhoFdtCompatible, kMap) != 0) continue;
    const uint64_t used = fdt_off_dt_strings(buf.data()) + fdt_size_dt_strings(buf.data());
    const uint64_t room = size - used;
    const Bytes before = buf;
    const int rc = AddSubtree(buf.data(), "node", 0xabc000, 0x10);
    ASSERT_EQ(fdt_check_full(buf.data(), size), 0) << size;
    EXPECT_EQ(rc == 0, room >= kNeeded) << "size " << size << " room " << room;
    if (rc == 0) {
      ++successes;
      continue;
    }
    ASSERT_EQ(rc, -ENOMEM);
    if (room >= kNode + kProp + 15) {
      ++failures_after_first_prop;
    } else if (room >= kNode) {
      ++failures_after_node;
    }
    EXPECT_EQ(StructBlock(buf), StructBlock(before)) << size;
    EXPECT_TRUE(ListSubtrees(buf.data()).empty()) << size;
    uint64_t map = 0;
    EXPECT_EQ(ValidateIncomingRoot(buf.data(), size, abi::kKhoFdtCompatible, &map, nullptr), 0);
    EXPECT_EQ(map, kMap);
  }
  EXPECT_GT(successes, 0);
  EXPECT_GT(failures_after_node, 0);
  EXPECT_GT(failures_after_first_prop, 0);
}

TEST(KhoFdtRemoveTest, RemovesFirstMatchOnly) {
  Bytes buf = FreshRoot();
  ASSERT_EQ(AddSubtree(buf.data(), "a", 0x1000, 1), 0);
  ASSERT_EQ(AddSubtree(buf.data(), "b", 0x2000, 2), 0);
  ASSERT_EQ(AddSubtree(buf.data(), "c", 0x1000, 3), 0);
  ASSERT_EQ(Names(buf.data()), (std::vector<std::string>{"c", "b", "a"}));

  EXPECT_TRUE(RemoveSubtree(buf.data(), 0x1000));
  EXPECT_EQ(Names(buf.data()), (std::vector<std::string>{"b", "a"})) << "first in document order";
  EXPECT_TRUE(RemoveSubtree(buf.data(), 0x1000));
  EXPECT_EQ(Names(buf.data()), std::vector<std::string>{"b"});
  EXPECT_EQ(fdt_check_full(buf.data(), buf.size()), 0);

  const Bytes before = buf;
  EXPECT_FALSE(RemoveSubtree(buf.data(), 0x1000));
  EXPECT_FALSE(RemoveSubtree(buf.data(), 0x9999));
  EXPECT_EQ(buf, before);
}

TEST(KhoFdtRemoveTest, SkipsMalformedChildrenAndBadHeaders) {
  const uint32_t short_phys = 0x1000;
  Bytes buf = TreeWriter::KhoRoot()
                  .Begin("nodata")
                  .U64(abi::kPropBlobSize, 1)
                  .End()
                  .Begin("short")
                  .U32(abi::kPropPreservedData, short_phys)
                  .End()
                  .Child("good", 0x1000, 1)
                  .Finish();
  EXPECT_TRUE(RemoveSubtree(buf.data(), 0x1000));
  EXPECT_EQ(Names(buf.data()), (std::vector<std::string>{"nodata", "short"}));

  Bytes zeros(kPage);
  EXPECT_FALSE(RemoveSubtree(zeros.data(), 0));
  EXPECT_FALSE(RemoveSubtree(nullptr, 0));
}

TEST(KhoFdtListTest, ReportsMalformedProperties) {
  Bytes buf = TreeWriter::KhoRoot()
                  .Begin("empty")
                  .End()
                  .Begin("short")
                  .U32(abi::kPropPreservedData, 7)
                  .U32(abi::kPropBlobSize, 9)
                  .End()
                  .Child("good", 0x5000, 64)
                  .Finish();
  std::vector<SubtreeInfo> list = ListSubtrees(buf.data());
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "empty");
  EXPECT_FALSE(list[0].has_data);
  EXPECT_FALSE(list[0].has_size);
  EXPECT_EQ(list[1].name, "short");
  EXPECT_FALSE(list[1].has_data);
  EXPECT_FALSE(list[1].has_size);
  EXPECT_EQ(list[1].phys, 0u);
  EXPECT_EQ(list[2].name, "good");
  EXPECT_TRUE(list[2].has_data);
  EXPECT_EQ(list[2].phys, 0x5000u);
  EXPECT_TRUE(list[2].has_size);
  EXPECT_EQ(list[2].size, 64u);

  Bytes garbage(kPage, 0xa5);
  EXPECT_TRUE(ListSubtrees(garbage.data()).empty());
  EXPECT_TRUE(ListSubtrees(nullptr).empty());
}

// ---------------------------------------------------------------------------
// RetrieveSubtree

TEST(KhoFdtRetrieveTest, PresentSubtree) {
  Bytes buf = FreshRoot();
  ASSERT_EQ(AddSubtree(buf.data(), "LUO", 0x7000, 0x123), 0);
  uint64_t phys = 0, size = 0;
  ASSERT_EQ(RetrieveSubtree(buf.data(), "LUO", &phys, &size), 0);
  EXPECT_EQ(phys, 0x7000u);
  EXPECT_EQ(size, 0x123u);
  phys = 0;
  EXPECT_EQ(RetrieveSubtree(buf.data(), "LUO", &phys, nullptr), 0) << "size may be null";
  EXPECT_EQ(phys, 0x7000u);
}

TEST(KhoFdtRetrieveTest, ErrorsInUpstreamOrder) {
  const uint32_t four = 0x1234;
  Bytes buf = TreeWriter::KhoRoot()
                  .Begin("nodata")
                  .U64(abi::kPropBlobSize, 8)
                  .End()
                  .Begin("shortdata")
                  .U32(abi::kPropPreservedData, four)
                  .U64(abi::kPropBlobSize, 8)
                  .End()
                  .Begin("nosize")
                  .U64(abi::kPropPreservedData, 0xfeed000)
                  .End()
                  .Begin("shortsize")
                  .U64(abi::kPropPreservedData, 0xbeef000)
                  .U32(abi::kPropBlobSize, 8)
                  .End()
                  .Finish();
  constexpr uint64_t kUntouched = 0x5a5a5a5a5a5a5a5a;
  uint64_t phys = kUntouched, size = kUntouched;

  EXPECT_EQ(RetrieveSubtree(buf.data(), "missing", nullptr, &size), -EINVAL) << "null phys";
  EXPECT_EQ(RetrieveSubtree(buf.data(), "missing", &phys, &size), -ENOENT);
  EXPECT_EQ(RetrieveSubtree(buf.data(), "", &phys, &size), -ENOENT);
  EXPECT_EQ(RetrieveSubtree(buf.data(), "nodata/x", &phys, &size), -ENOENT);
  EXPECT_EQ(RetrieveSubtree(buf.data(), "nodata", &phys, &size), -EINVAL);
  EXPECT_EQ(RetrieveSubtree(buf.data(), "shortdata", &phys, &size), -EINVAL);
  EXPECT_EQ(phys, kUntouched);
  EXPECT_EQ(size, kUntouched);

  EXPECT_EQ(RetrieveSubtree(buf.data(), "nosize", &phys, &size), -EINVAL);
  EXPECT_EQ(phys, 0xfeed000u) << "phys is written before blob-size is checked";
  EXPECT_EQ(size, kUntouched);
  EXPECT_EQ(RetrieveSubtree(buf.data(), "shortsize", &phys, nullptr), -EINVAL);
  EXPECT_EQ(phys, 0xbeef000u);

  Bytes garbage(kPage, 0x11);
  EXPECT_EQ(RetrieveSubtree(garbage.data(), "nodata", &phys, &size), -ENOENT);
}

// ---------------------------------------------------------------------------
// ValidateIncomingRoot

int Validate(const Bytes& buf, std::string* why, uint64_t* map = nullptr) {
  return ValidateIncomingRoot(buf.data(), buf.size(), abi::kKhoFdtCompatible, map, why);
}

TEST(KhoFdtValidateTest, AcceptsWellFormedRoots) {
  std::string why;
  uint64_t map = 0;
  EXPECT_EQ(Validate(TreeWriter::KhoRoot().Child("LUO", 1, 2).Finish(), &why, &map), 0) << why;
  EXPECT_EQ(map, kMap);
  // A packed tree (totalsize smaller than the buffer) is fine as well.
  EXPECT_EQ(Validate(TreeWriter::KhoRoot().Finish(/*open=*/false), &why), 0) << why;
  // Older compatibles are accepted when that is what the reader expects.
  Bytes v3 = TreeWriter()
                 .String(abi::kPropCompatible, abi::kKhoCompatV3)
                 .U64(abi::kPropPreservedMemoryMap, 5)
                 .Finish();
  EXPECT_EQ(ValidateIncomingRoot(v3.data(), v3.size(), abi::kKhoCompatV3, nullptr, nullptr), 0);
}

TEST(KhoFdtValidateTest, CompatibleMustMatchExactly) {
  struct Case {
    std::string value;  // raw property bytes
    const char* label;
  };
  const Case cases[] = {
      {std::string("kho-v3\0", 7), "older version"},
      {std::string("kho-v\0", 6), "prefix"},
      {std::string("kho-v4x\0", 8), "longer"},
      {std::string("kho-v4", 6), "no terminating NUL"},
      {std::string("kho-v4\0\0", 8), "trailing NUL"},
      {std::string("kho-v4\0kho-v3\0", 14), "string list"},
      {std::string("kho-v3\0kho-v4\0", 14), "string list, match second"},
      {std::string("KHO-V4\0", 7), "case"},
      {std::string("", 0), "empty"},
  };
  for (const Case& c : cases) {
    Bytes buf = TreeWriter()
                    .Raw(abi::kPropCompatible, c.value.data(), static_cast<int>(c.value.size()))
                    .U64(abi::kPropPreservedMemoryMap, kMap)
                    .Finish();
    std::string why;
    uint64_t map = 0;
    EXPECT_EQ(Validate(buf, &why, &map), -EINVAL) << c.label;
    EXPECT_EQ(map, 0u) << c.label;
    EXPECT_NE(why.find("wrong compatible"), std::string::npos) << c.label << ": " << why;
  }
  Bytes v3 = TreeWriter()
                 .String(abi::kPropCompatible, "kho-v3")
                 .U64(abi::kPropPreservedMemoryMap, kMap)
                 .Finish();
  std::string why;
  EXPECT_EQ(Validate(v3, &why), -EINVAL);
  EXPECT_EQ(why, "wrong compatible 'kho-v3' (expected 'kho-v4')");

  Bytes none = TreeWriter().U64(abi::kPropPreservedMemoryMap, kMap).Finish();
  EXPECT_EQ(Validate(none, &why), -EINVAL);
  EXPECT_EQ(why, "root has no compatible property");
}

TEST(KhoFdtValidateTest, HostileCompatibleIsQuotedSafely) {
  std::string value(300, 'A');
  value[3] = '\n';
  value[4] = '\x01';
  value.push_back('\0');
  Bytes buf = TreeWriter()
                  .Raw(abi::kPropCompatible, value.data(), static_cast<int>(value.size()))
                  .U64(abi::kPropPreservedMemoryMap, kMap)
                  .Finish();
  std::string why;
  EXPECT_EQ(Validate(buf, &why), -EINVAL);
  EXPECT_LT(why.size(), 4 * 64 + 64u) << "at most 64 bytes, each escaped to at most 4: " << why;
  EXPECT_EQ(why.find('\n'), std::string::npos);
  EXPECT_NE(why.find("'..."), std::string::npos) << why;
}

TEST(KhoFdtValidateTest, PreservedMemoryMapMustBeEightNonZeroBytes) {
  std::string why;
  Bytes missing = TreeWriter().String(abi::kPropCompatible, abi::kKhoFdtCompatible).Finish();
  EXPECT_EQ(Validate(missing, &why), -EINVAL);
  EXPECT_EQ(why, "root has no preserved-memory-map property");

  Bytes zero = TreeWriter()
                   .String(abi::kPropCompatible, abi::kKhoFdtCompatible)
                   .U64(abi::kPropPreservedMemoryMap, 0)
                   .Finish();
  EXPECT_EQ(Validate(zero, &why), -EINVAL);
  EXPECT_EQ(why, "preserved-memory-map is zero");

  Bytes four = TreeWriter()
                   .String(abi::kPropCompatible, abi::kKhoFdtCompatible)
                   .U32(abi::kPropPreservedMemoryMap, 0x1000)
                   .Finish();
  EXPECT_EQ(Validate(four, &why), -EINVAL);
  EXPECT_EQ(why, "preserved-memory-map is 4 bytes, expected 8");

  const uint64_t two[2] = {0x1000, 0x2000};
  Bytes sixteen = TreeWriter()
                      .String(abi::kPropCompatible, abi::kKhoFdtCompatible)
                      .Raw(abi::kPropPreservedMemoryMap, two, sizeof(two))
                      .Finish();
  EXPECT_EQ(Validate(sixteen, &why), -EINVAL);

  // A map on a child does not count.
  Bytes child_only = TreeWriter()
                         .String(abi::kPropCompatible, abi::kKhoFdtCompatible)
                         .Begin("sub")
                         .U64(abi::kPropPreservedMemoryMap, kMap)
                         .End()
                         .Finish();
  EXPECT_EQ(Validate(child_only, &why), -EINVAL);
}

TEST(KhoFdtValidateTest, TruncatedBuffers) {
  Bytes good = TreeWriter::KhoRoot().Finish();
  std::string why;
  // The handover says fewer bytes than the header claims.
  EXPECT_EQ(ValidateIncomingRoot(good.data(), kPage - 1, abi::kKhoFdtCompatible, nullptr, &why),
            -EINVAL);
  EXPECT_NE(why.find("exceeds"), std::string::npos) << why;
  // Buffers too small to hold even the header are never read as one: copy
  // into exactly sized heap buffers so ASan would see an overrun.
  for (size_t len : {size_t{0}, size_t{1}, size_t{4}, size_t{39}}) {
    Bytes small(good.begin(), good.begin() + static_cast<long>(len));
    EXPECT_EQ(ValidateIncomingRoot(len ? small.data() : good.data(), len, abi::kKhoFdtCompatible,
                                   nullptr, &why),
              -EINVAL)
        << len;
  }
  // A packed tree cut short by one byte.
  Bytes packed = TreeWriter::KhoRoot().Child("LUO", 1, 2).Finish(/*open=*/false);
  const size_t total = fdt_totalsize(packed.data());
  Bytes cut(packed.begin(), packed.begin() + static_cast<long>(total - 1));
  EXPECT_EQ(ValidateIncomingRoot(cut.data(), cut.size(), abi::kKhoFdtCompatible, nullptr, &why),
            -EINVAL);
  EXPECT_EQ(ValidateIncomingRoot(nullptr, kPage, abi::kKhoFdtCompatible, nullptr, &why), -EINVAL);
}

TEST(KhoFdtValidateTest, RandomGarbageIsRejected) {
  std::mt19937_64 rng(1234);
  for (int i = 0; i < 200; ++i) {
    Bytes buf(kPage);
    for (uint8_t& b : buf) b = static_cast<uint8_t>(rng());
    if (i % 2 == 1) {
      // Give half of them a valid magic so the header checks do the work.
      const uint32_t magic = __builtin_bswap32(FDT_MAGIC);
      std::memcpy(buf.data(), &magic, 4);
    }
    std::string why;
    EXPECT_EQ(Validate(buf, &why), -EINVAL);
    EXPECT_FALSE(why.empty());
  }
  Bytes zeros(kPage);
  std::string why;
  EXPECT_EQ(Validate(zeros, &why), -EINVAL);
  EXPECT_EQ(FdtTotalSize(zeros.data()), 0u);
}

// Header fields rewritten in a valid tree (big-endian, as FDT headers are).
void SetHeader(Bytes& buf, size_t field_offset, uint32_t value) {
  const uint32_t be = __builtin_bswap32(value);
  std::memcpy(buf.data() + field_offset, &be, sizeof(be));
}

TEST(KhoFdtValidateTest, CorruptedHeaderOffsetsAreRejected) {
  const Bytes good = TreeWriter::KhoRoot().Child("LUO", 0x1000, 64).Finish();
  const uint32_t strings = fdt_off_dt_strings(good.data());
  struct Case {
    size_t field;
    uint32_t value;
    const char* label;
  };
  const Case cases[] = {
      {offsetof(fdt_header, off_dt_struct), 0xfffffff0, "struct offset far out"},
      {offsetof(fdt_header, off_dt_struct), kPage - 4, "struct block runs past the end"},
      {offsetof(fdt_header, off_dt_struct), strings, "struct offset points at strings"},
      {offsetof(fdt_header, off_dt_struct), 2, "struct offset misaligned"},
      {offsetof(fdt_header, size_dt_struct), 0x7fffffff, "struct size huge"},
      {offsetof(fdt_header, size_dt_struct), 8, "struct size too short"},
      {offsetof(fdt_header, off_dt_strings), 0xfffffff0, "strings offset far out"},
      {offsetof(fdt_header, size_dt_strings), 0x7fffffff, "strings size huge"},
      {offsetof(fdt_header, off_dt_strings), 0, "strings overlap the header"},
      {offsetof(fdt_header, off_mem_rsvmap), 0xfffffff0, "reserve map far out"},
      {offsetof(fdt_header, off_mem_rsvmap), 4, "reserve map inside header"},
      {offsetof(fdt_header, totalsize), 0xffffffff, "totalsize huge"},
      {offsetof(fdt_header, totalsize), 16, "totalsize below header"},
      {offsetof(fdt_header, version), 16, "version 16"},
      {offsetof(fdt_header, version), 1, "version 1"},
      {offsetof(fdt_header, last_comp_version), 18, "future last_comp_version"},
      {offsetof(fdt_header, magic), 0xd00dfeee, "bad magic"},
  };
  for (const Case& c : cases) {
    Bytes buf = good;
    SetHeader(buf, c.field, c.value);
    std::string why;
    EXPECT_EQ(Validate(buf, &why), -EINVAL) << c.label;
    EXPECT_FALSE(why.empty()) << c.label;
    if (FdtTotalSize(buf.data()) <= kPage) {
      // The other readers check the header themselves; those that pass it
      // must still stay inside the buffer.
      ListSubtrees(buf.data());
      uint64_t phys = 0;
      RetrieveSubtree(buf.data(), "LUO", &phys, nullptr);
    }
  }
}

TEST(KhoFdtValidateTest, CorruptedStructureIsRejected) {
  const Bytes good = TreeWriter::KhoRoot().Child("LUO", 0x1000, 64).Finish();
  const uint32_t off = fdt_off_dt_struct(good.data());
  std::string why;

  Bytes bad_tag = good;
  SetHeader(bad_tag, off, 0xdeadbeef);  // the root's BEGIN_NODE
  EXPECT_EQ(Validate(bad_tag, &why), -EINVAL);
  EXPECT_TRUE(ListSubtrees(bad_tag.data()).empty());

  Bytes no_end = good;
  const uint32_t struct_size = fdt_size_dt_struct(good.data());
  SetHeader(no_end, off + struct_size - 4, FDT_NOP);  // FDT_END
  EXPECT_EQ(Validate(no_end, &why), -EINVAL);

  Bytes named_root = good;
  named_root[off + 4] = 'r';  // the root's name must be empty
  EXPECT_EQ(Validate(named_root, &why), -EINVAL);

  // A property whose name offset points past the strings block.
  Bytes bad_name = good;
  const int prop = fdt_first_property_offset(good.data(), 0);
  ASSERT_GE(prop, 0);
  SetHeader(bad_name, off + prop + 8, 0x7fff0000);
  EXPECT_EQ(Validate(bad_name, &why), -EINVAL);
  ListSubtrees(bad_name.data());

  // A property length running past the structure block.
  Bytes bad_len = good;
  SetHeader(bad_len, off + prop + 4, 0x7ffffff0);
  EXPECT_EQ(Validate(bad_len, &why), -EINVAL);
  ListSubtrees(bad_len.data());

  // Misaligned base address.
  Bytes shifted(kPage + 4);
  std::memcpy(shifted.data() + 4, good.data(), kPage);
  EXPECT_EQ(ValidateIncomingRoot(shifted.data() + 4, kPage, abi::kKhoFdtCompatible, nullptr, &why),
            -EINVAL);
}

// Random byte mutations of a valid tree: whatever the result, nothing may
// crash or read outside the buffer (run under ASan/UBSan).
TEST(KhoFdtRobustnessTest, RandomMutationsNeverCrash) {
  Bytes base = FreshRoot();
  const char* names[] = {"memblock", "LUO", "kho_test", "kexec-metadata", "x@1"};
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_EQ(AddSubtree(base.data(), names[i], 0x1000 * (i + 1), 64 * (i + 1)), 0);
  }
  const size_t used = fdt_off_dt_strings(base.data()) + fdt_size_dt_strings(base.data());

  std::mt19937_64 rng(20260801);
  int accepted = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    Bytes buf = base;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int f = 0; f < flips; ++f) {
      // Mostly the header and the live tree; sometimes anywhere.
      const size_t limit = (rng() % 8 == 0) ? buf.size() : used;
      const size_t pos = rng() % limit;
      switch (rng() % 3) {
        case 0:
          buf[pos] = static_cast<uint8_t>(rng());
          break;
        case 1:
          buf[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        default:
          buf[pos] = (rng() % 2) ? 0x00 : 0xff;
          break;
      }
    }
    std::string why;
    uint64_t map = 0;
    const int rc = ValidateIncomingRoot(buf.data(), buf.size(), abi::kKhoFdtCompatible, &map, &why);
    ASSERT_TRUE(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
      ++accepted;
      EXPECT_NE(map, 0u);
    } else {
      EXPECT_FALSE(why.empty());
    }
    // Per the contract the other readers need totalsize readable bytes;
    // that is all they are given here, valid tree or not.
    if (FdtTotalSize(buf.data()) > buf.size()) continue;
    for (const SubtreeInfo& s : ListSubtrees(buf.data())) {
      uint64_t phys = 0, size = 0;
      const int r = RetrieveSubtree(buf.data(), s.name, &phys, &size);
      EXPECT_TRUE(r == 0 || r == -EINVAL || r == -ENOENT) << r;
    }
    for (const char* name : names) {
      uint64_t phys = 0;
      const int r = RetrieveSubtree(buf.data(), name, &phys, nullptr);
      EXPECT_TRUE(r == 0 || r == -EINVAL || r == -ENOENT) << r;
    }
    // The writers check the header too and stay inside totalsize.
    RemoveSubtree(buf.data(), 0x1000);
    const int add = AddSubtree(buf.data(), "new", 0x9000, 1);
    EXPECT_TRUE(add == 0 || add == -ENOMEM || add == -EEXIST) << add;
    if (rc == 0 && add == 0) {
      EXPECT_EQ(fdt_check_full(buf.data(), buf.size()), 0) << "an add keeps a valid tree valid";
    }
  }
  // Most mutations of a few bytes land in places that matter; a few hit
  // padding or values and still validate.
  EXPECT_LT(accepted, 2000);
}

// Found by kho_fdt_fuzzer: layouts libfdt's full check lets through but its
// writers refuse, and a version libfdt rewrites on first modification.
TEST(KhoFdtValidateTest, ReservationMapAndVersionMustBeWhatLibfdtWrites) {
  alignas(8) std::vector<uint8_t> buf(4096);
  ASSERT_EQ(CreateRootFdt(buf.data(), buf.size(), abi::kKhoFdtCompatible, 0x1000), 0);
  uint64_t map = 0;
  ASSERT_EQ(ValidateIncomingRoot(buf.data(), buf.size(), abi::kKhoFdtCompatible, &map, nullptr), 0);
  auto set_be32 = [&](size_t off, uint32_t v) {
    buf[off] = v >> 24;
    buf[off + 1] = v >> 16;
    buf[off + 2] = v >> 8;
    buf[off + 3] = v;
  };
  auto get_be32 = [&](size_t off) {
    return uint32_t{buf[off]} << 24 | uint32_t{buf[off + 1]} << 16 | uint32_t{buf[off + 2]} << 8 |
           buf[off + 3];
  };
  std::string why;
  {
    std::vector<uint8_t> saved = buf;
    set_be32(20, 18);  // version
    EXPECT_EQ(ValidateIncomingRoot(buf.data(), buf.size(), abi::kKhoFdtCompatible, &map, &why),
              -EINVAL);
    EXPECT_NE(why.find("version"), std::string::npos) << why;
    buf = saved;
  }
  {
    std::vector<uint8_t> saved = buf;
    const uint32_t rsv = get_be32(16);  // off_mem_rsvmap
    buf[rsv + 7] = 1;                   // a non-empty reservation entry
    EXPECT_EQ(ValidateIncomingRoot(buf.data(), buf.size(), abi::kKhoFdtCompatible, &map, &why),
              -EINVAL);
    buf = saved;
  }
  {
    set_be32(16, get_be32(16) + 4);  // misaligned reservation map
    EXPECT_EQ(ValidateIncomingRoot(buf.data(), buf.size(), abi::kKhoFdtCompatible, &map, &why),
              -EINVAL);
  }
}

}  // namespace
}  // namespace khosim::kho

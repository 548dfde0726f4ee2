// luo_incoming_fuzzer: kernel B's deserialization of LUO state (luo_ser, the
// session chain, the file chains, the FLB page) from bytes the input
// corrupted, on a real Machine.
//
// Kernel A (kho=on liveupdate=on) registers the test file handler and test
// FLBs, creates the sessions and preserves the test files the input's
// header asks for (format in luo_fuzz_format.h). A reboot hook that runs
// after LUO's, i.e. on the records LUO just wrote, applies the input's
// patch records and then runs an independent model of what kernel B must
// make of the patched bytes (the reference's restore rules, section 5.2
// and 5.3): a panic at early boot (restore-fail policy), an -EIO open with
// a given latched errno, or exactly these incoming sessions and files.
// Kernel B then registers the handler (or not), opens /dev/liveupdate,
// optionally takes the FLBs, retrieves every session and file, finishes
// them and checks the outcome against the model: exact errnos, names,
// tokens, values and FLB counts, Validate(), the allocator's invariants,
// and for an input that changed no byte a complete round trip in which
// nothing of kernel A stays preserved but what the fuzzer itself left.
//
// The test handler and FLBs trust their serialized data pointer (they are
// test code). LUO passes that pointer through unchecked, as upstream does,
// so a hostile one is the handler's business: the fuzzer registers them
// behind wrappers that refuse a record outside RAM (-EINVAL) before the
// test code reads it.
#include <libfdt.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "fuzz_util.h"
#include "khosim/abi/block.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/abi/luo.h"
#include "khosim/base/panic.h"
#include "khosim/fs/vfs.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_fdt.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/mm.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/machine.h"
#include "luo/test_handler.h"
#include "luo_fuzz_format.h"

namespace {

namespace abi = khosim::abi;
namespace fz = khosim::fuzz;
using fz::InputReader;
using khosim::Machine;
using khosim::testing::TestControl;

// The machine's page size is 4 KiB (LuoMachine): 51 sessions and 63 files
// per block.
constexpr uint64_t kPageBytes = 4096;
constexpr uint64_t kSessionsPerBlock =
    abi::KhoBlockEntriesPerBlock(kPageBytes, sizeof(abi::LuoSessionSer));
constexpr uint64_t kFilesPerBlock =
    abi::KhoBlockEntriesPerBlock(kPageBytes, sizeof(abi::LuoFileSer));
constexpr uint64_t kBlockHeaderBytes = sizeof(abi::KhoBlockHeader);
// Sizes of the test handler's and test FLBs' records (tests/luo/test_handler.cc).
constexpr uint64_t kTestRecordBytes = 24;
constexpr uint64_t kFlbRecordBytes = 16;
constexpr char kHandlerCompat[] = "test-file-v1";

bool Verbose() {
  static const bool verbose = std::getenv("KHOSIM_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

khosim::MachineConfig LuoMachine() {
  khosim::MachineConfig c;
  c.ram = 64 * khosim::kMiB;
  c.nodes = 1;
  c.page_size = kPageBytes;
  c.seed = 11;
  c.cmdline = "kho=on liveupdate=on";
  c.kernel_image_size = 512 * khosim::kKiB;
  c.early_alloc_bytes_per_node = 1 * khosim::kMiB;
  c.low_early_alloc_bytes = 1 * khosim::kMiB;
  return c;
}

// ---------------------------------------------------------------------------
// The test handler and FLBs behind address checks.

// |len| bytes at |pa| lie in one page of RAM, 8-byte aligned.
bool RecordReadable(uint64_t pa, uint64_t len) {
  if (pa == 0 || pa % 8 != 0 || pa % PAGE_SIZE + len > PAGE_SIZE) return false;
  return pfn_valid(static_cast<unsigned long>(pa / PAGE_SIZE));
}

const struct liveupdate_file_ops& BaseOps() { return *khosim::testing::test_file_handler.ops; }
const struct liveupdate_flb_ops& BaseFlbOps() { return *khosim::testing::test_flb.ops; }

int GuardedRetrieve(struct liveupdate_file_op_args* args) {
  if (!RecordReadable(args->serialized_data, kTestRecordBytes)) return -EINVAL;
  return BaseOps().retrieve(args);
}

bool GuardedCanFinish(struct liveupdate_file_op_args* args) {
  return !RecordReadable(args->serialized_data, kTestRecordBytes) || BaseOps().can_finish(args);
}

void GuardedFinish(struct liveupdate_file_op_args* args) {
  if (RecordReadable(args->serialized_data, kTestRecordBytes)) {
    BaseOps().finish(args);
    return;
  }
  TestControl().finish_status.emplace_back(UINT64_MAX, args->retrieve_status);
  TestControl().live_records--;
}

int GuardedFlbRetrieve(struct liveupdate_flb_op_args* args) {
  if (!RecordReadable(args->data, kFlbRecordBytes)) return -EINVAL;
  return BaseFlbOps().retrieve(args);
}

struct GuardedHandler {
  struct liveupdate_file_ops ops;
  struct liveupdate_flb_ops flb_ops;
  struct liveupdate_file_handler handler;
  struct liveupdate_flb flb;
  struct liveupdate_flb flb2;
};

GuardedHandler& Guarded() {
  static GuardedHandler g;
  static const bool ready = [] {
    g.ops = BaseOps();
    g.ops.retrieve = GuardedRetrieve;
    g.ops.can_finish = GuardedCanFinish;
    g.ops.finish = GuardedFinish;
    g.flb_ops = BaseFlbOps();
    g.flb_ops.retrieve = GuardedFlbRetrieve;
    g.handler.ops = &g.ops;
    static_assert(sizeof(kHandlerCompat) <= sizeof(g.handler.compatible));
    std::memcpy(g.handler.compatible, kHandlerCompat, sizeof(kHandlerCompat));
    g.flb.ops = &g.flb_ops;
    std::memcpy(g.flb.compatible, khosim::testing::test_flb.compatible, sizeof(g.flb.compatible));
    g.flb2.ops = &g.flb_ops;
    std::memcpy(g.flb2.compatible, khosim::testing::test_flb_2.compatible,
                sizeof(g.flb2.compatible));
    return true;
  }();
  (void)ready;
  return g;
}

// ---------------------------------------------------------------------------
// What kernel A builds.

struct Shape {
  int sessions = 0;
  bool long_names = false;
  bool wide_tokens = false;
  std::vector<uint64_t> files;  // per session
  bool flb = false;
  bool flb2 = false;
  uint8_t b = 0;  // kernel B bits
  uint64_t total_files = 0;
};

Shape ReadShape(InputReader& in) {
  Shape s;
  const uint8_t b0 = in.U8();
  const uint8_t b1 = in.U8();
  const uint8_t b2 = in.U8();
  s.b = in.U8();
  s.sessions = fz::LuoSessionCount(b0);
  s.long_names = (b0 & fz::kSessionsLongNames) != 0;
  s.wide_tokens = (b0 & fz::kSessionsWideTokens) != 0;
  for (int i = 0; i < s.sessions; ++i) s.files.push_back(fz::LuoSessionFiles(b0, b1, i));
  for (uint64_t n : s.files) s.total_files += n;
  s.flb = (b2 & fz::kALinkFlb) != 0;
  s.flb2 = (b2 & fz::kALinkFlb2) != 0;
  return s;
}

std::string SessionName(const Shape& s, int i) {
  std::string name = s.long_names ? absl::StrCat("session-", i, "-") : absl::StrCat("s", i);
  if (s.long_names) name.resize(abi::kLiveupdateSessionNameLength - 1, 'x');
  return name;
}
uint64_t Token(const Shape& s, uint64_t j) { return s.wide_tokens ? UINT64_MAX - j : j; }
uint64_t Value(int i, uint64_t j) { return 0x5100000000ull + (uint64_t(i) << 16) + j; }

// Kernel A: the handler, FLBs, sessions and files of the shape.
void BuildKernelA(Machine& m, const Shape& shape) {
  GuardedHandler& g = Guarded();
  KHOSIM_FUZZ_CHECK(liveupdate_register_file_handler(&g.handler) == 0);
  if (shape.flb) KHOSIM_FUZZ_CHECK(liveupdate_register_flb(&g.handler, &g.flb) == 0);
  if (shape.flb2) KHOSIM_FUZZ_CHECK(liveupdate_register_flb(&g.handler, &g.flb2) == 0);
  khosim::fs::Process& p = m.kernel().vfs().CreateProcess("vmm-a");
  p.SetRlimitNofile(1 << 20);
  const int dev = khosim::luo::OpenLiveupdate(p);
  KHOSIM_FUZZ_CHECK(dev >= 0);
  for (int i = 0; i < shape.sessions; ++i) {
    const int s = khosim::luo::CreateSession(p, dev, SessionName(shape, i));
    KHOSIM_FUZZ_CHECK(s >= 0);
    for (uint64_t j = 0; j < shape.files[i]; ++j) {
      const int fd = khosim::testing::OpenTestFile(p, Value(i, j));
      KHOSIM_FUZZ_CHECK(fd >= 0);
      KHOSIM_FUZZ_CHECK(khosim::luo::PreserveFd(p, s, fd, Token(shape, j)) == 0);
      KHOSIM_FUZZ_CHECK(p.Close(fd) == 0);
    }
  }
}

// ---------------------------------------------------------------------------
// The serialized records as kernel A wrote them, and the fuzzer's extras.

struct Layout {
  uint64_t ser = 0;
  uint64_t flb_page = 0;
  uint64_t flb_slots = 0;  // FLB records written, plus one, at most LUO_FLB_MAX
  std::vector<uint64_t> session_blocks;
  std::vector<uint64_t> session_entries;
  std::vector<uint64_t> file_blocks;
  std::vector<uint64_t> file_entries;
  std::vector<uint64_t> records;                // test handler records, in file order
  std::map<uint64_t, uint64_t> record_value;    // record -> the value A preserved
  std::map<uint64_t, std::string> flb_records;  // FLB record -> its FLB
  // The fuzzer's own pages (kernel A, before the reboot).
  uint64_t preserved_copy = 0;
  uint64_t unpreserved = 0;
  uint64_t order1 = 0;
  // KHO's kexec-metadata blob, which kho_init in kernel B restores and
  // frees after LUO's early boot and before the first open.
  uint64_t kexec_metadata = 0;
};

template <typename T>
T* At(uint64_t pa) {
  return static_cast<T*>(phys_to_virt(pa));
}

// Walks what kernel A serialized (trusted: nothing is patched yet).
void Collect(const abi::LuoSer& ser, const Shape& shape, Layout* out) {
  out->flb_page = ser.flbs_pa;
  int session = 0;
  for (uint64_t b = ser.sessions_pa; b != 0; b = At<abi::KhoBlockHeader>(b)->next) {
    out->session_blocks.push_back(b);
    const uint64_t count = At<abi::KhoBlockHeader>(b)->count;
    for (uint64_t k = 0; k < count; ++k, ++session) {
      const uint64_t e = b + kBlockHeaderBytes + k * sizeof(abi::LuoSessionSer);
      out->session_entries.push_back(e);
      uint64_t j = 0;
      for (uint64_t fb = At<abi::LuoSessionSer>(e)->file_set.files; fb != 0;
           fb = At<abi::KhoBlockHeader>(fb)->next) {
        out->file_blocks.push_back(fb);
        const uint64_t fcount = At<abi::KhoBlockHeader>(fb)->count;
        for (uint64_t f = 0; f < fcount; ++f, ++j) {
          const uint64_t fe = fb + kBlockHeaderBytes + f * sizeof(abi::LuoFileSer);
          out->file_entries.push_back(fe);
          const uint64_t data = At<abi::LuoFileSer>(fe)->data;
          out->records.push_back(data);
          out->record_value[data] = Value(session, j);
        }
      }
    }
  }
  KHOSIM_FUZZ_CHECK(session == shape.sessions);
  KHOSIM_FUZZ_CHECK(out->file_entries.size() == shape.total_files);
  const auto* hdr = At<abi::LuoFlbHeaderSer>(ser.flbs_pa);
  const auto* entries = reinterpret_cast<const abi::LuoFlbSer*>(hdr + 1);
  for (uint64_t i = 0; i < hdr->count; ++i) {
    out->flb_records[entries[i].data] =
        std::string(entries[i].name, strnlen(entries[i].name, sizeof(entries[i].name)));
  }
  out->flb_slots = std::min<uint64_t>(hdr->count + 1, abi::LuoFlbMax(PAGE_SIZE));
}

struct Slot {
  uint64_t pa;
  uint64_t width;
};

std::vector<Slot> FieldSlots(const Layout& l, uint8_t field) {
  std::vector<Slot> out;
  auto each = [&](const std::vector<uint64_t>& bases, uint64_t offset, uint64_t width) {
    for (uint64_t b : bases) out.push_back({b + offset, width});
  };
  switch (field) {
    case fz::kFieldSerCompatible:
      return {{l.ser, abi::kLuoCompatibleLength}};
    case fz::kFieldSerNum:
      return {{l.ser + offsetof(abi::LuoSer, liveupdate_num), 8}};
    case fz::kFieldSerSessions:
      return {{l.ser + offsetof(abi::LuoSer, sessions_pa), 8}};
    case fz::kFieldSerFlbs:
      return {{l.ser + offsetof(abi::LuoSer, flbs_pa), 8}};
    case fz::kFieldSessionNext:
      each(l.session_blocks, 0, 8);
      break;
    case fz::kFieldSessionCount:
      each(l.session_blocks, 8, 8);
      break;
    case fz::kFieldSessionName:
      each(l.session_entries, 0, abi::kLiveupdateSessionNameLength);
      break;
    case fz::kFieldSessionFiles:
      each(l.session_entries, offsetof(abi::LuoSessionSer, file_set), 8);
      break;
    case fz::kFieldSessionFileCount:
      each(l.session_entries, offsetof(abi::LuoSessionSer, file_set) + 8, 8);
      break;
    case fz::kFieldFileNext:
      each(l.file_blocks, 0, 8);
      break;
    case fz::kFieldFileCount:
      each(l.file_blocks, 8, 8);
      break;
    case fz::kFieldFileCompatible:
      each(l.file_entries, 0, abi::kLiveupdateCompatLength);
      break;
    case fz::kFieldFileData:
      each(l.file_entries, offsetof(abi::LuoFileSer, data), 8);
      break;
    case fz::kFieldFileToken:
      each(l.file_entries, offsetof(abi::LuoFileSer, token), 8);
      break;
    case fz::kFieldFlbPgcnt:
      return {{l.flb_page, 8}};
    case fz::kFieldFlbCount:
      return {{l.flb_page + 8, 8}};
    default: {
      const uint64_t offset = field == fz::kFieldFlbName   ? 0
                              : field == fz::kFieldFlbData ? offsetof(abi::LuoFlbSer, data)
                                                           : offsetof(abi::LuoFlbSer, count);
      const uint64_t width = field == fz::kFieldFlbName ? abi::kLiveupdateCompatLength : 8;
      for (uint64_t i = 0; i < l.flb_slots; ++i) {
        out.push_back(
            {l.flb_page + sizeof(abi::LuoFlbHeaderSer) + i * sizeof(abi::LuoFlbSer) + offset,
             width});
      }
      break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Patching (kernel A, in the reboot hook).

struct PatchValue {
  uint8_t bytes[256];
  size_t len = 0;
  uint64_t AsU64() const {
    uint64_t v = 0;
    std::memcpy(&v, bytes, std::min<size_t>(len, 8));
    return v;
  }
};

PatchValue ReadValue(InputReader& in, const std::vector<uint64_t>& refs) {
  PatchValue v;
  uint64_t word = 0;
  switch (in.U8() & 3) {
    case fz::kValPointer: {
      const uint64_t ref = refs[fz::LuoPickIndex(in.U8(), refs.size())];
      word = ref + static_cast<uint64_t>(int64_t{static_cast<int8_t>(in.U8())});
      break;
    }
    case fz::kValNumber:
      word = fz::kLuoNumbers[in.U8() % fz::kLuoNumberCount];
      break;
    case fz::kValU64:
      word = in.U64();
      break;
    default: {
      size_t got = 0;
      const uint8_t* p = in.Bytes(in.U8(), &got);
      if (got != 0) std::memcpy(v.bytes, p, got);
      v.len = got;
      return v;
    }
  }
  std::memcpy(v.bytes, &word, 8);
  v.len = 8;
  return v;
}

class Patcher {
 public:
  // Writes min(n, width) bytes at pa (inside one page) and records what
  // changed.
  void Write(uint64_t pa, const uint8_t* bytes, size_t n) {
    auto* dst = At<uint8_t>(pa);
    for (size_t i = 0; i < n; ++i) {
      if (dst[i] != bytes[i]) {
        dst[i] = bytes[i];
        changed_pages_.insert((pa + i) & ~uint64_t{PAGE_SIZE - 1});
      }
    }
  }
  void MarkSubtreeChanged() { subtree_changed_ = true; }
  bool changed() const { return subtree_changed_ || !changed_pages_.empty(); }
  bool PageChanged(uint64_t pa) const {
    return changed_pages_.count(pa & ~uint64_t{PAGE_SIZE - 1}) != 0;
  }
  size_t pages() const { return changed_pages_.size(); }

 private:
  std::set<uint64_t> changed_pages_;
  bool subtree_changed_ = false;
};

struct SubtreeState {
  bool present = true;
  uint64_t size = sizeof(abi::LuoSer);
};

int LuoNode(void* fdt) { return fdt_subnode_offset(fdt, 0, abi::kLuoSubtreeName); }

void ApplyPatches(InputReader& in, Machine& m, const Layout& l, const std::vector<uint64_t>& pages,
                  const std::vector<uint64_t>& refs, Patcher* patcher, SubtreeState* subtree) {
  void* fdt = phys_to_virt(m.kernel().kho().out_fdt().value());
  for (int i = 0; i < fz::kMaxLuoPatches && !in.empty(); ++i) {
    const uint8_t op = in.U8() & fz::kLuoPatchOpMask;
    if (op == fz::kOpRaw || op == fz::kOpWord) {
      const uint64_t page = pages[fz::LuoPickIndex(in.U8(), pages.size())];
      uint64_t offset = in.U16() % PAGE_SIZE;
      if (op == fz::kOpWord) offset &= ~uint64_t{7};
      PatchValue v;
      if (op == fz::kOpRaw) {
        size_t got = 0;
        const uint8_t* p = in.Bytes(in.U8(), &got);
        if (got != 0) std::memcpy(v.bytes, p, got);
        v.len = got;
      } else {
        v = ReadValue(in, refs);
        v.len = std::min<size_t>(v.len, 8);
      }
      patcher->Write(page + offset, v.bytes, std::min<uint64_t>(v.len, PAGE_SIZE - offset));
    } else if (op == fz::kOpSize) {
      const uint64_t size = ReadValue(in, refs).AsU64();
      const int node = LuoNode(fdt);
      if (!subtree->present || node < 0 || size == subtree->size) continue;
      KHOSIM_FUZZ_CHECK(fdt_setprop_inplace(fdt, node, abi::kPropBlobSize, &size, 8) == 0);
      subtree->size = size;
      patcher->MarkSubtreeChanged();
    } else if (op == fz::kOpDrop) {
      if (!subtree->present) continue;
      KHOSIM_FUZZ_CHECK(khosim::kho::RemoveSubtree(fdt, l.ser));
      subtree->present = false;
      patcher->MarkSubtreeChanged();
    } else {
      const uint8_t field = in.U8() % fz::kLuoFields;
      const uint8_t instance = in.U8();
      const PatchValue v = ReadValue(in, refs);
      const std::vector<Slot> slots = FieldSlots(l, field);
      if (slots.empty()) continue;
      const Slot& slot = slots[fz::LuoPickIndex(instance, slots.size())];
      patcher->Write(slot.pa, v.bytes, std::min<uint64_t>(v.len, slot.width));
    }
  }
}

// ---------------------------------------------------------------------------
// The model of kernel B, run on kernel A's memory right before the jump.

// Heads of the blocks kernel A preserved, with their orders: in kernel B
// each carries the KHO tag until something restores it.
class PreservedSet {
 public:
  void Record(khosim::kho::Kho& kho) {
    const khosim::kho::RadixGeometry& g = kho.out_tree()->geometry();
    kho.out_tree()->Walk([&](uint64_t key) {
      khosim::PhysAddr pa;
      unsigned order = 0;
      if (khosim::kho::DecodeKey(g, key, &pa, &order)) heads_[pa.value()] = order;
      return 0;
    });
  }
  bool Head(uint64_t pa) const { return heads_.count(pa) != 0; }
  bool Order0(uint64_t pa) const {
    auto it = heads_.find(pa);
    return it != heads_.end() && it->second == 0;
  }
  void Restored(uint64_t pa) { heads_.erase(pa); }

 private:
  std::map<uint64_t, unsigned> heads_;
};

struct ModelFile {
  std::string compat;
  uint64_t data = 0;
  uint64_t token = 0;
};
struct ModelSession {
  std::string name;
  std::vector<ModelFile> files;
};
struct ModelFlb {
  std::string name;
  uint64_t data = 0;
  uint64_t count = 0;
};

struct Model {
  bool panic = false;
  std::string why;   // of the panic
  bool luo = false;  // a LUO record was found
  uint64_t num = 0;
  bool flb_page = false;
  std::vector<ModelFlb> flbs;
  int open_err = 0;
  // What LUO holds after the first open; on an error, what it built before
  // it stopped (the failing session without files).
  std::vector<ModelSession> sessions;
};

const abi::KhoBlockHeader* Header(uint64_t pa) { return At<abi::KhoBlockHeader>(pa); }

// The blocks of the chain at |head| if kernel B accepts it: every block an
// unrestored order-0 preserved page, no cycle, at most KHO_MAX_BLOCKS
// blocks, every count in 1..cap.
bool ModelChain(uint64_t head, uint64_t cap, const PreservedSet& p, std::vector<uint64_t>* out) {
  std::unordered_set<uint64_t> seen;
  for (uint64_t b = head; b != 0; b = Header(b)->next) {
    if (!p.Order0(b) || !seen.insert(b).second || out->size() == abi::kKhoMaxBlocks) {
      return false;
    }
    out->push_back(b);
  }
  for (uint64_t b : *out) {
    const uint64_t count = Header(b)->count;
    if (count == 0 || count > cap) return false;
  }
  return true;
}

std::string Bounded(const char* s, size_t max) { return std::string(s, strnlen(s, max)); }

Model RunModel(const Layout& l, const SubtreeState& subtree, const PreservedSet& preserved,
               bool handler_in_b) {
  Model md;
  if (!subtree.present) return md;
  md.luo = true;
  if (subtree.size < sizeof(abi::LuoSer)) {
    md.panic = true;
    md.why = "short luo_ser";
    return md;
  }
  const abi::LuoSer ser = *At<abi::LuoSer>(l.ser);
  if (strncmp(ser.compatible, abi::kLuoCompatible, abi::kLuoCompatibleLength) != 0) {
    md.panic = true;
    md.why = "compatible";
    return md;
  }
  md.num = ser.liveupdate_num;
  std::vector<uint64_t> session_blocks;
  if (ser.sessions_pa != 0 &&
      !ModelChain(ser.sessions_pa, kSessionsPerBlock, preserved, &session_blocks)) {
    md.panic = true;
    md.why = "session chain";
    return md;
  }
  if (ser.flbs_pa != 0) {
    const auto* hdr = preserved.Head(ser.flbs_pa) ? At<abi::LuoFlbHeaderSer>(ser.flbs_pa) : nullptr;
    if (hdr == nullptr || hdr->pgcnt != abi::kLuoFlbPageCount ||
        hdr->count > abi::LuoFlbMax(PAGE_SIZE)) {
      md.panic = true;
      md.why = "FLB page";
      return md;
    }
    md.flb_page = true;
    const auto* entries = reinterpret_cast<const abi::LuoFlbSer*>(hdr + 1);
    for (uint64_t i = 0; i < hdr->count; ++i) {
      md.flbs.push_back(
          {Bounded(entries[i].name, sizeof(entries[i].name)), entries[i].data, entries[i].count});
    }
  }
  // Early boot restored the FLB page and freed luo_ser; kho_init then freed
  // its kexec-metadata blob.
  PreservedSet at_open = preserved;
  if (ser.flbs_pa != 0) at_open.Restored(ser.flbs_pa);
  at_open.Restored(l.ser);
  at_open.Restored(l.kexec_metadata);

  std::set<std::string> names;
  for (uint64_t b : session_blocks) {
    for (uint64_t k = 0; k < Header(b)->count && md.open_err == 0; ++k) {
      const abi::LuoSessionSer e =
          *At<abi::LuoSessionSer>(b + kBlockHeaderBytes + k * sizeof(abi::LuoSessionSer));
      ModelSession s;
      s.name = Bounded(e.name, sizeof(e.name) - 1);
      if (!names.insert(s.name).second) {
        md.open_err = -EEXIST;
        break;
      }
      md.sessions.push_back(s);
      if (e.file_set.files == 0) continue;
      std::vector<uint64_t> file_blocks;
      if (!ModelChain(e.file_set.files, kFilesPerBlock, at_open, &file_blocks)) {
        md.open_err = -EINVAL;
        break;
      }
      std::vector<ModelFile> files;
      std::set<uint64_t> tokens;
      for (uint64_t fb : file_blocks) {
        for (uint64_t f = 0; f < Header(fb)->count && md.open_err == 0; ++f) {
          const abi::LuoFileSer fe =
              *At<abi::LuoFileSer>(fb + kBlockHeaderBytes + f * sizeof(abi::LuoFileSer));
          ModelFile mf{Bounded(fe.compatible, sizeof(fe.compatible)), fe.data, fe.token};
          if (!tokens.insert(mf.token).second) {
            md.open_err = -EEXIST;  // tokens are unique within a session
          } else if (!handler_in_b || mf.compat != kHandlerCompat) {
            md.open_err = -ENOENT;
          }
          files.push_back(mf);
        }
      }
      if (md.open_err == 0 && files.size() != e.file_set.count) md.open_err = -EINVAL;
      if (md.open_err != 0) break;
      md.sessions.back().files = std::move(files);
    }
    if (md.open_err != 0) break;
  }
  return md;
}

// ---------------------------------------------------------------------------
// Kernel B.

struct Expect {
  const Shape& shape;
  const Layout& layout;
  const Patcher& patcher;
  const Model& model;
  bool pristine;
};

// The session model file whose record kernel B must find intact: A's
// record, untouched, and nothing else in the model refers to its page.
bool CleanRecord(const Expect& x, uint64_t data, uint64_t* value) {
  auto it = x.layout.record_value.find(data);
  if (it == x.layout.record_value.end() || x.patcher.PageChanged(data)) return false;
  int users = 0;
  for (const ModelSession& s : x.model.sessions) {
    for (const ModelFile& f : s.files) {
      users += (f.data & ~uint64_t{PAGE_SIZE - 1}) == data ? 1 : 0;
    }
  }
  for (const ModelFlb& f : x.model.flbs) {
    if ((f.data & ~uint64_t{PAGE_SIZE - 1}) == data) return false;
  }
  if (users != 1) return false;
  *value = it->second;
  return true;
}

struct FlbUse {
  struct liveupdate_flb* flb;
  bool got = false;
};

// flb_get_incoming right after the open, checked against the FLB page.
void GetFlbs(Machine& m, const Expect& x, std::vector<FlbUse>* flbs) {
  for (FlbUse& use : *flbs) {
    const std::string name(use.flb->compatible);
    const ModelFlb* entry = nullptr;
    for (const ModelFlb& f : x.model.flbs) {
      if (f.name == name) {
        entry = &f;
        break;
      }
    }
    void* obj = nullptr;
    const int rc = liveupdate_flb_get_incoming(use.flb, &obj);
    if (!x.model.flb_page) {
      KHOSIM_FUZZ_CHECK(rc == -ENODATA);
    } else if (entry == nullptr) {
      KHOSIM_FUZZ_CHECK(rc == -ENOENT);
    } else {
      auto rec = x.layout.flb_records.find(entry->data);
      const bool clean = rec != x.layout.flb_records.end() && rec->second == name &&
                         !x.patcher.PageChanged(entry->data);
      // A count already at LONG_MAX cannot take another reference.
      const bool at_top = static_cast<long>(entry->count) == LONG_MAX;
      if (clean) KHOSIM_FUZZ_CHECK(rc == (at_top ? -EOVERFLOW : 0));
      KHOSIM_FUZZ_CHECK(rc == 0 || rc == -EINVAL || (at_top && rc == -EOVERFLOW));
      if (at_top) KHOSIM_FUZZ_CHECK(rc != 0);
      if (rc == 0) {
        KHOSIM_FUZZ_CHECK(obj == phys_to_virt(entry->data));
        for (const auto& info : m.kernel().luo().Flbs()) {
          if (info.compatible != name) continue;
          KHOSIM_FUZZ_CHECK(info.incoming_retrieved);
          KHOSIM_FUZZ_CHECK(static_cast<uint64_t>(info.incoming_count) == entry->count + 1);
        }
      }
    }
    if (x.pristine) KHOSIM_FUZZ_CHECK(rc == (entry != nullptr ? 0 : -ENOENT));
    use.got = rc == 0;
    if (rc != 0) {
      // A failure is the same on every later call (7.3 latches it).
      KHOSIM_FUZZ_CHECK(liveupdate_flb_get_incoming(use.flb, &obj) == rc);
    }
  }
}

// Retrieves, checks and finishes one incoming session.
// |statuses| collects the retrieve_status each file's finish must see.
void ProcessSession(khosim::fs::Process& p, int dev, const Expect& x, const ModelSession& s,
                    std::multiset<int>* statuses) {
  namespace luo = khosim::luo;
  const int r = luo::RetrieveSession(p, dev, s.name);
  KHOSIM_FUZZ_CHECK(r >= 0);
  KHOSIM_FUZZ_CHECK(luo::RetrieveSession(p, dev, s.name) == -EINVAL);
  std::string name;
  KHOSIM_FUZZ_CHECK(luo::GetSessionName(p, r, &name) == 0 && name == s.name);
  std::set<uint64_t> tokens;
  for (const ModelFile& f : s.files) tokens.insert(f.token);
  if ((x.shape.b & fz::kBNoRetrieve) == 0) {
    std::set<uint64_t> done;
    for (const ModelFile& f : s.files) {
      if (!done.insert(f.token).second) continue;  // RETRIEVE_FD finds the first
      const int fd = luo::RetrieveFd(p, r, f.token);
      uint64_t value = 0;
      if (CleanRecord(x, f.data, &value)) {
        KHOSIM_FUZZ_CHECK(fd >= 0);
        KHOSIM_FUZZ_CHECK(khosim::testing::TestFileValue(p, fd) == value);
      }
      KHOSIM_FUZZ_CHECK(fd >= 0 || fd == -EINVAL);
      statuses->insert(fd >= 0 ? 1 : fd);
      const int again = luo::RetrieveFd(p, r, f.token);
      if (fd >= 0) {
        KHOSIM_FUZZ_CHECK(again >= 0 && p.PeekFile(again) == p.PeekFile(fd));
      } else {
        KHOSIM_FUZZ_CHECK(again == fd);
      }
    }
  } else {
    for (size_t i = 0; i < s.files.size(); ++i) statuses->insert(0);
  }
  uint64_t absent = 0x0bad0000;
  while (tokens.count(absent) != 0) ++absent;
  KHOSIM_FUZZ_CHECK(luo::RetrieveFd(p, r, absent) == -ENOENT);
  if ((x.shape.b & fz::kBCloseFinish) != 0) {
    KHOSIM_FUZZ_CHECK(p.Close(r) == 0);
  } else {
    KHOSIM_FUZZ_CHECK(luo::FinishSession(p, r) == 0);
    if (!tokens.empty()) KHOSIM_FUZZ_CHECK(luo::RetrieveFd(p, r, *tokens.begin()) == -ENOENT);
    KHOSIM_FUZZ_CHECK(luo::FinishSession(p, r) == 0);
    KHOSIM_FUZZ_CHECK(p.Close(r) == 0);
  }
}

std::vector<std::string> IncomingNames(Machine& m) {
  std::vector<std::string> out;
  for (const auto& s : m.kernel().luo().IncomingSessions()) out.push_back(s.name);
  return out;
}

// Kernel B after a boot without a panic. Returns what it did, for the
// verbose line.
std::string RunKernelB(Machine& m, const Expect& x) {
  namespace luo = khosim::luo;
  const Shape& shape = x.shape;
  const Model& md = x.model;
  luo::Luo& l = m.kernel().luo();
  KHOSIM_FUZZ_CHECK(l.enabled());
  KHOSIM_FUZZ_CHECK(l.incoming_liveupdate_num() == (md.luo ? md.num : 0));
  if (x.pristine) KHOSIM_FUZZ_CHECK(l.incoming_liveupdate_num() == 1);

  GuardedHandler& g = Guarded();
  const bool handler = (shape.b & fz::kBNoHandler) == 0;
  std::vector<FlbUse> flbs;
  if (handler) {
    KHOSIM_FUZZ_CHECK(liveupdate_register_file_handler(&g.handler) == 0);
    if ((shape.b & fz::kBNoFlb) == 0) {
      if (shape.flb) flbs.push_back({&g.flb});
      if (shape.flb2) flbs.push_back({&g.flb2});
      for (FlbUse& use : flbs) KHOSIM_FUZZ_CHECK(liveupdate_register_flb(&g.handler, use.flb) == 0);
    }
  }
  khosim::fs::Process& p = m.kernel().vfs().CreateProcess("vmm-b");
  p.SetRlimitNofile(1 << 20);
  const int dev = luo::OpenLiveupdate(p);
  std::vector<std::string> model_names;
  for (const ModelSession& s : md.sessions) model_names.push_back(s.name);
  KHOSIM_FUZZ_CHECK(l.deserialized());
  KHOSIM_FUZZ_CHECK(l.deserialize_error() == md.open_err);
  if (md.open_err != 0) {
    // Latched: every open fails, and what was built stays as it was.
    KHOSIM_FUZZ_CHECK(dev == -EIO);
    KHOSIM_FUZZ_CHECK(luo::OpenLiveupdate(p) == -EIO);
    KHOSIM_FUZZ_CHECK(l.deserialize_error() == md.open_err);
    KHOSIM_FUZZ_CHECK(IncomingNames(m) == model_names);
    KHOSIM_FUZZ_CHECK(l.Validate().ok());
    return absl::StrCat("open -EIO (", md.open_err, ")");
  }
  KHOSIM_FUZZ_CHECK(dev >= 0);
  // Exactly the model's sessions and files, in order.
  const std::vector<luo::Luo::SessionInfo> incoming = l.IncomingSessions();
  KHOSIM_FUZZ_CHECK(incoming.size() == md.sessions.size());
  for (size_t i = 0; i < incoming.size(); ++i) {
    const ModelSession& s = md.sessions[i];
    KHOSIM_FUZZ_CHECK(incoming[i].name == s.name && !incoming[i].retrieved);
    KHOSIM_FUZZ_CHECK(incoming[i].files.size() == s.files.size());
    for (size_t j = 0; j < s.files.size(); ++j) {
      KHOSIM_FUZZ_CHECK(incoming[i].files[j].token == s.files[j].token);
      KHOSIM_FUZZ_CHECK(incoming[i].files[j].compatible == s.files[j].compat);
      KHOSIM_FUZZ_CHECK(!incoming[i].files[j].has_file &&
                        incoming[i].files[j].retrieve_status == 0);
    }
    if (x.pristine) {
      KHOSIM_FUZZ_CHECK(s.name == SessionName(shape, static_cast<int>(i)));
      KHOSIM_FUZZ_CHECK(s.files.size() == shape.files[i]);
      for (size_t j = 0; j < s.files.size(); ++j) {
        KHOSIM_FUZZ_CHECK(s.files[j].token == Token(shape, j));
        KHOSIM_FUZZ_CHECK(x.layout.record_value.at(s.files[j].data) ==
                          Value(static_cast<int>(i), j));
      }
    }
  }
  if (x.pristine) KHOSIM_FUZZ_CHECK(incoming.size() == static_cast<size_t>(shape.sessions));
  KHOSIM_FUZZ_CHECK(l.Validate().ok());
  KHOSIM_FUZZ_CHECK(luo::OpenLiveupdate(p) == -EBUSY);  // one opener

  if ((shape.b & fz::kBFlbGet) != 0) GetFlbs(m, x, &flbs);

  std::vector<size_t> order;
  for (size_t i = 0; i < md.sessions.size(); ++i) order.push_back(i);
  if ((shape.b & fz::kBReverse) != 0) std::reverse(order.begin(), order.end());
  std::vector<std::string> skipped;
  std::multiset<int> statuses;
  uint64_t skipped_files = 0;
  uint64_t skipped_blocks = 0;
  for (size_t i : order) {
    const ModelSession& s = md.sessions[i];
    if ((shape.b & fz::kBSkipOdd) != 0 && i % 2 == 1) {
      skipped.push_back(s.name);
      skipped_files += s.files.size();
      skipped_blocks += (s.files.size() + kFilesPerBlock - 1) / kFilesPerBlock;
      continue;
    }
    ProcessSession(p, dev, x, s, &statuses);
  }
  for (FlbUse& use : flbs) {
    if (use.got) liveupdate_flb_put_incoming(use.flb);
  }
  p.Exit();  // the retrieved files are released while kernel B runs

  // Only the sessions left alone remain; nothing is in the registry.
  std::vector<std::string> left = IncomingNames(m);
  std::sort(left.begin(), left.end());
  std::sort(skipped.begin(), skipped.end());
  KHOSIM_FUZZ_CHECK(left == skipped);
  KHOSIM_FUZZ_CHECK(l.preserved_file_count() == 0);
  KHOSIM_FUZZ_CHECK(l.Validate().ok());
  // Every finished file's finish ran once, told how its retrieval went.
  std::multiset<int> seen;
  for (const auto& [value, status] : TestControl().finish_status) seen.insert(status);
  KHOSIM_FUZZ_CHECK(seen == statuses);

  if (x.pristine) {
    // A complete round trip: every record finished (FLBs too, once all
    // their files are), and of kernel A's preserved blocks only the root
    // FDT, the fuzzer's two spare blocks and what the untouched sessions
    // own are still held.
    KHOSIM_FUZZ_CHECK(m.kernel().ctx().WarnCount() == 0);
    KHOSIM_FUZZ_CHECK(TestControl().live_records == static_cast<int64_t>(skipped_files));
    const int want_status = (shape.b & fz::kBNoRetrieve) != 0 ? 0 : 1;
    for (const auto& [value, status] : TestControl().finish_status) {
      KHOSIM_FUZZ_CHECK(status == want_status);
    }
    const uint64_t serialized_flbs = shape.total_files == 0 ? 0 : shape.flb + shape.flb2;
    const bool flbs_finish = !flbs.empty() && skipped_files == 0;
    for (const auto& info : l.Flbs()) {
      if (serialized_flbs == 0) continue;
      KHOSIM_FUZZ_CHECK(info.incoming_finished == flbs_finish);
      if (flbs_finish) KHOSIM_FUZZ_CHECK(info.incoming_count == 0);
    }
    const uint64_t held_flbs = flbs_finish ? 0 : serialized_flbs;
    KHOSIM_FUZZ_CHECK(TestControl().flb_live_objects == static_cast<int64_t>(held_flbs));
    const uint64_t fdt = m.kernel().kho().incoming_handover().fdt_addr;
    KHOSIM_FUZZ_CHECK(m.kernel().kho().IsPreservedHead(khosim::PhysAddr(fdt)));
    KHOSIM_FUZZ_CHECK(m.kernel().kho().UnrestoredBlocks() ==
                      3 + skipped_files + skipped_blocks + held_flbs);
  }
  return absl::StrCat("open ok, ", md.sessions.size(), " sessions, ", statuses.size(),
                      " files finished, ", skipped.size(), " left");
}

// ---------------------------------------------------------------------------

struct Run {
  Shape shape;
  Layout layout;
  Patcher patcher;
  SubtreeState subtree;
  Model model;
  bool hook_ran = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  InputReader in(data, size);
  Run run;
  run.shape = ReadShape(in);
  khosim::testing::ResetTestControl();

  absl::StatusOr<std::unique_ptr<Machine>> made = Machine::Create(LuoMachine());
  KHOSIM_FUZZ_CHECK(made.ok());
  Machine& m = **made;
  m.Boot();
  KHOSIM_FUZZ_CHECK(m.kernel().luo().enabled());
  BuildKernelA(m, run.shape);

  // The fuzzer's spare pages: copies that look right but sit elsewhere.
  Layout& layout = run.layout;
  void* copy = kho_alloc_preserve(PAGE_SIZE);
  KHOSIM_FUZZ_CHECK(!IS_ERR_OR_NULL(copy));
  layout.preserved_copy = virt_to_phys(copy);
  struct page* loose = alloc_page(GFP_KERNEL);
  KHOSIM_FUZZ_CHECK(loose != nullptr);
  layout.unpreserved = page_to_phys(loose);
  void* big = kho_alloc_preserve(2 * PAGE_SIZE);
  KHOSIM_FUZZ_CHECK(!IS_ERR_OR_NULL(big));
  layout.order1 = virt_to_phys(big);
  KHOSIM_FUZZ_CHECK(m.kernel().luo().Validate().ok());
  KHOSIM_FUZZ_CHECK(m.kernel().ctx().WarnCount() == 0);

  const khosim::abi::LuoSer* ser = m.kernel().luo().outgoing_record();
  KHOSIM_FUZZ_CHECK(ser != nullptr);
  m.kernel().RegisterRebootHook("fuzz-corrupt", [&](const khosim::RebootInfo&) {
    run.hook_ran = true;
    layout.ser = virt_to_phys(ser);
    Collect(*ser, run.shape, &layout);
    uint64_t metadata_size = 0;
    KHOSIM_FUZZ_CHECK(khosim::kho::RetrieveSubtree(phys_to_virt(m.kernel().kho().out_fdt().value()),
                                                   khosim::abi::kKexecMetadataName,
                                                   &layout.kexec_metadata, &metadata_size) == 0);
    const uint64_t template_page = !layout.session_blocks.empty() ? layout.session_blocks[0]
                                   : !layout.file_blocks.empty()  ? layout.file_blocks[0]
                                                                  : 0;
    for (uint64_t dst :
         {layout.preserved_copy, layout.unpreserved, layout.order1, layout.order1 + PAGE_SIZE}) {
      if (template_page != 0) {
        std::memcpy(phys_to_virt(dst), phys_to_virt(template_page), PAGE_SIZE);
      } else {
        std::memset(phys_to_virt(dst), 0, PAGE_SIZE);
      }
    }
    std::vector<uint64_t> pages = {layout.ser, layout.flb_page};
    std::vector<uint64_t> refs;
    for (const auto* list : {&layout.session_blocks, &layout.file_blocks}) {
      pages.insert(pages.end(), list->begin(), list->end());
      refs.insert(refs.end(), list->begin(), list->end());
    }
    refs.push_back(layout.flb_page);
    refs.push_back(layout.ser);
    pages.insert(pages.end(), layout.records.begin(), layout.records.end());
    refs.insert(refs.end(), layout.records.begin(), layout.records.end());
    for (const auto& [pa, name] : layout.flb_records) {
      pages.push_back(pa);
      refs.push_back(pa);
    }
    pages.push_back(layout.preserved_copy);
    const uint64_t specials[fz::kLuoRefSpecials] = {
        layout.preserved_copy,
        layout.unpreserved,
        layout.order1,
        layout.order1 + PAGE_SIZE,
        m.kernel().kho().out_fdt().value(),
        0x1000,
        m.memory().layout().end().value(),
        uint64_t{1} << 45,
        0,
    };
    refs.insert(refs.end(), specials, specials + fz::kLuoRefSpecials);

    ApplyPatches(in, m, layout, pages, refs, &run.patcher, &run.subtree);
    PreservedSet preserved;
    preserved.Record(m.kernel().kho());
    run.model = RunModel(layout, run.subtree, preserved, (run.shape.b & fz::kBNoHandler) == 0);
    return 0;
  });

  std::string outcome;
  bool panicked = false;
  try {
    KHOSIM_FUZZ_CHECK(m.Kexec().ok());
  } catch (const khosim::KernelPanic& e) {
    panicked = true;
    outcome = absl::StrCat("PANIC: ", e.what());
    // Only the restore-fail policy of LUO's early boot may panic.
    KHOSIM_FUZZ_CHECK(run.patcher.changed());
    KHOSIM_FUZZ_CHECK(run.model.panic);
    KHOSIM_FUZZ_CHECK(absl::StartsWith(e.what(), "luo: "));
    KHOSIM_FUZZ_CHECK(absl::StrContains(e.site(), "luo_core.cc"));
  }
  KHOSIM_FUZZ_CHECK(run.hook_ran);
  const bool pristine = !run.patcher.changed();
  if (!panicked) {
    KHOSIM_FUZZ_CHECK(!run.model.panic);
    try {
      const Expect x{run.shape, run.layout, run.patcher, run.model, pristine};
      outcome = RunKernelB(m, x);
      KHOSIM_FUZZ_CHECK(m.kernel().mm().memblock().Validate().ok());
      KHOSIM_FUZZ_CHECK(m.kernel().mm().pages().Validate().ok());
      if ((run.shape.b & fz::kBKexecAgain) != 0) {
        // Kernel C: B wrote an empty record; whatever B left is dropped.
        const uint64_t b_num = m.kernel().luo().incoming_liveupdate_num();
        KHOSIM_FUZZ_CHECK(m.Kexec().ok());
        KHOSIM_FUZZ_CHECK(m.kernel().luo().incoming_liveupdate_num() == b_num + 1);
        khosim::fs::Process& p = m.kernel().vfs().CreateProcess("vmm-c");
        KHOSIM_FUZZ_CHECK(khosim::luo::OpenLiveupdate(p) >= 0);
        KHOSIM_FUZZ_CHECK(m.kernel().luo().IncomingSessions().empty());
        KHOSIM_FUZZ_CHECK(m.kernel().luo().Validate().ok());
        outcome += ", kernel C clean";
      }
    } catch (const khosim::KernelPanic& e) {
      std::fprintf(stderr, "fuzz property failed: kernel panic after early boot: %s\n", e.what());
      std::abort();
    }
  }
  if (Verbose()) {
    std::fprintf(stderr,
                 "[luo] sessions %d files %llu flbs %d%d B 0x%02x: %s, %zu pages patched%s%s: "
                 "model %s%s -> %s\n",
                 run.shape.sessions, static_cast<unsigned long long>(run.shape.total_files),
                 run.shape.flb, run.shape.flb2, run.shape.b, pristine ? "pristine" : "patched",
                 run.patcher.pages(), run.subtree.present ? "" : ", LUO subtree dropped",
                 run.subtree.size != sizeof(khosim::abi::LuoSer) ? ", subtree size changed" : "",
                 run.model.panic ? "panic: " : "boot", run.model.panic ? run.model.why.c_str() : "",
                 outcome.c_str());
  }
  return 0;
}

// kho_xarray_fuzzer: KhoXarray::Restore (kho_xa_restore) on maps that the
// input corrupted, on a real Machine, then each of the three ways kernel B
// may use an incoming map.
//
// Kernel A (a small machine booted with kho=on, 4, 16 or 64 KiB pages)
// builds a genuine map with the library (key width and indices from the
// input: dense, strided, random, or level-boundary edges), its descriptor
// kept current in a preserved blob registered as a KHO subtree, and leaves
// copies of the first leaf in a page nobody preserved and in both pages of a
// preserved order-1 block. The input's patch records
// (container_fuzz_format.h) overwrite bytes of the descriptor (magic,
// version, key width, depth, reserved fields, root, count) and of any node:
// raw bytes, interesting numbers, and pointers to other nodes (cycles,
// self-loops, shared subtrees), to the copies, below RAM, into the hole,
// past RAM, unaligned.
//
// Kernel B restores the map and checks the header's contract against an
// independent model of the map (a walk that reads only pages proved to be
// unrestored order-0 preserved heads):
//   - Restore returns 0 exactly when the model accepts the map, otherwise
//     -EINVAL; a refused map is left uninitialized and takes nothing (free
//     and preserved pages unchanged, no WARN);
//   - an accepted map: Validate(), Count, NodeCount, every entry (ForEach,
//     Load, Find/FindAfter, absent neighbours) equal to the model, the pages
//     hold exactly the bytes kernel A left, an untouched map equals what
//     kernel A stored; Store/Erase refused with -EINVAL until adopted, a
//     second Restore -EBUSY;
//   - then, by the mode: read in place and Destroy, or Convert (entries
//     added to a host map that already holds one): every node page goes
//     from preserved to free, nothing else moves; or Adopt: nodes preserved
//     in B's tracker and restored, the home blob kept current, then stores
//     and erases against a std::map (optionally each store first under a
//     failing node allocation: -ENOMEM and the map exactly as before), then
//     Destroy, or a second kexec after which kernel C reads exactly the
//     mutated map.
// A KernelPanic is a finding: nothing on this path documents one.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "container_fuzz_format.h"
#include "container_fuzz_machine.h"
#include "fuzz_util.h"
#include "khosim/abi/kho_xarray.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/kho_xarray.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/machine/machine.h"

namespace {

namespace fz = khosim::fuzz;
namespace abi = khosim::abi;
using fz::InputReader;
using khosim::PhysAddr;
using khosim::kho::KhoXarray;
using Entries = std::map<uint64_t, uint64_t>;

static_assert(fz::kXaDescMagic == offsetof(abi::KhoXarrayDesc, magic));
static_assert(fz::kXaDescVersion == offsetof(abi::KhoXarrayDesc, version));
static_assert(fz::kXaDescKeyBits == offsetof(abi::KhoXarrayDesc, key_bits));
static_assert(fz::kXaDescDepth == offsetof(abi::KhoXarrayDesc, depth));
static_assert(fz::kXaDescPageShift == offsetof(abi::KhoXarrayDesc, page_shift));
static_assert(fz::kXaDescReserved2 == offsetof(abi::KhoXarrayDesc, reserved2));
static_assert(fz::kXaDescRoot == offsetof(abi::KhoXarrayDesc, root));
static_assert(fz::kXaDescCount == offsetof(abi::KhoXarrayDesc, count));

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t MaxIndex(unsigned key_bits) {
  return key_bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << key_bits) - 1;
}

// A non-zero entry word for |index|: a tagged integer or an even word.
uint64_t EntryFor(uint64_t index, uint64_t salt) {
  const uint64_t h = Mix(index ^ salt);
  return (h & 1) != 0 ? KhoXarray::MakeValue(h >> 2) : ((h & ~uint64_t{1}) | 2);
}

// Node pages a map of these indices needs: one per distinct (level, bits
// above the level) pair.
class NodeBudget {
 public:
  NodeBudget(unsigned depth, unsigned slot_bits) : depth_(depth), slot_bits_(slot_bits) {}
  // The nodes after adding |index|.
  size_t With(uint64_t index) const {
    std::set<std::pair<unsigned, uint64_t>> s = nodes_;
    Add(s, index);
    return s.size();
  }
  void Take(uint64_t index) { Add(nodes_, index); }

 private:
  void Add(std::set<std::pair<unsigned, uint64_t>>& s, uint64_t index) const {
    for (unsigned l = 0; l < depth_; ++l) {
      const unsigned shift = (l + 1) * slot_bits_;
      s.insert({l, shift >= 64 ? 0 : index >> shift});
    }
  }
  unsigned depth_;
  unsigned slot_bits_;
  std::set<std::pair<unsigned, uint64_t>> nodes_;
};

// The indices kernel A stores, by pattern, within |budget| node pages.
std::vector<uint64_t> Indices(uint8_t pattern, unsigned key_bits, unsigned page_shift,
                              uint8_t param, unsigned n, size_t budget) {
  const uint64_t max = MaxIndex(key_bits);
  const unsigned slot_bits = abi::KhoXarraySlotBits(page_shift);
  std::vector<uint64_t> wanted;
  switch (pattern) {
    case fz::kXaDense: {
      const uint64_t start = Mix(param) & max;
      for (unsigned i = 0; i < n; ++i) wanted.push_back((start + i) & max);
      break;
    }
    case fz::kXaStrided: {
      const unsigned shift = param % key_bits;
      for (unsigned i = 0; i < n; ++i) wanted.push_back((uint64_t{i} << shift) & max);
      break;
    }
    case fz::kXaRandom:
      for (unsigned i = 0; i < n; ++i) wanted.push_back(Mix(uint64_t{param} << 8 | i) & max);
      break;
    default: {
      std::vector<uint64_t> edges = {0, max, max - 1, 1};
      for (unsigned l = 1; l * slot_bits < key_bits; ++l) {
        edges.push_back((uint64_t{1} << (l * slot_bits)) - 1);
        edges.push_back(uint64_t{1} << (l * slot_bits));
      }
      for (unsigned i = 0; i < n; ++i) {
        wanted.push_back(i < edges.size() ? edges[i] & max : Mix(uint64_t{param} << 8 | i) & max);
      }
      break;
    }
  }
  NodeBudget nodes(abi::KhoXarrayDepth(key_bits, page_shift), slot_bits);
  std::vector<uint64_t> out;
  for (uint64_t index : wanted) {
    if (nodes.With(index) > budget) continue;
    nodes.Take(index);
    out.push_back(index);
  }
  return out;
}

// Kernel A: every node of its own map, parents first (pre-order, slots
// ascending), trusting the map; *first_leaf the first level-0 node.
std::vector<uint64_t> PreOrder(const abi::KhoXarrayDesc& d, uint64_t* first_leaf) {
  std::vector<uint64_t> out;
  *first_leaf = 0;
  if (d.root == 0) return out;
  const uint64_t slots = abi::KhoXarraySlots(d.page_shift);
  std::vector<std::pair<uint64_t, int>> stack = {{d.root, d.depth - 1}};
  while (!stack.empty()) {
    const auto [pa, level] = stack.back();
    stack.pop_back();
    out.push_back(pa);
    if (level == 0) {
      if (*first_leaf == 0) *first_leaf = pa;
      continue;
    }
    const auto* w = static_cast<const uint64_t*>(phys_to_virt(pa));
    for (uint64_t i = slots; i-- > 0;) {
      if (w[i] != 0) stack.push_back({w[i], level - 1});
    }
  }
  return out;
}

// What Restore must decide, from the header's list of checks, without the
// library: read a page only once it is proved an unrestored order-0
// preserved head.
struct Model {
  bool ok = false;
  Entries entries;
  std::vector<uint64_t> nodes;  // pre-order
};

Model ModelMap(khosim::Machine& m, const abi::KhoXarrayDesc& d) {
  Model model;
  const unsigned page_shift = PAGE_SHIFT;
  if (d.magic != abi::kKhoXarrayMagic || d.version != abi::kKhoXarrayVersion || d.reserved0 != 0 ||
      d.reserved1 != 0 || d.reserved2 != 0 || d.page_shift != page_shift || d.key_bits < 1 ||
      d.key_bits > abi::kKhoXarrayMaxKeyBits ||
      d.depth != abi::KhoXarrayDepth(d.key_bits, page_shift)) {
    return model;
  }
  if (d.root == 0 || d.count == 0) {
    model.ok = d.root == 0 && d.count == 0;
    return model;
  }
  const uint64_t page = PAGE_SIZE;
  const unsigned slot_bits = abi::KhoXarraySlotBits(page_shift);
  const uint64_t slots = abi::KhoXarraySlots(page_shift);
  const uint64_t root_slots = uint64_t{1} << abi::KhoXarrayRootBits(d.key_bits, page_shift);
  const int top = d.depth - 1;
  const khosim::kho::Kho& kho = m.kernel().kho();
  std::unordered_set<uint64_t> seen;
  auto admit = [&](uint64_t pa) {
    unsigned order = 0;
    if (pa % page != 0 || !m.memory().IsRam(PhysAddr(pa), page) ||
        !kho.IsPreservedHead(PhysAddr(pa), &order) || order != 0 || !seen.insert(pa).second) {
      return false;
    }
    model.nodes.push_back(pa);
    return true;
  };
  std::function<bool(uint64_t, int, uint64_t)> visit = [&](uint64_t pa, int level,
                                                           uint64_t prefix) {
    const auto* w = static_cast<const uint64_t*>(phys_to_virt(pa));
    const uint64_t usable = level == top ? root_slots : slots;
    uint64_t used = 0;
    for (uint64_t i = 0; i < slots; ++i) {
      if (w[i] == 0) continue;
      if (i >= usable) return false;
      ++used;
      const uint64_t index = prefix | (i << (static_cast<unsigned>(level) * slot_bits));
      if (level == 0) {
        model.entries[index] = w[i];
      } else if (!admit(w[i]) || !visit(w[i], level - 1, index)) {
        return false;
      }
    }
    return used != 0;
  };
  if (!admit(d.root) || !visit(d.root, top, 0)) return model;
  model.ok = model.entries.size() == d.count;
  return model;
}

std::vector<std::pair<uint64_t, uint64_t>> ForEachEntries(const KhoXarray& xa) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  xa.ForEach(0, [&](uint64_t i, uint64_t e) {
    out.emplace_back(i, e);
    return true;
  });
  return out;
}

// The map holds exactly |want|: count, iteration, loads, finds, absent
// neighbours.
void CheckEntries(const KhoXarray& xa, const Entries& want) {
  KHOSIM_FUZZ_CHECK(xa.Count() == want.size());
  const auto got = ForEachEntries(xa);
  KHOSIM_FUZZ_CHECK(got.size() == want.size() && std::equal(got.begin(), got.end(), want.begin(),
                                                            [](const auto& a, const auto& b) {
                                                              return a.first == b.first &&
                                                                     a.second == b.second;
                                                            }));
  const uint64_t max = xa.max_index();
  size_t probed = 0;
  for (const auto& [index, entry] : want) {
    uint64_t e = 0;
    KHOSIM_FUZZ_CHECK(xa.Load(index, &e) && e == entry);
    // Finds scan whole nodes: probe the neighbours of the first few only.
    if (++probed > 2) continue;
    for (uint64_t n : {index - 1, index + 1}) {
      if (n > max || want.count(n) != 0 || (n == index - 1 && index == 0) ||
          (n == index + 1 && index == ~uint64_t{0})) {
        continue;
      }
      KHOSIM_FUZZ_CHECK(!xa.Load(n, &e));
      // Find from an absent index lands on the next entry.
      uint64_t at = n;
      auto next = want.lower_bound(n);
      if (next == want.end()) {
        KHOSIM_FUZZ_CHECK(!xa.Find(&at, &e));
      } else {
        KHOSIM_FUZZ_CHECK(xa.Find(&at, &e) && at == next->first && e == next->second);
      }
    }
  }
  uint64_t e = 0;
  if (max != ~uint64_t{0}) KHOSIM_FUZZ_CHECK(!xa.Load(max + 1, &e));
}

void CheckNodesRestoredAndFree(khosim::Machine& m, const std::vector<uint64_t>& nodes) {
  for (uint64_t pa : nodes) {
    KHOSIM_FUZZ_CHECK(!m.kernel().kho().IsPreservedHead(PhysAddr(pa)));
    KHOSIM_FUZZ_CHECK(
        m.kernel().mm().pages().IsFree(m.kernel().mm().geometry().PhysToPfn(PhysAddr(pa))));
  }
}

// Stores refused with -ENOMEM by an injected fault in this input (verbose).
int g_store_faults = 0;

// Store, optionally first with the |hit|-th node allocation failing: then
// -ENOMEM and the map exactly as before (documented), and the retry works.
void StoreChecked(khosim::Machine& m, KhoXarray& xa, uint64_t index, uint64_t word, int fail_hit) {
  if (fail_hit > 0) {
    const abi::KhoXarrayDesc before = xa.descriptor();
    uint64_t old = 0;
    const bool had = xa.Load(index, &old);
    m.faults().FailNth("kho_alloc_preserve", fail_hit);
    const int rc = xa.Store(index, word);
    m.faults().Clear();
    KHOSIM_FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    if (rc == 0) return;
    ++g_store_faults;
    const abi::KhoXarrayDesc after = xa.descriptor();
    KHOSIM_FUZZ_CHECK(std::memcmp(&before, &after, sizeof(before)) == 0);
    uint64_t now = 0;
    KHOSIM_FUZZ_CHECK(xa.Load(index, &now) == had && (!had || now == old));
    KHOSIM_FUZZ_CHECK(xa.Validate().ok());
  }
  KHOSIM_FUZZ_CHECK(xa.Store(index, word) == 0);
}

// An adopted map as an outgoing one: stores and erases against |live|.
void Mutate(khosim::Machine& m, KhoXarray& xa, Entries& live, uint8_t param, uint64_t seed,
            bool faults) {
  const uint64_t max = xa.max_index();
  const int ops = param % 16;
  for (int op = 0; op < ops; ++op) {
    const uint64_t r = Mix(seed + static_cast<uint64_t>(op));
    const uint64_t word = EntryFor(r, seed);
    const int fail_hit = faults ? static_cast<int>(1 + (r >> 20) % 3) : 0;
    auto pick = [&]() {
      auto it = live.begin();
      std::advance(it, static_cast<long>((r >> 8) % live.size()));
      return it;
    };
    switch (r % 6) {
      case 0: {  // a new index near an existing one (few new nodes)
        const uint64_t index =
            live.empty() ? (r >> 8) & max : (pick()->first ^ ((r >> 40) & 7)) & max;
        StoreChecked(m, xa, index, word, fail_hit);
        live[index] = word;
        break;
      }
      case 1:  // anywhere
        if ((r >> 16) % 4 == 0) {
          const uint64_t index = Mix(r) & max;
          StoreChecked(m, xa, index, word, fail_hit);
          live[index] = word;
        }
        break;
      case 2:  // replace
        if (!live.empty()) {
          auto it = pick();
          const uint64_t before = xa.Count();
          KHOSIM_FUZZ_CHECK(xa.Store(it->first, word) == 0);
          KHOSIM_FUZZ_CHECK(xa.Count() == before);
          it->second = word;
        }
        break;
      case 3:  // erase
        if (!live.empty()) {
          auto it = pick();
          uint64_t old = 0;
          KHOSIM_FUZZ_CHECK(xa.Erase(it->first, &old) == 0 && old == it->second);
          live.erase(it);
        }
        break;
      case 4: {  // erase what is not there
        const uint64_t index = Mix(r + 1) & max;
        if (live.count(index) == 0) KHOSIM_FUZZ_CHECK(xa.Erase(index) == -ENOENT);
        break;
      }
      default:
        KHOSIM_FUZZ_CHECK(xa.Store(0, 0) == -EINVAL);
        if (max != ~uint64_t{0}) KHOSIM_FUZZ_CHECK(xa.Store(max + 1, word) == -ERANGE);
        break;
    }
  }
  KHOSIM_FUZZ_CHECK(xa.Validate().ok());
  CheckEntries(xa, live);
}

const char* kFollowUpNames[] = {"read", "convert", "adopt", "adopt+kexec"};

void Run(const uint8_t* data, size_t size) {
  InputReader in(data, size);
  g_store_faults = 0;
  const uint8_t mode = in.U8();
  const unsigned key_bits = 1 + in.U8() % 64;
  const unsigned n = in.U8() % (fz::kXaMaxEntries + 1);
  const uint8_t param = in.U8();
  const uint8_t follow_param = in.U8();
  const uint8_t follow = fz::XaFollowUpOf(mode);
  const uint64_t page_size = fz::FuzzPageSize(mode);

  absl::StatusOr<std::unique_ptr<khosim::Machine>> made =
      khosim::Machine::Create(fz::ContainerFuzzMachine(mode));
  KHOSIM_FUZZ_CHECK(made.ok());
  khosim::Machine& m = **made;
  m.Boot();
  KHOSIM_FUZZ_CHECK(kho_is_enabled());

  // ---- kernel A
  const unsigned page_shift = PAGE_SHIFT;
  const size_t budget = fz::XaNodeBudget(page_size, abi::KhoXarrayDepth(key_bits, page_shift));
  const std::vector<uint64_t> indices =
      Indices(fz::XaPatternOf(mode), key_bits, page_shift, param, n, budget);
  auto* home = static_cast<abi::KhoXarrayDesc*>(kho_alloc_preserve(sizeof(abi::KhoXarrayDesc)));
  KHOSIM_FUZZ_CHECK(!IS_ERR_OR_NULL(home));
  const uint64_t home_pa = virt_to_phys(home);
  KHOSIM_FUZZ_CHECK(kho_add_subtree(fz::kXaSubtree, home, sizeof(*home)) == 0);
  Entries stored;
  {
    KhoXarray xa;
    KHOSIM_FUZZ_CHECK(xa.Init(key_bits, home) == 0);
    for (uint64_t index : indices) {
      const uint64_t entry = EntryFor(index, 0x5eed);
      KHOSIM_FUZZ_CHECK(xa.Store(index, entry) == 0);
      stored[index] = entry;
    }
    KHOSIM_FUZZ_CHECK(xa.Count() == stored.size());
  }
  uint64_t first_leaf = 0;
  const std::vector<uint64_t> nodes = PreOrder(*home, &first_leaf);
  KHOSIM_FUZZ_CHECK(nodes.size() <= budget);
  const std::vector<uint64_t> specials =
      fz::MakeSpecialRefs(m, home_pa, first_leaf != 0 ? first_leaf : home_pa);
  std::vector<uint64_t> pages = {home_pa};
  pages.insert(pages.end(), nodes.begin(), nodes.end());
  std::vector<uint64_t> refs = nodes;
  refs.insert(refs.end(), specials.begin(), specials.end());
  const uint64_t count = stored.size();
  std::vector<uint64_t> numbers(fz::kXaNumbers);
  numbers[fz::kXaNumZero] = 0;
  numbers[fz::kXaNumOne] = 1;
  numbers[fz::kXaNumTwo] = 2;
  numbers[fz::kXaNumCountMinus1] = count - 1;
  numbers[fz::kXaNumCountPlus1] = count + 1;
  numbers[fz::kXaNumAllOnes] = ~uint64_t{0};
  numbers[fz::kXaNum2Pow63] = uint64_t{1} << 63;
  numbers[fz::kXaNumMaxIndex] = MaxIndex(key_bits);
  numbers[fz::kXaNumPageSize] = page_size;
  fz::ContainerPatcher patcher(pages, refs, numbers, page_size);
  patcher.Apply(in);
  const bool pristine = !patcher.changed();
  fz::PageSnapshots snapshots;
  for (uint64_t pa : nodes) snapshots.Take(pa, page_size);
  for (fz::RefSpecial s : {fz::kRefOrder1Head, fz::kRefOrder1Tail}) {
    snapshots.Take(specials[s], page_size);
  }
  fz::PreservedLedger ledger;
  ledger.Record(m.kernel().kho());

  // ---- kernel B
  KHOSIM_FUZZ_CHECK(m.Kexec().ok());
  KHOSIM_FUZZ_CHECK(is_kho_boot());
  phys_addr_t phys = 0;
  size_t desc_size = 0;
  KHOSIM_FUZZ_CHECK(kho_retrieve_subtree(fz::kXaSubtree, &phys, &desc_size) == 0);
  KHOSIM_FUZZ_CHECK(phys == home_pa && desc_size == sizeof(abi::KhoXarrayDesc));
  struct folio* home_folio = kho_restore_folio(phys);
  KHOSIM_FUZZ_CHECK(home_folio != nullptr);
  abi::KhoXarrayDesc desc;
  std::memcpy(&desc, phys_to_virt(phys), sizeof(desc));
  folio_put(home_folio);

  const Model model = ModelMap(m, desc);
  const fz::PageAccount before = fz::PageAccount::Take(m, ledger);
  const uint64_t warns_before = m.kernel().WarnCount();
  KhoXarray xa;
  const int rc = xa.Restore(desc);
  KHOSIM_FUZZ_CHECK(rc == 0 || rc == -EINVAL);
  KHOSIM_FUZZ_CHECK((rc == 0) == model.ok);
  if (pristine) KHOSIM_FUZZ_CHECK(rc == 0);
  uint64_t e = 0;
  if (rc != 0) {
    // Refused: nothing initialized, nothing taken.
    KHOSIM_FUZZ_CHECK(!xa.initialized() && !xa.incoming());
    KHOSIM_FUZZ_CHECK(xa.Count() == 0 && xa.NodeCount() == 0);
    KHOSIM_FUZZ_CHECK(!xa.Load(0, &e));
    uint64_t at = 0;
    KHOSIM_FUZZ_CHECK(!xa.Find(&at, &e));
    KHOSIM_FUZZ_CHECK(xa.Adopt() == -EINVAL);
    KHOSIM_FUZZ_CHECK(xa.Store(0, KhoXarray::MakeValue(1)) == -EINVAL);
    KHOSIM_FUZZ_CHECK(xa.Validate().ok());
    const fz::PageAccount after = fz::PageAccount::Take(m, ledger);
    KHOSIM_FUZZ_CHECK(after.free == before.free && after.tagged == before.tagged);
    KHOSIM_FUZZ_CHECK(m.kernel().WarnCount() == warns_before);
  } else {
    KHOSIM_FUZZ_CHECK(xa.initialized() && xa.incoming());
    KHOSIM_FUZZ_CHECK(xa.key_bits() == desc.key_bits && xa.depth() == desc.depth);
    KHOSIM_FUZZ_CHECK(xa.max_index() == MaxIndex(desc.key_bits));
    KHOSIM_FUZZ_CHECK(xa.Validate().ok());
    KHOSIM_FUZZ_CHECK(xa.Count() == desc.count && xa.NodeCount() == model.nodes.size());
    {
      const abi::KhoXarrayDesc d = xa.descriptor();
      KHOSIM_FUZZ_CHECK(std::memcmp(&desc, &d, sizeof(desc)) == 0);
    }
    CheckEntries(xa, model.entries);
    for (uint64_t pa : model.nodes) {
      // Kernel B reads exactly the bytes kernel A left.
      if (const uint8_t* snap = snapshots.At(pa, 0); snap != nullptr) {
        KHOSIM_FUZZ_CHECK(std::memcmp(phys_to_virt(pa), snap, page_size) == 0);
      }
    }
    if (pristine) {
      KHOSIM_FUZZ_CHECK(model.entries == stored);
      KHOSIM_FUZZ_CHECK(model.nodes == nodes);
    }
    // Read-only until adopted; a second Restore is refused while it holds
    // nodes.
    KHOSIM_FUZZ_CHECK(xa.Store(0, KhoXarray::MakeValue(1)) == -EINVAL);
    KHOSIM_FUZZ_CHECK(xa.Erase(model.entries.empty() ? 0 : model.entries.begin()->first) ==
                      -EINVAL);
    if (desc.root != 0) KHOSIM_FUZZ_CHECK(xa.Restore(desc) == -EBUSY);
    KHOSIM_FUZZ_CHECK(xa.incoming() && xa.Count() == desc.count);
    // No page moved, and the WARNs were the documented ones.
    const fz::PageAccount restored = fz::PageAccount::Take(m, ledger);
    KHOSIM_FUZZ_CHECK(restored.free == before.free && restored.tagged == before.tagged);
    const uint64_t warns = m.kernel().WarnCount();
    const uint64_t node_pages = model.nodes.size();

    if (follow == fz::kXaReadInPlace || follow == fz::kXaConvert) {
      Entries want = model.entries;
      if (follow == fz::kXaReadInPlace) {
        xa.Destroy();
      } else {
        // Convert adds to what the host map holds.
        absl::btree_map<uint64_t, uint64_t> host;
        uint64_t sentinel = desc.key_bits >= 64 ? 0 : MaxIndex(desc.key_bits) + 1;
        if (desc.key_bits >= 64) {
          while (want.count(sentinel) != 0) ++sentinel;
        }
        host[sentinel] = 7;
        xa.Convert(&host);
        want[sentinel] = 7;
        KHOSIM_FUZZ_CHECK(
            host.size() == want.size() &&
            std::equal(host.begin(), host.end(), want.begin(), [](const auto& a, const auto& b) {
              return a.first == b.first && a.second == b.second;
            }));
      }
      KHOSIM_FUZZ_CHECK(xa.Count() == 0 && xa.NodeCount() == 0);
      KHOSIM_FUZZ_CHECK(xa.initialized() && xa.incoming());
      const fz::PageAccount after = fz::PageAccount::Take(m, ledger);
      KHOSIM_FUZZ_CHECK(after.FreedSince(before) == static_cast<int64_t>(node_pages));
      KHOSIM_FUZZ_CHECK(after.RestoredSince(before) == static_cast<int64_t>(node_pages));
      CheckNodesRestoredAndFree(m, model.nodes);
      KHOSIM_FUZZ_CHECK(m.kernel().WarnCount() == warns);
    } else {
      auto* new_home =
          static_cast<abi::KhoXarrayDesc*>(kho_alloc_preserve(sizeof(abi::KhoXarrayDesc)));
      KHOSIM_FUZZ_CHECK(!IS_ERR_OR_NULL(new_home));
      const int adopt = xa.Adopt(new_home);
      KHOSIM_FUZZ_CHECK(adopt == 0);
      KHOSIM_FUZZ_CHECK(!xa.incoming() && xa.Validate().ok());
      KHOSIM_FUZZ_CHECK(xa.Adopt() == -EINVAL);
      {
        const abi::KhoXarrayDesc d = xa.descriptor();
        KHOSIM_FUZZ_CHECK(std::memcmp(new_home, &d, sizeof(d)) == 0);
        KHOSIM_FUZZ_CHECK(d.root == desc.root && d.count == desc.count);
      }
      for (uint64_t pa : model.nodes) {
        KHOSIM_FUZZ_CHECK(kho_is_preserved(pa, 1));
        KHOSIM_FUZZ_CHECK(!m.kernel().kho().IsPreservedHead(PhysAddr(pa)));
      }
      const fz::PageAccount adopted = fz::PageAccount::Take(m, ledger);
      KHOSIM_FUZZ_CHECK(adopted.RestoredSince(before) == static_cast<int64_t>(node_pages));
      // (The entries are compared after the mutations below.)
      Entries live = model.entries;
      Mutate(m, xa, live, follow_param, Mix(size) ^ param, (mode & fz::kXaModeStoreFaults) != 0);
      {
        // The home blob follows every change.
        const abi::KhoXarrayDesc d = xa.descriptor();
        KHOSIM_FUZZ_CHECK(std::memcmp(new_home, &d, sizeof(d)) == 0);
        KHOSIM_FUZZ_CHECK(d.count == live.size());
      }
      if (follow == fz::kXaAdopt) {
        const std::vector<uint64_t> before_destroy = model.nodes;
        xa.Destroy();
        KHOSIM_FUZZ_CHECK(!xa.incoming() && xa.Count() == 0 && xa.NodeCount() == 0);
        KHOSIM_FUZZ_CHECK(new_home->root == 0 && new_home->count == 0);
        KHOSIM_FUZZ_CHECK(xa.Validate().ok());
        for (uint64_t pa : before_destroy) KHOSIM_FUZZ_CHECK(!kho_is_preserved(pa, 1));
      } else {
        KHOSIM_FUZZ_CHECK(kho_add_subtree(fz::kXaSubtree, new_home, sizeof(*new_home)) == 0);
        KHOSIM_FUZZ_CHECK(m.Kexec().ok());
        // ---- kernel C
        phys_addr_t again = 0;
        KHOSIM_FUZZ_CHECK(kho_retrieve_subtree(fz::kXaSubtree, &again, &desc_size) == 0);
        struct folio* f = kho_restore_folio(again);
        KHOSIM_FUZZ_CHECK(f != nullptr);
        abi::KhoXarrayDesc d2;
        std::memcpy(&d2, phys_to_virt(again), sizeof(d2));
        folio_put(f);
        KhoXarray c;
        KHOSIM_FUZZ_CHECK(c.Restore(d2) == 0);
        KHOSIM_FUZZ_CHECK(c.Validate().ok());
        CheckEntries(c, live);
        c.Destroy();
        // Only kernel B's root FDT is left unclaimed.
        KHOSIM_FUZZ_CHECK(m.kernel().kho().UnrestoredBlocks() == 1);
      }
    }
  }
  KHOSIM_FUZZ_CHECK(m.kernel().mm().memblock().Validate().ok());
  KHOSIM_FUZZ_CHECK(m.kernel().mm().pages().Validate().ok());
  if (fz::Verbose()) {
    std::fprintf(stderr,
                 "[xarray] page %llu key_bits %u pattern %d stored %zu nodes %zu changed %zu: "
                 "restore %d (model %d, %zu entries, %zu nodes) then %s (%d stores failed)\n",
                 static_cast<unsigned long long>(page_size), key_bits, fz::XaPatternOf(mode),
                 stored.size(), nodes.size(), patcher.changed_bytes(), rc, model.ok,
                 model.entries.size(), model.nodes.size(), kFollowUpNames[follow], g_store_faults);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  KHOSIM_FUZZ_NO_PANIC(Run(data, size));
  return 0;
}

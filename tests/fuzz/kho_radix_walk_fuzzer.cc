// kho_radix_walk_fuzzer: an incoming KHO radix tree as hostile bytes.
//
// The input is a handful of node pages at fake physical addresses plus the
// root address (layout in radix_fuzz_memory.h). The target adopts the root
// and runs what kernel B runs on a tree it did not build: Walk with leaf and
// node callbacks, NodeCount and Validate. It checks what radix_tree.h
// promises: every page is visited at most once (cycles and shared children
// are refused, so the walk terminates), levels count down from depth-1,
// keys arrive in ascending order, a tree Validate accepts walks cleanly,
// every key a clean walk reports is Contained, AddKey of a present key
// changes nothing, a failed AddKey leaves every byte as it was, and Destroy
// frees each reachable page exactly once.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "fuzz_util.h"
#include "khosim/base/types.h"
#include "khosim/kho/radix_tree.h"
#include "radix_fuzz_memory.h"

namespace {

using khosim::PhysAddr;
using khosim::fuzz::FuzzNodeMemory;
using khosim::fuzz::InputReader;
namespace kho = khosim::kho;

// Leaf bits the full walk reports before it asks the tree to stop; bounds
// the work on dense random leaves.
constexpr uint64_t kMaxKeys = 1u << 16;
constexpr int kStop = 1;
// Keys checked with Contains() after a clean walk.
constexpr size_t kContainsChecks = 64;

struct WalkResult {
  int rc = 0;
  uint64_t nodes = 0;
  uint64_t keys = 0;
  bool all_decode = true;
  std::vector<uint64_t> sample;  // the first kContainsChecks in-range keys
};

WalkResult FullWalk(const kho::RadixTree& tree, const FuzzNodeMemory& memory) {
  const kho::RadixGeometry& g = tree.geometry();
  WalkResult r;
  absl::flat_hash_set<uint64_t> seen;
  bool have_last = false;
  uint64_t last = 0;
  const int top = static_cast<int>(g.depth) - 1;
  bool first_node = true;
  r.rc = tree.Walk(
      [&](uint64_t key) {
        // Ascending, one leaf bit at a time.
        KHOSIM_FUZZ_CHECK(!have_last || key > last);
        have_last = true;
        last = key;
        PhysAddr pa;
        unsigned order = 0;
        if (kho::DecodeKey(g, key, &pa, &order)) {
          KHOSIM_FUZZ_CHECK(kho::KeyInRange(g, key));
          KHOSIM_FUZZ_CHECK(order <= g.max_order());
          KHOSIM_FUZZ_CHECK(kho::EncodeKey(g, pa, order) == key);
          if (r.sample.size() < kContainsChecks) r.sample.push_back(key);
        } else {
          KHOSIM_FUZZ_CHECK(!kho::KeyInRange(g, key));
          r.all_decode = false;
        }
        return ++r.keys >= kMaxKeys ? kStop : 0;
      },
      [&](PhysAddr node, int level) {
        // Each page once; the root first at depth-1; a child one level below
        // some node already seen.
        KHOSIM_FUZZ_CHECK(seen.insert(node.value()).second);
        KHOSIM_FUZZ_CHECK(level >= 0 && level <= top);
        if (first_node) {
          KHOSIM_FUZZ_CHECK(level == top);
          first_node = false;
        } else {
          KHOSIM_FUZZ_CHECK(level < top);
        }
        KHOSIM_FUZZ_CHECK(node.value() % memory.page_size() == 0);
        ++r.nodes;
        return 0;
      });
  KHOSIM_FUZZ_CHECK(r.rc == 0 || r.rc == -EINVAL || r.rc == kStop);
  KHOSIM_FUZZ_CHECK(r.nodes <= memory.total_pages());
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  InputReader in(data, size);
  const uint8_t flags = in.U8();
  const uint64_t root_sel = in.U64();
  const uint64_t raw_key = in.U64();
  const unsigned page_shift = khosim::fuzz::RadixPageShift(flags);
  const size_t pages =
      std::min(khosim::fuzz::kRadixMaxPages, in.remaining() / khosim::fuzz::kRadixChunk + 1);
  FuzzNodeMemory memory(page_shift, pages, khosim::fuzz::kRadixSparePages);
  const size_t chunk_offset = (flags & 4) != 0 ? memory.page_size() - khosim::fuzz::kRadixChunk : 0;
  for (size_t i = 0; i < pages; ++i) {
    size_t got = 0;
    const uint8_t* chunk = in.Bytes(khosim::fuzz::kRadixChunk, &got);
    if (got != 0) std::memcpy(memory.PageBytes(i) + chunk_offset, chunk, got);
  }

  const kho::RadixGeometry g = kho::RadixGeometry::For(page_shift);
  // Mostly keys a tree can hold, so that AddKey gets past its range check.
  const uint64_t extra_key =
      (flags & 8) != 0 ? raw_key : raw_key & ((uint64_t{1} << g.key_width) - 1);
  kho::RadixTree tree(g, memory);
  PhysAddr root;
  if ((root_sel >> 63) == 0) {
    root = memory.PageAddr(root_sel % pages);
  } else if ((root_sel >> 56) != 0xff) {
    root = PhysAddr(root_sel << 1);
  }
  tree.Adopt(root);
  KHOSIM_FUZZ_CHECK(tree.root() == root);

  // The walk kernel B runs, then the other read-only views of the tree.
  const WalkResult walk = FullWalk(tree, memory);
  const uint64_t node_count = tree.NodeCount();
  if (walk.rc == kStop) {
    KHOSIM_FUZZ_CHECK(node_count >= walk.nodes);
  } else {
    KHOSIM_FUZZ_CHECK(node_count == walk.nodes);
  }
  const bool valid = tree.Validate().ok();
  if (valid) {
    KHOSIM_FUZZ_CHECK(walk.rc == 0 || walk.rc == kStop);
    KHOSIM_FUZZ_CHECK(walk.all_decode);
  }
  if (walk.rc == -EINVAL) KHOSIM_FUZZ_CHECK(!valid);
  // A node callback's non-zero return ends the walk with that value.
  if (walk.nodes != 0) {
    KHOSIM_FUZZ_CHECK(tree.Walk(nullptr, [](PhysAddr, int) { return -7; }) == -7);
  }
  const bool clean = walk.rc == 0;
  if (clean) {
    for (uint64_t key : walk.sample) KHOSIM_FUZZ_CHECK(tree.Contains(key));
  }

  // Mutations on the adopted tree.
  if (clean && !walk.sample.empty()) {
    // A present key: success, and not a byte changes.
    const std::vector<uint8_t> before = memory.bytes();
    KHOSIM_FUZZ_CHECK(tree.AddKey(walk.sample.front()) == 0);
    KHOSIM_FUZZ_CHECK(memory.bytes() == before);
  }
  {
    const std::vector<uint8_t> before = memory.bytes();
    const uint64_t allocs = memory.allocs();
    const uint64_t frees = memory.frees();
    const bool had = tree.Contains(extra_key);
    const int rc = tree.AddKey(extra_key);
    KHOSIM_FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE || rc == -EFAULT || rc == -ENOMEM);
    if (rc != 0) {
      // Rolled back: same bytes, every page it took given back.
      KHOSIM_FUZZ_CHECK(memory.bytes() == before);
      KHOSIM_FUZZ_CHECK(memory.allocs() - allocs == memory.frees() - frees);
    }
    if (rc == -EINVAL) KHOSIM_FUZZ_CHECK(tree.root().IsNull());
    if (rc == -ERANGE) KHOSIM_FUZZ_CHECK(!kho::KeyInRange(g, extra_key));
    if (rc == 0 && clean) {
      KHOSIM_FUZZ_CHECK(tree.Contains(extra_key));
      KHOSIM_FUZZ_CHECK(tree.DelKey(extra_key) == 0);
      KHOSIM_FUZZ_CHECK(!tree.Contains(extra_key));
      if (had) KHOSIM_FUZZ_CHECK(tree.AddKey(extra_key) == 0);
    }
    if (rc == 0 && !had) {
      // DelKey on whatever path AddKey used: bounded, no crash.
      const int del = tree.DelKey(extra_key);
      KHOSIM_FUZZ_CHECK(del == 0 || del == -ENOENT || del == -EFAULT);
    }
  }
  if (clean) {
    // Still a clean tree after the add/delete round trip.
    const WalkResult again = FullWalk(tree, memory);
    KHOSIM_FUZZ_CHECK(again.rc == 0 || again.rc == kStop);
  }

  // Teardown frees each reachable page once (FuzzNodeMemory checks).
  const uint64_t frees = memory.frees();
  const uint64_t reachable = tree.NodeCount();
  tree.Destroy();
  KHOSIM_FUZZ_CHECK(tree.root().IsNull());
  KHOSIM_FUZZ_CHECK(memory.frees() - frees == reachable);
  KHOSIM_FUZZ_CHECK(tree.Walk([](uint64_t) { return 1; }) == 0);
  return 0;
}

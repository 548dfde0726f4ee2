// FakeNodeMemory: tracker pages at fake physical addresses, for unit tests
// of the KHO trackers (radix tree, kho-v1 bitmaps) without a machine.
#ifndef KHOSIM_TESTS_KHO_FAKE_NODE_MEMORY_H_
#define KHOSIM_TESTS_KHO_FAKE_NODE_MEMORY_H_

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "khosim/base/types.h"
#include "khosim/kho/radix_tree.h"

namespace khosim::kho {

// A pool of node pages at fake physical addresses kBase + i * page_size.
// Pages get host backing on first use. Freed pages are poisoned and reused
// last-in first-out. Allocation can be made to fail at the n-th call.
class FakeNodeMemory : public RadixNodeMemory {
 public:
  static constexpr uint64_t kBase = 0x100000;

  explicit FakeNodeMemory(unsigned page_shift, uint64_t capacity = 1 << 15)
      : page_shift_(page_shift), pages_(capacity) {}

  PhysAddr AllocNode() override {
    ++alloc_calls_;
    if (alloc_calls_ == fail_at_ || fail_all_) return PhysAddr();
    uint64_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else if (next_unused_ < pages_.size()) {
      index = next_unused_++;
    } else {
      return PhysAddr();
    }
    std::memset(Backing(index), 0, page_size());
    live_.insert(index);
    return AddressOf(index);
  }

  void FreeNode(PhysAddr page) override {
    uint64_t index;
    if (!IndexOf(page, &index) || live_.erase(index) == 0) {
      ADD_FAILURE() << "FreeNode of a page that is not a live node: " << page.value();
      return;
    }
    std::memset(Backing(index), 0x5A, page_size());
    free_.push_back(index);
    ++frees_;
  }

  uint8_t* MapNode(PhysAddr page) override {
    uint64_t index;
    if (!IndexOf(page, &index)) return nullptr;
    return Backing(index);
  }

  uint64_t page_size() const { return uint64_t{1} << page_shift_; }
  uint64_t live() const { return live_.size(); }
  uint64_t frees() const { return frees_; }
  // The n-th AllocNode from now fails (n >= 1); 0 disarms.
  void FailNth(uint64_t n) { fail_at_ = n == 0 ? 0 : alloc_calls_ + n; }
  void FailAll(bool fail) { fail_all_ = fail; }
  PhysAddr AddressOf(uint64_t index) const { return PhysAddr(kBase + (index << page_shift_)); }
  PhysAddr End() const { return AddressOf(pages_.size()); }

  // A page that is RAM but not a node (for hand-built trees).
  PhysAddr Raw() { return AllocNode(); }

  uint64_t Slot(PhysAddr node, uint64_t slot) {
    uint64_t v;
    std::memcpy(&v, MapNode(node) + slot * 8, 8);
    return v;
  }
  void SetSlot(PhysAddr node, uint64_t slot, uint64_t value) {
    std::memcpy(MapNode(node) + slot * 8, &value, 8);
  }

  // Bytes of every live page, by address.
  std::map<uint64_t, std::vector<uint8_t>> Snapshot() {
    std::map<uint64_t, std::vector<uint8_t>> out;
    for (uint64_t index : live_) {
      const uint8_t* p = Backing(index);
      out[AddressOf(index).value()] = std::vector<uint8_t>(p, p + page_size());
    }
    return out;
  }

 private:
  bool IndexOf(PhysAddr page, uint64_t* index) const {
    const uint64_t pa = page.value();
    if (pa < kBase || (pa & (page_size() - 1)) != 0) return false;
    const uint64_t i = (pa - kBase) >> page_shift_;
    if (i >= pages_.size()) return false;
    *index = i;
    return true;
  }
  uint8_t* Backing(uint64_t index) {
    if (!pages_[index]) pages_[index] = std::make_unique<uint8_t[]>(page_size());
    return pages_[index].get();
  }

  unsigned page_shift_;
  std::vector<std::unique_ptr<uint8_t[]>> pages_;
  std::vector<uint64_t> free_;
  std::set<uint64_t> live_;
  uint64_t next_unused_ = 0;
  uint64_t alloc_calls_ = 0;
  uint64_t fail_at_ = 0;
  bool fail_all_ = false;
  uint64_t frees_ = 0;
};

}  // namespace khosim::kho

#endif  // KHOSIM_TESTS_KHO_FAKE_NODE_MEMORY_H_

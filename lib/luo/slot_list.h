// SPDX-License-Identifier: Apache-2.0
#ifndef KHOSIM_LIB_LUO_SLOT_LIST_H_
#define KHOSIM_LIB_LUO_SLOT_LIST_H_

#include <cstddef>
#include <iterator>
#include <vector>

namespace khosim::luo {

// The kernel's list_head for the session lists, in insertion order, not
// owning its elements: each element records its slot in |Slot|.
//
// A vector of pointers with holes: unlinking leaves a hole in the slot
// (O(1), the kernel's list_del), trailing holes are dropped at once, and
// the vector is compacted when holes outnumber elements, so unlinking is
// amortized O(1) while walks read contiguous pointers. The walks matter:
// every CREATE_SESSION compares the new name with every outgoing session
// (upstream's list walk, kept), and so does deserialization with every
// incoming one. A linked list (Boost.Intrusive, measured in luo_bench's
// create_session rows) made those walks 1.4-2.5x slower at 10^4 sessions,
// each step waiting for the load of the one before; here the loads of
// successive sessions are independent and overlap.
template <typename T, size_t T::*Slot>
class SlotList {
 public:
  // Skips holes. Decrementing is valid from any position but the first
  // element's, as for any bidirectional iterator.
  template <typename E>
  class Iterator {
   public:
    using iterator_category = std::bidirectional_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = E*;
    using reference = E&;

    Iterator() = default;
    Iterator(T* const* slot, T* const* end) : slot_(slot), end_(end) { SkipHoles(); }
    E& operator*() const { return **slot_; }
    E* operator->() const { return *slot_; }
    Iterator& operator++() {
      ++slot_;
      SkipHoles();
      return *this;
    }
    Iterator& operator--() {
      do {
        --slot_;
      } while (*slot_ == nullptr);
      return *this;
    }
    bool operator==(const Iterator& other) const { return slot_ == other.slot_; }
    bool operator!=(const Iterator& other) const { return slot_ != other.slot_; }

   private:
    void SkipHoles() {
      while (slot_ != end_ && *slot_ == nullptr) ++slot_;
    }

    T* const* slot_ = nullptr;
    T* const* end_ = nullptr;
  };
  using iterator = Iterator<T>;
  using const_iterator = Iterator<const T>;

  SlotList() = default;
  SlotList(const SlotList&) = delete;
  SlotList& operator=(const SlotList&) = delete;

  void push_back(T& element) {
    element.*Slot = slots_.size();
    slots_.push_back(&element);
  }
  // Unlinks |element|, which must be on this list.
  void erase(T& element) {
    slots_[element.*Slot] = nullptr;
    ++holes_;
    while (!slots_.empty() && slots_.back() == nullptr) {
      slots_.pop_back();
      --holes_;
    }
    if (holes_ * 2 > slots_.size()) Compact();
  }

  // The first element matching |pred|, or nullptr: a plain loop over the
  // slots, which the compiler keeps tighter than the hole-skipping iterator.
  template <typename Pred>
  T* FindIf(Pred pred) const {
    for (T* e : slots_) {
      if (e != nullptr && pred(static_cast<const T&>(*e))) return e;
    }
    return nullptr;
  }

  size_t size() const { return slots_.size() - holes_; }
  bool empty() const { return size() == 0; }
  T& front() { return *begin(); }
  iterator begin() { return {slots_.data(), slots_.data() + slots_.size()}; }
  iterator end() { return {slots_.data() + slots_.size(), slots_.data() + slots_.size()}; }
  const_iterator begin() const { return {slots_.data(), slots_.data() + slots_.size()}; }
  const_iterator end() const {
    return {slots_.data() + slots_.size(), slots_.data() + slots_.size()};
  }

 private:
  void Compact() {
    size_t n = 0;
    for (T* e : slots_) {
      if (e == nullptr) continue;
      e->*Slot = n;
      slots_[n++] = e;
    }
    slots_.resize(n);
    holes_ = 0;
  }

  std::vector<T*> slots_;
  size_t holes_ = 0;
};

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_SLOT_LIST_H_

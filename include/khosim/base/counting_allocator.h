// CountingAllocator: a std::allocator that adds the bytes a container
// allocates to a counter its owner reads, for "host memory this structure
// holds" statistics (the range tracker's live bytes, the benchmarks'
// metadata counters). Not thread-safe: the counter is a plain int64_t,
// updated under whatever lock guards the container.
#ifndef KHOSIM_BASE_COUNTING_ALLOCATOR_H_
#define KHOSIM_BASE_COUNTING_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>

namespace khosim {

template <typename T>
class CountingAllocator {
 public:
  using value_type = T;
  explicit CountingAllocator(int64_t* bytes) : bytes_(bytes) {}
  template <typename U>
  CountingAllocator(const CountingAllocator<U>& other) : bytes_(other.bytes()) {}
  T* allocate(size_t n) {
    *bytes_ += static_cast<int64_t>(n * sizeof(T));
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, size_t n) {
    *bytes_ -= static_cast<int64_t>(n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  int64_t* bytes() const { return bytes_; }
  template <typename U>
  bool operator==(const CountingAllocator<U>& other) const {
    return bytes_ == other.bytes();
  }

 private:
  int64_t* bytes_;
};

}  // namespace khosim

#endif  // KHOSIM_BASE_COUNTING_ALLOCATOR_H_

// Helpers shared by the KHO fuzz targets and their seed generator.
//
// The targets are built two ways: as libFuzzer binaries (clang,
// -fsanitize=fuzzer) and, with LLVMFuzzerTestOneInput renamed by a compile
// definition, into khosim_fuzz_regression, which replays the checked-in
// corpus with any compiler. Nothing here depends on libFuzzer.
#ifndef KHOSIM_TESTS_FUZZ_FUZZ_UTIL_H_
#define KHOSIM_TESTS_FUZZ_FUZZ_UTIL_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KHOSIM_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(KHOSIM_FUZZ_ASAN)
#define KHOSIM_FUZZ_ASAN 1
#endif
#ifdef KHOSIM_FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#endif

// A property the code under test promises was broken: report and abort, so
// libFuzzer (or the regression test) records the input as a crash.
#define KHOSIM_FUZZ_CHECK(cond)                                                             \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

namespace khosim::fuzz {

// The targets once had allowances for findings not yet fixed in lib/; all
// findings listed in tests/fuzz/README.md are fixed, so every property is
// asserted. A future allowance must come with a README entry and be
// switched off by an environment variable here.
inline bool StrictMode() { return true; }

inline constexpr size_t RoundUp8(size_t n) { return (n + 7) & ~size_t{7}; }

// A little-endian cursor over the fuzzer input. Reads past the end yield
// zero bytes, so every input decodes to something.
class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t remaining() const { return size_ - pos_; }
  bool empty() const { return pos_ >= size_; }
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t U16() {
    const uint16_t lo = U8();
    return static_cast<uint16_t>(lo | (uint16_t{U8()} << 8));
  }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{U8()} << (8 * i);
    return v;
  }
  // Up to n bytes (fewer at the end of the input).
  const uint8_t* Bytes(size_t n, size_t* got) {
    *got = n < remaining() ? n : remaining();
    const uint8_t* p = data_ + pos_;
    pos_ += *got;
    return p;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// The tail of a patch record {u8 target; u16 offset; u8 length; bytes}
// whose target byte the caller already read and resolved to [base, base +
// size): offset modulo size, length at most 16 and clamped to the target,
// the bytes written over it (base nullptr: consumed, nothing written).
// True iff a byte changed.
inline bool ApplyPatch(InputReader& in, uint8_t* base, size_t size) {
  const size_t offset = in.U16() % size;
  size_t len = in.U8() % 17;
  if (len > size - offset) len = size - offset;
  size_t got = 0;
  const uint8_t* bytes = in.Bytes(len, &got);
  bool changed = false;
  for (size_t k = 0; base != nullptr && k < got; ++k) {
    changed |= base[offset + k] != bytes[k];
    base[offset + k] = bytes[k];
  }
  return changed;
}

// Host memory whose end is followed by an inaccessible guard page, so that
// code the sanitizers do not instrument (the system libfdt) still faults on
// the first byte it reads past a buffer. Place() puts a buffer of `len`
// bytes (8-byte aligned when len is) so that it ends exactly where the
// guard begins. Allocated once per process and reused.
class GuardedRegion {
 public:
  explicit GuardedRegion(size_t capacity) {
    const size_t host_page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    capacity_ = (capacity + host_page - 1) / host_page * host_page;
    void* p = mmap(nullptr, capacity_ + host_page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    base_ = static_cast<uint8_t*>(p);
    if (mprotect(base_ + capacity_, host_page, PROT_NONE) != 0) std::abort();
  }
  GuardedRegion(const GuardedRegion&) = delete;
  GuardedRegion& operator=(const GuardedRegion&) = delete;

  // Copies min(size, len) bytes of data into a len-byte buffer ending at the
  // guard page, zero-fills the rest, and (under ASan) poisons the bytes in
  // [poison_from, len) so instrumented code may not read them either.
  uint8_t* Place(const uint8_t* data, size_t size, size_t len, size_t poison_from) {
    if (len > capacity_) std::abort();
    Unpoison();
    uint8_t* buf = base_ + capacity_ - len;
    const size_t n = size < len ? size : len;
    if (n != 0) std::memcpy(buf, data, n);
    std::memset(buf + n, 0, len - n);
#ifdef KHOSIM_FUZZ_ASAN
    if (poison_from < len) {
      ASAN_POISON_MEMORY_REGION(buf + poison_from, len - poison_from);
      poisoned_ = true;
    }
#else
    (void)poison_from;
#endif
    return buf;
  }
  uint8_t* Place(const uint8_t* data, size_t size, size_t len) {
    return Place(data, size, len, len);
  }

 private:
  void Unpoison() {
#ifdef KHOSIM_FUZZ_ASAN
    if (poisoned_) {
      ASAN_UNPOISON_MEMORY_REGION(base_, capacity_);
      poisoned_ = false;
    }
#endif
  }

  uint8_t* base_ = nullptr;
  size_t capacity_ = 0;
  bool poisoned_ = false;
};

}  // namespace khosim::fuzz

#endif  // KHOSIM_TESTS_FUZZ_FUZZ_UTIL_H_

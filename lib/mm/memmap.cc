// Memmap: a lazily materialized, virtually contiguous struct page array.
#include "khosim/mm/memmap.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace khosim::mm {

Memmap::Memmap(uint64_t end_pfn) : end_pfn_(end_pfn) {
  const uint64_t host_page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  bytes_ = (end_pfn * sizeof(struct page) + host_page - 1) / host_page * host_page;
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "khosim: cannot reserve the memmap: %s\n", std::strerror(errno));
    std::abort();
  }
  pages_ = static_cast<struct page*>(p);
}

Memmap::~Memmap() { munmap(pages_, bytes_); }

uint64_t Memmap::ResidentBytes() const {
  const uint64_t host_page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t resident = 0;
  constexpr uint64_t kChunk = 1 << 20;  // host pages per mincore call
  std::vector<unsigned char> vec(kChunk);
  const uint64_t total_pages = bytes_ / host_page;
  for (uint64_t first = 0; first < total_pages; first += kChunk) {
    const uint64_t n = std::min(kChunk, total_pages - first);
    if (mincore(reinterpret_cast<char*>(pages_) + first * host_page, n * host_page, vec.data()) !=
        0) {
      continue;
    }
    for (uint64_t i = 0; i < n; ++i) resident += vec[i] & 1;
  }
  return resident * host_page;
}

}  // namespace khosim::mm

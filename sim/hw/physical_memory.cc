// PhysicalMemory: a sparse memfd mapped as the direct map.
//
// Lifecycle: Create() sizes the file to the end of the highest RAM range and
// maps it once; holes (and the first page) are made inaccessible. Kernels
// come and go; the memory and its bytes stay until the machine is destroyed.
#include "khosim/hw/physical_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace khosim::hw {
namespace {

void CheckSys(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "khosim: %s failed: %s\n", what, std::strerror(errno));
    std::abort();
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<PhysicalMemory>> PhysicalMemory::Create(MemoryLayout layout) {
  if (absl::Status s = layout.Validate(); !s.ok()) return s;
  if (static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) > layout.page_size()) {
    return absl::FailedPreconditionError("simulated page size below the host page size");
  }
  const uint64_t span = layout.end().value();
  const int fd = memfd_create("khosim-dram", MFD_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "memfd_create");
  if (ftruncate(fd, static_cast<off_t>(span)) != 0) {
    const int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, "ftruncate of the DRAM backing");
  }
  void* base = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, "mmap of the DRAM backing");
  }
  auto memory = std::unique_ptr<PhysicalMemory>(
      new PhysicalMemory(std::move(layout), fd, static_cast<uint8_t*>(base), span));
  // Everything that is not RAM faults on touch.
  uint64_t cursor = 0;
  for (const RamRange& r : memory->layout_.ranges()) {
    if (r.start.value() > cursor) {
      memory->SetAccessible(PhysAddr(cursor), r.start.value() - cursor, false);
    }
    cursor = r.end().value();
  }
  return memory;
}

PhysicalMemory::PhysicalMemory(MemoryLayout layout, int fd, uint8_t* base, uint64_t span)
    : layout_(std::move(layout)), fd_(fd), base_(base), span_(span) {}

PhysicalMemory::~PhysicalMemory() {
  munmap(base_, span_);
  close(fd_);
}

PhysAddr PhysicalMemory::Phys(const void* va) const {
  return PhysAddr(static_cast<uint64_t>(static_cast<const uint8_t*>(va) - base_));
}

bool PhysicalMemory::IsDirectMap(const void* va) const {
  const auto* p = static_cast<const uint8_t*>(va);
  return p >= base_ && p < base_ + span_;
}

void PhysicalMemory::ForEachResidentRange(PhysAddr pa, uint64_t len,
                                          const std::function<void(PhysAddr, uint64_t)>& fn) const {
  off_t pos = static_cast<off_t>(pa.value());
  const off_t end = static_cast<off_t>(pa.value() + len);
  while (pos < end) {
    const off_t data = lseek(fd_, pos, SEEK_DATA);
    if (data < 0 || data >= end) return;  // ENXIO: no data after pos
    off_t hole = lseek(fd_, data, SEEK_HOLE);
    if (hole < 0 || hole > end) hole = end;
    fn(PhysAddr(static_cast<uint64_t>(data)), static_cast<uint64_t>(hole - data));
    pos = hole;
  }
}

void PhysicalMemory::PoisonResident(PhysAddr pa, uint64_t len) {
  ForEachResidentRange(pa, len, [this](PhysAddr start, uint64_t size) {
    std::memset(Virt(start), kPoisonByte, size);
  });
}

void PhysicalMemory::Discard(PhysAddr pa, uint64_t len) {
  if (len == 0) return;
  CheckSys(fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                     static_cast<off_t>(pa.value()), static_cast<off_t>(len)) == 0,
           "fallocate(PUNCH_HOLE)");
}

void PhysicalMemory::Zero(PhysAddr pa, uint64_t len) {
  static const uint64_t host_page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t start = pa.value();
  const uint64_t end = start + len;
  const uint64_t inner_start = AlignUp(start, host_page);
  const uint64_t inner_end = AlignDown(end, host_page);
  if (inner_start >= inner_end) {
    std::memset(Virt(pa), 0, len);
    return;
  }
  std::memset(Virt(pa), 0, inner_start - start);
  Discard(PhysAddr(inner_start), inner_end - inner_start);
  std::memset(Virt(PhysAddr(inner_end)), 0, end - inner_end);
}

void PhysicalMemory::SetAccessible(PhysAddr pa, uint64_t len, bool accessible) {
  if (len == 0) return;
  CheckSys(mprotect(Virt(pa), len, accessible ? PROT_READ | PROT_WRITE : PROT_NONE) == 0,
           "mprotect of the direct map");
}

void PhysicalMemory::ResetAccess() {
  for (const RamRange& r : layout_.ranges()) SetAccessible(r.start, r.size, true);
}

void PhysicalMemory::MapAlias(void* va, PhysAddr pa, uint64_t len) {
  void* got = mmap(va, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd_,
                   static_cast<off_t>(pa.value()));
  CheckSys(got == va, "mmap of a vmalloc alias");
}

void* PhysicalMemory::ReserveAliasSpace(uint64_t len) {
  void* va = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CheckSys(va != MAP_FAILED, "mmap of vmalloc space");
  return va;
}

void PhysicalMemory::UnmapAlias(void* va, uint64_t len) {
  void* got =
      mmap(va, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  CheckSys(got == va, "mmap to unmap a vmalloc alias");
}

void PhysicalMemory::ReleaseAliasSpace(void* va, uint64_t len) { munmap(va, len); }

uint64_t PhysicalMemory::ResidentBytes() const {
  struct stat st;
  CheckSys(fstat(fd_, &st) == 0, "fstat of the DRAM backing");
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

}  // namespace khosim::hw

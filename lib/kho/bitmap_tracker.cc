// BitmapTracker: the kho-v1 per-order bitmaps and their chunk list.
//
// Lifecycle:
//   kernel A    Add finds (or allocates, zeroed) the bitmap page of the
//               block's order and index and sets one bit; Del clears it and
//               keeps the page. PrepareHandover walks the index in order and
//               writes the chunk list; a later run replaces it.
//   kernel B    WalkIncoming follows the list from the handle in the root
//               FDT, checking every address before reading it, and reports
//               one block per set bit. memblock_free_all later frees the
//               chunks and bitmaps like any other unreserved memory.
//
// Bit layout: bit i of a bitmap page is bit (i % 64) of the little-endian
// u64 word (i / 64), i.e. bit (i % 8) of byte (i / 8), as the kernel's
// set_bit on an unsigned long array of a little-endian machine.
#include "khosim/kho/bitmap_tracker.h"

#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "khosim/abi/kexec_handover.h"

namespace khosim::kho {
namespace {

static_assert(std::endian::native == std::endian::little,
              "bitmap and chunk pages are read as little-endian words");

uint64_t LoadWord(const uint8_t* page, uint64_t index) {
  uint64_t value;
  std::memcpy(&value, page + index * sizeof(uint64_t), sizeof(value));
  return value;
}

}  // namespace

BitmapTracker::BitmapTracker(unsigned page_shift, TrackerPageMemory& memory)
    : page_shift_(page_shift), memory_(memory) {}

uint64_t BitmapTracker::chunk_capacity() const {
  return abi::KhoserBitmapSize(uint64_t{1} << page_shift_);
}

int BitmapTracker::Init() { return 0; }

bool BitmapTracker::BlockFits(PhysAddr pa, unsigned order) const {
  if (order > max_order()) return false;
  return IsAligned(pa.value(), uint64_t{1} << (page_shift_ + order));
}

uint8_t* BitmapTracker::FindBit(unsigned order, uint64_t pfn, uint64_t* bit) const {
  const auto by_order = orders_.find(order);
  if (by_order == orders_.end()) return nullptr;
  const uint64_t pfn_high = pfn >> order;
  const auto bitmap = by_order->second.find(pfn_high / preserve_bits());
  if (bitmap == by_order->second.end()) return nullptr;
  *bit = pfn_high % preserve_bits();
  return memory_.MapNode(bitmap->second);
}

int BitmapTracker::Add(PhysAddr pa, unsigned order) {
  if (!BlockFits(pa, order)) return -EINVAL;
  const uint64_t pfn_high = (pa.value() >> page_shift_) >> order;
  absl::MutexLock lock(&mu_);
  // The order's entry comes first and stays even if its bitmap cannot be
  // allocated (kho_mem_track.orders gets it before xa_load_or_alloc runs).
  BitmapIndex& index = orders_[order];
  auto [it, inserted] = index.try_emplace(pfn_high / preserve_bits());
  if (inserted) {
    const PhysAddr page = memory_.AllocNode();
    if (page.IsNull()) {
      index.erase(it);
      return -ENOMEM;
    }
    it->second = page;
    ++bitmaps_;
  }
  uint8_t* bits = memory_.MapNode(it->second);
  if (bits == nullptr) return -EFAULT;
  const uint64_t bit = pfn_high % preserve_bits();
  bits[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
  return 0;
}

int BitmapTracker::Del(PhysAddr pa, unsigned order) {
  if (!BlockFits(pa, order)) return -EINVAL;
  absl::MutexLock lock(&mu_);
  uint64_t bit = 0;
  uint8_t* bits = FindBit(order, pa.value() >> page_shift_, &bit);
  if (bits == nullptr) return -ENOENT;
  bits[bit / 8] &= static_cast<uint8_t>(~(1u << (bit % 8)));
  return 0;
}

bool BitmapTracker::Contains(PhysAddr pa, unsigned order) const {
  if (!BlockFits(pa, order)) return false;
  absl::ReaderMutexLock lock(&mu_);
  uint64_t bit = 0;
  const uint8_t* bits = FindBit(order, pa.value() >> page_shift_, &bit);
  return bits != nullptr && ((bits[bit / 8] >> (bit % 8)) & 1) != 0;
}

int BitmapTracker::PrepareHandover(PhysAddr* handle) {
  absl::MutexLock lock(&mu_);
  const uint64_t capacity = chunk_capacity();
  std::vector<PhysAddr> list;
  uint8_t* chunk = nullptr;
  abi::KhoserMemChunkHeader header = {};
  // Starts a chunk for |order| and links it from the current one.
  auto new_chunk = [&](unsigned order) {
    const PhysAddr page = memory_.AllocNode();
    if (page.IsNull()) return false;
    uint8_t* bytes = memory_.MapNode(page);
    if (bytes == nullptr) {
      memory_.FreeNode(page);
      return false;
    }
    if (chunk != nullptr) {
      header.next = page.value();
      std::memcpy(chunk, &header, sizeof(header));
    }
    list.push_back(page);
    chunk = bytes;
    header = abi::KhoserMemChunkHeader{.next = 0, .order = order, .num_elms = 0};
    std::memcpy(chunk, &header, sizeof(header));
    return true;
  };
  for (const auto& [order, index] : orders_) {
    bool ok = new_chunk(order);
    for (auto it = index.begin(); ok && it != index.end(); ++it) {
      if (header.num_elms == capacity) {
        ok = new_chunk(order);
        if (!ok) break;
      }
      const abi::KhoserMemBitmapPtr entry{.phys_start = (it->first * preserve_bits())
                                                        << (order + page_shift_),
                                          .bitmap = it->second.value()};
      std::memcpy(chunk + sizeof(header) + header.num_elms * sizeof(entry), &entry, sizeof(entry));
      ++header.num_elms;
      std::memcpy(chunk, &header, sizeof(header));
    }
    if (!ok) {
      for (PhysAddr page : list) memory_.FreeNode(page);
      return -ENOMEM;
    }
  }
  // The new list is complete: only now is the previous one let go.
  FreeChunksLocked();
  chunks_ = std::move(list);
  *handle = chunks_.empty() ? PhysAddr() : chunks_.front();
  return 0;
}

PhysAddr BitmapTracker::handover() const {
  absl::ReaderMutexLock lock(&mu_);
  return chunks_.empty() ? PhysAddr() : chunks_.front();
}

void BitmapTracker::FreeChunksLocked() {
  for (PhysAddr page : chunks_) memory_.FreeNode(page);
  chunks_.clear();
}

void BitmapTracker::Destroy() {
  absl::MutexLock lock(&mu_);
  FreeChunksLocked();
  for (const auto& [order, index] : orders_) {
    for (const auto& [i, page] : index) memory_.FreeNode(page);
  }
  orders_.clear();
  bitmaps_ = 0;
}

TrackerStats BitmapTracker::Stats() const {
  absl::ReaderMutexLock lock(&mu_);
  TrackerStats stats;
  stats.orders = orders_.size();
  stats.bitmaps = bitmaps_;
  stats.chunks = chunks_.size();
  stats.metadata_pages = stats.bitmaps + stats.chunks;
  stats.metadata_bytes = stats.metadata_pages << page_shift_;
  return stats;
}

int BitmapTracker::ForEachBlock(const TrackerBlockFn& block_cb,
                                const TrackerPageFn& page_cb) const {
  absl::ReaderMutexLock lock(&mu_);
  if (page_cb) {
    for (PhysAddr page : chunks_) {
      if (const int ret = page_cb(page); ret != 0) return ret;
    }
  }
  const uint64_t words = (uint64_t{1} << page_shift_) / sizeof(uint64_t);
  for (const auto& [order, index] : orders_) {
    for (const auto& [i, page] : index) {
      if (page_cb) {
        if (const int ret = page_cb(page); ret != 0) return ret;
      }
      const uint8_t* bits = memory_.MapNode(page);
      if (!block_cb || bits == nullptr) continue;
      const uint64_t first_pfn = (i * preserve_bits()) << order;
      for (uint64_t w = 0; w < words; ++w) {
        for (uint64_t word = LoadWord(bits, w); word != 0; word &= word - 1) {
          const uint64_t bit = w * 64 + static_cast<uint64_t>(std::countr_zero(word));
          const PhysAddr pa((first_pfn + (bit << order)) << page_shift_);
          if (const int ret = block_cb(pa, order); ret != 0) return ret;
        }
      }
    }
  }
  return 0;
}

int BitmapTracker::WalkIncoming(PhysAddr handle, const TrackerBlockFn& block_cb,
                                const TrackerPageFn& page_cb) const {
  const uint64_t page_size = uint64_t{1} << page_shift_;
  const uint64_t words = page_size / sizeof(uint64_t);
  const uint64_t capacity = chunk_capacity();
  // Every chunk and bitmap page, so that none is read twice.
  absl::flat_hash_set<uint64_t> visited;
  auto map_once = [&](uint64_t pa) -> const uint8_t* {
    if (pa == 0 || !IsAligned(pa, page_size) || visited.contains(pa)) return nullptr;
    const uint8_t* page = memory_.MapNode(PhysAddr(pa));
    if (page != nullptr) visited.insert(pa);
    return page;
  };
  for (uint64_t chunk_pa = handle.value(); chunk_pa != 0;) {
    const uint8_t* chunk = map_once(chunk_pa);
    if (chunk == nullptr) return -EINVAL;
    if (page_cb) {
      if (const int ret = page_cb(PhysAddr(chunk_pa)); ret != 0) return ret;
    }
    abi::KhoserMemChunkHeader header;
    std::memcpy(&header, chunk, sizeof(header));
    if (header.num_elms > capacity || header.order > max_order()) return -EINVAL;
    const unsigned shift = page_shift_ + header.order;  // < 64
    // What one bitmap covers is preserve_bits() blocks: 2^(shift +
    // page_shift + 3) bytes, possibly the whole 64-bit space or more.
    const unsigned cover_shift = shift + page_shift_ + 3;
    for (uint64_t e = 0; e < header.num_elms; ++e) {
      abi::KhoserMemBitmapPtr entry;
      std::memcpy(&entry, chunk + sizeof(header) + e * sizeof(entry), sizeof(entry));
      const bool aligned = cover_shift >= 64
                               ? entry.phys_start == 0
                               : IsAligned(entry.phys_start, uint64_t{1} << cover_shift);
      if (!aligned) return -EINVAL;
      const uint8_t* bits = map_once(entry.bitmap);
      if (bits == nullptr) return -EINVAL;
      if (page_cb) {
        if (const int ret = page_cb(PhysAddr(entry.bitmap)); ret != 0) return ret;
      }
      // The largest offset a block can start at without its last byte
      // wrapping past 2^64 (phys_start is aligned to at least a block).
      const uint64_t room = ~uint64_t{0} - entry.phys_start - ((uint64_t{1} << shift) - 1);
      for (uint64_t w = 0; w < words; ++w) {
        for (uint64_t word = LoadWord(bits, w); word != 0; word &= word - 1) {
          const uint64_t bit = w * 64 + static_cast<uint64_t>(std::countr_zero(word));
          if (bit > (room >> shift)) return -EINVAL;
          const PhysAddr pa(entry.phys_start + (bit << shift));
          if (block_cb) {
            if (const int ret = block_cb(pa, header.order); ret != 0) return ret;
          }
        }
      }
    }
    chunk_pa = header.next;
  }
  return 0;
}

}  // namespace khosim::kho

// The bytes a scenario file is expected to hold, computed on demand from its
// content generator, so any range can be (re)generated for writing and for
// verification without keeping a copy. Random content is a pure function
// of (seed, offset): word i of the file is a mix of the seed and i; a
// pattern byte is a function of its offset too, so overlapping extents
// agree and the order of writes does not matter.
//
// The generator also says where the data is (data()): the byte ranges it
// writes. Everything else is a hole and reads as zero. Verification hashes
// the data ranges and checks holes separately, so a file of many GiB with a
// few MiB of data is verified without reading (and so without the host
// backing) all of its holes.
#ifndef KHOSIM_SCENARIO_CONTENT_H_
#define KHOSIM_SCENARIO_CONTENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "khosim/scenario/scenario.h"

namespace khosim::scenario {

class Content {
 public:
  // |machine_seed| gives files without an explicit seed distinct,
  // reproducible contents.
  Content(const FileSpec& file, uint64_t machine_seed);

  // The expected bytes [offset, offset + len) of the file.
  void Fill(uint64_t offset, uint8_t* out, uint64_t len) const;
  // The ranges that are written when the file is created, in write order;
  // the rest of the file is holes (zeros).
  const std::vector<Extent>& written() const { return written_; }
  // The same bytes as sorted, disjoint, non-adjacent ranges.
  const std::vector<Extent>& data() const { return data_; }
  // Bytes in data().
  uint64_t data_bytes() const { return data_bytes_; }
  uint64_t size() const { return size_; }
  uint64_t seed() const { return seed_; }

 private:
  ContentKind kind_;
  uint64_t size_;
  uint64_t seed_;
  std::string pattern_;
  std::vector<Extent> written_;
  std::vector<Extent> data_;
  uint64_t data_bytes_ = 0;
};

// A 64-bit hash of a byte stream; the same stream gives the same value in
// any chunking.
class ContentHash {
 public:
  void Update(const uint8_t* data, uint64_t len);
  uint64_t value() const;

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
  uint8_t pending_[8] = {};  // a word not yet complete
  uint64_t npending_ = 0;
};

}  // namespace khosim::scenario

#endif  // KHOSIM_SCENARIO_CONTENT_H_

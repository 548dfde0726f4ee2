// The bytes a scenario file is expected to hold, computed on demand from its
// content generator, so any range can be (re)generated for writing and for
// verification without keeping a copy. Random content is a pure function
// of (seed, offset): word i of the file is a mix of the seed and i.
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
  uint64_t size() const { return size_; }
  uint64_t seed() const { return seed_; }

 private:
  ContentKind kind_;
  uint64_t size_;
  uint64_t seed_;
  std::string pattern_;
  std::vector<Extent> written_;
};

// A 64-bit content hash, fed in order in any chunking whose chunks are
// multiples of 8 bytes (except the last).
class ContentHash {
 public:
  void Update(const uint8_t* data, uint64_t len);
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace khosim::scenario

#endif  // KHOSIM_SCENARIO_CONTENT_H_

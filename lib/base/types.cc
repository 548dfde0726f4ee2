// PageGeometry derivations and PhysAddr formatting.
#include "khosim/base/types.h"

#include <bit>

#include "absl/strings/str_format.h"

namespace khosim {

std::string PhysAddr::ToString() const { return absl::StrFormat("0x%x", value_); }

bool PageGeometry::IsSupportedPageSize(uint64_t page_size) {
  return page_size == 4096 || page_size == 16384 || page_size == 65536;
}

PageGeometry PageGeometry::ForPageSize(uint64_t page_size) {
  PageGeometry g;
  g.page_shift = static_cast<unsigned>(std::countr_zero(page_size));
  switch (page_size) {
    case 16384:
      g.max_page_order = 11;
      break;
    case 65536:
      g.max_page_order = 13;
      break;
    default:
      g.max_page_order = 10;
      break;
  }
  // A PMD maps (page_size / 8) pages: order page_shift - 3.
  const unsigned pmd_order = g.page_shift - 3;
  g.pageblock_order = pmd_order < g.max_page_order ? pmd_order : g.max_page_order;
  return g;
}

unsigned PageGeometry::GetOrder(uint64_t bytes) const {
  const uint64_t pages = (bytes + page_size() - 1) >> page_shift;
  if (pages <= 1) return 0;
  return static_cast<unsigned>(64 - std::countl_zero(pages - 1));
}

}  // namespace khosim

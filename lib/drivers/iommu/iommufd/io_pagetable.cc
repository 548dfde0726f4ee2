// IOAS: I/O address spaces, their areas (pinned memory at an IOVA) and the
// HWPT domains kept in step with them (khosim/uapi/iommufd.h has the
// commands' contracts).
//
// An area is mapped into every HWPT of its IOAS when it is created, and a
// new HWPT is filled with every area (iopt_fill_domain). Physically
// contiguous folios are mapped as one run, so the IOMMU core can use 2 MiB
// and 1 GiB leaves where the run allows them. Unmap removes whole areas
// only (-EINVAL if the range cuts one).
#include <cerrno>
#include <limits>

#include "iommufd_private.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/uapi/iommufd.h"

namespace {

// IOVAs the 4-level tables of every HWPT can hold.
constexpr u64 kIovaLimit = 1ULL << 48;
constexpr u32 kMapFlags =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

iommufd_ioas* GetIoas(struct iommufd_ctx* ictx, u32 id) {
  return static_cast<iommufd_ioas*>(iommufd_get_object(ictx, id, IOMMUFD_OBJ_IOAS));
}

int ProtOf(u32 flags) {
  return ((flags & IOMMU_IOAS_MAP_READABLE) ? IOMMU_READ : 0) |
         ((flags & IOMMU_IOAS_MAP_WRITEABLE) ? IOMMU_WRITE : 0);
}

// Maps |area| into |domain| run by run; on failure nothing stays mapped.
int MapArea(const iopt_area& area, struct iommu_domain* domain) {
  size_t i = 0;
  while (i < area.folios.size()) {
    const phys_addr_t first = folio_phys(area.folios[i]);
    size_t n = 1;
    while (i + n < area.folios.size() && folio_phys(area.folios[i + n]) == first + n * PAGE_SIZE) {
      ++n;
    }
    const int err =
        iommu_map(domain, area.iova + i * PAGE_SIZE, first, n * PAGE_SIZE, area.prot, GFP_KERNEL);
    if (err != 0) {
      if (i > 0) iommu_unmap(domain, area.iova, i * PAGE_SIZE);
      return err;
    }
    i += n;
  }
  return 0;
}

// Where an area of |length| bytes goes: the fixed |iova| if it is free
// (-EEXIST otherwise, -EINVAL beyond the tables), else the lowest free
// IOVA (-ENOSPC).
int PlaceArea(const iommufd_ioas& ioas, bool fixed, u64 length, u64* iova) {
  if (fixed) {
    if (*iova >= kIovaLimit || length > kIovaLimit - *iova) return -EINVAL;
    auto next = ioas.areas.lower_bound(*iova);
    if (next != ioas.areas.end() && next->first < *iova + length) return -EEXIST;
    if (next != ioas.areas.begin()) {
      const iopt_area& prev = std::prev(next)->second;
      if (prev.iova + prev.length > *iova) return -EEXIST;
    }
    return 0;
  }
  u64 candidate = 0;
  for (const auto& [start, area] : ioas.areas) {
    if (start - candidate >= length) break;
    candidate = area.iova + area.length;
  }
  if (candidate >= kIovaLimit || length > kIovaLimit - candidate) return -ENOSPC;
  *iova = candidate;
  return 0;
}

// Maps the new |area| into every HWPT of |ioas| and adds it. On failure
// the area is released.
int AddArea(iommufd_ioas* ioas, iopt_area area) {
  size_t done = 0;
  int err = 0;
  for (; done < ioas->hwpts.size(); ++done) {
    if ((err = MapArea(area, ioas->hwpts[done]->domain)) != 0) break;
  }
  if (err != 0) {
    for (size_t i = 0; i < done; ++i) iommu_unmap(ioas->hwpts[i]->domain, area.iova, area.length);
    iopt_area_release(&area);
    return err;
  }
  const u64 iova = area.iova;
  ioas->areas.emplace(iova, std::move(area));
  return 0;
}

// Checks shared by both map commands. 0 or -EOPNOTSUPP / -EINVAL / -EBUSY.
int CheckMap(const iommufd_ioas* ioas, u32 flags, u64 length, u64 iova, u64 start) {
  if ((flags & ~kMapFlags) != 0) return -EOPNOTSUPP;
  if ((flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)) == 0 || length == 0 ||
      ((length | start) & (PAGE_SIZE - 1)) != 0 ||
      ((flags & IOMMU_IOAS_MAP_FIXED_IOVA) && (iova & (PAGE_SIZE - 1)) != 0)) {
    return -EINVAL;
  }
  if (ioas->liveupdate_immutable) return -EBUSY;
  return 0;
}

}  // namespace

long iommufd_ioas_alloc(struct iommufd_ctx* ictx, void* arg) {
  auto* cmd = static_cast<struct iommu_ioas_alloc*>(arg);
  if (cmd->flags != 0) return -EOPNOTSUPP;
  cmd->out_ioas_id = iommufd_object_add(ictx, std::make_unique<iommufd_ioas>());
  return 0;
}

long iommufd_ioas_map(struct iommufd_ctx* ictx, void* arg) {
  auto* cmd = static_cast<struct iommu_ioas_map*>(arg);
  iommufd_ioas* ioas = GetIoas(ictx, cmd->ioas_id);
  if (ioas == nullptr) return -ENOENT;
  if (int err = CheckMap(ioas, cmd->flags, cmd->length, cmd->iova, cmd->user_va); err != 0) {
    return err;
  }
  u64 iova = cmd->iova;
  if (int err = PlaceArea(*ioas, cmd->flags & IOMMU_IOAS_MAP_FIXED_IOVA, cmd->length, &iova);
      err != 0) {
    return err;
  }
  iopt_area area{.iova = iova, .length = cmd->length, .prot = ProtOf(cmd->flags), .anon = true};
  for (u64 i = 0; i < cmd->length / PAGE_SIZE; ++i) {
    struct folio* folio = folio_alloc(GFP_KERNEL | __GFP_ZERO, 0);
    if (folio == nullptr) {
      iopt_area_release(&area);
      return -ENOMEM;
    }
    area.folios.push_back(folio);
  }
  if (int err = AddArea(ioas, std::move(area)); err != 0) return err;
  cmd->iova = iova;
  return 0;
}

long iommufd_ioas_map_file(struct iommufd_ctx* ictx, void* arg) {
  auto* cmd = static_cast<struct iommu_ioas_map_file*>(arg);
  iommufd_ioas* ioas = GetIoas(ictx, cmd->ioas_id);
  if (ioas == nullptr) return -ENOENT;
  if (int err = CheckMap(ioas, cmd->flags, cmd->length, cmd->iova, cmd->start); err != 0) {
    return err;
  }
  if (cmd->start + cmd->length < cmd->start) return -EOVERFLOW;
  struct file* file = fget(static_cast<unsigned int>(cmd->fd));
  if (file == nullptr) return -EBADF;
  const int seals = memfd_get_seals(file);
  if (seals < 0 || !shmem_file(file) ||
      cmd->start + cmd->length > static_cast<u64>(file_inode(file)->i_size)) {
    fput(file);
    return -EINVAL;
  }
  u64 iova = cmd->iova;
  if (int err = PlaceArea(*ioas, cmd->flags & IOMMU_IOAS_MAP_FIXED_IOVA, cmd->length, &iova);
      err != 0) {
    fput(file);
    return err;
  }
  iopt_area area{.iova = iova,
                 .length = cmd->length,
                 .prot = ProtOf(cmd->flags),
                 .file = file,
                 .start = cmd->start,
                 .seals = static_cast<unsigned int>(seals)};
  const u64 pages = cmd->length / PAGE_SIZE;
  area.folios.resize(pages);
  pgoff_t first_offset = 0;
  const long pinned = memfd_pin_folios(
      file, static_cast<loff_t>(cmd->start), static_cast<loff_t>(cmd->start + cmd->length - 1),
      area.folios.data(), static_cast<unsigned int>(pages), &first_offset);
  if (pinned < 0) {
    area.folios.clear();
    iopt_area_release(&area);
    return pinned;
  }
  area.folios.resize(static_cast<size_t>(pinned));
  // Order-0 folios only: a large folio (hugetlb memfd) is not supported.
  for (struct folio* folio : area.folios) {
    if (folio_size(folio) != PAGE_SIZE || static_cast<u64>(pinned) != pages) {
      iopt_area_release(&area);
      return -EINVAL;
    }
  }
  if (int err = AddArea(ioas, std::move(area)); err != 0) return err;
  cmd->iova = iova;
  return 0;
}

long iommufd_ioas_unmap(struct iommufd_ctx* ictx, void* arg) {
  auto* cmd = static_cast<struct iommu_ioas_unmap*>(arg);
  iommufd_ioas* ioas = GetIoas(ictx, cmd->ioas_id);
  if (ioas == nullptr) return -ENOENT;
  if (ioas->liveupdate_immutable) return -EBUSY;
  const bool all = cmd->iova == 0 && cmd->length == std::numeric_limits<u64>::max();
  if (!all && (cmd->length == 0 || cmd->iova + cmd->length < cmd->iova)) return -EINVAL;
  const u64 last = all ? std::numeric_limits<u64>::max() : cmd->iova + cmd->length - 1;
  // Refuse before changing anything if the range cuts an area.
  for (const auto& [iova, area] : ioas->areas) {
    const u64 area_last = iova + area.length - 1;
    const bool overlaps = iova <= last && area_last >= cmd->iova;
    if (overlaps && (iova < cmd->iova || area_last > last)) return -EINVAL;
  }
  u64 unmapped = 0;
  for (auto it = ioas->areas.lower_bound(cmd->iova);
       it != ioas->areas.end() && it->first <= last;) {
    iopt_area& area = it->second;
    for (iommufd_hwpt_paging* hwpt : ioas->hwpts) iommu_unmap(hwpt->domain, area.iova, area.length);
    unmapped += area.length;
    iopt_area_release(&area);
    it = ioas->areas.erase(it);
  }
  if (unmapped == 0) return -ENOENT;
  cmd->length = unmapped;
  return 0;
}

int iopt_fill_domain(iommufd_ioas* ioas, struct iommu_domain* domain) {
  for (auto it = ioas->areas.begin(); it != ioas->areas.end(); ++it) {
    if (int err = MapArea(it->second, domain); err != 0) {
      for (auto done = ioas->areas.begin(); done != it; ++done) {
        iommu_unmap(domain, done->second.iova, done->second.length);
      }
      return err;
    }
  }
  return 0;
}

void iopt_area_release(iopt_area* area) {
  if (area->anon) {
    for (struct folio* folio : area->folios) folio_put(folio);
  } else if (!area->folios.empty()) {
    unpin_folios(area->folios.data(), area->folios.size());
  }
  area->folios.clear();
  if (area->file != nullptr) fput(area->file);
  area->file = nullptr;
}

void iopt_area_free_host(iopt_area* area) {
  area->folios.clear();
  if (area->file != nullptr) fput(area->file);
  area->file = nullptr;
}

// khosim inspect: the IOMMU's FLB record (linux/kho/abi/iommu.h) as it
// sits in memory: the three array chains with every slot, DELETED ones
// included, and for each domain the page-table pages reachable from its
// top table; an iommufd file's record (linux/kho/abi/iommufd.h) and a
// VFIO device file's (linux/kho/abi/vfio_pci.h). Everything is read
// defensively (it may be a corrupt record): only RAM, bounded chains, each
// table page counted once.
#include <algorithm>
#include <cstring>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/linux/intel_iommu_regs.h"
#include "khosim/linux/kho/abi/iommu.h"
#include "khosim/linux/kho/abi/iommufd.h"
#include "khosim/linux/kho/abi/vfio_pci.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/machine/machine.h"

namespace khosim::scenario {
namespace {

constexpr int kMaxArrayPagesShown = 16;
constexpr size_t kMaxTablePagesCounted = 1 << 20;

template <typename T>
bool Read(Machine& m, uint64_t pa, T* out) {
  if (pa == 0 || !m.memory().IsRam(PhysAddr(pa), sizeof(T))) return false;
  std::memcpy(out, m.memory().Virt(PhysAddr(pa)), sizeof(T));
  return true;
}

std::string Flags(uint32_t flags) {
  std::string out;
  if (flags & IOMMU_SER_FLAG_DELETED) out += " DELETED";
  if (flags & IOMMU_SER_FLAG_INCOMING) out += " INCOMING";
  return out;
}

// Table pages reachable from |top| (a |levels|-level second-stage table).
size_t CountTables(Machine& m, uint64_t top, unsigned levels) {
  absl::flat_hash_set<uint64_t> seen;
  std::vector<std::pair<uint64_t, unsigned>> todo = {{top, levels}};
  while (!todo.empty() && seen.size() < kMaxTablePagesCounted) {
    auto [table, level] = todo.back();
    todo.pop_back();
    if (!m.memory().IsRam(PhysAddr(table), VTD_PAGE_SIZE) || !seen.insert(table).second) continue;
    if (level <= 1) continue;
    const auto* entries = reinterpret_cast<const uint64_t*>(m.memory().Virt(PhysAddr(table)));
    for (unsigned i = 0; i < 512; ++i) {
      const uint64_t pte = entries[i];
      if ((pte & (DMA_PTE_READ | DMA_PTE_WRITE)) != 0 && (pte & DMA_PTE_LARGE_PAGE) == 0) {
        todo.push_back({pte & DMA_PTE_ADDR_MASK, level - 1});
      }
    }
  }
  return seen.size();
}

// Calls |fn|(slot address, slot) for each object of the chain at |head|.
template <typename T, typename Fn>
void ForEachSlot(Machine& m, uint64_t head, const char* what, std::string* out, Fn&& fn) {
  const uint64_t per_page = (m.config().page_size - sizeof(struct iommu_array_hdr_ser)) / sizeof(T);
  int n = 0;
  for (uint64_t pa = head; pa != 0 && n < kMaxArrayPagesShown; ++n) {
    struct iommu_array_hdr_ser hdr;
    if (!Read(m, pa, &hdr)) {
      absl::StrAppend(out, absl::StrFormat("      %s page 0x%x: not RAM\n", what, pa));
      return;
    }
    absl::StrAppend(
        out, absl::StrFormat("      %s page %d at 0x%x: %d object(s)%s, next 0x%x\n", what, n, pa,
                             hdr.nr_objects, hdr.nr_objects > per_page ? " (more than fit)" : "",
                             hdr.next_array_phys));
    for (uint64_t i = 0; i < hdr.nr_objects && i < per_page; ++i) {
      const uint64_t slot = pa + sizeof(hdr) + i * sizeof(T);
      T obj;
      if (Read(m, slot, &obj)) fn(slot, obj);
    }
    pa = hdr.next_array_phys;
  }
}

}  // namespace

void AppendIommuFlb(Machine& m, const char* side, uint64_t pa, std::string* out) {
  struct iommu_flb_ser ser;
  if (!Read(m, pa, &ser)) return;
  absl::StrAppend(
      out, absl::StrFormat("    %s iommu_flb_ser at 0x%x: version %d\n", side, pa, ser.version));
  ForEachSlot<struct iommu_hw_ser>(
      m, ser.iommu_array_phys, "unit", out, [&](uint64_t slot, const struct iommu_hw_ser& u) {
        int contexts = 0;
        for (uint64_t word : u.intel.context_tables_bitmap) contexts += __builtin_popcountll(word);
        absl::StrAppend(
            out, absl::StrFormat("        0x%x: unit at 0x%x, type %d, refs %d%s, root table 0x%x, "
                                 "%d context table(s)\n",
                                 slot, u.token, u.type, u.hdr.ref_count, Flags(u.hdr.flags),
                                 u.intel.root_table, contexts));
      });
  ForEachSlot<struct iommu_domain_ser>(
      m, ser.iommu_domain_array_phys, "domain", out,
      [&](uint64_t slot, const struct iommu_domain_ser& d) {
        const unsigned levels = static_cast<unsigned>(d.top_level + 1);
        const size_t tables =
            levels >= 3 && levels <= 5 ? CountTables(m, d.top_table_phys, levels) : 0;
        absl::StrAppend(
            out, absl::StrFormat("        0x%x: domain, refs %d%s, top table 0x%x, level %d, %d "
                                 "bits, %d table page(s)\n",
                                 slot, d.hdr.ref_count, Flags(d.hdr.flags), d.top_table_phys,
                                 d.top_level, d.vasz, tables));
      });
  ForEachSlot<struct iommu_device_ser>(
      m, ser.device_array_phys, "device", out,
      [&](uint64_t slot, const struct iommu_device_ser& d) {
        absl::StrAppend(
            out,
            absl::StrFormat("        0x%x: %04x:%02x:%02x.%d, refs %d%s, domain id %d, "
                            "domain 0x%x, unit 0x%x, owner token 0x%x\n",
                            slot, d.pci_domain_nr, (d.devid >> 8) & 0xff, PCI_SLOT(d.devid & 0xff),
                            PCI_FUNC(d.devid & 0xff), d.hdr.ref_count, Flags(d.hdr.flags),
                            d.domain_iommu_ser.attachment_id, d.domain_iommu_ser.domain_phys,
                            d.domain_iommu_ser.iommu_phys, d.dma_owner_token));
      });
}

void AppendIommufdRecord(Machine& m, uint64_t pa, std::string* out) {
  struct iommufd_ser ser;
  if (!Read(m, pa, &ser)) {
    absl::StrAppend(out, absl::StrFormat("        iommufd_ser at 0x%x: not in RAM\n", pa));
    return;
  }
  const uint64_t room = (m.config().page_size - sizeof(ser)) / sizeof(struct iommufd_hwpt_ser);
  absl::StrAppend(out,
                  absl::StrFormat("        iommufd_ser at 0x%x: %d HWPT(s)%s\n", pa, ser.nr_hwpts,
                                  ser.nr_hwpts > room ? " (more than its first page holds)" : ""));
  for (uint64_t i = 0; i < std::min(ser.nr_hwpts, room); ++i) {
    struct iommufd_hwpt_ser h;
    if (!Read(m, pa + sizeof(ser) + i * sizeof(h), &h)) break;
    absl::StrAppend(out, absl::StrFormat("          token 0x%x: domain 0x%x%s\n", h.token,
                                         h.domain_data, h.reclaimed ? ", reclaimed" : ""));
  }
}

void AppendVfioRecord(Machine& m, uint64_t pa, std::string* out) {
  struct vfio_pci_core_device_ser ser;
  if (!Read(m, pa, &ser)) {
    absl::StrAppend(out,
                    absl::StrFormat("        vfio_pci_core_device_ser at 0x%x: not in RAM\n", pa));
    return;
  }
  absl::StrAppend(
      out, absl::StrFormat("        vfio_pci_core_device_ser at 0x%x: %04x:%02x:%02x.%d\n", pa,
                           ser.domain, ser.bdf >> 8, (ser.bdf >> 3) & 0x1f, ser.bdf & 7));
}

}  // namespace khosim::scenario

// Handover-state inspection and the machine image (see the header).
#include "khosim/scenario/inspect.h"

#include <fcntl.h>
#include <libfdt.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/abi/block.h"
#include "khosim/abi/luo.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/kho/abi/iommu.h"
#include "khosim/linux/kho/abi/iommufd.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/linux/kho/abi/vfio_pci.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/luo/luo.h"
#include "khosim/scenario/scenario.h"

namespace khosim::scenario {

// inspect_iommu.cc
void AppendIommuFlb(Machine& m, const char* side, uint64_t pa, std::string* out);
void AppendIommufdRecord(Machine& m, uint64_t pa, std::string* out);
void AppendVfioRecord(Machine& m, uint64_t pa, std::string* out);

namespace {

constexpr int kMaxChainBlocksShown = 16;

std::string PropertyValue(const uint8_t* v, int len) {
  if (len == 0) return "<empty>";
  // A string (list): NUL-terminated, printable, no empty members.
  bool printable = v[len - 1] == 0 && v[0] != 0;
  for (int i = 1; i + 1 < len && printable; ++i) {
    printable = v[i] == 0 ? v[i - 1] != 0 : std::isprint(v[i]) != 0;
  }
  if (printable) {
    std::string s(reinterpret_cast<const char*>(v), len - 1);
    for (char& c : s) {
      if (c == 0) c = ',';
    }
    return absl::StrCat("\"", s, "\"");
  }
  if (len == 8) {  // KHO stores u64s native-endian
    uint64_t x;
    std::memcpy(&x, v, 8);
    return absl::StrFormat("<u64 0x%x>", x);
  }
  std::string hex = "[";
  for (int i = 0; i < len && i < 32; ++i)
    absl::StrAppend(&hex, absl::StrFormat("%s%02x", i ? " " : "", v[i]));
  if (len > 32) absl::StrAppend(&hex, absl::StrFormat(" ... (%d bytes)", len));
  return hex + "]";
}

// The FDT as an indented tree, one line per node and per property.
void AppendFdtTree(const std::vector<uint8_t>& blob, std::string* out) {
  const void* fdt = blob.data();
  if (blob.size() < sizeof(struct fdt_header) || fdt_check_header(fdt) != 0) {
    absl::StrAppend(out, "    <not a valid FDT>\n");
    return;
  }
  int depth = 0;
  for (int node = 0; node >= 0 && depth >= 0; node = fdt_next_node(fdt, node, &depth)) {
    const std::string indent(4 + 2 * depth, ' ');
    const char* name = fdt_get_name(fdt, node, nullptr);
    absl::StrAppend(out, indent, depth == 0 ? "/" : absl::StrCat(name != nullptr ? name : "?", "/"),
                    "\n");
    int prop;
    fdt_for_each_property_offset(prop, fdt, node) {
      const char* pname = nullptr;
      int len = 0;
      const auto* val = static_cast<const uint8_t*>(fdt_getprop_by_offset(fdt, prop, &pname, &len));
      if (val == nullptr) continue;
      absl::StrAppend(out, indent, "  ", pname != nullptr ? pname : "?", " = ",
                      PropertyValue(val, len), "\n");
    }
  }
}

// Walks a KHO block chain of our own kernel; calls |fn| per block.
template <typename Fn>
void ForEachBlock(Machine& m, uint64_t head, Fn fn) {
  const uint64_t page = m.config().page_size;
  uint64_t pa = head;
  for (uint64_t n = 0; pa != 0 && n < abi::kKhoMaxBlocks; ++n) {
    if (pa % page != 0 || !m.memory().IsRam(PhysAddr(pa), page)) return;
    const uint8_t* block = m.memory().Virt(PhysAddr(pa));
    abi::KhoBlockHeader header;
    std::memcpy(&header, block, sizeof(header));
    fn(n, pa, header, block + sizeof(header));
    pa = header.next;
  }
}

// The PCI core's FLB record (linux/kho/abi/pci.h) at |pa| and its block
// chain: every entry, freed slots (refcount 0) included.
void AppendPciFlb(Machine& m, absl::string_view side, uint64_t pa, std::string* out) {
  const uint64_t page = m.config().page_size;
  if (pa == 0 || !m.memory().IsRam(PhysAddr(pa), sizeof(struct pci_ser))) return;
  struct pci_ser ser;
  std::memcpy(&ser, m.memory().Virt(PhysAddr(pa)), sizeof(ser));
  absl::StrAppend(
      out, absl::StrFormat("    %s pci_ser at 0x%x: version %d, %d device(s), devices 0x%x\n", side,
                           pa, ser.version, ser.nr_devices, ser.devices));
  const uint64_t per_block = (page - sizeof(abi::KhoBlockHeader)) / sizeof(struct pci_dev_ser);
  ForEachBlock(
      m, ser.devices,
      [&](uint64_t n, uint64_t bpa, const abi::KhoBlockHeader& h, const uint8_t* entries) {
        if (n >= kMaxChainBlocksShown) return;
        absl::StrAppend(out, absl::StrFormat("      block %d at 0x%x: %d entr%s, next 0x%x\n", n,
                                             bpa, h.count, h.count == 1 ? "y" : "ies", h.next));
        for (uint64_t i = 0; i < h.count && i < per_block; ++i) {
          struct pci_dev_ser e;
          std::memcpy(&e, entries + i * sizeof(e), sizeof(e));
          absl::StrAppend(
              out, absl::StrFormat("        %04x:%02x:%02x.%d  refcount %d%s\n", e.domain,
                                   e.bdf >> 8, PCI_SLOT(e.bdf & 0xff), PCI_FUNC(e.bdf & 0xff),
                                   e.refcount, e.refcount == 0 ? " (free slot)" : ""));
        }
      });
}

void AppendLuoChains(Machine& m, const abi::LuoSer& ser, std::string* out) {
  const uint64_t page = m.config().page_size;
  const uint64_t per_session_block = abi::KhoBlockEntriesPerBlock(page, sizeof(abi::LuoSessionSer));
  const uint64_t per_file_block = abi::KhoBlockEntriesPerBlock(page, sizeof(abi::LuoFileSer));
  absl::StrAppend(out,
                  absl::StrFormat("  luo_ser: liveupdate_num %d, sessions_pa 0x%x, flbs_pa 0x%x\n",
                                  ser.liveupdate_num, ser.sessions_pa, ser.flbs_pa));
  if (ser.sessions_pa == 0) {
    absl::StrAppend(out, "  session chain: none (LUO serializes at reboot)\n");
    return;
  }
  absl::StrAppend(out,
                  absl::StrFormat("  session chain (%d records per block):\n", per_session_block));
  ForEachBlock(
      m, ser.sessions_pa,
      [&](uint64_t n, uint64_t pa, const abi::KhoBlockHeader& h, const uint8_t* entries) {
        if (n >= kMaxChainBlocksShown) return;
        absl::StrAppend(out, absl::StrFormat("    block %d at 0x%x: %d session(s), next 0x%x\n", n,
                                             pa, h.count, h.next));
        for (uint64_t i = 0; i < h.count && i < per_session_block; ++i) {
          abi::LuoSessionSer s;
          std::memcpy(&s, entries + i * sizeof(s), sizeof(s));
          const std::string name(s.name, strnlen(s.name, sizeof(s.name)));
          absl::StrAppend(
              out, absl::StrFormat("      session \"%s\": %d file(s), file chain 0x%x\n", name,
                                   s.file_set.count, s.file_set.files));
          ForEachBlock(
              m, s.file_set.files,
              [&](uint64_t fn, uint64_t fpa, const abi::KhoBlockHeader& fh, const uint8_t* files) {
                if (fn >= kMaxChainBlocksShown) return;
                absl::StrAppend(
                    out, absl::StrFormat("        block %d at 0x%x: %d file(s), next 0x%x\n", fn,
                                         fpa, fh.count, fh.next));
                for (uint64_t j = 0; j < fh.count && j < per_file_block && j < 8; ++j) {
                  abi::LuoFileSer f;
                  std::memcpy(&f, files + j * sizeof(f), sizeof(f));
                  const std::string compat(f.compatible,
                                           strnlen(f.compatible, sizeof(f.compatible)));
                  absl::StrAppend(out, absl::StrFormat("          token 0x%x  %-12s data 0x%x\n",
                                                       f.token, compat, f.data));
                }
                if (fh.count > 8)
                  absl::StrAppend(out, absl::StrFormat("          ... %d more\n", fh.count - 8));
              });
        }
      });
}

}  // namespace

std::string InspectText(Machine& m, const abi::KhoData& handover) {
  std::string out;
  if (!m.has_kernel()) return "no kernel is running\n";
  Kernel& k = m.kernel();
  kho::Kho& kho = k.kho();
  absl::StrAppend(
      &out, absl::StrFormat("kernel: generation %d, phase %s, command line \"%s\"\n",
                            k.generation(), BootPhaseName(k.phase()), k.ctx().cmdline().text()));
  absl::StrAppend(&out, absl::StrFormat("KHO: %s, %s\n", kho.enabled() ? "enabled" : "disabled",
                                        kho.is_kho_boot() ? "booted from a KHO handover"
                                                          : "no incoming handover"));
  absl::StrAppend(&out, "\nhandover record (kho_data)\n");
  absl::StrAppend(
      &out, absl::StrFormat("  fdt_addr 0x%x  fdt_size %d  scratch_addr 0x%x  scratch_size %d\n",
                            handover.fdt_addr, handover.fdt_size, handover.scratch_addr,
                            handover.scratch_size));
  const kho::KhoDebugView view = kho.DebugView();
  absl::StrAppend(&out, "\nboot memory (kho/out/scratch)\n");
  for (size_t i = 0; i < view.scratch_phys.size(); ++i) {
    absl::StrAppend(&out, absl::StrFormat("  %2d  0x%012x  %s\n", i, view.scratch_phys[i],
                                          FormatBytes(view.scratch_len[i])));
  }
  if (!view.out_fdt.empty()) {
    absl::StrAppend(&out, absl::StrFormat("\noutgoing root FDT (kho/out/fdt) at 0x%x, %d bytes\n",
                                          kho.out_fdt().value(), view.out_fdt.size()));
    AppendFdtTree(view.out_fdt, &out);
  }
  if (!view.in_fdt.empty()) {
    absl::StrAppend(&out, absl::StrFormat("\nincoming root FDT (kho/in/fdt) at 0x%x, %d bytes\n",
                                          kho.in_fdt().value(), view.in_fdt.size()));
    AppendFdtTree(view.in_fdt, &out);
  }

  absl::StrAppend(&out, "\npreservation tracker\n");
  if (const kho::PreservationTracker* tracker = kho.tracker();
      tracker != nullptr && tracker->ready()) {
    std::map<unsigned, uint64_t> by_order;
    uint64_t blocks = 0;
    uint64_t bytes = 0;
    tracker->ForEachBlock(
        [&](PhysAddr, unsigned order) {
          ++by_order[order];
          ++blocks;
          bytes += m.config().page_size << order;
          return 0;
        },
        nullptr);
    const kho::TrackerStats stats = tracker->Stats();
    std::string where;
    if (const kho::RadixTree* tree = kho.out_tree(); tree != nullptr) {
      where = absl::StrFormat("root 0x%x, ", tree->root().value());
    } else if (!tracker->handover().IsNull()) {
      where = absl::StrFormat("chunk list 0x%x, ", tracker->handover().value());
    }
    absl::StrAppend(&out, absl::StrFormat("  outgoing: %s (%s), %s%d metadata page(s), %d "
                                          "block(s), %s\n",
                                          tracker->name(), kho.compatible(), where,
                                          stats.metadata_pages, blocks, FormatBytes(bytes)));
    for (const auto& [order, n] : by_order) {
      absl::StrAppend(&out, absl::StrFormat("    order %2d: %d block(s)\n", order, n));
    }
  } else {
    absl::StrAppend(&out, "  outgoing: no tracker\n");
  }
  if (kho.is_kho_boot()) {
    absl::StrAppend(&out,
                    absl::StrFormat("  incoming: %d block(s) handed over, %d not yet restored, "
                                    "kexec count %d, previous release \"%s\"\n",
                                    kho.retrieved_blocks(), kho.UnrestoredBlocks(),
                                    kho.incoming_kexec_count(), kho.previous_release()));
  }

  luo::Luo& luo = k.luo();
  absl::StrAppend(&out, "\nLUO\n");
  if (!luo.enabled()) {
    absl::StrAppend(&out, "  disabled (needs kho=on liveupdate=on)\n");
    return out;
  }
  absl::StrAppend(
      &out, absl::StrFormat("  profile %s, live updates so far %d, %s, %d preserved file "
                            "identit%s, session set %d page(s)\n",
                            luo::LuoProfileName(luo.profile()), luo.incoming_liveupdate_num(),
                            luo.frozen_for_kexec() ? "frozen for kexec" : "running",
                            luo.preserved_file_count(),
                            luo.preserved_file_count() == 1 ? "y" : "ies", luo.session_blocks()));
  auto sessions = [&](const char* title, const std::vector<luo::Luo::SessionInfo>& list) {
    absl::StrAppend(&out, absl::StrFormat("  %s sessions: %d\n", title, list.size()));
    for (const luo::Luo::SessionInfo& s : list) {
      absl::StrAppend(
          &out,
          absl::StrFormat("    \"%s\"%s: %d file(s), file set %d page(s)\n", s.name,
                          s.incoming ? (s.retrieved ? " (retrieved)" : " (not retrieved)") : "",
                          s.files.size(), s.file_blocks));
      for (const luo::Luo::FileInfo& f : s.files) {
        absl::StrAppend(&out,
                        absl::StrFormat("      token 0x%x  %-12s %s\n", f.token, f.compatible,
                                        f.retrieve_status != 0
                                            ? absl::StrCat("retrieve failed ", f.retrieve_status)
                                        : f.has_file ? "file open"
                                                     : ""));
        if (f.compatible == IOMMUFD_LUO_COMPATIBLE && f.data != 0) {
          AppendIommufdRecord(m, f.data, &out);
        }
        if (f.compatible == VFIO_PCI_LUO_FH_COMPATIBLE && f.data != 0) {
          AppendVfioRecord(m, f.data, &out);
        }
      }
    }
  };
  sessions("outgoing", luo.OutgoingSessions());
  if (luo.deserialized()) {
    sessions("incoming", luo.IncomingSessions());
  } else {
    absl::StrAppend(&out, "  incoming sessions: not read yet (/dev/liveupdate never opened)\n");
  }
  for (const luo::Luo::FlbInfo& f : luo.Flbs()) {
    absl::StrAppend(
        &out, absl::StrFormat("  FLB %s: outgoing %d, incoming %d, %d user(s)\n", f.compatible,
                              f.outgoing_count, f.incoming_count, f.users));
    if (f.compatible == PCI_LUO_FLB_COMPATIBLE) {
      AppendPciFlb(m, "outgoing", f.outgoing_data, &out);
      if (!f.incoming_finished) AppendPciFlb(m, "incoming", f.incoming_data, &out);
    }
    if (f.compatible == IOMMU_LUO_FLB_COMPATIBLE) {
      AppendIommuFlb(m, "outgoing", f.outgoing_data, &out);
      if (!f.incoming_finished) AppendIommuFlb(m, "incoming", f.incoming_data, &out);
    }
  }
  if (const abi::LuoSer* ser = luo.outgoing_record(); ser != nullptr) {
    absl::StrAppend(&out, "\nLUO block chains (outgoing)\n");
    AppendLuoChains(m, *ser, &out);
  }
  return out;
}

absl::StatusOr<ImageStats> WriteMachineImage(Machine& m, const abi::KhoData& handover,
                                             const std::string& next_cmdline,
                                             const std::string& path) {
  if (!m.has_kernel()) return absl::FailedPreconditionError("no kernel is running");
  if (handover.fdt_addr == 0) {
    return absl::FailedPreconditionError(
        "no handover record: stop at a kexec point (--at=kexec:N) with KHO on");
  }
  Kernel& k = m.kernel();
  const kho::PreservationTracker* tracker = k.kho().tracker();
  if (tracker == nullptr || !tracker->ready()) {
    return absl::FailedPreconditionError("KHO has no outgoing tracker");
  }
  const uint64_t page = m.config().page_size;
  std::vector<ImageRange> ranges;
  tracker->ForEachBlock(
      [&](PhysAddr pa, unsigned order) {
        ranges.push_back({pa.value(), page << order,
                          static_cast<uint32_t>(ImageRangeKind::kPreservedBlock), order});
        return 0;
      },
      [&](PhysAddr node) {
        ranges.push_back(
            {node.value(), page, static_cast<uint32_t>(ImageRangeKind::kTrackerNode), 0});
        return 0;
      });
  if (handover.scratch_size != 0) {
    ranges.push_back({handover.scratch_addr, handover.scratch_size,
                      static_cast<uint32_t>(ImageRangeKind::kScratchTable), 0});
  }
  // The dump reads pages the running kernel may have made inaccessible; the
  // machine does not run on after this.
  m.memory().ResetAccess();

  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  ImageStats stats;
  absl::Status status;
  auto write_at = [&](const void* data, uint64_t len, uint64_t offset) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (len > 0 && status.ok()) {
      const ssize_t w = ::pwrite(fd, p, len, static_cast<off_t>(offset));
      if (w < 0) {
        if (errno == EINTR) continue;
        status = absl::ErrnoToStatus(errno, absl::StrCat("write ", path));
        return;
      }
      p += w;
      len -= static_cast<uint64_t>(w);
      offset += static_cast<uint64_t>(w);
    }
  };
  uint64_t phys_end = 0;
  for (const ImageRange& r : ranges) {
    phys_end = std::max(phys_end, r.phys + r.len);
    // Only resident bytes: the rest reads as zero, and stays a hole.
    m.memory().ForEachResidentRange(PhysAddr(r.phys), r.len, [&](PhysAddr pa, uint64_t len) {
      write_at(m.memory().Virt(pa), len, pa.value());
    });
    stats.bytes += r.len;
  }
  ImageHeader header = {};
  std::memcpy(header.magic, kImageMagic, sizeof(kImageMagic));
  header.version = 1;
  header.header_size = sizeof(ImageHeader);
  header.page_size = page;
  header.handover = handover;
  header.phys_end = phys_end;
  header.ranges_offset = (phys_end + page - 1) / page * page;
  header.nr_ranges = ranges.size();
  header.generation = k.generation();
  std::strncpy(header.cmdline, next_cmdline.c_str(), sizeof(header.cmdline) - 1);
  write_at(&header, sizeof(header), 0);
  write_at(ranges.data(), ranges.size() * sizeof(ImageRange), header.ranges_offset);
  stats.ranges = ranges.size();
  stats.file_size = header.ranges_offset + ranges.size() * sizeof(ImageRange);
  if (::close(fd) != 0 && status.ok()) status = absl::ErrnoToStatus(errno, "close");
  if (!status.ok()) return status;
  return stats;
}

}  // namespace khosim::scenario

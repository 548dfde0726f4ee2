// Text and JSON renderings of a RunReport (see the header).
#include "khosim/scenario/report.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace khosim::scenario {
namespace {

std::string Ms(double ms) {
  return ms >= 10000 ? absl::StrFormat("%.1f s", ms / 1000) : absl::StrFormat("%.1f ms", ms);
}

std::string BootTitle(const BootReport& b) {
  return absl::StrFormat("boot %d (generation %d, %s): %s", b.boot, b.generation,
                         b.boot == 1  ? "cold boot"
                         : b.kho_boot ? "KHO kexec"
                                      : "plain kexec",
                         b.cmdline.empty() ? "<empty command line>" : b.cmdline);
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string Count(int n) { return n == 0 ? "-" : absl::StrCat(n); }

// The PCI functions each boot left in a state worth a line: bound to a
// driver, mastering, or with an FLB "pci" entry in either kernel.
void FormatDevices(const RunReport& r, std::string* out) {
  std::vector<std::string> rows;
  for (const BootReport& b : r.boots) {
    for (const DeviceState& d : b.devices) {
      if (d.driver.empty() && !d.bus_master && d.outgoing_refcount == 0 &&
          d.incoming_refcount == 0 && !d.was_incoming) {
        continue;
      }
      rows.push_back(absl::StrFormat("  %-4d %-10s %-13s %-16s %-6s %4s %4s  %s\n", b.boot, d.name,
                                     OrDash(d.bdf), OrDash(d.driver), d.bus_master ? "on" : "off",
                                     Count(d.outgoing_refcount), Count(d.incoming_refcount),
                                     d.was_incoming ? "yes" : "no"));
    }
  }
  if (rows.empty()) return;
  absl::StrAppend(out, "\nPCI devices (at the end of each boot's userspace)\n");
  absl::StrAppend(
      out, absl::StrFormat("  %-4s %-10s %-13s %-16s %-6s %4s %4s  %s\n", "boot", "device", "bdf",
                           "driver", "master", "out", "in", "came in"));
  for (const std::string& row : rows) absl::StrAppend(out, row);
}

// What the DMA engines did around each boot, for boots where they did
// anything, and every fault, stray write or stop.
void FormatDma(const RunReport& r, std::string* out) {
  std::string rows;
  for (const BootReport& b : r.boots) {
    const DmaReport& d = b.dma;
    if (d.kexec_bytes + d.boot_bytes + d.userspace_bytes + d.faults + d.stray_writes + d.stops ==
        0) {
      continue;
    }
    absl::StrAppend(
        &rows, absl::StrFormat("  %-4d %12s %12s %12s %6d %6d %6d\n", b.boot,
                               FormatBytes(d.kexec_bytes), FormatBytes(d.boot_bytes),
                               FormatBytes(d.userspace_bytes), d.faults, d.stray_writes, d.stops));
    for (const std::string& e : d.events) absl::StrAppend(&rows, "       ", e, "\n");
  }
  if (rows.empty()) return;
  absl::StrAppend(out,
                  "\nDMA (bytes the devices wrote into the kexec, the kernel's boot, userspace)\n");
  absl::StrAppend(out, absl::StrFormat("  %-4s %12s %12s %12s %6s %6s %6s\n", "boot", "kexec",
                                       "boot", "userspace", "faults", "stray", "stops"));
  absl::StrAppend(out, rows);
}

}  // namespace

std::string HandlersText(const std::vector<HandlerInfo>& handlers) {
  std::vector<std::string> parts;
  for (const HandlerInfo& h : handlers) {
    parts.push_back(h.compatible.empty() ? h.name : absl::StrCat(h.name, " (", h.compatible, ")"));
  }
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

std::string FormatTextReport(const RunReport& r) {
  std::string out = absl::StrFormat("scenario %s (%s)\n", r.scenario, r.source);
  for (const std::string& line : r.program_lines) absl::StrAppend(&out, "  | ", line, "\n");
  for (const BootReport& b : r.boots) {
    absl::StrAppend(&out, "\n", BootTitle(b), "\n");
    absl::StrAppend(&out,
                    absl::StrFormat("  profiles      %s, LUO %s\n", b.kho_profile, b.luo_profile));
    absl::StrAppend(&out, "  handlers      ", HandlersText(b.handlers), "\n");
    if (r.program) {
      absl::StrAppend(&out, absl::StrFormat("  WARNs         %d\n", b.warns));
      continue;
    }
    if (b.boot > 1) {
      absl::StrAppend(&out,
                      absl::StrFormat("  retrieved     %d session(s), %d file(s), %s; "
                                      "KHO handed over %d block(s)\n",
                                      b.sessions_retrieved, b.files_retrieved,
                                      FormatBytes(b.file_bytes_retrieved), b.kho_blocks_retrieved));
      absl::StrAppend(&out, absl::StrFormat("  verified      %s\n", FormatBytes(b.bytes_verified)));
      absl::StrAppend(&out,
                      absl::StrFormat("  finished      %d session(s)\n", b.sessions_finished));
      absl::StrAppend(&out, "  leaked        ",
                      b.leaked_blocks ? absl::StrFormat("%d preserved block(s)", *b.leaked_blocks)
                                      : std::string("not checked"),
                      "\n");
    }
    if (b.sessions_preserved + b.kho_blocks_preserved > 0) {
      absl::StrAppend(
          &out, absl::StrFormat("  preserved     %d session(s), %d file(s), %s of file data; KHO "
                                "tracker: %d block(s), %s, %d metadata page(s)\n",
                                b.sessions_preserved, b.files_preserved,
                                FormatBytes(b.file_bytes_preserved), b.kho_blocks_preserved,
                                FormatBytes(b.kho_bytes_preserved), b.tracker_node_pages));
    }
    if (!b.hugetlb_pools.empty()) {
      std::vector<std::string> pools;
      for (const HugetlbPool& p : b.hugetlb_pools) {
        pools.push_back(absl::StrFormat(
            "%s: %d page(s), %d free (hugepages=%d%s)", FormatBytes(p.page_size), p.nr_huge_pages,
            p.free_huge_pages, p.requested,
            p.preserved != 0
                ? absl::StrFormat("; %d left out at boot for the previous kernel's preserved pages",
                                  p.preserved)
                : ""));
      }
      absl::StrAppend(&out, "  hugetlb pools ", absl::StrJoin(pools, "; "), "\n");
    }
    absl::StrAppend(&out, absl::StrFormat("  WARNs         %d\n", b.warns));
    for (const std::string& note : b.notes) absl::StrAppend(&out, "  note          ", note, "\n");
  }
  FormatDevices(r, &out);
  FormatDma(r, &out);
  bool any_preserved = false;
  for (const BootReport& b : r.boots) any_preserved = any_preserved || !b.preserved_files.empty();
  if (any_preserved) {
    // The boot that preserved; the handler is what the next kernel must have.
    absl::StrAppend(&out, "\nfiles preserved\n");
    absl::StrAppend(&out, absl::StrFormat("  %-4s %-12s %-10s %-6s %10s  %s\n", "boot", "file",
                                          "session", "token", "size", "handler"));
    for (const BootReport& b : r.boots) {
      for (const PreservedFile& f : b.preserved_files) {
        absl::StrAppend(
            &out, absl::StrFormat("  %-4d %-12s %-10s 0x%-4x %10s  %s\n", b.boot, OrDash(f.file),
                                  f.session, f.token, f.file.empty() ? "-" : FormatBytes(f.size),
                                  OrDash(f.handler)));
      }
    }
  }
  if (!r.files.empty()) {
    // handler: the one the previous kernel preserved the file with.
    absl::StrAppend(&out, "\nfiles verified\n");
    absl::StrAppend(
        &out, absl::StrFormat("  %-4s %-12s %-10s %-6s %10s  %-6s %-16s %-18s %s\n", "boot", "file",
                              "session", "token", "size", "verify", "hash", "handler", "result"));
    for (const FileCheck& f : r.files) {
      absl::StrAppend(
          &out, absl::StrFormat("  %-4d %-12s %-10s 0x%-4x %10s  %-6s %016x %-18s %s\n", f.boot,
                                f.file, f.session, f.token, FormatBytes(f.size), f.verify, f.hash,
                                OrDash(f.handler), f.ok ? "ok" : "DIVERGED"));
    }
  }
  if (!r.phases.empty()) {
    absl::StrAppend(&out, "\ncost per phase\n");
    absl::StrAppend(&out, absl::StrFormat("  %-4s %-16s %10s %10s %12s %12s %8s\n", "boot", "phase",
                                          "wall", "bytes", "page allocs", "fault hits", "events"));
    for (const PhaseCost& c : r.phases) {
      absl::StrAppend(
          &out, absl::StrFormat("  %-4d %-16s %10s %10s %12d %12d %8d\n", c.boot, c.name,
                                Ms(c.wall_ms), c.bytes ? FormatBytes(c.bytes) : "-", c.page_allocs,
                                c.fault_point_hits, c.trace_events));
    }
  }
  if (!r.warns.empty()) {
    absl::StrAppend(&out, "\nWARNs\n");
    for (const WarnRecord& w : r.warns) {
      absl::StrAppend(
          &out, absl::StrFormat("  boot %d: %s x%d: %s\n", w.boot, w.site, w.count, w.message));
    }
  }
  if (!r.faults_injected.empty()) {
    absl::StrAppend(&out, "\nfaults injected: ", absl::StrJoin(r.faults_injected, ", "), "\n");
  }
  if (r.divergence) {
    absl::StrAppend(&out, "\nfirst divergence\n  ", r.divergence->what, "\n");
  }
  absl::StrAppend(
      &out, absl::StrFormat("\n%d kexec(s), %s verified, %s in all, %s of simulated DRAM resident, "
                            "%d trace events\n",
                            r.kexecs_done, FormatBytes(r.bytes_verified), Ms(r.wall_ms),
                            FormatBytes(r.host_resident_bytes), r.trace_events));
  if (r.outcome == Outcome::kPassed) {
    absl::StrAppend(&out, "PASS\n");
  } else {
    absl::StrAppend(&out, "FAIL (", OutcomeName(r.outcome), "): ", r.message, "\n");
  }
  return out;
}

std::string ReportToJson(const RunReport& r) {
  // Keys in the order written, so the document reads top-down.
  using json = nlohmann::ordered_json;
  json doc;
  doc["format"] = kReportFormat;
  doc["scenario"] = r.scenario;
  doc["source"] = r.source;
  doc["outcome"] = std::string(OutcomeName(r.outcome));
  doc["exit_code"] = ExitCode(r.outcome);
  doc["message"] = r.message;
  doc["kexecs"] = r.kexecs_done;
  doc["bytes_verified"] = r.bytes_verified;
  doc["wall_ms"] = r.wall_ms;
  doc["host_resident_bytes"] = r.host_resident_bytes;
  doc["trace_events"] = r.trace_events;
  json boots = json::array();
  for (const BootReport& b : r.boots) {
    json jb;
    jb["boot"] = b.boot;
    jb["generation"] = b.generation;
    jb["cmdline"] = b.cmdline;
    jb["kho_profile"] = b.kho_profile;
    jb["luo_profile"] = b.luo_profile;
    json handlers = json::array();
    for (const HandlerInfo& h : b.handlers) {
      handlers.push_back({{"name", h.name}, {"compatible", h.compatible}});
    }
    jb["handlers"] = std::move(handlers);
    jb["kho_boot"] = b.kho_boot;
    jb["preserved"] = {
        {"sessions", b.sessions_preserved},          {"files", b.files_preserved},
        {"file_bytes", b.file_bytes_preserved},      {"kho_blocks", b.kho_blocks_preserved},
        {"kho_pages", b.kho_pages_preserved},        {"kho_bytes", b.kho_bytes_preserved},
        {"tracker_node_pages", b.tracker_node_pages}};
    json preserved_files = json::array();
    for (const PreservedFile& f : b.preserved_files) {
      preserved_files.push_back({{"session", f.session},
                                 {"token", f.token},
                                 {"file", f.file},
                                 {"size", f.size},
                                 {"handler", f.handler}});
    }
    jb["preserved_files"] = std::move(preserved_files);
    jb["retrieved"] = {{"kho_blocks", b.kho_blocks_retrieved},
                       {"sessions", b.sessions_retrieved},
                       {"files", b.files_retrieved},
                       {"file_bytes", b.file_bytes_retrieved}};
    jb["bytes_verified"] = b.bytes_verified;
    jb["sessions_finished"] = b.sessions_finished;
    jb["leaked_blocks"] = b.leaked_blocks ? json(*b.leaked_blocks) : json(nullptr);
    json pools = json::array();
    for (const HugetlbPool& p : b.hugetlb_pools) {
      pools.push_back({{"name", p.name},
                       {"page_size", p.page_size},
                       {"requested", p.requested},
                       {"preserved", p.preserved},
                       {"nr_huge_pages", p.nr_huge_pages},
                       {"free_huge_pages", p.free_huge_pages}});
    }
    jb["hugetlb_pools"] = std::move(pools);
    json devices = json::array();
    for (const DeviceState& d : b.devices) {
      devices.push_back({{"name", d.name},
                         {"bdf", d.bdf},
                         {"driver", d.driver},
                         {"bridge", d.bridge},
                         {"bus_master", d.bus_master},
                         {"outgoing_refcount", d.outgoing_refcount},
                         {"incoming_refcount", d.incoming_refcount},
                         {"was_incoming", d.was_incoming}});
    }
    jb["devices"] = std::move(devices);
    jb["dma"] = {{"kexec_bytes", b.dma.kexec_bytes},
                 {"boot_bytes", b.dma.boot_bytes},
                 {"userspace_bytes", b.dma.userspace_bytes},
                 {"faults", b.dma.faults},
                 {"stray_writes", b.dma.stray_writes},
                 {"stops", b.dma.stops},
                 {"events", b.dma.events}};
    jb["warns"] = b.warns;
    jb["notes"] = b.notes;
    boots.push_back(std::move(jb));
  }
  doc["boots"] = std::move(boots);
  json files = json::array();
  for (const FileCheck& f : r.files) {
    files.push_back({{"boot", f.boot},
                     {"process", f.process},
                     {"session", f.session},
                     {"token", f.token},
                     {"file", f.file},
                     {"size", f.size},
                     {"hash", absl::StrFormat("%016x", f.hash)},
                     {"verify", f.verify},
                     {"bytes_compared", f.bytes_compared},
                     {"handler", f.handler},
                     {"ok", f.ok}});
  }
  doc["files"] = std::move(files);
  json phases = json::array();
  for (const PhaseCost& c : r.phases) {
    phases.push_back({{"boot", c.boot},
                      {"phase", c.name},
                      {"wall_ms", c.wall_ms},
                      {"bytes", c.bytes},
                      {"page_allocs", c.page_allocs},
                      {"fault_point_hits", c.fault_point_hits},
                      {"trace_events", c.trace_events}});
  }
  doc["phases"] = std::move(phases);
  json warns = json::array();
  for (const WarnRecord& w : r.warns) {
    warns.push_back(
        {{"boot", w.boot}, {"site", w.site}, {"count", w.count}, {"message", w.message}});
  }
  doc["warns"] = std::move(warns);
  doc["faults_injected"] = r.faults_injected;
  if (r.divergence) {
    const Divergence& d = *r.divergence;
    doc["divergence"] = {{"boot", d.boot},
                         {"what", d.what},
                         {"file", d.file},
                         {"session", d.session},
                         {"token", d.token},
                         {"offset", d.offset ? json(*d.offset) : json(nullptr)},
                         {"expected", d.expected >= 0 ? json(d.expected) : json(nullptr)},
                         {"found", d.found >= 0 ? json(d.found) : json(nullptr)},
                         {"pages_differing", d.pages_differing}};
  } else {
    doc["divergence"] = nullptr;
  }
  doc["program"] = r.program;
  doc["program_lines"] = r.program_lines;
  return doc.dump(2);
}

}  // namespace khosim::scenario

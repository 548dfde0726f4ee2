// Runner::Impl, what a boot leaves in its report: the leak check after a
// KHO boot, what it preserved for the next kernel, its hugetlb pools.
#include "runner_impl.h"

namespace khosim::scenario {

void Runner::Impl::CheckLeaks(int boot, BootReport& br) {
  Kernel& k = kernel();
  if (!k.kho().is_kho_boot()) return;
  luo::Luo& luo = k.luo();
  if (luo.enabled() && !luo.deserialized()) {
    // Nobody asked LUO for the incoming sessions yet: open the device once
    // (as a live update agent would) so it reads them.
    fs::Process& agent = k.vfs().CreateProcess("khosim-leak-check");
    const int dev = luo::OpenLiveupdate(agent);
    if (dev >= 0) agent.Close(dev);
    if (dev < 0 && luo.deserialize_error() != 0) {
      // Not a leak: LUO refused the incoming sessions, so nobody could
      // have claimed them.
      Stop(Outcome::kFailed,
           absl::StrFormat("boot %d: the leak check's open(/dev/liveupdate): %s%s", boot,
                           ErrnoName(dev), OpenFailureHint()));
      return;
    }
  }
  if (luo.enabled() && !luo.IncomingSessions().empty()) {
    br.notes.push_back(absl::StrFormat(
        "leak check skipped: %d incoming session(s) not finished hold preserved memory",
        luo.IncomingSessions().size()));
    return;
  }
  // KHO keeps the previous root FDT for kho_retrieve_subtree all boot.
  unsigned order = 0;
  const uint64_t fdt = k.kho().incoming_handover().fdt_addr;
  const uint64_t held = k.kho().IsPreservedHead(PhysAddr(fdt), &order) ? 1 : 0;
  const uint64_t unclaimed = k.kho().UnrestoredBlocks();
  br.leaked_blocks = unclaimed > held ? unclaimed - held : 0;
  if (*br.leaked_blocks != 0) {
    Stop(Outcome::kFailed,
         absl::StrFormat("boot %d: %d preserved block(s) of boot %d were never claimed after every "
                         "session was finished (leak)",
                         boot, *br.leaked_blocks, boot - 1));
  }
}

void Runner::Impl::RecordOutgoing(BootReport& br) {
  Kernel& k = kernel();
  const BootSpec& spec = s_.boots[br.boot - 1];
  if (k.luo().enabled()) {
    // Scenario file names by (session, token), to name what LUO lists.
    std::map<std::pair<std::string, uint64_t>, const FileSpec*> named;
    for (const ProcessSpec& p : spec.processes) {
      for (const SessionSpec& sess : p.sessions) {
        if (!sess.preserve) continue;
        for (const FileRef& ref : *sess.preserve) {
          named[{sess.name, ref.token}] = s_.FindFile(ref.file);
        }
      }
    }
    for (const luo::Luo::SessionInfo& s : k.luo().OutgoingSessions()) {
      ++br.sessions_preserved;
      br.files_preserved += s.files.size();
      for (const luo::Luo::FileInfo& fi : s.files) {
        PreservedFile pf{.session = s.name, .token = fi.token, .handler = fi.compatible};
        if (auto it = named.find({s.name, fi.token}); it != named.end()) {
          pf.file = it->second->name;
          pf.size = it->second->size;
        }
        br.preserved_files.push_back(std::move(pf));
      }
    }
  }
  for (const ProcessSpec& p : spec.processes) {
    for (const SessionSpec& sess : p.sessions) {
      if (!sess.preserve) continue;
      for (const FileRef& ref : *sess.preserve) {
        if (!ref.omit) br.file_bytes_preserved += s_.FindFile(ref.file)->size;
      }
    }
  }
  if (const kho::PreservationTracker* tracker = k.kho().tracker();
      tracker != nullptr && tracker->ready()) {
    tracker->ForEachBlock(
        [&](PhysAddr, unsigned order) {
          ++br.kho_blocks_preserved;
          br.kho_pages_preserved += uint64_t{1} << order;
          br.kho_bytes_preserved += s_.machine.page_size << order;
          return 0;
        },
        nullptr);
    br.tracker_node_pages = tracker->Stats().metadata_pages;
  }
}

void Runner::Impl::RecordPools(BootReport& br) {
  mm::Hugetlb& hugetlb = kernel().mm().hugetlb();
  for (int h = 0; h < mm::Hugetlb::kNumHstates; ++h) {
    const mm::HstateInfo info = hugetlb.Info(h);
    if (info.requested == 0 && info.preserved == 0 && info.nr_huge_pages == 0) continue;
    br.hugetlb_pools.push_back(HugetlbPool{.name = info.name,
                                           .page_size = info.size,
                                           .requested = info.requested,
                                           .preserved = info.preserved,
                                           .nr_huge_pages = info.nr_huge_pages,
                                           .free_huge_pages = info.free_huge_pages});
  }
}

}  // namespace khosim::scenario

// Runner::Impl, the userspace phases of a boot: retrieve the incoming
// sessions and files, finish them, write the files to preserve, and
// preserve them for the next kexec, as a VMM would through the process
// syscalls and the LUO ioctls.
#include "runner_impl.h"

namespace khosim::scenario {

// Opens /dev/liveupdate for |p|; the caller closes it.
int Runner::Impl::OpenDevice(int boot, fs::Process& p) {
  const int dev = luo::OpenLiveupdate(p);
  if (dev < 0) {
    Stop(Outcome::kFailed, absl::StrFormat("boot %d: process %s: open(/dev/liveupdate): %s%s", boot,
                                           p.name(), ErrnoName(dev), OpenFailureHint()));
  }
  return dev;
}

bool Runner::Impl::RetrievePhase(int boot, const BootSpec& spec, BootReport& br,
                                 std::vector<RetrievedSession>* sessions,
                                 std::vector<RetrievedFile>* files) {
  uint64_t total = 0;
  for (const ProcessSpec& p : spec.processes) {
    for (const SessionSpec& sess : p.sessions) {
      if (!sess.retrieve) continue;
      for (const FileRef& ref : *sess.retrieve) total += s_.FindFile(ref.file)->size;
    }
  }
  bool any = false;
  for (const ProcessSpec& p : spec.processes) {
    for (const SessionSpec& sess : p.sessions) any = any || sess.retrieve.has_value();
  }
  if (!any) return true;
  Phase phase(*this, boot, "retrieve", total);
  for (size_t pi = 0; pi < spec.processes.size(); ++pi) {
    fs::Process& p = *processes_[pi];
    bool opened = false;
    int dev = -1;
    for (const SessionSpec& sess : spec.processes[pi].sessions) {
      if (!sess.retrieve) continue;
      if (!opened) {
        dev = OpenDevice(boot, p);
        if (dev < 0) return false;
        opened = true;
      }
      const int sfd = luo::RetrieveSession(p, dev, sess.name);
      if (sfd == -ENOENT) {
        return Lost(boot, sess.name, nullptr,
                    absl::StrFormat("boot %d: session \"%s\" is not among the incoming sessions "
                                    "(RETRIEVE_SESSION: -ENOENT)%s",
                                    boot, sess.name, MissingHint(boot, sess.name, nullptr)));
      }
      if (sfd < 0) {
        return Stop(Outcome::kFailed,
                    absl::StrFormat("boot %d: process %s: RETRIEVE_SESSION \"%s\": %s", boot,
                                    p.name(), sess.name, ErrnoName(sfd)));
      }
      ++br.sessions_retrieved;
      sessions->push_back({&p, &sess, sfd});
      // The handler each incoming file was preserved with, by token.
      std::map<uint64_t, std::string> handler_of;
      for (const luo::Luo::SessionInfo& info : kernel().luo().IncomingSessions()) {
        if (info.name != sess.name) continue;
        for (const luo::Luo::FileInfo& fi : info.files) handler_of[fi.token] = fi.compatible;
      }
      for (const FileRef& ref : *sess.retrieve) {
        const int fd = luo::RetrieveFd(p, sfd, ref.token);
        if (fd == -ENOENT) {
          return Lost(boot, sess.name, &ref,
                      absl::StrFormat("boot %d: session \"%s\" has no file with token %s "
                                      "(expected file %s; RETRIEVE_FD: -ENOENT)%s",
                                      boot, sess.name, Token(ref.token), ref.file,
                                      MissingHint(boot, sess.name, &ref)));
        }
        if (fd < 0) {
          const FileSpec& file = *s_.FindFile(ref.file);
          return Stop(
              Outcome::kFailed,
              absl::StrFormat(
                  "boot %d: session \"%s\": RETRIEVE_FD %s (file %s): %s%s", boot, sess.name,
                  Token(ref.token), ref.file, ErrnoName(fd),
                  fd == -ENODEV && file.kind == FileKind::kHugetlb ? NoHstateHint(file) : ""));
        }
        ++br.files_retrieved;
        const uint64_t size = s_.FindFile(ref.file)->size;
        br.file_bytes_retrieved += size;
        phase.Advance(size);
        held_[ref.file] = Held{&p, fd};
        files->push_back({&p, &sess, &ref, fd, handler_of[ref.token]});
      }
    }
    if (opened) p.Close(dev);
  }
  return true;
}

bool Runner::Impl::Lost(int boot, const std::string& session, const FileRef* ref,
                        std::string what) {
  Divergence d;
  d.boot = boot;
  d.what = what;
  d.session = session;
  if (ref != nullptr) {
    d.file = ref->file;
    d.token = ref->token;
  }
  report_.divergence = d;
  return Stop(Outcome::kDataLoss, std::move(what));
}

bool Runner::Impl::FinishPhase(int boot, BootReport& br,
                               const std::vector<RetrievedSession>& sessions) {
  if (sessions.empty()) return true;
  Phase phase(*this, boot, "finish", 0);
  for (const RetrievedSession& rs : sessions) {
    if (!rs.spec->finish) {
      br.notes.push_back(
          absl::StrFormat("session \"%s\" retrieved but left unfinished", rs.spec->name));
      continue;
    }
    const int err = luo::FinishSession(*rs.process, rs.fd);
    if (err != 0) {
      return Stop(Outcome::kFailed, absl::StrFormat("boot %d: FINISH session \"%s\": %s", boot,
                                                    rs.spec->name, ErrnoName(err)));
    }
    rs.process->Close(rs.fd);
    ++br.sessions_finished;
  }
  return true;
}

bool Runner::Impl::WritePhase(int boot, const BootSpec& spec) {
  uint64_t total = 0;
  std::vector<std::pair<fs::Process*, const FileSpec*>> todo;
  std::set<std::string> seen;
  for (size_t pi = 0; pi < spec.processes.size(); ++pi) {
    for (const SessionSpec& sess : spec.processes[pi].sessions) {
      if (!sess.preserve) continue;
      for (const FileRef& ref : *sess.preserve) {
        if (held_.count(ref.file) != 0 || !seen.insert(ref.file).second) continue;
        const FileSpec* file = s_.FindFile(ref.file);
        todo.emplace_back(processes_[pi], file);
        if (file->kind == FileKind::kDevice || file->kind == FileKind::kIommufd) continue;
        const Content content(*file, s_.machine.seed);
        for (const Extent& e : content.written()) total += e.length;
      }
    }
  }
  if (todo.empty()) return true;
  Phase phase(*this, boot, "write", total);
  std::vector<uint8_t> buf(kChunk);
  for (const auto& [p, file] : todo) {
    if (file->kind == FileKind::kDevice) {
      const int fd = OpenDeviceFile(*p, *file);
      if (fd < 0) {
        return Stop(Outcome::kFailed, absl::StrFormat("boot %d: process %s: open device %s: %s",
                                                      boot, p->name(), file->name, ErrnoName(fd)));
      }
      held_[file->name] = Held{p, fd};
      continue;
    }
    if (file->kind == FileKind::kIommufd) {
      const int fd = p->Open("/dev/iommu", O_RDWR);
      if (fd < 0) {
        return Stop(Outcome::kFailed,
                    absl::StrFormat("boot %d: process %s: open /dev/iommu: %s%s", boot, p->name(),
                                    ErrnoName(fd),
                                    fd == -ENOENT && !kernel().HasModule(kIommufdModule)
                                        ? " (this kernel is built without the iommufd module; "
                                          "add it to the boot's handlers)"
                                        : ""));
      }
      held_[file->name] = Held{p, fd};
      continue;
    }
    const bool huge = file->kind == FileKind::kHugetlb;
    // Guest memory mapped through an iommufd is sealed, as live update
    // requires of it (after it is written: F_SEAL_GROW allows writes inside).
    const bool seal = s_.SealedForIommufd(file->name);
    unsigned int flags = MFD_CLOEXEC | (seal ? MFD_ALLOW_SEALING : 0);
    if (huge) {
      flags |= MFD_HUGETLB |
               (static_cast<unsigned int>(__builtin_ctzll(file->page_size)) << MFD_HUGE_SHIFT);
    }
    const int fd = fs::MemfdCreate(*p, file->name, flags);
    if (fd < 0) {
      return Stop(Outcome::kFailed,
                  absl::StrFormat("boot %d: process %s: memfd_create(%s%s): %s%s", boot, p->name(),
                                  file->name, huge ? ", MFD_HUGETLB" : "", ErrnoName(fd),
                                  huge && fd == -ENODEV ? NoHstateHint(*file) : ""));
    }
    if (const int err = p->Ftruncate(fd, static_cast<loff_t>(file->size)); err != 0) {
      return Stop(Outcome::kFailed, absl::StrFormat("boot %d: ftruncate(%s, %d): %s", boot,
                                                    file->name, file->size, ErrnoName(err)));
    }
    const Content content(*file, s_.machine.seed);
    if (huge) {
      if (!WriteThroughMapping(boot, *p, fd, *file, content, phase)) return false;
      held_[file->name] = Held{p, fd};
      continue;
    }
    for (const Extent& e : content.written()) {
      for (uint64_t off = e.offset; off < e.offset + e.length; off += kChunk) {
        const uint64_t n = std::min(kChunk, e.offset + e.length - off);
        content.Fill(off, buf.data(), n);
        const ssize_t w = p->Pwrite(fd, buf.data(), n, static_cast<loff_t>(off));
        if (w != static_cast<ssize_t>(n)) {
          return Stop(Outcome::kFailed,
                      absl::StrFormat("boot %d: write to %s at %d: %s", boot, file->name, off,
                                      w < 0 ? ErrnoName(w) : absl::StrCat("short write ", w)));
        }
        phase.Advance(n);
      }
    }
    if (seal) {
      if (const long err = p->Fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK);
          err != 0) {
        return Stop(Outcome::kFailed, absl::StrFormat("boot %d: F_ADD_SEALS on %s: %s", boot,
                                                      file->name, ErrnoName(err)));
      }
    }
    held_[file->name] = Held{p, fd};
  }
  for (const auto& [p, file] : todo) {
    if (file->dma && !StartDma(boot, *file)) return false;
  }
  return true;
}

// hugetlbfs has no write(2): a VMM writes guest RAM through a shared
// mapping. Faulting base page by base page touches only the huge pages the
// generator writes (each from the pool, zeroed without host memory), so a
// file of many GiB with sampled content costs little; preserve allocates
// the rest.
bool Runner::Impl::WriteThroughMapping(int boot, fs::Process& p, int fd, const FileSpec& file,
                                       const Content& content, Phase& phase) {
  std::unique_ptr<fs::ShmemMapping> map;
  if (const int err = fs::ShmemMmap(p, fd, file.size, /*writable=*/true, &map); err != 0) {
    return Stop(Outcome::kFailed, absl::StrFormat("boot %d: process %s: mmap(%s): %s", boot,
                                                  p.name(), file.name, ErrnoName(err)));
  }
  const uint64_t page = s_.machine.page_size;
  uint64_t unreported = 0;
  for (const Extent& e : content.written()) {
    for (uint64_t off = e.offset; off < e.offset + e.length;) {
      const uint64_t in_page = off % page;
      const uint64_t n = std::min(page - in_page, e.offset + e.length - off);
      void* addr = nullptr;
      if (const int err = map->Fault(off / page, /*write=*/true, &addr); err != 0) {
        std::string hint;
        if (err == -ENOSPC) {
          hint = absl::StrFormat(
              " (the %s hugetlb pool is empty; see hugepages= in the "
              "command line)",
              FormatBytes(file.page_size));
        }
        return Stop(Outcome::kFailed,
                    absl::StrFormat("boot %d: process %s: write fault on %s at %d: %s%s", boot,
                                    p.name(), file.name, off, ErrnoName(err), hint));
      }
      content.Fill(off, static_cast<uint8_t*>(addr) + in_page, n);
      off += n;
      unreported += n;
      if (unreported >= kChunk) {
        phase.Advance(unreported);
        unreported = 0;
      }
    }
  }
  phase.Advance(unreported);
  return true;
}

bool Runner::Impl::PreservePhase(int boot, const BootSpec& spec, BootReport& br) {
  uint64_t total = 0;
  bool any = false;
  for (const ProcessSpec& p : spec.processes) {
    for (const SessionSpec& sess : p.sessions) {
      if (!sess.preserve) continue;
      any = true;
      for (const FileRef& ref : *sess.preserve) {
        if (!ref.omit) total += s_.FindFile(ref.file)->size;
      }
    }
  }
  if (!any) return true;
  Phase phase(*this, boot, "preserve", total);
  for (size_t pi = 0; pi < spec.processes.size(); ++pi) {
    fs::Process& p = *processes_[pi];
    int dev = -1;
    for (const SessionSpec& sess : spec.processes[pi].sessions) {
      if (!sess.preserve) continue;
      if (dev < 0) {
        dev = OpenDevice(boot, p);
        if (dev < 0) return false;
      }
      const int sfd = luo::CreateSession(p, dev, sess.name);
      if (sfd < 0) {
        return Stop(Outcome::kFailed,
                    absl::StrFormat("boot %d: process %s: CREATE_SESSION \"%s\": %s", boot,
                                    p.name(), sess.name, ErrnoName(sfd)));
      }
      for (const FileRef& ref : *sess.preserve) {
        if (ref.omit) {
          br.notes.push_back(
              absl::StrFormat("file %s (session \"%s\", token %s) deliberately not preserved",
                              ref.file, sess.name, Token(ref.token)));
          continue;
        }
        const Held& h = held_.at(ref.file);
        const int err = luo::PreserveFd(p, sfd, h.fd, ref.token);
        if (err != 0) {
          const FileSpec& file = *s_.FindFile(ref.file);
          std::string hint;
          if (err == -ENOENT && file.kind == FileKind::kHugetlb) {
            hint = absl::StrFormat(
                " (no LUO file handler accepted the hugetlb file: %s)",
                kernel().HasModule(kHugetlbModule)
                    ? "the hugetlb handler is built in, but did not take it"
                    : absl::StrCat("this kernel is built without the hugetlb handler (",
                                   abi::kHugemfdLuoCompatible, "); add hugetlb to its handlers"));
          } else if (err == -ENOENT) {
            hint =
                " (no LUO file handler accepted the file: is the memfd handler built into "
                "this kernel?)";
          } else if (err == -ENOSPC && file.kind == FileKind::kHugetlb) {
            hint = absl::StrFormat(
                " (the %s hugetlb pool ran out: preserving a hugetlb file allocates every "
                "huge page it does not have yet)",
                FormatBytes(file.page_size));
          }
          return Stop(Outcome::kFailed,
                      absl::StrFormat("boot %d: process %s: PRESERVE_FD of %s in session \"%s\" "
                                      "(token %s): %s%s",
                                      boot, p.name(), ref.file, sess.name, Token(ref.token),
                                      ErrnoName(err), hint));
        }
        phase.Advance(s_.FindFile(ref.file)->size);
      }
    }
    if (dev >= 0) p.Close(dev);
  }
  return true;
}

}  // namespace khosim::scenario

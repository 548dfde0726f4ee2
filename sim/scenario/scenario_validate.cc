// The scenario checks that span fields (see scenario_validate.h).
#include "scenario_validate.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/mm/hugetlb.h"

namespace khosim::scenario {
namespace {

using Creation = std::pair<const FileRef*, const FileSpec*>;

// Boot |bi| creates |created| (in order): the hugetlb pools its command
// line asks for must hold every huge page of its hugetlb files, since
// preservation allocates the holes too. After a kexec the pool is what the
// kernel allocated at boot (hugepages= less the pages the previous kernel's
// hugetlb files hold, which the hugetlb handler leaves out) plus the pages
// of files a finished session held but nobody retrieved; retrieved files
// bring their own pages.
void CheckHugetlbPools(const Scenario& s, size_t bi, const std::vector<Creation>& created) {
  const BootSpec& boot = s.boots[bi];
  // The pools as the kernel reads its command line.
  const std::vector<mm::HugetlbRequest::Pool> pools =
      mm::ParseHugetlbCmdline(boot.EffectiveCmdline(),
                              PageGeometry::ForPageSize(s.machine.page_size))
          .pools;
  std::map<uint64_t, uint64_t> left_out;  // by huge page size
  std::map<uint64_t, uint64_t> returned;
  if (bi > 0 && s.HandlersOf(bi).Has(kHugetlbModule)) {
    for (const ProcessSpec& p : s.boots[bi - 1].processes) {
      for (const SessionSpec& out : p.sessions) {
        if (!out.preserve) continue;
        const SessionSpec* in = nullptr;
        for (const ProcessSpec& q : boot.processes) {
          for (const SessionSpec& sess : q.sessions) {
            if (sess.name == out.name && sess.retrieve) in = &sess;
          }
        }
        for (const FileRef& ref : *out.preserve) {
          const FileSpec* file = s.FindFile(ref.file);
          if (ref.omit || file->kind != FileKind::kHugetlb) continue;
          const uint64_t pages = file->size / file->page_size;
          left_out[file->page_size] += pages;
          if (in == nullptr || !in->finish) continue;
          const bool retrieved =
              std::any_of(in->retrieve->begin(), in->retrieve->end(),
                          [&](const FileRef& r) { return r.token == ref.token; });
          if (!retrieved) returned[file->page_size] += pages;
        }
      }
    }
  }
  const std::string cmdline_field = boot.pos.field.empty()
                                        ? absl::StrCat("boots[", bi, "].cmdline")
                                        : absl::StrCat(boot.pos.field, ".cmdline");
  std::map<uint64_t, uint64_t> used;
  for (const Creation& creation : created) {
    const FileRef* ref = creation.first;
    const FileSpec* file = creation.second;
    if (file->kind != FileKind::kHugetlb) continue;
    const mm::HugetlbRequest::Pool& pool =
        *std::find_if(pools.begin(), pools.end(),
                      [&](const mm::HugetlbRequest::Pool& p) { return p.size == file->page_size; });
    const uint64_t pages = file->size / file->page_size;
    const uint64_t needed = used[file->page_size] += pages;
    const uint64_t kept = std::min(pool.requested, left_out[file->page_size]);
    const uint64_t available = pool.requested - kept + returned[file->page_size];
    if (pool.registered && needed <= available) continue;
    // The least hugepages= that leaves |needed| pages after the left-out ones.
    const uint64_t minimum = needed + left_out[file->page_size] - returned[file->page_size];
    const std::string size = CmdlineSize(file->page_size);
    const std::string what = absl::StrFormat(
        "file \"%s\" (hugetlb, %s pages) is created in boot %d and needs %d huge page(s)%s",
        file->name, FormatBytes(file->page_size), bi + 1, pages,
        needed > pages ? absl::StrFormat(", %d with the files created before it", needed) : "");
    if (!pool.registered || pool.requested == 0) {
      Fail(ref->pos, absl::StrFormat("%s, but boot %d's command line (\"%s\") configures no %s "
                                     "hugetlb pool; add \"hugepagesz=%s hugepages=%d\" to %s",
                                     what, bi + 1, boot.EffectiveCmdline(),
                                     FormatBytes(file->page_size), size, minimum, cmdline_field));
    }
    Fail(ref->pos, absl::StrFormat(
                       "%s, but boot %d's %s pool has %d (hugepagesz=%s hugepages=%d%s); raise "
                       "hugepages= for %s in %s to at least %d",
                       what, bi + 1, FormatBytes(file->page_size), available, size, pool.requested,
                       kept != 0 || returned[file->page_size] != 0
                           ? absl::StrFormat(", less %d left out for the previous kernel's "
                                             "preserved pages, plus %d returned at finish",
                                             kept, returned[file->page_size])
                           : "",
                       size, cmdline_field, minimum));
  }
}

}  // namespace

// Cross-field checks: who holds which file in which boot.
void ValidateDma(const Scenario& s) {
  std::set<std::string> targets;
  for (const FileSpec& f : s.files) {
    if (f.kind == FileKind::kDevice && f.driver == "vfio-pci" &&
        (!f.dma || f.dma->iommufd.empty())) {
      Fail(f.pos, absl::StrCat("device \"", f.name,
                               "\": a vfio-pci device is a cdev bound to an iommufd: give it "
                               "dma: {file, iova, iommufd}"));
    }
    if (!f.dma) continue;
    const FileSpec* target = s.FindFile(f.dma->file);
    if (target == nullptr)
      Fail(f.dma->pos, absl::StrCat("no file \"", f.dma->file, "\" in 'files'"));
    if (target->kind != FileKind::kMemfd) {
      Fail(f.dma->pos, absl::StrCat("file \"", f.dma->file,
                                    "\" is not a memfd: a device maps memfd memory only"));
    }
    if (!targets.insert(f.dma->file).second) {
      Fail(f.dma->pos,
           absl::StrCat("file \"", f.dma->file, "\" is already another device's DMA target"));
    }
    if (f.dma->iova % s.machine.page_size != 0 || f.dma->iova + target->size < f.dma->iova ||
        f.dma->iova + target->size > (uint64_t{1} << 48)) {
      Fail(f.dma->pos,
           "iova must be page aligned and the mapping must end below 256 TiB (48 bits)");
    }
    if (!f.dma->iommufd.empty()) {
      const FileSpec* fd = s.FindFile(f.dma->iommufd);
      if (fd == nullptr || fd->kind != FileKind::kIommufd) {
        Fail(f.dma->pos, absl::StrCat("iommufd \"", f.dma->iommufd,
                                      "\" is not a file of kind: iommufd in 'files'"));
      }
    }
  }
}

void ValidateScenario(const Scenario& s, const Field& root) {
  ValidateDma(s);
  if (s.program) {
    if (!s.files.empty()) Fail(root.Pos(), "a scenario with 'program' has no 'files'");
    for (const BootSpec& b : s.boots) {
      if (!b.processes.empty()) {
        Fail(b.pos, "a scenario with 'program' runs no processes of its own");
      }
      // The program kexecs by itself, always into the machine's build.
      if (b.handlers) {
        Fail(b.handlers_pos,
             "a scenario with 'program' builds every kernel with machine.handlers; per-boot "
             "handlers need processes");
      }
    }
    return;
  }
  // Files held by some process at the end of the previous boot's userspace,
  // and at the end of this one: a file reaches boot N+1 only through a
  // preserve in boot N and a retrieve in boot N+1.
  std::set<std::string> ever_created;
  for (size_t bi = 0; bi < s.boots.size(); ++bi) {
    const BootSpec& boot = s.boots[bi];
    std::set<std::string> process_names;
    std::map<std::string, std::string> holder;  // file -> process, this boot
    std::set<std::string> outgoing_sessions;
    std::set<std::string> retrieved_sessions;
    std::vector<Creation> created;
    for (const ProcessSpec& p : boot.processes) {
      if (!process_names.insert(p.name).second) {
        Fail(p.pos, absl::StrCat("two processes named \"", p.name, "\" in this boot"));
      }
      for (const SessionSpec& sess : p.sessions) {
        if (sess.retrieve) {
          if (bi == 0) {
            Fail(sess.pos, "the cold boot has no previous kernel to retrieve sessions from");
          }
          if (!retrieved_sessions.insert(sess.name).second) {
            Fail(sess.pos,
                 absl::StrCat("session \"", sess.name, "\" is retrieved twice in this boot"));
          }
          std::set<uint64_t> tokens;
          for (const FileRef& ref : *sess.retrieve) {
            if (s.FindFile(ref.file) == nullptr) {
              Fail(ref.pos, absl::StrCat("no file \"", ref.file, "\" in 'files'"));
            }
            if (!tokens.insert(ref.token).second) {
              Fail(ref.pos,
                   absl::StrFormat("token 0x%x is retrieved twice from this session", ref.token));
            }
            auto [it, fresh] = holder.emplace(ref.file, p.name);
            if (!fresh) {
              Fail(ref.pos, absl::StrCat("file \"", ref.file, "\" is already held by process \"",
                                         it->second, "\" in this boot"));
            }
          }
        }
        if (sess.preserve) {
          if (!outgoing_sessions.insert(sess.name).second) {
            Fail(sess.pos,
                 absl::StrCat("session \"", sess.name, "\" is created twice in this boot"));
          }
          std::set<uint64_t> tokens;
          for (const FileRef& ref : *sess.preserve) {
            const FileSpec* file = s.FindFile(ref.file);
            if (file == nullptr)
              Fail(ref.pos, absl::StrCat("no file \"", ref.file, "\" in 'files'"));
            if (!tokens.insert(ref.token).second) {
              Fail(ref.pos,
                   absl::StrFormat("token 0x%x is preserved twice in this session", ref.token));
            }
            if (file->kind == FileKind::kDevice && !s.HandlersOf(bi).Has(file->driver)) {
              Fail(ref.pos, absl::StrCat("file \"", ref.file,
                                         "\" is a device: this boot's kernel "
                                         "needs the ",
                                         file->driver, " module (handlers)"));
            }
            if (file->kind == FileKind::kIommufd && !s.HandlersOf(bi).Has(kIommufdModule)) {
              Fail(ref.pos, absl::StrCat("file \"", ref.file,
                                         "\" is an iommufd: this boot's kernel needs the "
                                         "iommufd module (handlers)"));
            }
            auto it = holder.find(ref.file);
            if (it != holder.end() && it->second != p.name) {
              Fail(ref.pos, absl::StrCat("file \"", ref.file, "\" is held by process \"",
                                         it->second, "\", not \"", p.name, "\", in this boot"));
            }
            if (it == holder.end()) {
              if (ever_created.count(ref.file) != 0) {
                Fail(ref.pos, absl::StrCat("file \"", ref.file,
                                           "\" was created in an earlier boot; retrieve it in this "
                                           "boot before preserving it again"));
              }
              holder.emplace(ref.file, p.name);
              created.emplace_back(&ref, file);
            }
            if (sess.retrieve && !sess.finish) {
              for (const FileRef& in : *sess.retrieve) {
                if (in.file == ref.file) {
                  Fail(ref.pos,
                       "a retrieved file can be preserved again only after its session "
                       "is finished (finish: true)");
                }
              }
            }
          }
        }
      }
    }
    CheckHugetlbPools(s, bi, created);
    for (const auto& [file, process] : holder) ever_created.insert(file);
  }
}

}  // namespace khosim::scenario

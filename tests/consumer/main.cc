// An out-of-tree user of an installed khosim: registers its own LUO file
// handler (note_handler.cc) as a kernel module, preserves a memfd with it
// in kernel A, kexecs, and retrieves the same bytes in kernel B under the
// handler's compatible, with nothing of kernel A left unclaimed. Exit
// status 0 means the installed package (headers, libraries, dependencies,
// the module registry) serves a handler author.
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>

#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"
#include "note_handler.h"

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "consumer: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main() {
  khosim::Machine m(khosim::MachineConfig{
      .ram = 512 * khosim::kMiB, .seed = 3, .cmdline = "kho=on liveupdate=on"});
  // Built into every kernel the machine boots, asked before memfd-v2.
  const absl::Status added =
      m.AddModule({.name = "note",
                   .description = "an out-of-tree handler",
                   .compatibles = {NOTE_FH_COMPATIBLE},
                   .initcalls = {{khosim::InitcallLevel::kLate, "note_luo_init", note_luo_init}},
                   .runs_before = {khosim::kMemfdModule}});
  if (!added.ok()) return Fail(added.ToString());
  m.Boot();
  const std::string text = "kept across the kexec";
  {
    khosim::fs::Process& vmm = m.kernel().vfs().CreateProcess("vmm");
    const int fd = khosim::fs::MemfdCreate(vmm, "note-1", 0);
    if (fd < 0 ||
        vmm.Pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
      return Fail("cannot write the memfd");
    }
    const int dev = khosim::luo::OpenLiveupdate(vmm);
    const int session = khosim::luo::CreateSession(vmm, dev, "notes");
    if (dev < 0 || session < 0) return Fail("cannot create the session");
    if (const int err = khosim::luo::PreserveFd(vmm, session, fd, 7); err != 0) {
      return Fail("PRESERVE_FD: " + std::to_string(err));
    }
  }
  std::printf("boot:  generation %" PRIu64 ", note preserved\n", m.kernel().generation());

  const absl::Status status = m.Kexec();
  if (!status.ok()) return Fail("kexec failed: " + status.ToString());
  khosim::fs::Process& vmm = m.kernel().vfs().CreateProcess("vmm");
  const int dev = khosim::luo::OpenLiveupdate(vmm);
  const int session = khosim::luo::RetrieveSession(vmm, dev, "notes");
  if (dev < 0 || session < 0) return Fail("cannot retrieve the session");
  std::string compatible;
  for (const auto& s : m.kernel().luo().IncomingSessions()) {
    if (s.name == "notes" && !s.files.empty()) compatible = s.files[0].compatible;
  }
  if (compatible != NOTE_FH_COMPATIBLE) return Fail("preserved under '" + compatible + "'");
  const int fd = khosim::luo::RetrieveFd(vmm, session, 7);
  if (fd < 0) return Fail("RETRIEVE_FD: " + std::to_string(fd));
  std::string got(text.size(), '\0');
  if (vmm.Pread(fd, got.data(), got.size(), 0) != static_cast<ssize_t>(got.size()) || got != text) {
    return Fail("retrieved '" + got + "', expected '" + text + "'");
  }
  if (const int err = khosim::luo::FinishSession(vmm, session); err != 0) {
    return Fail("FINISH: " + std::to_string(err));
  }
  // Only the previous kernel's root FDT may be left.
  const uint64_t unclaimed = m.kernel().kho().UnrestoredBlocks();
  if (unclaimed != 1) return Fail(std::to_string(unclaimed) + " preserved blocks left unclaimed");
  std::printf("kexec: generation %" PRIu64 ", note-v1 retrieved \"%s\"\n", m.kernel().generation(),
              got.c_str());
  std::printf("consumer: ok\n");
  return 0;
}

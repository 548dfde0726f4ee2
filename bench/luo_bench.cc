// What the Live Update Orchestrator costs as userspace hands it more: the
// /dev/liveupdate ioctls against the number of sessions and files already
// there, the reboot hook that writes the handover records, kernel B's
// deserialization at the first open and its retrieve/finish path, and FLB
// references. Row names read <operation>/<shape>/<structure>.
//
// Rows (N = 1, 10, 100, 1000, 10^4; also 10^5 with KHOSIM_BENCH_LARGE):
//   create_session/sessions:N/luo
//       LIVEUPDATE_IOCTL_CREATE_SESSION of the N-th session, N-1 existing.
//       The creating process holds only /dev/liveupdate: the other session
//       fds live in holder processes (SCM_RIGHTS), so that the simulator's
//       fd allocation (a walk of the fd table) does not mask LUO's own
//       duplicate-name walk. The new session is closed again untimed.
//   close_session/sessions:N/luo
//       close(2) of the N-th (empty) session's fd, N-1 others existing
//       (shares the N-1 sessions built for the create row).
//   create_session/sessions:N/luo_one_process   (N <= 10^4)
//       The create with every session fd in the creating process.
//   create_session/sessions:N/flat_hash_set, .../vector_walk
//       Baselines on the same names: absl::flat_hash_set insert (and erase)
//       of the N-th name; a linear duplicate check over a
//       std::vector<std::string> of N-1 names plus push_back (and pop_back).
//   preserve_fd/files:N/luo
//       LIVEUPDATE_SESSION_PRESERVE_FD of the N-th file of one session. The
//       bench handler's preserve allocates one kho_alloc_preserve record,
//       as a real handler's would. Files cannot be unpreserved one at a
//       time, so each iteration adds one: the session is rebuilt (untimed)
//       whenever it has drifted N/100 files past N-1 (every iteration below
//       N = 100); the files_before counter is the mean actually measured.
//   preserve_fd/handler_record/kho_alloc_preserve
//       The handler's share of a PRESERVE_FD: allocate, preserve and fill
//       its record (freed again untimed).
//   preserve_fd/files:N/flat_hash_set, .../vector_walk
//       The same baselines on the tokens.
//   reboot/SxF/luo      Kernel::RunRebootHooks() (LUO's reboot hook: freeze
//                       every file, write the session and file records)
//                       with S sessions of F files each; 0x0 is the fixed
//                       cost of the hook.
//   reboot/SxF/luo_warm The same after one reboot attempt was cancelled
//                       (untimed) by a freeze error on the last file. The
//                       simulator zeroes a page by dropping its host backing,
//                       so the first write to a page lands in a host page
//                       fault. Each record block's header is linked when the
//                       page is allocated (as upstream's are), so those
//                       faults are paid by CREATE_SESSION and PRESERVE_FD
//                       when they grow the block sets; what the cancelled
//                       attempt still takes is the first write to everything
//                       else the reboot writes, leaving LUO's own work.
//   reboot/SxF/vector_push_back
//                       Baseline: the same S session and S*F file records
//                       written into two std::vectors whose capacity is
//                       already there (as LUO's blocks are preallocated).
//   deserialize/SxF/luo kernel B's first luo::OpenLiveupdate(), which turns
//                       the handed-over records into sessions and files
//                       (Machine::Kexec and the handler registration are
//                       untimed). 0x0: an open with nothing incoming.
//   deserialize/SxF/host_objects
//                       Baseline: a host object per session and per file
//                       (name, token, data) built from the same records,
//                       then freed.
//   retrieve_finish/SxF/luo
//                       In kernel B after the first open: per session
//                       RETRIEVE_SESSION, RETRIEVE_FD + close(2) of every
//                       file, SESSION_FINISH, close(2) of the session.
//   flb/get_put_outgoing/luo, flb/get_put_incoming/luo
//                       liveupdate_flb_get_outgoing + put_outgoing (kernel
//                       A, one dependent file preserved) and get_incoming +
//                       put_incoming (kernel B) pairs.
//   flb/lock_unlock/absl_mutex
//                       Baseline: one absl::Mutex Lock + Unlock pair.
//   overhead/pause_resume/empty
//                       A PauseTiming + ResumeTiming pair: what the rows that
//                       pause every iteration carry on top of their
//                       operation (subtract it from their time).
//   preserve_fd/files:10/luo_traced, reboot/100x100/luo_warm_traced,
//   deserialize/100x100/luo_traced
//                       The row without the suffix with the machine's "luo"
//                       trace category on for the timed part. Every other
//                       row runs with it off: the ratio is what the event
//                       trace costs.
// SxF: 0x0, 1x1, 100x1, 2000x1, 1x500, 1x10000, 100x100, 1000x100; also
// 10000x1 and 1x100000 with KHOSIM_BENCH_LARGE.
//
// Machine: 1 GiB, one node, 4 KiB pages, "kho=on liveupdate=on", a 4 MiB
// kernel image. Rows with an untimed setup run a fixed iteration count (see
// SetupBoundIterations). Times are the benchmark thread's CPU time.
#include <benchmark/benchmark.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "bench_util.h"
#include "khosim/abi/luo.h"
#include "khosim/fs/vfs.h"
#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/mm.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr uint64_t kRam = 1 * kGiB;
constexpr uint64_t kImageBytes = 4 * kMiB;
// Session fds kept per holder process: small tables keep SendFd cheap.
constexpr int kFdsPerHolder = 256;
constexpr char kLargeEnv[] = "KHOSIM_BENCH_LARGE";

bool LargeRows() { return std::getenv(kLargeEnv) != nullptr; }

// ---------------------------------------------------------------------------
// The bench file handler: a "bench file" carries one u64 (in private_data,
// so the file needs no release callback); preserve writes it to a
// kho_alloc_preserve record, retrieve rebuilds the file from it.

constexpr uint64_t kRecordMagic = 0x6863'6e65'626f'756c;  // "luobench", little-endian

struct BenchRecord {
  uint64_t magic;
  uint64_t value;
  uint64_t frozen;
};

const struct file_operations kBenchFileFops = {};

struct file* NewBenchFile(uint64_t value) {
  return anon_inode_getfile("[luo_bench]", &kBenchFileFops, reinterpret_cast<void*>(value), O_RDWR);
}

uint64_t BenchFileValue(const struct file* f) {
  return reinterpret_cast<uint64_t>(f->private_data);
}

BenchRecord* RecordAt(u64 pa) { return static_cast<BenchRecord*>(phys_to_virt(pa)); }

bool BenchCanPreserve(struct liveupdate_file_handler*, struct file* f) {
  return f != nullptr && f->f_op == &kBenchFileFops;
}

int BenchPreserve(struct liveupdate_file_op_args* args) {
  void* mem = kho_alloc_preserve(sizeof(BenchRecord));
  if (IS_ERR(mem)) return static_cast<int>(PTR_ERR(mem));
  auto* rec = static_cast<BenchRecord*>(mem);
  *rec = {kRecordMagic, BenchFileValue(args->file), 0};
  args->serialized_data = virt_to_phys(rec);
  return 0;
}

void BenchUnpreserve(struct liveupdate_file_op_args* args) {
  kho_unpreserve_free(RecordAt(args->serialized_data));
}

// The reboot_warm rows cancel one reboot by failing the freeze of the file
// holding this value.
uint64_t freeze_fail_value = UINT64_MAX;

int BenchFreeze(struct liveupdate_file_op_args* args) {
  BenchRecord* rec = RecordAt(args->serialized_data);
  if (rec->value == freeze_fail_value) return -EAGAIN;
  rec->frozen = 1;
  return 0;
}

void BenchUnfreeze(struct liveupdate_file_op_args* args) {
  RecordAt(args->serialized_data)->frozen = 0;
}

int BenchRetrieve(struct liveupdate_file_op_args* args) {
  const BenchRecord* rec = RecordAt(args->serialized_data);
  if (rec->magic != kRecordMagic || rec->frozen != 1) return -EINVAL;
  struct file* f = NewBenchFile(rec->value);
  if (IS_ERR(f)) return static_cast<int>(PTR_ERR(f));
  args->file = f;
  return 0;
}

bool BenchCanFinish(struct liveupdate_file_op_args*) { return true; }

void BenchFinish(struct liveupdate_file_op_args* args) {
  kho_restore_free(RecordAt(args->serialized_data));
}

const struct liveupdate_file_ops kBenchFileOps = {
    .can_preserve = BenchCanPreserve,
    .preserve = BenchPreserve,
    .unpreserve = BenchUnpreserve,
    .freeze = BenchFreeze,
    .unfreeze = BenchUnfreeze,
    .retrieve = BenchRetrieve,
    .can_finish = BenchCanFinish,
    .finish = BenchFinish,
    .get_id = nullptr,
    .owner = nullptr,
};

// The FLB: one kho_alloc_preserve record holding a magic.
int BenchFlbPreserve(struct liveupdate_flb_op_args* args) {
  void* mem = kho_alloc_preserve(sizeof(uint64_t));
  if (IS_ERR(mem)) return static_cast<int>(PTR_ERR(mem));
  *static_cast<uint64_t*>(mem) = kRecordMagic;
  args->data = virt_to_phys(mem);
  args->obj = mem;
  return 0;
}

void BenchFlbUnpreserve(struct liveupdate_flb_op_args* args) { kho_unpreserve_free(args->obj); }

int BenchFlbRetrieve(struct liveupdate_flb_op_args* args) {
  void* mem = phys_to_virt(args->data);
  if (*static_cast<const uint64_t*>(mem) != kRecordMagic) return -EINVAL;
  args->obj = mem;
  return 0;
}

void BenchFlbFinish(struct liveupdate_flb_op_args* args) { kho_restore_free(args->obj); }

const struct liveupdate_flb_ops kBenchFlbOps = {
    .preserve = BenchFlbPreserve,
    .unpreserve = BenchFlbUnpreserve,
    .retrieve = BenchFlbRetrieve,
    .finish = BenchFlbFinish,
    .owner = nullptr,
};

struct liveupdate_file_handler bench_file_handler = {&kBenchFileOps, "luo-bench-file-v1"};
struct liveupdate_flb bench_flb = {&kBenchFlbOps, "luo-bench-flb-v1"};

// ---------------------------------------------------------------------------
// The machine and its userspace.

MachineConfig LuoMachineConfig() {
  MachineConfig config{.ram = kRam, .nodes = 1, .seed = 11};
  config.cmdline = "kho=on liveupdate=on";
  config.kernel_image_size = kImageBytes;
  return config;
}

// One machine for the whole binary, warmed up by two rounds of what the
// rows do (cold boot, kexec) so that no row pays for first-touch faults.
Machine& LuoMachine() {
  static Machine* machine = [] {
    auto* m = new Machine(LuoMachineConfig());
    for (int i = 0; i < 2; ++i) {
      m->Boot();
      (void)m->Kexec();
    }
    return m;
  }();
  return *machine;
}

// The VMM process (holding /dev/liveupdate) and the processes that keep
// session fds for it.
struct Userspace {
  fs::Process* vmm = nullptr;
  int dev = -1;
  std::vector<fs::Process*> holders;
  int holder_fds = 0;  // fds in holders.back()
};

// Registers the bench handler (and its FLB) in the running kernel, starts
// the VMM and, if asked, opens /dev/liveupdate (in kernel B: deserializes).
bool StartUserspace(Userspace* u, bool with_flb, bool open_dev, std::string* error) {
  *u = Userspace();
  Machine& m = LuoMachine();
  m.Activate();
  if (int err = liveupdate_register_file_handler(&bench_file_handler); err != 0) {
    *error = absl::StrCat("liveupdate_register_file_handler = ", err);
    return false;
  }
  if (with_flb) {
    if (int err = liveupdate_register_flb(&bench_file_handler, &bench_flb); err != 0) {
      *error = absl::StrCat("liveupdate_register_flb = ", err);
      return false;
    }
  }
  u->vmm = &m.kernel().vfs().CreateProcess("vmm");
  u->vmm->SetRlimitNofile(1 << 20);
  if (!open_dev) return true;
  u->dev = luo::OpenLiveupdate(*u->vmm);
  if (u->dev < 0) {
    *error = absl::StrCat("open /dev/liveupdate = ", u->dev);
    return false;
  }
  return true;
}

// A fresh kernel A with the handler loaded and /dev/liveupdate open.
bool ColdBoot(Userspace* u, bool with_flb, std::string* error) {
  Machine& m = LuoMachine();
  m.Boot();
  m.trace().Clear();
  if (!m.kernel().luo().enabled()) {
    *error = "LUO is not enabled after boot";
    return false;
  }
  return StartUserspace(u, with_flb, /*open_dev=*/true, error);
}

// Kexec into kernel B and start its userspace (handler registered,
// /dev/liveupdate not opened yet).
bool KexecToB(Userspace* u, bool with_flb, std::string* error) {
  Machine& m = LuoMachine();
  if (const absl::Status status = m.Kexec(); !status.ok()) {
    *error = status.ToString();
    return false;
  }
  m.trace().Clear();
  return StartUserspace(u, with_flb, /*open_dev=*/false, error);
}

// The machine's "luo" trace category. It is off for every row but the
// *_traced ones: a deployment measures LUO, not the simulator's event log
// (with the category off LUO does not even format the events). The
// *_traced rows turn it on for their timed part, which gives the cost of
// tracing as a ratio to the row without the suffix.
bool luo_trace_on = true;  // the EventTrace default

void SetLuoTrace(bool on) {
  LuoMachine().trace().SetEnabled("luo", on);
  luo_trace_on = on;
}

// Sets the "luo" category for a scope and restores it after.
class ScopedLuoTrace {
 public:
  explicit ScopedLuoTrace(bool on) : previous_(luo_trace_on) { SetLuoTrace(on); }
  ~ScopedLuoTrace() { SetLuoTrace(previous_); }
  ScopedLuoTrace(const ScopedLuoTrace&) = delete;
  ScopedLuoTrace& operator=(const ScopedLuoTrace&) = delete;

 private:
  bool previous_;
};

// Untimed setup never traces, even inside a *_traced row: a build of 10^5
// files would leave as many events (and, once cleared, a fragmented heap)
// behind for the timed part.
class UntracedSetup : public ScopedLuoTrace {
 public:
  UntracedSetup() : ScopedLuoTrace(false) {}
};

// 14 characters: the names compare as equal-length strings held inline.
std::string SessionName(uint64_t i) { return absl::StrFormat("session-%06d", i); }

// A new bench file holding |value|, installed in |p| (fd or -errno).
int OpenBenchFile(fs::Process& p, uint64_t value) {
  fs::ScopedCurrentProcess current(p);
  const int fd = get_unused_fd_flags(0);
  if (fd < 0) return fd;
  struct file* f = NewBenchFile(value);
  if (IS_ERR(f)) {
    put_unused_fd(static_cast<unsigned int>(fd));
    return static_cast<int>(PTR_ERR(f));
  }
  fd_install(static_cast<unsigned int>(fd), f);
  return fd;
}

// Preserves a new bench file under |token| in |session|; the VMM's fd is
// closed again (LUO keeps its own reference), so its fd table stays small.
bool PreserveNewFile(Userspace& u, int session, uint64_t token, uint64_t value,
                     std::string* error) {
  const int fd = OpenBenchFile(*u.vmm, value);
  if (fd < 0) {
    *error = absl::StrCat("opening a bench file = ", fd);
    return false;
  }
  const int err = luo::PreserveFd(*u.vmm, session, fd, token);
  u.vmm->Close(fd);
  if (err != 0) {
    *error = absl::StrCat("PRESERVE_FD token ", token, " = ", err);
    return false;
  }
  return true;
}

// Moves the session fd |fd| from the VMM into a holder process.
bool HandToHolder(Userspace& u, int fd, std::string* error) {
  if (u.holders.empty() || u.holder_fds == kFdsPerHolder) {
    fs::Process& h = LuoMachine().kernel().vfs().CreateProcess("holder");
    h.SetRlimitNofile(1 << 20);
    u.holders.push_back(&h);
    u.holder_fds = 0;
  }
  const int held = u.vmm->SendFd(fd, *u.holders.back());
  if (held < 0) {
    *error = absl::StrCat("SendFd = ", held);
    return false;
  }
  ++u.holder_fds;
  u.vmm->Close(fd);
  return true;
}

enum class Placement { kHolders, kOneProcess };

// Creates sessions SessionName(0 .. count-1), each with |files| files
// (tokens 0 .. files-1, values numbering all files from 0); their fds go to
// holders or stay in the VMM.
bool CreateSessions(Userspace& u, uint64_t count, uint64_t files, Placement placement,
                    std::string* error) {
  UntracedSetup untraced;
  for (uint64_t i = 0; i < count; ++i) {
    const int fd = luo::CreateSession(*u.vmm, u.dev, SessionName(i));
    if (fd < 0) {
      *error = absl::StrCat("CREATE_SESSION ", SessionName(i), " = ", fd);
      return false;
    }
    for (uint64_t t = 0; t < files; ++t) {
      if (!PreserveNewFile(u, fd, t, i * files + t, error)) return false;
    }
    if (placement == Placement::kHolders && !HandToHolder(u, fd, error)) return false;
  }
  LuoMachine().trace().Clear();
  return true;
}

// Time per item, shown with an SI prefix (e.g. "812n" = 812 ns per item).
benchmark::Counter PerItem(double items) {
  return benchmark::Counter(items, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------------------
// Sessions.

// Kernel A with |count| empty sessions placed as asked. Building it costs
// O(count^2) (every create walks the sessions before it: about a minute of
// CPU for 10^5), so the rows of one count that leave it as they found it
// (create, then close, with the holders) share it until the next boot.
struct SessionWorld {
  uint64_t generation = 0;  // the kernel it was built in; 0: none
  uint64_t count = 0;
  Placement placement = Placement::kHolders;
  Userspace u;
};

SessionWorld& World() {
  static SessionWorld world;
  return world;
}

Userspace* SessionsBuilt(uint64_t count, Placement placement, std::string* error) {
  SessionWorld& w = World();
  Machine& m = LuoMachine();
  if (w.generation != 0 && w.generation == m.kernel().generation() && w.count == count &&
      w.placement == placement) {
    return &w.u;
  }
  w.generation = 0;
  if (!ColdBoot(&w.u, false, error) || !CreateSessions(w.u, count, 0, placement, error)) {
    return nullptr;
  }
  w.generation = m.kernel().generation();
  w.count = count;
  w.placement = placement;
  return &w.u;
}

void BM_CreateSession(benchmark::State& state, Placement placement, uint64_t n) {
  std::string error;
  Userspace* u = SessionsBuilt(n - 1, placement, &error);
  if (u == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  const std::string name = SessionName(n - 1);
  for (auto _ : state) {
    const int fd = luo::CreateSession(*u->vmm, u->dev, name);
    state.PauseTiming();
    if (fd < 0) {
      World().generation = 0;
      state.SkipWithError(absl::StrCat("CREATE_SESSION = ", fd).c_str());
      return;
    }
    u->vmm->Close(fd);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["sessions_before"] = static_cast<double>(n - 1);
  if (n > 1) {
    state.counters["per_existing"] =
        PerItem(static_cast<double>(state.iterations()) * static_cast<double>(n - 1));
  }
}

void BM_CloseSession(benchmark::State& state, uint64_t n) {
  std::string error;
  Userspace* u = SessionsBuilt(n - 1, Placement::kHolders, &error);
  if (u == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  const std::string name = SessionName(n - 1);
  for (auto _ : state) {
    state.PauseTiming();
    // Creating the same name again also checks that the close destroyed it.
    const int fd = luo::CreateSession(*u->vmm, u->dev, name);
    if (fd < 0) {
      World().generation = 0;
      state.SkipWithError(absl::StrCat("CREATE_SESSION = ", fd).c_str());
      return;
    }
    state.ResumeTiming();
    u->vmm->Close(fd);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["sessions_before"] = static_cast<double>(n - 1);
}

void BM_NameHashSet(benchmark::State& state, uint64_t n) {
  absl::flat_hash_set<std::string> names;
  for (uint64_t i = 0; i + 1 < n; ++i) names.insert(SessionName(i));
  const std::string name = SessionName(n - 1);
  for (auto _ : state) {
    auto [it, inserted] = names.insert(name);
    benchmark::DoNotOptimize(inserted);
    names.erase(it);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_NameVectorWalk(benchmark::State& state, uint64_t n) {
  std::vector<std::string> names;
  for (uint64_t i = 0; i + 1 < n; ++i) names.push_back(SessionName(i));
  names.reserve(n);
  const std::string name = SessionName(n - 1);
  for (auto _ : state) {
    bool duplicate = false;
    for (const std::string& other : names) {
      if (other == name) {
        duplicate = true;
        break;
      }
    }
    benchmark::DoNotOptimize(duplicate);
    if (!duplicate) names.push_back(name);
    names.pop_back();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// ---------------------------------------------------------------------------
// Files.

void BM_PreserveFd(benchmark::State& state, uint64_t n, bool traced) {
  ScopedLuoTrace trace(traced);
  const uint64_t drift = n < 100 ? 0 : n / 100;
  Userspace u;
  std::string error;
  int session = -1;
  uint64_t token = 0;  // the next token; also the files already preserved
  auto rebuild = [&]() -> bool {
    UntracedSetup untraced;
    if (session >= 0) u.vmm->Close(session);  // unpreserves every file
    session = luo::CreateSession(*u.vmm, u.dev, "files");
    if (session < 0) {
      error = absl::StrCat("CREATE_SESSION = ", session);
      return false;
    }
    for (token = 0; token + 1 < n; ++token) {
      if (!PreserveNewFile(u, session, token, token, &error)) return false;
    }
    LuoMachine().trace().Clear();
    return true;
  };
  if (!ColdBoot(&u, false, &error) || !rebuild()) {
    state.SkipWithError(error.c_str());
    return;
  }
  double files_before = 0;
  int fd = OpenBenchFile(*u.vmm, token);
  for (auto _ : state) {
    const int err = luo::PreserveFd(*u.vmm, session, fd, token);
    state.PauseTiming();
    if (err != 0) {
      state.SkipWithError(absl::StrCat("PRESERVE_FD = ", err).c_str());
      return;
    }
    files_before += static_cast<double>(token);
    u.vmm->Close(fd);
    ++token;
    if (token > n - 1 + drift && !rebuild()) {
      state.SkipWithError(error.c_str());
      return;
    }
    fd = OpenBenchFile(*u.vmm, token);
    if (fd < 0) {
      state.SkipWithError("opening a bench file failed");
      return;
    }
    state.ResumeTiming();
  }
  const double iterations = static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["files_before"] = iterations > 0 ? files_before / iterations : 0;
  if (n > 1) state.counters["per_existing"] = PerItem(files_before);
}

// What the bench handler's preserve does for each file (allocate, preserve
// and fill its record), with the record freed again untimed: the part of a
// PRESERVE_FD that is the handler's, not LUO's.
void BM_HandlerRecord(benchmark::State& state) {
  Userspace u;
  std::string error;
  if (!ColdBoot(&u, false, &error)) {
    state.SkipWithError(error.c_str());
    return;
  }
  uint64_t value = 0;
  for (auto _ : state) {
    void* mem = kho_alloc_preserve(sizeof(BenchRecord));
    if (IS_ERR(mem)) {
      state.SkipWithError("kho_alloc_preserve failed");
      return;
    }
    auto* rec = static_cast<BenchRecord*>(mem);
    *rec = {kRecordMagic, value++, 0};
    benchmark::DoNotOptimize(virt_to_phys(rec));
    state.PauseTiming();
    kho_unpreserve_free(rec);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_TokenHashSet(benchmark::State& state, uint64_t n) {
  absl::flat_hash_set<uint64_t> tokens;
  for (uint64_t t = 0; t + 1 < n; ++t) tokens.insert(t);
  for (auto _ : state) {
    auto [it, inserted] = tokens.insert(n - 1);
    benchmark::DoNotOptimize(inserted);
    tokens.erase(it);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_TokenVectorWalk(benchmark::State& state, uint64_t n) {
  std::vector<uint64_t> tokens;
  for (uint64_t t = 0; t + 1 < n; ++t) tokens.push_back(t);
  tokens.reserve(n);
  uint64_t token = n - 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(token);
    bool duplicate = false;
    for (uint64_t other : tokens) {
      if (other == token) {
        duplicate = true;
        break;
      }
    }
    benchmark::DoNotOptimize(duplicate);
    if (!duplicate) tokens.push_back(token);
    tokens.pop_back();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// ---------------------------------------------------------------------------
// Across the kexec: S sessions x F files each.

struct Shape {
  uint64_t sessions;
  uint64_t files;  // per session
  uint64_t total_files() const { return sessions * files; }
  std::string Name() const { return absl::StrCat(sessions, "x", files); }
  bool operator==(const Shape&) const = default;
};

// The rows that also run with LUO's trace category on (*_traced).
constexpr uint64_t kTracedFiles = 10;
constexpr Shape kTracedShape = {100, 100};

void SetShapeCounters(benchmark::State& state, Shape shape) {
  const double iterations = static_cast<double>(state.iterations());
  state.counters["sessions"] = static_cast<double>(shape.sessions);
  state.counters["files"] = static_cast<double>(shape.total_files());
  if (shape.sessions > 0) {
    state.counters["per_session"] = PerItem(iterations * static_cast<double>(shape.sessions));
  }
  if (shape.total_files() > 0) {
    state.counters["per_file"] = PerItem(iterations * static_cast<double>(shape.total_files()));
    state.SetItemsProcessed(static_cast<int64_t>(iterations) *
                            static_cast<int64_t>(shape.total_files()));
  }
}

// Kernel A with the shape's sessions and files, ready to reboot.
bool BuildKernelA(Userspace* u, Shape shape, std::string* error) {
  return ColdBoot(u, false, error) &&
         CreateSessions(*u, shape.sessions, shape.files, Placement::kHolders, error);
}

// Cancels one reboot (untimed) by failing the freeze of the very last file:
// by then LUO has written into every session and file block, and its
// rollback leaves them cleared but touched.
bool CancelledReboot(Shape shape, std::string* error) {
  UntracedSetup untraced;
  freeze_fail_value = shape.total_files() - 1;
  const int err = LuoMachine().kernel().RunRebootHooks({});
  freeze_fail_value = UINT64_MAX;
  if (err != -EAGAIN || LuoMachine().kernel().luo().frozen_for_kexec()) {
    *error = absl::StrCat("the cancelled reboot returned ", err);
    return false;
  }
  return true;
}

// warm: after a cancelled reboot (see CancelledReboot).
void BM_Reboot(benchmark::State& state, Shape shape, bool warm, bool traced) {
  ScopedLuoTrace trace(traced);
  Userspace u;
  std::string error;
  for (auto _ : state) {
    state.PauseTiming();
    if (!BuildKernelA(&u, shape, &error) ||
        (warm && shape.total_files() > 0 && !CancelledReboot(shape, &error))) {
      state.SkipWithError(error.c_str());
      return;
    }
    LuoMachine().trace().Clear();
    Kernel& kernel = LuoMachine().kernel();
    state.ResumeTiming();
    if (int err = kernel.RunRebootHooks({}); err != 0) {
      state.SkipWithError(absl::StrCat("RunRebootHooks = ", err).c_str());
      return;
    }
  }
  if (!LuoMachine().kernel().luo().frozen_for_kexec()) {
    state.SkipWithError("LUO is not frozen after its reboot hook");
    return;
  }
  SetShapeCounters(state, shape);
}

void BM_RebootVector(benchmark::State& state, Shape shape) {
  std::vector<abi::LuoSessionSer> sessions;
  std::vector<abi::LuoFileSer> files;
  sessions.reserve(shape.sessions);
  files.reserve(shape.total_files());
  std::vector<std::string> names;
  for (uint64_t s = 0; s < shape.sessions; ++s) names.push_back(SessionName(s));
  const absl::string_view compat = bench_file_handler.compatible;
  for (auto _ : state) {
    sessions.clear();
    files.clear();
    uint64_t data = 0x4000'0000;
    for (const std::string& name : names) {
      for (uint64_t t = 0; t < shape.files; ++t) {
        abi::LuoFileSer rec;
        std::memset(rec.compatible, 0, sizeof(rec.compatible));
        std::memcpy(rec.compatible, compat.data(), compat.size());
        rec.data = data;
        rec.token = t;
        files.push_back(rec);
        data += 4096;
      }
      abi::LuoSessionSer rec;
      std::memset(rec.name, 0, sizeof(rec.name));
      std::memcpy(rec.name, name.data(), name.size());
      rec.file_set = {data, shape.files};
      sessions.push_back(rec);
    }
    benchmark::DoNotOptimize(sessions.data());
    benchmark::DoNotOptimize(files.data());
    benchmark::ClobberMemory();
  }
  SetShapeCounters(state, shape);
}

void BM_Deserialize(benchmark::State& state, Shape shape, bool traced) {
  ScopedLuoTrace trace(traced);
  Userspace u;
  std::string error;
  for (auto _ : state) {
    state.PauseTiming();
    if (!BuildKernelA(&u, shape, &error) || !KexecToB(&u, false, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.ResumeTiming();
    u.dev = luo::OpenLiveupdate(*u.vmm);
    if (u.dev < 0) {
      state.SkipWithError(absl::StrCat("first open = ", u.dev).c_str());
      return;
    }
  }
  const uint64_t incoming = LuoMachine().kernel().luo().IncomingSessions().size();
  if (incoming != shape.sessions) {
    state.SkipWithError(absl::StrCat(incoming, " incoming sessions").c_str());
    return;
  }
  SetShapeCounters(state, shape);
}

struct HostFile {
  uint64_t token;
  uint64_t data;
  absl::string_view compatible;
};
struct HostSession {
  std::string name;
  std::vector<std::unique_ptr<HostFile>> files;
};

void BM_DeserializeHost(benchmark::State& state, Shape shape) {
  std::vector<abi::LuoSessionSer> session_recs(shape.sessions);
  std::vector<abi::LuoFileSer> file_recs(shape.total_files());
  const absl::string_view compat = bench_file_handler.compatible;
  for (uint64_t s = 0; s < shape.sessions; ++s) {
    const std::string name = SessionName(s);
    std::memset(session_recs[s].name, 0, sizeof(session_recs[s].name));
    std::memcpy(session_recs[s].name, name.data(), name.size());
    session_recs[s].file_set.count = shape.files;
    for (uint64_t t = 0; t < shape.files; ++t) {
      abi::LuoFileSer& rec = file_recs[s * shape.files + t];
      std::memset(&rec, 0, sizeof(rec));
      std::memcpy(rec.compatible, compat.data(), compat.size());
      rec.token = t;
      rec.data = 0x4000'0000 + 4096 * (s * shape.files + t);
    }
  }
  for (auto _ : state) {
    std::vector<std::unique_ptr<HostSession>> sessions;
    const abi::LuoFileSer* rec = file_recs.data();
    for (const abi::LuoSessionSer& srec : session_recs) {
      auto session = std::make_unique<HostSession>();
      session->name.assign(srec.name, strnlen(srec.name, sizeof(srec.name)));
      for (uint64_t t = 0; t < srec.file_set.count; ++t, ++rec) {
        session->files.push_back(std::make_unique<HostFile>(
            HostFile{rec->token, rec->data,
                     absl::string_view(rec->compatible,
                                       strnlen(rec->compatible, sizeof(rec->compatible)))}));
      }
      sessions.push_back(std::move(session));
    }
    benchmark::DoNotOptimize(sessions.data());
  }
  SetShapeCounters(state, shape);
}

void BM_RetrieveFinish(benchmark::State& state, Shape shape) {
  Userspace u;
  std::string error;
  std::vector<std::string> names;
  for (uint64_t s = 0; s < shape.sessions; ++s) names.push_back(SessionName(s));
  for (auto _ : state) {
    state.PauseTiming();
    if (!BuildKernelA(&u, shape, &error) || !KexecToB(&u, false, &error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    u.dev = luo::OpenLiveupdate(*u.vmm);
    if (u.dev < 0) {
      state.SkipWithError(absl::StrCat("first open = ", u.dev).c_str());
      return;
    }
    state.ResumeTiming();
    fs::Process& p = *u.vmm;
    for (const std::string& name : names) {
      const int r = luo::RetrieveSession(p, u.dev, name);
      if (r < 0) {
        state.SkipWithError(absl::StrCat("RETRIEVE_SESSION ", name, " = ", r).c_str());
        return;
      }
      for (uint64_t t = 0; t < shape.files; ++t) {
        const int fd = luo::RetrieveFd(p, r, t);
        if (fd < 0) {
          state.SkipWithError(absl::StrCat("RETRIEVE_FD ", t, " = ", fd).c_str());
          return;
        }
        p.Close(fd);
      }
      if (int err = luo::FinishSession(p, r); err != 0) {
        state.SkipWithError(absl::StrCat("SESSION_FINISH = ", err).c_str());
        return;
      }
      p.Close(r);
    }
  }
  if (LuoMachine().kernel().luo().preserved_file_count() != 0) {
    state.SkipWithError("files left in the preserved-file registry");
    return;
  }
  SetShapeCounters(state, shape);
}

// ---------------------------------------------------------------------------
// FLB references.

void BM_FlbOutgoing(benchmark::State& state) {
  Userspace u;
  std::string error;
  int session = -1;
  if (ColdBoot(&u, true, &error)) {
    session = luo::CreateSession(*u.vmm, u.dev, "flb");
    if (session < 0) error = absl::StrCat("CREATE_SESSION = ", session);
  }
  if (session < 0 || !PreserveNewFile(u, session, 1, 1, &error)) {
    state.SkipWithError(error.c_str());
    return;
  }
  for (auto _ : state) {
    void* obj = nullptr;
    if (liveupdate_flb_get_outgoing(&bench_flb, &obj) != 0) {
      state.SkipWithError("liveupdate_flb_get_outgoing failed");
      return;
    }
    benchmark::DoNotOptimize(obj);
    liveupdate_flb_put_outgoing(&bench_flb);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_FlbIncoming(benchmark::State& state) {
  Userspace u;
  std::string error;
  int session = -1;
  if (ColdBoot(&u, true, &error)) {
    session = luo::CreateSession(*u.vmm, u.dev, "flb");
    if (session < 0) error = absl::StrCat("CREATE_SESSION = ", session);
  }
  if (session < 0 || !PreserveNewFile(u, session, 1, 1, &error) || !KexecToB(&u, true, &error)) {
    state.SkipWithError(error.c_str());
    return;
  }
  // The first get retrieves the FLB; the dependent file's reference keeps
  // the count above zero, so no put below finishes it.
  void* first = nullptr;
  if (liveupdate_flb_get_incoming(&bench_flb, &first) != 0) {
    state.SkipWithError("liveupdate_flb_get_incoming failed");
    return;
  }
  liveupdate_flb_put_incoming(&bench_flb);
  for (auto _ : state) {
    void* obj = nullptr;
    if (liveupdate_flb_get_incoming(&bench_flb, &obj) != 0) {
      state.SkipWithError("liveupdate_flb_get_incoming failed");
      return;
    }
    benchmark::DoNotOptimize(obj);
    liveupdate_flb_put_incoming(&bench_flb);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_MutexPair(benchmark::State& state) {
  absl::Mutex mu;
  for (auto _ : state) {
    mu.Lock();
    benchmark::ClobberMemory();
    mu.Unlock();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_PauseResume(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    state.ResumeTiming();
  }
}

// ---------------------------------------------------------------------------

// The shapes of the rows across the kexec: sessions x files per session.
std::vector<Shape> KexecShapes(bool large) {
  std::vector<Shape> shapes = {{0, 0},   {1, 1},     {100, 1},   {2000, 1},
                               {1, 500}, {1, 10000}, {100, 100}, {1000, 100}};
  if (large) {
    shapes.push_back({10000, 1});
    shapes.push_back({1, 100000});
  }
  return shapes;
}

void RegisterAll(double min_time) {
  const bool large = LargeRows();
  // wall_seconds > 0: a fixed iteration count for about min_time of wall
  // time at that many seconds per iteration (setup included).
  auto row = [&](const std::string& name, double wall_seconds, auto fn, auto... args) {
    auto* b = benchmark::RegisterBenchmark(name.c_str(), fn, args...);
    if (wall_seconds > 0) {
      b->Iterations(khosim::bench::SetupBoundIterations(min_time, wall_seconds));
    }
    return b;
  };
  row("overhead/pause_resume/empty", 0, BM_PauseResume)->Unit(benchmark::kNanosecond);

  std::vector<uint64_t> counts = {1, 10, 100, 1000, 10000};
  if (large) counts.push_back(100000);
  for (uint64_t n : counts) {
    const double nd = static_cast<double>(n);
    const std::string shape = absl::StrCat("sessions:", n);
    // Per iteration: the timed create (or close) and the untimed close (or
    // create), each a few us plus a walk of the sessions.
    row(absl::StrCat("create_session/", shape, "/luo"), 1e-5 + 2e-8 * nd, BM_CreateSession,
        Placement::kHolders, n)
        ->Unit(benchmark::kMicrosecond);
    row(absl::StrCat("close_session/", shape, "/luo"), 1e-5 + 2e-8 * nd, BM_CloseSession, n)
        ->Unit(benchmark::kMicrosecond);
    // Every session fd in one process: each create also walks the fd table
    // (a std::map) for the lowest free fd. Building 10^5 of those takes
    // minutes, so this row stops at 10^4.
    if (n <= 10000) {
      row(absl::StrCat("create_session/", shape, "/luo_one_process"), 1e-5 + 6e-8 * nd,
          BM_CreateSession, Placement::kOneProcess, n)
          ->Unit(benchmark::kMicrosecond);
    }
    row(absl::StrCat("create_session/", shape, "/flat_hash_set"), 0, BM_NameHashSet, n)
        ->Unit(benchmark::kNanosecond);
    row(absl::StrCat("create_session/", shape, "/vector_walk"), 0, BM_NameVectorWalk, n)
        ->Unit(benchmark::kNanosecond);
  }
  for (uint64_t n : counts) {
    const double nd = static_cast<double>(n);
    const std::string shape = absl::StrCat("files:", n);
    // Below 100 files the session is rebuilt every iteration, above it
    // every n/100 iterations: n preserves of about 10 us each, and the
    // token walks.
    const double rebuild = n < 100 ? 3e-5 + 2e-5 * nd : 1e-3 + 8e-9 * nd;
    row(absl::StrCat("preserve_fd/", shape, "/luo"), 2e-5 + 2e-9 * nd + rebuild, BM_PreserveFd, n,
        false)
        ->Unit(benchmark::kMicrosecond);
    if (n == kTracedFiles) {
      row(absl::StrCat("preserve_fd/", shape, "/luo_traced"), 2e-5 + 2e-9 * nd + rebuild,
          BM_PreserveFd, n, true)
          ->Unit(benchmark::kMicrosecond);
    }
    if (n == 1) {
      row("preserve_fd/handler_record/kho_alloc_preserve", 1e-5, BM_HandlerRecord)
          ->Unit(benchmark::kMicrosecond);
    }
    row(absl::StrCat("preserve_fd/", shape, "/flat_hash_set"), 0, BM_TokenHashSet, n)
        ->Unit(benchmark::kNanosecond);
    row(absl::StrCat("preserve_fd/", shape, "/vector_walk"), 0, BM_TokenVectorWalk, n)
        ->Unit(benchmark::kNanosecond);
  }

  // Per iteration: a cold boot, S sessions and S*F preserved files (a
  // kexec and more for the kernel B rows).
  auto build_seconds = [](Shape s) {
    const double sessions = static_cast<double>(s.sessions);
    return 1e-2 + 1e-5 * sessions + 1e-9 * sessions * sessions +
           1e-5 * static_cast<double>(s.total_files());
  };
  constexpr double kKexecSeconds = 5e-2;
  for (Shape s : KexecShapes(large)) {
    row(absl::StrCat("reboot/", s.Name(), "/luo"), build_seconds(s), BM_Reboot, s, false, false)
        ->Unit(benchmark::kMicrosecond);
    if (s.total_files() > 0) {
      row(absl::StrCat("reboot/", s.Name(), "/luo_warm"), build_seconds(s), BM_Reboot, s, true,
          false)
          ->Unit(benchmark::kMicrosecond);
    }
    if (s == kTracedShape) {
      row(absl::StrCat("reboot/", s.Name(), "/luo_warm_traced"), build_seconds(s), BM_Reboot, s,
          true, true)
          ->Unit(benchmark::kMicrosecond);
    }
    row(absl::StrCat("reboot/", s.Name(), "/vector_push_back"), 0, BM_RebootVector, s)
        ->Unit(benchmark::kMicrosecond);
  }
  for (Shape s : KexecShapes(large)) {
    row(absl::StrCat("deserialize/", s.Name(), "/luo"), kKexecSeconds + build_seconds(s),
        BM_Deserialize, s, false)
        ->Unit(benchmark::kMicrosecond);
    if (s == kTracedShape) {
      row(absl::StrCat("deserialize/", s.Name(), "/luo_traced"), kKexecSeconds + build_seconds(s),
          BM_Deserialize, s, true)
          ->Unit(benchmark::kMicrosecond);
    }
    row(absl::StrCat("deserialize/", s.Name(), "/host_objects"), 0, BM_DeserializeHost, s)
        ->Unit(benchmark::kMicrosecond);
  }
  for (Shape s : KexecShapes(large)) {
    if (s.sessions == 0) continue;
    row(absl::StrCat("retrieve_finish/", s.Name(), "/luo"), kKexecSeconds + 2 * build_seconds(s),
        BM_RetrieveFinish, s)
        ->Unit(benchmark::kMicrosecond);
  }

  row("flb/get_put_outgoing/luo", 0, BM_FlbOutgoing)->Unit(benchmark::kNanosecond);
  row("flb/get_put_incoming/luo", 0, BM_FlbIncoming)->Unit(benchmark::kNanosecond);
  row("flb/lock_unlock/absl_mutex", 0, BM_MutexPair)->Unit(benchmark::kNanosecond);
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_machine",
        absl::StrFormat("%d GiB RAM, 1 node, 4 KiB pages, kho=on liveupdate=on, %d MiB image",
                        khosim::kRam / khosim::kGiB, khosim::kImageBytes / khosim::kMiB)},
       {"large_sizes", khosim::LargeRows() ? "on (KHOSIM_BENCH_LARGE)" : "off"}},
      [](double min_time) {
        khosim::RegisterAll(min_time);
        khosim::SetLuoTrace(false);
      });
}

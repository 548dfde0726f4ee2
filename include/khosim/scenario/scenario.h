// Scenario: what `khosim run` simulates, as data. A scenario is written in
// YAML (docs/scenarios.md has the annotated format and field reference) and
// parsed into this model by ParseScenario, which checks everything that can
// be checked without running: every field's type and range, unknown fields,
// references between boots (a file preserved in boot 2 must exist there),
// the hugetlb pools a boot's command line must give the hugetlb files it
// creates, and features this build does not have (kho-v1..v3), so a bad
// file is rejected with its line and field before anything runs.
//
// Shape:
//   machine          RAM, nodes, page size, seed, scrub policy, and the file
//                    handlers built into every kernel
//   files            named guest files: kind, size, content generator
//   boots[0]         the cold boot; boots[i] is the kernel kexec'd into by
//                    hop i. Each has a command line, ABI profiles, its
//                    kernel build's file handlers, and the
//                    userspace that runs in it: processes, each with LUO
//                    sessions it retrieves (from the previous kernel),
//                    verifies, finishes, and creates/preserves (for the next)
//   faults           a fault plan for the machine's FaultInjector
//   program          instead of processes: one of the procedural KHO-only
//                    scenarios of khosim/scenario/programs.h
#ifndef KHOSIM_SCENARIO_SCENARIO_H_
#define KHOSIM_SCENARIO_SCENARIO_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "khosim/hw/pci_topology.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/kernel.h"
#include "khosim/machine/kernel_module.h"
#include "khosim/mm/mm.h"

namespace khosim::scenario {

// Where a value came from, for messages that name the line and field.
struct SourcePos {
  int line = 0;       // 1-based; 0 = not from a file (a default)
  int column = 0;     // 1-based
  std::string field;  // e.g. "boots[1].processes[0].sessions[0].retrieve[0].token"
};

struct MachineSpec {
  uint64_t ram = 4ull << 30;
  int nodes = 2;
  uint64_t page_size = 4096;
  uint64_t seed = 1;
  mm::FreeMemoryPolicy scrub = mm::FreeMemoryPolicy::kPoison;
  // The modules (LUO file handlers) built into every kernel a boot does not
  // give its own (`handlers:`); the default is the built-in registry's
  // (memfd-v2 only), as MachineConfig's.
  KernelBuild handlers = ModuleRegistry::Builtin().DefaultBuild();
  // The PCI hardware (`pci: example`, or a tree of functions); empty: none.
  hw::PciTopology pci;
};

// A module a kernel is built with, as reports show it: the name scenarios
// use and the compatible string it preserves files under (and retrieves
// them by).
struct HandlerInfo {
  std::string name;        // "memfd", "memfd-sparse", "hugetlb"
  std::string compatible;  // "memfd-v2", "memfd-sparse-v1", "hugemfd-v1"
};
// The modules |build| has, in the built-in registry's order.
std::vector<HandlerInfo> BuiltHandlers(const KernelBuild& build);

// kMemfd: a shmem memfd of base pages. kHugetlb: an MFD_HUGETLB memfd of one
// huge page size, written through a shared mapping (hugetlbfs has no
// write(2)) and preserved by the hugetlb handler ("hugemfd-v1"). kDevice: a
// PCI function of the machine passed through by the pci-passthrough driver
// (its /dev node, bus mastering on), preserved as "pci-passthrough-v2";
// the next boot binds it to pci-passthrough before retrieving it, and
// verification checks that it came back incoming, at the same address,
// still mastering.
enum class FileKind { kMemfd, kHugetlb, kDevice, kIommufd };
absl::string_view FileKindName(FileKind kind);

// The huge page sizes a machine of |page_size| base pages has: the PMD and
// the PUD size (2 MiB and 1 GiB with 4 KiB pages), as mm::Hugetlb.
std::vector<uint64_t> HugePageSizes(uint64_t page_size);
// "2M", "1G", "32M": a size as the kernel command line writes it.
std::string CmdlineSize(uint64_t bytes);

enum class ContentKind {
  kRandom,   // seeded random bytes over the whole size
  kPattern,  // a byte string repeated over the whole size
  kZeros,    // nothing written: every page a hole that reads as zero
  kSparse,   // holes except the listed extents
  kSampled,  // one block per stride at a seeded position, plus any extents
};

struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct ContentSpec {
  ContentKind kind = ContentKind::kRandom;
  // kRandom, kSparse, kSampled: unset derives one from the machine seed
  // and the file's name, so files differ and runs repeat.
  std::optional<uint64_t> seed;
  std::string pattern;          // kPattern; kSparse, kSampled: data filled with it
  std::vector<Extent> extents;  // kSparse, kSampled: random bytes unless a pattern
  // kSampled: one |length|-byte block in every |stride| bytes of the file,
  // at a |length|-aligned position within the stride drawn from the seed
  // (guest RAM that was touched here and there). |length| divides |stride|;
  // the parser defaults it to the file's page size.
  uint64_t stride = 0;
  uint64_t length = 0;
};

// A device's DMA: all of memfd |file| mapped at |iova| through the
// device's IOMMU domain, and the device's engine streaming a sequence
// counter into it from the moment it is mapped (a ring that wraps).
struct DmaSpec {
  std::string file;
  uint64_t iova = 0;
  // The iommufd file (kind: iommufd) the device's DMA goes through: the
  // VMM maps the memfd (sealed F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_SHRINK)
  // into an IOAS, binds the device and attaches it to a HWPT marked for
  // live update. Empty: pci-passthrough's own DMA_MAP_FILE.
  std::string iommufd;
  SourcePos pos;
};

struct FileSpec {
  std::string name;
  FileKind kind = FileKind::kMemfd;
  // kDevice: the PCI function (its name in machine.pci); size is 0.
  std::string device;
  // kDevice: its DMA, if any.
  std::optional<DmaSpec> dma;
  // kDevice: the driver the VMM hands it to, "pci-passthrough" (the test
  // driver: its node, its own DMA maps or an iommufd) or "vfio-pci" (the
  // device cdev bound to dma.iommufd, which it then needs).
  std::string driver = "pci-passthrough";
  uint64_t size = 0;
  // kMemfd: 0 (the machine's page size). kHugetlb: the huge page size,
  // one of HugePageSizes(); size is a whole number of them.
  uint64_t page_size = 0;
  ContentSpec content;
  SourcePos pos;
};

enum class VerifyMode {
  kFull,    // every byte compared against the generator, plus the hash
  kSample,  // the hash, plus a sample of pages compared byte for byte
  kNone,
};

// One file of a session, by token.
struct FileRef {
  uint64_t token = 0;
  std::string file;                       // a name in Scenario::files
  VerifyMode verify = VerifyMode::kFull;  // retrieve only
  // preserve only: create the file but deliberately do not preserve it,
  // to show what the next boot's verification reports.
  bool omit = false;
  SourcePos pos;
};

struct SessionSpec {
  std::string name;
  // Retrieve the incoming session of this name and these files (nullopt:
  // do not retrieve; empty: retrieve a session expected to hold no file).
  std::optional<std::vector<FileRef>> retrieve;
  // FINISH the retrieved session after verification.
  bool finish = true;
  // Create an outgoing session of this name and preserve these files.
  std::optional<std::vector<FileRef>> preserve;
  SourcePos pos;
};

struct ProcessSpec {
  std::string name;
  std::vector<SessionSpec> sessions;
  SourcePos pos;
};

struct BootSpec {
  std::string cmdline = "kho=on liveupdate=on";
  // The KHO ABI this kernel speaks: "kho-v4" (default) or "kho-v1", from
  // `kho:` or a khosim.kho_profile= word in cmdline. LUO is disabled on
  // kho-v1, so a kho-v1 boot has no sessions.
  std::string kho_profile = "kho-v4";
  SourcePos kho_profile_pos;  // of `kho` (or `cmdline`), when given
  luo::LuoProfile luo_profile = luo::LuoProfile::k7_3;
  // This kernel build's modules; nullopt: MachineSpec::handlers.
  std::optional<KernelBuild> handlers;
  std::vector<ProcessSpec> processes;
  SourcePos pos;
  SourcePos handlers_pos;  // of `handlers`, when given
  // The command line this boot really gets: cmdline plus the KHO and LUO
  // profiles (khosim.kho_profile=, khosim.luo_profile=) when not defaults.
  std::string EffectiveCmdline() const;
};

// When a fault plan is armed: before the cold boot, once boot N is up
// (before its userspace runs), or right before kexec N.
struct FaultArm {
  enum Kind { kStart, kBoot, kKexec } kind = kStart;
  int index = 0;
};

struct FaultSpec {
  std::string point;  // "" with kNthAny
  enum Kind { kNth, kNthAny, kOnce, kProbability } kind = kOnce;
  uint64_t nth = 0;
  double probability = 0;
  FaultArm arm;
  SourcePos pos;
};

// A procedural scenario from khosim/scenario/programs.h, for KHO-only runs.
struct ProgramSpec {
  std::string name;                          // "kho" or "kexec-scrub"
  uint64_t preserve_per_boot = 64ull << 20;  // kho
  // kho: record one folio in the index without preserving it, so the next
  // kernel finds it gone (a deliberate data loss).
  bool skip_preserve_folio = false;
};

struct Scenario {
  std::string name;
  std::string description;
  std::string source;  // file path or "builtin:<name>"
  MachineSpec machine;
  std::vector<FileSpec> files;
  std::vector<BootSpec> boots;  // at least one; boots.size() - 1 kexecs
  std::vector<FaultSpec> faults;
  std::optional<ProgramSpec> program;

  int kexecs() const { return static_cast<int>(boots.size()) - 1; }
  // The modules built into boot |index|'s kernel (0-based).
  KernelBuild HandlersOf(size_t index) const;
  const FileSpec* FindFile(absl::string_view name) const;
  // The device whose DMA targets memfd |name|, or nullptr.
  const FileSpec* DmaDeviceOf(absl::string_view name) const;
  // Whether memfd |name| is mapped through an iommufd (the VMM seals it).
  bool SealedForIommufd(absl::string_view name) const;
  // The hwpt_token of |device|'s HWPT in its iommufd: 1 + its index among
  // the devices mapped through that iommufd, in 'files' order.
  uint64_t HwptToken(const FileSpec& device) const;
  // Bytes of every file's size.
  uint64_t FileBytes() const;
};

// Parses and validates YAML text. |source| names the text in messages
// ("scenarios/x.yaml"). Errors are InvalidArgument (a malformed or invalid
// file) or Unimplemented (valid, but asks for something this build lacks),
// with messages "<source>:<line>:<col>: <field>: <what>".
absl::StatusOr<Scenario> ParseScenario(absl::string_view text, absl::string_view source);
// Scenario files larger than this are refused (the largest example is a
// few KiB).
inline constexpr uintmax_t kMaxScenarioFileBytes = 4 << 20;
// Reads and parses a file: NotFound if it cannot be read; InvalidArgument
// for anything but a regular file (a directory, FIFO, device: a symlink to
// /dev/zero would be read without end) or a file above
// kMaxScenarioFileBytes.
absl::StatusOr<Scenario> LoadScenarioFile(const std::string& path);

// Built-in scenarios: YAML texts compiled into the program.
std::vector<std::string> BuiltinScenarioNames();
// The YAML of a built-in, or nullopt.
std::optional<std::string> BuiltinScenarioText(absl::string_view name);
// A built-in by name, or a file path (anything containing '/' or ending in
// .yaml/.yml). An unknown name is NotFound listing the built-ins.
absl::StatusOr<Scenario> ResolveScenario(absl::string_view name_or_path);

// Fault points the simulated kernel knows (FaultInjector names).
std::vector<std::string> KnownFaultPoints();
// "4 GiB", "64 MiB", "4 KiB", "123 bytes".
std::string FormatBytes(uint64_t bytes);

}  // namespace khosim::scenario

#endif  // KHOSIM_SCENARIO_SCENARIO_H_

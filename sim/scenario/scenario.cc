// The scenario model's helpers (see khosim/scenario/scenario.h); the
// parser is scenario_parse.cc, the cross-field checks scenario_validate.cc,
// the built-in texts builtin_scenarios.cc.
#include "khosim/scenario/scenario.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "khosim/abi/kexec_handover.h"
#include "khosim/machine/fault_points.h"
#include "khosim/mm/hugetlb.h"

namespace khosim::scenario {

absl::string_view FileKindName(FileKind kind) {
  switch (kind) {
    case FileKind::kMemfd:
      return "memfd";
    case FileKind::kHugetlb:
      return "hugetlb";
    case FileKind::kDevice:
      return "device";
    case FileKind::kIommufd:
      return "iommufd";
  }
  return "memfd";
}

std::vector<uint64_t> HugePageSizes(uint64_t page_size) {
  std::vector<uint64_t> sizes;
  for (unsigned order : mm::HugePageOrders(PageGeometry::ForPageSize(page_size))) {
    sizes.push_back(page_size << order);
  }
  return sizes;
}

std::string CmdlineSize(uint64_t bytes) {
  static const std::pair<char, int> kUnits[] = {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}};
  for (const auto& [unit, shift] : kUnits) {
    if (bytes != 0 && bytes % (uint64_t{1} << shift) == 0) {
      return absl::StrCat(bytes >> shift, std::string(1, unit));
    }
  }
  return absl::StrCat(bytes);
}

std::vector<HandlerInfo> BuiltHandlers(const KernelBuild& build) {
  std::vector<HandlerInfo> out;
  for (const KernelModule* m : ModuleRegistry::Builtin().Modules(build)) {
    out.push_back({m->name, m->compatibles.empty() ? "" : m->compatibles.front()});
  }
  return out;
}

KernelBuild Scenario::HandlersOf(size_t index) const {
  return index < boots.size() && boots[index].handlers ? *boots[index].handlers : machine.handlers;
}

std::string BootSpec::EffectiveCmdline() const {
  std::string out = cmdline;
  auto add = [&out](absl::string_view word) {
    if (!out.empty()) out += ' ';
    absl::StrAppend(&out, word);
  };
  // Only a `kho:` field adds the word; one given in cmdline is there already.
  if (kho_profile != abi::kKhoFdtCompatible && !absl::StrContains(cmdline, "khosim.kho_profile=")) {
    add(absl::StrCat("khosim.kho_profile=", kho_profile));
  }
  if (luo_profile == luo::LuoProfile::k7_2) add("khosim.luo_profile=7.2");
  return out;
}

const FileSpec* Scenario::FindFile(absl::string_view name) const {
  for (const FileSpec& f : files) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const FileSpec* Scenario::DmaDeviceOf(absl::string_view name) const {
  for (const FileSpec& f : files) {
    if (f.dma && f.dma->file == name) return &f;
  }
  return nullptr;
}

bool Scenario::SealedForIommufd(absl::string_view name) const {
  const FileSpec* device = DmaDeviceOf(name);
  return device != nullptr && !device->dma->iommufd.empty();
}

uint64_t Scenario::HwptToken(const FileSpec& device) const {
  uint64_t index = 0;
  for (const FileSpec& f : files) {
    if (&f == &device) break;
    if (f.dma && f.dma->iommufd == device.dma->iommufd) ++index;
  }
  return index + 1;
}

uint64_t Scenario::FileBytes() const {
  uint64_t total = 0;
  for (const FileSpec& f : files) total += f.size;
  return total;
}

std::vector<std::string> KnownFaultPoints() {
  std::vector<std::string> names;
  for (const FaultPointInfo& point : FaultPoints()) names.push_back(point.name);
  return names;
}

std::string FormatBytes(uint64_t bytes) {
  static const char* kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4; ++i) {
    const uint64_t unit = uint64_t{1} << (10 * (4 - i));
    if (bytes < unit) continue;
    if (bytes % unit == 0) return absl::StrCat(bytes / unit, " ", kUnits[i]);
    return absl::StrFormat("%.1f %s", static_cast<double>(bytes) / unit, kUnits[i]);
  }
  return absl::StrCat(bytes, bytes == 1 ? " byte" : " bytes");
}

}  // namespace khosim::scenario

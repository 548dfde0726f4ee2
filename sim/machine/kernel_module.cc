// ModuleRegistry: the table of modules a kernel can be built with (see the
// header).
#include "khosim/machine/kernel_module.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace khosim {

bool KernelBuild::Has(absl::string_view name) const {
  return std::find(modules.begin(), modules.end(), name) != modules.end();
}

absl::Status ModuleRegistry::Add(KernelModule module) {
  if (module.name.empty()) return absl::InvalidArgumentError("a kernel module needs a name");
  if (module.initcalls.empty() && module.early_hooks.empty() && module.reboot_hooks.empty() &&
      module.configs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel module ", module.name, " has no initcall and no hook: nothing runs"));
  }
  std::set<std::string> taken;
  for (const KernelModule& m : modules_) {
    if (m.name == module.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("a kernel module named ", module.name, " exists already"));
    }
    taken.insert(m.compatibles.begin(), m.compatibles.end());
    taken.insert(m.flbs.begin(), m.flbs.end());
  }
  for (const auto* list : {&module.compatibles, &module.flbs}) {
    for (const std::string& compatible : *list) {
      if (taken.count(compatible) != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "kernel module ", module.name, ": compatible ", compatible, " is taken already"));
      }
    }
  }
  modules_.push_back(std::move(module));
  return absl::OkStatus();
}

const KernelModule* ModuleRegistry::Find(absl::string_view name) const {
  for (const KernelModule& m : modules_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

KernelBuild ModuleRegistry::DefaultBuild() const {
  KernelBuild build;
  for (const KernelModule& m : modules_) {
    if (m.default_enabled) build.modules.push_back(m.name);
  }
  return build;
}

std::string ModuleRegistry::Names() const {
  std::vector<std::string> names;
  for (const KernelModule& m : modules_) names.push_back(m.name);
  return absl::StrJoin(names, ", ");
}

absl::Status ModuleRegistry::AddToBuild(absl::string_view name, KernelBuild* build) const {
  if (Find(name) == nullptr) {
    std::string hint;
    for (const KernelModule& m : modules_) {
      // A report names files by compatible; say which module registers it.
      if (std::find(m.compatibles.begin(), m.compatibles.end(), name) != m.compatibles.end()) {
        hint = absl::StrCat("; ", name, " is built by ", m.name);
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown file handler \"", name, "\" (known: ", Names(), hint, ")"));
  }
  if (build->Has(name)) {
    return absl::InvalidArgumentError(absl::StrCat("file handler ", name, " is listed twice"));
  }
  build->modules.emplace_back(name);
  return absl::OkStatus();
}

absl::StatusOr<KernelBuild> ModuleRegistry::ParseBuild(absl::string_view list) const {
  KernelBuild build;
  for (absl::string_view name : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    if (absl::Status s = AddToBuild(absl::StripAsciiWhitespace(name), &build); !s.ok()) return s;
  }
  return build;
}

std::vector<const KernelModule*> ModuleRegistry::Modules(const KernelBuild& build) const {
  std::vector<const KernelModule*> out;
  for (const KernelModule& m : modules_) {
    if (build.Has(m.name)) out.push_back(&m);
  }
  return out;
}

std::vector<const KernelModule*> ModuleRegistry::Resolve(const KernelBuild& build) const {
  std::vector<const KernelModule*> order = Modules(build);
  // A handful of modules: move each one ahead of the first module it must
  // precede, which keeps every other pair in registry order.
  for (size_t i = 0; i < order.size(); ++i) {
    const KernelModule* m = order[i];
    for (size_t j = 0; j < i; ++j) {
      const std::vector<std::string>& before = m->runs_before;
      if (std::find(before.begin(), before.end(), order[j]->name) == before.end()) continue;
      order.erase(order.begin() + static_cast<std::ptrdiff_t>(i));
      order.insert(order.begin() + static_cast<std::ptrdiff_t>(j), m);
      break;
    }
  }
  return order;
}

std::string ModuleRegistry::Format(const KernelBuild& build) const {
  std::vector<std::string> names;
  for (const KernelModule* m : Modules(build)) names.push_back(m->name);
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

}  // namespace khosim

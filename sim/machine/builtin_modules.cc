// The in-tree kernel modules: one entry per LUO handler and driver. Adding
// one is its own source file, its CMake line and an entry here; the Kernel
// and the scenario parser both read this table.
#include "khosim/machine/builtin_modules.h"

#include <cstdio>
#include <cstdlib>

#include "khosim/abi/hugetlb_luo.h"
#include "khosim/abi/memfd_luo.h"
#include "khosim/drivers/iommufd.h"
#include "khosim/drivers/vfio.h"
#include "khosim/handlers/hugetlb_luo.h"
#include "khosim/handlers/memfd_luo.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/linux/kho/abi/iommufd.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/linux/kho/abi/pci_passthrough.h"
#include "khosim/linux/kho/abi/vfio_pci.h"
#include "khosim/machine/kernel_module.h"

namespace khosim {
namespace {

ModuleRegistry MakeBuiltin() {
  std::vector<KernelModule> table = {
      {
          .name = kMemfdModule,
          .description = "memfd preservation, upstream's memfd_luo (mm/memfd_luo.c)",
          .compatibles = {abi::kMemfdLuoCompatible},
          .initcalls = {{InitcallLevel::kLate, "memfd_luo_init", memfd_luo_init}},
          .default_enabled = true,
      },
      {
          .name = kMemfdSparseModule,
          .description = "sparse memfd preservation on the KHO xarray (docs/memfd-sparse.md)",
          .compatibles = {abi::kMemfdSparseCompatible},
          .initcalls = {{InitcallLevel::kLate, "memfd_sparse_luo_init", memfd_sparse_luo_init}},
          // Asked first, it preserves every memfd; memfd-v2, if built, still
          // retrieves what an older kernel preserved with it.
          .runs_before = {kMemfdModule},
      },
      {
          .name = kHugetlbModule,
          .description = "hugetlb memfds and the per-hstate FLB (docs/hugetlb-luo.md)",
          .compatibles = {abi::kHugemfdLuoCompatible},
          .flbs = {abi::kHugetlbFlbCompatible},
          .initcalls = {{InitcallLevel::kLate, "hugetlb_luo_init", hugetlb_luo_init}},
          // The pools are filled from memblock_free_all on: what the previous
          // kernel's files hold must be known before.
          .early_hooks = {{BootHook::kBeforeMemblockFreeAll, "hugetlb_luo_early",
                           hugetlb_luo_early_init}},
      },
      {
          .name = kPciPassthroughModule,
          .kind = KernelModule::Kind::kDriver,
          .description = "a test PCI passthrough driver whose files preserve their device",
          .compatibles = {PCI_PASSTHROUGH_LUO_COMPATIBLE},
          .flbs = {PCI_LUO_FLB_COMPATIBLE},
          .initcalls = {{InitcallLevel::kDevice, "pci_passthrough_init", pci_passthrough_init}},
      },
      {
          .name = kIommufdModule,
          .kind = KernelModule::Kind::kDriver,
          .description = "/dev/iommu and its file handler (docs/iommu.md, iommufd)",
          .compatibles = {IOMMUFD_LUO_COMPATIBLE},
          .initcalls = {{InitcallLevel::kDevice, "iommufd_init", iommufd_init}},
      },
      {
          .name = kVfioPciModule,
          .kind = KernelModule::Kind::kDriver,
          .description = "vfio-pci: device cdevs, groups and the container (docs/devices.md)",
          .initcalls = {{InitcallLevel::kDevice, "vfio_pci_init", vfio_pci_init}},
      },
      {
          .name = kVfioPciLiveupdateModule,
          .kind = KernelModule::Kind::kDriver,
          .description = "CONFIG_VFIO_PCI_LIVEUPDATE: vfio-pci's file handler (with vfio-pci)",
          .compatibles = {VFIO_PCI_LUO_FH_COMPATIBLE},
          .flbs = {},
          .configs = {"CONFIG_VFIO_PCI_LIVEUPDATE"},
      },
  };
  ModuleRegistry registry;
  for (KernelModule& module : table) {
    if (absl::Status s = registry.Add(std::move(module)); !s.ok()) {
      std::fprintf(stderr, "khosim: bad built-in module table: %s\n", s.ToString().c_str());
      std::abort();
    }
  }
  return registry;
}

}  // namespace

const ModuleRegistry& ModuleRegistry::Builtin() {
  static const ModuleRegistry* builtin = new ModuleRegistry(MakeBuiltin());
  return *builtin;
}

}  // namespace khosim

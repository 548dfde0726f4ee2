// The names of the in-tree kernel modules (ModuleRegistry::Builtin(), the
// table in sim/machine/builtin_modules.cc), for code that must know one:
// the scenario checks that model a module's effect on a boot.
#ifndef KHOSIM_MACHINE_BUILTIN_MODULES_H_
#define KHOSIM_MACHINE_BUILTIN_MODULES_H_

namespace khosim {

inline constexpr char kMemfdModule[] = "memfd";               // "memfd-v2"
inline constexpr char kMemfdSparseModule[] = "memfd-sparse";  // "memfd-sparse-v1"
inline constexpr char kHugetlbModule[] = "hugetlb";           // "hugemfd-v1", FLB "hugetlb-v1"
inline constexpr char kPciPassthroughModule[] =
    "pci-passthrough";                               // "pci-passthrough-v2", FLB "pci"
inline constexpr char kIommufdModule[] = "iommufd";  // "iommufd-v1"
inline constexpr char kVfioPciModule[] = "vfio-pci";
inline constexpr char kVfioPciLiveupdateModule[] =
    "vfio-pci-liveupdate";  // CONFIG_VFIO_PCI_LIVEUPDATE: "vfio-pci-v1"

}  // namespace khosim

#endif  // KHOSIM_MACHINE_BUILTIN_MODULES_H_

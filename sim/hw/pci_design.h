// The register layout of each kind of simulated PCI function: reset values,
// write masks, capability chains. Private to sim/hw.
#ifndef KHOSIM_SIM_HW_PCI_DESIGN_H_
#define KHOSIM_SIM_HW_PCI_DESIGN_H_

#include <memory>

#include "khosim/hw/pci.h"

namespace khosim::hw {

// The design of the function |spec| describes; |multifunction| sets the
// header's multi-function bit (function 0 of a slot with siblings).
std::shared_ptr<const PciConfigTemplate> MakeFunctionDesign(const PciFunctionSpec& spec,
                                                            bool multifunction);
// The design of the VFs of PF |pf| (which has total_vfs > 0).
std::shared_ptr<const PciConfigTemplate> MakeVfDesign(const PciFunctionSpec& pf);

}  // namespace khosim::hw

#endif  // KHOSIM_SIM_HW_PCI_DESIGN_H_

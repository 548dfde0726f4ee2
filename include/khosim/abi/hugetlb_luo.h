// The hugetlb live-update records ("hugemfd-v1", the "hugetlb-v1" FLB): the
// C++ face of khosim/linux/kho/abi/hugetlb.h, where the layouts and their
// status (a proposal, docs/hugetlb-luo.md) are documented.
#ifndef KHOSIM_ABI_HUGETLB_LUO_H_
#define KHOSIM_ABI_HUGETLB_LUO_H_

#include <cstdint>

#include "khosim/abi/kexec_handover.h"
#include "khosim/abi/memfd_luo.h"
#include "khosim/linux/kho/abi/hugetlb.h"

namespace khosim::abi {

inline constexpr char kHugemfdLuoCompatible[] = HUGEMFD_LUO_FH_COMPATIBLE;
inline constexpr char kHugetlbFlbCompatible[] = HUGETLB_FLB_COMPATIBLE;
inline constexpr uint32_t kHugetlbFlbMaxHstates = HUGETLB_FLB_MAX_HSTATES;

using HugemfdLuoSer = ::hugemfd_luo_ser;
using HugetlbFlbHstateSer = ::hugetlb_flb_hstate_ser;
using HugetlbFlbSer = ::hugetlb_flb_ser;

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_HUGETLB_LUO_H_

// The boot handover record: what kexec passes to the next kernel besides
// its command line, byte-compatible with x86's setup_data payload of type
// SETUP_KEXEC_KHO (DT architectures carry the same two ranges in /chosen as
// linux,kho-fdt and linux,kho-scratch). All-zero means "no KHO handover".
#ifndef KHOSIM_ABI_KHO_DATA_H_
#define KHOSIM_ABI_KHO_DATA_H_

#include <cstddef>
#include <cstdint>

namespace khosim::abi {

inline constexpr uint32_t kSetupKexecKho = 10;  // setup_data type on x86

struct __attribute__((packed)) KhoData {
  uint64_t fdt_addr;      // physical address of the root FDT
  uint64_t fdt_size;      // bytes (PAGE_SIZE upstream)
  uint64_t scratch_addr;  // physical address of the kho_scratch array
  uint64_t scratch_size;  // bytes of that array
};
static_assert(sizeof(KhoData) == 32);
static_assert(offsetof(KhoData, fdt_addr) == 0);
static_assert(offsetof(KhoData, fdt_size) == 8);
static_assert(offsetof(KhoData, scratch_addr) == 16);
static_assert(offsetof(KhoData, scratch_size) == 24);

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_KHO_DATA_H_

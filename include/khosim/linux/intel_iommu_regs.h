// VT-d remapping hardware: register offsets, command and status bits, and
// the in-memory formats of root, context and second-level page-table
// entries (Intel VT-d specification; the names are the kernel's, from
// drivers/iommu/intel/iommu.h). Shared by the simulated unit (sim/hw) and
// the kernel's driver (lib/drivers/iommu), as the hardware and its driver
// share the specification.
#ifndef KHOSIM_LINUX_INTEL_IOMMU_REGS_H_
#define KHOSIM_LINUX_INTEL_IOMMU_REGS_H_

#include "khosim/linux/types.h"

// Register offsets.
#define DMAR_VER_REG 0x0
#define DMAR_CAP_REG 0x8
#define DMAR_ECAP_REG 0x10
#define DMAR_GCMD_REG 0x18
#define DMAR_GSTS_REG 0x1c
#define DMAR_RTADDR_REG 0x20
#define DMAR_CCMD_REG 0x28
#define DMAR_FSTS_REG 0x34
// The IOTLB registers sit at ecap_iotlb_offset(ecap) (+8 for DMAR_IOTLB).
#define DMAR_IOTLB_REG_OFFSET 0x8

// Global command / status.
#define DMA_GCMD_TE (1U << 31)
#define DMA_GCMD_SRTP (1U << 30)
#define DMA_GSTS_TES (1U << 31)
#define DMA_GSTS_RTPS (1U << 30)

// Context-command register.
#define DMA_CCMD_ICC (1ULL << 63)
#define DMA_CCMD_GLOBAL_INVL (1ULL << 61)
#define DMA_CCMD_DOMAIN_INVL (2ULL << 61)
#define DMA_CCMD_DID(d) ((u64)((d)&0xffff))

// IOTLB invalidate register.
#define DMA_TLB_IVT (1ULL << 63)
#define DMA_TLB_GLOBAL_FLUSH (1ULL << 60)
#define DMA_TLB_DSI_FLUSH (2ULL << 60)
#define DMA_TLB_DID(id) ((u64)((id)&0xffff) << 32)

// Fault status: primary pending fault.
#define DMA_FSTS_PPF (1U << 1)

// Capability fields.
#define cap_ndoms(c) (1UL << (4 + 2 * ((c)&0x7)))
#define cap_sagaw(c) (((c) >> 8) & 0x1f)
#define cap_mgaw(c) ((((c) >> 16) & 0x3f) + 1)
#define cap_super_page_val(c) (((c) >> 34) & 0xf)
#define ecap_iotlb_offset(e) ((((e) >> 8) & 0x3ff) * 16)
#define ecap_pass_through(e) (((e) >> 6) & 0x1)

// Page tables: 4 KiB pages of 512 eight-byte entries.
#define VTD_PAGE_SHIFT 12
#define VTD_PAGE_SIZE (1UL << VTD_PAGE_SHIFT)
#define VTD_PAGE_MASK (((u64)-1) << VTD_PAGE_SHIFT)
#define VTD_STRIDE_SHIFT 9
#define DMA_PTE_READ (1ULL << 0)
#define DMA_PTE_WRITE (1ULL << 1)
#define DMA_PTE_LARGE_PAGE (1ULL << 7)
// Bits 12..51 of a present entry: the next table or the page.
#define DMA_PTE_ADDR_MASK 0x000ffffffffff000ULL

// Address widths (context entry AW field, CAP.SAGAW bit numbers).
#define AGAW_39 1  // 3-level
#define AGAW_48 2  // 4-level
#define AGAW_57 3  // 5-level

// Root and context entries: 16 bytes each, {lo, hi}.
struct root_entry {
  u64 lo;  // bit 0 present; bits 12..63 context-table address
  u64 hi;
};
struct context_entry {
  u64 lo;  // bit 0 present; bits 3:2 translation type; bits 12..63 SLPTPTR
  u64 hi;  // bits 2:0 address width; bits 23:8 domain id
};
#define CONTEXT_TT_MULTI_LEVEL 0
#define CONTEXT_TT_PASS_THROUGH 2
#define ROOT_ENTRY_NR 256     // one per bus
#define CONTEXT_ENTRY_NR 256  // one per devfn

#endif  // KHOSIM_LINUX_INTEL_IOMMU_REGS_H_

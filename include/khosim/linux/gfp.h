// GFP flags understood by the simulated allocators (<linux/gfp_types.h>).
#ifndef KHOSIM_LINUX_GFP_H_
#define KHOSIM_LINUX_GFP_H_

typedef unsigned int gfp_t;

#define __GFP_MOVABLE 0x1u
#define __GFP_RECLAIMABLE 0x2u
#define __GFP_ZERO 0x4u
#define __GFP_COMP 0x8u
#define __GFP_THISNODE 0x10u
#define __GFP_NOWARN 0x20u
#define __GFP_NOFAIL 0x40u
#define __GFP_NORETRY 0x80u
#define __GFP_ACCOUNT 0x100u
#define __GFP_HIGHMEM 0x200u
#define __GFP_RECLAIM 0x400u
#define __GFP_IO 0x800u
#define __GFP_FS 0x1000u
#define __GFP_HARDWALL 0x2000u

#define GFP_NOWAIT 0u
#define GFP_ATOMIC (__GFP_NOWARN)
#define GFP_KERNEL (__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_KERNEL_ACCOUNT (GFP_KERNEL | __GFP_ACCOUNT)
#define GFP_USER (GFP_KERNEL | __GFP_HARDWALL)
#define GFP_HIGHUSER (GFP_USER | __GFP_HIGHMEM)
#define GFP_HIGHUSER_MOVABLE (GFP_HIGHUSER | __GFP_MOVABLE)

#endif  // KHOSIM_LINUX_GFP_H_

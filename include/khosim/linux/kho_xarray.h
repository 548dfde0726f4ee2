// Kernel-face KHO xarray API (a proposal: upstream has only an unposted
// draft with kho_xa_* names; see docs/kho-xarray.md). Return conventions
// are the kernel's: 0 / -errno, and 0 for "no entry" from the lookups,
// which the entry encoding makes unambiguous.
//
//   struct my_record { struct kho_xa_desc pages; ... };   // preserved blob
//   struct kho_xarray xa;
//   kho_xa_init(&xa, 54, &rec->pages);
//   kho_xa_store(&xa, pgoff, kho_xa_mk_phys(folio_phys(folio)));
//   ...                                   // kexec: nothing to serialize
//   kho_xa_restore(&xa, &rec->pages);     // next kernel, validates
//   kho_xa_for_each(&xa, index, entry) { ... }
//   kho_xa_destroy(&xa);                  // or kho_xa_adopt(&xa, new_desc)
#ifndef KHOSIM_LINUX_KHO_XARRAY_H_
#define KHOSIM_LINUX_KHO_XARRAY_H_

#include "khosim/abi/kho_xarray.h"
#include "khosim/kho/kho_xarray.h"
#include "khosim/linux/types.h"

struct kho_xarray : khosim::kho::KhoXarray {
  using KhoXarray::KhoXarray;
};

// The descriptor an owner embeds in its preserved record.
struct kho_xa_desc : khosim::abi::KhoXarrayDesc {};
static_assert(sizeof(struct kho_xa_desc) == 32);

#define KHO_XA_MAX_VALUE (khosim::abi::kKhoXarrayMaxValue)

// Entry words: tagged integers (bit 0 set) and even physical addresses.
// The constructors return 0, which kho_xa_store refuses, for what they
// cannot encode.
static inline u64 kho_xa_mk_value(u64 v) { return khosim::abi::KhoXarrayMakeValue(v); }
static inline bool kho_xa_is_value(u64 entry) { return khosim::abi::KhoXarrayIsValue(entry); }
static inline u64 kho_xa_to_value(u64 entry) { return khosim::abi::KhoXarrayToValue(entry); }
static inline u64 kho_xa_mk_phys(phys_addr_t pa) { return khosim::abi::KhoXarrayMakePhys(pa); }
static inline bool kho_xa_is_phys(u64 entry) { return khosim::abi::KhoXarrayIsPhys(entry); }
static inline phys_addr_t kho_xa_to_phys(u64 entry) { return khosim::abi::KhoXarrayToPhys(entry); }

// Outgoing. -EINVAL key_bits outside 1..64; -EBUSY the map holds nodes.
// |desc| (may be NULL) is kept current after every change.
int kho_xa_init(struct kho_xarray* xa, unsigned int key_bits, struct kho_xa_desc* desc);
// -EINVAL (uninitialized, incoming, entry 0), -ERANGE (index too wide),
// -ENOMEM with every node this call allocated freed again.
int kho_xa_store(struct kho_xarray* xa, u64 index, u64 entry);
// -EINVAL, -ERANGE, -ENOENT (nothing stored). Frees emptied nodes.
int kho_xa_erase(struct kho_xarray* xa, u64 index);
// Frees every node (unpreserve on the outgoing side, restore on the
// incoming side); the map stays initialized and empty.
void kho_xa_destroy(struct kho_xarray* xa);

// The entry at |index|, or 0.
u64 kho_xa_load(struct kho_xarray* xa, u64 index);
// The first entry at an index >= *index (find) or > *index (find_after),
// updating *index; 0 (and *index unchanged) if there is none.
u64 kho_xa_find(struct kho_xarray* xa, u64* index);
u64 kho_xa_find_after(struct kho_xarray* xa, u64* index);
u64 kho_xa_count(struct kho_xarray* xa);
// Copies the current descriptor (for owners that embed it at handover).
void kho_xa_get_desc(struct kho_xarray* xa, struct kho_xa_desc* desc);

// Incoming: validate the previous kernel's map (-EINVAL, nothing taken),
// then read it in place, kho_xa_destroy it, or adopt it as this kernel's
// outgoing map (-EINVAL not incoming, -ENOMEM undone).
int kho_xa_restore(struct kho_xarray* xa, const struct kho_xa_desc* desc);
int kho_xa_adopt(struct kho_xarray* xa, struct kho_xa_desc* desc);

// Ascending index order; safe against stores and erases in the body.
#define kho_xa_for_each_start(xa, index, entry, start)                    \
  for ((index) = (start), (entry) = kho_xa_find((xa), &(index)); (entry); \
       (entry) = kho_xa_find_after((xa), &(index)))
#define kho_xa_for_each(xa, index, entry) kho_xa_for_each_start(xa, index, entry, 0)

#endif  // KHOSIM_LINUX_KHO_XARRAY_H_

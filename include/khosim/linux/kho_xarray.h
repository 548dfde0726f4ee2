// Kernel-face KHO xarray API (a proposal: upstream has only an unposted
// draft with kho_xa_* names; see docs/kho-xarray.md). Return conventions
// are the kernel's: 0 / -errno, and 0 for "no entry" from the lookups,
// which the entry encoding makes unambiguous.
//
//   struct my_record { struct kho_xa_desc pages; ... };   // preserved blob
//   struct kho_xarray xa = {};                            // or kzalloc
//   kho_xa_init(&xa, 54, &rec->pages);
//   kho_xa_store(&xa, pgoff, kho_xa_mk_phys(folio_phys(folio)));
//   ...                                   // kexec: nothing to serialize
//   kho_xa_restore(&xa, &rec->pages);     // next kernel, validates
//   kho_xa_for_each(&xa, index, entry) { ... }
//   kho_xa_destroy(&xa);                  // or kho_xa_adopt(&xa, new_desc)
#ifndef KHOSIM_LINUX_KHO_XARRAY_H_
#define KHOSIM_LINUX_KHO_XARRAY_H_

#include "khosim/linux/kho/abi/xarray.h"
#include "khosim/linux/spinlock.h"
#include "khosim/linux/types.h"

// The map: a plain C handle, zero-initialized before use (a kzalloc'd or
// `= {}` struct is an unused map); nothing to free but its nodes
// (kho_xa_destroy). The descriptor is the map's state; |home|, when set,
// mirrors it into the owner's preserved record after every change.
// |generation| moves with every change, so a walk that drops the lock
// between steps can tell that it must look again. One spinlock serializes
// every call.
enum kho_xa_mode { KHO_XA_UNUSED, KHO_XA_OUTGOING, KHO_XA_INCOMING };

struct kho_xarray {
  // Aligned although the descriptor is a packed wire format, so that its
  // u64 fields can be read in place.
  struct kho_xa_desc desc __aligned(8) __guarded_by(lock);
  struct kho_xa_desc* home __guarded_by(lock);
  // The descriptor's shape, derived once per init or restore rather than
  // on every step of a walk: bits of index per node below the root, and at
  // the root.
  u8 slot_bits __guarded_by(lock);
  u8 root_bits __guarded_by(lock);
  u64 generation;  // atomic; written under lock
  spinlock_t lock;
  u8 mode __guarded_by(lock);  // enum kho_xa_mode
};

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

// The sparse memfd profile, "memfd-sparse-v1" (docs/memfd-sparse.md): the
// memfd handler with its folio array replaced by a KHO xarray that maps
// each populated page index to its folio. Userspace sees memfd-v2's
// behaviour (frozen mapping, seals, position as of freeze, a new unnamed
// memfd at retrieve, charge to the retriever); what changes is the cost:
//   - holes are not filled: only the folios in the page cache are pinned
//     and preserved, and the metadata is proportional to them;
//   - no size limit follows from a single allocation (no UINT_MAX pages);
//   - the record stays live: a page written into a hole after preserve
//     (through write(2) or a mapping fault) is preserved and stored in the
//     map as it is allocated, through the shmem preservation hook, and the
//     map's descriptor lives inside the record, so at kexec there is
//     nothing left to write.
// While preserved, the mapping allocates unmovable folios, so that a page
// faulted in later never lands in a CMA (KHO scratch) pageblock.
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "khosim/handlers/memfd_luo.h"
#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/memfd.h"
#include "khosim/linux/kho_xarray.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/linux/slab.h"
#include "memfd_common.h"

namespace {

static_assert(offsetof(struct memfd_sparse_ser, pos) == 0, "memfd_luo_freeze_pos writes it");

// Kernel A's private state for one preserved memfd (args->private_data).
struct memfd_sparse_state {
  struct kho_xarray xa;
  gfp_t saved_gfp;
};

// The narrowest key that holds every page index of a |size|-byte file
// (the mapping is frozen, so the size cannot grow while preserved).
unsigned int memfd_sparse_key_bits(loff_t size) {
  const u64 last_index = size <= 0 ? 0 : static_cast<u64>(size - 1) >> PAGE_SHIFT;
  return std::max(1U, static_cast<unsigned int>(std::bit_width(last_index)));
}

struct folio* memfd_sparse_entry_folio(u64 entry) {
  return pfn_folio(kho_xa_to_phys(entry) >> PAGE_SHIFT);
}

// Preserves one pinned folio and records it. On failure nothing of it is
// left preserved or recorded (the caller still holds its pin).
int memfd_sparse_add_folio(struct memfd_sparse_state* state, struct folio* folio) {
  int err = kho_preserve_folio(folio);
  if (err != 0) return err;
  err = kho_xa_store(&state->xa, folio_index(folio), kho_xa_mk_phys(folio_phys(folio)));
  if (err != 0) {
    kho_unpreserve_folio(folio);
    return err;
  }
  return 0;
}

// Unpreserves and unpins every recorded folio and frees the map's nodes.
void memfd_sparse_drop_folios(struct memfd_sparse_state* state) {
  u64 index = 0;
  u64 entry = 0;
  kho_xa_for_each(&state->xa, index, entry) {
    struct folio* folio = memfd_sparse_entry_folio(entry);
    kho_unpreserve_folio(folio);
    unpin_folio(folio);
  }
  kho_xa_destroy(&state->xa);
}

// The shmem hook: a folio allocated into a hole of the preserved file. It
// is new and zero-filled, so it can be handed over as uptodate whatever
// the write that allocated it does next.
int memfd_sparse_folio_added(struct inode* /*inode*/, struct folio* folio, void* data) {
  auto* state = static_cast<struct memfd_sparse_state*>(data);
  int err = try_grab_folio(folio, 1, FOLL_PIN);
  if (err != 0) return err;
  err = memfd_sparse_add_folio(state, folio);
  if (err != 0) {
    unpin_folio(folio);
    return err;
  }
  folio_mark_dirty(folio);
  return 0;
}

const struct shmem_luo_hook memfd_sparse_hook = {
    .folio_added = memfd_sparse_folio_added,
};

// Preserves, marks and records one pinned folio; on failure it is
// unpinned again and nothing of it is recorded.
int memfd_sparse_take_pinned(struct memfd_sparse_state* state, struct folio* folio) {
  if (int err = memfd_sparse_add_folio(state, folio); err != 0) {
    unpin_folio(folio);
    return err;
  }
  return memfd_luo_prepare_folio(folio, nullptr);
}

// Pins, preserves and records every folio in the page cache. The cached
// folios come a batch at a time; each run of index-contiguous ones is
// pinned with one memfd_pin_folios call over exactly that range, so no hole
// is ever allocated (the pin also moves a folio out of CMA first, which is
// why the pinned folios, not the cached ones, are recorded).
int memfd_sparse_preserve_folios(struct file* file, struct memfd_sparse_state* state) {
  struct address_space* mapping = file_inode(file)->i_mapping;
  const loff_t size = i_size_read(file_inode(file));
  struct folio_batch batch;
  struct folio* pinned[PAGEVEC_SIZE];
  pgoff_t start = 0;
  int err = 0;
  folio_batch_init(&batch);
  while (err == 0 && filemap_get_folios(mapping, &start, ULONG_MAX, &batch) != 0) {
    const unsigned int count = folio_batch_count(&batch);
    for (unsigned int first = 0; first < count && err == 0;) {
      // [first, last) is a run of cached folios with no hole between them.
      unsigned int last = first + 1;
      while (last < count &&
             folio_index(batch.folios[last]) ==
                 folio_index(batch.folios[last - 1]) + folio_nr_pages(batch.folios[last - 1])) {
        last++;
      }
      const loff_t pos = folio_pos(batch.folios[first]);
      const struct folio* tail = batch.folios[last - 1];
      const loff_t end =
          std::min<loff_t>(folio_pos(tail) + static_cast<loff_t>(folio_size(tail)), size) - 1;
      first = last;
      if (pos >= size) continue;
      pgoff_t offset = 0;
      const long n = memfd_pin_folios(file, pos, end, pinned, PAGEVEC_SIZE, &offset);
      if (n < 0) {
        err = static_cast<int>(n);
        break;
      }
      for (long i = 0; i < n; i++) {
        if (err != 0) {
          unpin_folio(pinned[i]);  // pinned, but not taken before the failure
          continue;
        }
        err = memfd_sparse_take_pinned(state, pinned[i]);
      }
    }
    folio_batch_release(&batch);
  }
  if (err != 0) memfd_sparse_drop_folios(state);
  return err;
}

int memfd_sparse_preserve(struct liveupdate_file_op_args* args) {
  struct file* file = args->file;
  struct address_space* mapping = file_inode(file)->i_mapping;
  u32 seals = 0;
  auto* ser = static_cast<struct memfd_sparse_ser*>(
      memfd_luo_preserve_begin(file, sizeof(struct memfd_sparse_ser), &seals));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));
  auto* state = static_cast<struct memfd_sparse_state*>(
      kzalloc(sizeof(struct memfd_sparse_state), GFP_KERNEL));
  if (state == nullptr) return memfd_luo_preserve_end(file, ser, -ENOMEM);
  const loff_t size = i_size_read(file_inode(file));
  int err = kho_xa_init(&state->xa, memfd_sparse_key_bits(size), &ser->folios);
  if (err != 0) {
    kfree(state);
    return memfd_luo_preserve_end(file, ser, err);
  }
  ser->pos = static_cast<u64>(file->f_pos);
  ser->size = static_cast<u64>(size);
  ser->seals = seals;
  ser->flags = 0;
  ser->reserved = 0;

  state->saved_gfp = mapping_gfp_mask(mapping);
  mapping_set_gfp_mask(mapping, state->saved_gfp & ~__GFP_MOVABLE);
  err = memfd_sparse_preserve_folios(file, state);
  if (err != 0) {
    mapping_set_gfp_mask(mapping, state->saved_gfp);
    kfree(state);
    return memfd_luo_preserve_end(file, ser, err);
  }
  shmem_set_luo_hook(file_inode(file), &memfd_sparse_hook, state);
  args->private_data = state;
  args->serialized_data = virt_to_phys(ser);
  return memfd_luo_preserve_end(file, ser, 0);
}

void memfd_sparse_unpreserve(struct liveupdate_file_op_args* args) {
  if (WARN_ON_ONCE(args->serialized_data == 0)) return;
  struct inode* inode = file_inode(args->file);
  auto* state = static_cast<struct memfd_sparse_state*>(args->private_data);
  memfd_luo_unpreserve_begin(args->file);
  shmem_set_luo_hook(inode, nullptr, nullptr);
  mapping_set_gfp_mask(inode->i_mapping, state->saved_gfp);
  memfd_sparse_drop_folios(state);
  kfree(state);
  memfd_luo_unpreserve_end(args->file, phys_to_virt(args->serialized_data));
}

// Restores and puts every folio at an index >= |from| (the ones a failed
// retrieve did not reach, or all of them at finish).
void memfd_sparse_discard_folios(struct kho_xarray* xa, u64 from) {
  u64 index = 0;
  u64 entry = 0;
  kho_xa_for_each_start(xa, index, entry, from) {
    if (kho_xa_is_phys(entry)) memfd_luo_discard_folio(kho_xa_to_phys(entry));
  }
}

int memfd_sparse_retrieve_folios(struct file* file, struct kho_xarray* xa) {
  long nr_added_pages = 0;
  u64 index = 0;
  u64 entry = 0;
  int err = 0;
  kho_xa_for_each(xa, index, entry) {
    if (!kho_xa_is_phys(entry)) {
      err = -EINVAL;
      break;
    }
    struct folio* folio = kho_restore_folio(kho_xa_to_phys(entry));
    if (folio == nullptr) {
      err = -EIO;
      break;
    }
    // Every preserved folio was handed over dirty and uptodate.
    err = memfd_luo_insert_folio(file, folio, index, /*uptodate=*/true, /*dirty=*/true,
                                 &nr_added_pages);
    if (err != 0) break;
  }
  // Folios already in the file go with it; the ones not reached are put.
  if (err != 0 && index != ~u64{0}) memfd_sparse_discard_folios(xa, index + 1);
  shmem_recalc_inode(file_inode(file), nr_added_pages, 0);
  return err;
}

int memfd_sparse_retrieve(struct liveupdate_file_op_args* args) {
  auto* ser = static_cast<struct memfd_sparse_ser*>(phys_to_virt(args->serialized_data));
  struct file* file = nullptr;
  struct kho_xarray xa = {};
  int err = 0;
  if (ser == nullptr) return -EINVAL;

  if ((ser->seals & ~static_cast<u32>(MEMFD_LUO_ALL_SEALS)) != 0 || ser->flags != 0) {
    err = -EOPNOTSUPP;
    goto free_ser;
  }
  file = memfd_luo_new_file(ser->seals, ser->pos, ser->size);
  if (IS_ERR(file)) {
    err = static_cast<int>(PTR_ERR(file));
    goto free_ser;
  }

  // A map that does not validate names pages this kernel cannot trust: it
  // takes none of them.
  err = kho_xa_restore(&xa, &ser->folios);
  if (err != 0) goto put_file;
  err = memfd_sparse_retrieve_folios(file, &xa);
  kho_xa_destroy(&xa);
  if (err != 0) goto put_file;

  args->file = file;
  kho_restore_free(ser);
  return 0;

put_file:
  fput(file);
free_ser:
  kho_restore_free(ser);
  return err;
}

void memfd_sparse_finish(struct liveupdate_file_op_args* args) {
  if (args->retrieve_status != 0) return;
  auto* ser = static_cast<struct memfd_sparse_ser*>(phys_to_virt(args->serialized_data));
  if (ser == nullptr) return;
  struct kho_xarray xa = {};
  if (kho_xa_restore(&xa, &ser->folios) == 0) {
    memfd_sparse_discard_folios(&xa, 0);
    kho_xa_destroy(&xa);
  }
  kho_restore_free(ser);
}

bool memfd_sparse_can_preserve(struct liveupdate_file_handler* /*handler*/, struct file* file) {
  return memfd_luo_can_preserve_file(file);
}

const struct liveupdate_file_ops memfd_sparse_file_ops = {
    .can_preserve = memfd_sparse_can_preserve,
    .preserve = memfd_sparse_preserve,
    .unpreserve = memfd_sparse_unpreserve,
    .freeze = memfd_luo_freeze_pos,
    .unfreeze = nullptr,
    .retrieve = memfd_sparse_retrieve,
    .can_finish = nullptr,
    .finish = memfd_sparse_finish,
    .get_id = memfd_luo_inode_id,
    .owner = nullptr,
};

struct liveupdate_file_handler memfd_sparse_handler = {
    .ops = &memfd_sparse_file_ops,
    .compatible = MEMFD_SPARSE_FH_COMPATIBLE,
};

}  // namespace

int memfd_sparse_luo_init(void) {
  return memfd_luo_register_handler(&memfd_sparse_handler, "memfd_sparse");
}

void memfd_sparse_luo_exit(void) { liveupdate_unregister_file_handler(&memfd_sparse_handler); }

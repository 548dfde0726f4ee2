// hugetlb memfd preservation across a live update: the "hugemfd-v1" file
// handler and the "hugetlb-v1" FLB (khosim's proposal after the hugetlb
// RFC; docs/hugetlb-luo.md), written against the kernel face only.
//
// Outgoing kernel:
//   FLB preserve   (first hugemfd file) allocate the per-hstate counts in
//                  preserved memory, one zero entry per hstate.
//   preserve       inode lock; freeze the mapping (truncate, fallocate and
//                  punch give -EPERM from now on); check the seals; pin
//                  every huge folio of the size (holes are filled from the
//                  pool, as memfd_pin_folios does for hugetlbfs: -ENOSPC
//                  when the pool is short) and preserve each with its
//                  order (an order-18 block for a 1 GiB page); write the
//                  folio array into a preserved vmalloc area; add the
//                  folios to the FLB's count for the file's order.
//   freeze         refresh the position.
//   unpreserve     the reverse of preserve, counts included.
//   FLB unpreserve (last file) free the counts.
// Incoming kernel:
//   early boot     hugetlb_luo_early_init() reads the counts, before the
//                  pools are filled, so each pool allocates that many fewer
//                  pages: the preserved folios are the rest of the pool.
//   retrieve       a new unnamed MFD_HUGETLB memfd of the record's page
//                  size with seals, position and size; every folio restored
//                  with its order, made a pool folio in use, charged to the
//                  retriever and put at its index. On any failure nothing
//                  is lost to the pool: the folios already in the new file
//                  return to it with the file, the others are restored and
//                  returned here.
//   finish         (a file never retrieved) restore every folio and return
//                  it to the pool.
//   FLB retrieve / finish: take and free the counts' page.
//
// Kernel A updates the counts through a pointer the FLB callbacks set and
// clear, not through liveupdate_flb_get_outgoing(): LUO runs the FLB's
// preserve before the first file's preserve and its unpreserve after the
// last file's unpreserve, so the pointer is valid whenever a file callback
// runs, and the handler works on the 7.2 FLB API (no outgoing references)
// as well as on 7.3.
#include "khosim/handlers/hugetlb_luo.h"

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/hugetlb.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/hugetlb.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/vmalloc.h"
#include "memfd_common.h"

namespace {

static_assert(offsetof(struct hugemfd_luo_ser, pos) == 0, "memfd_luo_freeze_pos writes it");

// ---- The FLB ---------------------------------------------------------------

// Kernel A's counts while at least one hugemfd file is preserved.
struct hugetlb_flb_ser* hugetlb_flb_out;

int hugetlb_flb_preserve(struct liveupdate_flb_op_args* args) {
  auto* ser =
      static_cast<struct hugetlb_flb_ser*>(kho_alloc_preserve(sizeof(struct hugetlb_flb_ser)));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));
  unsigned int n = hugetlb_max_hstate();
  if (WARN_ON_ONCE(n > HUGETLB_FLB_MAX_HSTATES)) n = HUGETLB_FLB_MAX_HSTATES;
  ser->nr_hstates = n;
  for (unsigned int i = 0; i < n; i++) ser->hstates[i].order = hstate_index_order(i);
  hugetlb_flb_out = ser;
  args->obj = ser;
  args->data = virt_to_phys(ser);
  return 0;
}

void hugetlb_flb_unpreserve(struct liveupdate_flb_op_args* args) {
  hugetlb_flb_out = nullptr;
  kho_unpreserve_free(args->obj);
}

int hugetlb_flb_retrieve(struct liveupdate_flb_op_args* args) {
  if (args->data == 0) return -EINVAL;
  args->obj = phys_to_virt(args->data);
  return 0;
}

void hugetlb_flb_finish(struct liveupdate_flb_op_args* args) { kho_restore_free(args->obj); }

const struct liveupdate_flb_ops hugetlb_flb_ops = {
    .preserve = hugetlb_flb_preserve,
    .unpreserve = hugetlb_flb_unpreserve,
    .retrieve = hugetlb_flb_retrieve,
    .finish = hugetlb_flb_finish,
    .owner = nullptr,  // built in
};

struct liveupdate_flb hugetlb_flb = {
    .ops = &hugetlb_flb_ops,
    .compatible = HUGETLB_FLB_COMPATIBLE,
};

void hugetlb_flb_account(unsigned int order, long nr_pages) {
  struct hugetlb_flb_ser* ser = hugetlb_flb_out;
  if (WARN_ON_ONCE(ser == nullptr)) return;
  for (u32 i = 0; i < ser->nr_hstates; i++) {
    if (ser->hstates[i].order == order) {
      __atomic_fetch_add(&ser->hstates[i].nr_pages, static_cast<u64>(nr_pages), __ATOMIC_RELAXED);
      return;
    }
  }
  WARN_ON_ONCE(1);  // a hugetlbfs file of no hstate's order
}

// ---- Outgoing --------------------------------------------------------------

// hugemfd-v1's per-folio step: the folio must be a pool folio of the
// file's order. Pool folios are zeroed when allocated, so always uptodate;
// they are handed over dirty, as memfd-v2 does, since a mapping can still
// write them.
int hugemfd_luo_prepare_folio(struct folio* folio, void* arg) {
  const unsigned int order = *static_cast<const unsigned int*>(arg);
  if (WARN_ON_ONCE(!folio_test_hugetlb(folio) || folio_order(folio) != order)) return -EINVAL;
  folio_mark_dirty(folio);
  return 0;
}

int hugemfd_luo_preserve(struct liveupdate_file_op_args* args) {
  struct file* file = args->file;
  u32 seals = 0;
  auto* ser = static_cast<struct hugemfd_luo_ser*>(
      memfd_luo_preserve_begin(file, sizeof(struct hugemfd_luo_ser), &seals));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));

  unsigned int order = hugetlb_file_order(file);
  const u64 size = static_cast<u64>(i_size_read(file_inode(file)));
  ser->pos = static_cast<u64>(file->f_pos);
  ser->size = size;
  ser->seals = seals;
  ser->order = order;
  // One block per folio, of the folio's order: 2^18 pages for a 1 GiB
  // page. hugetlbfs sizes are whole huge pages: the count is exact.
  struct memfd_luo_folio_ser* folios_ser = nullptr;
  u64 nr_folios = 0;
  const int err = memfd_luo_preserve_folio_array(
      file, static_cast<unsigned int>(size >> (PAGE_SHIFT + order)), hugemfd_luo_prepare_folio,
      &order, "hugemfd_luo", &ser->folios, &folios_ser, &nr_folios);
  if (err != 0) return memfd_luo_preserve_end(file, ser, err);
  ser->nr_folios = nr_folios;
  hugetlb_flb_account(order, static_cast<long>(nr_folios));
  args->private_data = folios_ser;
  args->serialized_data = virt_to_phys(ser);
  return memfd_luo_preserve_end(file, ser, 0);
}

void hugemfd_luo_unpreserve(struct liveupdate_file_op_args* args) {
  if (WARN_ON_ONCE(args->serialized_data == 0)) return;
  memfd_luo_unpreserve_begin(args->file);
  auto* ser = static_cast<struct hugemfd_luo_ser*>(phys_to_virt(args->serialized_data));
  hugetlb_flb_account(ser->order, -static_cast<long>(ser->nr_folios));
  memfd_luo_unpreserve_folio_array(
      &ser->folios, static_cast<const struct memfd_luo_folio_ser*>(args->private_data),
      ser->nr_folios);
  memfd_luo_unpreserve_end(args->file, ser);
}

// ---- Incoming --------------------------------------------------------------

// A preserved huge folio nobody will use goes back to the pool: restored,
// made a pool folio, and put.
void hugemfd_luo_release_folio(phys_addr_t phys) {
  struct folio* folio = kho_restore_folio(phys);
  if (folio == nullptr) {
    pr_warn("hugemfd_luo: unable to restore folio at physical address 0x%llx",
            static_cast<unsigned long long>(phys));
    return;
  }
  hugetlb_luo_adopt_folio(folio);
  folio_put(folio);
}

void hugemfd_luo_release_folios(const struct memfd_luo_folio_ser* folios_ser, u64 nr_folios) {
  for (u64 i = 0; i < nr_folios; i++) hugemfd_luo_release_folio(PFN_PHYS(folios_ser[i].pfn));
}

// Moves one restored pool folio (one reference) into |file| at |index|.
// On failure the folio is back in the pool.
int hugemfd_luo_insert_folio(struct file* file, struct folio* folio, pgoff_t index,
                             unsigned int flags) {
  struct address_space* mapping = file_inode(file)->i_mapping;
  __folio_set_locked(folio);
  // The retriever pays for the memory from now on.
  int err = mem_cgroup_charge_hugetlb(folio, mapping_gfp_mask(mapping));
  if (err != 0) {
    pr_err("hugemfd_luo: failed to charge folio at index %lu: %d", index, err);
    goto unlock_folio;
  }
  err = hugetlb_add_to_page_cache(folio, mapping, index);
  if (err != 0) {
    pr_err("hugemfd_luo: failed to add folio at index %lu to the page cache: %d", index, err);
    mem_cgroup_uncharge(folio);
    goto unlock_folio;
  }
  if ((flags & MEMFD_LUO_FOLIO_UPTODATE) != 0) folio_mark_uptodate(folio);
  if ((flags & MEMFD_LUO_FOLIO_DIRTY) != 0) folio_mark_dirty(folio);
unlock_folio:
  folio_unlock(folio);
  folio_put(folio);
  return err;
}

int hugemfd_luo_retrieve_folios(struct file* file, unsigned int order,
                                const struct memfd_luo_folio_ser* folios_ser, u64 nr_folios) {
  int err = 0;
  u64 i = 0;
  for (; i < nr_folios; i++) {
    const phys_addr_t phys = PFN_PHYS(folios_ser[i].pfn);
    struct folio* folio = kho_restore_folio(phys);
    if (folio == nullptr) {
      pr_err("hugemfd_luo: unable to restore folio at physical address 0x%llx",
             static_cast<unsigned long long>(phys));
      err = -EIO;
      i++;
      break;
    }
    if (folio_order(folio) != order) {
      pr_err("hugemfd_luo: folio at 0x%llx has order %u, the file's pages %u",
             static_cast<unsigned long long>(phys), folio_order(folio), order);
      folio_put(folio);  // not a pool folio: back to the buddy allocator
      err = -EINVAL;
      i++;
      break;
    }
    hugetlb_luo_adopt_folio(folio);
    err = hugemfd_luo_insert_folio(file, folio, folios_ser[i].index,
                                   static_cast<unsigned int>(folios_ser[i].flags));
    if (err != 0) {
      i++;
      break;
    }
  }
  // The folios not reached go back to the pool; those in the file go with
  // it when the caller drops it.
  if (err != 0) hugemfd_luo_release_folios(folios_ser + i, nr_folios - i);
  return err;
}

int hugemfd_luo_retrieve(struct liveupdate_file_op_args* args) {
  auto* ser = static_cast<struct hugemfd_luo_ser*>(phys_to_virt(args->serialized_data));
  struct memfd_luo_folio_ser* folios_ser = nullptr;
  struct file* file = nullptr;
  int err = 0;
  if (ser == nullptr) return -EINVAL;

  if (ser->nr_folios != 0) {
    folios_ser = memfd_luo_restore_folio_array(&ser->folios, ser->nr_folios, "hugemfd_luo");
    if (folios_ser == nullptr) {
      // The folios cannot be found any more: they stay reserved.
      err = -EINVAL;
      goto free_ser;
    }
  }
  if ((ser->seals & ~static_cast<u32>(MEMFD_LUO_ALL_SEALS)) != 0) {
    err = -EOPNOTSUPP;
    goto release_folios;
  }
  // hugetlb_file_setup: -ENODEV when this kernel has no hstate of the
  // record's page size registered (no hugepagesz= for it).
  file = memfd_alloc_file(
      "", MFD_HUGETLB | MFD_ALLOW_SEALING | ((ser->order + PAGE_SHIFT) << MFD_HUGE_SHIFT));
  if (IS_ERR(file)) {
    err = static_cast<int>(PTR_ERR(file));
    pr_err("hugemfd_luo: failed to set up the file: %d", err);
    goto release_folios;
  }
  if (hugetlb_file_order(file) != ser->order) {
    err = -EINVAL;
    goto put_file_release;
  }
  err = memfd_add_seals(file, ser->seals);
  if (err != 0) {
    pr_err("hugemfd_luo: failed to add seals: %d", err);
    goto put_file_release;
  }
  vfs_setpos(file, static_cast<loff_t>(ser->pos), MAX_LFS_FILESIZE);
  i_size_write(file_inode(file), static_cast<loff_t>(ser->size));

  err = hugemfd_luo_retrieve_folios(file, ser->order, folios_ser, ser->nr_folios);
  vfree(folios_ser);
  if (err != 0) {
    fput(file);
    goto free_ser;
  }
  args->file = file;
  kho_restore_free(ser);
  return 0;

put_file_release:
  fput(file);
release_folios:
  hugemfd_luo_release_folios(folios_ser, folios_ser == nullptr ? 0 : ser->nr_folios);
  vfree(folios_ser);
free_ser:
  kho_restore_free(ser);
  return err;
}

void hugemfd_luo_finish(struct liveupdate_file_op_args* args) {
  // A retrieve, successful or not, took care of every folio it could.
  if (args->retrieve_status != 0) return;
  auto* ser = static_cast<struct hugemfd_luo_ser*>(phys_to_virt(args->serialized_data));
  if (ser == nullptr) return;
  memfd_luo_release_folio_array(&ser->folios, ser->nr_folios, hugemfd_luo_release_folio,
                                "hugemfd_luo finish");
  kho_restore_free(ser);
}

bool hugemfd_luo_can_preserve(struct liveupdate_file_handler* /*handler*/, struct file* file) {
  return is_file_hugepages(file) && file_inode(file)->i_nlink == 0;
}

const struct liveupdate_file_ops hugemfd_luo_file_ops = {
    .can_preserve = hugemfd_luo_can_preserve,
    .preserve = hugemfd_luo_preserve,
    .unpreserve = hugemfd_luo_unpreserve,
    .freeze = memfd_luo_freeze_pos,
    .unfreeze = nullptr,
    .retrieve = hugemfd_luo_retrieve,
    .can_finish = nullptr,
    .finish = hugemfd_luo_finish,
    .get_id = memfd_luo_inode_id,
    .owner = nullptr,  // built in
};

struct liveupdate_file_handler hugemfd_luo_handler = {
    .ops = &hugemfd_luo_file_ops,
    .compatible = HUGEMFD_LUO_FH_COMPATIBLE,
};

}  // namespace

void hugetlb_luo_early_init(void) {
  u64 data = 0;
  const int err = liveupdate_flb_incoming_data_early(&hugetlb_flb, &data);
  if (err == -EOPNOTSUPP || err == -ENOENT) return;  // nothing was handed over
  if (err != 0 || data == 0) {
    pr_err("hugetlb_luo: unreadable hugetlb FLB record: %d", err);
    return;
  }
  const auto* ser = static_cast<const struct hugetlb_flb_ser*>(phys_to_virt(data));
  if (ser->nr_hstates > HUGETLB_FLB_MAX_HSTATES) {
    pr_err("hugetlb_luo: hugetlb FLB record with %u hstates", ser->nr_hstates);
    return;
  }
  for (u32 i = 0; i < ser->nr_hstates; i++) {
    if (ser->hstates[i].nr_pages == 0) continue;
    pr_info("hugetlb_luo: %llu preserved pages of order %u",
            static_cast<unsigned long long>(ser->hstates[i].nr_pages), ser->hstates[i].order);
    hugetlb_luo_set_preserved(ser->hstates[i].order, ser->hstates[i].nr_pages);
  }
}

int hugetlb_luo_init(void) {
  int err = liveupdate_register_file_handler(&hugemfd_luo_handler);
  if (err == -EOPNOTSUPP) return 0;
  if (err != 0) {
    pr_err("hugetlb_luo: could not register the file handler: %d", err);
    return err;
  }
  err = liveupdate_register_flb(&hugemfd_luo_handler, &hugetlb_flb);
  if (err != 0) {
    pr_err("hugetlb_luo: could not register the FLB: %d", err);
    liveupdate_unregister_file_handler(&hugemfd_luo_handler);
    return err;
  }
  return 0;
}

void hugetlb_luo_exit(void) {
  liveupdate_unregister_flb(&hugemfd_luo_handler, &hugetlb_flb);
  liveupdate_unregister_file_handler(&hugemfd_luo_handler);
}

// memfd preservation across a live update: the "memfd-v2" file handler
// (mm/memfd_luo.c), written against the kernel face only so that it reads
// as, and ports back to, kernel C.
//
// Outgoing kernel:
//   preserve    inode lock; freeze the mapping (no grow, shrink or punch);
//               allocate the record in preserved memory; check the seals
//               (-EOPNOTSUPP) and the size (-EFBIG above UINT_MAX pages);
//               pin every folio of the size, allocating the holes; preserve
//               each folio, mark it dirty and zero it if not uptodate;
//               write the folio array into a vmalloc area and preserve it.
//               Any failure undoes exactly what was done and unfreezes.
//   freeze      refresh the position (the only field that may still move).
//   unpreserve  unfreeze, unpreserve the array and every folio, unpin,
//               free the record.
// Incoming kernel:
//   retrieve    check the seals again; create an unnamed memfd that allows
//               sealing and re-apply the seals; restore position and size;
//               restore the array and move every folio into the new page
//               cache, charged to the retriever. The record is freed on
//               success and on failure; on failure the folios already in
//               the file go with it and the rest are put.
//   finish      only for a file never retrieved: restore and put every
//               folio, which discards the data.
//
// The record layout is khosim/linux/kho/abi/memfd.h.
#include "khosim/handlers/memfd_luo.h"

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/memfd.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/vmalloc.h"
#include "memfd_common.h"

namespace {

static_assert(offsetof(struct memfd_luo_ser, pos) == 0, "memfd_luo_freeze_pos writes it");

int memfd_luo_preserve(struct liveupdate_file_op_args* args) {
  struct file* file = args->file;
  u32 seals = 0;
  auto* ser = static_cast<struct memfd_luo_ser*>(
      memfd_luo_preserve_begin(file, sizeof(struct memfd_luo_ser), &seals));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));

  struct memfd_luo_folio_ser* folios_ser = nullptr;
  const u64 inode_size = static_cast<u64>(i_size_read(file_inode(file)));
  const u64 max_folios = (inode_size + PAGE_SIZE - 1) / PAGE_SIZE;
  ser->pos = static_cast<u64>(file->f_pos);
  // memfd_pin_folios counts folios in an unsigned int: a larger file would
  // be preserved only in part.
  if (max_folios > UINT_MAX) return memfd_luo_preserve_end(file, ser, -EFBIG);
  ser->size = inode_size;
  ser->seals = seals;
  // An upper bound: large folios make the real count smaller.
  u64 nr_folios = 0;
  int err = memfd_luo_preserve_folio_array(file, static_cast<unsigned int>(max_folios),
                                           memfd_luo_prepare_folio, nullptr, "memfd_luo",
                                           &ser->folios, &folios_ser, &nr_folios);
  if (err != 0) return memfd_luo_preserve_end(file, ser, err);
  ser->nr_folios = nr_folios;
  args->private_data = folios_ser;
  args->serialized_data = virt_to_phys(ser);
  return memfd_luo_preserve_end(file, ser, 0);
}

void memfd_luo_unpreserve(struct liveupdate_file_op_args* args) {
  if (WARN_ON_ONCE(args->serialized_data == 0)) return;
  memfd_luo_unpreserve_begin(args->file);
  auto* ser = static_cast<struct memfd_luo_ser*>(phys_to_virt(args->serialized_data));
  memfd_luo_unpreserve_folio_array(
      &ser->folios, static_cast<const struct memfd_luo_folio_ser*>(args->private_data),
      ser->nr_folios);
  memfd_luo_unpreserve_end(args->file, ser);
}

void memfd_luo_discard_folios(const struct memfd_luo_folio_ser* folios_ser, u64 nr_folios) {
  for (u64 i = 0; i < nr_folios; i++) {
    if (folios_ser[i].pfn != 0) memfd_luo_discard_folio(PFN_PHYS(folios_ser[i].pfn));
  }
}

void memfd_luo_finish(struct liveupdate_file_op_args* args) {
  // A retrieve that succeeded handed everything to the new file; one that
  // failed cleaned up what it could. Only a file never retrieved is left.
  if (args->retrieve_status != 0) return;
  auto* ser = static_cast<struct memfd_luo_ser*>(phys_to_virt(args->serialized_data));
  if (ser == nullptr) return;
  memfd_luo_release_folio_array(&ser->folios, ser->nr_folios, memfd_luo_discard_folio,
                                "memfd_luo finish");
  kho_restore_free(ser);
}

int memfd_luo_retrieve_folios(struct file* file, const struct memfd_luo_folio_ser* folios_ser,
                              u64 nr_folios) {
  long nr_added_pages = 0;
  int err = 0;
  u64 i = 0;
  for (; i < nr_folios && err == 0; i++) {
    const struct memfd_luo_folio_ser* pfolio = &folios_ser[i];
    if (pfolio->pfn == 0) continue;
    const phys_addr_t phys = PFN_PHYS(pfolio->pfn);
    struct folio* folio = kho_restore_folio(phys);
    if (folio == nullptr) {
      pr_err("memfd_luo: unable to restore folio at physical address 0x%llx",
             static_cast<unsigned long long>(phys));
      err = -EIO;
      i++;
      break;
    }
    const unsigned int flags = static_cast<unsigned int>(pfolio->flags);
    err =
        memfd_luo_insert_folio(file, folio, pfolio->index, (flags & MEMFD_LUO_FOLIO_UPTODATE) != 0,
                               (flags & MEMFD_LUO_FOLIO_DIRTY) != 0, &nr_added_pages);
  }
  // On failure i is past the failed record: folios already in the file go
  // when the file goes; the ones not yet reached are put here.
  if (err != 0) memfd_luo_discard_folios(folios_ser + i, nr_folios - i);
  shmem_recalc_inode(file_inode(file), nr_added_pages, 0);
  return err;
}

int memfd_luo_retrieve(struct liveupdate_file_op_args* args) {
  auto* ser = static_cast<struct memfd_luo_ser*>(phys_to_virt(args->serialized_data));
  struct file* file = nullptr;
  int err = 0;
  if (ser == nullptr) return -EINVAL;

  if ((ser->seals & ~static_cast<u32>(MEMFD_LUO_ALL_SEALS)) != 0) {
    err = -EOPNOTSUPP;
    goto free_ser;
  }
  file = memfd_luo_new_file(ser->seals, ser->pos, ser->size);
  if (IS_ERR(file)) {
    err = static_cast<int>(PTR_ERR(file));
    goto free_ser;
  }

  if (ser->nr_folios != 0) {
    auto* folios_ser = static_cast<struct memfd_luo_folio_ser*>(kho_restore_vmalloc(&ser->folios));
    if (folios_ser == nullptr) {
      err = -EINVAL;
      goto put_file;
    }
    if (!memfd_luo_folio_array_fits(&ser->folios, ser->nr_folios)) {
      // Where upstream oopses; the new file is let go first, so that the
      // panic leaves nothing of the host behind.
      vfree(folios_ser);
      fput(file);
      memfd_luo_folio_oops("memfd_luo retrieve", &ser->folios, ser->nr_folios);
    }
    err = memfd_luo_retrieve_folios(file, folios_ser, ser->nr_folios);
    vfree(folios_ser);
    if (err != 0) goto put_file;
  }

  args->file = file;
  kho_restore_free(ser);
  return 0;

put_file:
  fput(file);
free_ser:
  kho_restore_free(ser);
  return err;
}

bool memfd_luo_can_preserve(struct liveupdate_file_handler* /*handler*/, struct file* file) {
  return memfd_luo_can_preserve_file(file);
}

const struct liveupdate_file_ops memfd_luo_file_ops = {
    .can_preserve = memfd_luo_can_preserve,
    .preserve = memfd_luo_preserve,
    .unpreserve = memfd_luo_unpreserve,
    .freeze = memfd_luo_freeze_pos,
    .unfreeze = nullptr,
    .retrieve = memfd_luo_retrieve,
    .can_finish = nullptr,
    .finish = memfd_luo_finish,
    .get_id = memfd_luo_inode_id,
    .owner = nullptr,  // built in
};

struct liveupdate_file_handler memfd_luo_handler = {
    .ops = &memfd_luo_file_ops,
    .compatible = MEMFD_LUO_FH_COMPATIBLE,
};

}  // namespace

int memfd_luo_init(void) { return memfd_luo_register_handler(&memfd_luo_handler, "memfd_luo"); }

void memfd_luo_exit(void) { liveupdate_unregister_file_handler(&memfd_luo_handler); }

// Shared by the memfd handler profiles; see memfd_common.h.
#include "memfd_common.h"

#include <cerrno>
#include <cstring>

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/shmem_fs.h"
#include "khosim/linux/slab.h"
#include "khosim/linux/vmalloc.h"

int memfd_luo_get_seals(struct file* file, u32* sealsp) {
  const int seals = memfd_get_seals(file);
  if (seals < 0) return seals;
  if ((static_cast<u32>(seals) & ~static_cast<u32>(MEMFD_LUO_ALL_SEALS)) != 0) return -EOPNOTSUPP;
  *sealsp = static_cast<u32>(seals);
  return 0;
}

void* memfd_luo_preserve_begin(struct file* file, size_t ser_size, u32* sealsp) {
  struct inode* inode = file_inode(file);
  inode_lock(inode);
  shmem_freeze(inode, true);
  void* ser = kho_alloc_preserve(ser_size);
  if (IS_ERR(ser)) {
    shmem_freeze(inode, false);
    inode_unlock(inode);
    return ser;
  }
  if (const int err = memfd_luo_get_seals(file, sealsp); err != 0) {
    kho_unpreserve_free(ser);
    shmem_freeze(inode, false);
    inode_unlock(inode);
    return ERR_PTR(err);
  }
  return ser;
}

int memfd_luo_preserve_end(struct file* file, void* ser, int err) {
  struct inode* inode = file_inode(file);
  if (err != 0) {
    kho_unpreserve_free(ser);
    shmem_freeze(inode, false);
  }
  inode_unlock(inode);
  return err;
}

void memfd_luo_unpreserve_begin(struct file* file) {
  struct inode* inode = file_inode(file);
  inode_lock(inode);
  shmem_freeze(inode, false);
}

void memfd_luo_unpreserve_end(struct file* file, void* ser) {
  kho_unpreserve_free(ser);
  inode_unlock(file_inode(file));
}

int memfd_luo_freeze_pos(struct liveupdate_file_op_args* args) {
  if (WARN_ON_ONCE(args->serialized_data == 0)) return -EINVAL;
  auto* pos = static_cast<u64*>(phys_to_virt(args->serialized_data));
  // Everything else is frozen since preserve; the position is not.
  *pos = static_cast<u64>(args->file->f_pos);
  return 0;
}

int memfd_luo_prepare_folio(struct folio* folio, void* /*arg*/) {
  folio_lock(folio);
  folio_mark_dirty(folio);
  if (!folio_test_uptodate(folio)) {
    folio_zero_range(folio, 0, folio_size(folio));
    flush_dcache_folio(folio);
    folio_mark_uptodate(folio);
  }
  folio_unlock(folio);
  return 0;
}

int memfd_luo_preserve_folio_array(struct file* file, unsigned int max_folios,
                                   memfd_luo_prepare_fn prepare, void* arg, const char* who,
                                   struct kho_vmalloc* kho_vmalloc,
                                   struct memfd_luo_folio_ser** out, u64* nr) {
  const loff_t size = i_size_read(file_inode(file));
  *nr = 0;
  *out = nullptr;
  if (size == 0) {
    std::memset(static_cast<void*>(kho_vmalloc), 0, sizeof(*kho_vmalloc));
    return 0;
  }
  auto** folios =
      static_cast<struct folio**>(kvmalloc_array(max_folios, sizeof(struct folio*), GFP_KERNEL));
  if (folios == nullptr) return -ENOMEM;

  // Long-term pins keep the folios where they are (and out of CMA, so out
  // of the scratch areas). Pinning allocates every hole: a sparse file
  // costs its full size.
  pgoff_t offset = 0;
  const long nr_pinned = memfd_pin_folios(file, 0, size - 1, folios, max_folios, &offset);
  if (nr_pinned < 0) {
    pr_err("%s: failed to pin folios: %ld", who, nr_pinned);
    kvfree(folios);
    return static_cast<int>(nr_pinned);
  }
  const u64 nr_folios = static_cast<u64>(nr_pinned);
  auto* folios_ser = static_cast<struct memfd_luo_folio_ser*>(
      vcalloc(nr_folios, sizeof(struct memfd_luo_folio_ser)));
  int err = 0;
  long i = 0;
  if (folios_ser == nullptr) {
    err = -ENOMEM;
    goto err_unpin;
  }
  for (i = 0; i < static_cast<long>(nr_folios); i++) {
    struct folio* folio = folios[i];
    err = kho_preserve_folio(folio);
    if (err != 0) goto err_unpreserve;
    err = prepare(folio, arg);
    if (err != 0) {
      kho_unpreserve_folio(folio);
      goto err_unpreserve;
    }
    folios_ser[i].pfn = folio_pfn(folio);
    folios_ser[i].flags = MEMFD_LUO_FOLIO_DIRTY | MEMFD_LUO_FOLIO_UPTODATE;
    folios_ser[i].index = folio_index(folio);
  }
  err = kho_preserve_vmalloc(folios_ser, kho_vmalloc);
  if (err != 0) goto err_unpreserve;

  kvfree(folios);
  *nr = nr_folios;
  // The array stays allocated: it is preserved memory now, and unpreserve
  // finds it through private_data.
  *out = folios_ser;
  return 0;

err_unpreserve:
  for (i = i - 1; i >= 0; i--) kho_unpreserve_folio(folios[i]);
  vfree(folios_ser);
err_unpin:
  unpin_folios(folios, nr_folios);
  kvfree(folios);
  return err;
}

void memfd_luo_unpreserve_folio_array(struct kho_vmalloc* kho_vmalloc,
                                      const struct memfd_luo_folio_ser* folios_ser, u64 nr) {
  if (nr == 0) return;
  kho_unpreserve_vmalloc(kho_vmalloc);
  for (u64 i = 0; i < nr; i++) {
    if (folios_ser[i].pfn == 0) continue;
    struct folio* folio = pfn_folio(folios_ser[i].pfn);
    kho_unpreserve_folio(folio);
    unpin_folio(folio);
  }
  vfree(folios_ser);
}

bool memfd_luo_folio_array_fits(const struct kho_vmalloc* kho_vmalloc, u64 nr) {
  // A successful restore maps exactly total_pages pages.
  const u64 capacity =
      static_cast<u64>(kho_vmalloc->total_pages) * PAGE_SIZE / sizeof(struct memfd_luo_folio_ser);
  return nr <= capacity;
}

void memfd_luo_folio_oops(const char* who, const struct kho_vmalloc* kho_vmalloc, u64 nr) {
  const unsigned long long capacity =
      static_cast<u64>(kho_vmalloc->total_pages) * PAGE_SIZE / sizeof(struct memfd_luo_folio_ser);
  panic(
      "%s: BUG: unable to handle page fault: folio record %llu past the %llu-record array "
      "(the record claims %llu folios)",
      who, capacity, capacity, static_cast<unsigned long long>(nr));
}

struct memfd_luo_folio_ser* memfd_luo_restore_folio_array(const struct kho_vmalloc* kho_vmalloc,
                                                          u64 nr, const char* who) {
  auto* folios_ser = static_cast<struct memfd_luo_folio_ser*>(kho_restore_vmalloc(kho_vmalloc));
  if (folios_ser == nullptr) return nullptr;
  if (!memfd_luo_folio_array_fits(kho_vmalloc, nr)) {
    vfree(folios_ser);
    memfd_luo_folio_oops(who, kho_vmalloc, nr);
  }
  return folios_ser;
}

void memfd_luo_release_folio_array(const struct kho_vmalloc* kho_vmalloc, u64 nr,
                                   void (*release)(phys_addr_t phys), const char* who) {
  if (nr == 0) return;
  struct memfd_luo_folio_ser* folios_ser = memfd_luo_restore_folio_array(kho_vmalloc, nr, who);
  if (folios_ser == nullptr) return;
  for (u64 i = 0; i < nr; i++) {
    if (folios_ser[i].pfn != 0) release(PFN_PHYS(folios_ser[i].pfn));
  }
  vfree(folios_ser);
}

int memfd_luo_register_handler(struct liveupdate_file_handler* fh, const char* who) {
  const int err = liveupdate_register_file_handler(fh);
  if (err != 0 && err != -EOPNOTSUPP) {
    pr_err("%s: could not register the file handler: %d", who, err);
    return err;
  }
  return 0;
}

bool memfd_luo_can_preserve_file(struct file* file) {
  return shmem_file(file) && file_inode(file)->i_nlink == 0;
}

unsigned long memfd_luo_inode_id(struct file* file) {
  return reinterpret_cast<unsigned long>(file_inode(file));
}

struct file* memfd_luo_new_file(u32 seals, u64 pos, u64 size) {
  // Sealing must be allowed for the preserved seals (F_SEAL_SEAL among
  // them) to be re-applied.
  struct file* file = memfd_alloc_file("", MFD_ALLOW_SEALING);
  if (IS_ERR(file)) {
    pr_err("memfd_luo: failed to set up the file: %ld", PTR_ERR(file));
    return file;
  }
  if (const int err = memfd_add_seals(file, seals); err != 0) {
    pr_err("memfd_luo: failed to add seals: %d", err);
    fput(file);
    return static_cast<struct file*>(ERR_PTR(err));
  }
  if (size > static_cast<u64>(MAX_LFS_FILESIZE) || pos > static_cast<u64>(MAX_LFS_FILESIZE)) {
    pr_err("memfd_luo: size %llu or position %llu out of range",
           static_cast<unsigned long long>(size), static_cast<unsigned long long>(pos));
    fput(file);
    return static_cast<struct file*>(ERR_PTR(-EINVAL));
  }
  vfs_setpos(file, static_cast<loff_t>(pos), MAX_LFS_FILESIZE);
  i_size_write(file_inode(file), static_cast<loff_t>(size));
  return file;
}

int memfd_luo_insert_folio(struct file* file, struct folio* folio, pgoff_t index, bool uptodate,
                           bool dirty, long* nr_added_pages) {
  struct inode* inode = file_inode(file);
  struct address_space* mapping = inode->i_mapping;
  __folio_set_locked(folio);
  __folio_set_swapbacked(folio);
  // The retriever pays for the memory from now on.
  int err = mem_cgroup_charge(folio, nullptr, mapping_gfp_mask(mapping));
  if (err != 0) {
    pr_err("memfd_luo: failed to charge folio at index %lu: %d", index, err);
    goto unlock_folio;
  }
  err = shmem_add_to_page_cache(folio, mapping, index, nullptr, mapping_gfp_mask(mapping));
  if (err != 0) {
    pr_err("memfd_luo: failed to add folio at index %lu to the page cache: %d", index, err);
    goto unlock_folio;
  }
  if (uptodate) folio_mark_uptodate(folio);
  if (dirty) folio_mark_dirty(folio);
  err = shmem_inode_acct_blocks(inode, static_cast<long>(folio_nr_pages(folio)));
  if (err != 0) {
    pr_err("memfd_luo: failed to account folio at index %lu: %d", index, err);
    goto remove_from_cache;
  }
  *nr_added_pages += static_cast<long>(folio_nr_pages(folio));
  folio_add_lru(folio);
  folio_unlock(folio);
  folio_put(folio);
  return 0;

remove_from_cache:
  filemap_remove_folio(folio);
unlock_folio:
  folio_unlock(folio);
  folio_put(folio);
  return err;
}

void memfd_luo_discard_folio(phys_addr_t phys) {
  struct folio* folio = kho_restore_folio(phys);
  if (folio == nullptr) {
    pr_warn("memfd_luo: unable to restore folio at physical address 0x%llx",
            static_cast<unsigned long long>(phys));
    return;
  }
  folio_put(folio);
}

// Shared by the memfd handler profiles; see memfd_common.h.
#include "memfd_common.h"

#include <cerrno>

#include "khosim/linux/bug.h"
#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/shmem_fs.h"

int memfd_luo_get_seals(struct file* file, u32* sealsp) {
  const int seals = memfd_get_seals(file);
  if (seals < 0) return seals;
  if ((static_cast<u32>(seals) & ~static_cast<u32>(MEMFD_LUO_ALL_SEALS)) != 0) return -EOPNOTSUPP;
  *sealsp = static_cast<u32>(seals);
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

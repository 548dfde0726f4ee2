// The "note-v1" handler (see note_handler.h). Kernel face only, as a
// handler that ports to kernel C by swapping includes.
//
// Outgoing: preserve copies the file's first page into a kho_alloc_preserve
// record {magic, size, bytes}; unpreserve frees it. Incoming: retrieve makes
// a memfd of the recorded size holding the bytes and frees the record;
// finish frees the record of a file nobody retrieved.
#include "note_handler.h"

#include <cerrno>
#include <cstring>

#include "khosim/linux/err.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/shmem_fs.h"

namespace {

#define NOTE_MAGIC 0x4e4f5445U  // "NOTE"
#define NOTE_MAX_BYTES 4000

struct note_ser {
  u32 magic;
  u32 size;
  u8 bytes[NOTE_MAX_BYTES];
} __packed;

bool note_can_preserve(struct liveupdate_file_handler*, struct file* file) {
  return shmem_file(file) && std::strncmp(file->f_name, "/memfd:note", 11) == 0 &&
         i_size_read(file_inode(file)) <= NOTE_MAX_BYTES;
}

int note_preserve(struct liveupdate_file_op_args* args) {
  struct inode* inode = file_inode(args->file);
  auto* ser = static_cast<struct note_ser*>(kho_alloc_preserve(sizeof(struct note_ser)));
  if (IS_ERR(ser)) return static_cast<int>(PTR_ERR(ser));
  ser->magic = NOTE_MAGIC;
  ser->size = static_cast<u32>(i_size_read(inode));
  if (ser->size != 0) {
    struct folio* folio = shmem_read_folio(inode->i_mapping, 0);
    if (IS_ERR(folio)) {
      kho_unpreserve_free(ser);
      return static_cast<int>(PTR_ERR(folio));
    }
    std::memcpy(ser->bytes, folio_address(folio), ser->size);
    folio_put(folio);
  }
  args->serialized_data = virt_to_phys(ser);
  return 0;
}

void note_unpreserve(struct liveupdate_file_op_args* args) {
  kho_unpreserve_free(phys_to_virt(args->serialized_data));
}

int note_retrieve(struct liveupdate_file_op_args* args) {
  auto* ser = static_cast<struct note_ser*>(phys_to_virt(args->serialized_data));
  int err = 0;
  struct file* file = nullptr;
  if (ser->magic != NOTE_MAGIC || ser->size > NOTE_MAX_BYTES) {
    err = -EINVAL;
    goto free_ser;
  }
  file = memfd_alloc_file("note", 0);
  if (IS_ERR(file)) {
    err = static_cast<int>(PTR_ERR(file));
    goto free_ser;
  }
  i_size_write(file_inode(file), ser->size);
  if (ser->size != 0) {
    struct folio* folio = shmem_read_folio(file_inode(file)->i_mapping, 0);
    if (IS_ERR(folio)) {
      err = static_cast<int>(PTR_ERR(folio));
      fput(file);
      goto free_ser;
    }
    std::memcpy(folio_address(folio), ser->bytes, ser->size);
    folio_mark_dirty(folio);
    folio_put(folio);
  }
  args->file = file;
free_ser:
  kho_restore_free(ser);
  return err;
}

void note_finish(struct liveupdate_file_op_args* args) {
  if (args->retrieve_status == 0) kho_restore_free(phys_to_virt(args->serialized_data));
}

const struct liveupdate_file_ops note_ops = {
    .can_preserve = note_can_preserve,
    .preserve = note_preserve,
    .unpreserve = note_unpreserve,
    .retrieve = note_retrieve,
    .finish = note_finish,
};

struct liveupdate_file_handler note_handler = {
    .ops = &note_ops,
    .compatible = NOTE_FH_COMPATIBLE,
};

}  // namespace

int note_luo_init(void) {
  const int err = liveupdate_register_file_handler(&note_handler);
  return err == -EOPNOTSUPP ? 0 : err;
}

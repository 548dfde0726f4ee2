// LUO files: the preserved files of one session (FileSet) and the global
// registry of preserved file identities (PreservedFiles).
//
// Outgoing file:  PRESERVE_FD -> preserved (LUO holds a file reference, the
//                 identity is in the registry) -> frozen at reboot
//                 (unfrozen if a later freeze fails) | unpreserved when the
//                 session closes.
// Incoming file:  deserialized (no struct file yet) -> retrieved once (the
//                 result, success or errno, is latched) -> finished, which
//                 drops LUO's reference, the registry entry and the module
//                 reference.
// Every step that fails unwinds the steps before it in reverse.
//
// Locking: a FileSet is its session's; every call holds the session's
// mutex (struct liveupdate_session::mutex, which guards the FileSet), and
// the handler callbacks run under it.
#ifndef KHOSIM_LIB_LUO_LUO_FILE_H_
#define KHOSIM_LIB_LUO_LUO_FILE_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "boost/intrusive/list.hpp"
#include "khosim/abi/luo.h"
#include "khosim/kho/block_set.h"
#include "khosim/linux/fs.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/luo/luo.h"
#include "luo_context.h"
#include "luo_flb.h"
#include "luo_handlers.h"

namespace khosim::luo {

// Identities of every outgoing file and every retrieved, unfinished
// incoming file (luo_preserved_files): one preservation per file.
class PreservedFiles {
 public:
  // False when |id| is registered already.
  bool Insert(unsigned long id, struct file* file) ABSL_LOCKS_EXCLUDED(mu_);
  void Erase(unsigned long id) ABSL_LOCKS_EXCLUDED(mu_);
  // The file registered under |id|, or nullptr.
  struct file* Find(unsigned long id) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<unsigned long, struct file*> files_ ABSL_GUARDED_BY(mu_);
};

// What a FileSet works with.
struct LuoServices {
  LuoContext& luo;
  HandlerRegistry& handlers;
  FlbLifecycle& flbs;
  PreservedFiles& preserved;
};

// One file of a session: the kernel's struct luo_file.
// The token sits beside the list hook: PRESERVE_FD's walk for a taken
// token reads one cache line per file.
struct LuoFile : SafeListHook {
  uint64_t token = 0;
  struct liveupdate_file_handler* fh = nullptr;
  struct file* file = nullptr;  // NULL in the new kernel until retrieved
  uint64_t serialized_data = 0;
  void* private_data = nullptr;
  int retrieve_status = 0;
};

// The identity LUO registers |file| of handler |fh| under: get_id's, or
// the struct file itself.
unsigned long FileId(const struct liveupdate_file_handler* fh, struct file* file);

class FileSet {
 public:
  FileSet(LuoServices& services, const struct liveupdate_session* session)
      : svc_(services), session_(session) {}
  // Kernel teardown: puts the files LUO still references (a dead kernel
  // runs no release) and frees the entries.
  ~FileSet();
  FileSet(const FileSet&) = delete;
  FileSet& operator=(const FileSet&) = delete;

  // PRESERVE_FD. In order: -EEXIST (token taken), the block set's growth
  // error, -EBADF, -ENOENT (no handler takes it, or its module is going),
  // -EBUSY (preserved already, in any session), the FLBs' error, -ENOMEM,
  // preserve()'s error.
  int Preserve(uint64_t token, int fd);
  // Closing an outgoing session: every file, newest first.
  void UnpreserveAll();
  // Reboot: freeze() every file in order into the pre-allocated records;
  // on a failure the files frozen so far are unfrozen and the errno
  // returned.
  int Freeze(abi::LuoFileSetSer* ser);
  // Undoes Freeze for the files before |failed| (all if nullptr) and
  // clears the records (and |ser|, if given).
  void Unfreeze(abi::LuoFileSetSer* ser, const LuoFile* failed);
  // RETRIEVE_FD: a new reference to the file behind |token|. -ENOENT, the
  // latched errno of an earlier attempt, retrieve()'s error, or -EIO for a
  // handler that succeeded without a file.
  int Retrieve(uint64_t token, struct file** out);
  // FINISH: -EBUSY if a can_finish() says no; then finish() every file,
  // newest first.
  int FinishAll();
  // Early in kernel B: the session's files from the previous kernel's
  // chain. -EINVAL (chain, count), -EEXIST (a repeated token), -ENOENT (no
  // handler for a compatible), -ENOMEM; nothing is kept on failure.
  int Deserialize(const abi::LuoFileSetSer& ser);
  // liveupdate_get_token_outgoing: 0 with *token, or -ENOENT.
  int TokenOf(struct file* file, uint64_t* token) const;

  bool empty() const { return files_.empty(); }
  uint64_t nblocks() const { return block_set_.nblocks(); }
  std::vector<Luo::FileInfo> Info() const;
  // Adds this set's files to |counts|, by handler.
  void CountByHandler(
      absl::flat_hash_map<const struct liveupdate_file_handler*, long>* counts) const;
  // Tokens unique, every file that has a struct file registered as itself
  // (counted into |registered|), and for an outgoing set, the block set
  // sized for the files.
  absl::Status Validate(bool outgoing, uint64_t* registered) const;

 private:
  using FileList = boost::intrusive::list<LuoFile, boost::intrusive::constant_time_size<true>>;

  struct liveupdate_file_op_args RuntimeArgs(const LuoFile& f) const;
  struct liveupdate_file_op_args FinishArgs(const LuoFile& f) const;
  LuoFile* Find(uint64_t token);
  // Drops the newest file: its entry, block capacity and file reference.
  void PopNewest();

  LuoServices& svc_;
  const struct liveupdate_session* const session_;
  FileList files_;  // preservation order; the entries are this set's
  kho::BlockSet block_set_{sizeof(abi::LuoFileSer)};
};

}  // namespace khosim::luo

#endif  // KHOSIM_LIB_LUO_LUO_FILE_H_

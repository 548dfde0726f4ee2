// A session's preserved files and the registry of preserved identities
// (see the header for the lifecycle of a file).
#include "luo_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "khosim/linux/err.h"
#include "khosim/linux/module.h"
#include "luo_session.h"

namespace khosim::luo {

// ---- PreservedFiles ---------------------------------------------------------

bool PreservedFiles::Insert(unsigned long id, struct file* file) {
  absl::MutexLock lock(&mu_);
  return files_.emplace(id, file).second;
}

void PreservedFiles::Erase(unsigned long id) {
  absl::MutexLock lock(&mu_);
  files_.erase(id);
}

struct file* PreservedFiles::Find(unsigned long id) const {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(id);
  return it == files_.end() ? nullptr : it->second;
}

uint64_t PreservedFiles::size() const {
  absl::MutexLock lock(&mu_);
  return files_.size();
}

unsigned long FileId(const struct liveupdate_file_handler* fh, struct file* file) {
  return fh->ops->get_id != nullptr ? fh->ops->get_id(file) : reinterpret_cast<unsigned long>(file);
}

// ---- FileSet ----------------------------------------------------------------

FileSet::~FileSet() {
  files_.clear_and_dispose([](LuoFile* f) {
    if (f->file != nullptr) fput(f->file);
    delete f;
  });
}

// The fields unpreserve, freeze and unfreeze get.
struct liveupdate_file_op_args FileSet::RuntimeArgs(const LuoFile& f) const {
  struct liveupdate_file_op_args args = {};
  args.handler = f.fh;
  args.session = svc_.luo.Is73() ? const_cast<struct liveupdate_session*>(session_) : nullptr;
  args.file = f.file;
  args.serialized_data = f.serialized_data;
  args.private_data = f.private_data;
  return args;
}

// The fields can_finish and finish get.
struct liveupdate_file_op_args FileSet::FinishArgs(const LuoFile& f) const {
  struct liveupdate_file_op_args args = {};
  args.handler = f.fh;
  args.session = svc_.luo.Is73() ? const_cast<struct liveupdate_session*>(session_) : nullptr;
  args.file = f.file;
  args.serialized_data = f.serialized_data;
  args.retrieve_status = f.retrieve_status;
  return args;
}

LuoFile* FileSet::Find(uint64_t token) {
  for (LuoFile& f : files_) {
    if (f.token == token) return &f;
  }
  return nullptr;
}

void FileSet::PopNewest() {
  LuoFile* f = &files_.back();
  struct file* file = f->file;
  files_.pop_back();
  delete f;
  block_set_.Shrink(files_.size());
  if (file != nullptr) fput(file);
}

int FileSet::Preserve(uint64_t token, int fd) {
  if (Find(token) != nullptr) return -EEXIST;
  if (int err = block_set_.Grow(files_.size() + 1); err != 0) return err;
  auto shrink = [&] { block_set_.Shrink(files_.size()); };

  struct file* file = fget(static_cast<unsigned int>(fd));
  if (file == nullptr) {
    shrink();
    return -EBADF;
  }
  HandlerEntry* entry = svc_.handlers.Claim(file);
  if (entry == nullptr) {
    fput(file);
    shrink();
    return -ENOENT;
  }
  struct liveupdate_file_handler* fh = entry->fh;
  const unsigned long id = FileId(fh, file);
  auto undo_module = [&] {
    module_put(fh->ops->owner);
    fput(file);
    shrink();
  };
  if (!svc_.preserved.Insert(id, file)) {
    undo_module();
    return -EBUSY;
  }
  if (int err = svc_.flbs.FilePreserve(*entry); err != 0) {
    svc_.preserved.Erase(id);
    undo_module();
    return err;
  }
  if (svc_.luo.ctx().ShouldFail("kmalloc")) {
    svc_.flbs.FileUnpreserve(*entry);
    svc_.preserved.Erase(id);
    undo_module();
    return -ENOMEM;
  }
  struct liveupdate_file_op_args args = {};
  args.handler = fh;
  args.session = svc_.luo.Is73() ? const_cast<struct liveupdate_session*>(session_) : nullptr;
  args.file = file;
  svc_.luo.TraceCallback("preserve", fh, session_, token);
  if (int err = fh->ops->preserve(&args); err != 0) {
    svc_.flbs.FileUnpreserve(*entry);
    svc_.preserved.Erase(id);
    undo_module();
    return err;
  }
  auto* f = new LuoFile;
  f->fh = fh;
  f->file = file;
  f->token = token;
  f->serialized_data = args.serialized_data;
  f->private_data = args.private_data;
  files_.push_back(*f);
  return 0;
}

void FileSet::UnpreserveAll() {
  while (!files_.empty()) {
    LuoFile& f = files_.back();
    struct liveupdate_file_op_args args = RuntimeArgs(f);
    svc_.luo.TraceCallback("unpreserve", f.fh, session_, f.token);
    f.fh->ops->unpreserve(&args);
    if (HandlerEntry* h = svc_.handlers.Find(f.fh)) svc_.flbs.FileUnpreserve(*h);
    svc_.preserved.Erase(FileId(f.fh, f.file));
    module_put(f.fh->ops->owner);
    PopNewest();
  }
  block_set_.Destroy();
}

int FileSet::Freeze(abi::LuoFileSetSer* ser) {
  if (files_.empty()) return 0;
  kho::BlockSet::Iterator it(block_set_);
  for (LuoFile& f : files_) {
    auto* file_ser = static_cast<abi::LuoFileSer*>(it.ReserveEntry());
    if (file_ser == nullptr) {
      svc_.luo.ctx().WarnOnce(KHOSIM_SITE, "no pre-allocated file record at reboot");
      Unfreeze(nullptr, &f);
      return -ENOSPC;
    }
    if (f.fh->ops->freeze != nullptr) {
      struct liveupdate_file_op_args args = RuntimeArgs(f);
      svc_.luo.TraceCallback("freeze", f.fh, session_, f.token);
      if (int err = f.fh->ops->freeze(&args); err != 0) {
        svc_.luo.ctx().Log(absl::StrCat("luo: warning: freeze failed for token ", f.token,
                                        " handler ", f.fh->compatible, ": ", err));
        Unfreeze(nullptr, &f);
        return err;
      }
      f.serialized_data = args.serialized_data;
    }
    std::memset(file_ser->compatible, 0, sizeof(file_ser->compatible));
    const absl::string_view compat = CompatOf(f.fh->compatible);
    std::memcpy(file_ser->compatible, compat.data(),
                std::min(compat.size(), sizeof(file_ser->compatible) - 1));
    file_ser->data = f.serialized_data;
    file_ser->token = f.token;
  }
  ser->count = files_.size();
  ser->files = block_set_.head_pa();
  return 0;
}

void FileSet::Unfreeze(abi::LuoFileSetSer* ser, const LuoFile* failed) {
  if (files_.empty()) return;
  for (LuoFile& f : files_) {
    if (&f == failed) break;
    if (f.fh->ops->unfreeze == nullptr) continue;
    struct liveupdate_file_op_args args = RuntimeArgs(f);
    svc_.luo.TraceCallback("unfreeze", f.fh, session_, f.token);
    f.fh->ops->unfreeze(&args);
  }
  block_set_.Clear();
  if (ser != nullptr) *ser = {};
}

int FileSet::Retrieve(uint64_t token, struct file** out) {
  LuoFile* f = Find(token);
  if (f == nullptr) return -ENOENT;
  if (f->retrieve_status < 0) return f->retrieve_status;
  if (f->retrieve_status > 0) {
    *out = get_file(f->file);
    return 0;
  }
  struct liveupdate_file_op_args args = {};
  args.handler = f->fh;
  args.session = svc_.luo.Is73() ? const_cast<struct liveupdate_session*>(session_) : nullptr;
  args.serialized_data = f->serialized_data;
  svc_.luo.TraceCallback("retrieve", f->fh, session_, f->token);
  if (int err = f->fh->ops->retrieve(&args); err != 0) {
    f->retrieve_status = err;
    return err;
  }
  if (args.file == nullptr) {
    svc_.luo.ctx().Warn(KHOSIM_SITE, absl::StrCat("handler ", f->fh->compatible,
                                                  " retrieve() succeeded without a file"));
    f->retrieve_status = -EIO;
    return -EIO;
  }
  f->file = args.file;  // the reference retrieve() made is LUO's
  if (!svc_.preserved.Insert(FileId(f->fh, f->file), f->file)) {
    svc_.luo.ctx().Warn(KHOSIM_SITE, "retrieved file already in the preserved-file registry");
  }
  f->retrieve_status = 1;
  *out = get_file(f->file);
  return 0;
}

int FileSet::FinishAll() {
  if (files_.empty()) return 0;
  for (LuoFile& f : files_) {
    if (f.fh->ops->can_finish == nullptr) continue;
    struct liveupdate_file_op_args args = FinishArgs(f);
    svc_.luo.TraceCallback("can_finish", f.fh, session_, f.token);
    if (!f.fh->ops->can_finish(&args)) return -EBUSY;
  }
  while (!files_.empty()) {
    LuoFile& f = files_.back();
    struct liveupdate_file_op_args args = FinishArgs(f);
    svc_.luo.TraceCallback("finish", f.fh, session_, f.token);
    f.fh->ops->finish(&args);
    if (HandlerEntry* h = svc_.handlers.Find(f.fh)) svc_.flbs.FileFinish(*h);
    if (f.file != nullptr) svc_.preserved.Erase(FileId(f.fh, f.file));
    module_put(f.fh->ops->owner);
    PopNewest();
  }
  block_set_.Destroy();
  return 0;
}

int FileSet::Deserialize(const abi::LuoFileSetSer& ser) {
  KernelContext& ctx = svc_.luo.ctx();
  if (ser.files == 0) {
    if (ser.count != 0) ctx.Warn(KHOSIM_SITE, "file count without a file chain");
    return 0;
  }
  if (int err = block_set_.Restore(ser.files); err != 0) return err;
  int err = 0;
  // Tokens name files within a session: a repeated one would leave a file
  // RETRIEVE_FD can never reach (and break the session's invariant).
  absl::flat_hash_set<uint64_t> tokens;
  kho::BlockSet::Iterator it(block_set_);
  while (auto* file_ser = static_cast<abi::LuoFileSer*>(it.ReadEntry())) {
    if (!tokens.insert(file_ser->token).second) {
      ctx.Log(absl::StrCat("luo: warning: duplicate token ", file_ser->token, " in session [",
                           session_->name, "]"));
      err = -EEXIST;
      break;
    }
    const absl::string_view compat = CompatOf(file_ser->compatible);
    HandlerEntry* entry = svc_.handlers.TakeByCompatible(compat);
    if (entry == nullptr) {
      ctx.Log(absl::StrCat("luo: warning: no registered handler for compatible '", compat, "'"));
      err = -ENOENT;
      break;
    }
    if (ctx.ShouldFail("kmalloc")) {
      module_put(entry->fh->ops->owner);
      err = -ENOMEM;
      break;
    }
    auto* f = new LuoFile;
    f->fh = entry->fh;
    f->serialized_data = file_ser->data;
    f->token = file_ser->token;
    files_.push_back(*f);
  }
  if (err == 0 && files_.size() != ser.count) {
    ctx.Log(absl::StrCat("luo: warning: file count mismatch: expected ", ser.count, ", found ",
                         files_.size()));
    err = -EINVAL;
  }
  if (err != 0) {
    files_.clear_and_dispose([](LuoFile* f) {
      module_put(f->fh->ops->owner);
      delete f;
    });
    block_set_.Destroy();
  }
  return err;
}

int FileSet::TokenOf(struct file* file, uint64_t* token) const {
  for (const LuoFile& f : files_) {
    if (f.file == file) {
      if (token != nullptr) *token = f.token;
      return 0;
    }
  }
  return -ENOENT;
}

std::vector<Luo::FileInfo> FileSet::Info() const {
  std::vector<Luo::FileInfo> out;
  for (const LuoFile& f : files_) {
    out.push_back(
        {f.token, f.fh->compatible, f.retrieve_status, f.file != nullptr, f.serialized_data});
  }
  return out;
}

void FileSet::CountByHandler(
    absl::flat_hash_map<const struct liveupdate_file_handler*, long>* counts) const {
  for (const LuoFile& f : files_) ++(*counts)[f.fh];
}

absl::Status FileSet::Validate(bool outgoing, uint64_t* registered) const {
  absl::flat_hash_set<uint64_t> tokens;
  for (const LuoFile& f : files_) {
    if (!tokens.insert(f.token).second) {
      return absl::InternalError(
          absl::StrCat("session ", session_->name, ": duplicate token ", f.token));
    }
    if (f.file == nullptr) continue;
    ++*registered;
    if (svc_.preserved.Find(FileId(f.fh, f.file)) != f.file) {
      return absl::InternalError(absl::StrCat("session ", session_->name, " token ", f.token,
                                              ": file missing from the registry"));
    }
  }
  if (outgoing) {
    if (absl::Status v = block_set_.Validate(files_.size(), false); !v.ok()) {
      return absl::InternalError(absl::StrCat("session ", session_->name, ": ", v.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace khosim::luo

// LUO files: the handler registry and each session's file set.
//
// Outgoing file:  PRESERVE_FD -> preserved (LUO holds a file reference, the
//                 identity is in the global registry) -> freeze at reboot
//                 (unfreeze if a later freeze fails) | unpreserve when the
//                 session closes.
// Incoming file:  deserialized (no struct file yet) -> retrieve once (the
//                 result, success or errno, is latched) -> finish, which
//                 drops LUO's reference, the registry entry and the module
//                 reference.
// Every step that fails unwinds the steps before it in reverse; see
// PreserveFile for the order the checks run in.
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "khosim/linux/err.h"
#include "luo_internal.h"

namespace khosim::luo {
namespace {

absl::string_view CompatOf(const char (&raw)[abi::kLiveupdateCompatLength]) {
  return absl::string_view(raw, strnlen(raw, sizeof(raw)));
}

}  // namespace

unsigned long LuoState::FileId(const struct liveupdate_file_handler* fh, struct file* file) const {
  return fh->ops->get_id != nullptr ? fh->ops->get_id(file) : reinterpret_cast<unsigned long>(file);
}

// The fields unpreserve, freeze and unfreeze get.
struct liveupdate_file_op_args LuoState::RuntimeArgs(Session* s, const LuoFile& f) const {
  struct liveupdate_file_op_args args = {};
  args.handler = f.fh;
  args.session = Is73() ? s : nullptr;
  args.file = f.file;
  args.serialized_data = f.serialized_data;
  args.private_data = f.private_data;
  return args;
}

// The fields can_finish and finish get.
struct liveupdate_file_op_args LuoState::FinishArgs(Session* s, const LuoFile& f) const {
  struct liveupdate_file_op_args args = {};
  args.handler = f.fh;
  args.session = Is73() ? s : nullptr;
  args.file = f.file;
  args.serialized_data = f.serialized_data;
  args.retrieve_status = f.retrieve_status;
  return args;
}

bool LuoState::RegistryInsert(unsigned long id, struct file* file) {
  absl::MutexLock lock(&registry_mu_);
  return preserved_files_.emplace(id, file).second;
}

void LuoState::RegistryErase(unsigned long id) {
  absl::MutexLock lock(&registry_mu_);
  preserved_files_.erase(id);
}

HandlerEntry* LuoState::FindHandler(const struct liveupdate_file_handler* fh) {
  absl::MutexLock lock(&register_mu_);
  for (auto& h : handlers_) {
    if (h->fh == fh) return h.get();
  }
  return nullptr;
}

int LuoState::RegisterFileHandler(struct liveupdate_file_handler* fh) {
  if (!enabled_) return -EOPNOTSUPP;
  const struct liveupdate_file_ops* ops = fh->ops;
  if (ops == nullptr || ops->preserve == nullptr || ops->unpreserve == nullptr ||
      ops->retrieve == nullptr || ops->finish == nullptr || ops->can_preserve == nullptr) {
    return -EINVAL;
  }
  absl::MutexLock lock(&register_mu_);
  const absl::string_view compat = CompatOf(fh->compatible);
  for (const auto& h : handlers_) {
    if (CompatOf(h->fh->compatible) == compat) return -EEXIST;
  }
  auto entry = std::make_unique<HandlerEntry>();
  entry->fh = fh;
  handlers_.push_back(std::move(entry));
  if (Tracing()) {
    ctx_.Trace(kTraceCategory, "register_file_handler", {{"handler", std::string(compat)}});
  }
  return 0;
}

void LuoState::UnregisterFileHandler(struct liveupdate_file_handler* fh) {
  if (!enabled_) return;
  HandlerEntry* h = FindHandler(fh);
  if (h == nullptr) return;
  while (!h->flbs.empty()) UnregisterFlb(fh, h->flbs.back()->flb);
  absl::MutexLock lock(&register_mu_);
  for (auto it = handlers_.begin(); it != handlers_.end(); ++it) {
    if (it->get() == h) {
      handlers_.erase(it);
      break;
    }
  }
}

int LuoState::PreserveFile(Session* s, uint64_t token, int fd) {
  FileSet& set = s->file_set;
  for (const auto& f : set.files) {
    if (f->token == token) return -EEXIST;
  }
  if (int err = set.block_set.Grow(set.files.size() + 1); err != 0) return err;
  auto shrink = [&] { set.block_set.Shrink(set.files.size()); };

  struct file* file = fget(static_cast<unsigned int>(fd));
  if (file == nullptr) {
    shrink();
    return -EBADF;
  }
  struct liveupdate_file_handler* fh = nullptr;
  bool module_held = false;
  {
    absl::MutexLock lock(&register_mu_);
    for (const auto& h : handlers_) {
      if (h->fh->ops->can_preserve(h->fh, file)) {
        fh = h->fh;
        module_held = try_module_get(fh->ops->owner);
        break;
      }
    }
  }
  if (fh == nullptr || !module_held) {
    fput(file);
    shrink();
    return -ENOENT;
  }
  const unsigned long id = FileId(fh, file);
  auto undo_module = [&] {
    module_put(fh->ops->owner);
    fput(file);
    shrink();
  };
  if (!RegistryInsert(id, file)) {
    undo_module();
    return -EBUSY;
  }
  HandlerEntry* entry = FindHandler(fh);
  if (int err = FlbFilePreserve(*entry); err != 0) {
    RegistryErase(id);
    undo_module();
    return err;
  }
  if (ctx_.ShouldFail("kmalloc")) {
    FlbFileUnpreserve(*entry);
    RegistryErase(id);
    undo_module();
    return -ENOMEM;
  }
  struct liveupdate_file_op_args args = {};
  args.handler = fh;
  args.session = Is73() ? s : nullptr;
  args.file = file;
  TraceCallback("preserve", fh, s, token);
  if (int err = fh->ops->preserve(&args); err != 0) {
    FlbFileUnpreserve(*entry);
    RegistryErase(id);
    undo_module();
    return err;
  }
  auto luo_file = std::make_unique<LuoFile>();
  luo_file->fh = fh;
  luo_file->file = file;
  luo_file->token = token;
  luo_file->serialized_data = args.serialized_data;
  luo_file->private_data = args.private_data;
  set.files.push_back(std::move(luo_file));
  return 0;
}

void LuoState::UnpreserveFiles(Session* s) {
  FileSet& set = s->file_set;
  while (!set.files.empty()) {
    LuoFile& f = *set.files.back();
    struct liveupdate_file_op_args args = RuntimeArgs(s, f);
    TraceCallback("unpreserve", f.fh, s, f.token);
    f.fh->ops->unpreserve(&args);
    if (HandlerEntry* h = FindHandler(f.fh)) FlbFileUnpreserve(*h);
    RegistryErase(FileId(f.fh, f.file));
    module_put(f.fh->ops->owner);
    struct file* file = f.file;
    set.files.pop_back();
    set.block_set.Shrink(set.files.size());
    fput(file);
  }
  set.block_set.Destroy();
}

int LuoState::FreezeFiles(Session* s, abi::LuoFileSetSer* ser) {
  FileSet& set = s->file_set;
  if (set.files.empty()) return 0;
  kho::BlockSet::Iterator it(set.block_set);
  for (auto& f : set.files) {
    auto* file_ser = static_cast<abi::LuoFileSer*>(it.ReserveEntry());
    if (file_ser == nullptr) {
      ctx_.WarnOnce(KHOSIM_SITE, "no pre-allocated file record at reboot");
      UnfreezeFiles(s, nullptr, f.get());
      return -ENOSPC;
    }
    if (f->fh->ops->freeze != nullptr) {
      struct liveupdate_file_op_args args = RuntimeArgs(s, *f);
      TraceCallback("freeze", f->fh, s, f->token);
      if (int err = f->fh->ops->freeze(&args); err != 0) {
        ctx_.Log(absl::StrCat("luo: warning: freeze failed for token ", f->token, " handler ",
                              f->fh->compatible, ": ", err));
        UnfreezeFiles(s, nullptr, f.get());
        return err;
      }
      f->serialized_data = args.serialized_data;
    }
    std::memset(file_ser->compatible, 0, sizeof(file_ser->compatible));
    const absl::string_view compat = CompatOf(f->fh->compatible);
    std::memcpy(file_ser->compatible, compat.data(),
                std::min(compat.size(), sizeof(file_ser->compatible) - 1));
    file_ser->data = f->serialized_data;
    file_ser->token = f->token;
  }
  ser->count = set.files.size();
  ser->files = set.block_set.head_pa();
  return 0;
}

void LuoState::UnfreezeFiles(Session* s, abi::LuoFileSetSer* ser, const LuoFile* failed) {
  FileSet& set = s->file_set;
  if (set.files.empty()) return;
  for (auto& f : set.files) {
    if (f.get() == failed) break;
    if (f->fh->ops->unfreeze == nullptr) continue;
    struct liveupdate_file_op_args args = RuntimeArgs(s, *f);
    TraceCallback("unfreeze", f->fh, s, f->token);
    f->fh->ops->unfreeze(&args);
  }
  set.block_set.Clear();
  if (ser != nullptr) *ser = {};
}

int LuoState::RetrieveFile(Session* s, uint64_t token, struct file** out) {
  LuoFile* f = nullptr;
  for (auto& candidate : s->file_set.files) {
    if (candidate->token == token) {
      f = candidate.get();
      break;
    }
  }
  if (f == nullptr) return -ENOENT;
  if (f->retrieve_status < 0) return f->retrieve_status;
  if (f->retrieve_status > 0) {
    *out = get_file(f->file);
    return 0;
  }
  struct liveupdate_file_op_args args = {};
  args.handler = f->fh;
  args.session = Is73() ? s : nullptr;
  args.serialized_data = f->serialized_data;
  TraceCallback("retrieve", f->fh, s, f->token);
  if (int err = f->fh->ops->retrieve(&args); err != 0) {
    f->retrieve_status = err;
    return err;
  }
  if (args.file == nullptr) {
    ctx_.Warn(KHOSIM_SITE,
              absl::StrCat("handler ", f->fh->compatible, " retrieve() succeeded without a file"));
    f->retrieve_status = -EIO;
    return -EIO;
  }
  f->file = args.file;  // the reference retrieve() made is LUO's
  if (!RegistryInsert(FileId(f->fh, f->file), f->file)) {
    ctx_.Warn(KHOSIM_SITE, "retrieved file already in the preserved-file registry");
  }
  f->retrieve_status = 1;
  *out = get_file(f->file);
  return 0;
}

int LuoState::FinishFiles(Session* s) {
  FileSet& set = s->file_set;
  if (set.files.empty()) return 0;
  for (auto& f : set.files) {
    if (f->fh->ops->can_finish == nullptr) continue;
    struct liveupdate_file_op_args args = FinishArgs(s, *f);
    TraceCallback("can_finish", f->fh, s, f->token);
    if (!f->fh->ops->can_finish(&args)) return -EBUSY;
  }
  while (!set.files.empty()) {
    LuoFile& f = *set.files.back();
    struct liveupdate_file_op_args args = FinishArgs(s, f);
    TraceCallback("finish", f.fh, s, f.token);
    f.fh->ops->finish(&args);
    if (HandlerEntry* h = FindHandler(f.fh)) FlbFileFinish(*h);
    struct file* file = f.file;
    if (file != nullptr) RegistryErase(FileId(f.fh, file));
    module_put(f.fh->ops->owner);
    set.files.pop_back();
    set.block_set.Shrink(set.files.size());
    if (file != nullptr) fput(file);
  }
  set.block_set.Destroy();
  return 0;
}

int LuoState::DeserializeFiles(Session* s, const abi::LuoFileSetSer& ser) {
  FileSet& set = s->file_set;
  if (ser.files == 0) {
    if (ser.count != 0) ctx_.Warn(KHOSIM_SITE, "file count without a file chain");
    return 0;
  }
  if (int err = set.block_set.Restore(ser.files); err != 0) return err;
  int err = 0;
  // Tokens name files within a session: a repeated one would leave a file
  // RETRIEVE_FD can never reach (and break the session's invariant).
  absl::flat_hash_set<uint64_t> tokens;
  kho::BlockSet::Iterator it(set.block_set);
  while (auto* file_ser = static_cast<abi::LuoFileSer*>(it.ReadEntry())) {
    if (!tokens.insert(file_ser->token).second) {
      ctx_.Log(absl::StrCat("luo: warning: duplicate token ", file_ser->token, " in session [",
                            s->name, "]"));
      err = -EEXIST;
      break;
    }
    const absl::string_view compat = CompatOf(file_ser->compatible);
    struct liveupdate_file_handler* fh = nullptr;
    {
      absl::MutexLock lock(&register_mu_);
      for (const auto& h : handlers_) {
        if (CompatOf(h->fh->compatible) == compat) {
          if (try_module_get(h->fh->ops->owner)) fh = h->fh;
          break;
        }
      }
    }
    if (fh == nullptr) {
      ctx_.Log(absl::StrCat("luo: warning: no registered handler for compatible '", compat, "'"));
      err = -ENOENT;
      break;
    }
    if (ctx_.ShouldFail("kmalloc")) {
      module_put(fh->ops->owner);
      err = -ENOMEM;
      break;
    }
    auto f = std::make_unique<LuoFile>();
    f->fh = fh;
    f->serialized_data = file_ser->data;
    f->token = file_ser->token;
    set.files.push_back(std::move(f));
  }
  if (err == 0 && set.files.size() != ser.count) {
    ctx_.Log(absl::StrCat("luo: warning: file count mismatch: expected ", ser.count, ", found ",
                          set.files.size()));
    err = -EINVAL;
  }
  if (err != 0) {
    for (auto& f : set.files) module_put(f->fh->ops->owner);
    set.files.clear();
    set.block_set.Destroy();
  }
  return err;
}

int LuoState::GetTokenOutgoing(Session* s, struct file* file, uint64_t* token) {
  if (!Is73()) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_get_token_outgoing does not exist before 7.3");
    return -EOPNOTSUPP;
  }
  if (s == nullptr || !s->mutex.HeldByCurrentThread()) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_get_token_outgoing without the session lock");
    if (s == nullptr) return -EINVAL;
  }
  for (const auto& f : s->file_set.files) {
    if (f->file == file) {
      if (token != nullptr) *token = f->token;
      return 0;
    }
  }
  return -ENOENT;
}

int LuoState::GetFileIncoming(Session* s, uint64_t token, struct file** out) {
  if (!Is73()) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_get_file_incoming does not exist before 7.3");
    return -EOPNOTSUPP;
  }
  if (s == nullptr || !s->mutex.HeldByCurrentThread()) {
    ctx_.Warn(KHOSIM_SITE, "liveupdate_get_file_incoming without the session lock");
    if (s == nullptr) return -EINVAL;
  }
  return RetrieveFile(s, token, out);
}

}  // namespace khosim::luo

#include "luo/test_handler.h"

#include <cerrno>
#include <cstdint>

#include "khosim/linux/err.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"

namespace khosim::testing {
namespace {

constexpr uint64_t kRecordMagic = 0x7465737466696c65;  // "testfile"

struct TestRecord {
  uint64_t magic;
  uint64_t value;
  uint64_t frozen;
};

struct FlbRecord {
  uint64_t magic;
  uint64_t preserves;
};

TestHandlerControl control;

const struct file_operations kTestFileFops = {.owner = nullptr};

// The value is host memory the file owns: freed with the file, even when
// the kernel is torn down at kexec without running release.
struct file* NewTestFile(uint64_t value) {
  auto* owned = new uint64_t(value);
  struct file* f = anon_inode_getfile("[test_file]", &kTestFileFops, owned, O_RDWR);
  if (IS_ERR(f)) {
    delete owned;
    return f;
  }
  f->f_free = [](struct file* file) { delete static_cast<uint64_t*>(file->private_data); };
  return f;
}

uint64_t ValueOf(const struct file* f) { return *static_cast<const uint64_t*>(f->private_data); }

bool CanPreserve(struct liveupdate_file_handler*, struct file* f) { return IsTestFile(f); }

int Preserve(struct liveupdate_file_op_args* args) {
  if (control.preserve_error != 0) return control.preserve_error;
  void* mem = kho_alloc_preserve(sizeof(TestRecord));
  if (IS_ERR(mem)) return static_cast<int>(PTR_ERR(mem));
  auto* rec = static_cast<TestRecord*>(mem);
  *rec = {kRecordMagic, ValueOf(args->file), 0};
  args->serialized_data = virt_to_phys(rec);
  // Runtime-only state: the record's address, checked at unpreserve. Kept
  // allocation-free so that a kexec (which never calls unpreserve) leaks
  // nothing on the host.
  args->private_data = rec;
  control.live_records++;
  return 0;
}

void Unpreserve(struct liveupdate_file_op_args* args) {
  if (args->private_data != phys_to_virt(args->serialized_data)) control.private_data_mismatch++;
  kho_unpreserve_free(phys_to_virt(args->serialized_data));
  control.live_records--;
}

int Freeze(struct liveupdate_file_op_args* args) {
  auto* rec = static_cast<TestRecord*>(phys_to_virt(args->serialized_data));
  if (rec->value == control.freeze_fail_value) return control.freeze_error;
  rec->frozen = 1;
  return 0;
}

void Unfreeze(struct liveupdate_file_op_args* args) {
  static_cast<TestRecord*>(phys_to_virt(args->serialized_data))->frozen = 0;
}

int Retrieve(struct liveupdate_file_op_args* args) {
  if (control.retrieve_error != 0) return control.retrieve_error;
  const auto* rec = static_cast<const TestRecord*>(phys_to_virt(args->serialized_data));
  if (rec->magic != kRecordMagic || rec->frozen != 1) return -EINVAL;
  struct file* f = NewTestFile(rec->value);
  if (IS_ERR(f)) return static_cast<int>(PTR_ERR(f));
  args->file = f;
  return 0;
}

bool CanFinish(struct liveupdate_file_op_args* args) {
  const auto* rec = static_cast<const TestRecord*>(phys_to_virt(args->serialized_data));
  return control.can_finish_veto.count(rec->value) == 0;
}

void Finish(struct liveupdate_file_op_args* args) {
  auto* rec = static_cast<TestRecord*>(phys_to_virt(args->serialized_data));
  control.finish_status.emplace_back(rec->value, args->retrieve_status);
  kho_restore_free(rec);
  control.live_records--;
}

const struct liveupdate_file_ops kTestOps = {
    .can_preserve = CanPreserve,
    .preserve = Preserve,
    .unpreserve = Unpreserve,
    .freeze = Freeze,
    .unfreeze = Unfreeze,
    .retrieve = Retrieve,
    .can_finish = CanFinish,
    .finish = Finish,
    .get_id = nullptr,
    .owner = nullptr,
};

int FlbPreserve(struct liveupdate_flb_op_args* args) {
  if (control.flb_preserve_error != 0 &&
      (control.flb_preserve_error_only.empty() ||
       control.flb_preserve_error_only == args->flb->compatible)) {
    return control.flb_preserve_error;
  }
  void* mem = kho_alloc_preserve(sizeof(FlbRecord));
  if (IS_ERR(mem)) return static_cast<int>(PTR_ERR(mem));
  *static_cast<FlbRecord*>(mem) = {kRecordMagic, 1};
  args->data = virt_to_phys(mem);
  args->obj = mem;
  control.flb_live_objects++;
  return 0;
}

void FlbUnpreserve(struct liveupdate_flb_op_args* args) {
  kho_unpreserve_free(args->obj);
  control.flb_live_objects--;
}

int FlbRetrieve(struct liveupdate_flb_op_args* args) {
  if (control.flb_retrieve_error != 0) return control.flb_retrieve_error;
  auto* rec = static_cast<FlbRecord*>(phys_to_virt(args->data));
  if (rec->magic != kRecordMagic) return -EINVAL;
  args->obj = rec;
  return 0;
}

void FlbFinish(struct liveupdate_flb_op_args* args) {
  kho_restore_free(args->obj);
  control.flb_live_objects--;
}

const struct liveupdate_flb_ops kFlbOps = {
    .preserve = FlbPreserve,
    .unpreserve = FlbUnpreserve,
    .retrieve = FlbRetrieve,
    .finish = FlbFinish,
    .owner = nullptr,
};

}  // namespace

TestHandlerControl& TestControl() { return control; }
void ResetTestControl() { control = TestHandlerControl(); }

struct liveupdate_file_handler test_file_handler = {&kTestOps, "test-file-v1"};
struct liveupdate_file_handler test_file_handler_b = {&kTestOps, "test-file-b-v1"};
struct liveupdate_flb test_flb = {&kFlbOps, "test-flb-v1"};
struct liveupdate_flb test_flb_2 = {&kFlbOps, "test-flb-2-v1"};

bool IsTestFile(const struct file* f) { return f != nullptr && f->f_op == &kTestFileFops; }

int OpenTestFile(fs::Process& p, uint64_t value) {
  fs::ScopedCurrentProcess current(p);
  const int fd = get_unused_fd_flags(0);
  if (fd < 0) return fd;
  struct file* f = NewTestFile(value);
  if (IS_ERR(f)) {
    put_unused_fd(fd);
    return static_cast<int>(PTR_ERR(f));
  }
  fd_install(fd, f);
  return fd;
}

uint64_t TestFileValue(fs::Process& p, int fd) {
  struct file* f = p.PeekFile(fd);
  return IsTestFile(f) ? ValueOf(f) : UINT64_MAX;
}

int RegisterTestHandler(bool also_b) {
  if (int err = liveupdate_register_file_handler(&test_file_handler); err != 0) return err;
  return also_b ? liveupdate_register_file_handler(&test_file_handler_b) : 0;
}

}  // namespace khosim::testing

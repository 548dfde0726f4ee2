// Compiled as layer handlers: the kernel face of every layer below is
// there. The control for the two probes that must fail to compile.
#include "khosim/handlers/memfd_luo.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/kho/abi/memfd.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/shmem_fs.h"

int khosim_probe_kernel_face(struct liveupdate_file_op_args* args) {
  return args->file == nullptr ? memfd_luo_init() : 0;
}

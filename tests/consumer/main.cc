// Boots a small machine from an installed khosim, kexecs once, and checks
// that the second kernel is generation 2. Exit status 0 means the installed
// package (headers, libraries, dependencies) is usable from outside.
#include <cinttypes>
#include <cstdint>
#include <cstdio>

#include "khosim/machine/machine.h"

int main() {
  khosim::Machine m(khosim::MachineConfig{.ram = 256 * khosim::kMiB, .seed = 3});
  m.Boot();
  const uint64_t before = m.kernel().generation();
  std::printf("boot:  generation %" PRIu64 ", %" PRIu64 " free pages\n", before,
              m.kernel().mm().pages().FreePages());

  const absl::Status status = m.Kexec();
  if (!status.ok()) {
    std::fprintf(stderr, "consumer: kexec failed: %s\n", status.ToString().c_str());
    return 1;
  }
  const uint64_t after = m.kernel().generation();
  std::printf("kexec: generation %" PRIu64 ", %" PRIu64 " free pages\n", after,
              m.kernel().mm().pages().FreePages());

  if (before != 1 || after != 2) {
    std::fprintf(stderr, "consumer: expected generation 1 -> 2, got %" PRIu64 " -> %" PRIu64 "\n",
                 before, after);
    return 1;
  }
  std::printf("consumer: ok\n");
  return 0;
}

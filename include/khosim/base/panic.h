// KernelPanic: how a simulated panic() or BUG() reaches the machine.
//
// Upstream stops the machine; here the panicking kernel unwinds to whoever
// drove it (Machine::Boot, Machine::Kexec or a test calling a kernel-face
// function), which can expect it. After a panic the kernel that raised it is
// dead: the machine refuses further use of it until the next cold boot.
#ifndef KHOSIM_BASE_PANIC_H_
#define KHOSIM_BASE_PANIC_H_

#include <stdexcept>
#include <string>

namespace khosim {

class KernelPanic : public std::runtime_error {
 public:
  KernelPanic(std::string site, const std::string& message)
      : std::runtime_error(message), site_(std::move(site)) {}
  // "file:line" of the panic() / BUG() that raised it.
  const std::string& site() const { return site_; }

 private:
  std::string site_;
};

}  // namespace khosim

#endif  // KHOSIM_BASE_PANIC_H_

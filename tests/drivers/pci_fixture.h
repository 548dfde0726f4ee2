// A machine with PCI hardware, KHO, LUO and the pci-passthrough driver, one
// "vmm" process per boot, and the helpers the PCI tests share: finding a
// hardware function's pci_dev, binding it to the passthrough driver,
// opening its node, preserving it in a session.
#ifndef KHOSIM_TESTS_DRIVERS_PCI_FIXTURE_H_
#define KHOSIM_TESTS_DRIVERS_PCI_FIXTURE_H_

#include <fcntl.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "khosim/drivers/pci.h"
#include "khosim/fs/vfs.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace khosim::testing {

// The smallest machine a PCI flow fits in (64 MiB, kho=on liveupdate=on,
// memfd and pci-passthrough, the example hardware): what countdown runs
// boot thousands of times.
inline MachineConfig SmallPciMachine(uint64_t seed) {
  MachineConfig config{.ram = 64 * kMiB, .seed = seed};
  config.cmdline = "kho=on liveupdate=on";
  config.kernel_image_size = 512 * kKiB;
  config.early_alloc_bytes_per_node = 1 * kMiB;
  config.low_early_alloc_bytes = 1 * kMiB;
  config.build = KernelBuild{{kMemfdModule, kPciPassthroughModule}};
  config.pci = hw::PciExampleTopology();
  return config;
}

class PciFixture : public ::testing::Test {
 protected:
  virtual MachineConfig Config() {
    MachineConfig config{.ram = 1 * kGiB, .seed = 3};
    config.cmdline = "kho=on liveupdate=on";
    config.build = KernelBuild{{kMemfdModule, kPciPassthroughModule}};
    config.pci = hw::PciExampleTopology();
    return config;
  }
  // Out-of-tree modules (a test's own handler) built into every kernel.
  virtual std::vector<KernelModule> ExtraModules() { return {}; }
  void SetUp() override {
    MachineConfig config = Config();
    std::vector<KernelModule> extra = ExtraModules();
    for (const KernelModule& module : extra) config.build->modules.push_back(module.name);
    machine_ = std::make_unique<Machine>(std::move(config));
    for (KernelModule& module : extra) ASSERT_TRUE(machine_->AddModule(std::move(module)).ok());
    machine_->Boot();
    StartUserspace();
  }
  void StartUserspace() {
    machine_->Activate();
    p_ = &machine_->kernel().vfs().CreateProcess("vmm");
    dev_ = -1;
  }
  void Kexec(KexecOptions options = {}) {
    const absl::Status status = machine_->Kexec(std::move(options));
    ASSERT_TRUE(status.ok()) << status;
    StartUserspace();
  }

  Machine& m() { return *machine_; }
  fs::Process& p() { return *p_; }
  drivers::PciCore& core() { return *machine_->kernel().pci(); }
  hw::PciFunction& Hw(const std::string& name) {
    hw::PciFunction* f = machine_->pci().Find(name);
    EXPECT_NE(f, nullptr) << name;
    return *f;
  }
  // The running kernel's device for hardware function |name|, or nullptr.
  struct pci_dev* Dev(const std::string& name) {
    return core().FindFunction(Hw(name));
  }

  // driver_override + drivers_probe to pci-passthrough; 0 or the errno.
  int BindPassthrough(const std::string& name) {
    struct pci_dev* dev = Dev(name);
    if (dev == nullptr) return -ENODEV;
    core().SetDriverOverride(dev, PCI_PASSTHROUGH_DRIVER_NAME);
    return core().Bind(dev);
  }
  std::string Node(const std::string& name) {
    return absl::StrCat("/dev/" PCI_PASSTHROUGH_DRIVER_NAME "/", pci_name(Dev(name)));
  }
  // Binds |name| (if needed), opens its node and turns bus mastering on.
  int OpenDevice(const std::string& name) {
    if (Dev(name)->driver == nullptr) {
      EXPECT_EQ(BindPassthrough(name), 0) << name;
    }
    const int fd = p().Open(Node(name), O_RDWR);
    EXPECT_GE(fd, 0) << name;
    EXPECT_EQ(p().Ioctl(fd, PCI_PASSTHROUGH_SET_MASTER, 1ul), 0);
    return fd;
  }
  int LiveupdateFd() {
    if (dev_ < 0) dev_ = luo::OpenLiveupdate(p());
    return dev_;
  }
  int Create(const std::string& session) {
    return luo::CreateSession(p(), LiveupdateFd(), session);
  }
  int Retrieve(const std::string& session) {
    return luo::RetrieveSession(p(), LiveupdateFd(), session);
  }
  // A session |session| holding device |name| at token 1; the session fd.
  int PreserveDevice(const std::string& session, const std::string& name) {
    const int s = Create(session);
    EXPECT_GE(s, 0);
    const int fd = OpenDevice(name);
    EXPECT_EQ(luo::PreserveFd(p(), s, fd, 1), 0) << name;
    return s;
  }
  // The outgoing / incoming entry of |name| in the FLB "pci": its refcount,
  // or 0 when it has none.
  int OutRef(const std::string& name) {
    struct pci_dev* d = Dev(name);
    return d != nullptr && d->liveupdate.outgoing != nullptr ? d->liveupdate.outgoing->refcount : 0;
  }
  int InRef(const std::string& name) {
    struct pci_dev* d = Dev(name);
    return d != nullptr && d->liveupdate.incoming != nullptr ? d->liveupdate.incoming->refcount : 0;
  }

 private:
  std::unique_ptr<Machine> machine_;
  fs::Process* p_ = nullptr;
  int dev_ = -1;
};

}  // namespace khosim::testing

#endif  // KHOSIM_TESTS_DRIVERS_PCI_FIXTURE_H_

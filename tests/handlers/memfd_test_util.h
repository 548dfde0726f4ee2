// A machine with KHO, LUO and the memfd handler, one "vmm" process per
// boot, and the bookkeeping the memfd tests share: seeded contents, the
// preserved-page ledger, and the handler's record of a preserved file.
#ifndef KHOSIM_TESTS_HANDLERS_MEMFD_TEST_UTIL_H_
#define KHOSIM_TESTS_HANDLERS_MEMFD_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "khosim/abi/block.h"
#include "khosim/abi/luo.h"
#include "khosim/abi/memfd_luo.h"
#include "khosim/fs/shmem.h"
#include "khosim/fs/vfs.h"
#include "khosim/kho/kho.h"
#include "khosim/kho/radix_tree.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/memfd.h"
#include "khosim/linux/mm.h"
#include "khosim/luo/client.h"
#include "khosim/luo/luo.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace khosim::testing {

inline std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t word = rng();
    for (size_t b = 0; b < 8 && i + b < n; ++b) out[i + b] = static_cast<uint8_t>(word >> (8 * b));
  }
  return out;
}

// Pages the running kernel's KHO tracker holds for the next kernel.
inline uint64_t OutgoingPreservedPages(kho::Kho& kho) {
  const kho::RadixGeometry& g = kho.out_tree()->geometry();
  uint64_t pages = 0;
  kho.out_tree()->Walk([&](uint64_t key) {
    PhysAddr pa;
    unsigned order = 0;
    if (kho::DecodeKey(g, key, &pa, &order)) pages += uint64_t{1} << order;
    return 0;
  });
  return pages;
}

// Entry |n| of a handed-over block chain (honouring each block's count), or
// nullptr.
template <typename Entry>
const Entry* BlockChainEntry(uint64_t head_pa, uint64_t n) {
  for (uint64_t pa = head_pa; pa != 0;) {
    const auto* block = static_cast<const abi::KhoBlockHeader*>(phys_to_virt(pa));
    if (n < block->count) return reinterpret_cast<const Entry*>(block + 1) + n;
    n -= block->count;
    pa = block->next;
  }
  return nullptr;
}

// Kernel B, from the handed-over bytes: the LuoFileSer of file |file| of
// session |session|, or nullptr.
inline const abi::LuoFileSer* IncomingFileSer(luo::Luo& luo, size_t session, size_t file) {
  const auto* ses = BlockChainEntry<abi::LuoSessionSer>(luo.incoming_sessions_pa(), session);
  if (ses == nullptr) return nullptr;
  return BlockChainEntry<abi::LuoFileSer>(ses->file_set.files, file);
}

inline abi::MemfdSparseSer* SparseRecord(const abi::LuoFileSer* file) {
  if (file == nullptr) {
    ADD_FAILURE() << "no such file record";
    static abi::MemfdSparseSer dummy;
    dummy = {};
    return &dummy;
  }
  return static_cast<abi::MemfdSparseSer*>(phys_to_virt(file->data));
}

inline abi::MemfdLuoSer* MemfdRecord(const abi::LuoFileSer* file) {
  if (file == nullptr) {
    ADD_FAILURE() << "no such file record";
    static abi::MemfdLuoSer dummy;
    dummy = {};
    return &dummy;
  }
  return static_cast<abi::MemfdLuoSer*>(phys_to_virt(file->data));
}

// The memfd handler a kernel preserves with.
enum class MemfdProfile { kV2, kSparse };

inline std::string ProfileName(MemfdProfile profile) {
  return profile == MemfdProfile::kV2 ? "memfd_v2" : "memfd_sparse";
}

class MemfdFixture : public ::testing::Test {
 protected:
  virtual MemfdProfile Profile() const { return MemfdProfile::kV2; }
  bool Sparse() const { return Profile() == MemfdProfile::kSparse; }

  virtual MachineConfig Config() {
    MachineConfig config{.ram = 2 * kGiB, .seed = 5};
    config.cmdline = "kho=on liveupdate=on";
    config.build = KernelBuild{{kMemfdModule}};
    if (Sparse()) config.build->modules.push_back(kMemfdSparseModule);
    return config;
  }

  void SetUp() override {
    machine_ = std::make_unique<Machine>(Config());
    machine_->Boot();
    StartUserspace();
  }

  void StartUserspace() {
    machine_->Activate();
    p_ = &machine_->kernel().vfs().CreateProcess("vmm");
    p_->SetRlimitNofile(1 << 20);
    dev_ = -1;
  }

  void Kexec() {
    const absl::Status status = machine_->Kexec();
    ASSERT_TRUE(status.ok()) << status;
    StartUserspace();
  }

  Machine& m() { return *machine_; }
  kho::Kho& kho() { return machine_->kernel().kho(); }
  luo::Luo& luo() { return machine_->kernel().luo(); }
  fs::Process& p() { return *p_; }

  int Dev() {
    if (dev_ < 0 || p_->PeekFile(dev_) == nullptr) dev_ = luo::OpenLiveupdate(*p_);
    return dev_;
  }
  int Create(absl::string_view name) { return luo::CreateSession(*p_, Dev(), name); }
  int Retrieve(absl::string_view name) { return luo::RetrieveSession(*p_, Dev(), name); }

  // A memfd of |bytes| bytes filled with RandomBytes(bytes, seed).
  int NewMemfd(size_t bytes, uint64_t seed, unsigned int flags = 0) {
    const int fd = fs::MemfdCreate(*p_, "guest-ram", flags);
    EXPECT_GE(fd, 0);
    if (bytes > 0) {
      const std::vector<uint8_t> data = RandomBytes(bytes, seed);
      EXPECT_EQ(p_->Pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(bytes));
    }
    return fd;
  }

  std::vector<uint8_t> ReadAll(int fd, size_t bytes) {
    std::vector<uint8_t> out(bytes);
    EXPECT_EQ(p_->Pread(fd, out.data(), bytes, 0), static_cast<ssize_t>(bytes));
    return out;
  }

  fs::ShmemInode* Shmem(int fd) { return fs::ShmemInode::FromFile(p_->PeekFile(fd)); }

  std::unique_ptr<Machine> machine_;
  fs::Process* p_ = nullptr;
  int dev_ = -1;
};

}  // namespace khosim::testing

#endif  // KHOSIM_TESTS_HANDLERS_MEMFD_TEST_UTIL_H_

// kmalloc and friends: the running kernel's slab heap, gone with the kernel.
#include "khosim/linux/slab.h"

#include <cstring>

#include "gtest/gtest.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

TEST(SlabTest, ZeroingOverflowAndAccounting) {
  Machine m(MachineConfig{.ram = 512 * kMiB, .seed = 5});
  m.Boot();
  mm::Mm& mm = m.kernel().mm();
  const size_t before = mm.SlabObjects();
  auto* p = static_cast<unsigned char*>(kzalloc(100, GFP_KERNEL));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(p[i], 0) << i;
  EXPECT_EQ(mm.SlabObjects(), before + 1);
  EXPECT_EQ(kcalloc(SIZE_MAX / 2, 4, GFP_KERNEL), nullptr) << "n * size overflows";
  EXPECT_NE(kmalloc(0, GFP_KERNEL), nullptr) << "ZERO_SIZE_PTR is not NULL";
  kfree(p);
  kfree(nullptr);
  EXPECT_EQ(mm.SlabObjects(), before + 1) << "the zero-size object is still there";
  m.faults().FailOnce("kmalloc");
  EXPECT_EQ(kvmalloc_array(4, 8, GFP_KERNEL), nullptr);
}

// What a kernel leaves in its slab disappears with it at kexec (ASan sees
// no leak), and the next kernel cannot free it.
TEST(SlabTest, OldKernelsObjectsGoWithIt) {
  Machine m(MachineConfig{.ram = 512 * kMiB, .seed = 5, .cmdline = "kho=on"});
  m.Boot();
  void* leftover = kmalloc(64, GFP_KERNEL);
  ASSERT_NE(leftover, nullptr);
  ASSERT_TRUE(m.Kexec().ok());
  const size_t objects = m.kernel().mm().SlabObjects();
  m.Activate();
  kfree(leftover);
  EXPECT_EQ(m.kernel().WarnCount("slab never handed out"), 1u);
  EXPECT_EQ(m.kernel().mm().SlabObjects(), objects);
}

}  // namespace
}  // namespace khosim

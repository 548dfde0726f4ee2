// The fault point table (see the header). A new ShouldFail("<name>") in
// the code needs its row here; FaultPointsTest finds a row no run reaches.
#include "khosim/machine/fault_points.h"

namespace khosim {

const std::vector<FaultPointInfo>& FaultPoints() {
  static const std::vector<FaultPointInfo>* table = new std::vector<FaultPointInfo>{
      {"alloc_pages", "the page allocator returns NULL (not for __GFP_NOFAIL)"},
      {"memblock", "an early (memblock) allocation fails: the boot panics or the caller gives up"},
      {"vmalloc", "vmalloc returns NULL"},
      {"kmalloc", "kmalloc, kzalloc and the other slab allocations return NULL"},
      {"kho_alloc_preserve", "kho_alloc_preserve returns ERR_PTR(-ENOMEM)"},
      {"alloc_file", "a new struct file (alloc_file_pseudo, anon inodes) is ERR_PTR(-ENOMEM)"},
      {"get_unused_fd", "no fd can be reserved: -EMFILE"},
      {"copy_from_user", "a copy from userspace (ioctl arguments) faults: -EFAULT"},
      {"copy_to_user", "a copy to userspace (ioctl results) faults: -EFAULT"},
      {"mem_cgroup_charge", "charging a folio to a memory cgroup fails: -ENOMEM"},
      {"shmem_add_to_page_cache", "inserting a folio into a shmem page cache fails: -ENOMEM"},
      {"shmem_inode_acct_blocks", "shmem block accounting refuses: -ENOSPC"},
      {"hugetlb_add_to_page_cache", "inserting a huge folio into a hugetlbfs page cache fails"},
      {"pci_config_read", "a PCI config read fails: PCIBIOS_DEVICE_NOT_FOUND, the value all-ones"},
      {"pci_config_write", "a PCI config write fails and changes nothing"},
      {"try_module_get",
       "taking a reference on a loadable module fails (built-in code has no module, so only "
       "an out-of-tree handler or driver with an owner reaches it)"},
  };
  return *table;
}

}  // namespace khosim

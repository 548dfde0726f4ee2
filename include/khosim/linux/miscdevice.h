// Kernel-face misc character devices (<linux/miscdevice.h>): a driver
// publishes "/dev/<name>"; each open(2) makes a new file on the device's
// inode whose private_data is the miscdevice, then calls fops->open.
#ifndef KHOSIM_LINUX_MISCDEVICE_H_
#define KHOSIM_LINUX_MISCDEVICE_H_

#include "khosim/linux/fs.h"

#define MISC_DYNAMIC_MINOR 255

struct miscdevice {
  int minor;
  const char* name;  // the node under /dev; may contain '/'
  const struct file_operations* fops;
};

// 0, -EINVAL (no name or fops), -EEXIST (the node exists).
int misc_register(struct miscdevice* misc);
void misc_deregister(struct miscdevice* misc);

#endif  // KHOSIM_LINUX_MISCDEVICE_H_

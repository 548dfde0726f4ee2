#ifndef KHOSIM_LINUX_GFP_H_
#define KHOSIM_LINUX_GFP_H_
#include "khosim/mm/gfp.h"
#endif  // KHOSIM_LINUX_GFP_H_

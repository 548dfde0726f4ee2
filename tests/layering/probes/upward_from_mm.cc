// Compiled as layer mm: LUO sits above mm, so its header must not be found.
#include "khosim/luo/luo.h"

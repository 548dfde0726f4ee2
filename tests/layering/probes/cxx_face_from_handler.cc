// Compiled as layer handlers: they see the kernel face only, so KHO's C++
// face must not be found.
#include "khosim/kho/kho.h"

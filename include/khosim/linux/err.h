// ERR_PTR and friends, as the kernel encodes errors in pointers: the top
// MAX_ERRNO addresses are negative errnos.
#ifndef KHOSIM_LINUX_ERR_H_
#define KHOSIM_LINUX_ERR_H_

#include <cstdint>

#define MAX_ERRNO 4095

inline void* ERR_PTR(long error) { return reinterpret_cast<void*>(error); }
inline long PTR_ERR(const void* ptr) { return reinterpret_cast<intptr_t>(ptr); }
inline bool IS_ERR_VALUE(uintptr_t x) { return x >= static_cast<uintptr_t>(-MAX_ERRNO); }
inline bool IS_ERR(const void* ptr) { return IS_ERR_VALUE(reinterpret_cast<uintptr_t>(ptr)); }
inline bool IS_ERR_OR_NULL(const void* ptr) { return ptr == nullptr || IS_ERR(ptr); }
template <typename T>
T* ERR_CAST(const void* ptr) {
  return static_cast<T*>(const_cast<void*>(ptr));
}

#endif  // KHOSIM_LINUX_ERR_H_

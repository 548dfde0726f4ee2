// LUO's handover records ("luo-v5", kernel 7.2+): what LUO leaves in
// preserved memory for the next kernel. Every pointer is a physical
// address; 0 means "none".
//
//   KHO subtree "LUO" (raw blob, at least 32 bytes)
//     LuoSer { compatible "luo-v5", liveupdate_num, sessions_pa, flbs_pa }
//   sessions_pa -> block set of LuoSessionSer (80 B; 51 per 4 KiB block)
//     LuoSessionSer.file_set.files -> block set of LuoFileSer (64 B; 63 per
//     4 KiB block), one chain per session; file_set.count = its entries
//     LuoFileSer.data -> the handler's own preserved record
//   flbs_pa -> one preserved page: LuoFlbHeaderSer { pgcnt = 1, count }
//     then `count` LuoFlbSer { name, data, count } (64 B; at most 63)
#ifndef KHOSIM_ABI_LUO_H_
#define KHOSIM_ABI_LUO_H_

#include <cstddef>
#include <cstdint>

namespace khosim::abi {

inline constexpr char kLuoCompatible[] = "luo-v5";
inline constexpr char kLuoSubtreeName[] = "LUO";
inline constexpr size_t kLuoCompatibleLength = 8;
inline constexpr size_t kLiveupdateSessionNameLength = 64;  // includes the NUL
inline constexpr size_t kLiveupdateCompatLength = 48;       // handlers and FLBs

struct __attribute__((packed)) LuoSer {
  char compatible[kLuoCompatibleLength];
  uint64_t liveupdate_num;
  uint64_t sessions_pa;
  uint64_t flbs_pa;
};
static_assert(sizeof(LuoSer) == 32);
static_assert(offsetof(LuoSer, liveupdate_num) == 8);
static_assert(offsetof(LuoSer, sessions_pa) == 16);
static_assert(offsetof(LuoSer, flbs_pa) == 24);

struct __attribute__((packed)) LuoFileSetSer {
  uint64_t files;  // head of the file block set
  uint64_t count;  // entries across that set
};
static_assert(sizeof(LuoFileSetSer) == 16);

struct __attribute__((packed)) LuoSessionSer {
  char name[kLiveupdateSessionNameLength];
  LuoFileSetSer file_set;
};
static_assert(sizeof(LuoSessionSer) == 80);
static_assert(offsetof(LuoSessionSer, file_set) == 64);

struct __attribute__((packed)) LuoFileSer {
  char compatible[kLiveupdateCompatLength];
  uint64_t data;
  uint64_t token;
};
static_assert(sizeof(LuoFileSer) == 64);
static_assert(offsetof(LuoFileSer, data) == 48);
static_assert(offsetof(LuoFileSer, token) == 56);

struct __attribute__((packed)) LuoFlbHeaderSer {
  uint64_t pgcnt;
  uint64_t count;
};
static_assert(sizeof(LuoFlbHeaderSer) == 16);

struct __attribute__((packed)) LuoFlbSer {
  char name[kLiveupdateCompatLength];
  uint64_t data;
  uint64_t count;
};
static_assert(sizeof(LuoFlbSer) == 64);
static_assert(offsetof(LuoFlbSer, data) == 48);

inline constexpr uint64_t kLuoFlbPageCount = 1;

// LUO_FLB_MAX: FLB records that fit the FLB page (63 with 4 KiB pages).
inline constexpr uint64_t LuoFlbMax(uint64_t page_size) {
  return (kLuoFlbPageCount * page_size - sizeof(LuoFlbHeaderSer)) / sizeof(LuoFlbSer);
}

}  // namespace khosim::abi

#endif  // KHOSIM_ABI_LUO_H_

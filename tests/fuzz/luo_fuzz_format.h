// The input format of luo_incoming_fuzzer, shared with the seed generator.
//
// Kernel A builds genuine LUO state from the first four bytes; the patch
// records that follow rewrite the serialized records (after LUO's reboot
// hook wrote them, before the jump to kernel B); the last bits of the
// header say what kernel B does with what it finds.
//
//   byte 0  sessions: bits 0-2 how many (kLuoSessionCounts: 0..4, 8, and 51
//           and 52, a full session block and one more); bits 3-5 ignored;
//           bit 6 kSessionsLongNames: 63-character names; bit 7
//           kSessionsWideTokens: tokens near 2^64 instead of 0, 1, ...
//   byte 1  files: bits 0-2 m: session i holds (5 i + 1) mod (m + 1) test
//           files (m = 0: every session empty); bit 3 kFilesBig: session 0
//           holds 64 + (bits 4-7) files instead (a second file block)
//   byte 2  kernel A: kALinkFlb / kALinkFlb2 link the test FLBs to the
//           handler (their page entries count its files)
//   byte 3  kernel B: the kB* bits below
//   rest    patch records (at most kMaxLuoPatches), applied in order:
//
//   u8 op   bits 0-2 (LuoPatchOp); bits 3-7 ignored
//     kOpField    u8 field (LuoField, modulo kLuoFields), u8 instance
//                 (PickIndex over the field's instances; a field without
//                 instances skips the record), then a value
//     kOpRaw      u8 page (PickIndex over the page list), u16 offset (modulo
//                 the page size), u8 length, then that many bytes
//     kOpWord     u8 page, u16 offset (rounded down to 8), then a value
//     kOpSize     a value: the blob-size of the "LUO" subtree in the root FDT
//     kOpDrop     nothing: the "LUO" subtree is removed from the root FDT
//   A value is u8 kind (bits 0-1, LuoValueKind), then by kind:
//     kValPointer  u8 ref (PickIndex over the reference list), i8 delta:
//                  the u64 reference + delta
//     kValNumber   u8 which: LuoNumbers()[which % size]
//     kValU64      u64 literal (little-endian)
//     kValBytes    u8 length, then that many bytes (written from the
//                  field's start, cut at its width; a u64 field is 8 wide)
//
// Page list: the luo_ser page, the FLB page, the session blocks, the file
// blocks (session by session), the test handler's records, the test FLBs'
// records, the spare preserved copy (kLuoRefPreservedCopy).
// Reference list: the session blocks, the file blocks, the FLB page, the
// luo_ser page, the records, the FLB records, then the LuoRefSpecial
// addresses with fixed selectors (LuoRefSelector).
//
// PickIndex (container_fuzz_format.h's rule): sel < 0x80 counts from the
// front (sel % n), sel >= 0x80 from the back (0xff is the last element).
#ifndef KHOSIM_TESTS_FUZZ_LUO_FUZZ_FORMAT_H_
#define KHOSIM_TESTS_FUZZ_LUO_FUZZ_FORMAT_H_

#include <cstddef>
#include <cstdint>

namespace khosim::fuzz {

inline constexpr size_t kLuoHeader = 4;
inline constexpr int kMaxLuoPatches = 48;

// byte 0
inline constexpr uint8_t kSessionsCountMask = 0x07;
inline constexpr int kLuoSessionCounts[8] = {0, 1, 2, 3, 4, 8, 51, 52};
inline int LuoSessionCount(uint8_t b0) { return kLuoSessionCounts[b0 & kSessionsCountMask]; }
inline constexpr uint8_t kSessionsLongNames = 0x40;
inline constexpr uint8_t kSessionsWideTokens = 0x80;
// byte 1
inline constexpr uint8_t kFilesPerSessionMask = 0x07;
inline constexpr uint8_t kFilesBig = 0x08;
inline constexpr uint8_t kFilesBigExtraShift = 4;
// byte 2
inline constexpr uint8_t kALinkFlb = 0x01;
inline constexpr uint8_t kALinkFlb2 = 0x02;
// byte 3
inline constexpr uint8_t kBNoHandler = 0x01;    // no file handler (and so no FLB) in B
inline constexpr uint8_t kBNoFlb = 0x02;        // the handler, but no FLB, in B
inline constexpr uint8_t kBFlbGet = 0x04;       // flb_get_incoming after the open, put at the end
inline constexpr uint8_t kBCloseFinish = 0x08;  // close the session fd instead of FINISH
inline constexpr uint8_t kBNoRetrieve = 0x10;   // finish without RETRIEVE_FD
inline constexpr uint8_t kBReverse = 0x20;      // sessions in reverse order
inline constexpr uint8_t kBKexecAgain = 0x40;   // then kexec into kernel C
inline constexpr uint8_t kBSkipOdd = 0x80;      // leave odd-indexed sessions unretrieved

inline constexpr uint64_t kBigSessionFiles = 64;

// Test files kernel A preserves in session |i| for header bytes 0 and 1.
inline uint64_t LuoSessionFiles(uint8_t b0, uint8_t b1, int i) {
  if ((b1 & kFilesBig) != 0 && i == 0 && LuoSessionCount(b0) != 0) {
    return kBigSessionFiles + (b1 >> kFilesBigExtraShift);
  }
  const uint64_t m = b1 & kFilesPerSessionMask;
  return m == 0 ? 0 : (5 * static_cast<uint64_t>(i) + 1) % (m + 1);
}

enum LuoPatchOp : uint8_t {
  kOpField = 0,
  kOpRaw = 1,
  kOpWord = 2,
  kOpSize = 3,
  kOpDrop = 4,
  // 5..7: kOpField as well (the common case)
};
inline constexpr uint8_t kLuoPatchOpMask = 0x07;

enum LuoValueKind : uint8_t {
  kValPointer = 0,
  kValNumber = 1,
  kValU64 = 2,
  kValBytes = 3,
};

enum LuoField : uint8_t {
  kFieldSerCompatible = 0,  // luo_ser
  kFieldSerNum = 1,
  kFieldSerSessions = 2,
  kFieldSerFlbs = 3,
  kFieldSessionNext = 4,  // per session block
  kFieldSessionCount = 5,
  kFieldSessionName = 6,  // per session record
  kFieldSessionFiles = 7,
  kFieldSessionFileCount = 8,
  kFieldFileNext = 9,  // per file block
  kFieldFileCount = 10,
  kFieldFileCompatible = 11,  // per file record
  kFieldFileData = 12,
  kFieldFileToken = 13,
  kFieldFlbPgcnt = 14,  // the FLB page header
  kFieldFlbCount = 15,
  kFieldFlbName = 16,  // per FLB record slot (written ones and one past)
  kFieldFlbData = 17,
  kFieldFlbEntryCount = 18,
};
inline constexpr uint8_t kLuoFields = 19;

enum LuoRefSpecial : uint8_t {
  kLuoRefPreservedCopy = 0,  // a preserved order-0 page holding a copy of the
                             // first session block (else file block, else zeros)
  kLuoRefUnpreserved = 1,    // the same copy in a page nobody preserved
  kLuoRefOrder1Head = 2,     // the same copy at the head of a preserved order-1 block
  kLuoRefOrder1Tail = 3,     // ... and in its second page
  kLuoRefRootFdt = 4,        // KHO's root FDT page (preserved, never LUO's)
  kLuoRefBelowRam = 5,       // 0x1000
  kLuoRefRamEnd = 6,         // the first byte past RAM
  kLuoRefFar = 7,            // 2^45
  kLuoRefZero = 8,           // 0
};
inline constexpr uint8_t kLuoRefSpecials = 9;
inline constexpr uint8_t LuoRefSelector(LuoRefSpecial s) {
  return static_cast<uint8_t>(0xff - (kLuoRefSpecials - 1 - s));
}

inline size_t LuoPickIndex(uint8_t sel, size_t n) {
  if (n == 0) return 0;
  return sel < 0x80 ? sel % n : n - 1 - (0xffu - sel) % n;
}

// kValNumber's table: counts around every capacity and limit, and the
// values that overflow signed and unsigned arithmetic.
inline constexpr uint64_t kLuoNumbers[] = {
    0,
    1,
    2,
    3,
    50,
    51,
    52,
    62,
    63,
    64,
    9999,
    10000,
    10001,
    0xffffffff,
    0x100000000,
    0x7fffffffffffffff,
    0x8000000000000000,
    0xffffffffffffffff,
    31,
    32,
};
inline constexpr size_t kLuoNumberCount = sizeof(kLuoNumbers) / sizeof(kLuoNumbers[0]);

}  // namespace khosim::fuzz

#endif  // KHOSIM_TESTS_FUZZ_LUO_FUZZ_FORMAT_H_

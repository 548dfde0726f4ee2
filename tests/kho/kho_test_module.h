// A port of the upstream KHO test module's scenario (lib/test_kho.c), in
// our own code: a data set of folios of random order filled with random
// bytes, an index of "phys | order" in a vmalloc area preserved with
// kho_preserve_vmalloc, and a "kho-test-v1" record with a checksum, found
// again after kexec through a KHO subtree.
#ifndef KHOSIM_TESTS_KHO_KHO_TEST_MODULE_H_
#define KHOSIM_TESTS_KHO_KHO_TEST_MODULE_H_

#include <cstdint>
#include <string>

#include "khosim/machine/machine.h"

namespace khosim::testing {

// The record the subtree points at (one preserved page).
struct KhoTestRecord {
  char compatible[16];  // "kho-test-v1"
  uint32_t magic;       // kKhoTestMagic
  uint32_t nr_folios;
  uint64_t csum;
  uint64_t folios_info[2];  // the struct kho_vmalloc of the index
};
inline constexpr uint32_t kKhoTestMagic = 0x4b484f21;  // "KHO!"

struct KhoTestSet {
  uint32_t nr_folios = 0;
  uint64_t bytes = 0;
  uint64_t csum = 0;
};

// Boot 1: builds and preserves a data set of up to |max_mem| bytes under
// subtree |name|. Returns what it preserved; ADD_FAILURE on any error.
KhoTestSet PreserveTestSet(Machine& m, const std::string& name, uint64_t max_mem);

// After kexec: finds |name|, restores the index and every folio, checks
// each folio's order and the checksum. Returns the set it found (nr_folios
// 0 if the subtree is absent). With |keep| the restored folios stay
// allocated and are preserved again under the same name, so the set also
// crosses the next kexec; otherwise they are freed.
KhoTestSet RestoreTestSet(Machine& m, const std::string& name, bool keep, bool* ok);

}  // namespace khosim::testing

#endif  // KHOSIM_TESTS_KHO_KHO_TEST_MODULE_H_

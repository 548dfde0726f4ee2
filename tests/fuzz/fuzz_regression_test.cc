// khosim_fuzz_regression: replays every checked-in corpus file through its
// fuzz target, with whatever compiler built the tree (no libFuzzer needed).
// The targets are compiled into this binary with LLVMFuzzerTestOneInput
// renamed per target (see CMakeLists.txt). A target aborts on a broken
// property, so a failing file shows as a crashed test with the file name
// printed just before.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern "C" int KhoFdtFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int KhoRadixWalkFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int KhoIncomingFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int KhoBlockSetFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int KhoXarrayFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LuoIncomingFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int PciIncomingFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int IommuIncomingFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int IommufdIncomingFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int VfioIncomingFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;
using Target = int (*)(const uint8_t*, size_t);

std::vector<fs::path> CorpusFiles(const std::string& target) {
  std::vector<fs::path> files;
  const fs::path dir = fs::path(KHOSIM_FUZZ_CORPUS_DIR) / target;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void Replay(const std::string& target, Target fn) {
  const std::vector<fs::path> files = CorpusFiles(target);
  ASSERT_FALSE(files.empty()) << "no corpus files for " << target << " under "
                              << KHOSIM_FUZZ_CORPUS_DIR;
  for (const fs::path& file : files) {
    std::ifstream f(file, std::ios::binary);
    ASSERT_TRUE(f.good()) << file;
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)),
                                     std::istreambuf_iterator<char>());
    std::fprintf(stderr, "[fuzz-regression] %s (%zu bytes)\n", file.c_str(), bytes.size());
    // Copy to an exact-size heap buffer so ASan sees reads past the end.
    std::vector<uint8_t> exact(bytes);
    EXPECT_EQ(fn(exact.empty() ? nullptr : exact.data(), exact.size()), 0) << file;
  }
  // The empty input is valid for every target.
  EXPECT_EQ(fn(nullptr, 0), 0);
}

TEST(FuzzRegressionTest, KhoFdtFuzzer) { Replay("kho_fdt_fuzzer", KhoFdtFuzzerTestOneInput); }

TEST(FuzzRegressionTest, KhoRadixWalkFuzzer) {
  Replay("kho_radix_walk_fuzzer", KhoRadixWalkFuzzerTestOneInput);
}

TEST(FuzzRegressionTest, KhoIncomingFuzzer) {
  Replay("kho_incoming_fuzzer", KhoIncomingFuzzerTestOneInput);
}

TEST(FuzzRegressionTest, KhoBlockSetFuzzer) {
  Replay("kho_block_set_fuzzer", KhoBlockSetFuzzerTestOneInput);
}

TEST(FuzzRegressionTest, KhoXarrayFuzzer) {
  Replay("kho_xarray_fuzzer", KhoXarrayFuzzerTestOneInput);
}

TEST(FuzzRegressionTest, LuoIncomingFuzzer) {
  Replay("luo_incoming_fuzzer", LuoIncomingFuzzerTestOneInput);
}

TEST(FuzzRegressionTest, PciIncomingFuzzer) {
  Replay("pci_incoming_fuzzer", PciIncomingFuzzerTestOneInput);
}

TEST(FuzzRegressionTest, IommuIncomingFuzzer) {
  Replay("iommu_incoming_fuzzer", IommuIncomingFuzzerTestOneInput);
}

TEST(FuzzRegressionTest, IommufdIncomingFuzzer) {
  Replay("iommufd_incoming_fuzzer", IommufdIncomingFuzzerTestOneInput);
}

TEST(FuzzRegressionTest, VfioIncomingFuzzer) {
  Replay("vfio_incoming_fuzzer", VfioIncomingFuzzerTestOneInput);
}

}  // namespace

# Every dependency comes from a Debian package; a missing one stops the
# configure step with the package to install (scripts/install-deps.sh
# installs them all).

function(khosim_require found package what)
  if(NOT ${found})
    message(FATAL_ERROR
      "khosim needs ${what}. On Debian/Ubuntu: apt-get install ${package} "
      "(or run scripts/install-deps.sh).")
  endif()
endfunction()

find_package(absl CONFIG QUIET)
khosim_require(absl_FOUND libabsl-dev "Abseil")

find_package(Boost 1.74 QUIET)
khosim_require(Boost_FOUND libboost-dev "Boost (Boost.Intrusive headers)")
if(NOT EXISTS "${Boost_INCLUDE_DIRS}/boost/intrusive/list.hpp")
  khosim_require(FALSE libboost-dev "Boost.Intrusive headers")
endif()

find_path(KHOSIM_FDT_INCLUDE_DIR libfdt.h)
find_library(KHOSIM_FDT_LIBRARY NAMES fdt)
if(KHOSIM_FDT_INCLUDE_DIR AND KHOSIM_FDT_LIBRARY)
  set(KHOSIM_FDT_FOUND TRUE)
endif()
khosim_require(KHOSIM_FDT_FOUND libfdt-dev "libfdt")
if(NOT TARGET khosim::fdt)
  add_library(khosim::fdt UNKNOWN IMPORTED)
  set_target_properties(khosim::fdt PROPERTIES
    IMPORTED_LOCATION "${KHOSIM_FDT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${KHOSIM_FDT_INCLUDE_DIR}")
endif()

find_package(Threads REQUIRED)

if(KHOSIM_BUILD_TESTS)
  find_package(GTest CONFIG QUIET)
  if(NOT GTest_FOUND)
    find_package(GTest QUIET)
  endif()
  khosim_require(GTest_FOUND "libgtest-dev libgmock-dev" "GoogleTest and GoogleMock")
endif()
if(KHOSIM_BUILD_BENCHMARKS)
  find_package(benchmark CONFIG QUIET)
  khosim_require(benchmark_FOUND libbenchmark-dev "Google Benchmark")
endif()

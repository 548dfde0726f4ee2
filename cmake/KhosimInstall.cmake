# Installs the libraries, headers, the khosim CLI and a CMake package so an
# out-of-tree project can do
#
#   find_package(khosim 0.3 REQUIRED)
#   target_link_libraries(app PRIVATE khosim::khosim)
#
# (tests/consumer is that project; .ci/run builds it against an install).
# khosim_warnings is linked as $<BUILD_INTERFACE:...> everywhere, so our
# warning flags never reach consumers and the export set does not need it.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(KHOSIM_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/khosim"
    CACHE STRING "Where the khosim CMake package files are installed")

get_property(KHOSIM_LAYER_TARGETS GLOBAL PROPERTY KHOSIM_LAYER_TARGETS)
install(TARGETS ${KHOSIM_LAYER_TARGETS} khosim
  EXPORT khosimTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(TARGETS khosim_cli RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/khosim"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  FILES_MATCHING PATTERN "*.h")

install(EXPORT khosimTargets
  FILE khosimTargets.cmake
  NAMESPACE khosim::
  DESTINATION "${KHOSIM_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/khosimConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/khosimConfig.cmake"
  INSTALL_DESTINATION "${KHOSIM_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/khosimConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/khosimConfig.cmake"
  "${PROJECT_BINARY_DIR}/khosimConfigVersion.cmake"
  DESTINATION "${KHOSIM_INSTALL_CMAKEDIR}")

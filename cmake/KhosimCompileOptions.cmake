# Warnings and sanitizers for khosim's own targets (never forced on consumers).
add_library(khosim_warnings INTERFACE)
target_compile_options(khosim_warnings INTERFACE
  -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
  $<$<CXX_COMPILER_ID:Clang>:-Wthread-safety>
  $<$<BOOL:${KHOSIM_WERROR}>:-Werror>)

if(KHOSIM_SANITIZE)
  add_compile_options(-fsanitize=${KHOSIM_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${KHOSIM_SANITIZE})
endif()

find_program(KHOSIM_CCACHE ccache)
if(KHOSIM_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER ${KHOSIM_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${KHOSIM_CCACHE})
endif()

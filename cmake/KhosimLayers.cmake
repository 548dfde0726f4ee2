# The layers of DESIGN.md section 2 as CMake targets, from cmake/layers.json.
#
# Every layer gets its own include directory in the build tree holding only
# its own public headers (symbolic links into include/), split into the
# kernel face (khosim/linux/, khosim/uapi/) and the rest (the C++ face). A
# layer's target sees its own directories and, through its links, those of
# the layers below it: an #include of a higher layer's header does not
# compile. A layer marked kernel_face_only (the handlers) compiles against
# the kernel-face directories alone, while its users still get everything.
# scripts/check_layers.py checks the same table for what the compiler cannot
# see (headers that are never compiled on their own, private headers, the
# kernel face including the C++ face).
#
#   khosim_add_layer(<layer> [SOURCES <files...>] [PUBLIC <libs...>]
#                    [PRIVATE <libs...>])
# makes the layer's target (khosim_<layer>, from the table), links the
# layers the table puts directly below it, and installs it in the export
# set. Without SOURCES the target is an INTERFACE library.

include(GNUInstallDirs)

set(KHOSIM_LAYER_TABLE "${PROJECT_SOURCE_DIR}/cmake/layers.json")
set(KHOSIM_LAYER_STAGE "${PROJECT_BINARY_DIR}/layers")
set_property(DIRECTORY "${PROJECT_SOURCE_DIR}" APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             "${KHOSIM_LAYER_TABLE}")

file(READ "${KHOSIM_LAYER_TABLE}" _khosim_layers_json)
file(REMOVE_RECURSE "${KHOSIM_LAYER_STAGE}")
string(JSON _khosim_nlayers LENGTH "${_khosim_layers_json}" layers)
math(EXPR _khosim_last "${_khosim_nlayers} - 1")
set(_khosim_claimed "")
foreach(_i RANGE ${_khosim_last})
  string(JSON _name GET "${_khosim_layers_json}" layers ${_i} name)
  string(JSON _target GET "${_khosim_layers_json}" layers ${_i} target)
  string(JSON _face_only ERROR_VARIABLE _no_flag GET "${_khosim_layers_json}" layers ${_i}
         kernel_face_only)
  if(_no_flag)
    set(_face_only OFF)
  endif()
  # Direct dependencies, and every layer below (for kernel-face-only users).
  set(_deps "")
  set(_below "")
  string(JSON _ndeps LENGTH "${_khosim_layers_json}" layers ${_i} deps)
  if(_ndeps GREATER 0)
    math(EXPR _dlast "${_ndeps} - 1")
    foreach(_d RANGE ${_dlast})
      string(JSON _dep GET "${_khosim_layers_json}" layers ${_i} deps ${_d})
      if(NOT DEFINED KHOSIM_LAYER_${_dep}_TARGET)
        message(FATAL_ERROR "${KHOSIM_LAYER_TABLE}: layer ${_name} depends on ${_dep}, "
                            "which is not below it")
      endif()
      list(APPEND _deps ${_dep})
      list(APPEND _below ${_dep} ${KHOSIM_LAYER_${_dep}_BELOW})
    endforeach()
  endif()
  list(REMOVE_DUPLICATES _below)
  # Stage the layer's public headers.
  set(_stage "${KHOSIM_LAYER_STAGE}/${_name}")
  file(MAKE_DIRECTORY "${_stage}/face" "${_stage}/cpp")
  string(JSON _npaths LENGTH "${_khosim_layers_json}" layers ${_i} paths)
  math(EXPR _plast "${_npaths} - 1")
  foreach(_p RANGE ${_plast})
    string(JSON _path GET "${_khosim_layers_json}" layers ${_i} paths ${_p})
    if(NOT _path MATCHES "^include/")
      continue()
    endif()
    if(_path MATCHES "/$")
      file(GLOB_RECURSE _headers CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/${_path}*.h")
    elseif(EXISTS "${PROJECT_SOURCE_DIR}/${_path}")
      set(_headers "${PROJECT_SOURCE_DIR}/${_path}")
    else()
      set(_headers "")
    endif()
    foreach(_header ${_headers})
      file(RELATIVE_PATH _rel "${PROJECT_SOURCE_DIR}/include" "${_header}")
      if(_rel IN_LIST _khosim_claimed)
        message(FATAL_ERROR "${KHOSIM_LAYER_TABLE}: include/${_rel} is claimed by two layers")
      endif()
      list(APPEND _khosim_claimed "${_rel}")
      if(_rel MATCHES "^khosim/(linux|uapi)/")
        set(_dest "${_stage}/face/${_rel}")
      else()
        set(_dest "${_stage}/cpp/${_rel}")
      endif()
      get_filename_component(_dir "${_dest}" DIRECTORY)
      file(MAKE_DIRECTORY "${_dir}")
      file(CREATE_LINK "${_header}" "${_dest}" SYMBOLIC)
    endforeach()
  endforeach()
  set(KHOSIM_LAYER_${_name}_TARGET ${_target})
  set(KHOSIM_LAYER_${_name}_DEPS ${_deps})
  set(KHOSIM_LAYER_${_name}_BELOW ${_below})
  set(KHOSIM_LAYER_${_name}_FACE_ONLY ${_face_only})
  list(APPEND KHOSIM_LAYERS ${_name})
endforeach()

# Every header under include/ must belong to a layer, or nothing could
# include it.
file(GLOB_RECURSE _khosim_all_headers CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/include/*.h")
foreach(_header ${_khosim_all_headers})
  file(RELATIVE_PATH _rel "${PROJECT_SOURCE_DIR}/include" "${_header}")
  if(NOT _rel IN_LIST _khosim_claimed)
    message(FATAL_ERROR "include/${_rel} belongs to no layer of ${KHOSIM_LAYER_TABLE}")
  endif()
endforeach()

# Gives |target| what the sources of |layer| compile against: the layer's
# own headers and, for the layers below, either everything (through their
# targets) or only their kernel face (a kernel_face_only layer).
function(_khosim_layer_view target layer)
  set(stage "${KHOSIM_LAYER_STAGE}/${layer}")
  target_include_directories(${target} PRIVATE ${stage}/face ${stage}/cpp)
  if(KHOSIM_LAYER_${layer}_FACE_ONLY)
    foreach(below ${KHOSIM_LAYER_${layer}_BELOW})
      target_include_directories(${target} PRIVATE ${KHOSIM_LAYER_STAGE}/${below}/face)
    endforeach()
  else()
    foreach(dep ${KHOSIM_LAYER_${layer}_DEPS})
      target_link_libraries(${target} PRIVATE ${KHOSIM_LAYER_${dep}_TARGET})
    endforeach()
  endif()
endfunction()

function(khosim_add_layer name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  if(NOT DEFINED KHOSIM_LAYER_${name}_TARGET)
    message(FATAL_ERROR "khosim_add_layer: no layer ${name} in ${KHOSIM_LAYER_TABLE}")
  endif()
  set(target ${KHOSIM_LAYER_${name}_TARGET})
  set(stage "${KHOSIM_LAYER_STAGE}/${name}")
  set(deps "")
  foreach(dep ${KHOSIM_LAYER_${name}_DEPS})
    list(APPEND deps ${KHOSIM_LAYER_${dep}_TARGET})
  endforeach()
  if(ARG_SOURCES)
    add_library(${target} STATIC ${ARG_SOURCES})
    _khosim_layer_view(${target} ${name})
    target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:khosim_warnings> ${ARG_PRIVATE})
    target_link_libraries(${target} PUBLIC ${ARG_PUBLIC})
  else()
    add_library(${target} INTERFACE)
    target_link_libraries(${target} INTERFACE ${ARG_PUBLIC})
  endif()
  # What users of the layer see: its headers and every layer below.
  target_include_directories(${target} INTERFACE
    $<BUILD_INTERFACE:${stage}/face> $<BUILD_INTERFACE:${stage}/cpp>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} INTERFACE ${deps})
  set_property(GLOBAL APPEND PROPERTY KHOSIM_LAYER_TARGETS ${target})
endfunction()

# khosim_layer_probe(<name> <layer> <sources...>): an object library, not
# built by default, whose sources compile exactly as |layer|'s own do; the
# layering tests build probes to show that an upward include fails.
function(khosim_layer_probe name layer)
  add_library(${name} OBJECT EXCLUDE_FROM_ALL ${ARGN})
  _khosim_layer_view(${name} ${layer})
endfunction()

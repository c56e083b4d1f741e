# SPDX-License-Identifier: MIT
# Test registration. Unit tests sit beside their module as src/<mod>/*_test.c
# (cmocka); integration tests are tests/integration/*.sh and *_itest.c and
# start a real parleyd. Fuzz targets are tests/fuzz/*_fuzz.c (PARLEY_FUZZ).
find_library(CMOCKA_LIB cmocka REQUIRED)

set(MODULE_LIB_common pl_base)
set(MODULE_LIB_proto pl_base)
set(MODULE_LIB_store pl_store)
set(MODULE_LIB_net pl_net)
set(MODULE_LIB_core pl_core)
set(MODULE_LIB_router pl_core)
set(MODULE_LIB_client pl_client_obj)
set(MODULE_LIB_bench pl_bench)
set(MODULE_LIB_crypto pl_crypto)

file(GLOB UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/*/*_test.c)
foreach(t ${UNIT_TESTS})
  get_filename_component(name ${t} NAME_WE)
  get_filename_component(dir ${t} DIRECTORY)
  get_filename_component(mod ${dir} NAME)
  add_executable(${name} ${t})
  # A module's shared test fixture, src/MOD/MOD_test_util.c, goes into each of its tests.
  if(EXISTS ${dir}/${mod}_test_util.c)
    target_sources(${name} PRIVATE ${dir}/${mod}_test_util.c)
  endif()
  target_link_libraries(${name} PRIVATE ${MODULE_LIB_${mod}} ${CMOCKA_LIB})
  add_test(NAME unit.${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(unit.${name} PROPERTIES TIMEOUT 120
    ENVIRONMENT "PARLEY_SOURCE_DIR=${CMAKE_SOURCE_DIR};PARLEY_BUILD_DIR=${CMAKE_BINARY_DIR}")
endforeach()

# Interop tests (src/crypto/*_signal_test.c) run Signal's reference library,
# libsignal-protocol-c, as the peer; only they link it, never the product.
pkg_check_modules(SIGNAL REQUIRED IMPORTED_TARGET libsignal-protocol-c)
file(GLOB SIGNAL_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/crypto/*_signal_test.c)
foreach(t ${SIGNAL_TESTS})
  get_filename_component(name ${t} NAME_WE)
  target_sources(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src/crypto/signal_provider_test_util.c)
  target_link_libraries(${name} PRIVATE PkgConfig::SIGNAL)
endforeach()

# C integration tests drive parleyd through libparley and its internals.
file(GLOB ITESTS_C CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*_itest.c)
file(GLOB HARNESS_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/harness/*.c)
foreach(t ${ITESTS_C})
  get_filename_component(name ${t} NAME_WE)
  add_executable(${name} ${t} ${HARNESS_SRC})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/harness)
  target_link_libraries(${name} PRIVATE pl_client_obj ${CMOCKA_LIB} PkgConfig::JANSSON)
  if(TARGET parleyd AND TARGET parley)
    add_dependencies(${name} parleyd parley)
  endif()
  add_test(NAME integration.${name} COMMAND ${name})
  set_tests_properties(integration.${name} PROPERTIES TIMEOUT 300
    ENVIRONMENT "PARLEY_SOURCE_DIR=${CMAKE_SOURCE_DIR};PARLEY_BUILD_DIR=${CMAKE_BINARY_DIR}")
endforeach()

# Shell integration tests drive the real parley CLI.
file(GLOB ITESTS_SH CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*.sh)
foreach(t ${ITESTS_SH})
  get_filename_component(name ${t} NAME_WE)
  add_test(NAME integration.${name} COMMAND bash ${t})
  set_tests_properties(integration.${name} PROPERTIES TIMEOUT 300
    ENVIRONMENT "PARLEY_SOURCE_DIR=${CMAKE_SOURCE_DIR};PARLEY_BUILD_DIR=${CMAKE_BINARY_DIR}")
endforeach()

if(PARLEY_FUZZ)
  file(GLOB FUZZERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/*_fuzz.c)
  foreach(f ${FUZZERS})
    get_filename_component(name ${f} NAME_WE)
    add_executable(${name} ${f})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE pl_core pl_crypto)
    add_test(NAME fuzz.${name}
      COMMAND ${name} -max_total_time=20 -timeout=10 -rss_limit_mb=2048
              -dict=${CMAKE_SOURCE_DIR}/tests/fuzz/${name}.dict
              ${CMAKE_BINARY_DIR}/fuzz-corpus/${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name})
    set_tests_properties(fuzz.${name} PROPERTIES TIMEOUT 120)
    file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz-corpus/${name})
  endforeach()
endif()

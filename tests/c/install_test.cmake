# ctest CApi.InstallAndPkgConfig: `cmake --install` into a temporary prefix, then compile and run
# a C11 program using only `pkg-config --cflags --libs duet` from that prefix.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DCC=... -P install_test.cmake
set(prefix "${BUILD_DIR}/install-test-prefix")
file(REMOVE_RECURSE "${prefix}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
file(GLOB_RECURSE pc_files "${prefix}/*/duet.pc")
list(LENGTH pc_files n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one installed duet.pc under ${prefix}, found: ${pc_files}")
endif()
get_filename_component(pc_dir "${pc_files}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
execute_process(COMMAND pkg-config --cflags --libs duet OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs duet failed")
endif()
execute_process(COMMAND pkg-config --variable=libdir duet OUTPUT_VARIABLE libdir
                OUTPUT_STRIP_TRAILING_WHITESPACE)
separate_arguments(flag_list UNIX_COMMAND "${flags}")
set(exe "${prefix}/installed_c_program")
execute_process(COMMAND ${CC} -std=c11 -Wall -Wextra -Wpedantic -Werror
                        "${SOURCE_DIR}/tests/c/installed_program.c" -o "${exe}" ${flag_list}
                        "-Wl,-rpath,${libdir}"
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling against the installed duet.h failed: ${err}")
endif()
execute_process(COMMAND "${exe}" "${SOURCE_DIR}/tests/fixtures/tiny-demo" RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the installed-library program failed (${rc})")
endif()
file(REMOVE_RECURSE "${prefix}")

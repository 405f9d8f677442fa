// Shared helpers for the libFuzzer targets: an invariant check that aborts (libFuzzer reports
// the abort as a crash and saves the input), and a bounded byte reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(cond, ...)                                                           \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, "" __VA_ARGS__);                                             \
      std::fprintf(stderr, "\n");                                                       \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

namespace duet::fuzz {

// Every error message must be non-empty and start with the name given for the input.
inline bool names_source(const std::string& message, const std::string& name) {
  return !message.empty() && message.rfind(name, 0) == 0;
}

inline std::string as_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace duet::fuzz

// Small helpers shared by src/io/*.cpp (internal; not part of the public API).
#pragma once

#include <string>
#include <string_view>

#include "duet/status.h"

namespace duet {

// 'name' for error messages: control bytes escaped as \xNN, cut to ~200 bytes.
std::string quote_name(std::string_view s);
// s with every byte outside printable ASCII escaped as \xNN (for third-party messages that may
// quote raw input bytes), cut to `max` bytes.
std::string ascii_escaped(std::string_view s, size_t max = 400);
// s cut to at most `max` bytes, with "..." appended when cut.
std::string truncated(std::string_view s, size_t max);
// Reads a whole (regular) file; errors name the path. Refuses files larger than `max_bytes`.
Result<std::string> read_file(const std::string& path, size_t max_bytes);
// Writes `path + ".tmp"` then renames it over `path`.
Status write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace duet

// Backend kinds and the process-wide backend singletons.
#include "backends/backend.h"

namespace duet {

const char* backend_kind_name(BackendKind k) {
  return k == BackendKind::kCpu ? "cpu" : "reference";
}

Result<BackendKind> parse_backend_kind(const std::string& s) {
  if (s == "cpu") return BackendKind::kCpu;
  if (s == "reference") return BackendKind::kReference;
  return invalid_argument("unknown backend '" + s + "' (expected cpu or reference)");
}

const Backend& get_backend(BackendKind k) {
  return k == BackendKind::kCpu ? cpu_backend() : reference_backend();
}

}  // namespace duet

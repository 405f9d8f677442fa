// Backend kinds and the process-wide backend singletons.
#include "backends/backend.h"

namespace duet {

const char* backend_kind_name(BackendKind k) {
  switch (k) {
    case BackendKind::kCpu:
      return "cpu";
    case BackendKind::kReference:
      return "reference";
    case BackendKind::kReferenceDevice:
      return "reference-device";
  }
  return "?";
}

Result<BackendKind> parse_backend_kind(const std::string& s) {
  if (s == "cpu") return BackendKind::kCpu;
  if (s == "reference") return BackendKind::kReference;
  if (s == "reference-device") return BackendKind::kReferenceDevice;
  return invalid_argument("unknown backend '" + s +
                          "' (expected cpu, reference or reference-device)");
}

const Backend& get_backend(BackendKind k) {
  switch (k) {
    case BackendKind::kCpu:
      return cpu_backend();
    case BackendKind::kReferenceDevice:
      return reference_device_backend();
    case BackendKind::kReference:
      break;
  }
  return reference_backend();
}

}  // namespace duet

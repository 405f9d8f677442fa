// Backend kinds and the process-wide backend singletons.
#include "backends/backend.h"
#include "backends/gpu_devices.h"

namespace duet {

const char* backend_kind_name(BackendKind k) {
  switch (k) {
    case BackendKind::kCpu:
      return "cpu";
    case BackendKind::kReference:
      return "reference";
    case BackendKind::kReferenceDevice:
      return "reference-device";
    case BackendKind::kCuda:
      return "cuda";
  }
  return "?";
}

Result<BackendKind> parse_backend_kind(const std::string& s) {
  if (s == "cpu") return BackendKind::kCpu;
  if (s == "reference") return BackendKind::kReference;
  if (s == "reference-device") return BackendKind::kReferenceDevice;
  if (s == "cuda") return BackendKind::kCuda;
  return invalid_argument("unknown backend '" + s +
                          "' (expected cpu, reference, reference-device or cuda)");
}

Result<const Backend*> find_backend(BackendKind k) {
  if (k == BackendKind::kCuda) {
    DUET_RETURN_IF_ERROR(cuda_backend_status());
#ifdef DUET_HAVE_CUDA
    return &cuda_backend();
#endif
  }
  return &get_backend(k);
}

const Backend& get_backend(BackendKind k) {
  switch (k) {
    case BackendKind::kCpu:
      return cpu_backend();
    case BackendKind::kReferenceDevice:
      return reference_device_backend();
    case BackendKind::kCuda:
#ifdef DUET_HAVE_CUDA
      return cuda_backend();
#else
      break;  // precondition violated (find_backend reports it); never reached from the model
#endif
    case BackendKind::kReference:
      break;
  }
  return reference_backend();
}

#ifndef DUET_HAVE_CUDA
GpuReport cuda_devices() {
  GpuReport r;
  r.why_none = "this duet was built without CUDA (cmake -DDUET_CUDA=ON)";
  return r;
}
Status cuda_backend_status() {
  return unimplemented("this duet was built without CUDA (cmake -DDUET_CUDA=ON)");
}
#endif

}  // namespace duet

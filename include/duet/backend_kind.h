// Which implementation of the ops a Model runs on (see docs/architecture.md, "Backends").
#pragma once

#include <string>

#include "duet/status.h"

namespace duet {

enum class BackendKind {
  kCpu,        // optimised: oneDNN + FFTW + OpenMP
  kReference,  // naive single-threaded loops (the reference twin, for tests)
  // The reference ops behind a device-style memory boundary: host data crosses only by upload /
  // download, and every op checks that its pointers lie in this backend's buffers. The stand-in
  // for a GPU backend that proves the model keeps every tensor in backend memory.
  kReferenceDevice,
  // NVIDIA GPUs (src/backends/cuda/): always in the enum; usable only in a build with
  // -DDUET_CUDA=ON on a machine with a GPU and driver (Model::load says which is missing).
  kCuda,
};
// "cpu" | "reference" | "reference-device" | "cuda"
const char* backend_kind_name(BackendKind k);
Result<BackendKind> parse_backend_kind(const std::string& s);

}  // namespace duet

// Which implementation of the ops a Model runs on (see docs/architecture.md, "Backends").
#pragma once

#include <string>

#include "duet/status.h"

namespace duet {

enum class BackendKind {
  kCpu,        // optimised: oneDNN + FFTW + OpenMP
  kReference,  // naive single-threaded loops (the reference twin, for tests)
};
const char* backend_kind_name(BackendKind k);  // "cpu" | "reference"
Result<BackendKind> parse_backend_kind(const std::string& s);

}  // namespace duet

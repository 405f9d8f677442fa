// Placeholder until the optimised backend lands.
#include "backends/backend.h"
namespace duet {
const Backend& cpu_backend() { return reference_backend(); }
}  // namespace duet

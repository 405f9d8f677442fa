// The CUDA backend as the rest of duet sees it, in every build: whether it was compiled in,
// whether a GPU is usable, and the GPUs (for `duet info`). Built without CUDA
// (-DDUET_CUDA=OFF, the default) these answer "not built" (backend_registry.cpp); with it,
// src/backends/cuda/cuda_devices.cpp asks the CUDA runtime.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "duet/status.h"

namespace duet {

struct GpuDevice {
  int index = 0;
  std::string name;
  int sms = 0;                     // streaming multiprocessors
  int64_t memory_bytes = 0;        // global memory
  int cc_major = 0, cc_minor = 0;  // compute capability
  int clock_mhz = 0, memory_clock_mhz = 0;
};

struct GpuReport {
  bool compiled = false;        // built with -DDUET_CUDA=ON
  std::string runtime, driver;  // "13.0" (empty when unknown)
  std::vector<GpuDevice> devices;
  std::string why_none;  // one line when devices is empty
};

GpuReport cuda_devices();

// ok when BackendKind::kCuda can run here; else one line: kUnimplemented "this duet was built
// without CUDA (cmake -DDUET_CUDA=ON)" or kNotFound "cuda backend: no usable GPU (...)".
Status cuda_backend_status();

}  // namespace duet

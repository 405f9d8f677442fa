// GPU discovery for `duet info` and the backend's availability check (gpu_devices.h).
#include <cuda_runtime.h>

#include "backends/gpu_devices.h"

namespace duet {
namespace {

std::string version_string(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

}  // namespace

GpuReport cuda_devices() {
  GpuReport r;
  r.compiled = true;
  int v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) r.runtime = version_string(v);
  if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0) r.driver = version_string(v);
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    r.why_none = std::string("no usable GPU (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")";
    return r;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    GpuDevice d;
    d.index = i;
    d.name = p.name;
    d.sms = p.multiProcessorCount;
    d.memory_bytes = static_cast<int64_t>(p.totalGlobalMem);
    d.cc_major = p.major;
    d.cc_minor = p.minor;
    int khz = 0;
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, i) == cudaSuccess)
      d.clock_mhz = khz / 1000;
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, i) == cudaSuccess)
      d.memory_clock_mhz = khz / 1000;
    r.devices.push_back(d);
  }
  if (r.devices.empty()) r.why_none = "no CUDA device";
  return r;
}

Status cuda_backend_status() {
  static const Status s = [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
      return not_found(std::string("cuda backend: no usable GPU (cudaGetDeviceCount: ") +
                       cudaGetErrorString(e) + ")");
    if (n < 1) return not_found("cuda backend: no usable GPU (no CUDA device)");
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
    if (major < 8)
      return unimplemented("cuda backend: GPU 0 has compute capability " + std::to_string(major) +
                           ".x; this build targets 8.0+ (A100, H100)");
    return Status::ok();
  }();
  return s;
}

}  // namespace duet

// The CUDA backend's shared state (cuda_common.h): device allocations, the one stream, the
// cuBLASLt handle and workspace, the scratch, the sticky error report.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/cuda_common.h"
#include "backends/gpu_devices.h"

namespace duet::cuda {

Result<DeviceMem> DeviceMem::make(size_t bytes, const void* host, const char* what) {
  DeviceMem m;
  if (bytes == 0) return m;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess)
    return resource_exhausted(std::string("cuda backend: cannot allocate ") +
                              std::to_string(bytes) + " bytes for " + what + " (" +
                              cudaGetErrorString(e) + ")");
  m.p_ = p;
  m.bytes_ = bytes;
  // cudaMemset may return before it is done, and it runs on the legacy stream, which the
  // backend's non-blocking stream does not wait for: synchronise (allocation time only).
  cudaError_t c =
      host ? cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice) : cudaMemset(p, 0, bytes);
  if (c == cudaSuccess && !host) c = cudaDeviceSynchronize();
  if (c != cudaSuccess)
    return internal_error(std::string("cuda backend: cannot fill ") + what + ": " +
                          cudaGetErrorString(c));
  return m;
}

void DeviceMem::reset() {
  if (p_) cudaFree(p_);
  p_ = nullptr;
  bytes_ = 0;
}

namespace {

constexpr size_t kLtWorkspace = size_t{32} << 20;  // cuBLASLt's recommendation for Hopper

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && (std::strcmp(v, "1") == 0 || std::strcmp(v, "on") == 0);
}

void init_shared(Shared& s) {
  s.init = cuda_backend_status();
  if (!s.init.is_ok()) return;
#ifdef DUET_CUDA_TF32_DEFAULT
  s.tf32 = !(std::getenv("DUET_CUDA_TF32") && std::strcmp(std::getenv("DUET_CUDA_TF32"), "0") == 0);
#else
  s.tf32 = env_on("DUET_CUDA_TF32");
#endif
  cudaError_t e = cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&s.sms, cudaDevAttrMultiProcessorCount, 0);
  if (e != cudaSuccess) {
    s.init = internal_error(std::string("cuda backend: ") + cudaGetErrorString(e));
    return;
  }
  if (cublasLtCreate(&s.lt) != CUBLAS_STATUS_SUCCESS) {
    s.init = internal_error("cuda backend: cublasLtCreate failed");
    return;
  }
  auto ws = DeviceMem::make(kLtWorkspace, nullptr, "the cuBLASLt workspace");
  if (!ws.is_ok()) {
    s.init = ws.status();
    return;
  }
  s.lt_workspace = std::move(ws.value());
}

std::mutex report_mu;
std::string first_error;

}  // namespace

Shared& shared() {
  static Shared* s = [] {
    auto* p = new Shared();  // never destroyed: buffers may be released at exit
    init_shared(*p);
    return p;
  }();
  return *s;
}

void* scratch(size_t bytes) {
  Shared& s = shared();
  if (s.scratch_mem.bytes() >= bytes) return s.scratch_mem.get();
  cudaStreamSynchronize(s.stream);  // ops enqueued on the old scratch finish first
  s.scratch_mem.reset();
  auto m = DeviceMem::make(bytes + bytes / 4, nullptr, "scratch");
  if (!m.is_ok()) {
    report("scratch", m.status().message());
    return nullptr;
  }
  s.scratch_mem = std::move(m.value());
  return s.scratch_mem.get();
}

void report(const char* what, const std::string& detail) {
  std::lock_guard<std::mutex> lock(report_mu);
  if (!first_error.empty()) return;
  first_error = std::string(what) + ": " + detail;
  std::fprintf(stderr, "duet cuda backend error: %s\n", first_error.c_str());
}

}  // namespace duet::cuda

// Shared state of the CUDA backend (host side, compiled by g++ against the CUDA runtime headers):
// the backend's one stream, its cuBLASLt handle and workspace, a grow-only device scratch, the
// sticky error report, and an owning device allocation.
//
// Stream model: ONE non-blocking stream per backend instance (the process-wide singleton), shared
// by every thread and Context. Ops enqueue and return; upload / download synchronise the stream
// (so a download sees every op enqueued before it, from any thread). Concurrent Contexts therefore
// serialise on the GPU; a stream per Context needs the Context in the op interface (docs/gpu.md).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "duet/status.h"

namespace duet::cuda {

// An owning device allocation (cudaFree on destruction); null when empty.
class DeviceMem {
 public:
  DeviceMem() = default;
  ~DeviceMem() { reset(); }
  DeviceMem(DeviceMem&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  DeviceMem& operator=(DeviceMem&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = o.p_, bytes_ = o.bytes_;
      o.p_ = nullptr, o.bytes_ = 0;
    }
    return *this;
  }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  // Allocates `bytes` and copies `host` (bytes of it) in, or zeroes; `what` names it in errors.
  static Result<DeviceMem> make(size_t bytes, const void* host, const char* what);
  void reset();
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

struct Shared {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  DeviceMem lt_workspace;  // cuBLASLt's workspace (ops on the one stream never overlap)
  int sms = 0;             // of device 0
  bool tf32 = false;       // fp32 GEMMs on TF32 tensor cores (DUET_CUDA_TF32=1)
  // Guards scratch(): hold it from getting the scratch pointer until the op using it is
  // enqueued (growing synchronises the stream before freeing the old buffer).
  std::mutex scratch_mu;
  DeviceMem scratch_mem;
  Status init;  // why the backend cannot run (first call); ok otherwise
};
// Initialised on first use (stream, handle, workspace). shared().init says whether it worked.
Shared& shared();
// At least `bytes` of device scratch; caller holds shared().scratch_mu. Null on failure.
void* scratch(size_t bytes);

// Records the first CUDA / cuBLASLt / cuFFT failure of an op (ops return void) and prints it
// once to stderr; the next download() reports it too. `what` names the op.
void report(const char* what, const std::string& detail);
inline bool ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  report(what, cudaGetErrorString(e));
  return false;
}
inline bool ok(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return true;
  report(what, std::string("cuBLASLt status ") + std::to_string(static_cast<int>(s)));
  return false;
}

}  // namespace duet::cuda

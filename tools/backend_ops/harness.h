// duet_backend_ops — every op of the Backend interface on every backend, against the reference
// backend (the project's test-backend-ops). This header: the pieces every case uses — backend
// arrays with guard bytes, the case description, NMSE.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"

namespace duet::backend_ops {

// A float array in a backend's memory with kGuard floats of a sentinel bit pattern on each side;
// check() downloads it and reports an overrun (a guard that changed) or a NaN / Inf.
class Guarded {
 public:
  static constexpr int64_t kGuard = 16;               // 64 bytes each side
  static constexpr uint32_t kSentinel = 0x7FA5A5A5u;  // a NaN payload no op writes

  // n floats, initialised from `init` (n floats) or zero.
  static Result<std::unique_ptr<Guarded>> make(const Backend& be, int64_t n,
                                               const float* init = nullptr);
  float* ptr() const { return base_ + kGuard; }  // backend address of element 0
  int64_t size() const { return n_; }
  // The contents (host copy) or an error naming the overrun / the first non-finite value.
  Status check(std::vector<float>* out) const;

 private:
  const Backend* be_ = nullptr;
  std::shared_ptr<BackendBuffer> buf_;
  float* base_ = nullptr;
  int64_t n_ = 0;
};

// What a case's setup hands back: the op bound to its backend arrays.
struct Bound {
  std::function<void()> call;                 // runs the op once
  std::vector<const Guarded*> outputs;        // compared with the reference after one call
  std::vector<std::unique_ptr<Guarded>> own;  // every array of this run (inputs too)
  std::vector<std::shared_ptr<void>> keep;    // prepared ops, plans
};

// Allocation helpers for setups: an input (uploaded copy of host data) or an output.
struct Arena {
  const Backend& be;
  Bound& bound;
  Status status;  // the first allocation failure
  const float* in(const std::vector<float>& host);
  float* inout(const std::vector<float>& host);  // an in-place operand, compared afterwards
  float* out(int64_t n);
  const void* bytes(const void* host, size_t n);  // non-float inputs (ids, masks)
};

struct Case {
  std::string op;     // Backend method, e.g. "linear"
  std::string shape;  // "m=98 in=64 out=192 gelu"
  Precision precision = Precision::kF32;
  // NMSE bound against the reference backend: sum (y - ref)^2 / sum ref^2.
  double bound = 0;
  double flops = 0;  // per call (perf: GFLOP/s); 0 for memory-bound ops
  double bytes = 0;  // per call moved (perf: GB/s)
  // Binds the op to fresh arrays of `be`. kUnimplemented: the backend does not support it.
  std::function<Status(const Backend& be, Arena& a)> setup;
};

// Every case: the shapes of the given fixture configs plus awkward ones.
std::vector<Case> all_cases(const std::vector<std::string>& config_paths);

// Deterministic inputs.
std::vector<float> randu(int64_t n, uint32_t seed, float lo = -1.f, float hi = 1.f);
double nmse(const std::vector<float>& y, const std::vector<float>& ref);

}  // namespace duet::backend_ops

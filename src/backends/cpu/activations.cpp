// In-place activations of the cpu backend (Highway, runtime dispatch; OpenMP over chunks): the
// GELU (tanh form) applied after a plain oneDNN matmul where oneDNN's fused post-op is slow
// (dnnl_ops.h, ActPlacement). Twin: ops::gelu_tanh (double precision), tested in test_ops.cpp.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/activations.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; the includes below follow it.
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>
#include <algorithm>

#include "backends/cpu/activations.h"

HWY_BEFORE_NAMESPACE();
namespace duet::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kChunk = 1 << 13;  // elements per OpenMP work item
constexpr int64_t kParallelMin = 1 << 15;

// gelu(x) = 0.5 x (1 + tanh(u)), u = √(2/π) (x + 0.044715 x³)  =  x · σ(2u)  =  x / (1 + e^(−2u)):
// one Exp and one division per lane. The exponent is clamped to [−87, 88] (Exp's finite range):
// for very negative x, x / (1 + e^88) is ~1e-37 (the exact limit −0 to float precision), for very
// positive x, e^−87 vanishes beside 1.
void GeluTanhChunk(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto c = hn::Set(d, -2.f * 0.7978845608028654f), c3 = hn::Set(d, 0.044715f),
             one = hn::Set(d, 1.f), lo = hn::Set(d, -87.f), hi = hn::Set(d, 88.f);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::LoadU(d, x + i);
    const auto inner = hn::MulAdd(hn::Mul(hn::Mul(v, v), v), c3, v);         // x + 0.044715 x³
    const auto e = hn::Exp(d, hn::Min(hn::Max(hn::Mul(inner, c), lo), hi));  // e^(−2u)
    hn::StoreU(hn::Div(v, hn::Add(one, e)), d, x + i);
  }
  for (; i < n; ++i) {
    const float v = x[i];
    const float inner = v + 0.044715f * v * v * v;
    const float e = std::exp(std::clamp(-2.f * 0.7978845608028654f * inner, -87.f, 88.f));
    x[i] = v / (1.f + e);
  }
}

void GeluTanh(float* x, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < chunks; ++c)
    GeluTanhChunk(x + c * kChunk, std::min(kChunk, n - c * kChunk));
}

}  // namespace HWY_NAMESPACE
}  // namespace duet::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace duet::cpu {

HWY_EXPORT(GeluTanh);

void gelu_tanh_inplace(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(GeluTanh)(x, n); }

}  // namespace duet::cpu
#endif  // HWY_ONCE

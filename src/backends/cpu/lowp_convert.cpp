// Per-call activation conversion of the reduced-precision GEMMs (dnnl_lowp.cpp), in Highway SIMD
// with runtime dispatch: fp32 -> bf16 (RNE) and fp32 -> int8 with one symmetric scale. Both give
// bit-for-bit the values of ops/lowp.h's scalar rules (tests/cpp/test_precision.cpp checks every
// compiled target), so the reference twins still differ only by accumulation order.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/lowp_convert.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; the includes below follow it.
#include <hwy/highway.h>
#include <algorithm>

#include "backends/cpu/lowp_convert.h"
#include "ops/lowp.h"

HWY_BEFORE_NAMESPACE();
namespace duet::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kChunk = 1 << 14;  // elements per OpenMP work item
constexpr int64_t kParallelMin = 1 << 15;

// y[i] = bf16 bits of x[i], round to nearest even (ops::bf16_bits).
void ToBf16Chunk(const float* x, int64_t n, uint16_t* y) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const auto bias = hn::Set(du, 0x7fffu), one = hn::Set(du, 1u);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto u = hn::BitCast(du, hn::LoadU(df, x + i));
    const auto r =
        hn::ShiftRight<16>(hn::Add(u, hn::Add(bias, hn::And(hn::ShiftRight<16>(u), one))));
    hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di, r)), du16, y + i);  // r <= 0xffff: exact
  }
  for (; i < n; ++i) y[i] = ops::bf16_bits(x[i]);
}

float MaxAbsChunk(const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  auto m = hn::Zero(d);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) m = hn::Max(m, hn::Abs(hn::LoadU(d, x + i)));
  float amax = hn::GetLane(hn::MaxOfLanes(d, m));
  for (; i < n; ++i) amax = std::max(amax, x[i] < 0.f ? -x[i] : x[i]);
  return amax;
}

// q[i] = offset + clamp(rne(x[i] · inv), ±levels) (ops::quantize_s8), T = int8_t / uint8_t.
template <class T>
void QuantizeChunk(const float* x, int64_t n, float inv, int levels, int offset, T* q) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<T, decltype(df)> d8;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const auto vinv = hn::Set(df, inv), lo = hn::Set(df, -static_cast<float>(levels)),
             hi = hn::Set(df, static_cast<float>(levels));
  const auto off = hn::Set(di, offset);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto r = hn::Min(hn::Max(hn::Mul(hn::LoadU(df, x + i), vinv), lo), hi);
    const auto v = hn::Add(hn::ConvertTo(di, hn::Round(r)), off);  // Round: RNE
    hn::StoreU(hn::DemoteTo(d8, v), d8, q + i);                    // in range: exact
  }
  for (; i < n; ++i) q[i] = static_cast<T>(offset + ops::quantize_s8(x[i], inv, levels));
}

void ToBf16(const float* x, int64_t n, uint16_t* y) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < chunks; ++c)
    ToBf16Chunk(x + c * kChunk, std::min(kChunk, n - c * kChunk), y + c * kChunk);
}

template <class T>
float Quantize(const float* x, int64_t n, int levels, int offset, T* q) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  float amax = 0.f;
#pragma omp parallel for schedule(static) reduction(max : amax) if (n >= kParallelMin)
  for (int64_t c = 0; c < chunks; ++c)
    amax = std::max(amax, MaxAbsChunk(x + c * kChunk, std::min(kChunk, n - c * kChunk)));
  const float s = ops::int8_scale(amax, levels), inv = 1.f / s;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < chunks; ++c)
    QuantizeChunk(x + c * kChunk, std::min(kChunk, n - c * kChunk), inv, levels, offset,
                  q + c * kChunk);
  return s;
}
float QuantizeInt8(const float* x, int64_t n, int8_t* q) { return Quantize(x, n, 127, 0, q); }
float QuantizeU8(const float* x, int64_t n, uint8_t* q) {
  return Quantize(x, n, 127, ops::kInt8U8Offset, q);
}

}  // namespace HWY_NAMESPACE
}  // namespace duet::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace duet::cpu {

HWY_EXPORT(ToBf16);
HWY_EXPORT(QuantizeInt8);
HWY_EXPORT(QuantizeU8);

void convert_bf16(const float* x, int64_t n, uint16_t* y) { HWY_DYNAMIC_DISPATCH(ToBf16)(x, n, y); }
float quantize_activations(const float* x, int64_t n, int8_t* q) {
  return HWY_DYNAMIC_DISPATCH(QuantizeInt8)(x, n, q);
}
float quantize_activations_u8(const float* x, int64_t n, uint8_t* u) {
  return HWY_DYNAMIC_DISPATCH(QuantizeU8)(x, n, u);
}

}  // namespace duet::cpu
#endif  // HWY_ONCE

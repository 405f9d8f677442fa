#include "diffusion/rng.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace duet::diffusion {

namespace {

inline uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Scalar emulation of avx_mathfun's log256_ps / sincos256_ps (Cephes single precision) exactly as
// they behave inside torch's AVX2 kernels: the compiler fused some of their separate mul/add
// intrinsics into FMAs. Which ones was determined empirically against torch 1.13 (0 mismatches
// over 4e5 draws); the fused sites are written with std::fma, the others as separate roundings.
float avx_log(float x) {
  const bool invalid = !(x > 0.0f);
  x = std::max(x, u2f(0x00800000u));
  int32_t emm0 = static_cast<int32_t>(f2u(x) >> 23);
  x = u2f((f2u(x) & ~0x7f800000u) | f2u(0.5f));
  emm0 -= 0x7f;
  float e = static_cast<float>(emm0);
  e = e + 1.0f;
  const bool mask = x < 0.707106781186547524f;
  const float tmp = mask ? x : 0.0f;
  x = x - 1.0f;
  e = e - (mask ? 1.0f : 0.0f);
  x = x + tmp;
  const float z = x * x;
  float y = 7.0376836292E-2f;
  static constexpr float kP[8] = {-1.1514610310E-1f, 1.1676998740E-1f,  -1.2420140846E-1f,
                                  +1.4249322787E-1f, -1.6668057665E-1f, +2.0000714765E-1f,
                                  -2.4999993993E-1f, +3.3333331174E-1f};
  for (float p : kP) y = std::fma(y, x, p);
  y = y * x;
  const float eq1 = e * -2.12194440e-4f;
  y = std::fma(y, z, eq1);
  const float hz = z * 0.5f;
  y = y - hz;
  const float eq2 = e * 0.693359375f;
  x = x + y;
  x = x + eq2;
  if (invalid) return std::nanf("");
  return x;
}

void avx_sincos(float xin, float* s, float* c) {
  uint32_t sign_bit_sin = f2u(xin) & 0x80000000u;
  float x = u2f(f2u(xin) & 0x7fffffffu);
  float y = x * 1.27323954473516f;
  int32_t emm2 = static_cast<int32_t>(y);  // truncation (cvttps)
  emm2 = emm2 + 1;
  emm2 = emm2 & ~1;
  y = static_cast<float>(emm2);
  int32_t emm4 = emm2;
  const uint32_t swap_sign_bit_sin = static_cast<uint32_t>(emm2 & 4) << 29;
  const bool poly_mask = (emm2 & 2) == 0;
  const float d1 = y * -0.78515625f, d2 = y * -2.4187564849853515625e-4f,
              d3 = y * -3.77489497744594108e-8f;
  x = x + d1;
  x = x + d2;
  x = x + d3;
  emm4 = emm4 - 2;
  emm4 = ~emm4 & 4;
  const uint32_t sign_bit_cos = static_cast<uint32_t>(emm4) << 29;
  sign_bit_sin ^= swap_sign_bit_sin;
  const float z = x * x;
  float yc = 2.443315711809948E-005f;
  yc = std::fma(yc, z, -1.388731625493765E-003f);
  yc = std::fma(yc, z, 4.166664568298827E-002f);
  yc = yc * z;
  const float hz = z * 0.5f;
  yc = std::fma(yc, z, -hz);
  yc = yc + 1.0f;
  float ys = -1.9515295891E-4f;
  ys = std::fma(ys, z, 8.3321608736E-3f);
  ys = std::fma(ys, z, -1.6666654611E-1f);
  ys = ys * z;
  ys = std::fma(ys, x, x);
  const float ysin2 = poly_mask ? ys : 0.0f;
  const float ysin1 = poly_mask ? 0.0f : yc;
  ys = ys - ysin2;
  yc = yc - ysin1;
  const float xmm1 = ysin1 + ysin2;
  const float xmm2 = yc + ys;
  *s = u2f(f2u(xmm1) ^ sign_bit_sin);
  *c = u2f(f2u(xmm2) ^ sign_bit_cos);
}

}  // namespace

void TorchGenerator::manual_seed(uint64_t seed) {
  // at::mt19937 seeds with the low 32 bits; manual_seed also drops cached normals.
  engine_.seed(static_cast<uint32_t>(seed & 0xffffffffu));
  next_double_normal_.reset();
}

uint64_t TorchGenerator::random64() {
  const uint32_t hi = random();
  const uint32_t lo = random();
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

void TorchGenerator::randn(float* out, size_t n) {
  if (n >= 16)
    normal_fill(out, n);
  else
    normal_scalar(out, n);
}

// size < 16: at::normal_distribution<double> per element, caching the sine half of each pair.
void TorchGenerator::normal_scalar(float* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (next_double_normal_) {
      data[i] = static_cast<float>(*next_double_normal_);
      next_double_normal_.reset();
      continue;
    }
    const double u1 = static_cast<double>(random64() & ((1ull << 53) - 1)) * (1.0 / (1ull << 53));
    const double u2 = static_cast<double>(random64() & ((1ull << 53) - 1)) * (1.0 / (1ull << 53));
    const double r = std::sqrt(-2.0 * std::log1p(-u2));
    const double theta = 2.0 * M_PI * u1;
    next_double_normal_ = r * std::sin(theta);
    data[i] = static_cast<float>(r * std::cos(theta));
  }
}

void TorchGenerator::normal_fill(float* data, size_t n) {
  auto uniform = [this]() {
    return static_cast<float>(random() & ((1u << 24) - 1)) * (1.0f / (1u << 24));
  };
  for (size_t i = 0; i < n; ++i) data[i] = uniform();
  auto fill16 = [this](float* d) {
    for (int j = 0; j < 8; ++j) {
      const float u1 = 1.0f - d[j];
      const float u2 = d[j + 8];
      if (kernel_ == Kernel::kAvx2) {
        const float radius = std::sqrt(-2.0f * avx_log(u1));
        const float theta = static_cast<float>(2.0f * M_PI) * u2;
        float s, c;
        avx_sincos(theta, &s, &c);
        d[j] = radius * c;
        d[j + 8] = radius * s;
      } else {
        const float radius = std::sqrt(-2.0f * std::log(u1));
        const float theta = static_cast<float>(2.0f * M_PI * u2);
        d[j] = radius * std::cos(theta);
        d[j + 8] = radius * std::sin(theta);
      }
    }
  };
  for (size_t i = 0; i + 16 <= n; i += 16) fill16(data + i);
  if (n % 16 != 0) {
    float* tail = data + n - 16;
    for (int i = 0; i < 16; ++i) tail[i] = uniform();
    fill16(tail);
  }
}

std::vector<float> torch_randn(uint64_t seed, size_t n, TorchGenerator::Kernel kernel) {
  TorchGenerator g(seed, kernel);
  std::vector<float> out(n);
  g.randn(out.data(), n);
  return out;
}

namespace {
// Philox4x32-10 (Salmon et al. 2011).
void philox4x32(uint32_t ctr[4], uint32_t key0, uint32_t key1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * ctr[2];
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key0;
    const uint32_t n1 = static_cast<uint32_t>(p1);
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key1;
    const uint32_t n3 = static_cast<uint32_t>(p0);
    ctr[0] = n0;
    ctr[1] = n1;
    ctr[2] = n2;
    ctr[3] = n3;
    key0 += W0;
    key1 += W1;
  }
}
}  // namespace

void PhiloxGenerator::randn(float* out, size_t n) {
  // Normal number k (k = offset + i) comes from Philox block k / 4, Box-Muller pair (k % 4) / 2:
  // outputs 0,1 of the block -> pair 0, outputs 2,3 -> pair 1; even k takes cos, odd k sin.
  const uint32_t key0 = static_cast<uint32_t>(seed_), key1 = static_cast<uint32_t>(seed_ >> 32);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t k = offset_ + i;
    const uint64_t block = k / 4;
    uint32_t ctr[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0, 0};
    philox4x32(ctr, key0, key1);
    const int pair = static_cast<int>((k % 4) / 2);
    const uint32_t a = ctr[2 * pair], b = ctr[2 * pair + 1];
    // u1 in (0, 1], u2 in [0, 1)
    const double u1 = (static_cast<double>(a) + 1.0) * (1.0 / 4294967296.0);
    const double u2 = static_cast<double>(b) * (1.0 / 4294967296.0);
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double th = 2.0 * M_PI * u2;
    out[i] = static_cast<float>((k % 2 == 0) ? r * std::cos(th) : r * std::sin(th));
  }
  offset_ += n;
}

Status ReplayNoiseSource::next(float* out, size_t n) {
  if (pos_ >= draws_.size())
    return invalid_argument("noise replay exhausted: sampler drew more than the " +
                            std::to_string(draws_.size()) + " stored noise tensors");
  if (draws_[pos_].size() != n)
    return invalid_argument("noise replay: stored draw " + std::to_string(pos_) + " has " +
                            std::to_string(draws_[pos_].size()) + " values, sampler asked for " +
                            std::to_string(n));
  std::memcpy(out, draws_[pos_].data(), n * sizeof(float));
  ++pos_;
  return Status::ok();
}

}  // namespace duet::diffusion

// Reduced precision, op level: the cpu backend's bf16 / int8 GEMMs and bf16 convolutions against
// their plain reference twins (ops/lowp.h via the reference backend), the rounding helpers, and
// the precision names / per-layer rule.
//
// Tolerances (stated per test):
//   cpu bf16 linear vs twin        : |a - b| <= 2e-6 · (1 + Σ_k |x_k w_k|)  (same bf16 rounding of
//                                    x and w, exact products; only fp32-vs-double accumulation
//                                    order differs)
//   cpu bf16 conv vs twin          : |a - b| <= 1e-5 · (1 + |ref|)
//   cpu int8 linear vs twin        : |a - b| <= 1e-6 · (1 + |ref|)  (identical quantisation,
//                                    exact int32 accumulation; only the fp32 scale/bias rounding)
//   bf16 vs fp32 (sanity)          : relative L2 <= 1e-2;  int8 vs fp32: relative L2 <= 3e-2
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include <hwy/targets.h>

#include "backends/backend.h"
#include "backends/cpu/lowp_convert.h"
#include "duet/precision.h"
#include "ops/lowp.h"
#include "test_util.h"

namespace duet {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct Quantised {
  std::vector<uint16_t> bf16;
  std::vector<int8_t> s8;
  std::vector<float> scale;
  LayerWeights at(Precision p, const float* f32) const {
    LayerWeights lw;
    lw.precision = p;
    lw.f32 = p == Precision::kF32 ? f32 : nullptr;
    if (p == Precision::kBF16) lw.bf16 = bf16.data();
    if (p == Precision::kInt8) {
      lw.s8 = s8.data();
      lw.scale = scale.data();
    }
    return lw;
  }
};

Quantised quantise(const std::vector<float>& w, int64_t out, int64_t in) {
  Quantised q;
  q.bf16.resize(w.size());
  q.s8.resize(w.size());
  q.scale.resize(static_cast<size_t>(out));
  ops::to_bf16(w.data(), static_cast<int64_t>(w.size()), q.bf16.data());
  ops::quantize_rows_int8(w.data(), out, in, q.s8.data(), q.scale.data());
  return q;
}

std::vector<float> run_linear(const Backend& be, const LayerWeights& lw, const float* b,
                              int64_t out, int64_t in, Activation act, const std::vector<float>& x,
                              int64_t m) {
  auto op = be.prepare_linear_weights(lw, b, out, in, act);
  EXPECT_TRUE(op.is_ok()) << op.status().to_string();
  std::vector<float> y(static_cast<size_t>(m * out), -7.f);
  if (op.is_ok()) be.linear(**op, x.data(), m, y.data());
  return y;
}

TEST(PrecisionNames, ParseAndName) {
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kInt8}) {
    auto r = parse_precision(precision_name(p));
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(*r, p);
  }
  EXPECT_EQ(*parse_precision("fp32"), Precision::kF32);
  auto bad = parse_precision("fp16", "--precision");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--precision"), std::string::npos);
  EXPECT_NE(bad.status().message().find("'fp16'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("bf16"), std::string::npos);
  EXPECT_NE(bad.status().message().find("auto"), std::string::npos);
  // auto: this CPU's choice, never an error
  auto cpu = cpu_info();
  ASSERT_TRUE(cpu.is_ok());
  auto a = parse_precision("auto");
  ASSERT_TRUE(a.is_ok());
  EXPECT_EQ(*a, cpu_auto_precision(**cpu));
  EXPECT_EQ(*a, (*cpu)->int8_compute && (*cpu)->usable.avx2 ? Precision::kInt8 : Precision::kF32);
}

TEST(PrecisionNames, LayerRule) {
  const Precision i8 = Precision::kInt8, bf = Precision::kBF16, f32 = Precision::kF32;
  EXPECT_EQ(layer_precision("backbone.blocks.0.attn.qkv.weight", 2, i8), i8);
  EXPECT_EQ(layer_precision("backbone.blocks.3.mlp.fc2.weight", 2, bf), bf);
  EXPECT_EQ(layer_precision("text.blocks.0.mlp.fc1.weight", 2, i8), f32);  // once per prompt
  EXPECT_EQ(layer_precision("backbone.blocks.0.attn.qkv.weight", 2, f32), f32);
  EXPECT_EQ(layer_precision("backbone.blocks.0.attn.qkv.bias", 1, i8), f32);
  EXPECT_EQ(layer_precision("backbone.blocks.0.ada.weight", 2, i8), f32);
  EXPECT_EQ(layer_precision("backbone.final.linear.weight", 2, bf), f32);
  EXPECT_EQ(layer_precision("refiner.conv_out.weight", 4, bf), f32);
  EXPECT_EQ(layer_precision("refiner.enc.0.conv1.weight", 4, i8), bf);  // convs: bf16
  EXPECT_EQ(layer_precision("text.tok_emb.weight", 2, i8), f32);
  EXPECT_EQ(layer_precision("cond.t_mlp.fc1.weight", 2, i8), f32);
  EXPECT_EQ(layer_precision("refiner.norm_out.weight", 1, i8), f32);
}

TEST(PrecisionRounding, Bf16AndInt8Helpers) {
  EXPECT_EQ(ops::round_bf16(1.f), 1.f);
  EXPECT_EQ(ops::round_bf16(1.f + 1.f / 256), 1.f);             // tie -> even (down)
  EXPECT_EQ(ops::round_bf16(1.f + 3.f / 256), 1.f + 1.f / 64);  // tie -> even (up)
  EXPECT_EQ(ops::round_bf16(1.f + 1.f / 200), 1.f + 1.f / 128);
  EXPECT_EQ(ops::bf16_bits(-2.5f), 0xC020);
  EXPECT_EQ(ops::quantize_s8(2.5f, 1.f), 2);  // RNE
  EXPECT_EQ(ops::quantize_s8(3.5f, 1.f), 4);
  EXPECT_EQ(ops::quantize_s8(-1000.f, 1.f), -127);
  EXPECT_EQ(ops::int8_scale(0.f), 1.f);
  const std::vector<float> w = {0.5f, -1.f, 0.25f, 0.f, 0.f, 0.f};
  std::vector<int8_t> q(6);
  std::vector<float> s(2), back(6);
  ops::quantize_rows_int8(w.data(), 2, 3, q.data(), s.data());
  EXPECT_FLOAT_EQ(s[0], 1.f / 127);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[3], 0);
  ops::dequantize_rows_int8(q.data(), s.data(), 2, 3, back.data());
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(back[i], w[i], 0.5f * s[i / 3]);
}

struct LinearCase {
  int64_t m, k, n;
  Activation act;
};

// The cpu backend's SIMD activation conversion (Highway, runtime dispatch) equals the scalar
// rules bit for bit on every compiled target, including ties, the ±127 clamp, lengths that are
// not a multiple of any vector and arrays long enough to be split over threads.
// The no-VNNI 7-bit weights: round half to even of q / 2, scale doubled, in place allowed.
TEST(PrecisionRounding, HalveInt8RowsRoundsHalfToEven) {
  std::vector<int8_t> q = {-127, -3, -1, 0, 1, 3, 5, 127, 126, -126};
  const std::vector<int8_t> want = {-64, -2, 0, 0, 0, 2, 2, 64, 63, -63};
  std::vector<float> s = {0.5f, 0.25f};
  ops::halve_int8_rows(q.data(), s.data(), 2, 5, q.data(), s.data());
  EXPECT_EQ(q, want);
  EXPECT_EQ(s, (std::vector<float>{1.f, 0.5f}));
  for (int8_t v : q) EXPECT_LE(std::abs(int{v}), 64);  // 2 · 255 · 64 < 2^15: no saturation
}

TEST(PrecisionRounding, SimdConversionIsBitExactOnEveryTarget) {
  for (const int64_t n : {int64_t{1}, int64_t{37}, int64_t{100003}}) {
    std::vector<float> x = randn(static_cast<size_t>(n), 70 + static_cast<uint32_t>(n), 3.f);
    x[0] = n > 1 ? -7.5f : 0.f;  // the max |x| (-> scale 7.5 / 127): a negative extreme
    for (int64_t i = 1; i < n; i += 5) x[i] = (static_cast<float>(i % 255) - 127.f) * 7.5f / 254.f;
    if (n > 3) x[3] = 1.00390625f;  // bf16 tie (halfway between two bf16): rounds to even
    std::vector<uint16_t> want_b(x.size());
    for (size_t i = 0; i < x.size(); ++i) want_b[i] = ops::bf16_bits(x[i]);
    float amax = 0.f;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const float want_s = ops::int8_scale(amax), inv = 1.f / want_s;
    std::vector<int8_t> want_q(x.size());
    for (size_t i = 0; i < x.size(); ++i) want_q[i] = ops::quantize_s8(x[i], inv);
    const float want_su = want_s;
    std::vector<uint8_t> want_u(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      want_u[i] = static_cast<uint8_t>(ops::kInt8U8Offset + want_q[i]);
    for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
      hwy::SetSupportedTargetsForTest(t);
      std::vector<uint16_t> b(x.size());
      cpu::convert_bf16(x.data(), n, b.data());
      std::vector<int8_t> q(x.size());
      const float s = cpu::quantize_activations(x.data(), n, q.data());
      std::vector<uint8_t> u(x.size());  // the no-VNNI input: 128 + q
      const float su = cpu::quantize_activations_u8(x.data(), n, u.data());
      EXPECT_EQ(su, want_su) << hwy::TargetName(t) << " u8 scale, n " << n;
      EXPECT_EQ(u, want_u) << hwy::TargetName(t) << " u8 values, n " << n;
      EXPECT_EQ(b, want_b) << hwy::TargetName(t) << " bf16, n " << n;
      EXPECT_EQ(s, want_s) << hwy::TargetName(t) << " int8 scale, n " << n;
      EXPECT_EQ(q, want_q) << hwy::TargetName(t) << " int8 values, n " << n;
    }
    hwy::SetSupportedTargetsForTest(0);
  }
}

TEST(PrecisionOps, LinearBf16AndInt8MatchTheirTwins) {
  const Backend& cpu = cpu_backend();
  const Backend& ref = reference_backend();
  const LinearCase cases[] = {{1, 64, 16, Activation::kNone},
                              {7, 96, 33, Activation::kGeluTanh},
                              {64, 128, 384, Activation::kNone},
                              {50, 257, 64, Activation::kSilu},
                              {256, 512, 128, Activation::kSigmoid}};
  uint32_t seed = 10;
  for (const LinearCase& c : cases) {
    SCOPED_TRACE("m=" + std::to_string(c.m) + " k=" + std::to_string(c.k) +
                 " n=" + std::to_string(c.n));
    const auto w = randn(static_cast<size_t>(c.n * c.k), ++seed, 0.08f);
    const auto b = randn(static_cast<size_t>(c.n), ++seed, 0.1f);
    const auto x = randn(static_cast<size_t>(c.m * c.k), ++seed);
    const Quantised q = quantise(w, c.n, c.k);
    const auto y32 =
        run_linear(ref, q.at(Precision::kF32, w.data()), b.data(), c.n, c.k, c.act, x, c.m);
    // Σ|x||w| per output element bounds the accumulation-order error.
    std::vector<double> mag(static_cast<size_t>(c.m * c.n));
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t o = 0; o < c.n; ++o) {
        double s = 0;
        for (int64_t j = 0; j < c.k; ++j) s += std::fabs(x[i * c.k + j] * w[o * c.k + j]);
        mag[i * c.n + o] = s;
      }
    for (Precision p : {Precision::kBF16, Precision::kInt8}) {
      SCOPED_TRACE(precision_name(p));
      if (const std::string why = testing::precision_unavailable(p); !why.empty()) {
        auto op = cpu.prepare_linear_weights(q.at(p, nullptr), b.data(), c.n, c.k, c.act);
        ASSERT_FALSE(op.is_ok());  // refused by name, not by oneDNN's internals
        EXPECT_EQ(op.status().message(), why);
        std::printf("[ precision ] linear %s skipped on the cpu backend: %s\n", precision_name(p),
                    why.c_str());
        continue;
      }
      const auto yc = run_linear(cpu, q.at(p, nullptr), b.data(), c.n, c.k, c.act, x, c.m);
      const auto yr = run_linear(ref, q.at(p, nullptr), b.data(), c.n, c.k, c.act, x, c.m);
      double worst = 0;
      for (size_t i = 0; i < yc.size(); ++i) {
        const double tol =
            p == Precision::kBF16 ? 2e-6 * (1 + mag[i]) : 1e-6 * (1 + std::fabs(yr[i]));
        worst = std::max(worst, std::fabs(double(yc[i]) - yr[i]) / tol);
        ASSERT_LE(std::fabs(double(yc[i]) - yr[i]), tol) << "element " << i;
      }
      const double e = rel_l2(yc, y32);
      EXPECT_LE(e, p == Precision::kBF16 ? 1e-2 : 3e-2) << "vs fp32";
      std::printf(
          "[ precision ] linear %s m=%lld k=%lld n=%lld: worst/tol %.3f, rel-L2 vs fp32 %.2e\n",
          precision_name(p), (long long)c.m, (long long)c.k, (long long)c.n, worst, e);
    }
  }
}

TEST(PrecisionOps, ConvBf16MatchesItsTwin) {
  if (const std::string why = testing::precision_unavailable(Precision::kBF16); !why.empty())
    GTEST_SKIP() << why;
  const Backend& cpu = cpu_backend();
  const Backend& ref = reference_backend();
  struct ConvCase {
    int64_t b, cin, cout, k, stride, pad, h, w;
    bool tokens;
    Activation act;
  };
  const ConvCase cases[] = {{2, 24, 48, 3, 1, 1, 14, 14, false, Activation::kNone},
                            {1, 48, 48, 3, 2, 1, 14, 14, false, Activation::kNone},
                            {2, 40, 24, 1, 1, 0, 7, 7, false, Activation::kSigmoid},
                            {2, 1, 128, 4, 4, 0, 28, 28, true, Activation::kNone}};
  uint32_t seed = 100;
  for (const ConvCase& c : cases) {
    ConvDesc d;
    d.cin = c.cin;
    d.cout = c.cout;
    d.k = c.k;
    d.stride = c.stride;
    d.pad = c.pad;
    d.tokens_out = c.tokens;
    d.act = c.act;
    const int64_t ho = (c.h + 2 * c.pad - c.k) / c.stride + 1,
                  wo = (c.w + 2 * c.pad - c.k) / c.stride + 1;
    const auto w = randn(static_cast<size_t>(c.cout * c.cin * c.k * c.k), ++seed, 0.1f);
    const auto bias = randn(static_cast<size_t>(c.cout), ++seed, 0.1f);
    const auto x = randn(static_cast<size_t>(c.b * c.cin * c.h * c.w), ++seed);
    std::vector<uint16_t> wb(w.size());
    ops::to_bf16(w.data(), static_cast<int64_t>(w.size()), wb.data());
    LayerWeights lw;
    lw.precision = Precision::kBF16;
    lw.bf16 = wb.data();
    auto run = [&](const Backend& be, const LayerWeights& weights) {
      auto op = be.prepare_conv_weights(weights, bias.data(), d);
      EXPECT_TRUE(op.is_ok()) << op.status().to_string();
      std::vector<float> y(static_cast<size_t>(c.b * c.cout * ho * wo));
      be.conv2d(**op, x.data(), c.b, c.h, c.w, y.data());
      return y;
    };
    LayerWeights lf;
    lf.f32 = w.data();
    const auto yc = run(cpu, lw), yr = run(ref, lw), y32 = run(ref, lf);
    for (size_t i = 0; i < yc.size(); ++i)
      ASSERT_NEAR(yc[i], yr[i], 1e-5 * (1 + std::fabs(yr[i]))) << "element " << i;
    EXPECT_LE(rel_l2(yc, y32), 1e-2);
  }
}

// A 3×3 convolution, 4 -> 8 channels, padding 1 (weights: 8 · 4 · 9 values).
ConvDesc conv_8x4x3x3() {
  ConvDesc d;
  d.cin = 4;
  d.cout = 8;
  d.k = 3;
  d.pad = 1;
  return d;
}

TEST(PrecisionOps, Bf16WithoutHardwareIsRefusedByName) {
  const std::string why = testing::precision_unavailable(Precision::kBF16);
  if (why.empty()) GTEST_SKIP() << "this CPU has bf16 compute (run with DUET_MAX_ISA=avx2)";
  EXPECT_NE(why.find("precision bf16 is not available on this CPU"), std::string::npos) << why;
  EXPECT_NE(why.find("AVX-512"), std::string::npos) << why;
  EXPECT_NE(why.find("int8, f32 or auto"), std::string::npos) << why;
  std::vector<uint16_t> wb(8 * 4 * 9);
  LayerWeights lw;
  lw.precision = Precision::kBF16;
  lw.bf16 = wb.data();
  const ConvDesc d = conv_8x4x3x3();
  auto r = cpu_backend().prepare_conv_weights(lw, nullptr, d);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), why);
  // the reference backend computes bf16 in software on every CPU
  EXPECT_TRUE(reference_backend().prepare_conv_weights(lw, nullptr, d).is_ok());
}

TEST(PrecisionOps, ConvRefusesInt8) {
  std::vector<int8_t> q(8 * 4 * 9);
  std::vector<float> s(8, 1.f);
  LayerWeights lw;
  lw.precision = Precision::kInt8;
  lw.s8 = q.data();
  lw.scale = s.data();
  const ConvDesc d = conv_8x4x3x3();
  for (const Backend* be : {&cpu_backend(), &reference_backend()}) {
    auto r = be->prepare_conv_weights(lw, nullptr, d);
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("int8"), std::string::npos);
  }
}

}  // namespace
}  // namespace duet

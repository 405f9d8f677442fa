// Every optimised (cpu backend) op against its reference twin (duet::ops via the reference
// backend) on random inputs with awkward shapes. Each op states its tolerance:
// |opt - ref| <= atol + rtol * |ref|; outputs are checked for NaN and for writes past either end
// (guard floats).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <hwy/targets.h>

#include "backends/backend.h"
#include "backends/cpu/activations.h"
#include "backends/cpu/dnnl_ops.h"
#include "ops/ops.h"

namespace duet {
namespace {

constexpr int64_t kGuard = 16;
constexpr float kSentinel = 12345.25f;

// A float buffer with guard zones on both sides.
class Buf {
 public:
  explicit Buf(int64_t n) : n_(n), v_(static_cast<size_t>(n + 2 * kGuard), kSentinel) {}
  float* data() { return v_.data() + kGuard; }
  const float* data() const { return v_.data() + kGuard; }
  int64_t size() const { return n_; }
  bool guards_intact() const {
    for (int64_t i = 0; i < kGuard; ++i)
      if (v_[i] != kSentinel || v_[kGuard + n_ + i] != kSentinel) return false;
    return true;
  }

 private:
  int64_t n_;
  std::vector<float> v_;
};

Buf random_buf(int64_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  Buf b(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < n; ++i) b.data()[i] = u(rng);
  return b;
}

void expect_close(const Buf& got, const Buf& ref, double atol, double rtol,
                  const std::string& what) {
  ASSERT_TRUE(got.guards_intact()) << what << ": optimised op wrote outside its output";
  ASSERT_TRUE(ref.guards_intact()) << what << ": reference op wrote outside its output";
  double worst = 0;
  for (int64_t i = 0; i < ref.size(); ++i) {
    const double a = got.data()[i], r = ref.data()[i];
    ASSERT_FALSE(std::isnan(a)) << what << " NaN at " << i;
    ASSERT_FALSE(std::isnan(r)) << what << " reference NaN at " << i;
    const double excess = std::fabs(a - r) - (atol + rtol * std::fabs(r));
    if (excess > 0) {
      ADD_FAILURE() << what << ": element " << i << " opt " << a << " ref " << r;
      return;
    }
    worst = std::max(worst, std::fabs(a - r));
  }
  ::testing::Test::RecordProperty(what, std::to_string(worst));
}

const Backend& ref() { return reference_backend(); }
const Backend& opt() { return cpu_backend(); }

TEST(Ops, LinearAllActivationsAwkwardShapes) {
  // tolerance: atol 1e-5 * sqrt(K) + rtol 1e-5 (fp32 dot products of length K vs double)
  uint32_t seed = 1;
  for (int64_t m : {1, 3, 17, 300})
    for (int64_t k : {1, 7, 129})
      for (int64_t n : {1, 5, 130})
        for (Activation act :
             {Activation::kNone, Activation::kGeluTanh, Activation::kSilu, Activation::kSigmoid}) {
          Buf w = random_buf(n * k, seed++), b = random_buf(n, seed++),
              x = random_buf(m * k, seed++);
          auto pr = ref().prepare_linear(w.data(), b.data(), n, k, act);
          auto po = opt().prepare_linear(w.data(), b.data(), n, k, act);
          ASSERT_TRUE(pr.is_ok() && po.is_ok());
          Buf yr(m * n), yo(m * n);
          ref().linear(**pr, x.data(), m, yr.data());
          opt().linear(**po, x.data(), m, yo.data());
          expect_close(yo, yr, 1e-5 * std::sqrt(static_cast<double>(k)) + 1e-6, 1e-5,
                       "linear m" + std::to_string(m) + " k" + std::to_string(k) + " n" +
                           std::to_string(n) + " act" + std::to_string(static_cast<int>(act)));
        }
}

// The GELU linear with the activation as oneDNN's post-op and as the separate Highway pass (the
// cpu backend picks per ISA and size: dnnl_ops.h), on every Highway target, against the twin.
// tolerance: as LinearAllActivationsAwkwardShapes (the pass itself: <= 2e-6 · (1 + |x|)).
TEST(Ops, GeluLinearBothPlacementsEveryHighwayTarget) {
  uint32_t seed = 900;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(t);
    for (auto place : {cpu::ActPlacement::kPostOp, cpu::ActPlacement::kSeparate}) {
      for (int64_t m : {1, 19, 98})
        for (int64_t k : {7, 128})
          for (int64_t n : {5, 33, 512}) {
            Buf w = random_buf(n * k, seed++, -1.f, 1.f), b = random_buf(n, seed++),
                x = random_buf(m * k, seed++, -3.f, 3.f);  // GELU's tails: both signs, |u| > 9
            auto pr = ref().prepare_linear(w.data(), b.data(), n, k, Activation::kGeluTanh);
            auto po =
                cpu::dnnl_prepare_linear(w.data(), b.data(), n, k, Activation::kGeluTanh, place);
            ASSERT_TRUE(pr.is_ok() && po.is_ok());
            Buf yr(m * n), yo(m * n);
            ref().linear(**pr, x.data(), m, yr.data());
            cpu::dnnl_linear(**po, x.data(), m, yo.data());
            expect_close(yo, yr, 1e-5 * std::sqrt(static_cast<double>(k)) + 2e-6, 1e-5,
                         std::string(hwy::TargetName(t)) +
                             (place == cpu::ActPlacement::kPostOp ? " post-op" : " separate") +
                             " m" + std::to_string(m) + " k" + std::to_string(k) + " n" +
                             std::to_string(n));
          }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  // the pass alone, far into both tails and at 0
  std::vector<float> x = {-60.f, -12.f, -3.5f, -1e-3f, 0.f, 1e-3f, 0.5f, 2.f, 9.f, 40.f, 1e4f};
  for (float v = -9.f; v < 9.f; v += 0.0137f) x.push_back(v);  // a full vector body and a tail
  std::vector<float> y = x, r = x;
  cpu::gelu_tanh_inplace(y.data(), static_cast<int64_t>(y.size()));
  ops::gelu_tanh(r.data(), static_cast<int64_t>(r.size()));
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_NEAR(y[i], r[i], 2e-6 * (1 + std::fabs(r[i]))) << "x = " << x[i];
}

TEST(Ops, Conv2dKernelsStridesPatchEmbed) {
  // tolerance: atol 2e-5 + rtol 1e-5
  struct C {
    int64_t b, cin, h, w, cout, k, stride, pad;
    bool tokens;
    Activation act;
  };
  const C cases[] = {{2, 3, 7, 5, 4, 3, 1, 1, false, Activation::kNone},
                     {1, 5, 9, 11, 6, 1, 1, 0, false, Activation::kSigmoid},
                     {3, 4, 8, 6, 7, 3, 2, 1, false, Activation::kNone},
                     {2, 6, 10, 14, 5, 3, 1, 1, false, Activation::kSilu},
                     {2, 3, 12, 20, 36, 2, 2, 0, true, Activation::kNone},
                     {1, 1, 28, 28, 128, 4, 4, 0, true, Activation::kNone},
                     {2, 16, 7, 7, 100, 3, 1, 1, false, Activation::kNone}};
  uint32_t seed = 100;
  for (const C& c : cases) {
    ConvDesc d;
    d.cin = c.cin;
    d.cout = c.cout;
    d.k = c.k;
    d.stride = c.stride;
    d.pad = c.pad;
    d.tokens_out = c.tokens;
    d.act = c.act;
    Buf w = random_buf(c.cout * c.cin * c.k * c.k, seed++), b = random_buf(c.cout, seed++);
    Buf x = random_buf(c.b * c.cin * c.h * c.w, seed++);
    auto pr = ref().prepare_conv(w.data(), b.data(), d);
    auto po = opt().prepare_conv(w.data(), b.data(), d);
    ASSERT_TRUE(pr.is_ok() && po.is_ok());
    const int64_t ho = (c.h + 2 * c.pad - c.k) / c.stride + 1,
                  wo = (c.w + 2 * c.pad - c.k) / c.stride + 1;
    Buf yr(c.b * c.cout * ho * wo), yo(c.b * c.cout * ho * wo);
    ref().conv2d(**pr, x.data(), c.b, c.h, c.w, yr.data());
    opt().conv2d(**po, x.data(), c.b, c.h, c.w, yo.data());
    expect_close(yo, yr, 2e-5, 1e-5,
                 "conv k" + std::to_string(c.k) + " s" + std::to_string(c.stride));
  }
}

// tolerance: atol 1e-5 + rtol 1e-5
void check_layer_norm_cases(const std::string& label) {
  uint32_t seed = 200;
  for (int64_t b : {1, 3})
    for (int64_t n : {1, 49, 61})
      for (int64_t d : {1, 24, 36, 129}) {
        Buf x = random_buf(b * n * d, seed++, -3.f, 5.f), g = random_buf(d, seed++),
            be = random_buf(d, seed++), mod = random_buf(b * 3 * d, seed++);
        Buf yr(b * n * d), yo(b * n * d);
        ref().layer_norm(x.data(), b * n, d, g.data(), be.data(), 1e-5f, yr.data());
        opt().layer_norm(x.data(), b * n, d, g.data(), be.data(), 1e-5f, yo.data());
        expect_close(yo, yr, 1e-5, 1e-5, label + " layer_norm affine d" + std::to_string(d));
        ref().layer_norm(x.data(), b * n, d, nullptr, nullptr, 1e-6f, yr.data());
        opt().layer_norm(x.data(), b * n, d, nullptr, nullptr, 1e-6f, yo.data());
        expect_close(yo, yr, 1e-5, 1e-5, label + " layer_norm plain d" + std::to_string(d));
        ref().layer_norm_modulate(x.data(), b, n, d, 1e-6f, mod.data(), mod.data() + d, 3 * d,
                                  yr.data());
        opt().layer_norm_modulate(x.data(), b, n, d, 1e-6f, mod.data(), mod.data() + d, 3 * d,
                                  yo.data());
        expect_close(yo, yr, 1e-5, 1e-5, label + " layer_norm_modulate d" + std::to_string(d));
      }
}

// tolerance: atol 1e-5 + rtol 1e-5
void check_group_norm_cases(const std::string& label) {
  uint32_t seed = 300;
  struct G {
    int64_t b, c, hw, groups;
  };
  for (const G& g : {G{1, 8, 1, 8}, G{2, 12, 35, 4}, G{3, 24, 49, 8}, G{2, 6, 240, 3}})
    for (bool silu : {false, true}) {
      Buf x = random_buf(g.b * g.c * g.hw, seed++, -2.f, 3.f), ga = random_buf(g.c, seed++),
          be = random_buf(g.c, seed++);
      Buf yr(x.size()), yo(x.size());
      ref().group_norm(x.data(), g.b, g.c, g.hw, g.groups, ga.data(), be.data(), 1e-5f, silu,
                       yr.data());
      opt().group_norm(x.data(), g.b, g.c, g.hw, g.groups, ga.data(), be.data(), 1e-5f, silu,
                       yo.data());
      expect_close(yo, yr, 1e-5, 1e-5, label + " group_norm c" + std::to_string(g.c));
    }
}

TEST(Ops, LayerNormAffinePlainAndModulate) { check_layer_norm_cases("best target"); }
TEST(Ops, GroupNormWithAndWithoutSilu) { check_group_norm_cases("best target"); }

// The norms are Highway code with runtime dispatch: every compiled, supported target.
TEST(Ops, NormsEveryHighwayTarget) {
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(t);
    check_layer_norm_cases(hwy::TargetName(t));
    check_group_norm_cases(hwy::TargetName(t));
  }
  hwy::SetSupportedTargetsForTest(0);
}

// tolerance: atol 2e-6 + rtol 1e-5 (online softmax in fp32 vs double)
void check_attention_cases(const std::string& label) {
  uint32_t seed = 400;
  struct A {
    int64_t b, heads, nq, nk, dh;
    bool mask;
  };
  const A cases[] = {{1, 1, 1, 1, 1, false},   {2, 3, 17, 13, 12, true}, {2, 2, 70, 70, 16, false},
                     {1, 4, 49, 32, 32, true}, {3, 2, 5, 130, 64, true}, {1, 1, 33, 65, 300, true}};
  for (const A& c : cases) {
    const int64_t D = c.heads * c.dh;
    // q inside a packed [B, Nq, 3D] qkv-like buffer (stride 3D); k, v plain [B, Nk, D]
    Buf qkv = random_buf(c.b * c.nq * 3 * D, seed++, -2.f, 2.f);
    Buf k = random_buf(c.b * c.nk * D, seed++, -2.f, 2.f), v = random_buf(c.b * c.nk * D, seed++);
    std::vector<uint8_t> mask(static_cast<size_t>(c.b * c.nk), 1);
    if (c.mask)
      for (int64_t bi = 0; bi < c.b; ++bi)
        for (int64_t j = 1; j < c.nk; ++j) mask[bi * c.nk + j] = ((j * 7 + bi) % 3) != 0;
    ops::AttentionArgs a;
    a.q = qkv.data();
    a.ldq = 3 * D;
    a.k = k.data();
    a.ldk = D;
    a.v = v.data();
    a.ldv = D;
    a.key_mask = c.mask ? mask.data() : nullptr;
    a.ldo = D;
    a.batch = c.b;
    a.heads = c.heads;
    a.nq = c.nq;
    a.nk = c.nk;
    a.head_dim = c.dh;
    Buf yr(c.b * c.nq * D), yo(c.b * c.nq * D);
    a.out = yr.data();
    ref().attention(a);
    a.out = yo.data();
    opt().attention(a);
    expect_close(yo, yr, 2e-6, 1e-5,
                 label + " attention nq" + std::to_string(c.nq) + " nk" + std::to_string(c.nk) +
                     " dh" + std::to_string(c.dh));
  }
}

TEST(Ops, AttentionSelfCrossMaskedStrided) { check_attention_cases("best target"); }

// The cpu attention kernel is Highway code with runtime dispatch: every SIMD target compiled in
// and supported by this CPU (e.g. SSE4, AVX2, AVX-512) must match the reference.
TEST(Ops, AttentionEveryHighwayTarget) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t t : targets) {
    hwy::SetSupportedTargetsForTest(t);
    check_attention_cases(hwy::TargetName(t));
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the CPU's own
}

// tolerance: atol 1e-6 + rtol 1e-5
void check_carafe_cases(const std::string& label) {
  uint32_t seed = 500;
  struct K {
    int64_t b, c, h, w, k;
  };
  for (const K& c : {K{1, 1, 1, 1, 1}, K{2, 3, 3, 5, 3}, K{1, 24, 7, 7, 5}, K{2, 5, 6, 10, 5},
                     K{1, 4, 4, 3, 7}, K{2, 3, 14, 14, 5}, K{1, 2, 9, 40, 3}}) {
    const int64_t s = 2;
    Buf x = random_buf(c.b * c.c * c.h * c.w, seed++);
    Buf enc = random_buf(c.b * s * s * c.k * c.k * c.h * c.w, seed++, -4.f, 4.f);
    Buf sr(ref().carafe_scratch_floats(c.b, c.c, c.h, c.w, c.k, s)),
        so(opt().carafe_scratch_floats(c.b, c.c, c.h, c.w, c.k, s));
    Buf yr(c.b * c.c * c.h * s * c.w * s), yo(yr.size());
    ref().carafe(x.data(), enc.data(), c.b, c.c, c.h, c.w, c.k, s, sr.data(), yr.data());
    opt().carafe(x.data(), enc.data(), c.b, c.c, c.h, c.w, c.k, s, so.data(), yo.data());
    expect_close(yo, yr, 1e-6, 1e-5,
                 label + " carafe k" + std::to_string(c.k) + " " + std::to_string(c.h) + "x" +
                     std::to_string(c.w));
    ASSERT_TRUE(sr.guards_intact() && so.guards_intact());
  }
}

TEST(Ops, CarafeFusedMatchesShuffleSoftmaxReassemble) { check_carafe_cases("best target"); }

TEST(Ops, CarafeEveryHighwayTarget) {
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(t);
    check_carafe_cases(hwy::TargetName(t));
  }
  hwy::SetSupportedTargetsForTest(0);
}

TEST(Ops, HighpassFftwMatchesNaiveDft) {
  // tolerance: atol 2e-6 + rtol 1e-5 (float FFT vs double DFT; inputs in [-1, 1])
  uint32_t seed = 600;
  struct H {
    int64_t n, h, w;
    double rho, tau;
  };
  for (const H& c : {H{1, 1, 1, 0.25, 0.04}, H{3, 28, 28, 0.25, 0.04}, H{6, 12, 20, 0.3, 0.0},
                     H{2, 7, 5, 0.2, 0.1}, H{1, 32, 32, 0.25, 0.04}, H{2, 9, 16, 0.0, 0.0}}) {
    const std::vector<float> mask = ops::highpass_mask(c.h, c.w, c.rho, c.tau);
    auto pr = ref().plan_spectral(c.h, c.w, mask.data());
    auto po = opt().plan_spectral(c.h, c.w, mask.data());
    ASSERT_TRUE(pr.is_ok() && po.is_ok());
    Buf x = random_buf(c.n * c.h * c.w, seed++);
    Buf yr(x.size()), yo(x.size());
    (*pr)->highpass(x.data(), c.n, yr.data());
    (*po)->highpass(x.data(), c.n, yo.data());
    expect_close(yo, yr, 2e-6, 1e-5, "highpass " + std::to_string(c.h) + "x" + std::to_string(c.w));
  }
}

TEST(Ops, HighpassMaskProperties) {
  // symmetric under (u, v) -> (-u, -v); tau = 0 is a hard threshold; rho_c = 0, tau = 0: identity
  for (auto [h, w] : {std::pair<int64_t, int64_t>{28, 28}, {12, 20}, {7, 5}}) {
    const std::vector<float> m = ops::highpass_mask(h, w, 0.25, 0.04);
    for (int64_t u = 0; u < h; ++u)
      for (int64_t v = 0; v < w; ++v) EXPECT_EQ(m[u * w + v], m[((h - u) % h) * w + (w - v) % w]);
  }
  const std::vector<float> hard = ops::highpass_mask(8, 8, 0.25, 0.0);
  EXPECT_EQ(hard[0], 0.f);          // DC: rho = 0
  EXPECT_EQ(hard[2 * 8 + 0], 1.f);  // rho = 0.25 >= rho_c
  const std::vector<float> all = ops::highpass_mask(6, 10, 0.0, 0.0);
  Buf x = random_buf(60, 7), y(60);
  ops::highpass(x.data(), 1, 6, 10, all.data(), y.data());
  for (int64_t i = 0; i < 60; ++i) EXPECT_NEAR(y.data()[i], x.data()[i], 1e-6);
}

TEST(Ops, EmbeddingsKnownValues) {
  // sinusoid: t = 0 -> [1..1, 0..0]; pos embed row 0 = [0, 1, 0, 1] pattern
  float t[2] = {0.f, 1.f};
  std::vector<float> y(2 * 8);
  ops::timestep_sinusoid(t, 2, 8, 10000.0, y.data());
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(y[k], 1.f);
    EXPECT_EQ(y[4 + k], 0.f);
  }
  EXPECT_FLOAT_EQ(y[8 + 0], static_cast<float>(std::cos(1.0)));
  EXPECT_FLOAT_EQ(y[8 + 4], static_cast<float>(std::sin(1.0)));
  const std::vector<float> pe = ops::pos_embed_2d(8, 2, 3);
  ASSERT_EQ(pe.size(), 6u * 8);
  EXPECT_EQ(pe[0], 0.f);  // sin(0)
  EXPECT_EQ(pe[2], 1.f);  // cos(0)
  // token n = i*gw + j = 1 (i=0, j=1): first column is sin(j * w_0) = sin(1)
  EXPECT_FLOAT_EQ(pe[8 + 0], static_cast<float>(std::sin(1.0)));
  EXPECT_FLOAT_EQ(pe[8 + 4], 0.f);  // sin(i = 0)
}

TEST(Ops, PixelShuffleAndUnpatchifyAreThePythonPermutations) {
  // pixel_shuffle: y[b, c, h*s+i, w*s+j] = x[b, c*s*s + i*s + j, h, w]
  std::vector<float> x(1 * 8 * 2 * 3), y(2 * 4 * 6);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  ops::pixel_shuffle(x.data(), 1, 2, 2, 3, 2, y.data());
  EXPECT_EQ(y[(1 * 4 + 3) * 6 + 5], x[((1 * 4 + 1 * 2 + 1) * 2 + 1) * 3 + 2]);
  // unpatchify (pi, pj, c) layout: out[b, c, i*p+pi, j*p+pj] = y[b, i*gw+j, (pi*p+pj)*C + c]
  const int64_t gh = 2, gw = 3, p = 2, C = 3;
  std::vector<float> tok(gh * gw * p * p * C), img(C * gh * p * gw * p);
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = static_cast<float>(i);
  ops::unpatchify(tok.data(), 1, gh, gw, p, C, img.data());
  EXPECT_EQ(img[(2 * (gh * p) + 1 * p + 1) * (gw * p) + 2 * p + 0],
            tok[(1 * gw + 2) * p * p * C + (1 * p + 0) * C + 2]);
}

}  // namespace
}  // namespace duet

// CSWin window layout (ops/cswin_layout.h, shared with the cuda kernels): every token sits in
// exactly one window of each branch, padding slots only at the end of a ragged last stripe, and
// LePE neighbours never cross a window edge.
TEST(Ops, CswinLayoutCoversEveryTokenOncePerBranch) {
  for (auto [gh, gw, sw] : {std::tuple<int64_t, int64_t, int64_t>{5, 7, 2},
                            {4, 4, 4},
                            {3, 9, 8},
                            {1, 1, 1},
                            {6, 10, 4}}) {
    for (int which = 0; which < 2; ++which) {
      const duet::ops::CswinBranch br = duet::ops::cswin_branch(which, 4, 8, gh, gw, sw);
      EXPECT_EQ(br.nheads, 2);
      EXPECT_EQ(br.c0, which * 16);
      std::vector<int> seen(static_cast<size_t>(gh * gw), 0);
      for (int64_t s = 0; s < br.windows; ++s)
        for (int64_t t = 0; t < br.len; ++t) {
          const int64_t n = duet::ops::cswin_token(br, gh, gw, sw, s, t);
          if (n < 0) {
            EXPECT_EQ(s, br.windows - 1) << "padding before the last stripe";
            continue;
          }
          ++seen[static_cast<size_t>(n)];
          const int64_t row = n / gw, col = n % gw;
          EXPECT_EQ((which ? col : row) / sw, s);
          EXPECT_FALSE(duet::ops::cswin_same_window(br, gh, gw, sw, row, col, which ? 0 : sw,
                                                    which ? sw : 0));
          EXPECT_TRUE(duet::ops::cswin_same_window(br, gh, gw, sw, row, col, 0, 0));
        }
      for (int c : seen) EXPECT_EQ(c, 1);
    }
  }
  EXPECT_EQ(duet::ops::cswin_branch(1, 3, 5, 4, 4, 2).nheads,
            2);  // odd heads: the rest go vertical
}

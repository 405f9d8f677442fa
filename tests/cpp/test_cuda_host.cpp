// Host tests of the CUDA backend's pure logic (src/backends/cuda/cuda_logic.h: the same
// __host__ __device__ functions the kernels call), against plain references, plus the
// "no CUDA here" path of --backend cuda. Compiled in every build (no CUDA headers needed) and run
// on CPU machines; `ctest -R CudaHost`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/cuda_logic.h"
#include "backends/gpu_devices.h"
#include "duet/model.h"
#include "ops/lowp.h"
#include "ops/ops.h"
#include "test_util.h"

namespace duet {
namespace {

namespace cl = cuda_logic;

// The split-KV rule written out independently: efficiencies of every candidate, then the first
// within 85 % of the best.
int split_reference(int64_t blocks, int sms, int64_t tiles, int max_splits) {
  if (tiles <= 1 || 10 * blocks >= 8 * static_cast<int64_t>(sms)) return 1;
  const int64_t top = std::min<int64_t>({max_splits, sms, tiles, 128});
  std::vector<double> eff(static_cast<size_t>(top) + 1, -1.0);
  for (int64_t s = 1; s <= top; ++s) {
    const int64_t per = (tiles + s - 1) / s, per_prev = s > 1 ? (tiles + s - 2) / (s - 1) : -1;
    if (s > 1 && per == per_prev) continue;
    const double w = static_cast<double>(blocks * s) / sms;
    eff[s] = w / std::ceil(w);
  }
  const double best = *std::max_element(eff.begin(), eff.end());
  for (int64_t s = 1; s <= top; ++s)
    if (eff[s] >= 0.85 * best) return static_cast<int>(s);
  return 1;
}

TEST(CudaHost, SplitKvHeuristicMatchesItsDefinition) {
  for (int sms : {108, 132})
    for (int64_t blocks : {1, 2, 3, 8, 16, 50, 85, 86, 105, 200})
      for (int64_t tiles : {1, 2, 3, 8, 32, 33, 100})
        EXPECT_EQ(cl::split_kv_heuristic(blocks, sms, tiles, 128),
                  split_reference(blocks, sms, tiles, 128))
            << "blocks " << blocks << " sms " << sms << " tiles " << tiles;
  // a full GPU never splits; one block on an H100 with long keys splits
  EXPECT_EQ(cl::split_kv_heuristic(132, 132, 64, 128), 1);
  EXPECT_GT(cl::split_kv_heuristic(2, 132, 64, 128), 1);
}

TEST(CudaHost, SplitRangesCoverTheKeysInWholeTiles) {
  for (int64_t nk : {1, 77, 128, 129, 1000, 4096})
    for (int splits : {1, 2, 3, 7, 16}) {
      int64_t next = 0;
      for (int i = 0; i < splits; ++i) {
        int64_t b = 0, e = 0;
        cl::split_range(nk, splits, i, &b, &e);
        EXPECT_EQ(b, next) << "nk " << nk << " split " << i;
        EXPECT_LE(b, e);
        if (e < nk) {
          EXPECT_EQ(e % cl::kAttnKvTile, 0);
        }
        next = e;
      }
      EXPECT_EQ(next, nk) << "nk " << nk << " splits " << splits;
    }
}

// softmax(s) · v over tiles with the online update (and with two halves merged) equals the
// two-pass softmax in double; masked scores (-inf) get weight 0.
TEST(CudaHost, OnlineSoftmaxMatchesTwoPass) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (int64_t n : {1, 5, 128, 300, 1000}) {
    std::vector<float> s(static_cast<size_t>(n)), v(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      s[j] = (j % 7 == 3) ? -INFINITY : nd(rng);
      v[j] = nd(rng);
    }
    if (n == 1) s[0] = 0.5f;
    double mx = -INFINITY, sum = 0, acc = 0;
    for (float x : s) mx = std::max<double>(mx, x);
    for (int64_t j = 0; j < n; ++j) {
      const double p = std::exp(static_cast<double>(s[j]) - mx);
      sum += p;
      acc += p * v[j];
    }
    const double want = acc / sum;
    auto run = [&](int64_t b, int64_t e, cl::SoftmaxState* st, float* o) {
      *st = cl::softmax_init();
      *o = 0;
      for (int64_t k0 = b; k0 < e; k0 += cl::kAttnKvTile) {
        const int64_t k1 = std::min<int64_t>(e, k0 + cl::kAttnKvTile);
        float tmax = -INFINITY;
        for (int64_t j = k0; j < k1; ++j) tmax = std::max(tmax, s[j]);
        float rescale;
        const float m = cl::softmax_advance(st, tmax, &rescale);
        *o *= rescale;
        for (int64_t j = k0; j < k1; ++j) {
          const float p = cl::exp_diff(s[j], m);
          st->l += p;
          *o += p * v[j];
        }
      }
    };
    cl::SoftmaxState st;
    float o;
    run(0, n, &st, &o);
    EXPECT_NEAR(o / st.l, want, 1e-5 * (1 + std::fabs(want))) << "n " << n;
    cl::SoftmaxState a, b;
    float oa, ob, fa, fb;
    run(0, n / 2, &a, &oa);
    run(n / 2, n, &b, &ob);
    const cl::SoftmaxState m = cl::softmax_merge(a, b, &fa, &fb);
    EXPECT_NEAR((oa * fa + ob * fb) / m.l, want, 1e-5 * (1 + std::fabs(want))) << "merged n " << n;
  }
  // an all-masked split contributes nothing to the merge
  float fa, fb;
  const cl::SoftmaxState m = cl::softmax_merge(cl::softmax_init(), {1.f, 2.f}, &fa, &fb);
  EXPECT_EQ(fa, 0.f);
  EXPECT_EQ(fb, 1.f);
  EXPECT_EQ(m.l, 2.f);
}

TEST(CudaHost, UnpatchifyIndexMatchesReference) {
  const int64_t b = 2, gh = 3, gw = 5, p = 2, c = 3, n = b * gh * gw * p * p * c;
  std::vector<float> y(static_cast<size_t>(n)), out(static_cast<size_t>(n));
  std::iota(y.begin(), y.end(), 0.f);
  ops::unpatchify(y.data(), b, gh, gw, p, c, out.data());
  for (int64_t o = 0; o < n; ++o)
    ASSERT_EQ(y[cl::unpatchify_src(o, gh, gw, p, c)], out[o]) << "output index " << o;
}

TEST(CudaHost, CarafeIndexMatchesPixelShuffle) {
  const int64_t b = 2, k = 3, s = 2, h = 3, w = 4, kk = k * k, n = b * kk * s * s * h * w;
  std::vector<float> enc(static_cast<size_t>(n)), shuf(static_cast<size_t>(n));
  std::iota(enc.begin(), enc.end(), 0.f);
  ops::pixel_shuffle(enc.data(), b, kk, h, w, s, shuf.data());
  for (int64_t o = 0; o < n; ++o)
    ASSERT_EQ(enc[cl::carafe_enc_src(o, kk, h, w, s)], shuf[o]) << "output index " << o;
}

TEST(CudaHost, Bf16RoundingMatchesOps) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 100.f);
  for (int i = 0; i < 100000; ++i) {
    const float f = nd(rng);
    ASSERT_EQ(cl::bf16_bits(f), ops::bf16_bits(f)) << f;
  }
  EXPECT_EQ(cl::bf16_value(cl::bf16_bits(1.0f)), 1.0f);
}

// The half-spectrum mask carries the full mask: radial masks are symmetric under (u, v) ->
// (-u, -v), and the half holds M[u, v] / (H W) for v <= W / 2.
TEST(CudaHost, HalfSpectrumMaskIsTheFullMaskScaled) {
  for (auto [h, w] : {std::pair<int64_t, int64_t>{8, 8}, {7, 10}, {32, 24}}) {
    const std::vector<float> m = ops::highpass_mask(h, w, 0.2, 0.05);
    for (int64_t u = 0; u < h; ++u)
      for (int64_t v = 0; v < w; ++v)
        ASSERT_EQ(m[u * w + v], m[((h - u) % h) * w + (w - v) % w]) << u << "," << v;
    std::vector<float> half(static_cast<size_t>(h * (w / 2 + 1)));
    cl::half_spectrum_mask(m.data(), h, w, half.data());
    for (int64_t u = 0; u < h; ++u)
      for (int64_t v = 0; v <= w / 2; ++v)
        EXPECT_FLOAT_EQ(half[u * (w / 2 + 1) + v], m[u * w + v] / static_cast<float>(h * w));
  }
}

TEST(CudaHost, AttentionTilesFitTheSharedMemoryOfA100AndH100) {
  EXPECT_EQ(cl::attn_head_bucket(0), 0);
  EXPECT_EQ(cl::attn_head_bucket(1), 32);
  EXPECT_EQ(cl::attn_head_bucket(33), 64);
  EXPECT_EQ(cl::attn_head_bucket(128), 128);
  EXPECT_EQ(cl::attn_head_bucket(129), 0);  // the naive kernel
  // A100's opt-in limit per block is 163 KiB (H100: 227 KiB)
  for (int bucket : {32, 64, 128}) EXPECT_LE(cl::attn_smem_bytes(bucket), 163 * 1024);
  EXPECT_EQ(cl::kAttnQTile * cl::kAttnThreadsPerRow, cl::kAttnThreads);
  EXPECT_EQ(cl::padded_stride(64) % 32, 1);  // odd stride: no bank conflicts down a column
  EXPECT_EQ(cl::grid_for(0, 256, 65535), 1);
  EXPECT_EQ(cl::grid_for(257, 256, 65535), 2);
  EXPECT_EQ(cl::grid_for(int64_t{1} << 40, 256, 65535), 65535);
  EXPECT_EQ(cl::conv_out(32, 3, 1, 1), 32);
  EXPECT_EQ(cl::conv_out(32, 2, 2, 0), 16);
  EXPECT_TRUE(cl::norm_warp_per_row(1024));
  EXPECT_FALSE(cl::norm_warp_per_row(1025));
}

// --backend cuda on a machine (or build) without CUDA: one line naming what is missing.
TEST(CudaHost, NoCudaIsAOneLineError) {
  if (cuda_backend_status().is_ok()) GTEST_SKIP() << "a usable GPU is present";
  const Status s = cuda_backend_status();
#ifdef DUET_HAVE_CUDA
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.to_string();
  EXPECT_NE(s.message().find("no usable GPU"), std::string::npos) << s.message();
#else
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_EQ(s.message(), "this duet was built without CUDA (cmake -DDUET_CUDA=ON)");
#endif
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
  LoadOptions lo;
  lo.backend = BackendKind::kCuda;
  auto m = Model::load(std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo", lo);
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().message(), s.message());
  EXPECT_FALSE(find_backend(BackendKind::kCuda).is_ok());
  EXPECT_EQ(parse_backend_kind("cuda").value(), BackendKind::kCuda);
  EXPECT_STREQ(backend_kind_name(BackendKind::kCuda), "cuda");
}

TEST(CudaHost, CliBackendCudaWithoutGpuExitsNonZeroWithOneLine) {
  if (cuda_backend_status().is_ok()) GTEST_SKIP() << "a usable GPU is present";
  const std::string model = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";
  testing::TempDir tmp;
  for (const std::string& args :
       {"generate --model " + model + " -q -p shirt --steps 1 --backend cuda -o " +
            tmp.file("x.png"),
        "bench --model " + model + " --backend cuda"}) {
    const testing::CommandResult r = testing::run_command(std::string(DUET_CLI_PATH) + " " + args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find(cuda_backend_status().message()), std::string::npos)
        << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << "\nstderr: " << r.err;
  }
  const testing::CommandResult info =
      testing::run_command(std::string(DUET_CLI_PATH) + " info --no-peak");
  EXPECT_EQ(info.exit_code, 0);
  EXPECT_NE(info.out.find("gpu        none: "), std::string::npos) << info.out;
}

}  // namespace
}  // namespace duet

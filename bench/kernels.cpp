// Per-kernel benchmarks (Google Benchmark), llm.c style: each optimised cpu-backend op on the
// shapes the models run, with its GFLOP/s and % of the measured FMA peak, and the reference twin
// (src/ops via the reference backend) on the demo shapes for the speed-up.
//
//   build/duet_kernel_bench [--benchmark_filter=attention] [--threads N]
//
// Counters (shown per second): GFLOP (analytic FLOPs per call: 2·M·N·K for a GEMM, 2·2·Nq·Nk·dh per
// head for attention, 2·k² per CARAFE output; norms count 0 and report bytes/s instead) and
// pct_peak against duet::bench::measure_fma_peak on the same thread count (measured once at
// start-up).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/dnnl_ops.h"
#include "bench/peak.h"

namespace {

using duet::Backend;

double g_peak_gflops = 0;  // FMA peak on the benchmark's thread count

std::vector<float> random_vec(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

const Backend& backend_of(int64_t which) {
  return which == 0 ? duet::cpu_backend() : duet::reference_backend();
}
const char* name_of(int64_t which) { return which == 0 ? "cpu" : "reference"; }

void set_flops(benchmark::State& st, double flops_per_call, const char* backend) {
  st.counters["GFLOP"] =
      benchmark::Counter(flops_per_call * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (g_peak_gflops > 0) {
    st.counters["pct_peak"] = benchmark::Counter(flops_per_call * 1e-9 / g_peak_gflops * 100.0,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  }
  st.SetLabel(backend);
}

// ---- linear: y [M, N] = x [M, K] · Wᵀ (args: M, N, K, backend) ----
void BM_linear(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  const Backend& be = backend_of(st.range(3));
  const auto w = random_vec(n * k, 1), b = random_vec(n, 2), x = random_vec(m * k, 3);
  auto op = be.prepare_linear(w.data(), b.data(), n, k, duet::Activation::kNone);
  if (!op.is_ok()) {
    st.SkipWithError(op.status().message().c_str());
    return;
  }
  std::vector<float> y(static_cast<size_t>(m * n));
  for (auto _ : st) {
    be.linear(*op.value(), x.data(), m, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, 2.0 * m * n * k, name_of(st.range(3)));
}
// seed-scale backbone (B 2 × 256 tokens, D 1280) and the demo's (B 2 × 49 tokens, D 128)
BENCHMARK(BM_linear)
    ->Args({512, 3840, 1280, 0})
    ->Args({512, 1280, 1280, 0})
    ->Args({512, 5120, 1280, 0})
    ->Args({512, 1280, 5120, 0})
    ->Args({98, 384, 128, 0})
    ->Args({98, 512, 128, 0})
    ->Args({98, 384, 128, 1})
    ->Unit(benchmark::kMicrosecond);

// ---- GELU-fused linear, the MLP's fc1 (args: M, N, K, placement: 0 oneDNN post-op, 1 plain
// matmul + Highway GELU pass, 2 = what the backend picks on this ISA) ----
void BM_linear_gelu(benchmark::State& st) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  const duet::cpu::ActPlacement place[] = {duet::cpu::ActPlacement::kPostOp,
                                           duet::cpu::ActPlacement::kSeparate,
                                           duet::cpu::ActPlacement::kAuto};
  const auto w = random_vec(n * k, 1), b = random_vec(n, 2), x = random_vec(m * k, 3);
  auto op = duet::cpu::dnnl_prepare_linear(w.data(), b.data(), n, k, duet::Activation::kGeluTanh,
                                           place[st.range(3)]);
  if (!op.is_ok()) {
    st.SkipWithError(op.status().message().c_str());
    return;
  }
  std::vector<float> y(static_cast<size_t>(m * n));
  for (auto _ : st) {
    duet::cpu::dnnl_linear(*op.value(), x.data(), m, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  static const char* names[] = {"post-op", "separate", "auto"};
  set_flops(st, 2.0 * m * n * k, names[st.range(3)]);
}
BENCHMARK(BM_linear_gelu)
    ->Args({98, 512, 128, 0})
    ->Args({98, 512, 128, 1})
    ->Args({98, 512, 128, 2})
    ->Args({512, 5120, 1280, 0})
    ->Args({512, 5120, 1280, 1})
    ->Args({512, 5120, 1280, 2})
    ->Unit(benchmark::kMicrosecond);

// ---- attention (args: batch, heads, Nq, Nk, head_dim, backend) ----
void BM_attention(benchmark::State& st) {
  const int64_t b = st.range(0), h = st.range(1), nq = st.range(2), nk = st.range(3),
                dh = st.range(4);
  const Backend& be = backend_of(st.range(5));
  const int64_t d = h * dh;
  const auto q = random_vec(b * nq * d, 4), k = random_vec(b * nk * d, 5),
             v = random_vec(b * nk * d, 6);
  std::vector<float> out(static_cast<size_t>(b * nq * d));
  duet::ops::AttentionArgs a;
  a.q = q.data();
  a.ldq = d;
  a.k = k.data();
  a.ldk = d;
  a.v = v.data();
  a.ldv = d;
  a.out = out.data();
  a.ldo = d;
  a.batch = b;
  a.heads = h;
  a.nq = nq;
  a.nk = nk;
  a.head_dim = dh;
  for (auto _ : st) {
    be.attention(a);
    benchmark::DoNotOptimize(out.data());
  }
  set_flops(st, 2.0 * 2.0 * b * h * nq * nk * dh, name_of(st.range(5)));
}
BENCHMARK(BM_attention)
    ->Args({2, 20, 256, 256, 64, 0})  // seed-scale self-attention
    ->Args({2, 20, 256, 77, 64, 0})   // seed-scale cross-attention
    ->Args({2, 4, 49, 49, 32, 0})     // demo self-attention
    ->Args({16, 4, 49, 49, 32, 0})    // demo self-attention, a served batch of 8 guided requests
    ->Args({16, 4, 49, 32, 32, 0})    // demo cross-attention (32 text tokens), same batch
    ->Args({2, 4, 49, 49, 32, 1})
    ->Unit(benchmark::kMicrosecond);

// ---- conv2d (args: batch, Cin, Cout, H = W, k, stride, backend) ----
void BM_conv2d(benchmark::State& st) {
  duet::ConvDesc d;
  const int64_t b = st.range(0), hw = st.range(3);
  d.cin = st.range(1);
  d.cout = st.range(2);
  d.k = st.range(4);
  d.stride = st.range(5);
  d.pad = d.k / 2;
  const Backend& be = backend_of(st.range(6));
  const auto w = random_vec(d.cout * d.cin * d.k * d.k, 7), bias = random_vec(d.cout, 8),
             x = random_vec(b * d.cin * hw * hw, 9);
  auto op = be.prepare_conv(w.data(), bias.data(), d);
  if (!op.is_ok()) {
    st.SkipWithError(op.status().message().c_str());
    return;
  }
  const int64_t ho = (hw + 2 * d.pad - d.k) / d.stride + 1;
  std::vector<float> y(static_cast<size_t>(b * d.cout * ho * ho));
  for (auto _ : st) {
    be.conv2d(*op.value(), x.data(), b, hw, hw, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, 2.0 * b * d.cout * ho * ho * d.cin * d.k * d.k, name_of(st.range(6)));
}
BENCHMARK(BM_conv2d)
    ->Args({2, 192, 192, 32, 3, 1, 0})  // seed-scale refiner, level 0
    ->Args({2, 768, 768, 8, 3, 1, 0})   // seed-scale refiner, level 2
    ->Args({2, 24, 24, 28, 3, 1, 0})    // demo refiner, level 0
    ->Args({2, 24, 24, 28, 3, 1, 1})
    ->Unit(benchmark::kMicrosecond);

// ---- LayerNorm + adaLN modulate (args: rows, D, backend): bytes/s (read x, write y) ----
void BM_layer_norm_modulate(benchmark::State& st) {
  const int64_t rows = st.range(0), d = st.range(1);
  const Backend& be = backend_of(st.range(2));
  const auto x = random_vec(rows * d, 10), mod = random_vec(2 * d, 11);
  std::vector<float> y(static_cast<size_t>(rows * d));
  for (auto _ : st) {
    be.layer_norm_modulate(x.data(), 1, rows, d, 1e-6f, mod.data(), mod.data() + d, 2 * d,
                           y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * rows * d * 8);
  st.SetLabel(name_of(st.range(2)));
}
BENCHMARK(BM_layer_norm_modulate)
    ->Args({512, 1280, 0})
    ->Args({512, 1280, 1})
    ->Unit(benchmark::kMicrosecond);

// ---- GroupNorm + SiLU (args: batch, C, H·W, groups, backend): bytes/s ----
void BM_group_norm_silu(benchmark::State& st) {
  const int64_t b = st.range(0), c = st.range(1), hw = st.range(2), g = st.range(3);
  const Backend& be = backend_of(st.range(4));
  const auto x = random_vec(b * c * hw, 12), gamma = random_vec(c, 13), beta = random_vec(c, 14);
  std::vector<float> y(x.size());
  for (auto _ : st) {
    be.group_norm(x.data(), b, c, hw, g, gamma.data(), beta.data(), 1e-5f, true, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * b * c * hw * 8);
  st.SetLabel(name_of(st.range(4)));
}
BENCHMARK(BM_group_norm_silu)
    ->Args({2, 192, 1024, 32, 0})
    ->Args({2, 192, 1024, 32, 1})
    ->Unit(benchmark::kMicrosecond);

// ---- CARAFE (args: batch, C, H = W (input), k, backend); scale 2 ----
void BM_carafe(benchmark::State& st) {
  const int64_t b = st.range(0), c = st.range(1), hw = st.range(2), k = st.range(3), s = 2;
  const Backend& be = backend_of(st.range(4));
  const auto x = random_vec(b * c * hw * hw, 15), enc = random_vec(b * s * s * k * k * hw * hw, 16);
  std::vector<float> scratch(static_cast<size_t>(be.carafe_scratch_floats(b, c, hw, hw, k, s)));
  std::vector<float> y(static_cast<size_t>(b * c * hw * s * hw * s));
  for (auto _ : st) {
    be.carafe(x.data(), enc.data(), b, c, hw, hw, k, s, scratch.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, 2.0 * k * k * b * c * hw * s * hw * s, name_of(st.range(4)));
}
BENCHMARK(BM_carafe)
    ->Args({2, 384, 16, 5, 0})  // seed-scale, level 1 -> 0
    ->Args({2, 48, 14, 5, 0})   // demo
    ->Args({2, 48, 14, 5, 1})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  // --threads N (ours, removed before Google Benchmark parses the rest); default: OpenMP's.
  std::vector<char*> args;
  int threads = omp_get_max_threads();
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*argv[i] == '\0' || *end != '\0' || v < 1 || v > 1024) {
        std::fprintf(stderr,
                     "duet_kernel_bench: --threads must be an integer in [1, 1024], got '%s'\n",
                     argv[i]);
        return 2;
      }
      threads = static_cast<int>(v);
      continue;
    }
    args.push_back(argv[i]);
  }
  omp_set_num_threads(threads);
  const duet::bench::FmaPeak peak = duet::bench::measure_fma_peak(threads);
  if (peak.ok) g_peak_gflops = peak.gflops_nt;
  std::printf("duet kernel bench: %d threads, FMA peak (%s) %.1f GFLOP/s\n", threads, peak.isa,
              g_peak_gflops);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

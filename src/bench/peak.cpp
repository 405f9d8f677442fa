// FP32 FMA throughput microkernel. Each iteration issues 16 independent FMAs on 512-bit (or
// 256-bit) registers; 2 FLOPs per lane per FMA. acc = acc * b + a with loop-invariant a, b keeps
// the chains alive without memory traffic; the result is folded into a volatile sink.
#include "bench/peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>

#include "duet/cpu_features.h"

namespace duet::bench {

namespace {

volatile float g_sink = 0;

__attribute__((target("avx512f"))) double fma_loop_avx512(long iters) {
  __m512 a = _mm512_set1_ps(1e-7f), b = _mm512_set1_ps(0.999999f);
  __m512 c0 = _mm512_set1_ps(0.f), c1 = _mm512_set1_ps(1.f), c2 = _mm512_set1_ps(2.f),
         c3 = _mm512_set1_ps(3.f), c4 = _mm512_set1_ps(4.f), c5 = _mm512_set1_ps(5.f),
         c6 = _mm512_set1_ps(6.f), c7 = _mm512_set1_ps(7.f), c8 = _mm512_set1_ps(8.f),
         c9 = _mm512_set1_ps(9.f), c10 = _mm512_set1_ps(10.f), c11 = _mm512_set1_ps(11.f),
         c12 = _mm512_set1_ps(12.f), c13 = _mm512_set1_ps(13.f), c14 = _mm512_set1_ps(14.f),
         c15 = _mm512_set1_ps(15.f);
  for (long i = 0; i < iters; ++i) {
    c0 = _mm512_fmadd_ps(c0, b, a);
    c1 = _mm512_fmadd_ps(c1, b, a);
    c2 = _mm512_fmadd_ps(c2, b, a);
    c3 = _mm512_fmadd_ps(c3, b, a);
    c4 = _mm512_fmadd_ps(c4, b, a);
    c5 = _mm512_fmadd_ps(c5, b, a);
    c6 = _mm512_fmadd_ps(c6, b, a);
    c7 = _mm512_fmadd_ps(c7, b, a);
    c8 = _mm512_fmadd_ps(c8, b, a);
    c9 = _mm512_fmadd_ps(c9, b, a);
    c10 = _mm512_fmadd_ps(c10, b, a);
    c11 = _mm512_fmadd_ps(c11, b, a);
    c12 = _mm512_fmadd_ps(c12, b, a);
    c13 = _mm512_fmadd_ps(c13, b, a);
    c14 = _mm512_fmadd_ps(c14, b, a);
    c15 = _mm512_fmadd_ps(c15, b, a);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s,
                    _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                                  _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
  alignas(64) float lanes[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside its header
  _mm512_store_ps(lanes, s);
  float sum = 0.f;
  for (float v : lanes) sum += v;
  g_sink = g_sink + sum;
  return 16.0 * 16.0 * 2.0 * static_cast<double>(iters);  // FLOPs
}

__attribute__((target("avx2,fma"))) double fma_loop_avx2(long iters) {
  __m256 a = _mm256_set1_ps(1e-7f), b = _mm256_set1_ps(0.999999f);
  __m256 c[12];
  for (int j = 0; j < 12; ++j) c[j] = _mm256_set1_ps(static_cast<float>(j));
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) c[j] = _mm256_fmadd_ps(c[j], b, a);
  }
  __m256 s = c[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, c[j]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  g_sink = g_sink + out[0] + out[7];
  return 12.0 * 8.0 * 2.0 * static_cast<double>(iters);
}

// GFLOP/s of `threads` threads each running the loop; wall time of the whole parallel region.
double run(bool avx512, int threads, long iters) {
  double flops_total = 0;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops_total)
  { flops_total += avx512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters); }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return flops_total / s * 1e-9;
}

double best_of(bool avx512, int threads, double seconds) {
  // calibrate: iterations for ~seconds on one thread
  long iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    run(avx512, 1, iters);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > seconds / 8 || iters > (1L << 40)) {
      iters = static_cast<long>(static_cast<double>(iters) * seconds / std::max(s, 1e-6));
      break;
    }
    iters *= 4;
  }
  double best = 0;
  for (int k = 0; k < 3; ++k) best = std::max(best, run(avx512, threads, iters));
  return best;
}

}  // namespace

FmaPeak measure_fma_peak(int threads, double seconds) {
  FmaPeak p;
  p.threads = std::max(1, threads);
  auto ci = cpu_info();  // honours DUET_MAX_ISA: the peak of the ISA duet runs at
  if (!ci.is_ok()) return p;
  const CpuIsa& isa = (*ci)->usable;
  if (isa.avx512f) {
    p.avx512 = true;
    p.isa = "avx512f";
  } else if (isa.avx2 && isa.fma) {
    p.isa = "avx2+fma";
  } else {
    return p;
  }
  p.gflops_1t = best_of(p.avx512, 1, seconds);
  p.gflops_nt = p.threads == 1 ? p.gflops_1t : best_of(p.avx512, p.threads, seconds);
  p.ok = true;
  return p;
}

}  // namespace duet::bench

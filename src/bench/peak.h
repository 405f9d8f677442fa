// Measured FP32 FMA peak for `duet bench` / `duet info` (src/bench/peak.cpp): a register-only FMA
// loop at the widest vector ISA duet may use (AVX-512 or AVX2, after DUET_MAX_ISA)
// (16 independent accumulator chains, so FMA latency is hidden and only throughput counts).
#pragma once

namespace duet::bench {

struct FmaPeak {
  bool avx512 = false;  // false: AVX2+FMA fallback (or no measurement at all when ok = false)
  bool ok = false;
  double gflops_1t = 0;  // one thread
  double gflops_nt = 0;  // `threads` threads, each running the loop (OpenMP)
  int threads = 1;
  const char* isa = "none";
};

// Runs for about `seconds` per measurement (best of 3 trials).
FmaPeak measure_fma_peak(int threads, double seconds = 0.3);

}  // namespace duet::bench

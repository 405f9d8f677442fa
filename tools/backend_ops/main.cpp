// duet_backend_ops [test|perf|list] [--op NAME] [--backend NAME] [--config PATH]... [--reps N]
//
//   test (default): every case on every backend other than the reference, against the reference
//        backend at the same precision: NMSE within the case's bound, no NaN / Inf, guard bytes
//        around every output intact. Exit 1 on any failure. Unsupported op / precision pairs
//        are printed as SKIP with the backend's reason (never counted as passed).
//   perf: median time per call over --reps calls (after one warm-up), GFLOP/s or GB/s, and the
//        share of the measured FP32 FMA peak for compute ops.
//   list: which op x precision each backend supports.
// Without --config, the fixture configs tests/fixtures/{tiny-demo,awkward}/config.json are used
// (relative to DUET_SOURCE_DIR).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bench/peak.h"
#include "duet/cpu_features.h"
#include "harness.h"

using namespace duet;
using namespace duet::backend_ops;

namespace {

struct Run {
  Status status;  // kUnimplemented: unsupported
  Bound bound;
  std::vector<std::vector<float>> out;
};

// Binds `c` on `be`, calls it once and downloads (guard-checked) outputs.
Run run_once(const Case& c, const Backend& be) {
  Run r;
  Arena a{be, r.bound, Status::ok()};
  r.status = c.setup(be, a);
  if (!r.status.is_ok()) return r;
  if (!r.bound.call) {
    r.status = internal_error("the case bound no call");
    return r;
  }
  r.bound.call();
  for (const Guarded* g : r.bound.outputs) {
    std::vector<float> v;
    Status s = g->check(&v);
    if (!s.is_ok()) {
      r.status = internal_error(std::string(be.name()) + " " + s.message());
      return r;
    }
    r.out.push_back(std::move(v));
  }
  return r;
}

const char* prec(Precision p) { return precision_name(p); }

int usage() {
  std::fprintf(stderr,
               "usage: duet_backend_ops [test|perf|list] [--op NAME] [--backend cpu|"
               "reference-device] [--config PATH]... [--reps N]\n");
  return 2;
}

// The case's bound on `be`. The cuda backend computes exp, tanh, sin / cos with CUDA's device
// maths (within 2 ulp of glibc, not bitwise equal), so its exact (bound 0) cases get 1e-12, and
// its GEMMs / attention / FFT accumulate in a different order and precision (fp32 sums in
// cuBLASLt tiles): f32 bound 1e-10 is kept (TF32 off); docs/gpu.md.
double bound_for(const Case& c, const Backend& be) {
  if (std::string(be.name()) == "cuda" && c.bound == 0) return 1e-12;
  return c.bound;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "test", only_op, only_backend;
  std::vector<std::string> configs;
  int reps = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "duet_backend_ops: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "test" || a == "perf" || a == "list") {
      mode = a;
    } else if (a == "--op") {
      only_op = value("--op");
    } else if (a == "--backend") {
      only_backend = value("--backend");
    } else if (a == "--config") {
      configs.push_back(value("--config"));
    } else if (a == "--reps") {
      reps = std::atoi(value("--reps"));
      if (reps < 1) {
        std::fprintf(stderr, "duet_backend_ops: --reps must be >= 1\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "duet_backend_ops: unknown argument '%s'\n", a.c_str());
      return usage();
    }
  }
  if (configs.empty())
    for (const char* f : {"tiny-demo", "awkward"})
      configs.push_back(std::string(DUET_SOURCE_DIR) + "/tests/fixtures/" + f + "/config.json");
  auto cpu = cpu_info();
  if (!cpu.is_ok()) {
    std::fprintf(stderr, "duet_backend_ops: %s\n", cpu.status().to_string().c_str());
    return 1;
  }
  std::printf("duet_backend_ops %s on %s\n", mode.c_str(), cpu_info_line(**cpu).c_str());

  const Backend& ref = reference_backend();
  std::vector<const Backend*> backends;
  std::vector<BackendKind> kinds = {BackendKind::kCpu, BackendKind::kReferenceDevice};
#ifdef DUET_HAVE_CUDA
  kinds.push_back(BackendKind::kCuda);  // built with -DDUET_CUDA=ON
#endif
  for (BackendKind k : kinds) {
    if (!only_backend.empty() && only_backend != backend_kind_name(k)) continue;
    auto be = find_backend(k);
    if (!be.is_ok()) {
      // Asked for by name: its absence is a failure. Implied (no --backend): said and left out.
      std::fprintf(stderr, "duet_backend_ops: %s\n", be.status().message().c_str());
      if (!only_backend.empty()) return 1;
      continue;
    }
    backends.push_back(*be);
  }
  if (backends.empty()) {
    std::fprintf(stderr, "duet_backend_ops: unknown --backend '%s' (cpu, reference-device%s)\n",
                 only_backend.c_str(),
#ifdef DUET_HAVE_CUDA
                 ", cuda"
#else
                 ""
#endif
    );
    return 2;
  }
  std::vector<Case> cases = all_cases(configs);
  if (!only_op.empty())
    cases.erase(
        std::remove_if(cases.begin(), cases.end(), [&](const Case& c) { return c.op != only_op; }),
        cases.end());
  if (cases.empty()) {
    std::fprintf(stderr, "duet_backend_ops: no case matches --op '%s'\n", only_op.c_str());
    return 2;
  }

  if (mode == "list") {
    // op x precision -> backend -> "ok" or the reason
    std::map<std::string, std::map<std::string, std::string>> table;
    for (const Case& c : cases)
      for (const Backend* be : backends) {
        Bound b;
        Arena a{*be, b, Status::ok()};
        Status s = c.setup(*be, a);
        std::string& cell = table[c.op + " " + prec(c.precision)][be->name()];
        if (cell.empty() || cell == "ok") cell = s.is_ok() ? "ok" : "unsupported: " + s.message();
      }
    std::printf("%-28s", "op precision");
    for (const Backend* be : backends) std::printf(" | %-18s", be->name());
    std::printf("\n");
    for (const auto& [row, cells] : table) {
      std::printf("%-28s", row.c_str());
      for (const Backend* be : backends) std::printf(" | %s", cells.at(be->name()).c_str());
      std::printf("\n");
    }
    return 0;
  }

  if (mode == "perf") {
    const bench::FmaPeak peak = bench::measure_fma_peak(omp_get_max_threads(), 0.2);
    std::printf("FP32 FMA peak: %.1f GFLOP/s on %d threads (%s)\n", peak.gflops_nt, peak.threads,
                peak.isa);
    std::printf("%-20s %-5s %-17s %10s %10s %8s  %s\n", "op", "prec", "backend", "us/call", "rate",
                "% peak", "shape");
    for (const Case& c : cases)
      for (const Backend* be : backends) {
        Run r = run_once(c, *be);
        if (!r.status.is_ok()) {
          std::printf("%-20s %-5s %-17s %s\n", c.op.c_str(), prec(c.precision), be->name(),
                      r.status.message().c_str());
          continue;
        }
        std::vector<double> us;
        for (int i = 0; i < reps; ++i) {
          const auto t0 = std::chrono::steady_clock::now();
          r.bound.call();
          us.push_back(
              std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                  .count());
        }
        std::sort(us.begin(), us.end());
        const double med = us[us.size() / 2];
        char rate[32], pct[16] = "";
        if (c.flops > 0) {
          std::snprintf(rate, sizeof rate, "%.2f GF/s", c.flops / med / 1e3);
          if (peak.ok)
            std::snprintf(pct, sizeof pct, "%.1f", 100 * c.flops / med / 1e3 / peak.gflops_nt);
        } else {
          std::snprintf(rate, sizeof rate, "%.2f GB/s", c.bytes / med / 1e3);
        }
        std::printf("%-20s %-5s %-17s %10.1f %10s %8s  %s\n", c.op.c_str(), prec(c.precision),
                    be->name(), med, rate, pct, c.shape.c_str());
      }
    return 0;
  }

  // test
  int passed = 0, failed = 0, skipped = 0;
  std::set<std::string> ops_seen;
  for (const Case& c : cases) {
    Run want = run_once(c, ref);
    ops_seen.insert(c.op);
    if (!want.status.is_ok()) {
      std::printf("FAIL %-20s %-5s reference: %s [%s]\n", c.op.c_str(), prec(c.precision),
                  want.status.to_string().c_str(), c.shape.c_str());
      ++failed;
      continue;
    }
    for (const Backend* be : backends) {
      reset_reference_device_violations();
      Run got = run_once(c, *be);
      if (got.status.code() == StatusCode::kUnimplemented) {
        std::printf("SKIP %-20s %-5s %-17s unsupported: %s [%s]\n", c.op.c_str(), prec(c.precision),
                    be->name(), got.status.message().c_str(), c.shape.c_str());
        ++skipped;
        continue;
      }
      std::string why;
      double worst = 0;
      if (!got.status.is_ok()) {
        why = got.status.to_string();
      } else {
        for (size_t k = 0; k < want.out.size(); ++k)
          worst = std::max(worst, nmse(got.out[k], want.out[k]));
        if (worst > bound_for(c, *be)) why = "NMSE over the bound";
        const BoundaryViolations v = reference_device_violations();
        if (v.count) why = std::to_string(v.count) + " boundary violations: " + v.first;
      }
      std::printf("%s %-20s %-5s %-17s nmse %.2e (bound %.0e)%s%s [%s]\n",
                  why.empty() ? "PASS" : "FAIL", c.op.c_str(), prec(c.precision), be->name(), worst,
                  bound_for(c, *be), why.empty() ? "" : ": ", why.c_str(), c.shape.c_str());
      (why.empty() ? passed : failed)++;
    }
  }
  // Every op of the Backend interface has cases (a new op without one fails here).
  static const char* kInterfaceOps[] = {"linear",
                                        "conv2d",
                                        "layer_norm",
                                        "layer_norm_modulate",
                                        "group_norm",
                                        "attention",
                                        "carafe",
                                        "highpass",
                                        "add",
                                        "add_gated_rows",
                                        "silu",
                                        "film",
                                        "gated_film",
                                        "concat_channels",
                                        "concat_broadcast",
                                        "dual_attention",
                                        "fuse",
                                        "global_avg_pool",
                                        "timestep_sinusoid",
                                        "unpatchify",
                                        "embed_tokens",
                                        "masked_mean"};
  if (only_op.empty())
    for (const char* op : kInterfaceOps)
      if (!ops_seen.count(op)) {
        std::printf("FAIL %s: no case covers this Backend op\n", op);
        ++failed;
      }
  std::printf("%d passed, %d failed, %d skipped (unsupported) over %zu ops x %zu backends\n",
              passed, failed, skipped, ops_seen.size(), backends.size());
  return failed ? 1 : 0;
}

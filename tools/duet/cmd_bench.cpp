// duet bench — in-process per-stage timings of the cpu engine.
//
//   duet bench --model DIR [--batch 2] [--reps 5] [--threads 2] [--steps 20] [--gen-reps 3]
//              [--inputs IN.safetensors] [--eps-out EPS.safetensors] [--no-gemm] [--json]
//              [--precision f32|bf16|int8] [--no-quality] [--quality-model DIR]
//
// Stages (each: one warm-up, then --reps timed runs; median / min / max):
//   prompt_encode      Model::encode_prompt of B texts (text encoder + every block's K/V + sem
//   gate) denoise_no_refine  Context::denoise(refine = false)   (x [B, C, H, W], t [B])
//   denoise_refine     Context::denoise(refine = true)
//   backbone_gemm.*    the backbone's token GEMMs in isolation (cpu backend linear, M = B·N)
//   generate           a full pipeline generate(): --steps dpmpp_2m, cfg 4 (model batch B = 2n,
//                      n = max(1, B/2)), the config's refine schedule; --steps 0 skips it
// FLOPs are analytic (src/bench/flops.h); % of peak is against a measured AVX-512 FMA loop on the
// same thread count (src/bench/peak.h). The heap check reads mallinfo2 before and after the timed
// denoise loop (after the warm-up): in-use bytes and bytes obtained from the system.
// --inputs: the file bench/torch_peer.py writes (tensor x, metadata prompt and t), so both engines
// see the same inputs; --eps-out writes eps_s, eps_d, eps of one refine=true evaluation.
// --precision: every stage (and the isolated GEMMs) at that precision. Quality guard (when not
// f32, unless --no-quality): an fp32 copy of the model is loaded afterwards and compared on the
// same inputs: relative L2 of eps (one refine=true denoise) and PSNR of the final generated image
// (same seed, images mapped from [-1, 1] to [0, 1], PSNR = 10 log10(1 / MSE)).
#include <malloc.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "backend_option.h"
#include "backends/backend.h"
#include "bench/flops.h"
#include "bench/peak.h"
#include "command.h"
#include "duet/cpu_features.h"
#include "duet/model.h"
#include "duet/pipeline.h"
#include "duet/safetensors.h"
#include "ops/lowp.h"
#include "precision_option.h"

namespace {

using namespace duet;
using Clock = std::chrono::steady_clock;

struct BenchArgs {
  std::string model, inputs, eps_out, precision, quality_model;
  std::string cfg_interval;   // generate: "LO,HI" (GenerateParams::cfg_sigma_lo / hi)
  std::string cache = "off";  // generate: backbone cache spec (GenerateParams::cache)
  std::string backend = "cpu";
  int batch = 2, reps = 5, threads = 2, steps = 20, gen_reps = 3;
  bool json = false, no_gemm = false, no_quality = false;
  double peak_seconds = 0.3;
};

struct Stat {
  std::string name;
  std::vector<double> ms;
  double flops = 0;  // per run
  double median() const {
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
  }
  double min() const { return ms.empty() ? 0 : *std::min_element(ms.begin(), ms.end()); }
  double max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }
  double gflops() const { return flops > 0 && median() > 0 ? flops / (median() * 1e-3) * 1e-9 : 0; }
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

template <class F>
Status time_stage(Stat* st, int reps, F&& fn) {
  DUET_RETURN_IF_ERROR(fn());  // warm-up
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    DUET_RETURN_IF_ERROR(fn());
    st->ms.push_back(ms_since(t0));
  }
  return Status::ok();
}

struct HeapSnap {
  size_t in_use = 0, from_system = 0;
};
HeapSnap heap_snap() {
  const struct mallinfo2 mi = mallinfo2();
  return {mi.uordblks + mi.hblkhd, mi.arena + mi.hblkhd};
}

double rel_l2(const Tensor& a, const Tensor& ref) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double d = static_cast<double>(a.f32()[i]) - ref.f32()[i];
    num += d * d;
    den += static_cast<double>(ref.f32()[i]) * ref.f32()[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// PSNR (dB) of images in [-1, 1] mapped to [0, 1] (clamped); 99 when identical.
double image_psnr(const Tensor& a, const Tensor& ref) {
  double se = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double u = std::clamp((a.f32()[i] + 1.0) * 0.5, 0.0, 1.0);
    const double v = std::clamp((ref.f32()[i] + 1.0) * 0.5, 0.0, 1.0);
    se += (u - v) * (u - v);
  }
  const double mse = se / std::max<int64_t>(1, ref.numel());
  return mse > 0 ? 10.0 * std::log10(1.0 / mse) : 99.0;
}

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is KiB on Linux
}

Status run_bench(const BenchArgs& a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  const int threads = omp_get_max_threads();
  nlohmann::json out;
  out["engine"] = "duet";
  out["threads"] = threads;
  DUET_ASSIGN_OR_RETURN(const CpuInfo* cpu, cpu_info());
  out["cpu"] = cpu_info_json(*cpu);  // which CPU and dispatch the figures came from

  // ---- FMA peak (before the model is loaded: nothing else running) ----
  const bench::FmaPeak peak = bench::measure_fma_peak(threads, a.peak_seconds);
  out["fma_peak"] = {{"isa", peak.isa},
                     {"ok", peak.ok},
                     {"gflops_1t", peak.gflops_1t},
                     {"gflops_nt", peak.gflops_nt},
                     {"threads", peak.threads}};

  DUET_ASSIGN_OR_RETURN(const Precision precision, cli::resolve_precision(a.precision, a.model));
  out["precision"] = precision_name(precision);
  LoadOptions lo;
  lo.precision = precision;
  DUET_ASSIGN_OR_RETURN(lo.backend, cli::resolve_backend(a.backend));
  out["backend"] = backend_kind_name(lo.backend);
  auto t_load = Clock::now();
  DUET_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, Model::load(a.model, lo));
  out["load_ms"] = ms_since(t_load);
  const ModelConfig& cfg = model->config();
  out["model"] = cfg.name;
  out["parameters"] = model->info().parameters;

  // ---- inputs ----
  std::string prompt = "a photo of a sneaker";
  float tval = 500.5f;
  int64_t B = a.batch;
  const int64_t C = cfg.image.channels, H = cfg.image.height, W = cfg.image.width;
  Tensor x;
  if (!a.inputs.empty()) {
    DUET_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(a.inputs));
    DUET_ASSIGN_OR_RETURN(x, f.load_f32("x"));
    if (x.rank() != 4 || x.dim(1) != C || x.dim(2) != H || x.dim(3) != W)
      return invalid_argument(a.inputs + ": x must be [B, " + std::to_string(C) + ", " +
                              std::to_string(H) + ", " + std::to_string(W) + "], got " +
                              shape_string(x.shape()));
    B = x.dim(0);
    const auto& md = f.metadata();
    if (auto it = md.find("prompt"); it != md.end()) prompt = it->second;
    if (auto it = md.find("t"); it != md.end()) tval = std::stof(it->second);
  } else {
    x = Tensor::zeros({B, C, H, W});
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = nd(rng);
  }
  Tensor t = Tensor::zeros({B});
  for (int64_t i = 0; i < B; ++i) t.f32()[i] = tval;
  out["batch"] = B;
  out["prompt"] = prompt;
  out["t"] = tval;
  const bench::FlopCount fc = bench::count_flops(cfg, B, H, W);

  std::vector<Stat> stats;
  const std::vector<std::string> texts(static_cast<size_t>(B), prompt);

  // ---- prompt encode ----
  Stat enc{"prompt_encode", {}, fc.prompt_encode()};
  DUET_RETURN_IF_ERROR(time_stage(&enc, a.reps, [&]() -> Status {
    DUET_ASSIGN_OR_RETURN(PromptState ps, model->encode_prompt(texts));
    (void)ps;
    return Status::ok();
  }));
  stats.push_back(enc);
  DUET_ASSIGN_OR_RETURN(PromptState ps, model->encode_prompt(texts));

  // ---- denoise ----
  ContextOptions co;
  co.max_batch = B;
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<Context> ctx, Context::create(model, co));
  const size_t workspace_bytes = ctx->workspace_bytes();
  out["workspace_bytes"] = workspace_bytes;
  // warm-up of both paths (twice: lazily created backend state settles) before the heap snapshot
  for (int i = 0; i < 2; ++i) {
    DUET_RETURN_IF_ERROR(ctx->denoise(x, t, ps, false));
    DUET_RETURN_IF_ERROR(ctx->denoise(x, t, ps, true));
  }
  Stat dn{"denoise_no_refine", {}, fc.denoise_no_refine()};
  Stat dr{"denoise_refine", {}, fc.denoise_refine()};
  dn.ms.reserve(static_cast<size_t>(a.reps));  // the timing vectors must not allocate in the loop
  dr.ms.reserve(static_cast<size_t>(a.reps));
  const HeapSnap h0 = heap_snap();
  for (int i = 0; i < a.reps; ++i) {
    auto t0 = Clock::now();
    DUET_RETURN_IF_ERROR(ctx->denoise(x, t, ps, false));
    dn.ms.push_back(ms_since(t0));
  }
  for (int i = 0; i < a.reps; ++i) {
    auto t0 = Clock::now();
    DUET_RETURN_IF_ERROR(ctx->denoise(x, t, ps, true));
    dr.ms.push_back(ms_since(t0));
  }
  const HeapSnap h1 = heap_snap();
  stats.push_back(dn);
  stats.push_back(dr);
  out["heap_step_loop"] = {{"in_use_before", h0.in_use},
                           {"in_use_after", h1.in_use},
                           {"from_system_before", h0.from_system},
                           {"from_system_after", h1.from_system},
                           {"grew", h1.in_use > h0.in_use || h1.from_system > h0.from_system}};
  // refiner share, derived
  out["refiner_extra_ms"] = dr.median() - dn.median();

  // quality guard, part 1: eps (refine = true) vs an fp32 model on the same inputs
  nlohmann::json quality = nlohmann::json::object();
  const std::string ref_dir = a.quality_model.empty() ? a.model : a.quality_model;
  if (precision != Precision::kF32 && !a.no_quality) {
    quality["reference"] = ref_dir;
    DUET_ASSIGN_OR_RETURN(std::optional<Precision> ref_stored, checkpoint_precision(ref_dir));
    if (ref_stored)
      quality["reference_note"] =
          "the reference is itself a quantised checkpoint (run at f32 = dequantised); pass "
          "--quality-model ORIGINAL_DIR";
    DUET_RETURN_IF_ERROR(ctx->denoise(x, t, ps, true));
    const Tensor eps = ctx->eps().clone();
    DUET_ASSIGN_OR_RETURN(std::shared_ptr<const Model> m32, Model::load(ref_dir));
    DUET_ASSIGN_OR_RETURN(PromptState ps32, m32->encode_prompt(texts));
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<Context> c32, Context::create(m32, co));
    DUET_RETURN_IF_ERROR(c32->denoise(x, t, ps32, true));
    quality["eps_rel_l2"] = rel_l2(eps, c32->eps());
  }

  if (!a.eps_out.empty()) {
    DUET_RETURN_IF_ERROR(ctx->denoise(x, t, ps, true));
    DUET_RETURN_IF_ERROR(write_safetensors(
        a.eps_out, {{"eps_s", ctx->eps_s()}, {"eps_d", ctx->eps_d()}, {"eps", ctx->eps()}},
        {{"prompt", prompt}, {"engine", "duet"}}));
  }

  // ---- backbone GEMMs in isolation (the cpu backend's linear on the backbone's shapes) ----
  if (!a.no_gemm && model->backend_kind() == BackendKind::kCpu) {
    const Backend& be = cpu_backend();
    const int64_t D = cfg.backbone.width, R = cfg.backbone.mlp_ratio;
    const int64_t M = B * cfg.tokens();
    struct Shape3 {
      const char* name;
      int64_t out, in;
      Activation act;
    };
    const Shape3 shapes[] = {{"qkv", 3 * D, D, Activation::kNone},
                             {"proj", D, D, Activation::kNone},
                             {"mlp_fc1", R * D, D, Activation::kGeluTanh},
                             {"mlp_fc2", D, R * D, Activation::kNone}};
    std::mt19937 rng(2);
    std::uniform_real_distribution<float> ud(-0.05f, 0.05f);
    double total_flops = 0, total_ms = 0;
    nlohmann::json gj = nlohmann::json::object();
    for (const Shape3& s : shapes) {
      std::vector<float> w(static_cast<size_t>(s.out * s.in)), bias(static_cast<size_t>(s.out));
      for (float& v : w) v = ud(rng);
      for (float& v : bias) v = ud(rng);
      std::vector<float> xin(static_cast<size_t>(M * s.in)), y(static_cast<size_t>(M * s.out));
      for (float& v : xin) v = ud(rng);
      // weights at the bench precision (quantised as Model::load would)
      std::vector<uint16_t> wb;
      std::vector<int8_t> wq;
      std::vector<float> wscale;
      LayerWeights lw;
      lw.precision = precision;
      lw.f32 = w.data();
      if (precision == Precision::kBF16) {
        wb.resize(w.size());
        ops::to_bf16(w.data(), static_cast<int64_t>(w.size()), wb.data());
        lw.bf16 = wb.data();
      } else if (precision == Precision::kInt8) {
        wq.resize(w.size());
        wscale.resize(static_cast<size_t>(s.out));
        ops::quantize_rows_int8(w.data(), s.out, s.in, wq.data(), wscale.data());
        lw.s8 = wq.data();
        lw.scale = wscale.data();
      }
      DUET_ASSIGN_OR_RETURN(std::unique_ptr<PreparedLinear> op,
                            be.prepare_linear_weights(lw, bias.data(), s.out, s.in, s.act));
      Stat g{std::string("backbone_gemm.") + s.name, {}, 2.0 * M * s.out * s.in};
      const int inner = 5;  // several calls per sample: single calls are short at demo scale
      g.flops *= inner;
      DUET_RETURN_IF_ERROR(time_stage(&g, a.reps, [&]() -> Status {
        for (int k = 0; k < inner; ++k) be.linear(*op, xin.data(), M, y.data());
        return Status::ok();
      }));
      // weight by how often the shape occurs per block (cross q and proj share the D×D shape)
      const double per_block = std::string(s.name) == "proj" ? 3.0 : 1.0;
      total_flops += per_block * g.flops;
      total_ms += per_block * g.median();
      gj[s.name] = {{"m", M},
                    {"n", s.out},
                    {"k", s.in},
                    {"median_ms_per_call", g.median() / inner},
                    {"gflops", g.gflops()},
                    {"pct_peak", peak.ok ? 100.0 * g.gflops() / peak.gflops_nt : 0.0}};
      stats.push_back(g);
    }
    const double agg = total_flops / (total_ms * 1e-3) * 1e-9;
    gj["aggregate_gflops"] = agg;
    gj["aggregate_pct_peak"] = peak.ok ? 100.0 * agg / peak.gflops_nt : 0.0;
    out["backbone_gemm"] = gj;
  }

  // ---- full generate ----
  if (a.steps > 0 && a.gen_reps > 0) {
    ctx.reset();
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<Denoiser> den, load_denoiser(a.model, threads, lo));
    GenerateParams gp;
    gp.n = static_cast<int>(std::max<int64_t>(1, B / 2));
    gp.prompts = {prompt};
    gp.steps = a.steps;
    gp.sampler = "dpmpp_2m";
    gp.cfg_scale = 4.0f;
    gp.seed = 0;
    if (!a.cfg_interval.empty()) {
      char tail = 0;
      if (std::sscanf(a.cfg_interval.c_str(), "%lf,%lf%c", &gp.cfg_sigma_lo, &gp.cfg_sigma_hi,
                      &tail) != 2)
        return invalid_argument("--cfg-interval must be SIGMA_LO,SIGMA_HI, got '" + a.cfg_interval +
                                "'");
    }
    DUET_ASSIGN_OR_RETURN(gp.cache, parse_cache_spec(a.cache, "--cache"));
    Stat g{"generate", {}, 0};
    GenerateResult last;
    DUET_RETURN_IF_ERROR(time_stage(&g, a.gen_reps, [&]() -> Status {
      DUET_ASSIGN_OR_RETURN(last, generate(*den, gp));
      return Status::ok();
    }));
    // FLOPs of the schedule: prompt encoding of 2n texts + every call (refined or not)
    // (calls a guidance interval leaves unguided run half the batch: counted at batch / 2)
    const bench::FlopCount gfc = bench::count_flops(cfg, last.batch, H, W);
    const bench::FlopCount hfc = bench::count_flops(cfg, std::max(1, last.batch / 2), H, W);
    const std::vector<int>& gc = last.guided_calls;
    g.flops = gfc.prompt_encode();
    // A reused call skips its cached span of blocks (bench::cache_flops_saved).
    const double saved = bench::cache_flops_saved(
        cfg, gp.cache, last.cache_skipped_calls,
        [&](int c) -> int64_t {
          const bool full = gp.cfg_sigma_lo < 0 || std::find(gc.begin(), gc.end(), c) != gc.end();
          return full ? last.batch : std::max(1, last.batch / 2);
        },
        H, W);
    for (int c = 0; c < last.num_calls; ++c) {
      const bool refined = std::find(last.refined_calls.begin(), last.refined_calls.end(), c) !=
                           last.refined_calls.end();
      const bool full = gp.cfg_sigma_lo < 0 || std::find(gc.begin(), gc.end(), c) != gc.end();
      const bench::FlopCount& f = full ? gfc : hfc;
      g.flops += refined ? f.denoise_refine() : f.denoise_no_refine();
    }
    g.flops -= saved;
    out["generate_info"] = {{"steps", a.steps},
                            {"n", gp.n},
                            {"model_batch", last.batch},
                            {"model_evaluations", last.model_evaluations},
                            {"refiner_evaluations", last.refiner_evaluations},
                            {"cfg_scale", gp.cfg_scale},
                            {"guided_evaluations", last.guided_evaluations},
                            {"sampler", gp.sampler}};
    if (gp.cfg_sigma_lo >= 0)
      out["generate_info"]["cfg_interval"] = {gp.cfg_sigma_lo, gp.cfg_sigma_hi};
    out["generate_info"]["cache"] = last.cache;
    out["generate_info"]["cache_skipped_calls"] = last.cache_skipped_calls;
    out["generate_info"]["backbone_blocks_run"] = last.backbone_blocks_run;
    out["generate_info"]["backbone_blocks_total"] = last.backbone_blocks_total;
    out["generate_info"]["flops_saved_by_cache"] = saved;
    stats.push_back(g);
    if (precision != Precision::kF32 && !a.no_quality) {
      den.reset();
      LoadOptions l32 = lo;  // same backend, fp32
      l32.precision = Precision::kF32;
      DUET_ASSIGN_OR_RETURN(std::unique_ptr<Denoiser> den32, load_denoiser(ref_dir, threads, l32));
      DUET_ASSIGN_OR_RETURN(GenerateResult ref, generate(*den32, gp));
      quality["image_psnr_db"] = image_psnr(last.images, ref.images);
      quality["image_seed"] = gp.seed;
    }
  }
  if (!quality.empty()) out["quality"] = quality;

  out["peak_rss_mib"] = peak_rss_mib();
  out["flops"] = {{"text_encoder", fc.text_encoder},
                  {"prompt_kv", fc.prompt_kv},
                  {"cond", fc.cond},
                  {"backbone_gemm", fc.backbone_gemm},
                  {"backbone_attn", fc.backbone_attn},
                  {"backbone_other", fc.backbone_other},
                  {"refiner", fc.refiner},
                  {"gate", fc.gate}};
  nlohmann::json sj = nlohmann::json::object();
  for (const Stat& s : stats) {
    sj[s.name] = {{"median_ms", s.median()},
                  {"min_ms", s.min()},
                  {"max_ms", s.max()},
                  {"reps", s.ms.size()},
                  {"gflop", s.flops * 1e-9},
                  {"gflops", s.gflops()},
                  {"pct_peak", peak.ok && s.flops > 0 ? 100.0 * s.gflops() / peak.gflops_nt : 0.0}};
  }
  out["stages"] = sj;

  if (a.json) {
    std::printf("%s\n", out.dump(2).c_str());
    return Status::ok();
  }
  std::printf(
      "duet bench: %s (%lld params), precision %s, batch %lld, %d threads, prompt \"%s\", "
      "t %.2f\n",
      cfg.name.c_str(), static_cast<long long>(model->info().parameters), precision_name(precision),
      static_cast<long long>(B), threads, prompt.c_str(), tval);
  std::printf("cpu: %s\n", cpu_info_line(*cpu).c_str());
  std::printf("FMA peak (%s): %.1f GFLOP/s 1 thread, %.1f GFLOP/s %d threads\n", peak.isa,
              peak.gflops_1t, peak.gflops_nt, peak.threads);
  std::printf("%-26s %10s %10s %10s %9s %9s %7s\n", "stage", "median ms", "min ms", "max ms",
              "GFLOP", "GFLOP/s", "%peak");
  for (const Stat& s : stats) {
    std::printf("%-26s %10.3f %10.3f %10.3f %9.3f %9.1f %6.1f%%\n", s.name.c_str(), s.median(),
                s.min(), s.max(), s.flops * 1e-9, s.gflops(),
                peak.ok && s.flops > 0 ? 100.0 * s.gflops() / peak.gflops_nt : 0.0);
  }
  if (out.contains("backbone_gemm"))
    std::printf("backbone GEMMs (weighted per block): %.1f GFLOP/s = %.1f%% of peak\n",
                out["backbone_gemm"]["aggregate_gflops"].get<double>(),
                out["backbone_gemm"]["aggregate_pct_peak"].get<double>());
  std::printf("heap during the step loop: in use %zu -> %zu bytes, from system %zu -> %zu (%s)\n",
              h0.in_use, h1.in_use, h0.from_system, h1.from_system,
              out["heap_step_loop"]["grew"].get<bool>() ? "GREW" : "no growth");
  std::printf("peak RSS %.1f MiB, workspace %zu bytes\n", peak_rss_mib(), workspace_bytes);
  if (out.contains("quality")) {
    const nlohmann::json& q = out["quality"];
    std::printf("quality vs fp32: eps rel-L2 %.3e", q.value("eps_rel_l2", 0.0));
    if (q.contains("image_psnr_db"))
      std::printf(", generated image PSNR %.2f dB (seed %d)", q["image_psnr_db"].get<double>(),
                  q["image_seed"].get<int>());
    std::printf("\n");
    if (q.contains("reference_note"))
      std::printf("note: %s\n", q["reference_note"].get<std::string>().c_str());
  }
  return Status::ok();
}

duet::cli::CommandRegistrar registrar(
    "bench", "Time prompt encoding, denoise (with/without refiner), GEMMs and generate in-process",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<BenchArgs>();
      sub.add_option("--model", a->model, "model directory (config.json + model.safetensors)")
          ->required();
      sub.add_option("--batch", a->batch, "model batch B (ignored with --inputs)")
          ->check(CLI::Range(1, 64));
      sub.add_option("--reps", a->reps, "timed repetitions per stage")->check(CLI::Range(1, 1000));
      sub.add_option("--threads", a->threads, "OpenMP threads (0 = default)")
          ->check(CLI::NonNegativeNumber);
      sub.add_option(
          "--cfg-interval", a->cfg_interval,
          "generate: SIGMA_LO,SIGMA_HI guidance interval (duet generate --cfg-interval)");
      sub.add_option("--cache", a->cache, "generate: backbone cache spec (duet generate --cache)")
          ->capture_default_str();
      sub.add_option("--steps", a->steps, "generate: dpmpp_2m steps (0 = skip generate)")
          ->check(CLI::Range(0, 1000));
      sub.add_option("--gen-reps", a->gen_reps, "generate: timed repetitions")
          ->check(CLI::Range(0, 100));
      sub.add_option("--inputs", a->inputs,
                     "x / prompt / t from bench/torch_peer.py's inputs file");
      sub.add_option("--eps-out", a->eps_out, "write eps_s, eps_d, eps (refine = true) here");
      sub.add_option("--peak-seconds", a->peak_seconds, "FMA peak: seconds per trial");
      sub.add_flag("--no-gemm", a->no_gemm, "skip the isolated backbone GEMM timings");
      sub.add_flag("--json", a->json, "print JSON instead of a table");
      cli::add_precision_option(sub, &a->precision);
      cli::add_backend_option(sub, &a->backend);
      sub.add_flag("--no-quality", a->no_quality,
                   "skip the quality guard (eps rel-L2 and image PSNR vs fp32)");
      sub.add_option("--quality-model", a->quality_model,
                     "fp32 reference model for the quality guard (default: --model; give the "
                     "original directory when --model is a `duet quantize` checkpoint)");
      return [a]() {
        Status st = run_bench(*a);
        if (!st.is_ok()) {
          std::fprintf(stderr, "duet bench: %s\n", st.to_string().c_str());
          return 1;
        }
        return 0;
      };
    });

}  // namespace

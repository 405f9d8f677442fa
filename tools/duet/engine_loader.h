// The image engine behind `duet serve` and `duet worker`: the fake engine, or a model directory
// loaded with --precision / --backend / --threads into the generation pipeline.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "backend_option.h"
#include "duet/config.h"
#include "duet/model.h"
#include "duet/pipeline.h"
#include "duet/serve_engine.h"
#include "precision_option.h"

namespace duet::cli {

struct EngineArgs {
  std::string model;
  bool fake = false;
  double fake_step_ms = 20;
  int threads = 0;
  std::string precision;        // --precision (empty: the checkpoint's, else f32)
  std::string backend = "cpu";  // --backend
  double prompt_cache_mb = 64;
  double max_memory_mb = 0;  // --max-memory (0 = no cap)
};

// The engine, or null after printing "<command>: <reason>" on stderr.
inline std::unique_ptr<ImageEngine> load_engine(const EngineArgs& a, const char* command) {
  if (a.fake) {
    FakeEngineOptions fo;
    fo.step_ms = a.fake_step_ms;
    fo.row_ms = a.fake_step_ms / 8;
    return make_fake_engine(fo);
  }
  if (a.model.empty()) {
    std::fprintf(stderr, "%s: --model DIR is required\n", command);
    return nullptr;
  }
  auto precision = resolve_precision(a.precision, a.model);
  if (!precision) {
    std::fprintf(stderr, "%s: %s\n", command, precision.status().to_string().c_str());
    return nullptr;
  }
  auto kind = resolve_backend(a.backend);
  if (!kind) {
    std::fprintf(stderr, "%s: %s\n", command, kind.status().to_string().c_str());
    return nullptr;
  }
  // Loaded on a short-lived thread: the OpenMP thread pool that loading creates goes away with
  // it, so the engine thread's pool is the process's only one. Two pools would outnumber the
  // cores, and libgomp then stops spinning between parallel regions (throttled spin): every
  // region's wake-up became a futex call, and a 10-step demo request took 65 ms on 2 threads
  // instead of 23 ms (37 ms on 1 thread).
  LoadOptions lo;
  lo.precision = *precision;
  lo.backend = *kind;
  Result<std::unique_ptr<Denoiser>> model(internal_error("not loaded"));
  std::thread([&] { model = load_denoiser(a.model, a.threads, lo); }).join();
  if (!model) {
    std::fprintf(stderr, "%s: %s\n", command, model.status().to_string().c_str());
    return nullptr;
  }
  PipelineEngineOptions po;
  po.prompt_cache_bytes = static_cast<int64_t>(a.prompt_cache_mb * 1048576.0);
  po.threads = a.threads;
  po.max_memory_bytes = static_cast<int64_t>(a.max_memory_mb * 1048576.0);
  if (auto cfg = load_config(a.model + "/config.json"); cfg.is_ok()) {
    // One encoded text: tokens x (text width + per-layer K/V for the backbone's cross-attention).
    po.bytes_per_prompt_row = cfg->text.max_length *
                              (cfg->text.width + 2 * cfg->backbone.width * cfg->backbone.depth) *
                              static_cast<int64_t>(sizeof(float));
  }
  return make_pipeline_engine(std::move(model).value(), po);
}

// The options above, on `sub`.
inline void add_engine_options(CLI::App& sub, EngineArgs* a) {
  sub.add_option("--model", a->model, "model directory (config.json + model.safetensors)");
  sub.add_option("--threads", a->threads,
                 "model compute threads (0 = the CPUs other processes leave free at start-up)")
      ->capture_default_str();
  add_precision_option(sub, &a->precision);
  add_backend_option(sub, &a->backend);
  sub.add_option("--prompt-cache-mb", a->prompt_cache_mb,
                 "prompt cache size (MiB): an LRU of encoded single prompts (0 = none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--max-memory", a->max_memory_mb,
                 "cap (MiB) on the model's buffers per denoiser batch; larger requests get "
                 "413 up front (0 = no cap)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub.add_flag("--fake-engine", a->fake,
               "serve a deterministic fake engine instead of a model (tests, load tests)");
  sub.add_option("--fake-step-ms", a->fake_step_ms, "fake engine: ms per denoising step")
      ->capture_default_str();
}

}  // namespace duet::cli

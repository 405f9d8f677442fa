// The image engine behind `duet serve`: a narrow interface between the HTTP server (which parses,
// validates, queues and formats) and whatever produces images (the real model through the
// generation pipeline, or a deterministic fake for tests and load tests).
//
// The server owns one engine and calls it from exactly one thread (the engine thread). It hands
// the engine batches of *compatible* requests (equal batch_key()); the engine must return, for
// each request, exactly the images that request would get if it ran alone (same prompt, seed,
// guidance scale...), so batching is invisible to clients except in latency.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "duet/backbone_cache.h"
#include "duet/png.h"
#include "duet/status.h"

namespace duet {

class Denoiser;

// One generation request after validation, with every default resolved (seed >= 0).
struct ImageRequest {
  std::string prompt;
  std::string negative_prompt;
  int n = 1;
  int width = 0, height = 0;
  int steps = 20;
  std::string sampler = "dpmpp_2m";
  float cfg_scale = 4.0f;
  int64_t seed = 0;
  int refine_every = 3;  // 0 = never run the refiner
  bool karras = false;   // Karras sigmas (every sampler except ddim / ddpm)
  // Guidance interval (GenerateParams::cfg_sigma_lo / hi; both < 0 = guidance on every call).
  double cfg_sigma_lo = -1, cfg_sigma_hi = -1;
  CacheSpec cache;  // backbone cache (GenerateParams::cache; the request field "cache")
  // img2img (null = txt2img): the start image [C, H, W] in [-1, 1] (C = EngineInfo::channels,
  // H, W = height, width), re-noised to `strength` of the schedule. Shared: requests are copied.
  std::shared_ptr<const std::vector<float>> init_image;
  double strength = 0.75;
  // Inpainting (needs init_image; null = none): [H, W] in [0, 1], 1 = regenerate, 0 = keep the
  // init image (GenerateParams::mask).
  std::shared_ptr<const std::vector<float>> mask;
};

// What the server needs to know to validate requests and describe the model.
struct EngineInfo {
  std::string model = "duet";
  int channels = 1;
  int width = 28, height = 28;  // default size
  int stride = 4;               // width and height must be multiples of it
  bool other_sizes = true;      // false: only the default size
  int max_side = 2048;
  int max_steps = 1000;
  int max_n = 64;
  std::vector<std::string> samplers;
  std::string default_sampler = "dpmpp_2m";
  int default_steps = 20;
  float default_cfg_scale = 4.0f;
  int default_refine_every = 3;
  int threads = 0;  // model compute threads (cpu_load.h; 0: not reported, e.g. the fake engine)
  std::string cpu_json;  // the machine (duet::cpu_info_json), "" when the engine has none
};

struct ImageTimings {
  double encode_s = 0;
  double denoise_s = 0;
  double total_s = 0;  // inside the engine
};

struct ImageOutput {
  int n = 0, channels = 0, width = 0, height = 0;
  std::vector<float> pixels;                // [n, C, H, W] in [-1, 1]
  std::vector<int64_t> seeds;               // per image
  std::vector<ImageParameters> parameters;  // per image: the PNG `parameters` chunk
  int model_evaluations = 0;                // denoiser calls this request took part in
  int cache_reused_calls = 0;               // of which reused its cached backbone span
  int64_t backbone_blocks_run = 0, backbone_blocks_total = 0;  // GenerateResult's counts
  ImageTimings timings;
};

// One request inside a batch. progress(step, steps) is called after each denoising step; the
// engine polls *cancel before each step and, when set, fails that request alone with kCancelled.
struct EngineJob {
  const ImageRequest* request = nullptr;
  std::function<void(int step, int steps)> progress;
  const std::atomic<bool>* cancel = nullptr;
  uint64_t tag = 0;  // the caller's handle for the job, handed back by BatchFeed::finished
};

// What a running batch is fed from (continuous batching). The engine calls it on the engine
// thread, between model calls: admit() for queued requests that may join the batch now, and
// finished() for each request as soon as it has ended, while the others go on.
class BatchFeed {
 public:
  virtual ~BatchFeed() = default;
  // Compatible queued requests (equal batch_key()) that fit beside `images` images still running;
  // empty when none. Each returned job's pointers stay valid until finished() for it returns.
  virtual std::vector<EngineJob> admit(int images) = 0;
  // Exactly once per job (of the initial batch and of every admit()), as soon as it has ended.
  virtual void finished(const EngineJob& job, Result<ImageOutput> result) = 0;
};

struct EngineStats {
  int64_t denoiser_evaluations = 0;  // batched denoiser calls
  int64_t denoiser_rows = 0;         // rows summed over those calls
  // Backbone blocks the finished requests needed, and would have needed without caching.
  int64_t backbone_blocks_run = 0, backbone_blocks_total = 0;
  int64_t cache_reused_calls = 0;  // request calls that reused a cached backbone span
  int64_t prompt_cache_hits = 0;
  int64_t prompt_cache_misses = 0;
  int64_t prompt_cache_bytes = 0;
  int64_t prompt_cache_entries = 0;
  int64_t prompt_cache_evictions = 0;
  int64_t memory_limit_bytes = 0;  // the engine's workspace cap (0 = none)
  int64_t memory_refused = 0;      // requests refused by validate() for the cap
};

class ImageEngine {
 public:
  virtual ~ImageEngine() = default;
  virtual const EngineInfo& info() const = 0;
  // Engine-specific checks after the server's own (e.g. the pipeline's validation).
  virtual Status validate(const ImageRequest& r) const = 0;
  // Requests with equal keys may share a denoiser batch.
  virtual std::string batch_key(const ImageRequest& r) const;
  // Runs a batch; returns one result per job, in order. An error in one request fails only it.
  virtual std::vector<Result<ImageOutput>> run_batch(const std::vector<EngineJob>& jobs) = 0;
  // Runs `jobs` and whatever `feed` admits while they run, reporting every job to
  // feed.finished() as soon as it ends; returns when no job is left. The default runs `jobs` as
  // one run_batch and admits nothing (static batching).
  virtual void run_continuous(const std::vector<EngineJob>& jobs, BatchFeed& feed);
  // Counters since start (thread-safe).
  virtual EngineStats stats() const = 0;

 protected:
  // run_batch for an engine that implements run_continuous: runs `jobs` with a feed that admits
  // nothing and returns the results in job order.
  std::vector<Result<ImageOutput>> run_batch_continuously(const std::vector<EngineJob>& jobs);
};

// A deterministic fake: each image is a function of (prompt, negative prompt, seed, index,
// cfg scale, steps, sampler, size) only, so batching cannot change it. Each step sleeps
// step_ms + row_ms * rows (rows = images, doubled when cfg_scale != 1) to model denoiser cost.
struct FakeEngineOptions {
  std::string model = "fake-duet";
  int channels = 3;
  int width = 64, height = 64;
  int stride = 8;
  double step_ms = 2.0;
  double row_ms = 0.25;
  int64_t prompt_cache_bytes = 1 << 20;
  int64_t prompt_bytes = 4096;           // pretend size of one encoded prompt
  std::string fail_marker = "[[fail]]";  // a prompt containing it fails (fault injection)
};
std::unique_ptr<ImageEngine> make_fake_engine(const FakeEngineOptions& opts = {});

// The real pipeline over a Denoiser. Compatible requests run in lockstep on the engine thread:
// each is its own GenerateRun (own seed, noise, guidance) and their denoiser calls are merged into
// one batched Denoiser::denoise call per step (every call into the Denoiser happens on the thread
// that calls run_batch; no other thread is involved). run_continuous admits queued requests into
// the running batch at every model-call boundary and hands each back as soon as it is done.
struct PipelineEngineOptions {
  int64_t prompt_cache_bytes = 64 << 20;  // LRU of single-prompt encodings (0 = no caching)
  int64_t bytes_per_prompt_row = 16384;   // size of one encoded text when the model cannot say
  int threads = 0;  // OpenMP threads for the model on the engine thread (0 = runtime default)
  // Cap on the model's planned buffers per denoiser batch (Denoiser::set_memory_limit; 0 =
  // none): validate() refuses a request whose own batch would exceed it (kResourceExhausted),
  // and larger merged batches are split into calls that fit.
  int64_t max_memory_bytes = 0;
};
std::unique_ptr<ImageEngine> make_pipeline_engine(std::unique_ptr<Denoiser> model,
                                                  const PipelineEngineOptions& opts = {});

}  // namespace duet

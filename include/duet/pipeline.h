// Text-to-image (and img2img) generation: prompt encoding, classifier-free guidance, the sampler
// loop with the refiner schedule, and the result as images in [-1, 1].
//
//   DUET_ASSIGN_OR_RETURN(auto denoiser, load_denoiser("models/fashion-duet"));
//   GenerateParams gp;
//   gp.prompts = {"a photo of an ankle boot"};
//   gp.seed = 123;
//   DUET_ASSIGN_OR_RETURN(GenerateResult r, generate(*denoiser, gp));
//   // r.images: [n, C, H, W] floats in [-1, 1]; r.seed: the seed actually used.
//
// Reproducibility contract (see docs/generate.md): with rng = "torch", x_T is bit-identical to
// `torch.manual_seed(seed); torch.randn(n, C, H, W)`, one draw for the whole batch, times the
// sampler's init_noise_sigma; stochastic samplers continue drawing from the same generator.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "duet/backbone_cache.h"
#include "duet/png.h"
#include "duet/precision.h"
#include "duet/status.h"
#include "duet/tensor.h"

namespace duet {

struct LoadOptions;  // duet/model.h

// What the pipeline needs to know about a model.
struct DenoiserInfo {
  std::string name = "duet";                // config "name" (reported as "Model" in PNG metadata)
  int channels = 1;                         // image.channels
  int height = 28;                          // image.height (the default size)
  int width = 28;                           // image.width
  int patch = 4;                            // backbone.patch: sizes must be multiples of it
  int refiner_stride = 4;                   // 2^(refiner levels - 1): sizes must be multiples of it
  int num_train_timesteps = 1000;           // diffusion.*
  std::string beta_schedule = "linear";     // linear | scaled_linear | cosine
  std::string prediction_type = "epsilon";  // epsilon | v_prediction
  int refine_every = 3;                     // inference.refine_every (config default)
  float cfg_scale = 4.0f;                   // inference.cfg_scale (config default guidance)
  bool supports_other_sizes = true;         // false: width/height must equal the config's
  int depth = 0;  // backbone.depth (blocks per call; 0 = unknown: block caches not checked)
};

// A request's backbone cache as the pipeline sees it (Denoiser::make_cache).
class DenoiserCache {
 public:
  virtual ~DenoiserCache() = default;
  virtual const CacheStats& stats() const = 0;
};

// One request's rows of a cached call (Denoiser::denoise_cached); `computed` is set on return.
struct DenoiserCacheUse {
  DenoiserCache* cache = nullptr;
  int row0 = 0, rows = 0;
  bool eligible = true;  // inside the spec's START..END part of the request's schedule
  bool computed = false;
};

// Prompt-dependent state computed once per generate() call (text encoder output, K/V, ...).
class PromptEmbedding {
 public:
  virtual ~PromptEmbedding() = default;
  virtual int batch() const = 0;  // number of encoded texts
};

// The model as the pipeline sees it. Implementations: the real model (load_denoiser) and test
// fakes. Calls happen from one thread, in order: info, encode, prepare, denoise × num_calls.
class Denoiser {
 public:
  virtual ~Denoiser() = default;
  virtual const DenoiserInfo& info() const = 0;
  // Encodes texts (each row of the model batch gets one text, in order).
  virtual Result<std::unique_ptr<PromptEmbedding>> encode(
      const std::vector<std::string>& texts) = 0;
  // Called once before the loop with the batch size and image size; allocate all scratch here.
  virtual Status prepare(int batch, int height, int width) = 0;
  // x [batch, C, H, W] (already divided by the sampler's input divisor), t [batch] real-valued
  // timesteps, prompts encoded for exactly `batch` texts; writes the raw model output (epsilon
  // or v per prediction_type) to out [batch, C, H, W]. refine = run the detail refiner + gate.
  // Must not allocate on the heap after prepare().
  virtual Status denoise(const float* x, const float* t, int batch, int height, int width,
                         const PromptEmbedding& prompts, bool refine, float* out) = 0;
  // Optional: one call in which only the first refine_rows rows (0 < refine_rows < batch) run
  // the refiner + gate, each row getting what a call with its own refine flag would give it
  // (rows of requests at different points of their refine schedules share one call). The
  // default reports kUnimplemented: callers then make one call per flag.
  virtual Status denoise_mixed(const float* x, const float* t, int batch, int height, int width,
                               const PromptEmbedding& prompts, int refine_rows, float* out) {
    (void)x, (void)t, (void)batch, (void)height, (void)width, (void)prompts, (void)refine_rows,
        (void)out;
    return unimplemented("this denoiser cannot refine some rows of a call only");
  }

  // Optional, for callers that cache encoded prompts one text at a time (the server's prompt
  // cache): a batch embedding whose row i is the single-text embedding rows[i] (each from
  // encode({text})), without re-encoding; and an embedding's size in bytes (0 = unknown).
  // The default reports kUnimplemented: callers then encode whole batches.
  // Optional backbone caching (duet/backbone_cache.h), after prepare(): a cache for a request
  // whose calls have at most `rows` rows, and a call in which the requests `uses` (disjoint
  // rows) consult their caches — each getting what a call over its rows alone gives it. The
  // defaults report kUnimplemented naming the cache.
  virtual Result<std::unique_ptr<DenoiserCache>> make_cache(const CacheSpec& spec, int rows) {
    (void)spec, (void)rows;
    return unimplemented("cache: this denoiser has no backbone cache");
  }
  virtual Status denoise_cached(const float* x, const float* t, int batch, int height, int width,
                                const PromptEmbedding& prompts, int refine_rows,
                                std::span<DenoiserCacheUse> uses, float* out) {
    (void)x, (void)t, (void)batch, (void)height, (void)width, (void)prompts, (void)refine_rows,
        (void)uses, (void)out;
    return unimplemented("cache: this denoiser has no backbone cache");
  }

  virtual Result<std::unique_ptr<PromptEmbedding>> concat(
      const std::vector<const PromptEmbedding*>& rows) {
    (void)rows;
    return unimplemented("this denoiser cannot assemble prompt batches");
  }
  virtual int64_t embedding_bytes(const PromptEmbedding&) const { return 0; }
  // Optional memory cap: prepare() refuses (kResourceExhausted, before allocating) a batch whose
  // planned buffers would need more than `bytes` (0 = unlimited); estimate_bytes() says how much
  // prepare(batch, height, width) needs (0 = unknown / no cap supported).
  virtual void set_memory_limit(int64_t bytes) { (void)bytes; }
  virtual Result<int64_t> estimate_bytes(int batch, int height, int width) const {
    (void)batch, (void)height, (void)width;
    return int64_t{0};
  }
};

// Loads models/<name>/{config.json, model.safetensors} with the engine's model runtime.
Result<std::unique_ptr<Denoiser>> load_denoiser(const std::string& model_dir, int threads = 0);
// Same at a compute precision (LoadOptions::precision; duet/precision.h).
Result<std::unique_ptr<Denoiser>> load_denoiser(const std::string& model_dir, int threads,
                                                Precision precision);
// Same with every LoadOptions field (the backend: --backend of generate / bench / serve).
Result<std::unique_ptr<Denoiser>> load_denoiser(const std::string& model_dir, int threads,
                                                const LoadOptions& options);

enum class RefineMode { kEvery, kSteps, kAll, kNone };

struct GenerateParams {
  // One prompt for all n images, or exactly n prompts.
  std::vector<std::string> prompts;
  std::string negative_prompt;  // the unconditional text of classifier-free guidance
  int n = 1;                    // images per call, in [1, kMaxImages]
  int width = 0, height = 0;    // 0 = the model config's size
  int steps = 20;
  std::string sampler = "dpmpp_2m";  // any of diffusion::sampler_names()
  bool karras = false;
  float cfg_scale = 4.0f;  // 1 = no guidance (the unconditional half is skipped)
  // Guidance interval (Kynkäänniemi et al., 2024): classifier-free guidance only on the calls
  // whose noise level σ(t) = interp(t, 0..T-1, sqrt((1 − ᾱ)/ᾱ)) lies in [cfg_sigma_lo,
  // cfg_sigma_hi]; the other calls evaluate the conditional rows alone (half the batch) and use
  // their prediction as is. Both < 0 = guidance on every call.
  double cfg_sigma_lo = -1, cfg_sigma_hi = -1;
  // Backbone cache (duet/backbone_cache.h, docs/caching.md); off = every block of every call.
  CacheSpec cache;
  int64_t seed = -1;          // -1 = random (reported in GenerateResult::seed)
  std::string rng = "torch";  // torch | philox
  // Refiner schedule over model-call indices i = 0..num_calls-1 (see refine_schedule()).
  RefineMode refine = RefineMode::kEvery;
  // kEvery: refine iff K > 0 and (i + 1) % K == 0; -1 = the model config's
  // inference.refine_every (3 in the shipped configs), 0 = never (as the python reference).
  int refine_every = -1;
  std::vector<int> refine_steps;  // kSteps: 1-based call numbers, e.g. {3, 6, 9}
  // img2img: [C, H, W] in [-1, 1] (empty = txt2img); the same image for every batch entry.
  std::vector<float> init_image;
  double strength = 0.75;  // img2img: fraction of the schedule that is re-run
  // Inpainting by latent blending (needs init_image): [H, W] in [0, 1], 1 = regenerate, 0 =
  // keep. After every model call c the latents become m·x + (1 − m)·x0_c, where x0_c is the init
  // image noised (with the run's own x_T) to the level of call c + 1 — the image itself after
  // the last call — so kept pixels equal the init image exactly. Empty = plain img2img.
  std::vector<float> mask;
  // Sampler details (defaults follow the python reference pipeline): for ddim, leading spacing
  // with steps_offset 1 and the final alphabar = alphas_cumprod[0].
  int steps_offset = -1;  // -1 = 1 for ddim, else the diffusers default
  float eta = 0.0f;       // ddim eta
  int png_bit_depth = 8;  // for the caller's PNG writing (recorded only)
};

inline constexpr int kMaxImages = 64;
inline constexpr int kMaxImageSide = 2048;

struct StageTimings {
  double encode_s = 0;   // prompt encoding
  double prepare_s = 0;  // sampler construction, buffers, x_T
  double denoise_s = 0;  // the whole sampler loop
  double finish_s = 0;   // clamping / output
  double total_s = 0;
  std::vector<double> call_s;  // wall time of each model call + sampler step
};

struct GenerateResult {
  Tensor images;               // [n, C, H, W] f32, clamped to [-1, 1]
  Tensor samples;              // [n, C, H, W] f32, the sampler's final x (unclamped)
  Tensor x_T;                  // [n, C, H, W] f32, the initial noise draw (before init_noise_sigma)
  int64_t seed = 0;            // the seed used (one randn for the whole batch)
  std::vector<int64_t> seeds;  // per image (all equal to seed; image i = batch position i)
  int num_calls = 0;           // model calls in the full schedule
  int start_call = 0;          // first call actually run (img2img)
  int model_evaluations = 0;   // denoiser calls (each on a batch of 2n, or n without guidance)
  int refiner_evaluations = 0;     // of which with the refiner
  int guided_evaluations = 0;      // of which with guidance (2n rows; the rest ran n rows)
  std::vector<int> guided_calls;   // 0-based call indices that ran with guidance
  std::vector<int> refined_calls;  // 0-based call indices that ran the refiner
  int batch = 0;                   // model batch size per call (2n with guidance)
  // Backbone cache: the spec (cache_spec_string), the calls whose cached span was reused, and
  // the backbone blocks this request needed vs. without caching (calls × depth).
  std::string cache = "off";
  std::vector<int> cache_skipped_calls;
  int64_t backbone_blocks_run = 0, backbone_blocks_total = 0;
  int width = 0, height = 0, channels = 0;
  StageTimings timings;
};

struct StepProgress {
  int call = 0;   // calls completed so far (1-based count), relative to start_call
  int total = 0;  // calls to run
  bool refined = false;
  double elapsed_s = 0;
  int call_index = 0;        // 0-based index of the call just completed in the full schedule
  const float* x = nullptr;  // the latents after this call, [n, C, H, W] (valid during the call)
};
using GenerateProgressFn = std::function<void(const StepProgress&)>;

// Validates params against the model (sizes, sampler name, refine schedule, n, ...).
Status validate_generate_params(const GenerateParams& p, const DenoiserInfo& info);

// Runs the full pipeline. `cancel` (optional) is polled before every model call; a set flag
// returns kCancelled.
Result<GenerateResult> generate(Denoiser& model, const GenerateParams& params,
                                const GenerateProgressFn& progress = {},
                                const std::atomic<bool>* cancel = nullptr);

// One generation advanced a model call at a time by its caller. generate() is the plain loop
// (encode texts() → prepare → {write_input, Denoiser::denoise, complete} until done → finish);
// the server runs several runs through one model call: each writes its rows into its slice of
// the shared batch and reads its slice of the output back, so a run's numbers do not depend on
// which others share its calls (as long as the model's rows are independent).
class GenerateRun {
 public:
  // Validates `p` against the model, builds the schedule and sampler, resolves the seed and
  // draws x_T. Allocates every buffer the loop needs.
  static Result<std::unique_ptr<GenerateRun>> start(const DenoiserInfo& info,
                                                    const GenerateParams& p);
  ~GenerateRun();

  // The model-batch rows: n conditional texts, then (with guidance) n negative prompts.
  const std::vector<std::string>& texts() const;
  int rows() const;  // texts().size(): 2n with guidance, else n (the most rows of any call)
  // The next call's rows: rows(), or n where a guidance interval leaves the call unguided (its
  // texts are then the first n of texts(), the conditional ones).
  int rows_next() const;
  int images() const;              // n
  bool guided_next() const;        // does the next call evaluate the unconditional rows?
  bool guided_at(int call) const;  // the same for call `call` (false outside the schedule)
  int height() const;
  int width() const;
  size_t row_floats() const;       // C·H·W
  bool done() const;               // every model call has completed
  int next_call() const;           // 0-based index of the next model call in the full schedule
  bool refine_next() const;        // does the next call run the refiner?
  int num_calls() const;           // model calls in the full schedule (next_call() counts up to it)
  bool refine_at(int call) const;  // the refine flag of call `call` (false outside the schedule)
  // Backbone cache: may the next call reuse (START <= call / num_calls < END)? note_cache
  // records the cache's decision for the next call (before complete()). attach_cache gives the
  // run its cache (it must outlive finish()), whose block counts finish() reports; without one
  // every call ran all info.depth blocks.
  bool cache_eligible_next() const;
  void note_cache(bool computed);
  void attach_cache(const DenoiserCache* cache);
  // The time the caller spent encoding texts() (reported as timings.encode_s).
  void add_encode_seconds(double s);

  // Writes the next call's model input: x [rows_next, C, H, W] and t [rows_next].
  void write_input(float* x, float* t);
  // Consumes the model output of that call, out [rows_next, C, H, W] (overwritten: guidance is
  // applied in place), steps the sampler and reports progress.
  Status complete(float* out, const GenerateProgressFn& progress = {});
  // kCancelled naming how far the run got (callers poll their cancel flag between calls).
  Status cancelled() const;
  // Checks the final latents and returns the images; the run is spent afterwards.
  Result<GenerateResult> finish();

 private:
  struct State;
  explicit GenerateRun(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

// The next model call of a single-request loop (generate(), the C API) on the run's input
// x [rows_next, C, H, W], t [rows_next]: Denoiser::denoise, or with `cache` denoise_cached,
// recording the cache's decision in the run. `prompt` has rows_next() texts.
Status denoise_next(Denoiser& model, GenerateRun& run, DenoiserCache* cache, const float* x,
                    const float* t, const PromptEmbedding& prompt, float* out);

// The refine decision for each of `num_calls` model calls (validates explicit steps against it);
// `config_refine_every` resolves refine_every = -1.
Result<std::vector<bool>> refine_schedule(const GenerateParams& p, int num_calls,
                                          int config_refine_every = 3);
// "3,6,9" -> {3, 6, 9} (positive, strictly increasing after sorting, no duplicates).
Result<std::vector<int>> parse_refine_steps(const std::string& s);
// "every 3" | "steps 3,6,9" | "all" | "none"
std::string refine_description(const GenerateParams& p, int config_refine_every = 3);

// PNG `parameters` metadata for image `index` of a finished run.
ImageParameters image_parameters(const GenerateParams& p, const GenerateResult& r,
                                 const DenoiserInfo& info, int index);

}  // namespace duet

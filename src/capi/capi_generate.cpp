// duet.h: duet_generate (the pipeline loop of generate(), with reusable prompt encodings and a
// cancelling progress callback) and the result accessors.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "capi/capi_internal.h"
#include "diffusion/sampler.h"
#include "duet/png.h"

namespace duet::capi {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string field(const char* name) { return std::string("duet_generate_params.") + name; }

Status check_encoding(const duet_prompt* e, const duet_model* m, const char* name) {
  if (e && e->owner != m) return invalid_argument(field(name) + " was encoded by another model");
  return Status::ok();
}

// The C parameters as GenerateParams, every bad field named.
Result<GenerateParams> to_params(const duet_generate_params& c, const duet_model& m) {
  GenerateParams p;
  const int sources =
      (c.prompt != nullptr) + (c.prompts != nullptr) + (c.prompt_encoding != nullptr);
  if (sources != 1)
    return invalid_argument("give exactly one of " + field("prompt") + ", " + field("prompts") +
                            " and " + field("prompt_encoding") + " (got " +
                            std::to_string(sources) + ")");
  if (c.num_images < 1 || c.num_images > kMaxImages)
    return invalid_argument(field("num_images") + " must be in [1, " + std::to_string(kMaxImages) +
                            "], got " + std::to_string(c.num_images));
  p.n = c.num_images;
  if (c.prompt) p.prompts = {c.prompt};
  if (c.prompts) {
    for (int i = 0; i < c.num_images; ++i) {
      if (!c.prompts[i])
        return invalid_argument(field("prompts") + "[" + std::to_string(i) + "] is NULL (" +
                                field("prompts") + " needs num_images texts)");
      p.prompts.emplace_back(c.prompts[i]);
    }
  }
  DUET_RETURN_IF_ERROR(check_encoding(c.prompt_encoding, &m, "prompt_encoding"));
  DUET_RETURN_IF_ERROR(check_encoding(c.negative_encoding, &m, "negative_encoding"));
  if (c.prompt_encoding) p.prompts = {c.prompt_encoding->text};
  if (c.negative_prompt && c.negative_encoding)
    return invalid_argument("give at most one of " + field("negative_prompt") + " and " +
                            field("negative_encoding"));
  if (c.negative_prompt) p.negative_prompt = c.negative_prompt;
  if (c.negative_encoding) p.negative_prompt = c.negative_encoding->text;
  if (c.width < 0 || c.width > kMaxImageSide)
    return invalid_argument(field("width") + " must be 0 (the model's) or in [1, " +
                            std::to_string(kMaxImageSide) + "], got " + std::to_string(c.width));
  if (c.height < 0 || c.height > kMaxImageSide)
    return invalid_argument(field("height") + " must be 0 (the model's) or in [1, " +
                            std::to_string(kMaxImageSide) + "], got " + std::to_string(c.height));
  p.width = c.width;
  p.height = c.height;
  const int max_steps = std::min(1000, m.info.num_train_timesteps);
  if (c.steps < 1 || c.steps > max_steps)
    return invalid_argument(field("steps") + " must be in [1, " + std::to_string(max_steps) +
                            "], got " + std::to_string(c.steps));
  p.steps = c.steps;
  p.sampler = c.sampler ? c.sampler : "dpmpp_2m";
  const auto& names = diffusion::sampler_names();
  if (std::find(names.begin(), names.end(), p.sampler) == names.end()) {
    std::string list;
    for (const auto& s : names) list += (list.empty() ? "" : ", ") + s;
    return invalid_argument(field("sampler") + ": unknown sampler '" + p.sampler +
                            "' (available: " + list + ")");
  }
  p.karras = c.karras != 0;
  if (p.karras && (p.sampler == "ddim" || p.sampler == "ddpm"))
    return invalid_argument(field("karras") + ": Karras sigmas do not apply to the " + p.sampler +
                            " sampler");
  if (std::isnan(c.cfg_scale) || c.cfg_scale > 100.0f)
    return invalid_argument(field("cfg_scale") +
                            " must be in [0, 100] (or < 0 for the model's default), got " +
                            std::to_string(c.cfg_scale));
  p.cfg_scale = c.cfg_scale < 0.0f ? m.info.cfg_scale : c.cfg_scale;
  if (c.seed < -1)
    return invalid_argument(field("seed") + " must be >= 0 (or -1 for random), got " +
                            std::to_string(c.seed));
  p.seed = c.seed;
  p.rng = c.rng ? c.rng : "torch";
  if (p.rng != "torch" && p.rng != "philox")
    return invalid_argument(field("rng") + " must be \"torch\" or \"philox\", got '" + p.rng + "'");
  switch (c.refine_mode) {
    case DUET_REFINE_EVERY:
      if (c.refine_every < -1)
        return invalid_argument(field("refine_every") + " must be >= 0 (or -1 for the model's), " +
                                "got " + std::to_string(c.refine_every));
      p.refine = RefineMode::kEvery;
      p.refine_every = c.refine_every;
      break;
    case DUET_REFINE_STEPS:
      if (c.num_refine_steps < 1 || !c.refine_steps)
        return invalid_argument(field("refine_steps") + " must list at least one model call (" +
                                field("num_refine_steps") + " = " +
                                std::to_string(c.num_refine_steps) + ")");
      p.refine = RefineMode::kSteps;
      for (int i = 0; i < c.num_refine_steps; ++i) {
        if (c.refine_steps[i] < 1)
          return invalid_argument(field("refine_steps") + "[" + std::to_string(i) +
                                  "] must be >= 1 (1-based), got " +
                                  std::to_string(c.refine_steps[i]));
        p.refine_steps.push_back(c.refine_steps[i]);
      }
      std::sort(p.refine_steps.begin(), p.refine_steps.end());
      if (std::adjacent_find(p.refine_steps.begin(), p.refine_steps.end()) != p.refine_steps.end())
        return invalid_argument(field("refine_steps") + " lists a model call twice");
      break;
    case DUET_REFINE_ALL:
      p.refine = RefineMode::kAll;
      break;
    case DUET_REFINE_NONE:
      p.refine = RefineMode::kNone;
      break;
    default:
      return invalid_argument(field("refine_mode") + " must be a duet_refine_mode (0-3), got " +
                              std::to_string(c.refine_mode));
  }
  if (c.init_image) {
    if (!(c.strength >= 0.0 && c.strength <= 1.0))
      return invalid_argument(field("strength") + " must be in [0, 1], got " +
                              std::to_string(c.strength));
    p.strength = c.strength;
    const int H = p.height ? p.height : m.info.height, W = p.width ? p.width : m.info.width;
    p.init_image.assign(c.init_image, c.init_image + static_cast<size_t>(m.info.channels) * H * W);
  }
  if (c.png_bit_depth != 8 && c.png_bit_depth != 16)
    return invalid_argument(field("png_bit_depth") + " must be 8 or 16, got " +
                            std::to_string(c.png_bit_depth));
  p.png_bit_depth = c.png_bit_depth;
  if (c.cache) {
    DUET_ASSIGN_OR_RETURN(p.cache, parse_cache_spec(c.cache, field("cache")));
  }
  // What is left (sizes against the patch / refiner stride, ...) in the pipeline's words.
  if (Status st = validate_generate_params(p, m.info); !st.is_ok())
    return Status(st.code(), "duet_generate_params: " + st.message());
  return p;
}

// The model batch's prompt embedding: the cond rows, then (with guidance) the uncond rows.
// Without encodings this is exactly generate()'s encode(texts); with them, the encoded rows are
// repeated (Denoiser::concat) and only the other side is encoded.
Result<std::unique_ptr<PromptEmbedding>> batch_embedding(Denoiser& d, const GenerateRun& run,
                                                         const duet_generate_params& c, int n) {
  const std::vector<std::string>& texts = run.texts();
  if (!c.prompt_encoding && !c.negative_encoding) return d.encode(texts);
  const bool guided = run.rows() == 2 * n;
  std::vector<std::unique_ptr<PromptEmbedding>> owned;
  std::vector<const PromptEmbedding*> rows;
  auto add = [&](const duet_prompt* enc, int first) -> Status {
    if (enc) {
      for (int i = 0; i < n; ++i) rows.push_back(enc->embedding.get());
      return Status::ok();
    }
    std::vector<std::string> part(texts.begin() + first, texts.begin() + first + n);
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<PromptEmbedding> e, d.encode(part));
    rows.push_back(e.get());
    owned.push_back(std::move(e));
    return Status::ok();
  };
  DUET_RETURN_IF_ERROR(add(c.prompt_encoding, 0));
  if (guided) DUET_RETURN_IF_ERROR(add(c.negative_encoding, n));
  return d.concat(rows);
}

Status finish_images(duet_result& res, const GenerateParams& p, const DenoiserInfo& info) {
  const GenerateResult& r = res.r;
  const size_t img = static_cast<size_t>(r.channels) * r.height * r.width;
  const int n = static_cast<int>(r.images.dim(0));
  res.images.resize(n);
  for (int i = 0; i < n; ++i) {
    const float* x = r.images.f32() + i * img;
    duet_result::Image& out = res.images[i];
    DUET_ASSIGN_OR_RETURN(PngImage u8, image_from_chw(x, r.channels, r.height, r.width, 8));
    out.rows = u8.height;
    out.cols = u8.width;
    out.channels = u8.channels;
    out.u8.assign(u8.samples.begin(), u8.samples.end());
    // As `duet generate` writes it (cmd_generate.cpp's write_one).
    DUET_ASSIGN_OR_RETURN(PngImage png,
                          image_from_chw(x, r.channels, r.height, r.width, p.png_bit_depth));
    out.parameters = format_parameters(image_parameters(p, r, info, i));
    png.text.emplace_back("parameters", out.parameters);
    DUET_ASSIGN_OR_RETURN(out.png, encode_png(png));
  }
  return Status::ok();
}

Status run_generate(duet_model* m, const duet_generate_params& c, duet_progress_fn progress,
                    void* user_data, duet_result** result) {
  DUET_ASSIGN_OR_RETURN(GenerateParams p, to_params(c, *m));
  use_threads(*m);
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<GenerateRun> run, GenerateRun::start(m->info, p));
  Lease d(m);
  const int rows = run->rows(), H = run->height(), W = run->width();
  const auto t_enc = Clock::now();
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<PromptEmbedding> emb, batch_embedding(*d, *run, c, p.n));
  if (!emb || emb->batch() != rows)
    return internal_error("prompt encoder returned the wrong batch size");
  run->add_encode_seconds(seconds_since(t_enc));

  DUET_RETURN_IF_ERROR(d->prepare(rows, H, W));
  std::vector<float> model_in(run->row_floats() * rows), model_out(model_in.size()), t(rows);
  bool stop = false;
  const GenerateProgressFn on_step = [&](const StepProgress& s) {
    if (progress && progress(s.call, s.total, user_data) != 0) stop = true;
  };
  std::unique_ptr<DenoiserCache> cache;  // the backbone cache (duet_generate_params.cache)
  if (p.cache.mode != CacheMode::kOff) {
    DUET_ASSIGN_OR_RETURN(cache, d->make_cache(p.cache, rows));
    run->attach_cache(cache.get());
  }
  while (!run->done()) {
    run->write_input(model_in.data(), t.data());
    DUET_RETURN_IF_ERROR(
        denoise_next(*d, *run, cache.get(), model_in.data(), t.data(), *emb, model_out.data()));
    DUET_RETURN_IF_ERROR(run->complete(model_out.data(), on_step));
    if (stop && !run->done()) return run->cancelled();
  }
  auto res = std::make_unique<duet_result>();
  DUET_ASSIGN_OR_RETURN(res->r, run->finish());
  const auto t_png = Clock::now();
  DUET_RETURN_IF_ERROR(finish_images(*res, p, m->info));
  const double png_s = seconds_since(t_png);
  res->r.timings.finish_s += png_s;
  res->r.timings.total_s += png_s;
  *result = res.release();
  return Status::ok();
}

const duet_result::Image* image_at(const duet_result* r, int index) {
  if (!r || index < 0 || index >= static_cast<int>(r->images.size())) return nullptr;
  return &r->images[index];
}

}  // namespace
}  // namespace duet::capi

using duet::capi::guarded;
using duet::capi::need;

extern "C" {

duet_generate_params duet_generate_params_default(void) {
  duet_generate_params p;
  p.prompt = nullptr;
  p.prompts = nullptr;
  p.prompt_encoding = nullptr;
  p.negative_prompt = nullptr;
  p.negative_encoding = nullptr;
  p.num_images = 1;
  p.width = 0;
  p.height = 0;
  p.steps = 20;
  p.sampler = nullptr;
  p.karras = 0;
  p.cfg_scale = -1.0f;
  p.seed = -1;
  p.rng = nullptr;
  p.refine_mode = DUET_REFINE_EVERY;
  p.refine_every = -1;
  p.refine_steps = nullptr;
  p.num_refine_steps = 0;
  p.init_image = nullptr;
  p.strength = 0.75;
  p.png_bit_depth = 8;
  p.cache = nullptr;
  return p;
}

duet_status duet_generate(duet_model* model, const duet_generate_params* params,
                          duet_progress_fn progress, void* user_data, duet_result** result,
                          duet_error** err) {
  if (result) *result = nullptr;
  return guarded(err, [&]() -> duet::Status {
    DUET_RETURN_IF_ERROR(need(model, "model"));
    DUET_RETURN_IF_ERROR(need(params, "params (use duet_generate_params_default())"));
    DUET_RETURN_IF_ERROR(need(result, "result (the output pointer)"));
    return duet::capi::run_generate(model, *params, progress, user_data, result);
  });
}

int duet_result_count(const duet_result* r) { return r ? static_cast<int>(r->images.size()) : 0; }
int duet_result_width(const duet_result* r) { return r ? r->r.width : 0; }
int duet_result_height(const duet_result* r) { return r ? r->r.height : 0; }
int duet_result_channels(const duet_result* r) { return r ? r->r.channels : 0; }
const float* duet_result_images(const duet_result* r) { return r ? r->r.images.f32() : nullptr; }

const uint8_t* duet_result_image_u8(const duet_result* r, int index, int* rows, int* cols,
                                    int* png_channels) {
  const duet_result::Image* im = duet::capi::image_at(r, index);
  if (rows) *rows = im ? im->rows : 0;
  if (cols) *cols = im ? im->cols : 0;
  if (png_channels) *png_channels = im ? im->channels : 0;
  return im ? im->u8.data() : nullptr;
}

duet_status duet_result_png(const duet_result* r, int index, const uint8_t** data, size_t* size) {
  const duet_result::Image* im = duet::capi::image_at(r, index);
  if (data) *data = im ? im->png.data() : nullptr;
  if (size) *size = im ? im->png.size() : 0;
  return im && data && size ? DUET_OK : DUET_ERR_INVALID_ARGUMENT;
}

const char* duet_result_parameters(const duet_result* r, int index) {
  const duet_result::Image* im = duet::capi::image_at(r, index);
  return im ? im->parameters.c_str() : nullptr;
}

int64_t duet_result_seed(const duet_result* r) { return r ? r->r.seed : -1; }
int64_t duet_result_image_seed(const duet_result* r, int index) {
  if (!duet::capi::image_at(r, index)) return -1;
  return r->r.seeds[index];
}
int duet_result_model_evaluations(const duet_result* r) { return r ? r->r.model_evaluations : 0; }
int duet_result_refiner_evaluations(const duet_result* r) {
  return r ? r->r.refiner_evaluations : 0;
}

double duet_result_timing(const duet_result* r, duet_timing which) {
  if (!r) return 0.0;
  const duet::StageTimings& t = r->r.timings;
  switch (which) {
    case DUET_TIMING_ENCODE:
      return t.encode_s;
    case DUET_TIMING_PREPARE:
      return t.prepare_s;
    case DUET_TIMING_DENOISE:
      return t.denoise_s;
    case DUET_TIMING_FINISH:
      return t.finish_s;
    case DUET_TIMING_TOTAL:
      return t.total_s;
  }
  return 0.0;
}

void duet_result_free(duet_result* r) { delete r; }

}  // extern "C"

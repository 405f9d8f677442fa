// duet.h: reusable prompt encodings and one model evaluation (duet_denoise, the C twin of
// `duet forward`).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "capi/capi_internal.h"
#include "pipeline/model_denoiser.h"

namespace duet::capi {
namespace {

int gcd_int(int a, int b) { return b == 0 ? a : gcd_int(b, a % b); }

Status check_side(const char* what, int v, const DenoiserInfo& info) {
  const int m = std::max(info.patch, 1) /
                gcd_int(std::max(info.patch, 1), std::max(info.refiner_stride, 1)) *
                std::max(info.refiner_stride, 1);
  if (v < 1 || v > kMaxImageSide || v % m != 0)
    return invalid_argument(std::string(what) + " must be 0 (the model's) or a multiple of " +
                            std::to_string(m) + " in [1, " + std::to_string(kMaxImageSide) +
                            "], got " + std::to_string(v));
  return Status::ok();
}

Status run_denoise(duet_model* m, const float* x, int batch, int height, int width, const float* t,
                   const duet_prompt* prompt, int refine, float* eps_s, float* eps_d, float* alpha,
                   float* eps) {
  DUET_RETURN_IF_ERROR(need(m, "model"));
  DUET_RETURN_IF_ERROR(need(x, "x"));
  DUET_RETURN_IF_ERROR(need(t, "t"));
  DUET_RETURN_IF_ERROR(need(prompt, "prompt"));
  if (prompt->owner != m) return invalid_argument("prompt was encoded by another model");
  if (batch < 1 || batch > kMaxImages * 2)
    return invalid_argument("batch must be in [1, " + std::to_string(kMaxImages * 2) + "], got " +
                            std::to_string(batch));
  const DenoiserInfo& info = m->info;
  const int H = height ? height : info.height, W = width ? width : info.width;
  DUET_RETURN_IF_ERROR(check_side("height", H, info));
  DUET_RETURN_IF_ERROR(check_side("width", W, info));
  for (int i = 0; i < batch; ++i)
    if (!std::isfinite(t[i]))
      return invalid_argument("t[" + std::to_string(i) + "] is not a finite number");
  use_threads(*m);
  Lease d(m);
  std::vector<const PromptEmbedding*> rows(batch, prompt->embedding.get());
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<PromptEmbedding> emb, d->concat(rows));
  ContextOptions co;
  co.max_batch = batch;
  co.height = H;
  co.width = W;
  // A fresh Context per call: duet_denoise is the inspection path (the pool's denoisers keep
  // their contexts for duet_generate's shapes).
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<Context> ctx, Context::create(m->model, co));
  const Tensor xv = Tensor::view(x, {batch, info.channels, H, W});  // [B, C, H, W]
  const Tensor tv = Tensor::view(t, {batch});                       // [B]
  DUET_RETURN_IF_ERROR(ctx->denoise(xv, tv, model_prompt_state(*emb), refine != 0));
  const size_t n = static_cast<size_t>(batch) * info.channels * H * W;
  auto put = [](float* dst, const Tensor& src, size_t count) {
    if (!dst) return;
    if (src.empty()) {
      std::fill(dst, dst + count, 0.0f);
    } else {
      std::memcpy(dst, src.f32(), count * sizeof(float));
    }
  };
  put(eps_s, ctx->eps_s(), n);
  put(eps, ctx->eps(), n);
  put(eps_d, refine ? ctx->eps_d() : Tensor(), n);
  put(alpha, refine ? ctx->alpha() : Tensor(), static_cast<size_t>(batch));
  return Status::ok();
}

}  // namespace
}  // namespace duet::capi

using duet::capi::guarded;
using duet::capi::need;

extern "C" {

duet_status duet_prompt_encode(duet_model* model, const char* text, duet_prompt** prompt,
                               duet_error** err) {
  if (prompt) *prompt = nullptr;
  return guarded(err, [&]() -> duet::Status {
    DUET_RETURN_IF_ERROR(need(model, "model"));
    DUET_RETURN_IF_ERROR(need(text, "text"));
    DUET_RETURN_IF_ERROR(need(prompt, "prompt (the output pointer)"));
    duet::capi::use_threads(*model);
    auto p = std::make_unique<duet_prompt>();
    p->owner = model;
    p->text = text;
    duet::capi::Lease d(model);
    DUET_ASSIGN_OR_RETURN(p->embedding, d->encode({p->text}));
    *prompt = p.release();
    return duet::Status::ok();
  });
}

const char* duet_prompt_text(const duet_prompt* prompt) {
  return prompt ? prompt->text.c_str() : "";
}

void duet_prompt_free(duet_prompt* prompt) { delete prompt; }

duet_status duet_denoise(duet_model* model, const float* x, int batch, int height, int width,
                         const float* t, const duet_prompt* prompt, int refine, float* eps_s,
                         float* eps_d, float* alpha, float* eps, duet_error** err) {
  return guarded(err, [&]() {
    return duet::capi::run_denoise(model, x, batch, height, width, t, prompt, refine, eps_s, eps_d,
                                   alpha, eps);
  });
}

}  // extern "C"

// Context::State — per-request state: planned sizes, workspace, persistent outputs, the
// high-pass plan; plus the forward passes of the two branches (backbone_forward.cpp,
// refiner_forward.cpp) that run on it.
#pragma once

#include <memory>
#include <string>

#include "core/workspace.h"
#include "model/model_impl.h"

namespace duet {

inline constexpr int64_t kMaxRefinerLevels = 16;

struct Context::State {
  std::shared_ptr<const Model> model;
  const Model::Impl* m = nullptr;
  const Backend* be = nullptr;
  int64_t max_b = 0, H = 0, W = 0;
  Workspace ws;
  Tensor c, eps_s, r, eps_d, alpha, eps;  // outputs, sized for max_b
  std::vector<float> pos;                 // [N, D] 2-D sin-cos embedding for H x W
  std::vector<float> hp_mask;             // [H, W]
  std::unique_ptr<SpectralPlan> spectral;
  IntermediateHook hook;
  int64_t last_b = 0;
  int64_t last_refined = 0;  // rows of the last denoise that ran the refiner (its first rows)

  // The shape is only built when a hook listens: no allocation in the step loop otherwise.
  template <class... Dims>
  void emit(const char* name, const float* data, Dims... dims) const {
    if (hook) hook(name, Tensor::view(data, Shape{static_cast<int64_t>(dims)...}));
  }
};

// The option checks of Context::create / estimate_bytes (batch range, size multiples).
Status check_context_options(const ModelConfig& cfg, int64_t B, int64_t H, int64_t W);
// The workspace peak of one refining evaluation at B x H x W, without allocating
// (context_plan.cpp; equals Workspace::peak_bytes() after the warm-up).
int64_t plan_workspace_bytes(const Model::Impl& m, int64_t B, int64_t H, int64_t W);
// "1.9 GiB", "12.0 MiB", ...
std::string format_bytes(int64_t bytes);

// eps_s [B, C, H, W] = Backbone(x [B, C, H, W], SiLU(c) [B, D], prompt)
void backbone_forward(Context::State& s, const float* x, int64_t b, const float* c_silu,
                      const PromptState& ps, float* eps_s);
// r [B, C, H, W] = Refiner(concat[x, eps_s], c)
void refiner_forward(Context::State& s, const float* x, const float* eps_s, int64_t b,
                     const float* c, const float* c_silu, float* r);

}  // namespace duet

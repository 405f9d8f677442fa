// Context::State — per-request state: planned sizes, workspace, persistent outputs, the
// high-pass plan; plus the forward passes of the two branches (backbone_forward.cpp,
// refiner_forward.cpp) that run on it. Every tensor here lives in the backend's memory
// (backends/buffer.h); on a backend that is not host_visible() the inputs are uploaded into
// x_in / t_in and the outputs downloaded into host mirrors on first access after a call.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/workspace.h"
#include "model/model_impl.h"

namespace duet {

inline constexpr int64_t kMaxRefinerLevels = 16;

struct Context::State {
  std::shared_ptr<const Model> model;
  const Model::Impl* m = nullptr;
  const Backend* be = nullptr;
  int64_t max_b = 0, H = 0, W = 0;
  Workspace ws;                           // in backend memory
  Tensor c, eps_s, r, eps_d, alpha, eps;  // backend outputs, sized for max_b
  Tensor x_in, t_in;                      // backend staging [max_b, C, H, W], [max_b] (device)
  Tensor pos;                             // backend [N, D] 2-D sin-cos embedding for H x W
  std::vector<float> hp_mask;             // host [H, W] (the spectral plan copies it)
  std::unique_ptr<SpectralPlan> spectral;
  // Host copies of the outputs on a non-host-visible backend (downloaded lazily, see above).
  struct Mirror {
    Tensor host;
    bool stale = true;
  };
  mutable Mirror h_c, h_eps_s, h_r, h_eps_d, h_alpha, h_eps;
  mutable std::vector<float> hook_scratch;  // hooks on a device backend: a host copy
  IntermediateHook hook;
  int64_t last_b = 0;
  int64_t last_refined = 0;  // rows of the last denoise that ran the refiner (its first rows)

  // The shape is only built when a hook listens: no allocation in the step loop otherwise.
  template <class... Dims>
  void emit(const char* name, const float* data, Dims... dims) const {
    if (hook) hook_view(name, data, Shape{static_cast<int64_t>(dims)...});
  }
  // The first b rows of backend output t as host memory (m: its mirror).
  Tensor host_rows(const Tensor& t, Mirror& m, int64_t b) const;
  // Calls the hook with a host view of the backend tensor `data` (downloaded where needed).
  void hook_view(std::string_view name, const float* data, const Shape& shape) const;
};

// The option checks of Context::create / estimate_bytes (batch range, size multiples).
Status check_context_options(const ModelConfig& cfg, int64_t B, int64_t H, int64_t W);
// The workspace peak of one refining evaluation at B x H x W, without allocating
// (context_plan.cpp; equals Workspace::peak_bytes() after the warm-up).
int64_t plan_workspace_bytes(const Model::Impl& m, int64_t B, int64_t H, int64_t W);
// "1.9 GiB", "12.0 MiB", ...
std::string format_bytes(int64_t bytes);

// eps_s [B, C, H, W] = Backbone(x [B, C, H, W], SiLU(c) [B, D], prompt)
// cache: the requests whose rows use a backbone cache (backbone_cache.h; empty = none).
void backbone_forward(Context::State& s, const float* x, int64_t b, const float* c_silu,
                      const PromptState& ps, float* eps_s, std::span<CacheMember> cache = {});
// r [B, C, H, W] = Refiner(concat[x, eps_s], c)
void refiner_forward(Context::State& s, const float* x, const float* eps_s, int64_t b,
                     const float* c, const float* c_silu, float* r);

}  // namespace duet

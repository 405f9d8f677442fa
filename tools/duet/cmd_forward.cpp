// duet forward — one model evaluation (the C++ twin of `python -m duet_ref.forward`).
//
//   duet forward --model DIR --prompt TEXT --x X.safetensors --t 537.25 [--refine]
//                --out OUT.safetensors [--threads N] [--backend
//                cpu|reference|reference-device|cuda]
//
// Reads tensor `x` [B, C, H, W] (F32/F16/BF16, computed in F32), repeats the prompt B times,
// broadcasts t to [B] (float32) and writes F32 eps_s, r, eps_d [B, C, H, W], alpha [B], eps
// [B, C, H, W]. Without --refine r, eps_d, alpha are zeros (same convention as forward.py).
// Metadata: prompt, t, refine ("0"/"1"). Errors: one line on stderr, exit code 1.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "backend_option.h"
#include "command.h"
#include "duet/model.h"
#include "duet/safetensors.h"
#include "precision_option.h"

namespace {

using namespace duet;

struct ForwardArgs {
  std::string model, prompt, x, out, backend = "cpu";
  double t = 0;
  bool refine = false;
  int threads = 0;
  std::string precision;  // --precision (empty: the checkpoint's, else f32)
};

Status run_forward(const ForwardArgs& a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  DUET_ASSIGN_OR_RETURN(BackendKind kind, cli::resolve_backend(a.backend));
  LoadOptions lo;
  lo.backend = kind;
  DUET_ASSIGN_OR_RETURN(lo.precision, cli::resolve_precision(a.precision, a.model));
  DUET_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, Model::load(a.model, lo));
  DUET_ASSIGN_OR_RETURN(SafetensorsFile xf, SafetensorsFile::open(a.x));
  if (!xf.find("x")) return not_found(a.x + ": no tensor named 'x'");
  DUET_ASSIGN_OR_RETURN(Tensor x, xf.load_f32("x"));
  const ModelConfig& cfg = model->config();
  if (x.rank() != 4 || x.dim(1) != cfg.image.channels)
    return invalid_argument(a.x + ": tensor 'x' must be [B, " + std::to_string(cfg.image.channels) +
                            ", H, W], got " + shape_string(x.shape()));
  const int64_t B = x.dim(0);
  if (B < 1) return invalid_argument(a.x + ": tensor 'x' has an empty batch");
  DUET_ASSIGN_OR_RETURN(PromptState ps,
                        model->encode_prompt(std::vector<std::string>(B, a.prompt)));
  ContextOptions co;
  co.max_batch = B;
  co.height = x.dim(2);
  co.width = x.dim(3);
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<Context> ctx, Context::create(model, co));
  Tensor t = Tensor::zeros({B});
  for (int64_t i = 0; i < B; ++i) t.f32()[i] = static_cast<float>(a.t);
  const auto t0 = std::chrono::steady_clock::now();
  DUET_RETURN_IF_ERROR(ctx->denoise(x, t, ps, a.refine));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const Shape img = x.shape();
  auto or_zeros = [](const Tensor& v, const Shape& s) { return v.empty() ? Tensor::zeros(s) : v; };
  std::vector<std::pair<std::string, Tensor>> outs = {
      {"eps_s", ctx->eps_s()},
      {"r", or_zeros(ctx->r(), img)},
      {"eps_d", or_zeros(ctx->eps_d(), img)},
      {"alpha", or_zeros(ctx->alpha(), {B})},
      {"eps", ctx->eps()},
  };
  char tbuf[64];
  std::snprintf(tbuf, sizeof(tbuf), "%.17g", a.t);
  DUET_RETURN_IF_ERROR(write_safetensors(
      a.out, outs, {{"prompt", a.prompt}, {"t", tbuf}, {"refine", a.refine ? "1" : "0"}}));
  std::printf(
      "wrote %s: eps_s, r, eps_d, alpha, eps for B=%lld (%s backend, %d threads, %.2f ms)\n",
      a.out.c_str(), static_cast<long long>(B), a.backend.c_str(), omp_get_max_threads(), ms);
  return Status::ok();
}

duet::cli::CommandRegistrar registrar(
    "forward", "Run one model evaluation on a tensor file and write eps_s, r, eps_d, alpha, eps",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ForwardArgs>();
      sub.add_option("--model", a->model, "model directory (config.json + model.safetensors)")
          ->required();
      sub.add_option("--prompt", a->prompt, "prompt text (repeated across the batch)")->required();
      sub.add_option("--x", a->x, "safetensors file holding x [B, C, H, W]")->required();
      sub.add_option("--t", a->t, "timestep (real-valued, broadcast to the batch)")->required();
      sub.add_flag("--refine", a->refine, "run the refiner, gate and fusion");
      sub.add_option("--out", a->out, "output .safetensors")->required();
      sub.add_option("--threads", a->threads, "OpenMP threads (0 = default)")
          ->check(CLI::NonNegativeNumber);
      cli::add_backend_option(sub, &a->backend);
      cli::add_precision_option(sub, &a->precision);
      return [a]() {
        Status st = run_forward(*a);
        if (!st.is_ok()) {
          std::fprintf(stderr, "duet forward: %s\n", st.to_string().c_str());
          return 1;
        }
        return 0;
      };
    });

}  // namespace

// duet::Model (weights: immutable, shareable between threads) and duet::Context (per-request
// state and workspaces), in the spirit of llama_model / llama_context.
//
//   DUET_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, Model::load("models/fashion-duet"));
//   DUET_ASSIGN_OR_RETURN(PromptState ps, model->encode_prompt({"a red dress", "a red dress"}));
//   ContextOptions co; co.max_batch = 2;
//   DUET_ASSIGN_OR_RETURN(std::unique_ptr<Context> ctx, Context::create(model, co));
//   DUET_RETURN_IF_ERROR(ctx->denoise(x_t, t, ps, /*refine=*/true));   // no heap allocation
//   const Tensor eps = ctx->eps();                                      // [B, C, H, W]
//
// What is computed is exactly python/duet_ref/model.py (see docs/architecture.md):
//   eps_s = Backbone(x_t, c, K/V(E), p);  r = Refiner(concat[x_t, eps_s], c);  eps_d = HP(r)
//   alpha = sigmoid(GateMLP(sinusoid(t)));  eps = LP(eps_s) + alpha HP(eps_s) + (1 - alpha) eps_d
//   (refine = false: eps = eps_s and the refiner / gate are not run).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "duet/backbone_cache.h"
#include "duet/backend_kind.h"
#include "duet/config.h"
#include "duet/precision.h"
#include "duet/status.h"
#include "duet/tensor.h"

namespace duet {

struct LoadOptions {
  BackendKind backend = BackendKind::kCpu;
  // Compute precision of the weight-bearing layers (duet/precision.h): kBF16 / kInt8 quantise
  // at load (or take a `duet quantize` checkpoint's stored BF16 / I8 weights as they are).
  Precision precision = Precision::kF32;
  // int8 mode: convolutions at bf16 (duet::layer_precision's rule) or, when false, fp32. The cpu
  // backend forces false where oneDNN has no bf16 kernels (below AVX-512); bf16-stored conv
  // weights are then widened exactly. Set it false on the reference backend to get that
  // configuration's twin.
  bool int8_bf16_convs = true;
};

struct ModelInfo {
  std::string name;                                  // config "name"
  std::string backend;                               // "cpu" | "reference"
  int64_t parameters = 0;                            // total parameter count
  std::map<std::string, int64_t> branch_parameters;  // text, cond, backbone, refiner, gate
  std::string weight_dtypes;       // e.g. "F32" or "BF16 (converted to F32 at load)"
  std::vector<std::string> notes;  // load-time notes (dtype conversions, ...)
};

// Everything that depends only on the prompt: computed once, reused by every denoise step.
// ids and mask are host tensors; every other tensor lives in the model's backend memory
// (computed there once per prompt and kept across steps and requests). On the cpu and reference
// backends that is host memory; on a backend that is not host-visible (reference-device, a GPU)
// read them through download_tensor (src/backends/buffer.h).
struct PromptState {
  int64_t batch = 0;         // B
  int64_t length = 0;        // L
  Tensor ids;                // I64 [B, L]
  Tensor mask;               // I64 [B, L], 1 = real token
  Tensor E;                  // F32 [B, L, Dt] text encoder output
  Tensor p;                  // F32 [B, Dt]    masked mean of E
  std::vector<Tensor> k, v;  // per backbone block: cross-attention K, V [B, L, D]
  std::vector<Tensor> sem;   // per backbone block: sigmoid(sem_gate(p)) [B, D]
  Tensor key_mask;           // U8 [B, L] mask as bytes (what attention consumes)
};

class Context;
class SafetensorsFile;

// Called during denoise with "c", "t_sinusoid", "block.{i}", "final_tokens", "eps_s",
// "ref.conv_in", "ref.enc.{i}", "ref.down.{i}", "ref.mid", "ref.up.{j}", "ref.dec.{j}", "r",
// "eps_d", "hp_s", "alpha", "eps"; during encode_ids with "text_block.{i}". The tensor is a view
// valid only during the call.
using IntermediateHook = std::function<void(std::string_view name, const Tensor& value)>;

class Model {
 public:
  // Loads DIR/config.json + DIR/model.safetensors; validates the tensor table; converts F16/BF16
  // weights to F32 (noted in info()); prepares every layer on the chosen backend.
  static Result<std::shared_ptr<const Model>> load(const std::string& dir,
                                                   const LoadOptions& opts = {});
  // Same from parsed parts: tensors by PyTorch state_dict name (F32 / F16 / BF16).
  static Result<std::shared_ptr<const Model>> from_tensors(
      const ModelConfig& cfg, const std::map<std::string, Tensor>& tensors,
      const LoadOptions& opts = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const ModelInfo& info() const;
  BackendKind backend_kind() const;

  // Byte tokenizer: ids, mask I64 [B, max_length].
  Status tokenize(const std::vector<std::string>& texts, Tensor* ids, Tensor* mask) const;
  Result<PromptState> encode_prompt(const std::vector<std::string>& texts) const;
  // Row-wise concatenation of prompt states of equal length made by this model (a batch of
  // several requests' prompts), copied within the backend.
  Result<PromptState> concat_prompts(const std::vector<const PromptState*>& parts) const;
  // ids, mask: I64 [B, L] with L <= text.max_length.
  Result<PromptState> encode_ids(const Tensor& ids, const Tensor& mask,
                                 const IntermediateHook& hook = {}) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  Model();
  // from_tensors; with release_from (load()'s file) each layer's weight pages are released once
  // the backend has packed its own copy (SafetensorsFile::release_pages).
  static Result<std::shared_ptr<const Model>> build_from(
      const ModelConfig& cfg, const std::map<std::string, Tensor>& tensors, const LoadOptions& opts,
      const SafetensorsFile* release_from);
  std::unique_ptr<Impl> impl_;
};

struct ContextOptions {
  int64_t max_batch = 1;
  int64_t height = 0;  // 0 = config image.height
  int64_t width = 0;   // 0 = config image.width
  // Cap on the bytes the Context plans (workspace + outputs + planning state, as estimated by
  // Context::estimate_bytes); 0 = unlimited. Over it, create() returns kResourceExhausted
  // before allocating any of it.
  int64_t max_workspace_bytes = 0;
};

class BackboneCache;

// One request's rows [row0, row0 + rows) of a denoise call and its backbone cache: whether this
// call may reuse (eligible: inside the spec's START..END part of the schedule) and, on return,
// whether the cached span was computed for it.
struct CacheMember {
  BackboneCache* cache = nullptr;
  int64_t row0 = 0, rows = 0;
  bool eligible = true;
  bool computed = false;  // out
};

class Context {
 public:
  // Plans every workspace for max_batch × height × width (one warm-up evaluation measures the
  // peak and creates the backend's primitives), so denoise itself never allocates.
  static Result<std::unique_ptr<Context>> create(std::shared_ptr<const Model> model,
                                                 const ContextOptions& opts = {});
  // The bytes create(model, opts) will hold at its peak (scratch workspace, outputs, positional
  // embedding, high-pass plan, the warm-up prompt), from the config alone: nothing is allocated.
  static Result<int64_t> estimate_bytes(const Model& model, const ContextOptions& opts = {});
  ~Context();

  // x_t F32 [B, C, H, W] (B <= max_batch, H, W as planned), t F32 [B] real-valued timesteps,
  // prompt with batch B. refine: run the refiner + gate + fusion.
  Status denoise(const Tensor& x_t, const Tensor& t, const PromptState& prompt, bool refine);
  // The same with a per-row choice: the first refine_rows rows (0 <= refine_rows <= B) run the
  // refiner + gate + fusion, the rest do not; each row gets what a call with its own flag gives
  // (one call for requests at different points of their refine schedules).
  Status denoise_rows(const Tensor& x_t, const Tensor& t, const PromptState& prompt,
                      int64_t refine_rows);
  // The same where some requests' rows use a backbone cache (duet/backbone_cache.h). Members
  // must not overlap; rows outside every member are computed as usual. Each member gets what a
  // call over its rows alone gives it: the blocks are skipped for the call only when every row
  // reuses, otherwise they run and the reusing members' rows are overwritten afterwards.
  Status denoise_cached(const Tensor& x_t, const Tensor& t, const PromptState& prompt,
                        int64_t refine_rows, std::span<CacheMember> members);

  // Views of the last denoise's outputs (batch B of that call); r/eps_d/alpha hold its refined
  // rows only (empty when it did not refine).
  Tensor eps() const;  // [B, C, H, W] the fused prediction
  // Copies the last call's eps [B, C, H, W] into host memory `out` (the host boundary: one
  // download on a device backend; no allocation).
  void copy_eps(float* out) const;
  Tensor eps_s() const;  // [B, C, H, W] backbone
  Tensor r() const;      // [B, C, H, W] refiner output
  Tensor eps_d() const;  // [B, C, H, W] HP(r)
  Tensor alpha() const;  // [B]
  Tensor c() const;      // [B, D] conditioning

  void set_hook(IntermediateHook hook);
  const Model& model() const;
  int64_t max_batch() const;
  int64_t height() const;
  int64_t width() const;
  size_t workspace_bytes() const;

  struct State;

 private:
  Context();
  std::unique_ptr<State> s_;
};

// A request's backbone cache for one Context shape: the cached residual [rows, N, D] in backend
// memory, the host copy of the last indicator and the skip statistics; all allocated here, so
// the denoising loop does not allocate. Not shareable between requests running at once.
class BackboneCache {
 public:
  // rows: the most rows a call of the request has (2n with guidance).
  static Result<std::unique_ptr<BackboneCache>> create(const Context& ctx, const CacheSpec& spec,
                                                       int64_t rows);
  ~BackboneCache();
  const CacheSpec& spec() const;
  const CacheStats& stats() const;

  struct State;
  State& state() { return *s_; }

 private:
  BackboneCache();
  std::unique_ptr<State> s_;
};

}  // namespace duet

// ModelConfig: config.json, mirroring python/duet_ref/config.py (the executable spec).
//
// Loading = defaults (config.py DEFAULTS) deep-merged under the file's values (a nested object
// merges key by key; anything else replaces), then validation with the same rules, in the same
// order, as config.py `validate`. Messages read
//   "<file>: field <section>.<key>: <what config.py says> (<what was found>)".
// Extra C++ checks (documented in docs/robustness.md): JSON types are checked for every field
// (config.py only checks some), integers are capped at kMaxConfigInt so derived sizes cannot
// overflow, inference.refine_every must be a positive integer, name must be a string, duplicate
// keys are rejected, and text.bos_id/eos_id/pad_id (written by the exporter) must be 256/257/258.
// Unknown keys are accepted (as config.py does) but listed in ModelConfig::unknown_fields.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "duet/status.h"

namespace duet {

inline constexpr int64_t kTimeEmbedDim = 256;        // sinusoid(t) width, fixed by the spec
inline constexpr int64_t kMaxConfigInt = 1ll << 24;  // C++ sanity cap on every integer field

struct ImageConfig {
  int64_t channels = 1;  // C
  int64_t height = 28;   // H
  int64_t width = 28;    // W
};

struct TextConfig {
  std::string tokenizer = "byte";  // only "byte"
  int64_t max_length = 32;         // L (>= 2)
  int64_t vocab_size = 259;        // 256 bytes + bos/eos/pad
  int64_t width = 128;             // Dt
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t mlp_ratio = 4;
  // Informative copies of the byte tokenizer's special ids (python/duet_ref/checkpoint.py writes
  // them into exported configs). Fixed: a config that states other values is rejected.
  int64_t bos_id = 256;
  int64_t eos_id = 257;
  int64_t pad_id = 258;
};

struct BackboneConfig {
  int64_t patch = 4;    // p
  int64_t width = 192;  // D
  int64_t depth = 6;
  int64_t heads = 6;
  int64_t mlp_ratio = 4;
  // Self-attention kind of each block, "softmax" | "slab_linear" | "cswin" (docs/model.md);
  // config.json holds one name for every block or a list of depth names. Empty (the default) =
  // all softmax.
  std::vector<std::string> attention;
  int64_t slab_kernel = 5;  // odd: the depth-wise conv on V of slab_linear blocks
  int64_t cswin_stripe =
      1;  // cswin blocks: stripe width in tokens (the last stripe may be shorter)
  int64_t cswin_kernel = 3;  // odd: LePE, the depth-wise conv on V within each stripe window
  // Norm kind of each block, "layernorm" | "repbn" (same forms; empty = all layernorm). repbn
  // blocks are stored folded (python/duet_ref/repbn.py): norm1 / norm2 are the bare adaLN
  // modulation and ln_c is absent (its affine map lives in cross.q).
  std::vector<std::string> norm;
  bool slab(int64_t block) const { return kind(attention, block, "slab_linear"); }
  bool cswin(int64_t block) const { return kind(attention, block, "cswin"); }
  bool repbn(int64_t block) const { return kind(norm, block, "repbn"); }

 private:
  static bool kind(const std::vector<std::string>& v, int64_t block, const char* name) {
    return !v.empty() && v[static_cast<size_t>(block)] == name;
  }
};

struct CarafeConfig {
  int64_t k_up = 5;   // odd
  int64_t k_enc = 3;  // odd
  int64_t scale = 2;  // only 2
  int64_t compress = 16;
};

struct RefinerConfig {
  int64_t base_channels = 32;
  std::vector<int64_t> channel_mult = {1, 2, 2};  // one entry per U-Net level
  int64_t groups = 8;
  int64_t time_channels = 32;  // Ct (bottleneck concat injection)
  CarafeConfig carafe;
};

struct HighpassConfig {
  double rho_c = 0.25;  // in [0, 1]
  double tau = 0.04;    // >= 0
};

struct GateConfig {
  int64_t hidden = 64;
};

struct DiffusionConfig {
  int64_t num_train_timesteps = 1000;
  std::string beta_schedule = "linear";     // linear | scaled_linear | cosine
  std::string prediction_type = "epsilon";  // epsilon | v_prediction
};

struct InferenceConfig {
  int64_t refine_every = 3;
  double cfg_scale = 4.0;  // default classifier-free guidance scale, in [1, 100]
};

struct ModelConfig {
  std::string name = "duet";
  ImageConfig image;
  TextConfig text;
  BackboneConfig backbone;
  RefinerConfig refiner;
  HighpassConfig highpass;
  GateConfig gate;
  DiffusionConfig diffusion;
  InferenceConfig inference;
  // Keys present in the file but unknown to this version (e.g. "backbone.hieght"); not an error.
  std::vector<std::string> unknown_fields;

  // ---- derived sizes (valid only for a config that passed validation) ----
  int64_t grid_h() const { return image.height / backbone.patch; }
  int64_t grid_w() const { return image.width / backbone.patch; }
  int64_t tokens() const { return grid_h() * grid_w(); }  // N image tokens
  int64_t patch_dim() const { return backbone.patch * backbone.patch * image.channels; }
  int64_t backbone_head_dim() const { return backbone.width / backbone.heads; }
  int64_t text_head_dim() const { return text.width / text.heads; }
  int64_t time_embed_dim() const { return kTimeEmbedDim; }
  int64_t refiner_levels() const { return static_cast<int64_t>(refiner.channel_mult.size()); }
  // Channels of refiner level i: base_channels * channel_mult[i].
  int64_t level_channels(int64_t i) const;
  std::vector<int64_t> level_channels() const;
  // Total downsampling of the refiner U-Net: 2^(levels - 1).
  int64_t refiner_stride() const { return int64_t{1} << (refiner_levels() - 1); }
};

// Validates a config (the rules of config.py `validate`); `file` prefixes messages.
Status validate_config(const ModelConfig& cfg, std::string_view file = "config.json");
// Parses JSON text: defaults, merge, type checks, validation.
Result<ModelConfig> parse_config(std::string_view json_text, std::string_view file = "config.json");
// Reads and parses a config.json file (errors are prefixed with `path`).
Result<ModelConfig> load_config(const std::string& path);
// The config as JSON (all fields, defaults included); parse_config(to_json(c)) == c.
std::string config_to_json(const ModelConfig& cfg, int indent = 2);

}  // namespace duet

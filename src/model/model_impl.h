// Model::Impl — the loaded model: config, fp32 weights and every layer prepared on a backend.
// Immutable after load (backend caches are internally synchronised), shared by Contexts.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "duet/model.h"

namespace duet {

using LinearPtr = std::unique_ptr<PreparedLinear>;
using ConvPtr = std::unique_ptr<PreparedConv>;

struct NormW {  // LayerNorm / GroupNorm affine parameters (point into Impl::store)
  const float* gamma = nullptr;
  const float* beta = nullptr;
};

struct TextBlockW {  // text_encoder.py TextBlock
  NormW ln1, ln2;
  LinearPtr qkv, proj, fc1, fc2;  // fc1 has the GELU(tanh) fused
};

struct DiTBlockW {               // backbone.py DiTBlock
  LinearPtr ada;                 // [6D, D] applied to SiLU(c)
  LinearPtr qkv, proj;           // self-attention
  const float* dwc_w = nullptr;  // depth-wise conv on V (store): slab_linear [d, k, k],
  const float* dwc_b = nullptr;  // cswin (LePE) [D, k, k]; bias [d] / [D]
  bool repbn = false;            // folded RepBN: norm1/norm2 = bare modulate, no ln_c
  NormW ln_c;                    // affine LN, eps 1e-6 (layernorm blocks)
  LinearPtr q, k, v, cproj;      // cross-attention (k, v applied to E once per prompt)
  LinearPtr sem_gate;            // [D, Dt], sigmoid fused
  LinearPtr fc1, fc2;            // MLP, GELU fused in fc1
};

enum class ResMode { kFilm, kConcat, kGated };

struct ResBlockW {  // refiner.py ResBlock
  ResMode mode = ResMode::kFilm;
  int64_t cin = 0, cout = 0;
  NormW norm1, norm2;
  ConvPtr conv1, conv2, skip, t_mix, att_s;  // skip / t_mix may be null; att_s has sigmoid fused
  LinearPtr t_proj, att_c;                   // att_c has sigmoid fused
};

struct CarafeW {
  ConvPtr comp, enc;
};

struct Model::Impl {
  ModelConfig cfg;
  ModelInfo info;
  BackendKind kind = BackendKind::kCpu;
  const Backend* be = nullptr;
  Precision precision = Precision::kF32;  // LoadOptions::precision
  // int8 mode's convolutions run bf16 (LoadOptions::int8_bf16_convs, false on the cpu backend
  // without bf16 compute) or fp32.
  bool int8_bf16_convs = true;
  int64_t layer_counts[3] = {0, 0, 0};  // weight-bearing layers per Precision (f32, bf16, int8)
  std::map<std::string, Tensor> store;  // fp32 weights by state_dict name (norms, embeddings)

  // text encoder
  const float* tok_emb = nullptr;  // [vocab, Dt]
  const float* pos_emb = nullptr;  // [max_length, Dt]
  std::vector<TextBlockW> text_blocks;
  NormW ln_f;
  // conditioning and gate (TimestepMlp: fc1 has SiLU fused)
  LinearPtr t_fc1, t_fc2, pool_proj, gate_fc1, gate_fc2;
  // backbone
  ConvPtr patch;  // tokens_out: [B, N, D]
  std::vector<DiTBlockW> blocks;
  LinearPtr final_ada, final_linear;
  // refiner
  ConvPtr conv_in;
  std::vector<ResBlockW> enc;
  std::vector<ConvPtr> down;
  ResBlockW mid;
  std::vector<CarafeW> up;  // decoder order (deepest first)
  std::vector<ConvPtr> fuse;
  std::vector<ResBlockW> dec;
  NormW norm_out;
  ConvPtr conv_out;
};

}  // namespace duet

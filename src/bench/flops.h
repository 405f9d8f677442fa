// Analytic FLOP counts for `duet bench` (src/bench/flops.cpp).
//
// Every linear / convolution / attention matmul counts 2·M·N·K (one multiply + one add per MAC);
// CARAFE's reassembly (a k²-tap weighted sum per output pixel and channel) counts 2·k² per output.
// Not counted: norms, activations, softmax, elementwise glue, embeddings, and the FFT high-pass
// (O(HW log HW), negligible next to the GEMMs). Text length L = text.max_length (the byte
// tokenizer pads to it and attention runs over every key, masked ones included).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "duet/backbone_cache.h"
#include "duet/config.h"

namespace duet::bench {

struct FlopCount {
  // encode_prompt: text encoder (all layers) + every block's cross K/V and semantic gate.
  double text_encoder = 0;
  double prompt_kv = 0;  // K/V projections + sem_gate, all blocks
  // one denoise call, batch B
  double cond = 0;           // t_mlp + pool_proj
  double backbone_gemm = 0;  // backbone linears on the tokens: qkv, proj, cross q/proj, mlp fc1/fc2
  double backbone_attn = 0;  // Q·Kᵀ and A·V, self and cross
  double backbone_other = 0;  // patch embedding conv, adaLN linears, final layer
  double refiner = 0;         // every conv / linear / CARAFE of the U-Net
  double gate = 0;            // gate MLP

  double prompt_encode() const { return text_encoder + prompt_kv; }
  double backbone() const { return backbone_gemm + backbone_attn + backbone_other; }
  double denoise_no_refine() const { return cond + backbone(); }
  double denoise_refine() const { return denoise_no_refine() + refiner + gate; }
};

// FLOPs for a batch of `batch` rows at the config's text length and the given image size
// (0 = the config's).
FlopCount count_flops(const ModelConfig& cfg, int64_t batch, int64_t height = 0, int64_t width = 0);

// Backbone FLOPs a backbone cache saved over a run: each call in `reused` skips the spec's span
// of blocks (step: all, block: depth − F − B), each block counted as 1/depth of the token GEMMs
// and attention at that call's rows, rows_of(call) (exact for uniform blocks).
double cache_flops_saved(const ModelConfig& cfg, const CacheSpec& spec,
                         const std::vector<int>& reused, const std::function<int64_t(int)>& rows_of,
                         int64_t height, int64_t width);

}  // namespace duet::bench

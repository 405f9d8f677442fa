// Compute precision of the weight-bearing layers (LoadOptions::precision, `--precision`).
//   kF32  : everything fp32 (the default; bit-compatible with the PyTorch reference).
//   kBF16 : linear and conv weights stored bf16, activations rounded to bf16 at the GEMM input,
//           fp32 accumulation and output.
//   kInt8 : linear weights s8 with one symmetric scale per output channel, activations s8 with
//           one dynamic symmetric scale per call, int32 accumulation, fp32 output; convolutions
//           bf16. Sensitive / tiny layers stay fp32 in both modes (docs/architecture.md,
//           "Reduced precision"; the per-layer rule is duet::layer_precision).
// Norms, softmax/attention, the FFT high-pass, CARAFE and the elementwise glue are always fp32.
#pragma once

#include <string>
#include <string_view>

#include "duet/status.h"

namespace duet {

enum class Precision { kF32, kBF16, kInt8 };

const char* precision_name(Precision p);  // "f32" | "bf16" | "int8"
// Parses "f32" | "fp32" | "bf16" | "int8" | "auto" (this CPU's fastest precision within the
// quality guard: duet::cpu_auto_precision); otherwise kInvalidArgument naming `what` (the option
// or field the string came from, e.g. "--precision") and the accepted values.
Result<Precision> parse_precision(std::string_view s, std::string_view what = "precision");

// The precision a weight tensor is stored / computed at when the model runs at `requested`.
// weight_name: the state_dict name of the layer's weight ("backbone.blocks.0.attn.qkv.weight");
// rank: 2 for a linear layer, 4 for a convolution. Anything that is not a linear / conv weight
// (biases, norms, embeddings) is kF32. Used identically by Model::load and `duet quantize`, so a
// quantised checkpoint reproduces load-time quantisation exactly.
Precision layer_precision(std::string_view weight_name, int rank, Precision requested);

}  // namespace duet

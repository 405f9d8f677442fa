// Quantised checkpoints (`duet quantize`; format in docs/model.md, "Quantised checkpoints").
//
// A quantised model directory is a normal one whose model.safetensors stores each weight at the
// precision duet::layer_precision gives for the chosen mode:
//   F32 (or the original F16/BF16)  layers kept at full precision, biases, norms, embeddings
//   BF16                            "<layer>.weight" rounded to bf16 (RNE)
//   I8 + F32 "<layer>.weight_scale" "<layer>.weight" symmetric per-output-channel int8 and its
//                                   scales [out] (w ≈ q · scale[row])
// and whose config.json carries {"quantization": {"precision": "bf16" | "int8", ...}}.
// Model::load reads it at any precision: at the stored one it gives exactly the results of
// load-time quantisation of the original checkpoint; at a higher one I8 layers are dequantised.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "duet/config.h"
#include "duet/precision.h"
#include "duet/safetensors.h"
#include "duet/status.h"

namespace duet {

inline constexpr const char* kScaleSuffix = "_scale";  // "<layer>.weight" -> "<layer>.weight_scale"

bool is_scale_tensor(std::string_view name);  // ends with ".weight_scale"
// True when the file holds I8 weights or scale tensors.
bool is_quantized_checkpoint(const SafetensorsFile& file);
// check_checkpoint for quantised files: every expected tensor present with its shape; dtype
// F32/F16/BF16, or I8 for a linear / conv weight together with an F32 "<name>_scale" of shape
// [out]; no other tensors. Errors name the file and the tensor.
Status check_quantized_checkpoint(const SafetensorsFile& file, const ModelConfig& cfg);
// DIR/config.json's "quantization.precision" (nullopt when the section is absent); an invalid
// section is an error naming the file and field.
Result<std::optional<Precision>> checkpoint_precision(const std::string& dir);

struct QuantizeReport {
  int64_t layers[3] = {0, 0, 0};  // weight-bearing layers written per Precision (f32, bf16, int8)
  uint64_t bytes_in = 0, bytes_out = 0;  // model.safetensors sizes
};
// Reads in_dir (an unquantised model), writes out_dir/{config.json, model.safetensors} at
// precision p (kBF16 or kInt8). out_dir is created; it must differ from in_dir.
Result<QuantizeReport> quantize_checkpoint(const std::string& in_dir, Precision p,
                                           const std::string& out_dir);

}  // namespace duet

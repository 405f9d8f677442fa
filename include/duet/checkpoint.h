// Checkpoint <-> config validation: the full tensor table a DuetModel of a given config has
// (names and shapes exactly as python/duet_ref/model.py DuetModel.state_dict()), and a checker
// that reports every missing / extra / mis-shaped / mis-typed tensor of a safetensors file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "duet/config.h"
#include "duet/safetensors.h"
#include "duet/status.h"
#include "duet/tensor.h"

namespace duet {

struct ExpectedTensor {
  std::string name;  // e.g. "backbone.blocks.0.ada.weight"
  Shape shape;       // e.g. [6 * D, D]
};

// Every parameter of DuetModel(cfg), in state_dict() order. `cfg` must be validated.
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg);

// Branches, by name prefix: "text.", "cond.", "backbone.", "refiner.", "gate."; else "other".
std::string_view branch_of(std::string_view tensor_name);

struct BranchCounts {
  int64_t text = 0, cond = 0, backbone = 0, refiner = 0, gate = 0, other = 0;
  int64_t total() const { return text + cond + backbone + refiner + gate + other; }
  void add(std::string_view tensor_name, int64_t n);
};
// Parameter (element) counts per branch of the tensors in a file / of the expected table.
BranchCounts count_parameters(const std::vector<TensorEntry>& tensors);
BranchCounts count_parameters(const std::vector<ExpectedTensor>& tensors);

// Weight dtypes the model loader accepts (it converts to F32 explicitly).
bool is_weight_dtype(DType t);  // F32, F16, BF16

// Detailed comparison of a checkpoint with the table for `cfg`.
struct CheckpointReport {
  std::vector<std::string> missing;     // "missing tensor 'x' (expected [a, b] F32)"
  std::vector<std::string> extra;       // "unexpected tensor 'x' [a] F32"
  std::vector<std::string> mis_shaped;  // "tensor 'x': shape [..] but the config needs [..]"
  std::vector<std::string> mis_typed;   // "tensor 'x': dtype I64; expected F32, F16 or BF16"
  bool ok() const {
    return missing.empty() && extra.empty() && mis_shaped.empty() && mis_typed.empty();
  }
  // Multi-line summary: counts per class and the first `max_per_class` items of each.
  std::string summary(const std::string& file, size_t max_per_class = 5) const;
};
CheckpointReport compare_checkpoint(const SafetensorsFile& file, const ModelConfig& cfg);

// Ok, or kInvalidArgument whose message starts with the file name and lists every problem class
// with counts and the first few tensors, e.g.
//   "model.safetensors: missing tensor 'refiner.mid.t_mix.weight' (expected [48, 64, 1, 1] F32)"
Status check_checkpoint(const SafetensorsFile& file, const ModelConfig& cfg);

}  // namespace duet

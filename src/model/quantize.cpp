// Quantised checkpoints: validation, the config "quantization" section, and `duet quantize`
// (include/duet/quantize.h; format in docs/model.md).
#include "duet/quantize.h"

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <vector>

#include "duet/checkpoint.h"
#include "io/io_util.h"
#include "ops/lowp.h"

namespace duet {

namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;
constexpr const char* kFormat = "duet-quant-1";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

bool is_scale_tensor(std::string_view name) { return ends_with(name, ".weight_scale"); }

bool is_quantized_checkpoint(const SafetensorsFile& file) {
  for (const TensorEntry& e : file.tensors())
    if (e.dtype == DType::kI8 || is_scale_tensor(e.name)) return true;
  return false;
}

Status check_quantized_checkpoint(const SafetensorsFile& file, const ModelConfig& cfg) {
  std::unordered_map<std::string, const TensorEntry*> have;
  for (const TensorEntry& e : file.tensors()) have.emplace(e.name, &e);
  std::vector<std::string> problems;
  size_t known = 0;
  for (const ExpectedTensor& want : expected_tensors(cfg)) {
    auto it = have.find(want.name);
    if (it == have.end()) {
      problems.push_back("missing tensor '" + want.name + "' (expected " +
                         shape_string(want.shape) + ")");
      continue;
    }
    ++known;
    const TensorEntry& e = *it->second;
    if (e.shape != want.shape)
      problems.push_back("tensor '" + want.name + "': shape " + shape_string(e.shape) +
                         " but the config needs " + shape_string(want.shape));
    if (e.dtype == DType::kI8) {
      const bool layer = ends_with(want.name, ".weight") &&
                         (want.shape.size() == 2 || want.shape.size() == 4) &&
                         want.name != "text.tok_emb.weight";
      const std::string sname = want.name + kScaleSuffix;
      auto s = have.find(sname);
      if (!layer) {
        problems.push_back("tensor '" + want.name +
                           "': dtype I8, but only linear / conv weights may be quantised");
      } else if (s == have.end()) {
        problems.push_back("tensor '" + want.name + "' is I8 but '" + sname + "' is missing");
      } else {
        ++known;
        if (s->second->dtype != DType::kF32 || s->second->shape != Shape{want.shape[0]})
          problems.push_back("tensor '" + sname + "': " + shape_string(s->second->shape) + " " +
                             dtype_name(s->second->dtype) + ", expected [" +
                             std::to_string(want.shape[0]) + "] F32");
      }
    } else if (!is_weight_dtype(e.dtype)) {
      problems.push_back("tensor '" + want.name + "': dtype " + dtype_name(e.dtype) +
                         "; weights must be F32, F16, BF16 or I8");
    }
  }
  if (known != file.tensors().size()) {
    for (const TensorEntry& e : file.tensors()) {
      if (is_scale_tensor(e.name)) {
        auto w = have.find(e.name.substr(0, e.name.size() - 6));
        if (w != have.end() && w->second->dtype == DType::kI8) continue;
      }
      bool expected = false;
      for (const ExpectedTensor& want : expected_tensors(cfg))
        if (want.name == e.name) expected = true;
      if (!expected) problems.push_back("unexpected tensor '" + e.name + "'");
    }
  }
  if (problems.empty()) return Status::ok();
  std::string msg = file.name() + ": " + std::to_string(problems.size()) + " problem(s): ";
  for (size_t i = 0; i < problems.size() && i < 5; ++i) msg += (i ? "; " : "") + problems[i];
  return invalid_argument(msg);
}

Result<std::optional<Precision>> checkpoint_precision(const std::string& dir) {
  const std::string path = dir + "/config.json";
  DUET_ASSIGN_OR_RETURN(std::string text, read_file(path, kMaxConfigBytes));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("quantization"))
    return std::optional<Precision>();  // (malformed JSON is load_config's error to report)
  const nlohmann::json& q = j["quantization"];
  if (!q.is_object() || !q.contains("precision") || !q["precision"].is_string())
    return invalid_argument(path + ": field 'quantization.precision' must be a string");
  DUET_ASSIGN_OR_RETURN(Precision p, parse_precision(q["precision"].get<std::string>(),
                                                     path + ": field 'quantization.precision'"));
  return std::optional<Precision>(p);
}

Result<QuantizeReport> quantize_checkpoint(const std::string& in_dir, Precision p,
                                           const std::string& out_dir) {
  namespace fs = std::filesystem;
  if (p == Precision::kF32)
    return invalid_argument("--precision: quantize needs bf16 or int8 (f32 is the original)");
  std::error_code ec;
  if (fs::exists(out_dir, ec) && fs::equivalent(in_dir, out_dir, ec))
    return invalid_argument("--out: '" + out_dir + "' is the input model directory");
  const std::string cfg_path = in_dir + "/config.json";
  DUET_ASSIGN_OR_RETURN(ModelConfig cfg, load_config(cfg_path));
  DUET_ASSIGN_OR_RETURN(std::optional<Precision> already, checkpoint_precision(in_dir));
  if (already)
    return invalid_argument(cfg_path + ": the model is already quantised (" +
                            precision_name(*already) + "); quantize the original checkpoint");
  DUET_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(in_dir + "/model.safetensors"));
  DUET_RETURN_IF_ERROR(check_checkpoint(file, cfg));

  QuantizeReport rep;
  rep.bytes_in = file.file_size();
  std::vector<std::pair<std::string, Tensor>> out;
  for (const TensorEntry& e : file.tensors()) {
    const Precision lp = layer_precision(e.name, static_cast<int>(e.shape.size()), p);
    if (ends_with(e.name, ".weight") && (e.shape.size() == 2 || e.shape.size() == 4) &&
        e.name != "text.tok_emb.weight")
      ++rep.layers[static_cast<int>(lp)];
    if (lp == Precision::kF32) {
      DUET_ASSIGN_OR_RETURN(Tensor t, file.get(e.name));  // kept as stored
      out.emplace_back(e.name, t.clone());
      continue;
    }
    DUET_ASSIGN_OR_RETURN(Tensor f, file.load_f32(e.name));
    if (lp == Precision::kBF16) {
      Tensor q = Tensor::zeros(e.shape, DType::kBF16);
      ops::to_bf16(f.f32(), f.numel(), q.as<uint16_t>());
      out.emplace_back(e.name, q);
    } else {
      const int64_t rows = e.shape[0], cols = f.numel() / rows;
      Tensor q = Tensor::zeros(e.shape, DType::kI8), sc = Tensor::zeros({rows});
      ops::quantize_rows_int8(f.f32(), rows, cols, q.as<int8_t>(), sc.f32());
      out.emplace_back(e.name, q);
      out.emplace_back(e.name + kScaleSuffix, sc);
    }
  }

  DUET_ASSIGN_OR_RETURN(std::string cfg_text, read_file(cfg_path, kMaxConfigBytes));
  nlohmann::json j = nlohmann::json::parse(cfg_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument(cfg_path + ": not a JSON object");
  j["quantization"] = {
      {"format", kFormat},
      {"precision", precision_name(p)},
      {"source", in_dir},
      {"weights",
       "symmetric per-output-channel int8 (I8 + F32 <name>_scale) / "
       "bf16 RNE; rule: duet::layer_precision"},
      {"layers", {{"f32", rep.layers[0]}, {"bf16", rep.layers[1]}, {"int8", rep.layers[2]}}}};
  fs::create_directories(out_dir, ec);
  if (ec) return io_error("--out: cannot create directory '" + out_dir + "': " + ec.message());
  DUET_RETURN_IF_ERROR(write_file_atomic(out_dir + "/config.json", j.dump(2) + "\n"));
  std::map<std::string, std::string> md = file.metadata();
  md["quantization"] = precision_name(p);
  const std::string st_path = out_dir + "/model.safetensors";
  DUET_RETURN_IF_ERROR(write_safetensors(st_path, out, md));
  rep.bytes_out = static_cast<uint64_t>(fs::file_size(st_path, ec));
  return rep;
}

}  // namespace duet

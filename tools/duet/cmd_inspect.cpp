// duet inspect MODEL_DIR [--check] — config summary, tensor table, parameter counts per branch,
// bytes by dtype; validates the checkpoint against the config (exit 1 with the precise error on
// failure). --check also scans every weight for NaN/Inf.
// MODEL_DIR holds config.json and model.safetensors.
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "command.h"
#include "duet/checkpoint.h"
#include "duet/config.h"
#include "duet/quantize.h"
#include "duet/safetensors.h"
#include "duet/tokenizer.h"

namespace {

using namespace duet;

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

// Number of non-finite values of a float tensor (data read through memcpy: may be unaligned).
int64_t count_non_finite(const TensorEntry& e) {
  int64_t bad = 0;
  for (int64_t i = 0; i < e.numel; ++i) {
    float v;
    if (e.dtype == DType::kF32) {
      std::memcpy(&v, e.data + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, e.data + 2 * i, 2);
      v = e.dtype == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    bad += std::isfinite(v) ? 0 : 1;
  }
  return bad;
}

void print_config(const ModelConfig& c) {
  std::printf("model %s\n", c.name.c_str());
  std::printf("  image     %lld x %lld x %lld (C x H x W)\n", (long long)c.image.channels,
              (long long)c.image.height, (long long)c.image.width);
  std::printf(
      "  text      %s tokenizer, L=%lld, vocab %lld, width %lld, %lld layers, %lld heads, "
      "mlp x%lld\n",
      c.text.tokenizer.c_str(), (long long)c.text.max_length, (long long)c.text.vocab_size,
      (long long)c.text.width, (long long)c.text.layers, (long long)c.text.heads,
      (long long)c.text.mlp_ratio);
  std::printf(
      "  backbone  patch %lld -> %lld tokens (%lldx%lld), width %lld, depth %lld, "
      "%lld heads, mlp x%lld\n",
      (long long)c.backbone.patch, (long long)c.tokens(), (long long)c.grid_h(),
      (long long)c.grid_w(), (long long)c.backbone.width, (long long)c.backbone.depth,
      (long long)c.backbone.heads, (long long)c.backbone.mlp_ratio);
  std::string levels;
  for (int64_t ch : c.level_channels()) levels += (levels.empty() ? "" : ", ") + std::to_string(ch);
  std::printf(
      "  refiner   levels [%s] (stride %lld), groups %lld, time channels %lld, "
      "CARAFE k_up %lld k_enc %lld compress %lld\n",
      levels.c_str(), (long long)c.refiner_stride(), (long long)c.refiner.groups,
      (long long)c.refiner.time_channels, (long long)c.refiner.carafe.k_up,
      (long long)c.refiner.carafe.k_enc, (long long)c.refiner.carafe.compress);
  std::printf("  highpass  rho_c %g, tau %g;  gate hidden %lld\n", c.highpass.rho_c, c.highpass.tau,
              (long long)c.gate.hidden);
  std::printf("  diffusion T=%lld, %s betas, %s prediction; refine every %lld steps\n",
              (long long)c.diffusion.num_train_timesteps, c.diffusion.beta_schedule.c_str(),
              c.diffusion.prediction_type.c_str(), (long long)c.inference.refine_every);
  for (const auto& f : c.unknown_fields) {
    if (f == "quantization" || f.rfind("quantization.", 0) == 0) continue;  // duet quantize's
    std::fprintf(stderr, "warning: config.json: unknown field %s (ignored)\n", f.c_str());
  }
}

int run_inspect(const std::string& dir, bool check, bool quiet) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr,
                 "error: %s: not a model directory (expected config.json and "
                 "model.safetensors inside)\n",
                 dir.c_str());
    return 1;
  }
  auto cfg = load_config(dir + "/config.json");
  if (!cfg) {
    std::fprintf(stderr, "error: %s\n", cfg.status().message().c_str());
    return 1;
  }
  print_config(*cfg);
  auto tok = make_tokenizer(*cfg);
  if (!tok) {
    std::fprintf(stderr, "error: %s\n", tok.status().message().c_str());
    return 1;
  }
  const std::string path = dir + "/model.safetensors";
  auto file = SafetensorsFile::open(path);
  if (!file) {
    std::fprintf(stderr, "error: %s\n", file.status().message().c_str());
    return 1;
  }
  std::printf("\n%s: %zu tensors, %s (header %zu bytes)\n", path.c_str(), file->tensors().size(),
              human_bytes(double(file->file_size())).c_str(), file->header_size());
  for (const auto& [k, v] : file->metadata())
    std::printf("  metadata %s = %s\n", k.c_str(), v.c_str());
  std::map<std::string, std::pair<size_t, size_t>> by_dtype;  // dtype -> (tensors, bytes)
  if (!quiet) std::printf("\n  %-48s %-5s %-20s %12s\n", "tensor", "dtype", "shape", "bytes");
  for (const TensorEntry& e : file->tensors()) {
    auto& d = by_dtype[dtype_name(e.dtype)];
    d.first += 1;
    d.second += e.nbytes;
    if (!quiet)
      std::printf("  %-48s %-5s %-20s %12zu\n", e.name.c_str(), dtype_name(e.dtype),
                  shape_string(e.shape).c_str(), e.nbytes);
  }
  const BranchCounts n = count_parameters(file->tensors());
  std::printf("\nparameters\n");
  const std::pair<const char*, int64_t> rows[] = {
      {"text", n.text}, {"cond", n.cond},   {"backbone", n.backbone}, {"refiner", n.refiner},
      {"gate", n.gate}, {"other", n.other}, {"total", n.total()}};
  for (const auto& [name, v] : rows) {
    if (std::strcmp(name, "other") == 0 && v == 0) continue;
    std::printf("  %-9s %12lld\n", name, (long long)v);
  }
  std::printf("bytes by dtype\n");
  for (const auto& [dt, d] : by_dtype)
    std::printf("  %-5s %5zu tensors %14zu bytes (%s)\n", dt.c_str(), d.first, d.second,
                human_bytes(double(d.second)).c_str());

  int rc = 0;
  auto stored = checkpoint_precision(dir);
  const bool quantized = is_quantized_checkpoint(*file) || (stored.is_ok() && stored->has_value());
  Status s = !stored.is_ok() ? stored.status()
             : quantized     ? check_quantized_checkpoint(*file, *cfg)
                             : check_checkpoint(*file, *cfg);
  if (!s.is_ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    rc = 1;
  } else {
    std::printf("checkpoint matches config: %zu tensors", file->tensors().size());
    if (quantized)
      std::printf(" (quantised: %s, I8 weights with F32 *_scale per output channel)",
                  stored->has_value() ? precision_name(**stored) : "no config section");
    std::printf("\n");
  }
  if (check) {
    size_t bad_tensors = 0;
    for (const TensorEntry& e : file->tensors()) {
      if (!is_weight_dtype(e.dtype)) continue;
      const int64_t bad = count_non_finite(e);
      if (bad) {
        std::fprintf(stderr,
                     "error: %s: tensor '%s' has %lld non-finite values (NaN/Inf) of %lld\n",
                     path.c_str(), e.name.c_str(), (long long)bad, (long long)e.numel);
        ++bad_tensors;
      }
    }
    if (bad_tensors) {
      std::fprintf(stderr, "error: %s: %zu tensors contain NaN/Inf\n", path.c_str(), bad_tensors);
      rc = 1;
    } else {
      std::printf("check: all weights finite\n");
    }
  }
  return rc;
}

static duet::cli::CommandRegistrar registrar(
    "inspect", "Show a model directory's config, tensors and parameter counts; validate it",
    [](CLI::App& sub) -> std::function<int()> {
      auto dir = std::make_shared<std::string>();
      auto check = std::make_shared<bool>(false);
      auto quiet = std::make_shared<bool>(false);
      sub.add_option("model_dir", *dir, "directory with config.json and model.safetensors")
          ->required();
      sub.add_flag("--check", *check, "also scan every weight for NaN/Inf");
      sub.add_flag("-q,--quiet", *quiet, "omit the per-tensor table");
      return [dir, check, quiet]() { return run_inspect(*dir, *check, *quiet); };
    });

}  // namespace

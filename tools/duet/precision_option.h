// `--precision f32|bf16|int8|auto` for the commands that load a model (generate, bench, serve,
// forward). Unset: the checkpoint's own precision (config.json "quantization", written by
// `duet quantize`), else f32.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>

#include "duet/cpu_features.h"
#include "duet/precision.h"
#include "duet/quantize.h"

namespace duet::cli {

inline void add_precision_option(CLI::App& sub, std::string* value) {
  sub.add_option("--precision", *value,
                 "compute precision: f32 | bf16 | int8 | auto (this CPU's fastest within the "
                 "quality guard; default: the checkpoint's quantization.precision, else f32)");
}

inline Result<Precision> resolve_precision(const std::string& value, const std::string& model_dir) {
  if (value == "auto") {  // reported, so a figure can be traced to the precision that made it
    DUET_ASSIGN_OR_RETURN(const CpuInfo* cpu, cpu_info());
    std::string why;
    const Precision p = cpu_auto_precision(*cpu, &why);
    std::fprintf(stderr, "precision auto: %s\n", why.c_str());
    return p;
  }
  if (!value.empty()) return parse_precision(value, "--precision");
  DUET_ASSIGN_OR_RETURN(std::optional<Precision> stored, checkpoint_precision(model_dir));
  return stored.value_or(Precision::kF32);
}

}  // namespace duet::cli

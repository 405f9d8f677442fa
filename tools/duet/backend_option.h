// `--backend cpu|reference|reference-device|cuda` for the commands that load a model (generate,
// bench, serve). cuda needs a build with -DDUET_CUDA=ON and a GPU; otherwise Model::load says
// which is missing in one line (and the command exits != 0).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "duet/backend_kind.h"

namespace duet::cli {

inline void add_backend_option(CLI::App& sub, std::string* value) {
  sub.add_option("--backend", *value,
                 "where the model runs: cpu | reference | reference-device | cuda (default cpu; "
                 "cuda: a -DDUET_CUDA=ON build on a machine with an NVIDIA GPU)")
      ->capture_default_str();
}

inline Result<BackendKind> resolve_backend(const std::string& value) {
  return parse_backend_kind(value.empty() ? "cpu" : value);
}

}  // namespace duet::cli

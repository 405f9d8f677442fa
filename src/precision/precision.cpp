// Precision names and the per-layer precision rule (include/duet/precision.h).
#include "duet/precision.h"

#include <array>

#include "duet/cpu_features.h"

namespace duet {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kF32:
      return "f32";
    case Precision::kBF16:
      return "bf16";
    case Precision::kInt8:
      return "int8";
  }
  return "?";
}

Result<Precision> parse_precision(std::string_view s, std::string_view what) {
  if (s == "f32" || s == "fp32") return Precision::kF32;
  if (s == "bf16") return Precision::kBF16;
  if (s == "int8") return Precision::kInt8;
  if (s == "auto") {
    DUET_ASSIGN_OR_RETURN(const CpuInfo* cpu, cpu_info());
    return cpu_auto_precision(*cpu);
  }
  return invalid_argument(std::string(what) + ": unknown precision '" + std::string(s) +
                          "' (expected f32, bf16, int8 or auto)");
}

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Layers kept fp32 at every precision: they are tiny (M = batch rows: timestep / pooled-prompt
// MLPs, adaLN modulation, the semantic gate, the fusion gate) so reduced precision buys nothing,
// or they write the model output directly (the backbone's final projection, the refiner's last
// conv), where the error would land unattenuated in epsilon, or they run once per prompt (the
// text encoder: its K/V are cached across steps, so int8 there saved ~1 % of an image's time
// but its error reached every step — demo image 37.5 vs 34.95 dB without VNNI, 39.8 vs 38.4
// with).
bool always_f32(std::string_view name) {
  static constexpr std::array<std::string_view, 5> kPrefixes = {"cond.", "gate.", "backbone.final.",
                                                                "refiner.conv_out.", "text."};
  for (std::string_view p : kPrefixes)
    if (starts_with(name, p)) return true;
  static constexpr std::array<std::string_view, 4> kSuffixes = {".ada.weight", ".sem_gate.weight",
                                                                ".t_proj.weight", ".att_c.weight"};
  for (std::string_view sfx : kSuffixes)
    if (ends_with(name, sfx)) return true;
  return false;
}

}  // namespace

Precision layer_precision(std::string_view name, int rank, Precision requested) {
  if (requested == Precision::kF32) return Precision::kF32;
  if (!ends_with(name, ".weight") || (rank != 2 && rank != 4)) return Precision::kF32;
  if (name == "text.tok_emb.weight") return Precision::kF32;  // an embedding table, not a GEMM
  if (always_f32(name)) return Precision::kF32;
  if (rank == 4) return Precision::kBF16;  // convolutions: bf16 in both reduced modes
  return requested;
}

}  // namespace duet

// duet quantize — write a quantised copy of a model directory.
//
//   duet quantize --model DIR --precision bf16|int8 --out DIR2
//
// DIR2/model.safetensors holds every linear / conv weight at the precision duet::layer_precision
// gives (BF16, or I8 + F32 "<name>_scale" per output channel; sensitive layers stay as stored);
// DIR2/config.json is DIR's with a "quantization" section. `Model::load(DIR2)` at that precision
// gives exactly the results of loading DIR with --precision (docs/model.md, "Quantised
// checkpoints").
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "duet/precision.h"
#include "duet/quantize.h"

namespace {

using namespace duet;

struct QuantizeArgs {
  std::string model, precision, out;
};

Status run_quantize(const QuantizeArgs& a) {
  DUET_ASSIGN_OR_RETURN(Precision p, parse_precision(a.precision, "--precision"));
  DUET_ASSIGN_OR_RETURN(QuantizeReport r, quantize_checkpoint(a.model, p, a.out));
  std::printf(
      "wrote %s (%s): %lld weight layers int8, %lld bf16, %lld kept fp32; model.safetensors "
      "%.2f MB -> %.2f MB\n",
      a.out.c_str(), precision_name(p), static_cast<long long>(r.layers[2]),
      static_cast<long long>(r.layers[1]), static_cast<long long>(r.layers[0]),
      static_cast<double>(r.bytes_in) / 1e6, static_cast<double>(r.bytes_out) / 1e6);
  return Status::ok();
}

duet::cli::CommandRegistrar registrar(
    "quantize", "Write a bf16 / int8 quantised copy of a model directory",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<QuantizeArgs>();
      sub.add_option("--model", a->model, "model directory (config.json + model.safetensors)")
          ->required();
      sub.add_option("--precision", a->precision, "bf16 | int8")->required();
      sub.add_option("--out", a->out, "output model directory (created)")->required();
      return [a]() {
        Status st = run_quantize(*a);
        if (!st.is_ok()) {
          std::fprintf(stderr, "duet quantize: %s\n", st.to_string().c_str());
          return 1;
        }
        return 0;
      };
    });

}  // namespace

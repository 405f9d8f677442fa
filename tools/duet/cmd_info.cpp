// duet info [--json] [--no-peak] [--threads N]
// What this machine offers duet: the CPU (vendor, model, instruction sets in hardware and after
// DUET_MAX_ISA), what oneDNN and Highway dispatch to, which precisions run here (and why not),
// what `--precision auto` picks, the measured FP32 FMA peak, and the GPUs the cuda backend sees
// (name, SMs, memory, compute capability; "none" with the reason, e.g. a build without CUDA).
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "backends/gpu_devices.h"
#include "bench/peak.h"
#include "command.h"
#include "duet/cpu_features.h"
#include "duet/cpu_load.h"

namespace {

int run_info(bool json, bool no_peak, int threads) {
  auto ci = duet::cpu_info();
  if (!ci.is_ok()) {
    std::fprintf(stderr, "error: %s\n", ci.status().message().c_str());
    return 2;
  }
  const duet::CpuInfo& c = **ci;
  const duet::ThreadChoice tc = duet::choose_threads(threads);
  threads = tc.threads;
  nlohmann::ordered_json j;
  j["cpu"] = duet::cpu_info_json(c);
  nlohmann::ordered_json prec = nlohmann::ordered_json::object();
  for (duet::Precision p :
       {duet::Precision::kF32, duet::Precision::kBF16, duet::Precision::kInt8}) {
    const duet::Status s = duet::cpu_precision_support(p, c);
    prec[duet::precision_name(p)] = s.is_ok() ? "available" : s.message();
  }
  std::string why;
  prec["auto"] = duet::precision_name(duet::cpu_auto_precision(c, &why));
  prec["auto_reason"] = why;
  j["precisions"] = prec;
  j["threads"] = {{"default", tc.threads},
                  {"cpus", tc.cpus},
                  {"busy_elsewhere", tc.busy_other},
                  {"explicit", tc.user_set},
                  {"reason", tc.reason}};
  if (!no_peak) {
    const duet::bench::FmaPeak pk = duet::bench::measure_fma_peak(threads);
    j["fma_peak"] = {{"isa", pk.isa},
                     {"gflops_1_thread", pk.gflops_1t},
                     {"gflops_all_threads", pk.gflops_nt},
                     {"threads", pk.threads}};
  }
  const duet::GpuReport gpus = duet::cuda_devices();
  nlohmann::ordered_json gj = {{"cuda_built", gpus.compiled},
                               {"runtime", gpus.runtime},
                               {"driver", gpus.driver},
                               {"devices", nlohmann::ordered_json::array()}};
  for (const duet::GpuDevice& d : gpus.devices)
    gj["devices"].push_back(
        {{"index", d.index},
         {"name", d.name},
         {"sms", d.sms},
         {"memory_bytes", d.memory_bytes},
         {"compute_capability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor)},
         {"clock_mhz", d.clock_mhz},
         {"memory_clock_mhz", d.memory_clock_mhz}});
  if (gpus.devices.empty()) gj["none"] = gpus.why_none;
  j["gpus"] = gj;
  if (json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("cpu        %s\n", c.model_name.c_str());
  std::printf("vendor     %s, family %d model %d stepping %d, %d cpus\n", c.vendor.c_str(),
              c.family, c.model, c.stepping, c.logical_cpus);
  std::printf("hardware   %s\n", c.hardware.summary().c_str());
  std::printf("cap        DUET_MAX_ISA=%s%s%s\n", duet::isa_cap_name(c.cap),
              c.onednn_cap.empty() ? "" : ", ONEDNN_MAX_CPU_ISA=", c.onednn_cap.c_str());
  std::printf("usable     %s\n", c.usable.summary().c_str());
  std::printf("oneDNN     %s\n", c.onednn_isa.c_str());
  std::printf("Highway    %s\n", c.hwy_target.c_str());
  for (auto& [name, v] : prec.items())
    std::printf("%-10s %s\n", name == "auto_reason" ? "" : name.c_str(),
                v.get<std::string>().c_str());
  std::printf("threads    %s\n", tc.reason.c_str());
  if (j.contains("fma_peak"))
    std::printf("FMA peak   %.1f GFLOP/s on 1 thread, %.1f on %d (%s)\n",
                j["fma_peak"]["gflops_1_thread"].get<double>(),
                j["fma_peak"]["gflops_all_threads"].get<double>(), threads,
                j["fma_peak"]["isa"].get<std::string>().c_str());
  if (gpus.devices.empty()) std::printf("gpu        none: %s\n", gpus.why_none.c_str());
  for (const duet::GpuDevice& d : gpus.devices)
    std::printf(
        "gpu %-6d %s, %d SMs, %.1f GiB, compute capability %d.%d, %d MHz (CUDA runtime "
        "%s, driver %s)\n",
        d.index, d.name.c_str(), d.sms, static_cast<double>(d.memory_bytes) / (1 << 30), d.cc_major,
        d.cc_minor, d.clock_mhz, gpus.runtime.c_str(), gpus.driver.c_str());
  return 0;
}

duet::cli::CommandRegistrar registrar(
    "info", "What this machine offers: CPU, instruction sets, dispatch, precisions, FMA peak, GPUs",
    [](CLI::App& sub) -> std::function<int()> {
      auto json = std::make_shared<bool>(false);
      auto no_peak = std::make_shared<bool>(false);
      auto threads = std::make_shared<int>(0);
      sub.add_flag("--json", *json, "print JSON");
      sub.add_flag("--no-peak", *no_peak, "skip the FMA peak measurement (about 2 s)");
      sub.add_option("--threads", *threads,
                     "threads for the peak measurement (default: duet's choice, see below)")
          ->check(CLI::Range(1, 4096));
      return [json, no_peak, threads]() { return run_info(*json, *no_peak, *threads); };
    });

}  // namespace

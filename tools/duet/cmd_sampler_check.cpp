// duet sampler-check FIXTURE.safetensors... — replays diffusers golden sampler trajectories with
// duet's samplers and the analytic Gaussian denoiser; exit 0 only if every file passes.
#include <cstdio>
#include <string>
#include <vector>

#include "command.h"
#include "diffusion/sampler_check.h"

namespace {

int run_sampler_check(const std::vector<std::string>& files, bool quiet) {
  int passed = 0, failed = 0, errors = 0;
  for (const auto& path : files) {
    auto r = duet::diffusion::check_sampler_fixture(path);
    if (!r) {
      std::printf("ERROR %s\n", r.status().to_string().c_str());
      ++errors;
      continue;
    }
    const auto& c = *r;
    std::printf("%s  [%s, %d calls]\n", c.file.c_str(), c.description.c_str(), c.num_calls);
    if (!quiet) {
      for (size_t k = 0; k < c.calls.size(); ++k)
        std::printf("  call %03zu  t=%9.3f  step max_abs=%.3e rel=%.3e  e2e max_abs=%.3e\n", k,
                    c.calls[k].t, c.calls[k].step_abs, c.calls[k].step_rel, c.calls[k].e2e_abs);
    }
    std::printf("  step-wise   max_abs=%.3e max_rel=%.3e (tol %.0e*(1+|ref|))  %s\n",
                c.step_max_abs, c.step_max_rel, c.step_tol_rel, c.step_pass ? "PASS" : "FAIL");
    std::printf("  end-to-end  final max_abs=%.3e (tol %.3e)  %s\n", c.e2e_max_abs, c.e2e_tol,
                c.e2e_pass ? "PASS" : "FAIL");
    for (const auto& p : c.problems) std::printf("  problem: %s\n", p.c_str());
    std::printf("%s %s\n", c.pass() ? "PASS" : "FAIL", c.file.c_str());
    (c.pass() ? passed : failed)++;
  }
  std::printf("sampler-check: %d passed, %d failed, %d unreadable (of %zu files)\n", passed, failed,
              errors, files.size());
  return (failed == 0 && errors == 0 && !files.empty()) ? 0 : 1;
}

static duet::cli::CommandRegistrar registrar(
    "sampler-check", "Replay golden sampler fixtures (diffusers trajectories) and compare",
    [](CLI::App& sub) -> std::function<int()> {
      auto files = std::make_shared<std::vector<std::string>>();
      auto quiet = std::make_shared<bool>(false);
      sub.add_option("fixtures", *files, "fixture .safetensors files")->required();
      sub.add_flag("-q,--quiet", *quiet, "only print per-file summaries");
      return [files, quiet]() { return run_sampler_check(*files, *quiet); };
    });

}  // namespace

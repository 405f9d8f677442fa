// Refiner schedule, refine-steps parsing and PNG metadata for generate().
#include <algorithm>
#include <charconv>
#include <string>
#include <vector>

#include "duet/pipeline.h"

namespace duet {
namespace {

std::string short_float(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), static_cast<float>(v));
  return std::string(buf, res.ptr);
}

}  // namespace

Result<std::vector<int>> parse_refine_steps(const std::string& s) {
  std::vector<int> out;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    while (i < n && s[i] == ' ') ++i;
    const size_t b = i;
    while (i < n && s[i] != ',') ++i;
    size_t e = i;
    while (e > b && s[e - 1] == ' ') --e;
    const std::string tok = s.substr(b, e - b);
    int v = 0;
    const auto res = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (tok.empty() || res.ec != std::errc() || res.ptr != tok.data() + tok.size())
      return invalid_argument("refine steps: '" + tok + "' is not an integer (expected a list " +
                              "like 3,6,9)");
    if (v < 1) return invalid_argument("refine steps are 1-based, got " + tok);
    out.push_back(v);
    if (i < n) ++i;  // ','
  }
  if (out.empty()) return invalid_argument("refine steps: empty list (expected e.g. 3,6,9)");
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    return invalid_argument("refine steps: duplicate entries in '" + s + "'");
  return out;
}

Result<std::vector<bool>> refine_schedule(const GenerateParams& p, int num_calls,
                                          int config_refine_every) {
  std::vector<bool> r(std::max(num_calls, 0), false);
  switch (p.refine) {
    case RefineMode::kAll:
      std::fill(r.begin(), r.end(), true);
      break;
    case RefineMode::kNone:
      break;
    case RefineMode::kEvery: {
      const int k = p.refine_every < 0 ? config_refine_every : p.refine_every;
      if (k < 0) return invalid_argument("refine-every must be >= 0, got " + std::to_string(k));
      for (int i = 0; i < num_calls && k > 0; ++i) r[i] = (i + 1) % k == 0;
      break;
    }
    case RefineMode::kSteps:
      for (int s : p.refine_steps) {
        if (s < 1 || s > num_calls)
          return invalid_argument("refine step " + std::to_string(s) + " is outside 1.." +
                                  std::to_string(num_calls) + " (the model calls of " + p.sampler +
                                  " with " + std::to_string(p.steps) + " steps)");
        r[s - 1] = true;
      }
      break;
  }
  return r;
}

std::string refine_description(const GenerateParams& p, int config_refine_every) {
  switch (p.refine) {
    case RefineMode::kAll:
      return "all";
    case RefineMode::kNone:
      return "none";
    case RefineMode::kEvery: {
      const int k = p.refine_every < 0 ? config_refine_every : p.refine_every;
      return k == 0 ? "none" : "every " + std::to_string(k);
    }
    case RefineMode::kSteps: {
      std::string s = "steps ";
      for (size_t i = 0; i < p.refine_steps.size(); ++i) {
        if (i) s += ',';
        s += std::to_string(p.refine_steps[i]);
      }
      return s;
    }
  }
  return "?";
}

ImageParameters image_parameters(const GenerateParams& p, const GenerateResult& r,
                                 const DenoiserInfo& info, int index) {
  ImageParameters ip;
  ip.prompt = p.prompts.empty()       ? std::string()
              : p.prompts.size() == 1 ? p.prompts[0]
                                      : p.prompts[std::min<size_t>(index, p.prompts.size() - 1)];
  ip.negative_prompt = p.negative_prompt;
  ip.set("Steps", std::to_string(p.steps));
  ip.set("Sampler", p.sampler);
  if (p.karras) ip.set("Schedule type", "Karras");
  ip.set("CFG scale", short_float(p.cfg_scale));
  if (p.cfg_sigma_lo >= 0) {
    ip.set("CFG interval", short_float(static_cast<float>(p.cfg_sigma_lo)) + "-" +
                               short_float(static_cast<float>(p.cfg_sigma_hi)));
    ip.set("Guided calls",
           std::to_string(r.guided_evaluations) + "/" + std::to_string(r.model_evaluations));
  }
  if (p.cache.mode != CacheMode::kOff) {
    ip.set("Cache", r.cache);
    ip.set("Cache reused calls", std::to_string(r.cache_skipped_calls.size()) + "/" +
                                     std::to_string(r.model_evaluations));
    ip.set("Backbone blocks",
           std::to_string(r.backbone_blocks_run) + "/" + std::to_string(r.backbone_blocks_total));
  }
  ip.set("Seed", std::to_string(r.seed));
  ip.set("Size", std::to_string(r.width) + "x" + std::to_string(r.height));
  ip.set("Model", info.name);
  ip.set("Refine", refine_description(p, info.refine_every));
  ip.set("RNG", p.rng);
  if (p.eta != 0.0f) ip.set("Eta", short_float(p.eta));
  if (!p.init_image.empty()) ip.set("Denoising strength", short_float(p.strength));
  if (!p.mask.empty()) ip.set("Mask", "latent blend");
  if (p.n > 1) {
    ip.set("Batch size", std::to_string(p.n));
    ip.set("Batch pos", std::to_string(index));
  }
  ip.set("Version", "duet 0.1");
  return ip;
}

}  // namespace duet

// The AUTOMATIC1111 / Forge web UI API (`/sdapi/v1/...`) over duet's request types: A1111-shaped
// bodies -> ImageRequests (A1111's sampler names mapped onto duet's, fields duet cannot honour
// collected and reported in `info`), results -> A1111's response shapes. No HTTP here.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "duet/serve_engine.h"
#include "serve/api.h"
#include "serve/jobs.h"
#include "serve/sync_run.h"

namespace duet::serve {

struct SdRequest {
  bool img2img = false;
  // One request per iteration (n_iter), batch_size images each; iteration k's seed is
  // seed + k * batch_size (A1111's all_seeds for the first image of each batch).
  std::vector<ImageRequest> iterations;
  std::string sampler_name;          // as the client named it
  std::string scheduler;             // "Automatic" or "Karras"
  std::string parameters;            // the request echoed back (JSON object text, images left out)
  std::vector<std::string> ignored;  // "field: why" for fields duet accepted but cannot honour
  bool send_images = true;
};

// A1111 sampler name (or a duet name, case-insensitive; a " Karras" suffix sets karras) -> duet.
struct SdSampler {
  std::string duet;
  bool karras = false;
};
std::variant<SdSampler, ApiError> sd_sampler(const std::string& name, const EngineInfo& info);

std::variant<SdRequest, ApiError> parse_sd_txt2img(const std::string& body,
                                                   const ImageEngine& engine);
std::variant<SdRequest, ApiError> parse_sd_img2img(const std::string& body,
                                                   const ImageEngine& engine);

// {"images": [base64 PNG...], "parameters": {...}, "info": "<JSON text>"} from every
// iteration's (successful) result.
std::string sd_images_json(const SdRequest& r, const std::vector<SyncResult>& results,
                           const EngineInfo& info);

std::string sd_samplers_json(const EngineInfo& info);
std::string sd_schedulers_json();
std::string sd_models_json(const EngineInfo& info);
std::string sd_options_json(const EngineInfo& info);
// POST /sdapi/v1/options: a JSON object; `sd_model_checkpoint` must name the loaded model (duet
// serves one), every other option is accepted and ignored. nullopt = fine.
std::optional<ApiError> sd_set_options(const std::string& body, const EngineInfo& info);
// /sdapi/v1/progress over the server's active jobs (running first) made through sdapi.
std::string sd_progress_json(const std::vector<std::shared_ptr<Job>>& active);

}  // namespace duet::serve

// The JSON edge of the server: request bodies -> typed ImageRequest (with errors that name the
// field), jobs and errors -> JSON text. JSON values leave this file pair only towards the other
// API front ends (openai_edits, sdapi, mcp), which build request objects for
// parse_generation_object.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <variant>

#include "duet/serve_engine.h"
#include "serve/jobs.h"

namespace duet::serve {

struct ApiError {
  int status = 400;
  std::string message;
  std::string param;  // the offending field ("" = none)
  std::string type = "invalid_request_error";
};

// A 400 naming `param` ("" = none), the one constructor every request parser uses.
inline ApiError bad(std::string param, std::string message) {
  ApiError e;
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

struct ParsedGeneration {
  ImageRequest request;
  std::string response_format = "b64_json";
};

// What a route accepts beyond the generation fields.
struct ParseOptions {
  bool img2img = false;             // `image`, `mask` (the caller attaches them) and `strength`
  int default_width = 0;            // the size when none is given (0 = the model's): an init
  int default_height = 0;           // image's own size
  bool defer_engine_check = false;  // the caller runs engine_check() once images are attached
};

// Parses and validates a generation body against the engine (defaults filled in; a random
// seed is drawn here when none, or -1, is given).
std::variant<ParsedGeneration, ApiError> parse_generation(const std::string& body,
                                                          const ImageEngine& engine,
                                                          const ParseOptions& options = {});
// The same for a parsed JSON object (multipart forms and other APIs build one).
std::variant<ParsedGeneration, ApiError> parse_generation_object(const nlohmann::json& j,
                                                                 const ImageEngine& engine,
                                                                 const ParseOptions& options = {});
// The engine's own checks of a complete request (413 for the memory cap), nullopt when fine.
std::optional<ApiError> engine_check(const ImageEngine& engine, const ImageRequest& r);

std::string error_json(const ApiError& e);
// The job as JSON (state, progress, request, seeds, timings, image URLs, error).
std::string job_json(const Job& job);
// The job's progress event payload (SSE): {"state","step","steps"}.
std::string progress_json(const Job& job);
// OpenAI-style images response: {"created", "data": [{"b64_json"}...], "duet": {...}}.
std::string images_json(const Job& job, const std::vector<std::string>& pngs);
std::string models_json(const EngineInfo& info);

std::string base64_encode(const std::string& bytes);

}  // namespace duet::serve

namespace duet::serve {
// PNG of image k of a succeeded job (with the `parameters` text chunk); encoded once, cached.
Result<std::string> job_png(Job& job, int k);
}  // namespace duet::serve

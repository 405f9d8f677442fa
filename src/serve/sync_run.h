// A blocking generation as the HTTP front ends need it: submit a request, wait for it (the
// server cancels it when the client goes away), and get the PNGs or the error with its status.
// The server implements it; the A1111 and MCP front ends call it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "serve/api.h"
#include "serve/jobs.h"

namespace duet::serve {

struct SyncResult {
  int status = 200;               // 200, or the HTTP status of `error`
  ApiError error;                 // when status != 200
  int retry_after_s = 0;          // with 429
  std::shared_ptr<Job> job;       // the finished job (for its request, seeds, timings)
  std::vector<std::string> pngs;  // with 200: one PNG (with `parameters`) per image
};

// `api` labels the job with the front end that made it ("openai", "sdapi", "mcp").
using RunSync = std::function<SyncResult(const ImageRequest& request, const std::string& api)>;

}  // namespace duet::serve

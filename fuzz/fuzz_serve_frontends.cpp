// Fuzzes the request parsers of duet serve's client front ends against the fake engine: the
// first byte picks A1111 txt2img / img2img, the job API's JSON (base64 images), MCP's JSON-RPC
// handler (with a generation stub that answers 503) or the OpenAI edits form (the rest split
// into parts at '\x01'; a part "name\x02content", the part named image gets the bytes after it).
// Invariants: an error is a 4xx naming text that renders as JSON; accepted requests are within
// the engine's limits; MCP always answers a JSON body or 202.
#include <algorithm>

#include "duet/serve_engine.h"
#include "fuzz_util.h"
#include "serve/api.h"
#include "serve/mcp.h"
#include "serve/openai_edits.h"
#include "serve/sdapi.h"

namespace {

void check_request(const duet::ImageRequest& r, const duet::EngineInfo& info) {
  FUZZ_CHECK(r.n >= 1 && r.n <= info.max_n, "n=%d", r.n);
  FUZZ_CHECK(r.width >= info.stride && r.width <= info.max_side && r.width % info.stride == 0);
  FUZZ_CHECK(r.height >= info.stride && r.height <= info.max_side);
  FUZZ_CHECK(r.steps >= 1 && r.steps <= info.max_steps);
  FUZZ_CHECK(r.seed >= 0);
  FUZZ_CHECK(r.strength >= 0 && r.strength <= 1);
  if (r.init_image)
    FUZZ_CHECK(r.init_image->size() == static_cast<size_t>(info.channels) * r.width * r.height);
  if (r.mask) {
    FUZZ_CHECK(r.init_image && r.mask->size() == static_cast<size_t>(r.width) * r.height);
    for (float m : *r.mask) FUZZ_CHECK(m >= 0 && m <= 1);
  }
}

void check_error(const duet::serve::ApiError& e) {
  FUZZ_CHECK(e.status >= 400 && e.status < 500);
  FUZZ_CHECK(!e.message.empty());
  FUZZ_CHECK(!duet::serve::error_json(e).empty());  // throws on invalid UTF-8 -> crash
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet::serve;
  static const auto engine = duet::make_fake_engine();
  const duet::EngineInfo& info = engine->info();
  if (size == 0) return 0;
  const std::string body = duet::fuzz::as_string(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
    case 1: {
      auto r = data[0] % 5 == 0 ? parse_sd_txt2img(body, *engine) : parse_sd_img2img(body, *engine);
      if (auto* e = std::get_if<ApiError>(&r)) return check_error(*e), 0;
      const SdRequest& sd = std::get<SdRequest>(r);
      FUZZ_CHECK(!sd.iterations.empty());
      for (const auto& q : sd.iterations) check_request(q, info);
      FUZZ_CHECK(!sd.parameters.empty());
      return 0;
    }
    case 2: {
      auto r = parse_job_json(body, *engine);
      if (auto* e = std::get_if<ApiError>(&r)) return check_error(*e), 0;
      check_request(std::get<ParsedGeneration>(r).request, info);
      return 0;
    }
    case 3: {
      RunSync stub = [](const duet::ImageRequest&, const std::string&) {
        SyncResult s;
        s.status = 503;
        s.error.status = 503;
        s.error.message = "stub";
        return s;
      };
      const McpReply reply = mcp_handle(body, *engine, stub);
      FUZZ_CHECK(reply.status == 200 || reply.status == 202 || reply.status == 400);
      FUZZ_CHECK((reply.status == 202) == reply.body.empty());
      return 0;
    }
    default: {
      std::vector<FormPart> parts;
      size_t start = 0;
      while (start <= body.size() && parts.size() < 32) {
        size_t end = body.find('\x01', start);
        if (end == std::string::npos) end = body.size();
        const std::string part = body.substr(start, end - start);
        const size_t sep = part.find('\x02');
        FormPart p;
        p.name = part.substr(0, sep);
        if (sep != std::string::npos) p.content = part.substr(sep + 1);
        parts.push_back(std::move(p));
        start = end + 1;
      }
      auto r = parse_edit_form(parts, *engine);
      if (auto* e = std::get_if<ApiError>(&r)) return check_error(*e), 0;
      check_request(std::get<ParsedGeneration>(r).request, info);
      FUZZ_CHECK(std::get<ParsedGeneration>(r).request.init_image != nullptr);
      return 0;
    }
  }
}

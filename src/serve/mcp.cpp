#include "serve/mcp.h"

#include <map>
#include <nlohmann/json.hpp>

#include "serve/api.h"

namespace duet::serve {
namespace {

using nlohmann::json;

// Protocol revisions this server speaks (the answer to initialize echoes the client's when it
// is one of them, else offers the newest).
const char* const kVersions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};

// JSON-RPC error codes.
constexpr int kParseError = -32700, kInvalidRequest = -32600, kMethodNotFound = -32601,
              kInvalidParams = -32602, kInternalError = -32603;

struct RpcError {
  int code;
  std::string message;
  json data;
};

json error_response(const json& id, const RpcError& e) {
  json err = {{"code", e.code}, {"message", e.message}};
  if (!e.data.is_null()) err["data"] = e.data;
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", err}};
}

json tool_schema(const EngineInfo& info) {
  const std::string size = std::to_string(info.width) + "x" + std::to_string(info.height);
  return {{"name", "generate_image"},
          {"title", "Generate an image"},
          {"description", "Generates images from a text prompt with the diffusion model '" +
                              info.model + "' (default size " + size +
                              "). Returns each image as a PNG and the generation parameters "
                              "(including the seed, which reproduces the image)."},
          {"inputSchema",
           {{"type", "object"},
            {"properties",
             {{"prompt", {{"type", "string"}, {"description", "what the image shows"}}},
              {"negative_prompt",
               {{"type", "string"}, {"description", "what the image should not show"}}},
              {"size",
               {{"type", "string"},
                {"description", "WIDTHxHEIGHT, sides multiples of " + std::to_string(info.stride) +
                                    (info.other_sizes ? "" : " (this model: " + size + " only)") +
                                    "; default " + size}}},
              {"steps",
               {{"type", "integer"},
                {"minimum", 1},
                {"maximum", info.max_steps},
                {"description", "denoising steps, default " + std::to_string(info.default_steps)}}},
              {"seed",
               {{"type", "integer"},
                {"minimum", -1},
                {"description", "random seed (-1 or absent: random)"}}},
              {"guidance",
               {{"type", "number"},
                {"minimum", 0},
                {"maximum", 100},
                {"description", "classifier-free guidance scale (1 = none)"}}},
              {"count", {{"type", "integer"}, {"minimum", 1}, {"maximum", info.max_n}}},
              {"sampler", {{"type", "string"}, {"enum", info.samplers}}}}},
            {"required", json::array({"prompt"})},
            {"additionalProperties", false}}}};
}

// tools/call generate_image.
json call_generate(const json& args, const ImageEngine& engine, const RunSync& run, RpcError* err) {
  static const std::map<std::string, std::string> to_duet = {
      {"prompt", "prompt"}, {"negative_prompt", "negative_prompt"},
      {"size", "size"},     {"steps", "steps"},
      {"seed", "seed"},     {"guidance", "cfg_scale"},
      {"count", "n"},       {"sampler", "sampler"}};
  if (!args.is_null() && !args.is_object()) {
    *err = {kInvalidParams, "'arguments' must be an object", nullptr};
    return nullptr;
  }
  json g = json::object();
  if (args.is_object())
    for (const auto& [k, v] : args.items()) {
      auto it = to_duet.find(k);
      if (it == to_duet.end()) {
        *err = {kInvalidParams, "generate_image has no argument '" + k + "'", {{"param", k}}};
        return nullptr;
      }
      g[it->second] = v;
    }
  auto parsed = parse_generation_object(g, engine);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    std::string param = e->param, message = e->message;
    for (const auto& [mcp, duet] : to_duet)
      if (duet != mcp) {
        const std::string from = "'" + duet + "'", to = "'" + mcp + "'";
        for (size_t p = 0; (p = message.find(from, p)) != std::string::npos; p += to.size())
          message.replace(p, from.size(), to);
        if (param == duet) param = mcp;
      }
    *err = {e->status == 413 ? kInternalError : kInvalidParams,
            message,
            {{"param", param.empty() ? json(nullptr) : json(param)}, {"http_status", e->status}}};
    return nullptr;
  }
  const SyncResult out = run(std::get<ParsedGeneration>(parsed).request, "mcp");
  if (out.status != 200) {
    json data = {{"http_status", out.status}, {"type", out.error.type}};
    if (out.retry_after_s > 0) data["retry_after_s"] = out.retry_after_s;
    *err = {kInternalError, out.error.message, data};
    return nullptr;
  }
  json content = json::array();
  for (const std::string& png : out.pngs)
    content.push_back({{"type", "image"}, {"data", base64_encode(png)}, {"mimeType", "image/png"}});
  std::string text;
  {
    std::lock_guard<std::mutex> lock(out.job->mu);
    const auto& o = out.job->output;
    for (size_t k = 0; o && k < o->parameters.size(); ++k)
      text += (k ? "\n\n" : "") + format_parameters(o->parameters[k]);
  }
  content.push_back({{"type", "text"}, {"text", text}});
  return {{"content", content}, {"isError", false}};
}

// One JSON-RPC message; null when it needs no answer (a notification).
json handle_one(const json& m, const ImageEngine& engine, const RunSync& run) {
  // (json::value() would throw on a non-string "jsonrpc": check the type first)
  if (!m.is_object() || !m.contains("jsonrpc") || !m["jsonrpc"].is_string() ||
      m["jsonrpc"] != "2.0" || !m.contains("method") || !m["method"].is_string())
    return error_response(m.is_object() && m.contains("id") ? m["id"] : json(nullptr),
                          {kInvalidRequest, "not a JSON-RPC 2.0 request", nullptr});
  const bool notification = !m.contains("id");
  const json id = notification ? json(nullptr) : m["id"];
  if (!notification && !id.is_string() && !id.is_number_integer())
    return error_response(nullptr,
                          {kInvalidRequest, "'id' must be a string or an integer", nullptr});
  const std::string method = m["method"];
  const json params = m.contains("params") ? m["params"] : json::object();
  if (notification) return nullptr;  // notifications/initialized, cancelled, ...: nothing to do
  RpcError err{0, "", nullptr};
  json result;
  if (method == "initialize") {
    std::string version = kVersions[0];
    if (params.is_object() && params.contains("protocolVersion") &&
        params["protocolVersion"].is_string())
      for (const char* v : kVersions)
        if (params["protocolVersion"] == v) version = v;
    result = {
        {"protocolVersion", version},
        {"capabilities", {{"tools", {{"listChanged", false}}}}},
        {"serverInfo", {{"name", "duet"}, {"title", "duet image server"}, {"version", "0.1"}}},
        {"instructions",
         "Call generate_image to draw images with the model '" + engine.info().model + "'."}};
  } else if (method == "ping") {
    result = json::object();
  } else if (method == "tools/list") {
    result = {{"tools", json::array({tool_schema(engine.info())})}};
  } else if (method == "tools/call") {
    if (!params.is_object() || !params.contains("name") || !params["name"].is_string())
      err = {kInvalidParams, "tools/call needs a tool 'name'", {{"param", "name"}}};
    else if (params["name"] != "generate_image")
      err = {kInvalidParams,
             "unknown tool '" + params["name"].get<std::string>() +
                 "' (this server has generate_image)",
             {{"param", "name"}}};
    else
      result = call_generate(params.contains("arguments") ? params["arguments"] : json(), engine,
                             run, &err);
  } else {
    err = {kMethodNotFound, "method '" + method + "' is not supported", nullptr};
  }
  if (err.code != 0) return error_response(id, err);
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", result}};
}

}  // namespace

McpReply mcp_handle(const std::string& body, const ImageEngine& engine, const RunSync& run) {
  McpReply reply;
  json m = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded()) {
    reply.status = 400;
    reply.body =
        error_response(nullptr, {kParseError, "the body is not valid JSON", nullptr}).dump();
    return reply;
  }
  json out;
  if (m.is_array()) {
    if (m.empty()) {
      reply.status = 400;
      reply.body =
          error_response(nullptr, {kInvalidRequest, "an empty JSON-RPC batch", nullptr}).dump();
      return reply;
    }
    out = json::array();
    for (const json& one : m)
      if (json r = handle_one(one, engine, run); !r.is_null()) out.push_back(std::move(r));
    if (out.empty()) out = nullptr;
  } else {
    out = handle_one(m, engine, run);
  }
  if (out.is_null()) {
    reply.status = 202;
    return reply;
  }
  reply.body = out.dump();
  return reply;
}

}  // namespace duet::serve

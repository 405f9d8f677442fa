// MCP (Model Context Protocol) over the streamable HTTP transport at POST /mcp: JSON-RPC 2.0
// requests (single or batched) answered with application/json; notifications get 202. Methods:
// initialize, ping, tools/list, tools/call with one tool, generate_image. Stateless: no session
// id, no server-initiated stream (GET /mcp is 405, which the transport allows). No HTTP here.
#pragma once

#include <string>

#include "duet/serve_engine.h"
#include "serve/sync_run.h"

namespace duet::serve {

struct McpReply {
  int status = 200;  // 200 with a JSON body, 202 (notifications only) with none, 400 parse error
  std::string body;
};

McpReply mcp_handle(const std::string& body, const ImageEngine& engine, const RunSync& run);

}  // namespace duet::serve

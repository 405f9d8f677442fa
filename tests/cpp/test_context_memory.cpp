// The workspace memory cap (ContextOptions::max_workspace_bytes,
// `--max-memory`): the planned workspace equals the measured one,
// Context::create refuses an over-cap batch with kResourceExhausted before
// allocating, the measuring Workspace never aborts, `duet generate
// --max-memory` fails with the message, and the server refuses an over-cap
// request with 413.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/workspace.h"
#include "duet/model.h"
#include "duet/pipeline.h"
#include "duet/serve.h"
#include "duet/serve_engine.h"
#include "model/context_state.h"
#include "test_serve_util.h"
#include "test_util.h"

namespace duet {
namespace {

const std::string kModel = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";

std::shared_ptr<const Model> load_or_null(const std::string& dir = kModel) {
  if (!std::filesystem::exists(dir + "/model.safetensors")) return nullptr;
  auto m = Model::load(dir);
  return m.is_ok() ? std::move(m).value() : nullptr;
}

TEST(ContextMemory, WorkspaceMeasuringNeverAborts) {
  Workspace ws;
  ws.set_limit(1 << 20);
  EXPECT_NE(ws.alloc(1000), nullptr);
  try {
    ws.alloc(1 << 20);  // 4 MiB > the 1 MiB limit: refused before allocating
    FAIL() << "no exception";
  } catch (const WorkspaceExhausted& e) {
    EXPECT_TRUE(e.over_limit);
    EXPECT_GT(e.total_bytes, size_t{1} << 20);
  }
  Workspace huge;  // unlimited, but the allocator cannot satisfy 2^60 floats
  EXPECT_THROW(huge.alloc(int64_t{1} << 60), WorkspaceExhausted);
  EXPECT_EQ(huge.peak_bytes(),
            0u);  // nothing was counted for the failed allocation
}

TEST(ContextMemory, EstimateMatchesTheMeasuredWorkspace) {
  auto model = load_or_null();
  if (!model) GTEST_SKIP() << "no " << kModel;
  for (auto [b, h, w] : {std::tuple{1, 28, 28}, {3, 28, 28}, {2, 16, 32}, {4, 40, 24}}) {
    ContextOptions co;
    co.max_batch = b;
    co.height = h;
    co.width = w;
    auto ctx = Context::create(model, co);
    ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
    EXPECT_EQ(static_cast<size_t>(plan_workspace_bytes(model->impl(), b, h, w)),
              (*ctx)->workspace_bytes())
        << "batch " << b << " at " << w << "x" << h;
    auto est = Context::estimate_bytes(*model, co);
    ASSERT_TRUE(est.is_ok());
    // The estimate covers the workspace plus the outputs (4 image-sized
    // tensors).
    EXPECT_GE(*est, static_cast<int64_t>((*ctx)->workspace_bytes()) + 4 * b * h * w * 4);
  }
  ContextOptions bad;
  bad.height = 30;  // not a multiple of 4
  EXPECT_EQ(Context::estimate_bytes(*model, bad).status().code(), StatusCode::kInvalidArgument);
}

// SLAB blocks add their kv / z scratch, CSWin blocks their gathered windows to the backbone's
// workspace: the plan must know them.
TEST(ContextMemory, EstimateMatchesTheMeasuredWorkspaceWithSlabAndCswinAttention) {
  for (const char* name : {"tiny-slab", "awkward-hybrid", "tiny-cswin", "awkward-cswin"}) {
    auto model = load_or_null(std::string(DUET_SOURCE_DIR) + "/tests/fixtures/" + name);
    ASSERT_TRUE(model) << name;
    for (auto [b, h, w] : {std::tuple{1, 28, 28}, {3, 12, 20}, {2, 16, 32}}) {
      ContextOptions co;
      co.max_batch = b;
      co.height = h;
      co.width = w;
      auto ctx = Context::create(model, co);
      if (!ctx.is_ok()) continue;  // a size this config's refiner stride does not allow
      EXPECT_EQ(static_cast<size_t>(plan_workspace_bytes(model->impl(), b, h, w)),
                (*ctx)->workspace_bytes())
          << name << " batch " << b << " at " << w << "x" << h;
    }
  }
}

TEST(ContextMemory, CreateRefusesOverTheCap) {
  auto model = load_or_null();
  if (!model) GTEST_SKIP() << "no " << kModel;
  ContextOptions co;
  co.max_batch = 8;
  auto need = Context::estimate_bytes(*model, co);
  ASSERT_TRUE(need.is_ok());
  co.max_workspace_bytes = *need - 1;
  auto ctx = Context::create(model, co);
  ASSERT_FALSE(ctx.is_ok());
  EXPECT_EQ(ctx.status().code(), StatusCode::kResourceExhausted);
  const std::string msg = ctx.status().message();
  EXPECT_NE(msg.find("batch 8 × 28×28 needs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("limit (--max-memory)"), std::string::npos) << msg;
  co.max_workspace_bytes = *need;  // exactly enough
  auto ok = Context::create(model, co);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
}

TEST(ContextMemory, GenerateCliMaxMemory) {
  if (!load_or_null()) GTEST_SKIP() << "no " << kModel;
  testing::TempDir tmp;
  const std::string base = std::string(DUET_CLI_PATH) + " generate --model " +
                           testing::shell_quote(kModel) + " -q -p shoe --steps 1 -n 8 -o " +
                           testing::shell_quote(tmp.file("x.png"));
  auto r = testing::run_command(base + " --max-memory 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("over the 1.0 MiB limit (--max-memory)"), std::string::npos) << r.err;
  auto ok = testing::run_command(base + " --max-memory 512");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

#ifdef DUET_TEST_HAVE_HTTP
TEST(ContextMemory, ServerRefusesOverCapRequestsUpFront) {
  if (!load_or_null()) GTEST_SKIP() << "no " << kModel;
  auto den = load_denoiser(kModel, 2);
  ASSERT_TRUE(den.is_ok());
  auto one = (*den)->estimate_bytes(2, 28, 28);  // n = 1 with guidance
  ASSERT_TRUE(one.is_ok());
  PipelineEngineOptions po;
  po.max_memory_bytes = *one + 1;  // fits n = 1, not n = 4 (batch 8)
  auto engine = make_pipeline_engine(std::move(den).value(), po);
  ServeOptions so;
  so.port = 0;
  auto server = Server::start(std::move(engine), so);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  httplib::Client c("127.0.0.1", (*server)->port());
  c.set_read_timeout(60, 0);
  const auto big =
      c.Post("/v1/images/generations",
             R"({"prompt":"a shoe","n":4,"steps":1,"size":"28x28","seed":1})", "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  const auto j = testing::parse_or_null(big->body);
  ASSERT_TRUE(j.is_object()) << big->body;
  EXPECT_EQ(j["error"]["type"], "resource_limit_error");
  EXPECT_EQ(j["error"]["param"], "n");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("limit (--max-memory)"),
            std::string::npos);
  const auto small =
      c.Post("/v1/images/generations",
             R"({"prompt":"a shoe","n":1,"steps":1,"size":"28x28","seed":1})", "application/json");
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 200) << small->body;
  const auto met = c.Get("/metrics");
  ASSERT_TRUE(met);
  EXPECT_EQ(testing::metric_value(met->body, "duet_memory_refused_total"), 1);
  EXPECT_EQ(testing::metric_value(met->body, "duet_memory_limit_bytes"),
            static_cast<double>(po.max_memory_bytes));
  (*server)->shutdown(std::chrono::milliseconds(1000));
}
#endif

}  // namespace
}  // namespace duet

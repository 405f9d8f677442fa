// The A1111 / Forge API (/sdapi/v1/...) and MCP (/mcp) against a real server with the fake
// engine: A1111-shaped requests with its sampler names, responses checked field by field,
// JSON-RPC over the streamable HTTP transport, and bad inputs answered 400 naming the field.
#include <gtest/gtest.h>

#include <set>

#include "test_serve_img_util.h"

#ifdef DUET_TEST_HAVE_HTTP

namespace duet::testing {
namespace {

json post_json(httplib::Client& c, const std::string& path, const json& body, int want = 200) {
  auto r = c.Post(path, body.dump(), "application/json");
  EXPECT_TRUE(r) << path;
  if (!r) return json();
  EXPECT_EQ(r->status, want) << path << " " << body.dump().substr(0, 300) << " -> " << r->body;
  return parse_or_null(r->body);
}

TEST(ServeSdapi, Txt2ImgAnswersLikeA1111) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  const json req = {{"prompt", "a red coat"},
                    {"negative_prompt", "blurry"},
                    {"steps", 4},
                    {"cfg_scale", 5.5},
                    {"seed", 1234},
                    {"batch_size", 2},
                    {"n_iter", 2},
                    {"width", 16},
                    {"height", 24},
                    {"sampler_name", "Euler a"},
                    {"scheduler", "Karras"},
                    {"restore_faces", true},
                    {"subseed_strength", 0},
                    {"s_noise", 1},
                    {"override_settings", json::object()}};
  json j = post_json(*c, "/sdapi/v1/txt2img", req);
  ASSERT_TRUE(j.is_object());
  ASSERT_EQ(j["images"].size(), 4u);  // batch_size x n_iter
  const PngImage img = png_of(unb64(j["images"][0]));
  EXPECT_EQ(img.width, 16);
  EXPECT_EQ(img.height, 24);
  const std::string* text = img.find_text("parameters");
  ASSERT_NE(text, nullptr);
  EXPECT_NE(text->find("Sampler: euler_a"), std::string::npos) << *text;
  EXPECT_NE(text->find("Schedule type: Karras"), std::string::npos) << *text;
  EXPECT_EQ(j["parameters"]["prompt"], "a red coat");
  EXPECT_EQ(j["parameters"]["sampler_name"], "Euler a");
  EXPECT_EQ(j["parameters"]["seed"], 1234);
  ASSERT_TRUE(j["info"].is_string());
  json info = parse_or_null(j["info"]);
  EXPECT_EQ(info["prompt"], "a red coat");
  EXPECT_EQ(info["negative_prompt"], "blurry");
  EXPECT_EQ(info["seed"], 1234);
  // duet: images of one batch share its seed; iteration k uses seed + k * batch_size.
  EXPECT_EQ(info["all_seeds"], json::array({1234, 1234, 1236, 1236}));
  EXPECT_EQ(info["all_prompts"].size(), 4u);
  EXPECT_EQ(info["infotexts"].size(), 4u);
  EXPECT_EQ(info["infotexts"][0], *text);
  EXPECT_EQ(info["steps"], 4);
  EXPECT_EQ(info["cfg_scale"], 5.5);
  EXPECT_EQ(info["width"], 16);
  EXPECT_EQ(info["height"], 24);
  EXPECT_EQ(info["batch_size"], 2);
  EXPECT_EQ(info["sampler_name"], "Euler a");
  EXPECT_EQ(info["sd_model_name"], "fake-duet");
  EXPECT_EQ(info["duet"]["sampler"], "euler_a");
  EXPECT_EQ(info["duet"]["karras"], true);
  // Fields duet cannot honour are reported; harmless defaults are not.
  EXPECT_EQ(info["duet"]["ignored"],
            json::array({"restore_faces: not supported by duet (ignored)"}));

  // The same images as the OpenAI route with the same inputs.
  auto g = c->Post("/v1/images/generations",
                   R"({"prompt":"a red coat","negative_prompt":"blurry","steps":4,"cfg_scale":5.5,)"
                   R"("seed":1234,"n":2,"size":"16x24","sampler":"euler_a","karras":true})",
                   "application/json");
  ASSERT_EQ(g->status, 200) << g->body;
  EXPECT_EQ(parse_or_null(g->body)["data"][1]["b64_json"], j["images"][1]);

  // Old-style "... Karras" names and sampler_index; send_images false.
  json k = post_json(*c, "/sdapi/v1/txt2img",
                     {{"prompt", "a red coat"},
                      {"negative_prompt", "blurry"},
                      {"steps", 4},
                      {"cfg_scale", 5.5},
                      {"seed", 1234},
                      {"batch_size", 2},
                      {"width", 16},
                      {"height", 24},
                      {"sampler_index", "Euler a Karras"}});
  EXPECT_EQ(k["images"][1], j["images"][1]);
  json none = post_json(
      *c, "/sdapi/v1/txt2img",
      {{"prompt", "x"}, {"steps", 2}, {"width", 16}, {"height", 16}, {"send_images", false}});
  EXPECT_EQ(none["images"].size(), 0u);
}

TEST(ServeSdapi, Img2ImgAndInpainting) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string png = gradient_png(16, 16, 3);
  json req = {{"prompt", "a red coat"},
              {"steps", 4},
              {"seed", 9},
              {"sampler_name", "DPM++ 2M"},
              {"init_images", {"data:image/png;base64," + b64(png)}},
              {"denoising_strength", 0.4},
              {"resize_mode", 0},
              {"mask_blur", 4},
              {"inpainting_fill", 1}};
  json j = post_json(*c, "/sdapi/v1/img2img", req);
  ASSERT_EQ(j["images"].size(), 1u);
  json info = parse_or_null(j["info"]);
  EXPECT_EQ(info["denoising_strength"], 0.4);
  EXPECT_EQ(info["width"], 16);  // the init image's size
  EXPECT_TRUE(j["parameters"]["init_images"].is_null());
  EXPECT_EQ(info["duet"]["ignored"],
            json::array({"inpainting_fill: not supported by duet (ignored)"}));
  // Same as the OpenAI edits route.
  httplib::MultipartFormDataItems form = {
      file_part("image", png), text_part("prompt", "a red coat"), text_part("steps", "4"),
      text_part("seed", "9"), text_part("strength", "0.4")};
  auto e = c->Post("/v1/images/edits", form);
  ASSERT_EQ(e->status, 200) << e->body;
  EXPECT_EQ(parse_or_null(e->body)["data"][0]["b64_json"], j["images"][0]);
  // A1111 masks: white = inpaint (the same pixels as OpenAI's transparent = edit).
  req["mask"] = b64(make_png(16, 16, 1, [](int x, int, int) { return x < 8 ? 255 : 0; }));
  json m = post_json(*c, "/sdapi/v1/img2img", req);
  EXPECT_NE(m["images"][0], j["images"][0]);
  form.push_back(file_part("mask", make_png(16, 16, 4, [](int x, int, int ch) {
                             return ch < 3 ? 255 : (x < 8 ? 0 : 255);
                           })));
  auto em = c->Post("/v1/images/edits", form);
  ASSERT_EQ(em->status, 200) << em->body;
  EXPECT_EQ(parse_or_null(em->body)["data"][0]["b64_json"], m["images"][0]);
  // inpainting_mask_invert flips it.
  req["mask"] = b64(make_png(16, 16, 1, [](int x, int, int) { return x < 8 ? 0 : 255; }));
  req["inpainting_mask_invert"] = 1;
  EXPECT_EQ(post_json(*c, "/sdapi/v1/img2img", req)["images"][0], m["images"][0]);
}

TEST(ServeSdapi, InfoRoutes) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  json samplers = parse_or_null(c->Get("/sdapi/v1/samplers")->body);
  ASSERT_TRUE(samplers.is_array());
  std::set<std::string> names;
  for (const json& e : samplers) {
    names.insert(e["name"].get<std::string>());
    EXPECT_TRUE(e["aliases"].is_array());
    EXPECT_TRUE(e["options"].is_object());
  }
  for (const char* n : {"Euler a", "Euler", "DPM++ 2M", "Heun", "DDIM", "UniPC"})
    EXPECT_TRUE(names.count(n)) << n;
  json models = parse_or_null(c->Get("/sdapi/v1/sd-models")->body);
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0]["title"], "fake-duet");
  EXPECT_EQ(models[0]["model_name"], "fake-duet");
  json opts = parse_or_null(c->Get("/sdapi/v1/options")->body);
  EXPECT_EQ(opts["sd_model_checkpoint"], "fake-duet");
  EXPECT_EQ(parse_or_null(c->Get("/sdapi/v1/schedulers")->body)[1]["label"], "Karras");
  post_json(*c, "/sdapi/v1/options",
            {{"sd_model_checkpoint", "fake-duet"}, {"CLIP_stop_at_last_layers", 2}});
  json bad = post_json(*c, "/sdapi/v1/options", {{"sd_model_checkpoint", "sdxl"}}, 400);
  EXPECT_EQ(bad["error"]["param"], "sd_model_checkpoint");
  json idle = parse_or_null(c->Get("/sdapi/v1/progress")->body);
  EXPECT_EQ(idle["progress"], 0);
  EXPECT_EQ(idle["state"]["job_count"], 0);
  EXPECT_TRUE(idle["current_image"].is_null());
}

TEST(ServeSdapi, ProgressAndInterrupt) {
  FakeEngineOptions f;
  f.step_ms = 20;
  auto s = TestServer::start({}, f);
  ASSERT_TRUE(s);
  json result;
  std::thread client([&] {
    auto c = s->client();
    result = post_json(
        *c, "/sdapi/v1/txt2img",
        {{"prompt", "slow"}, {"steps", 200}, {"width", 16}, {"height", 16}, {"n_iter", 3}},
        503);  // interrupted before any image
  });
  auto c = s->client();
  json p;
  for (int i = 0; i < 200; ++i) {
    p = parse_or_null(c->Get("/sdapi/v1/progress")->body);
    if (p["state"]["sampling_step"].get<int>() >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(p["progress"].get<double>(), 0.0) << p.dump();
  EXPECT_LT(p["progress"].get<double>(), 1.0);
  EXPECT_EQ(p["state"]["sampling_steps"], 200);
  EXPECT_EQ(p["state"]["job_count"], 1);
  EXPECT_GT(p["eta_relative"].get<double>(), 0.0);
  EXPECT_EQ(c->Post("/sdapi/v1/interrupt", "", "application/json")->status, 200);
  client.join();
  EXPECT_EQ(result["error"]["type"], "cancelled") << result.dump();
}

TEST(ServeSdapi, BadInputsName400Fields) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string png = b64(gradient_png(16, 16, 3));
  auto expect = [&](const std::string& path, const json& body, const std::string& param) {
    json j = post_json(*c, path, body, 400);
    EXPECT_EQ(j["error"]["param"], param) << body.dump().substr(0, 200) << " -> " << j.dump();
  };
  const json base = {{"prompt", "x"}, {"steps", 2}, {"width", 16}, {"height", 16}};
  auto with = [&](json b, const std::string& k, json v) {
    b[k] = std::move(v);
    return b;
  };
  expect("/sdapi/v1/txt2img", with(base, "sampler_name", "Euler q"), "sampler_name");
  expect("/sdapi/v1/txt2img", with(base, "sampler_index", "k_nope"), "sampler_index");
  expect("/sdapi/v1/txt2img", with(base, "sampler_name", 3), "sampler_name");
  expect("/sdapi/v1/txt2img", with(with(base, "sampler_name", "DDIM"), "scheduler", "Karras"),
         "scheduler");
  expect("/sdapi/v1/txt2img", with(base, "steps", 0), "steps");
  expect("/sdapi/v1/txt2img", with(base, "cfg_scale", "high"), "cfg_scale");
  expect("/sdapi/v1/txt2img", with(base, "width", 17), "width");
  expect("/sdapi/v1/txt2img", with(base, "batch_size", 0), "batch_size");
  expect("/sdapi/v1/txt2img", with(base, "batch_size", 65), "batch_size");
  // Found by fuzz_serve_frontends (fuzz/repro/serve_frontends-float-batch-size-2p63.json): a
  // float count beyond int64's range reached a double -> int64 cast (undefined) before the range
  // check; now a 400 naming the field.
  expect("/sdapi/v1/txt2img", with(base, "batch_size", 9223372036854775808.02), "batch_size");
  expect("/sdapi/v1/txt2img", with(base, "n_iter", -1e300), "n_iter");
  expect("/sdapi/v1/txt2img", with(base, "batch_size", 1.5), "batch_size");
  expect("/sdapi/v1/txt2img", with(with(base, "batch_size", 8), "n_iter", 9), "n_iter");
  expect("/sdapi/v1/txt2img", with(base, "prompt", ""), "prompt");
  expect("/sdapi/v1/txt2img", with(base, "send_images", "yes"), "send_images");
  const json i2i = with(base, "init_images", json::array({png}));
  expect("/sdapi/v1/img2img", base, "init_images");
  expect("/sdapi/v1/img2img", with(base, "init_images", json::array()), "init_images");
  expect("/sdapi/v1/img2img", with(base, "init_images", json::array({b64("not a png")})),
         "init_images");
  expect("/sdapi/v1/img2img", with(base, "init_images", json::array({"***"})), "init_images");
  expect("/sdapi/v1/img2img", with(with(base, "width", 24), "init_images", json::array({png})),
         "init_images");
  expect("/sdapi/v1/img2img", with(i2i, "denoising_strength", 1.5), "denoising_strength");
  expect("/sdapi/v1/img2img", with(i2i, "denoising_strength", -1), "denoising_strength");
  expect("/sdapi/v1/img2img", with(i2i, "mask", "!!"), "mask");
  expect("/sdapi/v1/img2img", with(i2i, "mask", b64(gradient_png(8, 8, 1))), "mask");
  auto r = c->Post("/sdapi/v1/txt2img", "{not json", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(c->Get("/healthz")->status, 200);
}

// --- MCP -------------------------------------------------------------------------------------

json rpc(httplib::Client& c, const json& msg, int want_status = 200) {
  httplib::Headers h = {{"Accept", "application/json, text/event-stream"}};
  auto r = c.Post("/mcp", h, msg.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, want_status) << msg.dump() << " -> " << r->body;
  return r->body.empty() ? json() : parse_or_null(r->body);
}

TEST(ServeMcp, InitializeListAndCall) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  json init = rpc(*c, {{"jsonrpc", "2.0"},
                       {"id", 1},
                       {"method", "initialize"},
                       {"params",
                        {{"protocolVersion", "2025-03-26"},
                         {"capabilities", json::object()},
                         {"clientInfo", {{"name", "t"}, {"version", "1"}}}}}});
  EXPECT_EQ(init["id"], 1);
  EXPECT_EQ(init["result"]["protocolVersion"], "2025-03-26");
  EXPECT_TRUE(init["result"]["capabilities"].contains("tools"));
  EXPECT_EQ(init["result"]["serverInfo"]["name"], "duet");
  EXPECT_TRUE(
      rpc(*c, {{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}}, 202).is_null());
  json list = rpc(*c, {{"jsonrpc", "2.0"}, {"id", "l"}, {"method", "tools/list"}});
  ASSERT_EQ(list["result"]["tools"].size(), 1u);
  const json& tool = list["result"]["tools"][0];
  EXPECT_EQ(tool["name"], "generate_image");
  EXPECT_EQ(tool["inputSchema"]["required"], json::array({"prompt"}));
  for (const char* p : {"prompt", "negative_prompt", "size", "steps", "seed", "guidance", "count"})
    EXPECT_TRUE(tool["inputSchema"]["properties"].contains(p)) << p;

  json msg = {{"jsonrpc", "2.0"}, {"id", 2}, {"method", "tools/call"}};
  json args = {{"prompt", "a red coat"}, {"size", "16x24"}, {"steps", 4}, {"seed", 77}};
  args["guidance"] = 2.5;
  args["count"] = 2;
  msg["params"] = {{"name", "generate_image"}, {"arguments", args}};
  json call = rpc(*c, msg);
  const json& content = call["result"]["content"];
  ASSERT_EQ(content.size(), 3u) << call.dump().substr(0, 300);
  EXPECT_EQ(content[0]["type"], "image");
  EXPECT_EQ(content[0]["mimeType"], "image/png");
  EXPECT_EQ(content[2]["type"], "text");
  EXPECT_NE(content[2]["text"].get<std::string>().find("Seed: 77"), std::string::npos);
  EXPECT_EQ(png_of(unb64(content[0]["data"])).height, 24);
  EXPECT_EQ(call["result"]["isError"], false);
  auto g =
      c->Post("/v1/images/generations",
              R"({"prompt":"a red coat","size":"16x24","steps":4,"seed":77,"cfg_scale":2.5,"n":2})",
              "application/json");
  EXPECT_EQ(parse_or_null(g->body)["data"][1]["b64_json"], content[1]["data"]);

  // Batches: answers for requests only.
  json batch = rpc(*c, json::array({{{"jsonrpc", "2.0"}, {"id", 5}, {"method", "ping"}},
                                    {{"jsonrpc", "2.0"}, {"method", "notifications/cancelled"}}}));
  ASSERT_TRUE(batch.is_array());
  EXPECT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0]["id"], 5);
  // No server stream: GET is 405, which the transport allows.
  EXPECT_EQ(c->Get("/mcp")->status, 405);
}

TEST(ServeMcp, ErrorsAreJsonRpcErrors) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  auto call = [&](const json& args, const std::string& name = "generate_image") {
    return rpc(*c, {{"jsonrpc", "2.0"},
                    {"id", 3},
                    {"method", "tools/call"},
                    {"params", {{"name", name}, {"arguments", args}}}});
  };
  auto expect = [&](const json& r, int code, const std::string& param) {
    EXPECT_EQ(r["id"], 3) << r.dump();
    EXPECT_EQ(r["error"]["code"], code) << r.dump();
    if (!param.empty()) {
      EXPECT_EQ(r["error"]["data"]["param"], param) << r.dump();
    }
  };
  expect(call({{"size", "16x16"}}), -32602, "prompt");
  expect(call({{"prompt", "x"}, {"count", 0}}), -32602, "count");
  expect(call({{"prompt", "x"}, {"guidance", "lots"}}), -32602, "guidance");
  expect(call({{"prompt", "x"}, {"size", "7x7"}}), -32602, "size");
  expect(call({{"prompt", "x"}, {"sampler", "Euler q"}}), -32602, "sampler");
  expect(call({{"prompt", "x"}, {"colour", "red"}}), -32602, "colour");
  expect(call({{"prompt", "x"}}, "draw"), -32602, "name");
  expect(call(json::array()), -32602, "");
  json unknown = rpc(*c, {{"jsonrpc", "2.0"}, {"id", 3}, {"method", "resources/list"}});
  expect(unknown, -32601, "");
  json parse = rpc(*c, json("not an object"), 200);
  EXPECT_EQ(parse["error"]["code"], -32600);
  // A "jsonrpc" that is not a string is an invalid request, not an exception (found by
  // fuzz_serve_frontends: json::value() threw on it).
  for (const json& v : {json(2), json(nullptr), json::array({"2.0"})}) {
    json m = rpc(*c, {{"jsonrpc", v}, {"id", 9}, {"method", "ping"}}, 200);
    EXPECT_EQ(m["error"]["code"], -32600) << v.dump();
  }
  auto r = c->Post("/mcp", "{oops", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(parse_or_null(r->body)["error"]["code"], -32700);
  // A web page of another origin is refused (DNS rebinding).
  httplib::Headers h = {{"Origin", "http://evil.example"}};
  EXPECT_EQ(
      c->Post("/mcp", h, R"({"jsonrpc":"2.0","id":1,"method":"ping"})", "application/json")->status,
      403);
  httplib::Headers local = {{"Origin", "http://localhost:3000"}};
  EXPECT_EQ(
      c->Post("/mcp", local, R"({"jsonrpc":"2.0","id":1,"method":"ping"})", "application/json")
          ->status,
      200);
}

TEST(ServeMcp, ApiKeyAppliesToEveryNewRoute) {
  ServeOptions o;
  o.api_key = "s3cret";
  auto s = TestServer::start(o);
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string ping = R"({"jsonrpc":"2.0","id":1,"method":"ping"})";
  EXPECT_EQ(c->Post("/mcp", ping, "application/json")->status, 401);
  EXPECT_EQ(c->Get("/sdapi/v1/samplers")->status, 401);
  EXPECT_EQ(c->Post("/sdapi/v1/txt2img", "{}", "application/json")->status, 401);
  c->set_bearer_token_auth("s3cret");
  EXPECT_EQ(c->Post("/mcp", ping, "application/json")->status, 200);
  EXPECT_EQ(c->Get("/sdapi/v1/samplers")->status, 200);
}

}  // namespace
}  // namespace duet::testing

#endif

// The same seed through every API gives the same pixels as `duet generate`: the real tiny-demo
// model behind an in-process server, compared with the CLI's PNGs — txt2img through the OpenAI
// route, A1111's txt2img (its sampler names and Karras scheduler) and MCP's generate_image;
// img2img through OpenAI's edits, the job API and A1111's img2img; and inpainting (kept pixels
// are the init image's, masked ones are regenerated).
#include <gtest/gtest.h>

#include <filesystem>

#include "duet/pipeline.h"
#include "test_serve_img_util.h"
#include "test_util.h"

#ifdef DUET_TEST_HAVE_HTTP

namespace duet::testing {
namespace {

const std::string kDir = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";

struct RealServer {
  std::unique_ptr<Server> server;
  std::unique_ptr<httplib::Client> client;
};

std::unique_ptr<RealServer> start_real() {
  auto model = load_denoiser(kDir, 2);
  if (!model.is_ok()) {
    ADD_FAILURE() << model.status().to_string();
    return nullptr;
  }
  ServeOptions o;
  o.port = 0;
  auto s = Server::start(make_pipeline_engine(std::move(model).value()), o);
  if (!s.is_ok()) {
    ADD_FAILURE() << s.status().to_string();
    return nullptr;
  }
  auto rs = std::make_unique<RealServer>();
  rs->server = std::move(s).value();
  rs->client = std::make_unique<httplib::Client>("127.0.0.1", rs->server->port());
  rs->client->set_read_timeout(120, 0);
  return rs;
}

// `duet generate ... -o file` -> the PNG's samples.
std::vector<uint16_t> cli_pixels(const std::string& args, const std::string& out) {
  auto r = run_command(std::string(DUET_CLI_PATH) + " generate --model " + kDir +
                       " --threads 2 -q " + args + " -o " + out);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
  auto img = read_png_file(out);
  EXPECT_TRUE(img.is_ok()) << img.status().to_string();
  return img.is_ok() ? img->samples : std::vector<uint16_t>();
}

std::vector<uint16_t> pixels_b64(const json& v) {
  if (!v.is_string()) {
    ADD_FAILURE() << "no image: " << v.dump().substr(0, 200);
    return {};
  }
  return png_of(unb64(v.get<std::string>())).samples;
}

json post(httplib::Client& c, const std::string& path, const json& body) {
  auto r = c.Post(path, body.dump(), "application/json");
  EXPECT_TRUE(r && r->status == 200) << path << " -> " << (r ? r->body.substr(0, 300) : "none");
  return r && r->status == 200 ? parse_or_null(r->body) : json();
}

class ServeClientsReal : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kDir + "/model.safetensors")) GTEST_SKIP() << "no " << kDir;
    s_ = start_real();
    ASSERT_TRUE(s_);
  }
  httplib::Client& c() { return *s_->client; }
  TempDir tmp_;
  std::unique_ptr<RealServer> s_;
};

TEST_F(ServeClientsReal, Txt2ImgSamePixelsAsTheCli) {
  const std::string prompt = "a dark small bag";
  for (bool karras : {false, true}) {
    SCOPED_TRACE(karras ? "karras" : "default sigmas");
    const auto want =
        cli_pixels("-p '" + prompt + "' --steps 6 --seed 21 --sampler euler --cfg-scale 3" +
                       (karras ? " --karras" : ""),
                   tmp_.file(karras ? "k.png" : "t.png"));
    ASSERT_FALSE(want.empty());
    json g = post(c(), "/v1/images/generations",
                  {{"prompt", prompt},
                   {"steps", 6},
                   {"seed", 21},
                   {"sampler", "euler"},
                   {"cfg_scale", 3},
                   {"karras", karras}});
    EXPECT_EQ(pixels_b64(g["data"][0]["b64_json"]), want) << "OpenAI generations";
    json sd = post(c(), "/sdapi/v1/txt2img",
                   {{"prompt", prompt},
                    {"steps", 6},
                    {"seed", 21},
                    {"sampler_name", "Euler"},
                    {"scheduler", karras ? "Karras" : "Automatic"},
                    {"cfg_scale", 3},
                    {"width", 28},
                    {"height", 28}});
    EXPECT_EQ(pixels_b64(sd["images"][0]), want) << "A1111 txt2img";
    if (!karras) {  // MCP's tool has no scheduler argument
      json msg = {{"jsonrpc", "2.0"}, {"id", 1}, {"method", "tools/call"}};
      json args = {{"prompt", prompt}, {"steps", 6}, {"seed", 21}, {"sampler", "euler"}};
      args["guidance"] = 3;
      msg["params"] = {{"name", "generate_image"}, {"arguments", args}};
      json m = post(c(), "/mcp", msg);
      EXPECT_EQ(pixels_b64(m["result"]["content"][0]["data"]), want) << "MCP generate_image";
    }
  }
}

TEST_F(ServeClientsReal, Img2ImgSamePixelsAsTheCli) {
  // The start image: a txt2img result of another prompt, as a user would edit it.
  const std::string init = tmp_.file("init.png");
  ASSERT_FALSE(cli_pixels("-p 'a photo of a sneaker' --steps 8 --seed 3", init).empty());
  const std::string init_png = read_file_bytes(init);
  const auto want = cli_pixels(
      "-p 'a dark coat' --steps 10 --seed 8 --cfg-scale 3 --init-image " + init + " --strength 0.6",
      tmp_.file("i2i.png"));
  ASSERT_FALSE(want.empty());
  httplib::MultipartFormDataItems form = {
      file_part("image", init_png), text_part("prompt", "a dark coat"),
      text_part("steps", "10"),     text_part("seed", "8"),
      text_part("cfg_scale", "3"),  text_part("strength", "0.6")};
  auto e = c().Post("/v1/images/edits", form);
  ASSERT_TRUE(e && e->status == 200) << (e ? e->body : "");
  EXPECT_EQ(pixels_b64(parse_or_null(e->body)["data"][0]["b64_json"]), want) << "OpenAI edits";
  json sd = post(c(), "/sdapi/v1/img2img",
                 {{"prompt", "a dark coat"},
                  {"steps", 10},
                  {"seed", 8},
                  {"cfg_scale", 3},
                  {"sampler_name", "DPM++ 2M"},
                  {"denoising_strength", 0.6},
                  {"init_images", {b64(init_png)}}});
  EXPECT_EQ(pixels_b64(sd["images"][0]), want) << "A1111 img2img";
  EXPECT_NE(want, png_of(init_png).samples) << "img2img changed nothing";
}

TEST_F(ServeClientsReal, InpaintingKeepsTheUnmaskedPixels) {
  const std::string init_png =
      make_png(28, 28, 1, [](int x, int y, int) { return (x * 9 + y * 4) % 256; });
  const std::vector<uint16_t> init = png_of(init_png).samples;
  auto edit = [&](const std::string& mask) {
    httplib::MultipartFormDataItems form = {
        file_part("image", init_png), file_part("mask", mask), text_part("prompt", "a bag"),
        text_part("steps", "8"),      text_part("seed", "5"),  text_part("strength", "1")};
    auto r = c().Post("/v1/images/edits", form);
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "");
    return r && r->status == 200 ? pixels_b64(parse_or_null(r->body)["data"][0]["b64_json"])
                                 : std::vector<uint16_t>();
  };
  // Opaque everywhere: nothing is edited, the image comes back exactly.
  EXPECT_EQ(edit(make_png(28, 28, 4, [](int, int, int ch) { return ch < 3 ? 0 : 255; })), init);
  // Left half transparent: that half is regenerated, the right half kept bit for bit.
  const auto half =
      edit(make_png(28, 28, 4, [](int x, int, int ch) { return ch < 3 ? 0 : (x < 14 ? 0 : 255); }));
  ASSERT_EQ(half.size(), init.size());
  int changed_left = 0;
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) {
      const size_t i = static_cast<size_t>(y) * 28 + x;
      if (x >= 14)
        EXPECT_EQ(half[i], init[i]) << "kept pixel " << x << "," << y;
      else
        changed_left += half[i] != init[i];
    }
  EXPECT_GT(changed_left, 28 * 14 / 2) << "the masked half was not regenerated";
  // Fully transparent = plain img2img at that strength.
  httplib::MultipartFormDataItems plain = {file_part("image", init_png),
                                           text_part("prompt", "a bag"), text_part("steps", "8"),
                                           text_part("seed", "5"), text_part("strength", "1")};
  auto p = c().Post("/v1/images/edits", plain);
  ASSERT_EQ(p->status, 200);
  EXPECT_EQ(edit(make_png(28, 28, 4, [](int, int, int) { return 0; })),
            pixels_b64(parse_or_null(p->body)["data"][0]["b64_json"]));
}

}  // namespace
}  // namespace duet::testing

#endif

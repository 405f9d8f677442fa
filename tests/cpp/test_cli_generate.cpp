// `duet generate` / `duet png-info` end to end (the CLI binary on the tiny-demo fixture model):
// argument errors are one line and exit != 0; outputs, --json, PNG metadata, and the PNG pixels of
// the python reference's sample run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "duet/png.h"
#include "duet/safetensors.h"
#include "test_util.h"

namespace duet {
namespace {

using testing::CommandResult;
using testing::run_command;
using testing::shell_quote;
using testing::TempDir;

const std::string kModel = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";

bool have_model() { return std::filesystem::exists(kModel + "/model.safetensors"); }

CommandResult duet(const std::string& args) {
  return run_command(std::string(DUET_CLI_PATH) + " " + args);
}

std::string gen(const std::string& args) {
  return "generate --model " + shell_quote(kModel) + " -q " + args;
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(CliGenerate, BadArgumentsGiveOneLineErrors) {
  if (!have_model()) GTEST_SKIP() << "tiny-demo fixture model missing";
  TempDir tmp;
  const std::string out = " -o " + shell_quote(tmp.file("x.png"));
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"-p hi --sampler nope" + out, "unknown sampler 'nope'"},
      {"-p hi --steps 0" + out, "--steps must be in [1, 1000], got 0"},
      {"-p hi --steps=-3" + out, "--steps must be in"},
      {"-p hi -n 0" + out, "-n must be in [1, 64], got 0"},
      {"-p hi -n 65" + out, "got 65"},
      {"-p hi --width 30" + out, "width 30 is not a multiple of 4"},
      {"-p hi --height 6" + out, "height 6 is not a multiple of 4"},
      {"-p hi --init-image " + shell_quote(tmp.file("missing.png")) + out, "missing.png"},
      {"-p hi -o " + shell_quote(tmp.file("no/such/dir/x.png")), "does not exist"},
      {"-p hi -o " + shell_quote(tmp.path()), "is a directory"},
      {"-p hi --refine-steps 3,x" + out, "'x' is not an integer"},
      {"-p hi --refine-steps 3,30" + out, "refine step 30 is outside 1..20"},
      {"-p hi --karras --sampler ddim" + out, "Karras"},
      {"-p hi --cfg-interval 5,1" + out, "--cfg-interval must be SIGMA_LO,SIGMA_HI"},
      {"-p hi --cfg-interval 1,x" + out, "--cfg-interval must be SIGMA_LO,SIGMA_HI"},
      {"-p hi --cfg-scale 1 --cfg-interval 0.3,5" + out, "a cfg interval needs guidance"},
      {"-p hi --cache fast" + out, "--cache 'fast': unknown cache method"},
      {"-p hi --cache step:0" + out, "--cache 'step:0': THRESH must be"},
      {"-p hi --cache step:0.1,0.9,0.5" + out, "START,END must satisfy"},
      {"-p hi --cache block:3,3,0.1" + out, "leaves no block to cache"},
      {"-p hi --strength 1.5 --init-image x.png" + out, "--strength must be in [0, 1]"},
      {"-p a -p b -p c -n 2" + out, "3 prompts for n = 2"},
      {"-p hi --backend gpu" + out, "unknown backend 'gpu'"},
  };
  for (const auto& c : cases) {
    const CommandResult r = duet(gen(c.args));
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_FALSE(std::filesystem::exists(tmp.file("x.png"))) << c.args;
  }
  // Unreadable init image (not a PNG) and a missing model directory.
  testing::write_file(tmp.file("bad.png"), "definitely not a png");
  CommandResult r = duet(gen("-p hi --init-image " + shell_quote(tmp.file("bad.png")) + out));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not a PNG"), std::string::npos) << r.err;
  r = duet("generate -q --model " + shell_quote(tmp.file("nomodel")) + " -p hi" + out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("nomodel"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

TEST(CliGenerate, JsonSummaryFilesAndMetadata) {
  if (!have_model()) GTEST_SKIP() << "tiny-demo fixture model missing";
  TempDir tmp;
  const CommandResult r =
      duet(gen("-p 'a bag, dark: small' --negative-prompt blurry -n 2 --steps 3 "
               "--seed 99 --json --output-dir " +
               shell_quote(tmp.file("out"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;  // --quiet and not a TTY: no progress output
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["files"].size(), 2u);
  EXPECT_EQ(j["seed"], 99);
  EXPECT_EQ(j["seeds"], nlohmann::json::array({99, 99}));
  EXPECT_EQ(j["model_evaluations"], 3);
  EXPECT_EQ(j["refiner_evaluations"], 1);
  EXPECT_EQ(j["batch"], 4);
  EXPECT_TRUE(j["timings"].contains("denoise_s"));
  for (int i = 0; i < 2; ++i) {
    const std::string f = j["files"][i];
    EXPECT_EQ(f, tmp.file("out") + "/99-" + std::to_string(i) + ".png");
    auto png = read_png_file(f);
    ASSERT_TRUE(png.is_ok()) << png.status().to_string();
    EXPECT_EQ(png->width, 28);
    EXPECT_EQ(png->channels, 1);
    auto p = parse_parameters(*png->find_text("parameters"));
    ASSERT_TRUE(p.is_ok());
    EXPECT_EQ(p->prompt, "a bag, dark: small");
    EXPECT_EQ(p->negative_prompt, "blurry");
    EXPECT_EQ(*p->get("Seed"), "99");
    EXPECT_EQ(*p->get("Steps"), "3");
    EXPECT_EQ(*p->get("Batch pos"), std::to_string(i));
  }
  // png-info prints the chunk verbatim; --json parses it.
  const std::string f0 = j["files"][0];
  CommandResult info = duet("png-info " + shell_quote(f0));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(info.out.rfind("a bag, dark: small\nNegative prompt: blurry\nSteps: 3, ", 0), 0u)
      << info.out;
  info = duet("png-info --json " + shell_quote(f0));
  ASSERT_EQ(info.exit_code, 0);
  const auto ij = nlohmann::json::parse(info.out);
  EXPECT_EQ(ij["parameters"]["Sampler"], "dpmpp_2m");
  EXPECT_EQ(ij["prompt"], "a bag, dark: small");

  // Same seed again -> identical pixels; a grid of 2 is one 56x28 image.
  const CommandResult again =
      duet(gen("-p 'a bag, dark: small' --negative-prompt blurry -n 2 --steps 3 --seed 99 --grid "
               "-o " +
               shell_quote(tmp.file("grid.png"))));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto grid = read_png_file(tmp.file("grid.png"));
  auto first = read_png_file(f0);
  ASSERT_TRUE(grid.is_ok() && first.is_ok());
  EXPECT_EQ(grid->width, 56);
  EXPECT_EQ(grid->height, 28);
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x)
      ASSERT_EQ(grid->samples[y * 56 + x], first->samples[y * 28 + x]) << x << "," << y;
}

// Without --cfg-scale the model's config.json inference.cfg_scale applies (4 when absent).
TEST(CliGenerate, GuidanceDefaultComesFromTheModelConfig) {
  if (!have_model()) GTEST_SKIP() << "tiny-demo fixture model missing";
  TempDir tmp;
  const std::string dir = tmp.file("model");
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kModel + "/model.safetensors", dir + "/model.safetensors");
  nlohmann::json cfg =
      nlohmann::json::parse(duet::testing::read_file_bytes(kModel + "/config.json"));
  ASSERT_FALSE(cfg["inference"].contains("cfg_scale"));
  cfg["inference"]["cfg_scale"] = 2.5;
  duet::testing::write_file(dir + "/config.json", cfg.dump());
  auto scale_of = [&](const std::string& model, const std::string& extra) {
    const CommandResult r =
        duet("generate --model " + shell_quote(model) + " -q -p bag --steps 2 --seed 1 --json " +
             extra + " -o " + shell_quote(tmp.file("g.png")));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto png = read_png_file(tmp.file("g.png"));
    EXPECT_TRUE(png.is_ok());
    auto p = parse_parameters(*png->find_text("parameters"));
    EXPECT_TRUE(p.is_ok());
    const double scale = nlohmann::json::parse(r.out)["cfg_scale"].get<double>();
    EXPECT_EQ(std::stod(*p->get("CFG scale")), scale);  // the PNG records the scale used
    return scale;
  };
  EXPECT_EQ(scale_of(dir, ""), 2.5);
  EXPECT_EQ(scale_of(dir, "--cfg-scale 1.5"), 1.5);  // an explicit scale wins
  EXPECT_EQ(scale_of(kModel, ""), 4.0);              // no inference.cfg_scale: 4
  // An explicit negative scale is an error, not "use the default".
  const CommandResult bad =
      duet("generate --model " + shell_quote(dir) + " -q -p bag --steps 2 --cfg-scale -1 -o " +
           shell_quote(tmp.file("bad.png")));
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("cfg scale must be a number in [0, 100], got -1"), std::string::npos)
      << bad.err;
}

TEST(CliGenerate, Img2ImgAndPngInfoErrors) {
  if (!have_model()) GTEST_SKIP() << "tiny-demo fixture model missing";
  TempDir tmp;
  // An RGB init image is converted to the model's single channel explicitly (a note on stderr).
  PngImage rgb;
  rgb.width = rgb.height = 28;
  rgb.channels = 3;
  rgb.samples.assign(28 * 28 * 3, 200);
  ASSERT_TRUE(write_png_file(tmp.file("init.png"), rgb).is_ok());
  CommandResult r =
      duet("generate --model " + shell_quote(kModel) + " -p hi --steps 10 " +
           "--sampler ddim --strength 0.3 --json --init-image " +
           shell_quote(tmp.file("init.png")) + " -o " + shell_quote(tmp.file("i.png")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("converted RGB to grayscale"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["start_call"], 7);
  EXPECT_EQ(j["model_evaluations"], 3);
  auto png = read_png_file(tmp.file("i.png"));
  ASSERT_TRUE(png.is_ok());
  EXPECT_EQ(*parse_parameters(*png->find_text("parameters"))->get("Denoising strength"), "0.3");

  rgb.width = 32;
  rgb.samples.assign(32 * 28 * 3, 0);
  ASSERT_TRUE(write_png_file(tmp.file("big.png"), rgb).is_ok());
  r = duet(gen("-p hi --init-image " + shell_quote(tmp.file("big.png")) + " -o " +
               shell_quote(tmp.file("j.png"))));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("is 32x28 but the output size is 28x28"), std::string::npos) << r.err;

  r = duet("png-info " + shell_quote(tmp.file("init.png")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no 'parameters' text chunk"), std::string::npos) << r.err;
  testing::write_file(tmp.file("junk.png"), "junk");
  r = duet("png-info " + shell_quote(tmp.file("junk.png")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(count_lines(r.err), 1);
}

// The CLI's PNG equals the python reference's PNG of the same run (pixel = round(clip((x+1)/2)
// * 255) of the fixture's final image), up to one level where the 1e-5 model difference
// straddles a rounding boundary.
TEST(CliGenerate, PixelsMatchPythonReference) {
  const std::string fixture = kModel + "/sample_dpmpp_2m.safetensors";
  if (!have_model() || !std::filesystem::exists(fixture))
    GTEST_SKIP() << "tiny-demo sample fixture missing";
  auto f = SafetensorsFile::open(fixture);
  ASSERT_TRUE(f.is_ok());
  const auto& m = f->metadata();
  TempDir tmp;
  const CommandResult r = duet(
      gen("-p " + shell_quote(m.at("prompt")) + " --negative-prompt " +
          shell_quote(m.at("negative_prompt")) + " --sampler " + m.at("sampler") + " --steps " +
          m.at("steps") + " --seed " + m.at("seed") + " --cfg-scale " + m.at("cfg_scale") +
          " --refine-every " + m.at("refine_every") + " -o " + shell_quote(tmp.file("ref.png"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto png = read_png_file(tmp.file("ref.png"));
  ASSERT_TRUE(png.is_ok());
  auto fin = f->load_f32("final");
  ASSERT_TRUE(fin.is_ok());
  ASSERT_EQ(png->samples.size(), static_cast<size_t>(fin->numel()));
  int max_diff = 0, differing = 0;
  for (size_t i = 0; i < png->samples.size(); ++i) {
    const float v = std::clamp((fin->f32()[i] + 1.0f) / 2.0f, 0.0f, 1.0f) * 255.0f;
    const int d = std::abs(static_cast<int>(std::nearbyint(v)) - png->samples[i]);
    max_diff = std::max(max_diff, d);
    differing += d != 0;
  }
  EXPECT_LE(max_diff, 1);
  EXPECT_LE(differing, 5);
}

}  // namespace
}  // namespace duet

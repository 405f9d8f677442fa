// Inpainting by latent blending (GenerateParams::mask) in GenerateRun, driven without a model:
// the "model" output is a fixed function of the input, so the runs are deterministic. Kept pixels
// (mask 0) end exactly at the init image, a mask of ones is plain img2img, and bad masks are
// refused by validation.
#include <gtest/gtest.h>

#include <cmath>

#include "duet/pipeline.h"

namespace duet {
namespace {

DenoiserInfo info8() {
  DenoiserInfo i;
  i.channels = 1;
  i.height = i.width = 8;
  return i;
}

GenerateParams params(std::vector<float> mask, const std::string& sampler) {
  GenerateParams p;
  p.prompts = {"x"};
  p.steps = 6;
  p.sampler = sampler;
  p.cfg_scale = 1.0f;  // no guidance: one row per image
  p.seed = 5;
  p.refine = RefineMode::kNone;
  p.init_image.resize(64);
  for (int i = 0; i < 64; ++i) p.init_image[i] = std::sin(0.3f * i) * 0.9f;  // [1, 8, 8]
  p.strength = 0.8;
  p.mask = std::move(mask);
  return p;
}

// Runs to the end with eps = 0.5 * x (a stand-in model); returns the images [1, 8, 8].
std::vector<float> run(const GenerateParams& p) {
  auto r = GenerateRun::start(info8(), p);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (!r.is_ok()) return {};
  GenerateRun& g = **r;
  std::vector<float> x(64), t(1), out(64);
  while (!g.done()) {
    g.write_input(x.data(), t.data());
    for (int i = 0; i < 64; ++i) out[i] = 0.5f * x[i];
    EXPECT_TRUE(g.complete(out.data()).is_ok());
  }
  auto res = g.finish();
  EXPECT_TRUE(res.is_ok()) << res.status().to_string();
  return res.is_ok() ? std::vector<float>(res->images.f32(), res->images.f32() + 64)
                     : std::vector<float>();
}

TEST(PipelineMask, KeptPixelsEndAtTheInitImage) {
  for (const char* sampler : {"dpmpp_2m", "euler", "heun", "ddim"}) {
    SCOPED_TRACE(sampler);
    std::vector<float> half(64);
    for (int i = 0; i < 64; ++i) half[i] = (i % 8) < 4 ? 1.0f : 0.0f;  // left half regenerated
    const GenerateParams p = params(half, sampler);
    const std::vector<float> out = run(p);
    ASSERT_EQ(out.size(), 64u);
    const std::vector<float> plain = run(params({}, sampler));
    int differs = 0;
    for (int i = 0; i < 64; ++i) {
      if (half[i] == 0.0f)
        EXPECT_EQ(out[i], p.init_image[i]) << "kept pixel " << i;  // bit for bit
      else
        differs += out[i] != p.init_image[i];
    }
    EXPECT_GT(differs, 16) << "the masked half was not regenerated";
    EXPECT_EQ(run(params(std::vector<float>(64, 1.0f), sampler)), plain) << "mask of ones";
    EXPECT_EQ(run(params(std::vector<float>(64, 0.0f), sampler)), p.init_image) << "mask of 0s";
  }
}

TEST(PipelineMask, BadMasksAreRefused) {
  const DenoiserInfo info = info8();
  GenerateParams p = params(std::vector<float>(63, 1.0f), "euler");
  EXPECT_NE(validate_generate_params(p, info).message().find("mask has 63 values"),
            std::string::npos);
  p.mask.assign(64, 1.5f);
  EXPECT_EQ(validate_generate_params(p, info).code(), StatusCode::kInvalidArgument);
  p.mask.assign(64, 0.5f);
  EXPECT_TRUE(validate_generate_params(p, info).is_ok());
  p.init_image.clear();
  EXPECT_NE(validate_generate_params(p, info).message().find("needs an init image"),
            std::string::npos);
  EXPECT_FALSE(GenerateRun::start(info, p).is_ok());
}

}  // namespace
}  // namespace duet

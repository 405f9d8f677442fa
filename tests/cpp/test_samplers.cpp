// Schedules and samplers against diffusers golden fixtures (tests/fixtures/samplers).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "diffusion/fixture_file.h"
#include "diffusion/rng.h"
#include "diffusion/sampler.h"
#include "diffusion/sampler_check.h"
#include "diffusion/schedule.h"

using namespace duet::diffusion;
namespace fs = std::filesystem;

namespace {
const std::string kDir = DUET_SOURCE_DIR "/tests/fixtures/samplers";

std::vector<std::string> case_files() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(kDir)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".safetensors" && name.find("__") != std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST(Schedule, AlphasCumprodMatchesDiffusersBitForBit) {
  auto f = FixtureFile::load(kDir + "/alphas_cumprod.safetensors");
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  const std::pair<BetaSchedule, const char*> cases[] = {
      {BetaSchedule::kLinear, "alphas_cumprod_linear"},
      {BetaSchedule::kScaledLinear, "alphas_cumprod_scaled_linear"},
      {BetaSchedule::kCosine, "alphas_cumprod_squaredcos_cap_v2"}};
  for (const auto& [beta, name] : cases) {
    ScheduleParams p;
    p.beta = beta;
    auto s = NoiseSchedule::create(p);
    ASSERT_TRUE(s.is_ok());
    auto t = f->tensor(name);
    ASSERT_TRUE(t.is_ok());
    ASSERT_EQ((*t)->numel(), 1000u);
    size_t bad = 0;
    for (size_t i = 0; i < 1000; ++i)
      bad += std::memcmp(&(*t)->data[i], &s->alphas_cumprod()[i], 4) != 0;
    EXPECT_EQ(bad, 0u) << name;
  }
}

TEST(Schedule, SigmaToTInvertsTheTable) {
  ScheduleParams p;
  p.beta = BetaSchedule::kScaledLinear;
  auto s = NoiseSchedule::create(p);
  ASSERT_TRUE(s.is_ok());
  for (int k : {0, 1, 10, 500, 998, 999}) EXPECT_NEAR(s->sigma_to_t(s->sigmas_f32()[k]), k, 1e-4);
  // log-sigma interpolation (float64 logs) inverts sigma_to_t (diffusers: float32 log table)
  for (double t : {0.5, 17.25, 333.3, 998.9}) {
    const double ab = s->t_to_alphabar_logsigma(t);
    EXPECT_NEAR(s->sigma_to_t(std::sqrt((1 - ab) / ab)), t, 1e-4);
  }
  auto k = karras_sigmas(0.03, 14.6, 10);
  EXPECT_NEAR(k.front(), 14.6, 1e-9);
  EXPECT_NEAR(k.back(), 0.03, 1e-12);
  EXPECT_FALSE(parse_beta_schedule("quadratic").is_ok());
}

TEST(SamplerFixtures, EveryFixturePassesStepwiseAndEndToEnd) {
  const auto files = case_files();
  ASSERT_GE(files.size(), 70u) << "fixtures missing in " << kDir;
  std::vector<std::string> seen_samplers;
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    auto r = check_sampler_fixture(path);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_TRUE(r->step_pass) << r->description << " step-wise max rel " << r->step_max_rel;
    EXPECT_TRUE(r->e2e_pass) << r->description << " end-to-end " << r->e2e_max_abs << " > "
                             << r->e2e_tol;
    for (const auto& p : r->problems) ADD_FAILURE() << r->description << ": " << p;
    // model timesteps reproduce the fixture's alphabar up to float32 rounding of t (largest at the
    // steep end of squaredcos_cap_v2, where one float32 ulp of t moves alphabar by ~4e-4)
    EXPECT_LT(r->alphabar_max_rel, 1e-3) << r->description;
    seen_samplers.push_back(r->description.substr(0, r->description.find(' ')));
  }
  // every sampler family is covered by at least one fixture
  for (const char* name :
       {"ddpm", "ddim", "euler", "euler_a", "heun", "dpm2", "lms", "dpmpp_2s", "dpmsolver_3s",
        "dpmsolver_2m", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc"})
    EXPECT_NE(std::find(seen_samplers.begin(), seen_samplers.end(), name), seen_samplers.end())
        << name;
}

TEST(SamplerFixtures, InitialNoiseIsTorchRandn) {
  // x_T in every fixture is torch.randn(shape, generator=manual_seed(20240611)).
  auto f = FixtureFile::load(kDir + "/euler__scaled_linear__10.safetensors");
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  const auto& ref = (*f->tensor("x_T"))->data;
  auto a = torch_randn(20240611, ref.size(), TorchGenerator::Kernel::kAvx2);
  auto b = torch_randn(20240611, ref.size(), TorchGenerator::Kernel::kDefault);
  double ea = 0, eb = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    ea = std::max(ea, static_cast<double>(std::fabs(a[i] - ref[i])));
    eb = std::max(eb, static_cast<double>(std::fabs(b[i] - ref[i])));
  }
  EXPECT_LT(std::min(ea, eb), 1e-6);
}

TEST(SamplerFixtures, MalformedFilesAreErrorsNotCrashes) {
  const fs::path tmp = fs::temp_directory_path() / "duet_sampler_bad.safetensors";
  {
    FILE* fp = std::fopen(tmp.c_str(), "wb");
    ASSERT_NE(fp, nullptr);
    const uint64_t len = 1000;  // header longer than the file
    std::fwrite(&len, 8, 1, fp);
    std::fputs("{\"x\":1}", fp);
    std::fclose(fp);
  }
  auto r = check_sampler_fixture(tmp.string());
  EXPECT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("duet_sampler_bad"), std::string::npos);
  EXPECT_FALSE(check_sampler_fixture("/nonexistent/file.safetensors").is_ok());
  // valid safetensors that is not a case file (no metadata)
  EXPECT_FALSE(check_sampler_fixture(kDir + "/alphas_cumprod.safetensors").is_ok());
  fs::remove(tmp);
}

TEST(Sampler, RunMatchesStepwiseAndUsesEveryName) {
  ScheduleParams sp;
  sp.beta = BetaSchedule::kScaledLinear;
  auto sched = NoiseSchedule::create(sp);
  ASSERT_TRUE(sched.is_ok());
  const size_t n = 64;
  std::vector<float> mu(n);
  for (size_t i = 0; i < n; ++i) mu[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
  AnalyticGaussianModel model(*sched, mu, 0.5);
  for (const auto& name : sampler_names()) {
    SCOPED_TRACE(name);
    SamplerParams p;
    p.name = name;
    p.steps = 12;
    auto s = make_sampler(p, *sched, n);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    Sampler& smp = **s;
    EXPECT_EQ(smp.num_calls(), smp.order() == 2 ? 2 * 12 - 1 : 12);
    std::vector<float> x = torch_randn(7, n);
    for (float& v : x) v *= smp.init_noise_sigma();
    std::vector<float> y = x;
    TorchNoiseSource na(99), nb(99);
    int progress_calls = 0;
    ASSERT_TRUE(smp.run(x.data(), model, na, [&](int, int) { ++progress_calls; }).is_ok());
    EXPECT_EQ(progress_calls, smp.num_calls());
    // the same thing through the step-wise API
    std::vector<float> in(n), out(n);
    smp.begin(0);
    for (int c = 0; c < smp.num_calls(); ++c) {
      for (size_t i = 0; i < n; ++i) in[i] = y[i] / smp.input_divisor(c);
      ASSERT_TRUE(model(in.data(), smp.timesteps()[c], out.data()).is_ok());
      ASSERT_TRUE(smp.step(c, out.data(), y.data(), nb).is_ok());
    }
    EXPECT_EQ(std::memcmp(x.data(), y.data(), n * 4), 0);
    // samples end up near the data distribution (mean mu, std 0.5)
    double err = 0;
    for (size_t i = 0; i < n; ++i) err += std::fabs(x[i] - mu[i]);
    EXPECT_LT(err / n, 1.0);
    // out-of-order steps are rejected
    smp.begin(0);
    EXPECT_FALSE(smp.step(1, out.data(), y.data(), nb).is_ok());
  }
  SamplerParams bad;
  bad.name = "plms";
  EXPECT_FALSE(make_sampler(bad, *sched, n).is_ok());
}

TEST(Sampler, Img2ImgStrengthAndAddNoise) {
  auto sched = NoiseSchedule::create({});
  ASSERT_TRUE(sched.is_ok());
  const size_t n = 16;
  std::vector<float> x0(n, 0.5f), nz(n, 1.0f), out(n);
  for (const char* name : {"ddim", "euler", "heun", "dpmpp_2m"}) {
    SamplerParams p;
    p.name = name;
    p.steps = 10;
    auto s = make_sampler(p, *sched, n);
    ASSERT_TRUE(s.is_ok());
    EXPECT_EQ((*s)->start_call_for_strength(1.0), 0);
    EXPECT_EQ((*s)->start_call_for_strength(0.6), 4 * (*s)->order());
    EXPECT_EQ((*s)->start_call_for_strength(0.0), (*s)->num_calls());
    ASSERT_TRUE((*s)->add_noise(x0.data(), nz.data(), 4 * (*s)->order(), out.data()).is_ok());
    EXPECT_NE(out[0], x0[0]);
  }
}

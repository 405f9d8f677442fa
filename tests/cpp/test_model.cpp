// Model / Context behaviour beyond the goldens: batch planning, refine = false, input errors,
// heap stability of denoise, and two Contexts sharing one Model from two threads.
#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <thread>

#include "duet/model.h"

namespace duet {
namespace {

const std::string kTiny = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";

std::shared_ptr<const Model> load_tiny(BackendKind k = BackendKind::kCpu) {
  LoadOptions lo;
  lo.backend = k;
  auto m = Model::load(kTiny, lo);
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  return m.is_ok() ? *m : nullptr;
}

Tensor random_x(int64_t b, const ModelConfig& cfg, uint32_t seed) {
  Tensor x = Tensor::zeros({b, cfg.image.channels, cfg.image.height, cfg.image.width});
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = nd(rng);
  return x;
}

Tensor fill_t(int64_t b, float v) {
  Tensor t = Tensor::zeros({b});
  for (int64_t i = 0; i < b; ++i) t.f32()[i] = v;
  return t;
}

// A context planned for max_batch rows of the model's default size (null on failure).
std::unique_ptr<Context> context_for(const std::shared_ptr<const Model>& model, int64_t max_batch) {
  ContextOptions co;
  co.max_batch = max_batch;
  auto ctx = Context::create(model, co);
  EXPECT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  return ctx.is_ok() ? std::move(ctx).value() : nullptr;
}

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kTiny + "/model.safetensors"))
      GTEST_SKIP() << "no tiny-demo fixture";
  }
};

TEST_F(ModelTest, SmallerBatchEqualsRowsOfFullBatch) {
  auto model = load_tiny();
  auto ctx = context_for(model, 3);
  ASSERT_TRUE(ctx);
  Tensor x = random_x(3, model->config(), 1);
  auto ps3 = model->encode_prompt({"a shoe", "a shoe", "a shoe"});
  ASSERT_TRUE(ps3.is_ok());
  ASSERT_TRUE(ctx->denoise(x, fill_t(3, 400.f), *ps3, true).is_ok());
  std::vector<float> full(ctx->eps().f32(), ctx->eps().f32() + ctx->eps().numel());
  auto ps1 = model->encode_prompt({"a shoe"});
  Tensor x1 = Tensor::view(x.f32(), {1, x.dim(1), x.dim(2), x.dim(3)});
  ASSERT_TRUE(ctx->denoise(x1, fill_t(1, 400.f), *ps1, true).is_ok());
  const Tensor e1 = ctx->eps();
  ASSERT_EQ(e1.dim(0), 1);
  for (int64_t i = 0; i < e1.numel(); ++i) EXPECT_NEAR(e1.f32()[i], full[i], 1e-5);
}

TEST_F(ModelTest, NoRefineReturnsBackboneOnly) {
  auto model = load_tiny();
  auto ctx = Context::create(model);
  ASSERT_TRUE(ctx.is_ok());
  auto ps = model->encode_prompt({"dress"});
  ASSERT_TRUE(
      (*ctx)->denoise(random_x(1, model->config(), 2), fill_t(1, 10.f), *ps, false).is_ok());
  const Tensor eps = (*ctx)->eps(), eps_s = (*ctx)->eps_s();
  for (int64_t i = 0; i < eps.numel(); ++i) ASSERT_EQ(eps.f32()[i], eps_s.f32()[i]);
  EXPECT_TRUE((*ctx)->r().empty());
  EXPECT_TRUE((*ctx)->alpha().empty());
}

// denoise_rows: the first R rows refine, the others do not, in one call; each row gets what a
// call with its own flag gives it (the backbone runs at the same batch size, so the plain rows
// are bit-identical; the refined rows within 1e-5, as a smaller batch above).
TEST_F(ModelTest, MixedRefineRowsEqualSeparateCalls) {
  auto model = load_tiny();
  auto ctx = context_for(model, 4);
  ASSERT_TRUE(ctx);
  const Tensor x = random_x(4, model->config(), 7);
  Tensor t = Tensor::zeros({4});
  for (int i = 0; i < 4; ++i) t.f32()[i] = 100.0f + 230.0f * i;
  auto ps = model->encode_prompt({"a shoe", "a bag", "a dress", "a coat"});
  ASSERT_TRUE(ps.is_ok());
  auto eps_of = [&](int refine_rows) {
    EXPECT_TRUE(ctx->denoise_rows(x, t, *ps, refine_rows).is_ok());
    const Tensor e = ctx->eps();
    return std::vector<float>(e.f32(), e.f32() + e.numel());
  };
  const std::vector<float> all = eps_of(4), none = eps_of(0), mixed = eps_of(2);
  EXPECT_EQ(ctx->r().dim(0), 2);
  EXPECT_EQ(ctx->alpha().dim(0), 2);
  const size_t half = all.size() / 2;
  double worst = 0;
  for (size_t i = 0; i < half; ++i) worst = std::max(worst, std::fabs(double(mixed[i]) - all[i]));
  EXPECT_LE(worst, 1e-5);
  for (size_t i = half; i < all.size(); ++i) ASSERT_EQ(mixed[i], none[i]) << i;
  double differ = 0;  // the refined rows really differ from the plain ones
  for (size_t i = 0; i < half; ++i) differ = std::max(differ, std::fabs(double(all[i]) - none[i]));
  EXPECT_GT(differ, 1e-3);
  EXPECT_EQ(ctx->denoise_rows(x, t, *ps, 5).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ctx->denoise_rows(x, t, *ps, -1).code(), StatusCode::kInvalidArgument);
}

TEST_F(ModelTest, BadInputsAreInvalidArgumentNotCrashes) {
  auto model = load_tiny();
  ContextOptions co;
  co.max_batch = 2;
  auto ctx = Context::create(model, co);
  ASSERT_TRUE(ctx.is_ok());
  auto ps2 = model->encode_prompt({"a", "b"});
  const ModelConfig& cfg = model->config();
  Status st = (*ctx)->denoise(random_x(3, cfg, 3), fill_t(3, 1.f), *ps2, true);  // B > max
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("B <= 2"), std::string::npos) << st.message();
  st = (*ctx)->denoise(random_x(2, cfg, 3), fill_t(1, 1.f), *ps2, true);  // t shape
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  auto ps1 = model->encode_prompt({"a"});
  st = (*ctx)->denoise(random_x(2, cfg, 3), fill_t(2, 1.f), *ps1, true);  // prompt batch
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  Tensor wrong = Tensor::zeros({2, cfg.image.channels, cfg.image.height + 4, cfg.image.width});
  EXPECT_FALSE((*ctx)->denoise(wrong, fill_t(2, 1.f), *ps2, true).is_ok());
  co.height = 30;  // not a multiple of the patch / refiner stride
  EXPECT_EQ(Context::create(model, co).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(model->encode_prompt({}).is_ok());
  auto missing = Model::load("/nonexistent/dir");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/dir"), std::string::npos);
}

TEST_F(ModelTest, DenoiseDoesNotGrowTheHeap) {
  auto model = load_tiny();
  ContextOptions co;
  co.max_batch = 2;
  auto ctx = Context::create(model, co);
  ASSERT_TRUE(ctx.is_ok());
  auto ps = model->encode_prompt({"a", "b"});
  Tensor x = random_x(2, model->config(), 4), t = fill_t(2, 321.f);
  // Per-thread runtime state (OpenMP workers, their oneDNN streams and scratchpads) settles during
  // the first calls: which worker meets which primitive first depends on scheduling.
  for (int i = 0; i < 8; ++i) ASSERT_TRUE((*ctx)->denoise(x, t, *ps, i % 2 == 0).is_ok());
  const size_t before = mallinfo2().uordblks;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE((*ctx)->denoise(x, t, *ps, i % 2 == 0).is_ok());
    EXPECT_EQ(mallinfo2().uordblks, before) << "after call " << i;
  }
  EXPECT_GT((*ctx)->workspace_bytes(), 0u);
}

TEST_F(ModelTest, TwoContextsShareOneModelAcrossThreads) {
  auto model = load_tiny();
  auto ps = model->encode_prompt({"boot"});
  Tensor x = random_x(1, model->config(), 5);
  std::vector<float> out[2];
  auto run = [&](int i) {
    auto ctx = Context::create(model);
    ASSERT_TRUE(ctx.is_ok());
    ASSERT_TRUE((*ctx)->denoise(x, fill_t(1, 77.f), *ps, true).is_ok());
    out[i].assign((*ctx)->eps().f32(), (*ctx)->eps().f32() + (*ctx)->eps().numel());
  };
  std::thread a(run, 0), b(run, 1);
  a.join();
  b.join();
  ASSERT_EQ(out[0].size(), out[1].size());
  for (size_t i = 0; i < out[0].size(); ++i) EXPECT_EQ(out[0][i], out[1][i]);
}

TEST_F(ModelTest, InfoReportsConvertedDtypes) {
  auto model = load_tiny();  // tiny-demo weights are F16 in the fixture
  EXPECT_GT(model->info().parameters, 0);
  EXPECT_EQ(model->info().backend, "cpu");
  EXPECT_NE(model->info().weight_dtypes.find("F16"), std::string::npos)
      << model->info().weight_dtypes;
  EXPECT_FALSE(model->info().notes.empty());
}

}  // namespace
}  // namespace duet

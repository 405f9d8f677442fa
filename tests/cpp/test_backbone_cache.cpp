// Backbone cache (duet/backbone_cache.h): the spec's text form and errors, the Context-level
// member checks, and the rule's extremes on the tiny-demo model (a cache that always computes
// gives the uncached eps bit for bit; one that always reuses gives h_a + res exactly).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "duet/backbone_cache.h"
#include "duet/model.h"

namespace duet {
namespace {

const std::string kDir = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";

TEST(BackboneCacheSpec, ParsesAndPrintsCanonically) {
  auto s = parse_cache_spec("step:0.25");
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(s->mode, CacheMode::kStep);
  EXPECT_EQ(s->threshold, 0.25);
  EXPECT_EQ(cache_spec_string(*s), "step:0.25,0,1");
  auto b = parse_cache_spec("block:2,1,0.1,0.2,0.9");
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(b->first, 2);
  EXPECT_EQ(b->last, 1);
  EXPECT_EQ(b->start, 0.2);
  EXPECT_EQ(cache_spec_string(*b), "block:2,1,0.1,0.2,0.9");
  EXPECT_EQ(parse_cache_spec("off")->mode, CacheMode::kOff);
  EXPECT_EQ(cache_spec_string(*parse_cache_spec("on")),
            cache_spec_string(*parse_cache_spec(kCacheOnSpec)));
  auto again = parse_cache_spec(cache_spec_string(*b));
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(cache_spec_string(*again), cache_spec_string(*b));
}

TEST(BackboneCacheSpec, BadTextsNameTheOption) {
  for (const char* bad : {"",
                          "fast",
                          "step",
                          "step:",
                          "step:0",
                          "step:-0.1",
                          "step:inf",
                          "step:nan",
                          "step:1e7",
                          "step:0.1,",
                          "step:0.1,0.5",
                          "step:0.1,0.5,0.4",
                          "step:0.1,-0.1,1",
                          "step:0.1,0,1.5",
                          "block:1,0",
                          "block:0,0,0.1",
                          "block:1,-1,0.1",
                          "block:1.5,0,0.1",
                          "block:1,0,0.1,0.2",
                          "Step:0.1",
                          "step:0.1 ",
                          "block:99999999999,0,0.1"}) {
    auto r = parse_cache_spec(bad, "--cache");
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message().rfind("--cache '", 0), 0u) << r.status().message();
  }
  EXPECT_FALSE(check_cache_spec(*parse_cache_spec("block:1,1,0.1"), 2).is_ok());
  EXPECT_TRUE(check_cache_spec(*parse_cache_spec("block:1,0,0.1"), 2).is_ok());
  EXPECT_TRUE(check_cache_spec(*parse_cache_spec("step:0.1"), 1).is_ok());
}

class BackboneCacheModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kDir + "/model.safetensors")) GTEST_SKIP() << "no tiny-demo";
    auto m = Model::load(kDir);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    model = std::move(m).value();
    ContextOptions co;
    co.max_batch = 2;
    auto c = Context::create(model, co);
    ASSERT_TRUE(c.is_ok());
    ctx = std::move(c).value();
    auto p = model->encode_prompt({"a bag", "a coat"});
    ASSERT_TRUE(p.is_ok());
    ps = std::move(p).value();
    const ModelConfig& cfg = model->config();
    x = Tensor::zeros({2, cfg.image.channels, cfg.image.height, cfg.image.width});
    for (int64_t i = 0; i < x.numel(); ++i)
      x.f32()[i] = static_cast<float>((i * 37 % 101) - 50) / 25;
    t = Tensor::zeros({2});
    t.f32()[0] = t.f32()[1] = 500;
  }
  std::vector<float> eps() const {
    const Tensor e = ctx->eps();
    return std::vector<float>(e.f32(), e.f32() + e.numel());
  }
  std::shared_ptr<const Model> model;
  std::unique_ptr<Context> ctx;
  PromptState ps;
  Tensor x, t;
};

TEST_F(BackboneCacheModel, AlwaysComputeIsUncachedBitForBit) {
  // Calls at different t (identical inputs would give rel = 0, which any threshold reuses).
  const float ts[3] = {700, 500, 300};
  std::vector<std::vector<float>> plain;
  for (float tv : ts) {
    t.f32()[0] = t.f32()[1] = tv;
    ASSERT_TRUE(ctx->denoise(x, t, ps, true).is_ok());
    plain.push_back(eps());
  }
  for (const char* spec : {"step:1e-300", "block:1,0,1e-300"}) {
    auto cache = BackboneCache::create(*ctx, *parse_cache_spec(spec), 2);
    ASSERT_TRUE(cache.is_ok());
    for (int call = 0; call < 3; ++call) {
      t.f32()[0] = t.f32()[1] = ts[call];
      CacheMember m{cache->get(), 0, 2, true};
      ASSERT_TRUE(ctx->denoise_cached(x, t, ps, 2, {&m, 1}).is_ok());
      EXPECT_TRUE(m.computed);
      const std::vector<float> e = eps();
      EXPECT_EQ(std::memcmp(e.data(), plain[call].data(), e.size() * sizeof(float)), 0) << spec;
    }
    EXPECT_EQ((*cache)->stats().computed, 3);
    EXPECT_EQ((*cache)->stats().blocks_run, (*cache)->stats().blocks_total);
  }
}

TEST_F(BackboneCacheModel, ReuseGivesTheCachedResultAndCountsBlocks) {
  // Same inputs twice: the second call reuses (rel = 0) and must reproduce the first call's
  // eps up to the float rounding of h_a + (h_e - h_a); a new t changes it.
  auto cache = BackboneCache::create(*ctx, *parse_cache_spec("step:0.5"), 2);
  ASSERT_TRUE(cache.is_ok());
  CacheMember m{cache->get(), 0, 2, true};
  ASSERT_TRUE(ctx->denoise_cached(x, t, ps, 0, {&m, 1}).is_ok());
  EXPECT_TRUE(m.computed);
  const std::vector<float> first = eps();
  ASSERT_TRUE(ctx->denoise_cached(x, t, ps, 0, {&m, 1}).is_ok());
  EXPECT_FALSE(m.computed);
  const std::vector<float> second = eps();
  double worst = 0;
  for (size_t i = 0; i < first.size(); ++i)
    worst = std::max(worst, double(std::fabs(first[i] - second[i])));
  EXPECT_LT(worst, 1e-5);
  const CacheStats& st = (*cache)->stats();
  EXPECT_EQ(st.calls, 2);
  EXPECT_EQ(st.computed, 1);
  EXPECT_EQ(st.blocks_total, 2 * model->config().backbone.depth);
  EXPECT_EQ(st.blocks_run, model->config().backbone.depth);
  // Not eligible: computed regardless.
  m.eligible = false;
  ASSERT_TRUE(ctx->denoise_cached(x, t, ps, 0, {&m, 1}).is_ok());
  EXPECT_TRUE(m.computed);
}

TEST_F(BackboneCacheModel, BadMembersAreErrors) {
  auto a = BackboneCache::create(*ctx, *parse_cache_spec("step:0.5"), 1);
  auto b = BackboneCache::create(*ctx, *parse_cache_spec("step:0.5"), 2);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  std::vector<std::vector<CacheMember>> bad = {
      {{nullptr, 0, 1, true}},                           // no cache
      {{a->get(), 1, 2, true}},                          // past the call's rows
      {{a->get(), 0, 2, true}},                          // more rows than the cache holds
      {{a->get(), 0, 1, true}, {b->get(), 0, 1, true}},  // overlapping rows
      {{b->get(), 0, 1, true}, {b->get(), 1, 1, true}},  // one cache twice
      {{a->get(), 0, 0, true}},                          // no rows
  };
  for (auto& members : bad) {
    const Status s = ctx->denoise_cached(x, t, ps, 0, members);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_NE(s.message().find("cache member"), std::string::npos) << s.message();
  }
  EXPECT_FALSE(BackboneCache::create(*ctx, CacheSpec{}, 1).is_ok());  // off
  EXPECT_FALSE(BackboneCache::create(*ctx, *parse_cache_spec("block:1,1,0.1"), 1).is_ok());
  EXPECT_FALSE(BackboneCache::create(*ctx, *parse_cache_spec("step:0.1"), 0).is_ok());
}

}  // namespace
}  // namespace duet

// Dynamic batching in the pipeline engine (make_pipeline_engine): requests that share denoiser
// batches get bit-identical images to running alone, through the real generate() loop, with a
// fake row-wise Denoiser; cancellation and errors stay confined to their request.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <variant>

#include "duet/pipeline.h"
#include "duet/serve_engine.h"
#include "serve/api.h"
#include "serve/prompt_cache.h"

namespace duet::testing {
namespace {

struct Calls {
  std::mutex mu;
  std::vector<int> rows;         // rows of every denoise call
  std::vector<int> refine_rows;  // of which refined (the first ones)
  int encodes = 0;
};

class RowEmbedding : public PromptEmbedding {
 public:
  explicit RowEmbedding(std::vector<uint32_t> h) : h_(std::move(h)) {}
  int batch() const override { return static_cast<int>(h_.size()); }
  const std::vector<uint32_t>& hashes() const { return h_; }

 private:
  std::vector<uint32_t> h_;
};

// Each output row depends only on that row's x, t and text: batching cannot change it.
class RowDenoiser : public Denoiser {
 public:
  explicit RowDenoiser(Calls* calls, float cfg_scale = 4.0f) : calls_(calls) {
    info_.cfg_scale = cfg_scale;  // the config's inference.cfg_scale
  }
  const DenoiserInfo& info() const override { return info_; }
  Result<std::unique_ptr<PromptEmbedding>> encode(const std::vector<std::string>& texts) override {
    std::vector<uint32_t> h;
    for (const auto& t : texts) {
      if (t.find("[[bad]]") != std::string::npos) return invalid_argument("unencodable prompt");
      uint32_t v = 2166136261u;
      for (unsigned char c : t) v = (v ^ c) * 16777619u;
      h.push_back(v);
    }
    std::lock_guard<std::mutex> lock(calls_->mu);
    ++calls_->encodes;
    return std::unique_ptr<PromptEmbedding>(std::make_unique<RowEmbedding>(std::move(h)));
  }
  Result<std::unique_ptr<PromptEmbedding>> concat(
      const std::vector<const PromptEmbedding*>& rows) override {
    if (!concat_) return Denoiser::concat(rows);
    std::vector<uint32_t> h;
    for (const PromptEmbedding* e : rows) {
      const auto& r = static_cast<const RowEmbedding*>(e)->hashes();
      h.insert(h.end(), r.begin(), r.end());
    }
    return std::unique_ptr<PromptEmbedding>(std::make_unique<RowEmbedding>(std::move(h)));
  }
  int64_t embedding_bytes(const PromptEmbedding& e) const override {
    return 1000 * static_cast<int64_t>(e.batch());
  }
  void set_concat(bool on) { concat_ = on; }
  void set_mixed(bool on) { mixed_ = on; }
  Status prepare(int, int, int) override { return Status::ok(); }
  Status denoise(const float* x, const float* t, int batch, int height, int width,
                 const PromptEmbedding& prompts, bool refine, float* out) override {
    return rows(x, t, batch, height, width, prompts, refine ? batch : 0, out);
  }
  Status denoise_mixed(const float* x, const float* t, int batch, int height, int width,
                       const PromptEmbedding& prompts, int refine_rows, float* out) override {
    if (!mixed_) return Denoiser::denoise_mixed(x, t, batch, height, width, prompts, 1, out);
    if (refine_rows <= 0 || refine_rows >= batch) return internal_error("not a mixed call");
    return rows(x, t, batch, height, width, prompts, refine_rows, out);
  }

 private:
  // Rows [0, refine_rows) refine. Each row's output depends only on its own x, t, text and flag.
  Status rows(const float* x, const float* t, int batch, int height, int width,
              const PromptEmbedding& prompts, int refine_rows, float* out) {
    const auto& h = static_cast<const RowEmbedding&>(prompts).hashes();
    if (static_cast<int>(h.size()) != batch) return internal_error("prompt batch mismatch");
    const size_t img = static_cast<size_t>(info_.channels) * height * width;
    for (int b = 0; b < batch; ++b)
      for (size_t i = 0; i < img; ++i)
        out[b * img + i] = 0.3f * x[b * img + i] +
                           0.2f * std::sin(0.001f * t[b] + (h[b] % 97) * 0.1f + i * 0.05f) +
                           (b < refine_rows ? 0.01f : 0.0f);
    std::lock_guard<std::mutex> lock(calls_->mu);
    calls_->rows.push_back(batch);
    calls_->refine_rows.push_back(refine_rows);
    return Status::ok();
  }

  DenoiserInfo info_;
  Calls* calls_;
  bool concat_ = true;
  bool mixed_ = true;
};

ImageRequest req(const std::string& prompt, int64_t seed, float cfg, int n) {
  ImageRequest r;
  r.prompt = prompt;
  r.negative_prompt = "blurry";
  r.seed = seed;
  r.cfg_scale = cfg;
  r.n = n;
  r.width = 16;
  r.height = 12;
  r.steps = 6;
  r.sampler = "dpmpp_2m";
  r.refine_every = 2;
  return r;
}

std::vector<Result<ImageOutput>> run(ImageEngine& e, const std::vector<ImageRequest>& reqs,
                                     std::function<void(size_t, int)> on_step = {},
                                     std::vector<std::atomic<bool>>* cancels = nullptr) {
  std::vector<EngineJob> jobs;
  for (size_t i = 0; i < reqs.size(); ++i) {
    EngineJob j;
    j.request = &reqs[i];
    if (on_step) j.progress = [on_step, i](int step, int) { on_step(i, step); };
    if (cancels) j.cancel = &(*cancels)[i];
    jobs.push_back(j);
  }
  return e.run_batch(jobs);
}

TEST(ServeBatching, BatchedImagesEqualSoloImages) {
  Calls calls;
  auto engine = make_pipeline_engine(std::make_unique<RowDenoiser>(&calls));
  const std::vector<ImageRequest> reqs = {req("a red dress", 1, 4.0f, 2),
                                          req("a sneaker", 77, 1.0f, 1),  // no guidance: n rows
                                          req("a bag", 5, 7.5f, 3)};
  std::vector<std::vector<float>> solo;
  for (const auto& r : reqs) {
    auto out = run(*engine, {r});
    ASSERT_TRUE(out[0].is_ok()) << out[0].status().to_string();
    solo.push_back(out[0]->pixels);
    EXPECT_EQ(out[0]->seeds, std::vector<int64_t>(r.n, r.seed));
  }
  const size_t solo_calls = calls.rows.size();
  EXPECT_EQ(solo_calls, 18u);
  auto together = run(*engine, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(together[i].is_ok()) << together[i].status().to_string();
    EXPECT_EQ(together[i]->pixels, solo[i]) << "request " << i;  // bit-identical
    EXPECT_EQ(together[i]->parameters.size(), static_cast<size_t>(reqs[i].n));
  }
  // One batched denoiser call per step, with all rows: 2*2 + 1 + 2*3 = 11.
  ASSERT_EQ(calls.rows.size(), solo_calls + 6);
  for (size_t k = solo_calls; k < calls.rows.size(); ++k) EXPECT_EQ(calls.rows[k], 11);
  // The same batch again: every prompt (4 distinct texts) comes from the cache, none is encoded.
  const EngineStats before = engine->stats();
  const int encodes = calls.encodes;
  auto again = run(*engine, reqs);
  EXPECT_EQ(engine->stats().prompt_cache_hits, before.prompt_cache_hits + 4);
  EXPECT_EQ(engine->stats().prompt_cache_misses, before.prompt_cache_misses);
  EXPECT_EQ(calls.encodes, encodes);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(again[i]->pixels, solo[i]);
}

TEST(ServeBatching, CancelAndErrorsStayInTheirRequest) {
  Calls calls;
  auto engine = make_pipeline_engine(std::make_unique<RowDenoiser>(&calls));
  const std::vector<ImageRequest> reqs = {req("first", 3, 4.0f, 1), req("second", 4, 2.0f, 2),
                                          req("third", 9, 4.0f, 1)};
  std::vector<std::vector<float>> solo;
  for (const auto& r : reqs) solo.push_back(run(*engine, {r})[0]->pixels);

  std::vector<std::atomic<bool>> cancels(reqs.size());
  auto out = run(
      *engine, reqs,
      [&](size_t i, int step) {
        if (i == 1 && step == 2) cancels[1] = true;
      },
      &cancels);
  ASSERT_TRUE(out[0].is_ok());
  EXPECT_EQ(out[1].status().code(), StatusCode::kCancelled);
  ASSERT_TRUE(out[2].is_ok());
  EXPECT_EQ(out[0]->pixels, solo[0]);
  EXPECT_EQ(out[2]->pixels, solo[2]);

  std::vector<ImageRequest> with_bad = reqs;
  with_bad[1].prompt = "broken [[bad]]";
  auto out2 = run(*engine, with_bad);
  EXPECT_FALSE(out2[1].is_ok());
  EXPECT_NE(out2[1].status().message().find("unencodable"), std::string::npos);
  ASSERT_TRUE(out2[0].is_ok()) << out2[0].status().to_string();
  ASSERT_TRUE(out2[2].is_ok());
  EXPECT_EQ(out2[0]->pixels, solo[0]);
  EXPECT_EQ(out2[2]->pixels, solo[2]);
}

// run_batch merges whatever is compatible call by call: requests with different step counts,
// samplers and sizes in one batch still get their solo images, and calls of equal size and
// refine flag are shared.
TEST(ServeBatching, MixedRequestsShareCompatibleCalls) {
  Calls calls;
  auto engine = make_pipeline_engine(std::make_unique<RowDenoiser>(&calls));
  std::vector<ImageRequest> reqs = {req("a coat", 11, 4.0f, 1), req("a shirt", 12, 3.0f, 1),
                                    req("a boot", 13, 4.0f, 1)};
  reqs[1].steps = 4;
  reqs[1].sampler = "euler_a";
  reqs[2].width = 20;  // another size: never shares a call with the others
  std::vector<std::vector<float>> solo;
  for (const auto& r : reqs) {
    auto out = run(*engine, {r});
    ASSERT_TRUE(out[0].is_ok()) << out[0].status().to_string();
    solo.push_back(out[0]->pixels);
  }
  const size_t before = calls.rows.size();
  auto together = run(*engine, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(together[i].is_ok()) << together[i].status().to_string();
    EXPECT_EQ(together[i]->pixels, solo[i]) << "request " << i;
  }
  // Requests 0 and 1 (refine every 2) share calls 1-4 (4 rows), request 0 runs 5-6 alone (2),
  // request 2 runs its 6 calls alone (2 rows each): 4 + 2 + 6 = 12 calls.
  std::vector<int> rows(calls.rows.begin() + static_cast<long>(before), calls.rows.end());
  EXPECT_EQ(rows.size(), 12u);
  EXPECT_EQ(std::count(rows.begin(), rows.end(), 4), 4);
}

// A feed that admits scripted jobs at given admit() calls and logs every call and result.
struct ScriptedFeed : BatchFeed {
  std::map<int, std::vector<EngineJob>> at;  // admit() call number (1-based) -> jobs it returns
  std::vector<std::string> log;              // "admit K" / "done TAG", in order
  std::vector<int> images;                   // admit()'s argument per call
  std::map<uint64_t, Result<ImageOutput>> results;
  std::vector<EngineJob> admit(int running_images) override {
    images.push_back(running_images);
    const int k = static_cast<int>(images.size());
    log.push_back("admit " + std::to_string(k));
    auto it = at.find(k);
    return it == at.end() ? std::vector<EngineJob>{} : it->second;
  }
  void finished(const EngineJob& job, Result<ImageOutput> r) override {
    log.push_back("done " + std::to_string(job.tag));
    EXPECT_TRUE(results.emplace(job.tag, std::move(r)).second) << "job reported twice";
  }
  size_t pos(const std::string& entry) const {
    return std::find(log.begin(), log.end(), entry) - log.begin();
  }
};

// Continuous batching: requests admitted into a running batch between model calls get their solo
// images, share calls with the running ones, and each is reported as soon as it ends; a
// cancelled or failing admitted request leaves the others alone. With a denoiser that refines
// some rows of a call only (denoise_mixed), a request joins at once whatever its refine phase;
// without, it waits until its refine flags are in phase with the running requests'.
TEST(ServeBatching, ContinuousBatchingAdmitsBetweenCalls) {
  for (const bool mixed : {true, false}) {
    SCOPED_TRACE(mixed ? "denoise_mixed" : "no denoise_mixed");
    Calls calls;
    auto denoiser = std::make_unique<RowDenoiser>(&calls);
    denoiser->set_mixed(mixed);
    auto engine = make_pipeline_engine(std::move(denoiser));
    // A runs from the start; B joins before round 3, C (cancelled after its first call) before
    // round 4, D (fails to encode) before round 5, E before round 6. Refine every 2: calls 1, 3,
    // 5 (0-based) refine, so B is in phase with A, C and E are not.
    const std::vector<ImageRequest> reqs = {req("a coat", 21, 4.0f, 1), req("a shirt", 22, 3.0f, 2),
                                            req("a boot", 23, 4.0f, 1), req("[[bad]]", 24, 4.0f, 1),
                                            req("a bag", 25, 5.0f, 1)};
    std::map<size_t, std::vector<float>> solo;
    for (size_t i : {0, 1, 4}) {
      auto out = run(*engine, {reqs[i]});
      ASSERT_TRUE(out[0].is_ok()) << out[0].status().to_string();
      solo[i] = out[0]->pixels;
    }
    std::atomic<bool> cancel_c{false};
    std::vector<EngineJob> jobs(reqs.size());
    for (size_t i = 0; i < jobs.size(); ++i) {
      jobs[i].request = &reqs[i];
      jobs[i].tag = 100 + i;
    }
    jobs[2].cancel = &cancel_c;
    jobs[2].progress = [&](int step, int) { cancel_c = step >= 1; };
    ScriptedFeed feed;
    for (int k = 1; k <= 4; ++k) feed.at[k + 2] = {jobs[k]};  // before rounds 3, 4, 5, 6
    const size_t before = calls.rows.size();
    engine->run_continuous({jobs[0]}, feed);

    ASSERT_EQ(feed.results.size(), 5u);
    for (size_t i : {0, 1, 4}) {
      const Result<ImageOutput>& r = feed.results.at(100 + i);
      ASSERT_TRUE(r.is_ok()) << i << ": " << r.status().to_string();
      EXPECT_EQ(r->pixels, solo[i]) << i;  // bit-identical to running alone
    }
    EXPECT_EQ(feed.results.at(102).status().code(), StatusCode::kCancelled);
    EXPECT_NE(feed.results.at(103).status().message().find("unencodable"), std::string::npos);
    // admit() sees the running images: A; A + B; C is gone once cancelled, D once failed; after
    // A has finished, B + E.
    ASSERT_GE(feed.images.size(), 7u);
    EXPECT_EQ(feed.images[2], 1);
    EXPECT_EQ(feed.images[3], 3);
    EXPECT_EQ(feed.images[4], 3);
    EXPECT_EQ(feed.images[5], 3);
    EXPECT_EQ(feed.images[6], 3);
    // A (6 calls from round 1) is reported before the 7th admit, B (from round 3) before the
    // 9th, while E goes on.
    EXPECT_LT(feed.pos("done 100"), feed.pos("admit 7"));
    EXPECT_LT(feed.pos("done 101"), feed.pos("admit 9"));
    EXPECT_GT(feed.pos("done 104"), feed.pos("admit 9"));
    std::vector<int> rows(calls.rows.begin() + static_cast<long>(before), calls.rows.end());
    std::vector<int> refined(calls.refine_rows.begin() + static_cast<long>(before),
                             calls.refine_rows.end());
    if (mixed) {
      // One call per round: C's and E's first calls are mixed calls with A and B (rounds 4 and
      // 6), and B and E share rounds 7-8 half in refine, half not.
      EXPECT_EQ(rows, (std::vector<int>{2, 2, 6, 8, 6, 8, 6, 6, 2, 2, 2}));
      EXPECT_EQ(refined, (std::vector<int>{0, 2, 0, 6, 0, 6, 2, 4, 2, 0, 2}));
      EXPECT_EQ(feed.images.size(), 12u);
    } else {
      // Round 4's mixed call is refused once, then made as two calls (A + B refining, C not);
      // E waits through round 6 and joins B in phase in round 7.
      EXPECT_EQ(rows, (std::vector<int>{2, 2, 6, 6, 2, 6, 6, 6, 6, 2, 2, 2, 2}));
      EXPECT_EQ(refined, (std::vector<int>{0, 2, 0, 6, 0, 0, 6, 0, 6, 0, 2, 0, 2}));
      EXPECT_EQ(feed.images.size(), 13u);
    }
  }
}

TEST(ServeBatching, ValidationUsesThePipelineRules) {
  Calls calls;
  auto engine = make_pipeline_engine(std::make_unique<RowDenoiser>(&calls));
  EXPECT_EQ(engine->info().stride, 4);
  EXPECT_TRUE(engine->validate(req("ok", 1, 4, 1)).is_ok());
  ImageRequest bad = req("x", 1, 4, 1);
  bad.sampler = "nope";
  EXPECT_FALSE(engine->validate(bad).is_ok());
  EXPECT_NE(engine->batch_key(req("a", 1, 4, 1)), engine->batch_key(bad));
  EXPECT_EQ(engine->batch_key(req("a", 1, 4, 1)), engine->batch_key(req("b", 2, 9, 3)));
}

// The model config's guidance default reaches the server: a request without cfg_scale gets it
// (through the engine's info), an explicit one wins, and /v1/models reports it.
TEST(ServeBatching, GuidanceDefaultComesFromTheModelConfig) {
  Calls calls;
  auto engine = make_pipeline_engine(std::make_unique<RowDenoiser>(&calls, 2.5f));
  EXPECT_EQ(engine->info().default_cfg_scale, 2.5f);
  auto dflt = serve::parse_generation(R"({"prompt": "a coat"})", *engine);
  ASSERT_TRUE(std::holds_alternative<serve::ParsedGeneration>(dflt));
  EXPECT_EQ(std::get<serve::ParsedGeneration>(dflt).request.cfg_scale, 2.5f);
  auto expl = serve::parse_generation(R"({"prompt": "a coat", "cfg_scale": 6})", *engine);
  ASSERT_TRUE(std::holds_alternative<serve::ParsedGeneration>(expl));
  EXPECT_EQ(std::get<serve::ParsedGeneration>(expl).request.cfg_scale, 6.0f);
  EXPECT_NE(serve::models_json(engine->info()).find("\"cfg_scale\":2.5"), std::string::npos)
      << serve::models_json(engine->info());
}

// ---- the prompt cache: one entry per prompt text ------------------------------------------------

TEST(PromptCache, LruByBytes) {
  serve::PromptCache c(3000);
  auto e = std::make_shared<RowEmbedding>(std::vector<uint32_t>{1});
  c.put("a", e, 1000);
  c.put("b", e, 1000);
  c.put("c", e, 1000);
  EXPECT_EQ(c.bytes(), 3000);
  EXPECT_TRUE(c.get("a"));  // a is now the most recent: b is the least
  c.put("d", e, 1000);      // evicts b
  EXPECT_EQ(c.keys(), (std::vector<std::string>{"d", "a", "c"}));
  EXPECT_FALSE(c.get("b"));
  c.put("e", e, 2000);  // evicts c, then a (least recent first)
  EXPECT_EQ(c.keys(), (std::vector<std::string>{"e", "d"}));
  EXPECT_EQ(c.evictions(), 3);
  EXPECT_LE(c.bytes(), 3000);
  c.put("huge", e, 3001);  // larger than the whole cache: not stored, nothing evicted
  EXPECT_EQ(c.entries(), 2);
  EXPECT_EQ(c.hits(), 1);
  EXPECT_EQ(c.misses(), 1);
  serve::PromptCache off(0);
  off.put("a", e, 1);
  EXPECT_EQ(off.entries(), 0);
}

TEST(ServeBatching, PromptCachePerPrompt) {
  Calls calls;
  PipelineEngineOptions po;
  po.prompt_cache_bytes = 3000;  // RowDenoiser reports 1000 bytes per single-prompt embedding
  auto engine = make_pipeline_engine(std::make_unique<RowDenoiser>(&calls), po);
  auto first = run(*engine, {req("a red dress", 1, 4.0f, 2)});  // texts: the prompt, "blurry"
  ASSERT_TRUE(first[0].is_ok());
  EngineStats s = engine->stats();
  EXPECT_EQ(s.prompt_cache_misses, 2);
  EXPECT_EQ(s.prompt_cache_hits, 0);
  EXPECT_EQ(s.prompt_cache_entries, 2);
  EXPECT_EQ(s.prompt_cache_bytes, 2000);
  EXPECT_EQ(calls.encodes, 2);  // one encode per distinct text, not per row (4 rows)
  // A batch of a new prompt and the cached one: only the new text is encoded; the cached rows
  // give the same images.
  auto both = run(*engine, {req("a sneaker", 2, 4.0f, 1), req("a red dress", 1, 4.0f, 2)});
  ASSERT_TRUE(both[0].is_ok() && both[1].is_ok());
  EXPECT_EQ(both[1]->pixels, first[0]->pixels);
  s = engine->stats();
  EXPECT_EQ(calls.encodes, 3);
  EXPECT_EQ(s.prompt_cache_misses, 3);
  EXPECT_EQ(s.prompt_cache_hits, 2);  // "blurry" and "a red dress"
  EXPECT_EQ(s.prompt_cache_bytes, 3000);
  // Recency now: "a red dress", "blurry", "a sneaker". A fourth text evicts "a sneaker" only.
  run(*engine, {req("a bag", 3, 4.0f, 1)});
  s = engine->stats();
  EXPECT_EQ(s.prompt_cache_evictions, 1);
  EXPECT_EQ(s.prompt_cache_entries, 3);
  EXPECT_LE(s.prompt_cache_bytes, 3000);
  EXPECT_EQ(calls.encodes, 4);
  run(*engine, {req("a red dress", 4, 4.0f, 1)});  // still cached: no encode
  EXPECT_EQ(calls.encodes, 4);
  run(*engine, {req("a sneaker", 5, 4.0f, 1)});  // was evicted: encoded again
  EXPECT_EQ(calls.encodes, 5);
  s = engine->stats();
  EXPECT_EQ(s.prompt_cache_misses, 5);
  EXPECT_EQ(s.prompt_cache_hits, 6);
  EXPECT_EQ(s.prompt_cache_evictions, 2);
  EXPECT_LE(s.prompt_cache_bytes, 3000);
}

TEST(ServeBatching, ImagesIdenticalWithAndWithoutPromptCache) {
  const std::vector<ImageRequest> reqs = {req("a red dress", 1, 4.0f, 2), req("a bag", 5, 1.0f, 1),
                                          req("a red dress", 9, 7.5f, 1)};
  Calls c1, c2, c3;
  PipelineEngineOptions off;
  off.prompt_cache_bytes = 0;
  auto cached = make_pipeline_engine(std::make_unique<RowDenoiser>(&c1));
  auto uncached = make_pipeline_engine(std::make_unique<RowDenoiser>(&c2), off);
  auto legacy_den = std::make_unique<RowDenoiser>(&c3);
  legacy_den->set_concat(false);  // a Denoiser without concat(): whole batches are encoded
  auto legacy = make_pipeline_engine(std::move(legacy_den));
  for (int round = 0; round < 2; ++round) {
    auto a = run(*cached, reqs), b = run(*uncached, reqs), c = run(*legacy, reqs);
    for (size_t i = 0; i < reqs.size(); ++i) {
      ASSERT_TRUE(a[i].is_ok() && b[i].is_ok() && c[i].is_ok());
      EXPECT_EQ(a[i]->pixels, b[i]->pixels) << "request " << i;
      EXPECT_EQ(a[i]->pixels, c[i]->pixels) << "request " << i;
    }
  }
  EXPECT_EQ(uncached->stats().prompt_cache_entries, 0);
  EXPECT_EQ(uncached->stats().prompt_cache_hits, 0);
  EXPECT_EQ(cached->stats().prompt_cache_hits, 3);  // round 2: every distinct text
  EXPECT_EQ(c1.encodes, 3);
  EXPECT_EQ(c2.encodes, 6);
}

// The same with the real model (tests/fixtures/tiny-demo). The lockstep batching feeds every row
// exactly its solo inputs, but the CPU backend's kernels (oneDNN GEMM blocking depends on the
// batch) are not bitwise row-independent: batched rows differ from solo rows by float rounding
// (measured: max |diff| 6e-7 on images in [-1, 1], i.e. far below one 8-bit level).
constexpr float kRealModelBatchTolerance = 1e-4f;
// Runs each request alone, then all together; each must get its solo image. Returns the solo
// images.
// The pipeline engine over the tiny-demo fixture model (null when it is missing).
std::unique_ptr<ImageEngine> tiny_engine() {
  const std::string dir = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";
  if (!std::filesystem::exists(dir + "/model.safetensors")) return nullptr;
  auto model = load_denoiser(dir, 2);
  if (!model.is_ok()) return nullptr;
  return make_pipeline_engine(std::move(model).value());
}

std::vector<std::vector<float>> expect_batched_equals_solo(ImageEngine& engine,
                                                           const std::vector<ImageRequest>& reqs) {
  std::vector<std::vector<float>> solo;
  for (const auto& r : reqs) {
    auto out = run(engine, {r});
    EXPECT_TRUE(out[0].is_ok()) << out[0].status().to_string();
    solo.push_back(out[0].is_ok() ? out[0]->pixels : std::vector<float>());
  }
  auto together = run(engine, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_TRUE(together[i].is_ok()) << together[i].status().to_string();
    if (!together[i].is_ok() || together[i]->pixels.size() != solo[i].size()) continue;
    float max_diff = 0;
    for (size_t k = 0; k < solo[i].size(); ++k)
      max_diff = std::max(max_diff, std::abs(together[i]->pixels[k] - solo[i][k]));
    EXPECT_LE(max_diff, kRealModelBatchTolerance) << "request " << i << ": batched vs solo";
    std::printf("real model, request %zu: batched vs solo max |diff| = %.3g\n", i, max_diff);
  }
  return solo;
}

TEST(ServeBatching, RealModelBatchedImagesEqualSoloImages) {
  auto engine = tiny_engine();
  if (!engine) GTEST_SKIP() << "tiny-demo model missing or not loadable";
  const EngineInfo& info = engine->info();
  std::vector<ImageRequest> reqs = {req("a red dress", 1, 4.0f, 2), req("a sneaker", 77, 1.0f, 1),
                                    req("a bag", 5, 7.5f, 1), req("a coat", 9, 3.0f, 1)};
  reqs[3].refine_every = 1;  // refines its first call, the others do not: a mixed call
  for (auto& r : reqs) {
    r.width = info.width;
    r.height = info.height;
    r.steps = 2;
  }
  expect_batched_equals_solo(*engine, reqs);
}

TEST(ServeBatching, RealModelPromptCacheChangesNothing) {
  const std::string dir = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";
  if (!std::filesystem::exists(dir + "/model.safetensors")) GTEST_SKIP() << "no " << dir;
  auto m1 = load_denoiser(dir, 2), m2 = load_denoiser(dir, 2);
  if (!m1.is_ok() || !m2.is_ok()) GTEST_SKIP() << "model did not load";
  PipelineEngineOptions off;
  off.prompt_cache_bytes = 0;
  auto cached = make_pipeline_engine(std::move(m1).value());
  auto uncached = make_pipeline_engine(std::move(m2).value(), off);
  std::vector<ImageRequest> reqs = {req("a red dress", 1, 4.0f, 2), req("a bag", 5, 7.5f, 1)};
  for (auto& r : reqs) {
    r.width = r.height = 28;
    r.steps = 2;
  }
  for (int round = 0; round < 2; ++round) {
    auto a = run(*cached, reqs), b = run(*uncached, reqs);
    for (size_t i = 0; i < reqs.size(); ++i) {
      ASSERT_TRUE(a[i].is_ok()) << a[i].status().to_string();
      ASSERT_TRUE(b[i].is_ok()) << b[i].status().to_string();
      EXPECT_EQ(a[i]->pixels, b[i]->pixels) << "round " << round << " request " << i;
    }
  }
  const EngineStats s = cached->stats();
  EXPECT_EQ(s.prompt_cache_misses, 3);  // "a red dress", "a bag", "blurry"
  EXPECT_EQ(s.prompt_cache_hits, 3);
  // Each entry is one text's full prompt state (E, p, every block's K / V and sem gate).
  EXPECT_GT(s.prompt_cache_bytes, 3 * 32 * (128 + 2 * 2 * 128) * 4);
}

TEST(ServeBatching, RealModelGuidanceIntervalBatchedEqualsSolo) {
  // Requests whose calls alternate between 2n rows (guided) and n rows (outside their interval)
  // share calls with always-guided ones; each gets its solo image, and the interval changes it.
  auto engine = tiny_engine();
  if (!engine) GTEST_SKIP() << "tiny-demo model missing or not loadable";
  const EngineInfo& info = engine->info();
  std::vector<ImageRequest> reqs = {req("a red dress", 1, 4.0f, 2), req("a red dress", 1, 4.0f, 2),
                                    req("a bag", 5, 3.0f, 1), req("a coat", 9, 3.0f, 1)};
  reqs[1].cfg_sigma_lo = 0.5, reqs[1].cfg_sigma_hi = 20;  // = reqs[0] with an interval
  reqs[3].cfg_sigma_lo = 2, reqs[3].cfg_sigma_hi = 200;
  for (auto& r : reqs) {
    r.width = info.width;
    r.height = info.height;
    r.steps = 8;
  }
  const auto solo = expect_batched_equals_solo(*engine, reqs);
  ASSERT_EQ(solo[0].size(), solo[1].size());
  float changed = 0;
  for (size_t k = 0; k < solo[0].size(); ++k)
    changed = std::max(changed, std::abs(solo[0][k] - solo[1][k]));
  EXPECT_GT(changed, 1e-3f) << "the interval left the image unchanged";
}

TEST(ServeBatching, RealModelBackboneCacheBatchedEqualsSolo) {
  // Requests with step and block caches share calls with uncached ones (mixed calls: blocks run,
  // reusing rows overwritten) and with each other; alone, a cached request's reusing calls skip
  // the blocks. Each gets its solo image, and caching changes the image (it is not a no-op).
  auto engine = tiny_engine();
  if (!engine) GTEST_SKIP() << "tiny-demo model missing or not loadable";
  const EngineInfo& info = engine->info();
  std::vector<ImageRequest> reqs = {req("a red dress", 1, 4.0f, 2), req("a red dress", 1, 4.0f, 2),
                                    req("a bag", 5, 3.0f, 1), req("a coat", 9, 3.0f, 1),
                                    req("a shirt", 4, 3.0f, 1)};
  reqs[1].cache = *parse_cache_spec("step:0.1");  // = reqs[0] with a step cache
  reqs[2].cache = *parse_cache_spec("block:1,0,0.07");
  reqs[3].cache = *parse_cache_spec("step:0.2,0.2,0.9");
  reqs[3].cfg_sigma_lo = 0.5, reqs[3].cfg_sigma_hi = 20;  // row count changes between calls
  for (auto& r : reqs) {
    r.width = info.width;
    r.height = info.height;
    r.steps = 10;
  }
  const auto solo = expect_batched_equals_solo(*engine, reqs);
  ASSERT_EQ(solo[0].size(), solo[1].size());
  float changed = 0;
  for (size_t k = 0; k < solo[0].size(); ++k)
    changed = std::max(changed, std::abs(solo[0][k] - solo[1][k]));
  EXPECT_GT(changed, 1e-4f) << "the step cache left the image unchanged";
  auto out = run(*engine, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(out[i].is_ok());
    const ImageOutput& o = *out[i];
    EXPECT_EQ(o.backbone_blocks_total, 2 * 10) << i;  // tiny-demo depth 2, 10 calls
    if (reqs[i].cache.mode == CacheMode::kOff) {
      EXPECT_EQ(o.cache_reused_calls, 0) << i;
      EXPECT_EQ(o.backbone_blocks_run, o.backbone_blocks_total) << i;
    } else {
      EXPECT_GT(o.cache_reused_calls, 0) << i;
      EXPECT_LT(o.backbone_blocks_run, o.backbone_blocks_total) << i;
    }
  }
  const EngineStats st = engine->stats();
  EXPECT_LT(st.backbone_blocks_run, st.backbone_blocks_total);
  EXPECT_GT(st.cache_reused_calls, 0);
  // A block cache that leaves nothing to cache is refused by validate, naming the field.
  ImageRequest bad = reqs[0];
  bad.cache = *parse_cache_spec("block:1,1,0.1");
  const Status v = engine->validate(bad);
  EXPECT_EQ(v.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(v.message().rfind("cache", 0), 0u) << v.message();
}

}  // namespace
}  // namespace duet::testing

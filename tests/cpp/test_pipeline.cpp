// generate() on a fake denoiser: guidance math and batching, refine-schedule counting, seeding,
// img2img, cancellation, validation messages, and no heap allocation inside the sampler loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "diffusion/rng.h"
#include "diffusion/sampler.h"
#include "duet/pipeline.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

// ---- global allocation counter (counts every operator new in the process; also used by
// test_pipeline_reference.cpp for the real model) ----
std::atomic<long> g_duet_test_allocations{0};
static std::atomic<long>& g_allocations = g_duet_test_allocations;
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace duet {
namespace {

// Per-row conditioning value derived from the text.
float text_value(const std::string& s) { return 0.05f + 0.01f * static_cast<float>(s.size()); }

// The fake model: out = 0.3 x + v(text) * (1 + t / 1000) (+ 0.02 sin(i) when refining).
float fake_out(float x, float t, float v, bool refine, size_t i) {
  float o = 0.3f * x + v * (1.0f + t / 1000.0f);
  if (refine) o += 0.02f * std::sin(static_cast<float>(i));
  return o;
}

class FakeEmbedding : public PromptEmbedding {
 public:
  std::vector<float> values;
  int batch() const override { return static_cast<int>(values.size()); }
};

class FakeDenoiser : public Denoiser {
 public:
  DenoiserInfo inf;
  std::vector<std::string> encoded;
  int encode_calls = 0, prepare_calls = 0, prepared_batch = 0;
  std::vector<int> batches;
  std::vector<bool> refines;
  std::vector<float> ts;
  std::vector<long> alloc_at_call;
  bool check_x_pairs = true;
  bool same_t = true;  // every row of a call at one timestep (one request per call)

  FakeDenoiser() {
    inf.name = "fake";
    inf.channels = 1;
    inf.height = 8;
    inf.width = 8;
    inf.patch = 2;
    inf.refiner_stride = 4;
    inf.refine_every = 3;
  }
  const DenoiserInfo& info() const override { return inf; }
  Result<std::unique_ptr<PromptEmbedding>> encode(const std::vector<std::string>& texts) override {
    ++encode_calls;
    encoded = texts;
    auto e = std::make_unique<FakeEmbedding>();
    for (const auto& s : texts) e->values.push_back(text_value(s));
    return std::unique_ptr<PromptEmbedding>(std::move(e));
  }
  Status prepare(int batch, int, int) override {
    ++prepare_calls;
    prepared_batch = batch;
    batches.reserve(4096);
    refines.reserve(4096);
    ts.reserve(4096);
    alloc_at_call.reserve(4096);
    return Status::ok();
  }
  Status denoise(const float* x, const float* t, int batch, int height, int width,
                 const PromptEmbedding& prompts, bool refine, float* out) override {
    alloc_at_call.push_back(g_allocations.load());
    batches.push_back(batch);
    refines.push_back(refine);
    ts.push_back(t[0]);
    const auto& vals = static_cast<const FakeEmbedding&>(prompts).values;
    const size_t img = static_cast<size_t>(inf.channels) * height * width;
    for (int b = 0; b < batch; ++b) {
      if (same_t && t[b] != t[0]) return internal_error("t not broadcast");
      for (size_t i = 0; i < img; ++i)
        out[b * img + i] = fake_out(x[b * img + i], t[b], vals[b], refine, i);
    }
    return Status::ok();
  }
};

GenerateParams basic_params() {
  GenerateParams p;
  p.prompts = {"a photo of an ankle boot"};
  p.negative_prompt = "blurry";
  p.steps = 10;
  p.seed = 77;
  return p;
}

TEST(Pipeline, GuidanceMathMatchesManualLoop) {
  for (const char* sampler : {"dpmpp_2m", "ddim", "euler_a", "heun"}) {
    FakeDenoiser fake;
    GenerateParams p = basic_params();
    p.sampler = sampler;
    p.n = 2;
    p.cfg_scale = 4.5f;
    auto r = generate(fake, p);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();

    // The same run by hand on the sampler API.
    const size_t img = 64, N = 2 * img;
    diffusion::ScheduleParams sp;
    auto sched = diffusion::NoiseSchedule::create(sp);
    diffusion::SamplerParams smp;
    smp.name = sampler;
    smp.steps = 10;
    if (smp.name == "ddim") {
      smp.spacing = "leading";
      smp.steps_offset = 1;
      smp.set_alpha_to_one = 0;
    }
    auto sam = diffusion::make_sampler(smp, *sched, N);
    ASSERT_TRUE(sam.is_ok());
    diffusion::TorchNoiseSource noise(77);
    std::vector<float> x(N);
    noise.generator().randn(x.data(), N);
    for (size_t i = 0; i < N; ++i) EXPECT_EQ(r->x_T.f32()[i], x[i]);
    for (auto& v : x) v *= (*sam)->init_noise_sigma();
    const float vc = text_value(p.prompts[0]), vu = text_value(p.negative_prompt);
    int call = 0;
    auto fn = [&](const float* in, float t, float* out) -> Status {
      const bool refine = (call + 1) % 3 == 0;
      ++call;
      for (size_t i = 0; i < N; ++i) {
        const float c = fake_out(in[i], t, vc, refine, i % img);
        const float u = fake_out(in[i], t, vu, refine, i % img);
        out[i] = u + 4.5f * (c - u);
      }
      return Status::ok();
    };
    ASSERT_TRUE((*sam)->run(x.data(), fn, noise).is_ok());
    float max_diff = 0;
    for (size_t i = 0; i < N; ++i) {
      max_diff = std::max(max_diff, std::fabs(r->samples.f32()[i] - x[i]));
      EXPECT_EQ(r->images.f32()[i], std::clamp(x[i], -1.0f, 1.0f));
    }
    EXPECT_EQ(max_diff, 0.0f) << sampler;

    // One batch of 2n per call: cond rows first, then the negative prompt.
    EXPECT_EQ(fake.encode_calls, 1);
    EXPECT_EQ(fake.prepare_calls, 1);
    EXPECT_EQ(fake.prepared_batch, 4);
    EXPECT_EQ(fake.encoded,
              (std::vector<std::string>{p.prompts[0], p.prompts[0], "blurry", "blurry"}));
    for (int b : fake.batches) EXPECT_EQ(b, 4);
    EXPECT_EQ(r->batch, 4);
    EXPECT_EQ(r->model_evaluations, (*sam)->num_calls());
    EXPECT_EQ(r->seeds, (std::vector<int64_t>{77, 77}));
  }
}

TEST(Pipeline, CfgScaleOneSkipsUnconditionalHalf) {
  FakeDenoiser fake;
  GenerateParams p = basic_params();
  p.cfg_scale = 1.0f;
  p.n = 3;
  auto r = generate(fake, p);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(fake.encoded.size(), 3u);
  for (const auto& s : fake.encoded) EXPECT_EQ(s, p.prompts[0]);
  EXPECT_EQ(fake.prepared_batch, 3);
  for (int b : fake.batches) EXPECT_EQ(b, 3);
  EXPECT_EQ(r->batch, 3);
}

TEST(Pipeline, PerImagePrompts) {
  FakeDenoiser fake;
  GenerateParams p = basic_params();
  p.n = 2;
  p.prompts = {"one", "two two"};
  auto r = generate(fake, p);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(fake.encoded, (std::vector<std::string>{"one", "two two", "blurry", "blurry"}));
  auto ip = image_parameters(p, *r, fake.info(), 1);
  EXPECT_EQ(ip.prompt, "two two");
  p.prompts = {"a", "b", "c"};
  auto bad = generate(fake, p);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("3 prompts for n = 2"), std::string::npos);
}

struct RefineCase {
  const char* sampler;
  int steps;
  RefineMode mode;
  int every;
  std::vector<int> steps_list;
  int expect_calls;
  std::vector<int> expect_refined;
};

TEST(Pipeline, RefineScheduleCounting) {
  const std::vector<RefineCase> cases = {
      {"dpmpp_2m", 20, RefineMode::kEvery, 3, {}, 20, {2, 5, 8, 11, 14, 17}},
      {"dpmpp_2m", 20, RefineMode::kEvery, -1, {}, 20, {2, 5, 8, 11, 14, 17}},  // config: 3
      {"ddim", 10, RefineMode::kEvery, 1, {}, 10, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
      {"ddim", 10, RefineMode::kEvery, 0, {}, 10, {}},
      {"ddim", 10, RefineMode::kEvery, 4, {}, 10, {3, 7}},
      {"euler", 5, RefineMode::kAll, 3, {}, 5, {0, 1, 2, 3, 4}},
      {"euler", 5, RefineMode::kNone, 3, {}, 5, {}},
      {"dpmpp_2m", 10, RefineMode::kSteps, 3, {3, 6, 9}, 10, {2, 5, 8}},
      // heun: 2n-1 model calls; the schedule counts model calls, not solver steps.
      {"heun", 10, RefineMode::kEvery, 3, {}, 19, {2, 5, 8, 11, 14, 17}},
      {"dpm2", 10, RefineMode::kSteps, 3, {1, 19}, 19, {0, 18}},
  };
  for (const auto& c : cases) {
    FakeDenoiser fake;
    GenerateParams p = basic_params();
    p.sampler = c.sampler;
    p.steps = c.steps;
    p.refine = c.mode;
    p.refine_every = c.every;
    p.refine_steps = c.steps_list;
    auto r = generate(fake, p);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->num_calls, c.expect_calls) << c.sampler;
    EXPECT_EQ(r->model_evaluations, c.expect_calls) << c.sampler;
    EXPECT_EQ(r->refined_calls, c.expect_refined) << c.sampler << " every " << c.every;
    EXPECT_EQ(r->refiner_evaluations, static_cast<int>(c.expect_refined.size()));
    int seen = 0;
    for (bool b : fake.refines) seen += b;
    EXPECT_EQ(seen, r->refiner_evaluations);
  }
  FakeDenoiser fake;
  GenerateParams p = basic_params();
  p.sampler = "heun";
  p.refine = RefineMode::kSteps;
  p.refine_steps = {3, 25};
  auto r = generate(fake, p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("refine step 25 is outside 1..19"), std::string::npos)
      << r.status().message();
}

TEST(Pipeline, ParseRefineSteps) {
  auto a = parse_refine_steps("9, 3,6");
  ASSERT_TRUE(a.is_ok());
  EXPECT_EQ(*a, (std::vector<int>{3, 6, 9}));
  EXPECT_FALSE(parse_refine_steps("").is_ok());
  EXPECT_FALSE(parse_refine_steps("3,,6").is_ok());
  EXPECT_FALSE(parse_refine_steps("0,3").is_ok());
  EXPECT_FALSE(parse_refine_steps("3,3").is_ok());
  EXPECT_FALSE(parse_refine_steps("3;6").is_ok());
  EXPECT_FALSE(parse_refine_steps("-1").is_ok());
}

TEST(Pipeline, SeedsAreReportedAndReproducible) {
  FakeDenoiser fake;
  GenerateParams p = basic_params();
  p.seed = -1;
  p.n = 2;
  auto a = generate(fake, p);
  ASSERT_TRUE(a.is_ok());
  EXPECT_GE(a->seed, 0);
  EXPECT_EQ(a->seeds, (std::vector<int64_t>{a->seed, a->seed}));
  p.seed = a->seed;
  auto b = generate(fake, p);
  ASSERT_TRUE(b.is_ok());
  for (int64_t i = 0; i < a->images.numel(); ++i) ASSERT_EQ(a->images.f32()[i], b->images.f32()[i]);
  // x_T is one randn of the whole [n, C, H, W] batch.
  const auto ref = diffusion::torch_randn(static_cast<uint64_t>(a->seed), 128);
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(a->x_T.f32()[i], ref[i]);
  // philox is a different, equally reproducible stream.
  p.rng = "philox";
  auto c = generate(fake, p);
  auto d = generate(fake, p);
  ASSERT_TRUE(c.is_ok() && d.is_ok());
  EXPECT_NE(c->x_T.f32()[0], a->x_T.f32()[0]);
  for (int64_t i = 0; i < c->images.numel(); ++i) ASSERT_EQ(c->images.f32()[i], d->images.f32()[i]);
}

TEST(Pipeline, NoHeapAllocationInsideTheLoop) {
  for (const char* sampler : {"dpmpp_2m", "euler_a", "dpmpp_2m_sde", "heun", "unipc", "lms"}) {
    FakeDenoiser fake;
    GenerateParams p = basic_params();
    p.sampler = sampler;
    p.steps = 12;
    const long before = g_allocations.load();
    auto r = generate(fake, p);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_GE(fake.alloc_at_call.size(), 3u);
    EXPECT_GT(fake.alloc_at_call.front(), before);  // the counter does see the setup
    EXPECT_EQ(fake.alloc_at_call.back(), fake.alloc_at_call.front())
        << sampler << ": heap allocations between the first and the last model call";
  }
}

TEST(Pipeline, Img2Img) {
  FakeDenoiser fake;
  GenerateParams p = basic_params();
  p.sampler = "ddim";
  p.init_image.assign(64, 0.25f);
  p.strength = 0.0;
  auto r = generate(fake, p);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->model_evaluations, 0);
  EXPECT_EQ(r->images.f32()[5], 0.25f);
  p.strength = 0.5;
  fake.refines.clear();
  auto h = generate(fake, p);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->start_call, 5);
  EXPECT_EQ(h->model_evaluations, 5);
  // The refine schedule uses absolute call indices: calls 5..9 -> refine at 5 and 8.
  EXPECT_EQ(h->refined_calls, (std::vector<int>{5, 8}));
  p.init_image.resize(10);
  auto bad = generate(fake, p);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("1x8x8"), std::string::npos) << bad.status().message();
  p.init_image.assign(64, 0.0f);
  p.strength = 1.5;
  EXPECT_FALSE(generate(fake, p).is_ok());
}

TEST(Pipeline, CancelAndProgress) {
  FakeDenoiser fake;
  GenerateParams p = basic_params();
  std::atomic<bool> cancel{false};
  std::vector<int> seen;
  auto r = generate(
      fake, p,
      [&](const StepProgress& s) {
        seen.push_back(s.call);
        EXPECT_EQ(s.total, 10);
        if (s.call == 4) cancel = true;
      },
      &cancel);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(fake.batches.size(), 4u);
}

// Two GenerateRuns with different samplers, step counts, seeds and guidance, driven by hand
// through shared model calls (rows concatenated, as the server batches them), give exactly
// generate()'s images; their calls are shared while both run and the longer one finishes alone.
TEST(GenerateRun, SharedCallsMatchGenerate) {
  GenerateParams a = basic_params(), b = basic_params();
  b.prompts = {"a sneaker"};
  b.sampler = "euler_a";  // stochastic: draws its own noise between calls
  b.steps = 7;
  b.seed = 5;
  b.cfg_scale = 7.5f;
  b.n = 2;
  FakeDenoiser solo;
  auto ra = generate(solo, a), rb = generate(solo, b);
  ASSERT_TRUE(ra.is_ok() && rb.is_ok());

  FakeDenoiser fake;
  fake.same_t = false;  // the runs are at different steps of different schedules
  auto run_a = GenerateRun::start(fake.info(), a), run_b = GenerateRun::start(fake.info(), b);
  ASSERT_TRUE(run_a.is_ok() && run_b.is_ok());
  GenerateRun* runs[2] = {run_a->get(), run_b->get()};
  EXPECT_EQ(runs[0]->rows(), 2);
  EXPECT_EQ(runs[1]->rows(), 4);
  EXPECT_EQ(runs[1]->texts(),
            (std::vector<std::string>{"a sneaker", "a sneaker", "blurry", "blurry"}));
  const size_t img = runs[0]->row_floats();
  std::vector<float> x(6 * img), out(6 * img), t(6);
  std::vector<int> shared_rows;
  while (!runs[0]->done() || !runs[1]->done()) {
    // A call has one refine flag: runs whose next call disagrees go separately.
    for (bool refine : {false, true}) {
      std::vector<std::string> texts;
      int rows = 0;
      for (GenerateRun* r : runs) {
        if (r->done() || r->refine_next() != refine) continue;
        r->write_input(x.data() + rows * img, t.data() + rows);
        texts.insert(texts.end(), r->texts().begin(), r->texts().end());
        rows += r->rows();
      }
      if (rows == 0) continue;
      auto emb = fake.encode(texts);
      ASSERT_TRUE(emb.is_ok());
      ASSERT_TRUE(fake.denoise(x.data(), t.data(), rows, 8, 8, **emb, refine, out.data()).is_ok());
      shared_rows.push_back(rows);
      rows = 0;
      for (GenerateRun* r : runs) {
        if (r->done() || r->refine_next() != refine) continue;
        ASSERT_TRUE(r->complete(out.data() + rows * img).is_ok());
        rows += r->rows();
      }
    }
  }
  // Both refine on calls 2, 5, 8: all 7 of b's calls are shared, a runs calls 7-9 alone.
  EXPECT_EQ(shared_rows, (std::vector<int>{6, 6, 6, 6, 6, 6, 6, 2, 2, 2}));
  auto fa = runs[0]->finish(), fb = runs[1]->finish();
  ASSERT_TRUE(fa.is_ok() && fb.is_ok());
  for (int64_t i = 0; i < ra->images.numel(); ++i)
    ASSERT_EQ(fa->images.f32()[i], ra->images.f32()[i]);
  for (int64_t i = 0; i < rb->images.numel(); ++i)
    ASSERT_EQ(fb->images.f32()[i], rb->images.f32()[i]);
  EXPECT_EQ(fa->model_evaluations, 10);
  EXPECT_EQ(fb->refined_calls, rb->refined_calls);
}

TEST(GenerateRun, MisuseIsAnErrorNotACrash) {
  FakeDenoiser fake;
  GenerateParams p = basic_params();
  p.steps = 1;
  auto run = GenerateRun::start(fake.info(), p);
  ASSERT_TRUE(run.is_ok());
  GenerateRun& r = **run;
  auto early = r.finish();
  EXPECT_EQ(early.status().code(), StatusCode::kInternal);
  std::vector<float> x(2 * r.row_floats()), t(2);
  r.write_input(x.data(), t.data());
  EXPECT_TRUE(r.complete(x.data()).is_ok());
  EXPECT_TRUE(r.done());
  EXPECT_FALSE(r.complete(x.data()).is_ok());  // past the last call
  EXPECT_EQ(r.cancelled().code(), StatusCode::kCancelled);
  EXPECT_TRUE(r.finish().is_ok());
  EXPECT_FALSE(r.finish().is_ok());  // spent
  p.sampler = "nope";
  auto bad = GenerateRun::start(fake.info(), p);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("unknown sampler"), std::string::npos);
}

TEST(Pipeline, ValidationMessages) {
  FakeDenoiser fake;
  auto msg = [&](GenerateParams p) {
    auto r = generate(fake, p);
    return r.is_ok() ? std::string("ok") : r.status().message();
  };
  GenerateParams p = basic_params();
  p.sampler = "nope";
  EXPECT_NE(msg(p).find("unknown sampler 'nope'"), std::string::npos);
  p = basic_params();
  p.steps = 0;
  EXPECT_NE(msg(p).find("steps must be in [1, 1000]"), std::string::npos);
  p = basic_params();
  p.width = 10;
  EXPECT_NE(msg(p).find("width 10 is not a multiple of 4"), std::string::npos) << msg(p);
  p = basic_params();
  p.height = 12;
  p.width = 16;
  EXPECT_EQ(msg(p), "ok");
  p = basic_params();
  p.n = 0;
  EXPECT_NE(msg(p).find("n must be in [1, 64]"), std::string::npos);
  p.n = 65;
  EXPECT_NE(msg(p).find("got 65"), std::string::npos);
  p = basic_params();
  p.prompts.clear();
  EXPECT_NE(msg(p).find("no prompt"), std::string::npos);
  p = basic_params();
  p.karras = true;
  p.sampler = "ddim";
  EXPECT_NE(msg(p).find("Karras"), std::string::npos);
  p = basic_params();
  p.rng = "cuda";
  EXPECT_NE(msg(p).find("rng must be torch or philox"), std::string::npos);
  p = basic_params();
  p.cfg_scale = NAN;
  EXPECT_NE(msg(p).find("cfg scale"), std::string::npos);
}

TEST(Pipeline, VPredictionAndOtherSizes) {
  FakeDenoiser fake;
  fake.inf.prediction_type = "v_prediction";
  fake.inf.beta_schedule = "scaled_linear";
  GenerateParams p = basic_params();
  p.width = 16;
  p.height = 4;
  auto r = generate(fake, p);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->images.shape(), (Shape{1, 1, 4, 16}));
  fake.inf.supports_other_sizes = false;
  EXPECT_FALSE(generate(fake, p).is_ok());
}

TEST(Pipeline, ImageParametersRoundTrip) {
  FakeDenoiser fake;
  GenerateParams p = basic_params();
  p.n = 2;
  p.karras = true;
  p.cfg_scale = 7.5f;
  p.refine = RefineMode::kSteps;
  p.refine_steps = {3, 6, 9};
  auto r = generate(fake, p);
  ASSERT_TRUE(r.is_ok());
  const std::string text = format_parameters(image_parameters(p, *r, fake.info(), 1));
  EXPECT_EQ(text,
            "a photo of an ankle boot\nNegative prompt: blurry\nSteps: 10, Sampler: dpmpp_2m, "
            "Schedule type: Karras, CFG scale: 7.5, Seed: 77, Size: 8x8, Model: fake, "
            "Refine: \"steps 3,6,9\", RNG: torch, Batch size: 2, Batch pos: 1, Version: duet 0.1");
  auto back = parse_parameters(text);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back->get("Refine"), "steps 3,6,9");
  EXPECT_EQ(*back->get("Seed"), "77");
  GenerateParams q = basic_params();
  EXPECT_EQ(refine_description(q, 3), "every 3");
  q.refine_every = 0;
  EXPECT_EQ(refine_description(q, 3), "none");
}

}  // namespace
}  // namespace duet

// make_fake_engine(): a deterministic ImageEngine for API tests, the web UI test and load tests.
#include <chrono>
#include <cmath>
#include <thread>

#include "duet/serve_engine.h"
#include "serve/prompt_cache.h"

namespace duet {

namespace {

uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class FakeEmbedding : public PromptEmbedding {
 public:
  explicit FakeEmbedding(int b) : b_(b) {}
  int batch() const override { return b_; }

 private:
  int b_;
};

class FakeEngine : public ImageEngine {
 public:
  explicit FakeEngine(const FakeEngineOptions& o) : o_(o), cache_(o.prompt_cache_bytes) {
    info_.model = o.model;
    info_.channels = o.channels;
    info_.width = o.width;
    info_.height = o.height;
    info_.stride = o.stride;
    info_.samplers = {"ddim", "ddpm", "dpmpp_2m", "euler", "euler_a", "heun", "unipc"};
    info_.default_sampler = "dpmpp_2m";
  }

  const EngineInfo& info() const override { return info_; }
  Status validate(const ImageRequest&) const override { return Status::ok(); }

  std::vector<Result<ImageOutput>> run_batch(const std::vector<EngineJob>& jobs) override {
    return run_batch_continuously(jobs);
  }

  // Every running request takes one step per round; queued ones join between rounds and each
  // leaves when its steps are done.
  void run_continuous(const std::vector<EngineJob>& jobs, BatchFeed& feed) override {
    using Clock = std::chrono::steady_clock;
    struct Live {
      EngineJob job;
      ImageOutput out;
      Status status;  // failed or cancelled
      int step = 0;
      Clock::time_point start;
    };
    std::vector<Live> live;
    auto join = [&](const EngineJob& j) {
      Live l;
      l.job = j;
      l.start = Clock::now();
      const ImageRequest& r = *j.request;
      for (const std::string* text : {&r.prompt, &r.negative_prompt})  // one entry per prompt
        if (!cache_.get(*text))
          cache_.put(*text, std::make_shared<FakeEmbedding>(1), o_.prompt_bytes);
      if (!o_.fail_marker.empty() && r.prompt.find(o_.fail_marker) != std::string::npos)
        l.status = internal_error("fake engine: injected fault for this prompt");
      live.push_back(std::move(l));
    };
    for (const EngineJob& j : jobs) join(j);
    for (;;) {
      int images = 0;
      for (size_t i = 0; i < live.size();) {
        Live& l = live[i];
        const int steps = l.job.request->steps;
        if (l.status.is_ok() && l.step < steps && l.job.cancel && l.job.cancel->load())
          l.status = cancelled("generation cancelled after " + std::to_string(l.step) + " of " +
                               std::to_string(steps) + " steps");
        if (!l.status.is_ok() || l.step >= steps) {
          Result<ImageOutput> result = l.status;
          if (l.status.is_ok()) {
            render(*l.job.request, &l.out);
            l.out.timings.denoise_s = l.out.timings.total_s =
                std::chrono::duration<double>(Clock::now() - l.start).count();
            result = std::move(l.out);
          }
          feed.finished(l.job, std::move(result));
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
        } else {
          images += l.job.request->n;
          ++i;
        }
      }
      for (const EngineJob& j : feed.admit(images)) join(j);
      if (live.empty()) return;
      int rows = 0;
      for (const Live& l : live) {
        const ImageRequest& r = *l.job.request;
        if (l.status.is_ok()) rows += r.cfg_scale != 1.0f ? 2 * r.n : r.n;
      }
      if (rows == 0) continue;  // joined and failed at once: reported next round
      evaluations_.fetch_add(1);
      rows_.fetch_add(rows);
      const double ms = o_.step_ms + o_.row_ms * rows;
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(ms * 1000)));
      for (Live& l : live) {
        if (!l.status.is_ok()) continue;
        ++l.step;
        l.out.model_evaluations++;
        if (l.job.progress) l.job.progress(l.step, l.job.request->steps);
      }
    }
  }

  EngineStats stats() const override {
    EngineStats s;
    s.denoiser_evaluations = evaluations_.load();
    s.denoiser_rows = rows_.load();
    s.prompt_cache_hits = cache_.hits();
    s.prompt_cache_misses = cache_.misses();
    s.prompt_cache_bytes = cache_.bytes();
    s.prompt_cache_entries = cache_.entries();
    s.prompt_cache_evictions = cache_.evictions();
    return s;
  }

 private:
  void render(const ImageRequest& r, ImageOutput* o) const {
    const int C = info_.channels, H = r.height, W = r.width;
    o->n = r.n;
    o->channels = C;
    o->width = W;
    o->height = H;
    o->pixels.resize(static_cast<size_t>(r.n) * C * H * W);
    char cfg[32];
    std::snprintf(cfg, sizeof cfg, "%.6g", r.cfg_scale);
    const std::string what = r.prompt + '\0' + r.negative_prompt + '\0' + std::to_string(r.seed) +
                             '\0' + cfg + '\0' + std::to_string(r.steps) + r.sampler + '\0' +
                             std::to_string(r.refine_every) + (r.karras ? "k" : "");
    uint64_t base = fnv1a(what);
    // img2img / inpainting inputs change the images too (hashed by value).
    auto hash_floats = [&](const std::shared_ptr<const std::vector<float>>& v) {
      if (!v) return;
      base = fnv1a(std::string(reinterpret_cast<const char*>(v->data()), v->size() * sizeof(float)),
                   base);
    };
    hash_floats(r.init_image);
    hash_floats(r.mask);
    if (r.init_image) base = fnv1a(std::to_string(r.strength), base);
    for (int i = 0; i < r.n; ++i) {
      const uint64_t h = splitmix(base + static_cast<uint64_t>(i));
      const float fx = 0.05f + (h & 0xff) / 1200.0f, fy = 0.05f + ((h >> 8) & 0xff) / 1200.0f;
      for (int c = 0; c < C; ++c) {
        const float phase = ((h >> (16 + 8 * c)) & 0xff) / 40.0f;
        for (int y = 0; y < H; ++y)
          for (int x = 0; x < W; ++x) {
            const uint64_t px = splitmix(h ^ (static_cast<uint64_t>(c * H + y) * W + x));
            const float noise = static_cast<float>(px >> 40) / static_cast<float>(1 << 24);
            const float v = 0.8f * std::sin(fx * x * 6.2831f + fy * y * 3.1f + phase) +
                            0.2f * (2.0f * noise - 1.0f);
            o->pixels[((static_cast<size_t>(i) * C + c) * H + y) * W + x] = v;
          }
      }
      o->seeds.push_back(r.seed);
      ImageParameters p;
      p.prompt = r.prompt;
      p.negative_prompt = r.negative_prompt;
      p.set("Steps", std::to_string(r.steps));
      p.set("Sampler", r.sampler);
      p.set("CFG scale", cfg);
      p.set("Seed", std::to_string(r.seed));
      p.set("Size", std::to_string(W) + "x" + std::to_string(H));
      p.set("Model", info_.model);
      p.set("Refine", r.refine_every > 0 ? "every " + std::to_string(r.refine_every) : "none");
      p.set("Batch pos", std::to_string(i));
      if (r.karras) p.set("Schedule type", "Karras");
      if (r.init_image) p.set("Denoising strength", std::to_string(r.strength).substr(0, 4));
      if (r.mask) p.set("Mask", "latent blend");
      o->parameters.push_back(std::move(p));
    }
  }

  FakeEngineOptions o_;
  EngineInfo info_;
  serve::PromptCache cache_;
  std::atomic<int64_t> evaluations_{0}, rows_{0};
};

}  // namespace

std::unique_ptr<ImageEngine> make_fake_engine(const FakeEngineOptions& opts) {
  return std::make_unique<FakeEngine>(opts);
}

}  // namespace duet

// make_pipeline_engine(): the generation pipeline behind the ImageEngine interface, with dynamic
// batching done underneath generate(): every request of a batch runs its own, unmodified
// generate() (own seed, x_T, sampler state, guidance) in its own thread against a proxy Denoiser;
// the proxies meet at a barrier on every model call and one participant runs a single batched
// Denoiser::denoise over all their rows (prompts concatenated in the same row order). A
// request's rows therefore see exactly the inputs they would see alone; its images are identical
// whenever the model's per-row output does not depend on the other rows of the batch.
//
// Prompts: every distinct text is encoded alone (encode({text})) and kept in the LRU prompt
// cache; a group's per-row prompt state is assembled from those entries (Denoiser::concat), so a
// cached prompt is never re-encoded and a row's prompt state is the same whichever batch it is
// in and whether or not the cache holds it. Memory: with a cap, a round's rows are split into
// groups whose planned model buffers fit it (Denoiser::estimate_bytes).
#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "diffusion/sampler.h"
#include "duet/pipeline.h"
#include "duet/serve_engine.h"
#include "serve/prompt_cache.h"

namespace duet {
namespace {

class ProxyEmbedding : public PromptEmbedding {
 public:
  explicit ProxyEmbedding(int b) : b_(b) {}
  int batch() const override { return b_; }

 private:
  int b_;
};

struct Counters {
  std::atomic<int64_t> evaluations{0}, rows{0}, memory_refused{0};
};

// The barrier that merges the participants' denoiser calls.
class Lockstep {
 public:
  // max_rows(h, w): the most rows one model call may take at that size (memory cap).
  Lockstep(Denoiser& real, serve::PromptCache& cache, int64_t bytes_per_row, int participants,
           Counters& counters, std::function<int(int, int)> max_rows)
      : real_(real),
        cache_(cache),
        bytes_per_row_(bytes_per_row),
        slots_(participants),
        active_(participants),
        counters_(counters),
        max_rows_(std::move(max_rows)) {}

  void set_texts(int i, std::vector<std::string> texts) {
    std::lock_guard<std::mutex> lock(mu_);
    slots_[i].texts = std::move(texts);
  }

  Status denoise(int i, const float* x, const float* t, int batch, int h, int w, bool refine,
                 float* out) {
    std::unique_lock<std::mutex> lock(mu_);
    Slot& s = slots_[i];
    s.x = x, s.t = t, s.batch = batch, s.h = h, s.w = w, s.refine = refine, s.out = out;
    s.submitted = true;
    if (slots_.size() == 1) {  // inline: the lone participant runs on the engine thread itself
      run_round();
      return s.status;
    }
    const uint64_t my_round = round_;
    exec_cv_.notify_one();
    cv_.wait(lock, [&] { return round_ != my_round; });
    return s.status;
  }

  // The participant left generate() (finished, failed or cancelled).
  void finish(int i) {
    std::unique_lock<std::mutex> lock(mu_);
    slots_[i].done = true;
    --active_;
    exec_cv_.notify_one();
  }

  // The executor: runs every real model call on the calling thread (the engine thread) until
  // all participants have finished. The model runtime is used from this one thread only.
  void execute() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      exec_cv_.wait(lock, [&] { return active_ == 0 || round_ready(); });
      if (active_ == 0) return;
      run_round();
    }
  }

 private:
  struct Slot {
    std::vector<std::string> texts;
    bool submitted = false, done = false;
    const float* x = nullptr;
    const float* t = nullptr;
    int batch = 0, h = 0, w = 0;
    bool refine = false;
    float* out = nullptr;
    Status status;
  };

  bool round_ready() const {
    int submitted = 0;
    for (const Slot& s : slots_) submitted += s.submitted ? 1 : 0;
    return submitted > 0 && submitted >= active_;
  }

  // Called with mu_ held once every active participant has submitted; they are all blocked in
  // cv_.wait meanwhile, so the slots cannot change under us.
  void run_round() {
    std::vector<bool> handled(slots_.size(), false);
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (!slots_[i].submitted || handled[i]) continue;
      std::vector<int> group;
      const int cap = max_rows_ ? max_rows_(slots_[i].h, slots_[i].w) : 0;  // 0 = no cap
      int rows = 0;
      for (size_t j = i; j < slots_.size(); ++j) {
        const Slot &a = slots_[i], &b = slots_[j];
        if (b.submitted && !handled[j] && a.h == b.h && a.w == b.w && a.refine == b.refine &&
            (group.empty() || cap <= 0 || rows + b.batch <= cap)) {
          group.push_back(static_cast<int>(j));
          handled[j] = true;
          rows += b.batch;
        }
      }
      Status st = run_group(group);
      if (!st.is_ok() && group.size() > 1) {
        for (int j : group) slots_[j].status = run_group({j});  // isolate the failing request
      } else {
        for (int j : group) slots_[j].status = st;
      }
    }
    for (Slot& s : slots_) s.submitted = false;
    ++round_;
    cv_.notify_all();
  }

  Status run_group(const std::vector<int>& group) {
    const Slot& first = slots_[group[0]];
    const int h = first.h, w = first.w;
    int rows = 0;
    std::vector<std::string> texts;
    for (int j : group) {
      rows += slots_[j].batch;
      texts.insert(texts.end(), slots_[j].texts.begin(), slots_[j].texts.end());
    }
    if (static_cast<int>(texts.size()) != rows)
      return internal_error("lockstep batch: texts do not match the rows");
    // Within a batch the same composition recurs every step: assemble it once.
    std::shared_ptr<PromptEmbedding>& memo = memo_[serve::prompt_key(texts)];
    if (!memo) {
      auto e = assemble(texts);
      if (!e.is_ok()) return e.status();
      memo = std::move(e).value();
    }
    const std::shared_ptr<PromptEmbedding> emb = memo;
    if (prepared_rows_ != rows || prepared_h_ != h || prepared_w_ != w) {
      DUET_RETURN_IF_ERROR(real_.prepare(rows, h, w));
      prepared_rows_ = rows, prepared_h_ = h, prepared_w_ = w;
    }
    const size_t img = static_cast<size_t>(real_.info().channels) * h * w;
    if (group.size() == 1) {
      DUET_RETURN_IF_ERROR(
          real_.denoise(first.x, first.t, rows, h, w, *emb, first.refine, first.out));
    } else {
      x_.resize(img * rows);
      out_.resize(img * rows);
      t_.resize(rows);
      size_t r = 0;
      for (int j : group) {
        const Slot& s = slots_[j];
        std::memcpy(x_.data() + r * img, s.x, img * s.batch * sizeof(float));
        std::memcpy(t_.data() + r, s.t, s.batch * sizeof(float));
        r += s.batch;
      }
      DUET_RETURN_IF_ERROR(
          real_.denoise(x_.data(), t_.data(), rows, h, w, *emb, first.refine, out_.data()));
      r = 0;
      for (int j : group) {
        const Slot& s = slots_[j];
        std::memcpy(s.out, out_.data() + r * img, img * s.batch * sizeof(float));
        r += s.batch;
      }
    }
    counters_.evaluations.fetch_add(1);
    counters_.rows.fetch_add(rows);
    return Status::ok();
  }

  // The batch's prompt state, one row per text: each distinct text from the cache or encoded
  // alone (and cached), then concatenated. A denoiser without concat() gets the whole batch
  // encoded at once, uncached.
  Result<std::shared_ptr<PromptEmbedding>> assemble(const std::vector<std::string>& texts) {
    if (concat_ok_) {
      std::map<std::string, std::shared_ptr<PromptEmbedding>> parts;
      std::vector<const PromptEmbedding*> rows;
      for (const std::string& text : texts) {
        std::shared_ptr<PromptEmbedding>& part = parts[text];
        if (!part) part = lookup_or_encode(text);
        if (!part) return last_error_;
        rows.push_back(part.get());
      }
      auto cat = real_.concat(rows);
      if (cat.is_ok()) return std::shared_ptr<PromptEmbedding>(std::move(cat).value());
      if (cat.status().code() != StatusCode::kUnimplemented) return cat.status();
      concat_ok_ = false;
    }
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<PromptEmbedding> e, real_.encode(texts));
    return std::shared_ptr<PromptEmbedding>(std::move(e));
  }

  std::shared_ptr<PromptEmbedding> lookup_or_encode(const std::string& text) {
    if (auto hit = cache_.get(text)) return hit;
    auto e = real_.encode({text});
    if (!e.is_ok()) {
      last_error_ = e.status();
      return nullptr;
    }
    std::shared_ptr<PromptEmbedding> emb(std::move(e).value());
    const int64_t bytes = real_.embedding_bytes(*emb);
    cache_.put(text, emb, bytes > 0 ? bytes : bytes_per_row_);
    return emb;
  }

  Denoiser& real_;
  serve::PromptCache& cache_;
  int64_t bytes_per_row_;
  std::mutex mu_;
  std::condition_variable cv_, exec_cv_;
  std::vector<Slot> slots_;
  int active_;
  uint64_t round_ = 0;
  int prepared_rows_ = -1, prepared_h_ = -1, prepared_w_ = -1;
  std::vector<float> x_, t_, out_;
  std::map<std::string, std::shared_ptr<PromptEmbedding>> memo_;
  Counters& counters_;
  std::function<int(int, int)> max_rows_;
  bool concat_ok_ = true;
  Status last_error_;
};

class ProxyDenoiser : public Denoiser {
 public:
  ProxyDenoiser(Lockstep& ls, int index, const DenoiserInfo& info)
      : ls_(ls), index_(index), info_(info) {}
  const DenoiserInfo& info() const override { return info_; }
  Result<std::unique_ptr<PromptEmbedding>> encode(const std::vector<std::string>& texts) override {
    ls_.set_texts(index_, texts);
    return std::unique_ptr<PromptEmbedding>(
        std::make_unique<ProxyEmbedding>(static_cast<int>(texts.size())));
  }
  Status prepare(int, int, int) override { return Status::ok(); }
  Status denoise(const float* x, const float* t, int batch, int height, int width,
                 const PromptEmbedding&, bool refine, float* out) override {
    return ls_.denoise(index_, x, t, batch, height, width, refine, out);
  }

 private:
  Lockstep& ls_;
  int index_;
  const DenoiserInfo& info_;
};

std::string format_mib(int64_t bytes) {
  char buf[48];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f GiB", b / (1024.0 * 1024 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  return buf;
}

GenerateParams to_generate_params(const ImageRequest& r) {
  GenerateParams p;
  p.prompts = {r.prompt};
  p.negative_prompt = r.negative_prompt;
  p.n = r.n;
  p.width = r.width;
  p.height = r.height;
  p.steps = r.steps;
  p.sampler = r.sampler;
  p.cfg_scale = r.cfg_scale;
  p.seed = r.seed;
  if (r.refine_every > 0) {
    p.refine = RefineMode::kEvery;
    p.refine_every = r.refine_every;
  } else {
    p.refine = RefineMode::kNone;
  }
  return p;
}

class PipelineEngine : public ImageEngine {
 public:
  PipelineEngine(std::unique_ptr<Denoiser> model, const PipelineEngineOptions& o)
      : model_(std::move(model)), opts_(o), cache_(o.prompt_cache_bytes) {
    model_->set_memory_limit(o.max_memory_bytes);
    const DenoiserInfo& d = model_->info();
    info_.model = d.name;
    info_.channels = d.channels;
    info_.width = d.width;
    info_.height = d.height;
    info_.stride = std::lcm(std::max(1, d.patch), std::max(1, d.refiner_stride));
    info_.other_sizes = d.supports_other_sizes;
    info_.max_side = kMaxImageSide;
    info_.max_steps = std::min(1000, d.num_train_timesteps);
    info_.max_n = kMaxImages;
    info_.samplers = diffusion::sampler_names();
    info_.default_refine_every = d.refine_every;
    info_.default_cfg_scale = d.cfg_scale;
  }

  const EngineInfo& info() const override { return info_; }

  Status validate(const ImageRequest& r) const override {
    DUET_RETURN_IF_ERROR(validate_generate_params(to_generate_params(r), model_->info()));
    if (opts_.max_memory_bytes <= 0) return Status::ok();
    // The request's own rows (2n with guidance) must fit the cap; larger batches are split.
    const int rows = r.n * (r.cfg_scale != 1.0f ? 2 : 1);
    auto need = model_->estimate_bytes(rows, r.height, r.width);
    if (!need.is_ok()) return need.status();
    if (*need > opts_.max_memory_bytes) {
      counters_.memory_refused.fetch_add(1);
      return resource_exhausted(
          "n " + std::to_string(r.n) + " × " + std::to_string(r.width) + "×" +
          std::to_string(r.height) + (rows > r.n ? " with guidance (batch " : " (batch ") +
          std::to_string(rows) + ") needs " + format_mib(*need) + " of model workspace, over the " +
          format_mib(opts_.max_memory_bytes) + " limit (--max-memory)");
    }
    return Status::ok();
  }

  // The most rows one model call at h × w may take under the cap (0 = no cap); memoised.
  int max_rows(int h, int w) {
    if (opts_.max_memory_bytes <= 0) return 0;
    std::lock_guard<std::mutex> lock(rows_mu_);
    int& m = max_rows_[{h, w}];
    if (m > 0) return m;
    int lo = 1, hi = 4096;  // the largest batch that fits (at least 1: validate() vets rows)
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      auto need = model_->estimate_bytes(mid, h, w);
      if (need.is_ok() && *need <= opts_.max_memory_bytes)
        lo = mid;
      else
        hi = mid - 1;
    }
    return m = lo;
  }

  std::vector<Result<ImageOutput>> run_batch(const std::vector<EngineJob>& jobs) override {
    const int n = static_cast<int>(jobs.size());
    Lockstep ls(*model_, cache_, opts_.bytes_per_prompt_row, n, counters_,
                [this](int h, int w) { return max_rows(h, w); });
    std::vector<Result<ImageOutput>> out(n, Result<ImageOutput>(internal_error("not run")));
    const DenoiserInfo& dinfo = model_->info();
    auto body = [&](int i) {
      ProxyDenoiser proxy(ls, i, dinfo);
      const GenerateParams gp = to_generate_params(*jobs[i].request);
      GenerateProgressFn progress;
      if (jobs[i].progress)
        progress = [&, i](const StepProgress& sp) { jobs[i].progress(sp.call, sp.total); };
      try {
        Result<GenerateResult> r = generate(proxy, gp, progress, jobs[i].cancel);
        ls.finish(i);
        out[i] = r.is_ok() ? to_output(gp, *r, dinfo) : Result<ImageOutput>(r.status());
      } catch (const std::exception& e) {
        ls.finish(i);
        out[i] = internal_error(std::string("generation failed: ") + e.what());
      }
    };
    if (opts_.threads > 0) omp_set_num_threads(opts_.threads);  // this thread runs the model
    if (n == 1) {
      // One request: its generate() runs right here and Lockstep executes each model call inline
      // (same cache, memo and counters) — no hand-off between threads per step, which on a
      // 2-core machine cost more than the 10-step denoise itself (OpenMP workers spinning
      // against the participant thread).
      body(0);
      return out;
    }
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) threads.emplace_back(body, i);
    ls.execute();
    for (auto& t : threads) t.join();
    return out;
  }

  EngineStats stats() const override {
    EngineStats s;
    s.denoiser_evaluations = counters_.evaluations.load();
    s.denoiser_rows = counters_.rows.load();
    s.prompt_cache_hits = cache_.hits();
    s.prompt_cache_misses = cache_.misses();
    s.prompt_cache_bytes = cache_.bytes();
    s.prompt_cache_entries = cache_.entries();
    s.prompt_cache_evictions = cache_.evictions();
    s.memory_limit_bytes = opts_.max_memory_bytes;
    s.memory_refused = counters_.memory_refused.load();
    return s;
  }

 private:
  static ImageOutput to_output(const GenerateParams& gp, const GenerateResult& r,
                               const DenoiserInfo& info) {
    ImageOutput o;
    o.n = gp.n;
    o.channels = r.channels;
    o.width = r.width;
    o.height = r.height;
    o.pixels.assign(r.images.f32(), r.images.f32() + r.images.numel());
    o.seeds = r.seeds;
    for (int k = 0; k < gp.n; ++k) o.parameters.push_back(image_parameters(gp, r, info, k));
    o.model_evaluations = r.model_evaluations;
    o.timings.encode_s = r.timings.encode_s;
    o.timings.denoise_s = r.timings.denoise_s;
    o.timings.total_s = r.timings.total_s;
    return o;
  }

  std::unique_ptr<Denoiser> model_;
  PipelineEngineOptions opts_;
  EngineInfo info_;
  serve::PromptCache cache_;
  mutable Counters counters_;
  std::mutex rows_mu_;
  std::map<std::pair<int, int>, int> max_rows_;
};

}  // namespace

std::unique_ptr<ImageEngine> make_pipeline_engine(std::unique_ptr<Denoiser> model,
                                                  const PipelineEngineOptions& opts) {
  return std::make_unique<PipelineEngine>(std::move(model), opts);
}

}  // namespace duet

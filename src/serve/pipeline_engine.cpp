// make_pipeline_engine(): the generation pipeline behind the ImageEngine interface, with dynamic
// batching done on the engine thread alone: every request of a batch is a GenerateRun (own seed,
// x_T, sampler state, guidance) and each round, the runs whose next call matches in (size,
// refine) write their rows into one batch, one Denoiser::denoise runs over all of them (prompts
// concatenated in the same row order) and each run takes its rows back. A request's rows
// therefore see exactly the inputs they would see alone; its images are identical whenever the
// model's per-row output does not depend on the other rows of the batch. No thread is created
// and nothing is handed between threads per step.
//
// Prompts: every distinct text is encoded alone (encode({text})) and kept in the LRU prompt
// cache; a group's per-row prompt state is assembled from those entries (Denoiser::concat), so a
// cached prompt is never re-encoded and a row's prompt state is the same whichever batch it is
// in and whether or not the cache holds it. Memory: with a cap, a round's rows are split into
// groups whose planned model buffers fit it (Denoiser::estimate_bytes).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <span>

#include "diffusion/sampler.h"
#include "duet/cpu_features.h"
#include "duet/cpu_load.h"
#include "duet/pipeline.h"
#include "duet/serve_engine.h"
#include "serve/prompt_cache.h"

namespace duet {
namespace {

struct Counters {
  std::atomic<int64_t> evaluations{0}, rows{0}, memory_refused{0};
  std::atomic<int64_t> blocks_run{0}, blocks_total{0}, cache_reused{0};
};

// One request of a batch while it runs.
struct Member {
  EngineJob job;
  GenerateParams params;
  std::unique_ptr<GenerateRun> run;
  std::unique_ptr<DenoiserCache> cache;  // the request's backbone cache (made on its first call)
  GenerateProgressFn progress;
  Status status;         // set when the request failed or was cancelled
  bool active = false;   // started and neither failed nor finished
  bool waiting = false;  // joined a running batch; makes calls once in phase with it
};

// Runs a batch's members to completion on the calling thread, merging compatible model calls.
class BatchRunner {
 public:
  // max_rows(h, w): the most rows one model call may take at that size (memory cap, 0 = none).
  // concat_ok: whether the denoiser implements concat(); learnt once per engine (a denoiser
  // without it gets each group's texts encoded at once, and nothing is encoded per text).
  // mixed_ok: whether the denoiser implements denoise_mixed(); learnt the same way (without it,
  // runs that disagree in the refine flag make separate calls and joining runs wait until they
  // are in phase).
  BatchRunner(Denoiser& real, serve::PromptCache& cache, int64_t bytes_per_row, Counters& counters,
              std::function<int(int, int)> max_rows, bool& concat_ok, bool& mixed_ok)
      : real_(real),
        cache_(cache),
        bytes_per_row_(bytes_per_row),
        counters_(counters),
        max_rows_(std::move(max_rows)),
        concat_ok_(concat_ok),
        mixed_ok_(mixed_ok) {}

  // Runs `members` and whatever admit(members) appends (called before every round) to
  // completion; each member is handed to done() as soon as it has finished, failed or been
  // cancelled, and dropped. Buffers grow only when members join; the first call after a
  // membership change re-concatenates its prompt state; other rounds allocate nothing.
  void run(std::vector<Member>& members, const std::function<void(std::vector<Member>&)>& admit,
           const std::function<void(Member&)>& done) {
    size_t joined = 0;  // members before this index are encoded and counted in the buffers
    bool changed = true;
    for (;;) {
      for (Member& mb : members)
        if (mb.active && mb.job.cancel && mb.job.cancel->load(std::memory_order_relaxed)) {
          mb.status = mb.run->cancelled();
          mb.active = false;
        }
      size_t kept = 0;
      for (size_t i = 0; i < members.size(); ++i) {
        if (i < joined && !members[i].active) {
          done(members[i]);
          changed = true;
          continue;
        }
        if (kept != i) members[kept] = std::move(members[i]);
        ++kept;
      }
      joined -= members.size() - kept;
      members.resize(kept);
      admit(members);
      for (size_t i = joined; i < members.size(); ++i) {
        Member& mb = members[i];
        if (mb.active) encode(mb);
        if (mb.active && mb.run->done()) mb.active = false;  // img2img with no call left
        mb.waiting = mb.active && joined > 0;
        changed = true;
      }
      joined = members.size();
      if (members.empty()) return;
      if (changed) reshape(members);
      changed = false;
      for (Member& mb : members)
        if (mb.waiting) mb.waiting = !mixed_ok_ && !in_phase(mb, members);
      if (std::any_of(members.begin(), members.end(), [](const Member& m) { return m.active; }))
        round(members);
    }
  }

 private:
  // Encodes (or finds in the cache) every text of the member once, before its first call.
  void encode(Member& mb) {
    const auto t0 = std::chrono::steady_clock::now();
    if (concat_ok_)
      for (const std::string& text : mb.run->texts()) {
        if (parts_.count(text)) continue;
        auto part = lookup_or_encode(text);
        if (!part.is_ok()) {
          mb.status = part.status();
          mb.active = false;
          return;
        }
        parts_[text] = std::move(part).value();
      }
    mb.run->add_encode_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  // After members joined or left: buffers for the largest possible call (so that rounds never
  // allocate), per-member scratch, and no memoised prompt state for the old member indices.
  void reshape(const std::vector<Member>& members) {
    const size_t m = members.size();
    size_t floats = 0;
    int rows = 0;
    for (const Member& mb : members)
      if (mb.active) {
        floats += mb.run->row_floats() * mb.run->rows();
        rows += mb.run->rows();
      }
    if (x_.size() < floats) {
      x_.resize(floats);
      out_.resize(floats);
    }
    if (t_.size() < static_cast<size_t>(rows)) t_.resize(rows);
    group_.reserve(m);
    order_.reserve(m);
    uses_.reserve(m);
    handled_.assign(m, false);
    key_.assign(3 * ((m + 63) / 64), 0);
    memo_.clear();
    for (auto it = parts_.begin(); it != parts_.end();) {
      bool used = false;
      for (const Member& mb : members)
        if (mb.active)
          for (const std::string& text : mb.run->texts()) used |= text == it->first;
      it = used ? std::next(it) : parts_.erase(it);
    }
  }

  // Can a member that joined a running batch start making calls? Only when its refine flags
  // agree, call for call, with those of every running member of its size over the calls both
  // still have: otherwise they would never share a call again (refine and plain calls cannot be
  // merged) and each round would make two half-size calls. A periodic schedule ("every 3") comes
  // into phase within one period; with no running member of its size it starts at once.
  static bool in_phase(const Member& w, const std::vector<Member>& members) {
    const GenerateRun& a = *w.run;
    for (const Member& m : members) {
      if (!m.active || m.waiting) continue;
      const GenerateRun& b = *m.run;
      if (a.height() != b.height() || a.width() != b.width()) continue;
      const int common = std::min(a.num_calls() - a.next_call(), b.num_calls() - b.next_call());
      for (int k = 0; k < common; ++k)
        if (a.refine_at(a.next_call() + k) != b.refine_at(b.next_call() + k)) return false;
    }
    return true;
  }

  // One round: every active member's next call, in groups of equal size (and refine flag, unless
  // the denoiser refines some rows of a call only) under the row cap, one model call per group;
  // in a group the refining members come first.
  void round(std::vector<Member>& members) {
    std::fill(handled_.begin(), handled_.end(), false);
    for (size_t i = 0; i < members.size(); ++i) {
      if (!members[i].active || members[i].waiting || handled_[i]) continue;
      const GenerateRun& a = *members[i].run;
      const int cap = max_rows_ ? max_rows_(a.height(), a.width()) : 0;  // 0 = no cap
      group_.clear();
      int rows = 0;
      for (size_t j = i; j < members.size(); ++j) {
        if (!members[j].active || members[j].waiting || handled_[j]) continue;
        const GenerateRun& b = *members[j].run;
        if (a.height() == b.height() && a.width() == b.width() &&
            (mixed_ok_ || a.refine_next() == b.refine_next()) &&
            (group_.empty() || cap <= 0 || rows + b.rows_next() <= cap)) {
          group_.push_back(static_cast<int>(j));
          handled_[j] = true;
          rows += b.rows_next();
        }
      }
      // Refining members first, each part in member order (not std::stable_partition: it
      // allocates a temporary buffer, and rounds must not allocate).
      order_.clear();
      for (const bool refining : {true, false})
        for (int j : group_)
          if (members[j].run->refine_next() == refining) order_.push_back(j);
      group_.swap(order_);
      const Status st = call(members, group_);
      if (!st.is_ok()) {
        if (group_.size() > 1) {  // isolate the failing request: each runs this call alone
          for (int j : group_) {
            const int one[1] = {j};
            fail_unless_ok(members[j], call(members, std::span<const int>(one, 1)));
          }
        } else {
          fail_unless_ok(members[group_[0]], st);
        }
      }
    }
  }

  static void fail_unless_ok(Member& mb, const Status& st) {
    if (st.is_ok() || !mb.active) return;
    mb.status = st;
    mb.active = false;
  }

  // One model call over the members in `group` (their rows in group order), then each member
  // consumes its rows. A failed model call fails the call (the caller isolates); a member whose
  // own step fails is failed alone.
  Status call(std::vector<Member>& members, std::span<const int> group) {
    const GenerateRun& first = *members[group[0]].run;
    const int h = first.height(), w = first.width();
    const size_t img = first.row_floats();
    int rows = 0, refine_rows = 0;
    size_t refining = 0;  // members (a prefix of the group) whose call refines
    for (int j : group) {
      GenerateRun& r = *members[j].run;
      r.write_input(x_.data() + rows * img, t_.data() + rows);
      rows += r.rows_next();  // a guidance interval may leave this call at n rows
      if (r.refine_next()) {
        refine_rows += r.rows_next();
        ++refining;
      }
    }
    auto emb = embedding(members, group, rows);
    if (!emb.is_ok()) return emb.status();
    if (prepared_rows_ != rows || prepared_h_ != h || prepared_w_ != w) {
      DUET_RETURN_IF_ERROR(real_.prepare(rows, h, w));
      prepared_rows_ = rows, prepared_h_ = h, prepared_w_ = w;
    }
    // Members with a backbone cache consult it (each gets its solo result: denoise_cached).
    uses_.clear();
    int row0 = 0;
    for (int j : group) {
      Member& mb = members[j];
      if (mb.params.cache.mode != CacheMode::kOff) {
        if (!mb.cache) {
          auto c = real_.make_cache(mb.params.cache, mb.run->rows());
          if (!c.is_ok()) {
            fail_unless_ok(mb, c.status());
            return c.status();
          }
          mb.cache = std::move(c).value();
          mb.run->attach_cache(mb.cache.get());
        }
        uses_.push_back({mb.cache.get(), row0, mb.run->rows_next(), mb.run->cache_eligible_next()});
      }
      row0 += mb.run->rows_next();
    }
    if (!uses_.empty()) {
      DUET_RETURN_IF_ERROR(real_.denoise_cached(x_.data(), t_.data(), rows, h, w, **emb,
                                                refine_rows, uses_, out_.data()));
      size_t k = 0;
      for (int j : group)
        if (members[j].cache) members[j].run->note_cache(uses_[k++].computed);
    } else if (refine_rows == 0 || refine_rows == rows) {
      DUET_RETURN_IF_ERROR(
          real_.denoise(x_.data(), t_.data(), rows, h, w, **emb, refine_rows > 0, out_.data()));
    } else {
      const Status st =
          real_.denoise_mixed(x_.data(), t_.data(), rows, h, w, **emb, refine_rows, out_.data());
      if (st.code() == StatusCode::kUnimplemented) {  // learn it once; one call per flag
        mixed_ok_ = false;
        DUET_RETURN_IF_ERROR(call(members, group.first(refining)));
        return call(members, group.subspan(refining));
      }
      DUET_RETURN_IF_ERROR(st);
    }
    counters_.evaluations.fetch_add(1);
    counters_.rows.fetch_add(rows);
    rows = 0;
    for (int j : group) {
      Member& mb = members[j];
      const int own = mb.run->rows_next();  // this call's rows (complete() moves to the next)
      fail_unless_ok(mb, mb.run->complete(out_.data() + rows * img, mb.progress));
      rows += own;
      if (mb.active && mb.run->done()) mb.active = false;  // finished: the caller collects it
    }
    return Status::ok();
  }

  // The group's prompt state, one row per text: the members' cached single-text encodings
  // concatenated, memoised per group composition (the same composition recurs every step). A
  // denoiser without concat() gets the group's texts encoded at once, uncached.
  Result<const PromptEmbedding*> embedding(const std::vector<Member>& members,
                                           std::span<const int> group, int rows) {
    // Key: the members, which of them refine (which fixes the row order) and which are guided
    // at this call (which fixes their row count).
    std::fill(key_.begin(), key_.end(), 0);
    const size_t third = key_.size() / 3;
    for (int j : group) {
      key_[j / 64] |= uint64_t{1} << (j % 64);
      if (members[j].run->refine_next()) key_[third + j / 64] |= uint64_t{1} << (j % 64);
      if (members[j].run->guided_next()) key_[2 * third + j / 64] |= uint64_t{1} << (j % 64);
    }
    if (auto it = memo_.find(key_); it != memo_.end()) return it->second.get();
    std::vector<std::string> texts;
    texts.reserve(rows);
    for (int j : group) {
      const auto& t = members[j].run->texts();  // unguided: the conditional texts only
      texts.insert(texts.end(), t.begin(), t.begin() + members[j].run->rows_next());
    }
    std::unique_ptr<PromptEmbedding> e;
    if (concat_ok_) {
      std::vector<const PromptEmbedding*> parts;
      for (const std::string& text : texts) {
        auto it = parts_.find(text);
        if (it == parts_.end()) return internal_error("batch: text was not encoded");
        parts.push_back(it->second.get());
      }
      auto cat = real_.concat(parts);
      if (cat.is_ok()) {
        e = std::move(cat).value();
      } else if (cat.status().code() == StatusCode::kUnimplemented) {
        concat_ok_ = false;
      } else {
        return cat.status();
      }
    }
    if (!e) {
      DUET_ASSIGN_OR_RETURN(e, real_.encode(texts));
    }
    if (!e || e->batch() != rows) return internal_error("prompt encoder returned the wrong batch");
    const PromptEmbedding* p = e.get();
    memo_[key_] = std::move(e);
    return p;
  }

  Result<std::shared_ptr<PromptEmbedding>> lookup_or_encode(const std::string& text) {
    if (auto hit = cache_.get(text)) return hit;
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<PromptEmbedding> e, real_.encode({text}));
    std::shared_ptr<PromptEmbedding> emb(std::move(e));
    const int64_t bytes = real_.embedding_bytes(*emb);
    cache_.put(text, emb, bytes > 0 ? bytes : bytes_per_row_);
    return emb;
  }

  Denoiser& real_;
  serve::PromptCache& cache_;
  int64_t bytes_per_row_;
  Counters& counters_;
  std::function<int(int, int)> max_rows_;
  int prepared_rows_ = -1, prepared_h_ = -1, prepared_w_ = -1;
  std::vector<float> x_, t_, out_;      // [rows, C, H, W], [rows]: the largest call's size
  std::vector<int> group_;              // members of the call being formed
  std::vector<int> order_;              // scratch: group_ reordered, refining members first
  std::vector<DenoiserCacheUse> uses_;  // the call's members with a backbone cache
  std::vector<bool> handled_;           // per member, this round
  std::vector<uint64_t> key_;           // bit sets of a group's members and refining members
  std::map<std::vector<uint64_t>, std::unique_ptr<PromptEmbedding>> memo_;
  std::map<std::string, std::shared_ptr<PromptEmbedding>> parts_;  // this batch's encodings
  bool& concat_ok_;
  bool& mixed_ok_;
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
  p.karras = r.karras;
  p.cfg_sigma_lo = r.cfg_sigma_lo;
  p.cfg_sigma_hi = r.cfg_sigma_hi;
  p.cache = r.cache;
  if (r.init_image) {
    p.init_image = *r.init_image;
    p.strength = r.strength;
    if (r.mask) p.mask = *r.mask;
  }
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
    info_.threads = choose_threads(o.threads).threads;
    if (auto cpu = cpu_info(); cpu.is_ok()) info_.cpu_json = cpu_info_json(**cpu).dump();
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
    return run_batch_continuously(jobs);
  }

  void run_continuous(const std::vector<EngineJob>& jobs, BatchFeed& feed) override {
    // This thread runs the model: its team is the process's one choice (cpu_load.h: the CPUs
    // other processes left free at start-up, or --threads), as at load.
    omp_set_num_threads(choose_threads(opts_.threads).threads);
    std::vector<Member> members;
    members.reserve(jobs.size());
    for (const EngineJob& job : jobs) members.push_back(make_member(job));
    auto admit = [&](std::vector<Member>& ms) {
      int images = 0;
      for (const Member& mb : ms) images += mb.active ? mb.params.n : 0;
      for (const EngineJob& job : feed.admit(images)) ms.push_back(make_member(job));
    };
    auto done = [&](Member& mb) { feed.finished(mb.job, collect(mb)); };
    BatchRunner runner(
        *model_, cache_, opts_.bytes_per_prompt_row, counters_,
        [this](int h, int w) { return max_rows(h, w); }, concat_ok_, mixed_ok_);
    try {
      runner.run(members, admit, done);
    } catch (const std::exception& e) {
      for (Member& mb : members) {  // the members not yet reported
        if (mb.active) {
          mb.status = internal_error(std::string("generation failed: ") + e.what());
          mb.active = false;
        }
        feed.finished(mb.job, collect(mb));
      }
    }
  }

  EngineStats stats() const override {
    EngineStats s;
    s.denoiser_evaluations = counters_.evaluations.load();
    s.denoiser_rows = counters_.rows.load();
    s.backbone_blocks_run = counters_.blocks_run.load();
    s.backbone_blocks_total = counters_.blocks_total.load();
    s.cache_reused_calls = counters_.cache_reused.load();
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
  Member make_member(const EngineJob& job) const {
    Member mb;
    mb.job = job;
    mb.params = to_generate_params(*job.request);
    if (job.progress)
      mb.progress = [p = job.progress](const StepProgress& sp) { p(sp.call, sp.total); };
    auto run = GenerateRun::start(model_->info(), mb.params);
    if (run.is_ok()) {
      mb.run = std::move(run).value();
      mb.active = true;
    } else {
      mb.status = run.status();
    }
    return mb;
  }

  // A member's result once it has left the batch.
  Result<ImageOutput> collect(Member& mb) const {
    if (!mb.status.is_ok()) return mb.status;
    Result<GenerateResult> r = mb.run->finish();
    if (!r.is_ok()) return r.status();
    counters_.blocks_run.fetch_add(r->backbone_blocks_run);
    counters_.blocks_total.fetch_add(r->backbone_blocks_total);
    counters_.cache_reused.fetch_add(static_cast<int64_t>(r->cache_skipped_calls.size()));
    return to_output(mb.params, *r, model_->info());
  }

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
    o.cache_reused_calls = static_cast<int>(r.cache_skipped_calls.size());
    o.backbone_blocks_run = r.backbone_blocks_run;
    o.backbone_blocks_total = r.backbone_blocks_total;
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
  bool concat_ok_ = true;  // the denoiser implements concat() (until it says otherwise)
  bool mixed_ok_ = true;   // ... and denoise_mixed()
};

}  // namespace

std::unique_ptr<ImageEngine> make_pipeline_engine(std::unique_ptr<Denoiser> model,
                                                  const PipelineEngineOptions& opts) {
  return std::make_unique<PipelineEngine>(std::move(model), opts);
}

}  // namespace duet

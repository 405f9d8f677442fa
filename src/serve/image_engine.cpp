// ImageEngine's defaults: the batch key, static batching behind run_continuous, and run_batch
// over run_continuous for engines that implement the latter.
#include "duet/serve_engine.h"

namespace duet {

std::string ImageEngine::batch_key(const ImageRequest& r) const {
  return std::to_string(r.width) + "x" + std::to_string(r.height) + "/" + std::to_string(r.steps) +
         "/" + r.sampler + "/" + std::to_string(r.refine_every);
}

void ImageEngine::run_continuous(const std::vector<EngineJob>& jobs, BatchFeed& feed) {
  std::vector<Result<ImageOutput>> results = run_batch(jobs);
  for (size_t i = 0; i < jobs.size(); ++i)
    feed.finished(jobs[i], i < results.size() ? std::move(results[i])
                                              : Result<ImageOutput>(internal_error(
                                                    "the engine returned no result for a job")));
}

std::vector<Result<ImageOutput>> ImageEngine::run_batch_continuously(
    const std::vector<EngineJob>& jobs) {
  struct Collect : BatchFeed {
    std::vector<Result<ImageOutput>> out;
    std::vector<EngineJob> admit(int) override { return {}; }
    void finished(const EngineJob& job, Result<ImageOutput> r) override {
      if (job.tag < out.size()) out[job.tag] = std::move(r);
    }
  } feed;
  feed.out.assign(jobs.size(), Result<ImageOutput>(internal_error("no result for this job")));
  std::vector<EngineJob> tagged = jobs;  // tagged by index
  for (size_t i = 0; i < tagged.size(); ++i) tagged[i].tag = i;
  run_continuous(tagged, feed);
  return std::move(feed.out);
}

}  // namespace duet

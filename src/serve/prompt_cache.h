// An LRU cache of encoded prompts bounded in bytes (thread-safe). The serve engines key it by
// one prompt text each (the pipeline engine stores single-text embeddings and assembles a
// batch's per-row prompt state from them).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "duet/pipeline.h"

namespace duet::serve {

class PromptCache {
 public:
  explicit PromptCache(int64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // The cached embedding for `key` (moved to most recent) or null; counts a hit or a miss.
  std::shared_ptr<PromptEmbedding> get(const std::string& key);
  // Inserts (replacing); evicts least recently used entries until the total fits. An entry
  // larger than the capacity is not stored.
  void put(const std::string& key, std::shared_ptr<PromptEmbedding> value, int64_t bytes);

  int64_t hits() const;
  int64_t misses() const;
  int64_t bytes() const;
  int64_t entries() const;
  int64_t evictions() const;
  int64_t capacity() const { return capacity_; }
  // Keys from most to least recently used (tests, debugging).
  std::vector<std::string> keys() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<PromptEmbedding> value;
    int64_t bytes;
  };
  mutable std::mutex mu_;
  int64_t capacity_;
  int64_t bytes_ = 0, hits_ = 0, misses_ = 0, evictions_ = 0;
  std::list<Entry> lru_;  // front = most recent
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace duet::serve

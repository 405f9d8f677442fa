#include "serve/prompt_cache.h"

namespace duet::serve {

std::shared_ptr<PromptEmbedding> PromptCache::get(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->value;
}

void PromptCache::put(const std::string& key, std::shared_ptr<PromptEmbedding> value,
                      int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it != index_.end()) {
    bytes_ -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  if (bytes > capacity_) return;
  while (!lru_.empty() && bytes_ + bytes > capacity_) {
    bytes_ -= lru_.back().bytes;
    index_.erase(lru_.back().key);
    lru_.pop_back();
    ++evictions_;
  }
  lru_.push_front({key, std::move(value), bytes});
  index_[key] = lru_.begin();
  bytes_ += bytes;
}

int64_t PromptCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}
int64_t PromptCache::misses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_;
}
int64_t PromptCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}
int64_t PromptCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(lru_.size());
}

int64_t PromptCache::evictions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evictions_;
}
std::vector<std::string> PromptCache::keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> k;
  for (const Entry& e : lru_) k.push_back(e.key);
  return k;
}

}  // namespace duet::serve

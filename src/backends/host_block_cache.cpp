#include "backends/host_block_cache.h"

#include <cstdlib>
#include <cstring>
#include <string>

namespace duet {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kUnderAsan = true;
#else
constexpr bool kUnderAsan = false;
#endif
#else
constexpr bool kUnderAsan = false;
#endif

size_t process_capacity() {
  if (kUnderAsan) return 0;
  size_t mb = 64;
  if (const char* env = std::getenv("DUET_HOST_BLOCK_CACHE_MB")) {
    char* end = nullptr;
    const unsigned long v = std::strtoul(env, &end, 10);
    // A malformed value keeps the default; the variable is a tuning knob, not an input.
    if (end != env && *end == '\0' && v <= (1ul << 20)) mb = v;
  }
  return mb << 20;
}

}  // namespace

HostBlockCache::~HostBlockCache() {
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) std::free(p);
}

void* HostBlockCache::take(size_t bytes) {
  const size_t n = rounded(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(n);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      stats_.kept_bytes -= n;
      --stats_.kept_blocks;
      ++stats_.hits;
    } else {
      ++stats_.misses;
    }
  }
  if (!p) p = std::aligned_alloc(64, n);
  if (p) std::memset(p, 0, n);
  return p;
}

void HostBlockCache::give(void* block, size_t bytes) {
  if (!block) return;
  const size_t n = rounded(bytes);
  if (n <= max_block_) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.kept_bytes + n <= capacity_) {
      free_[n].push_back(block);
      stats_.kept_bytes += n;
      ++stats_.kept_blocks;
      return;
    }
  }
  std::free(block);
}

HostBlockCache::Stats HostBlockCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

HostBlockCache& HostBlockCache::process() {
  static HostBlockCache* cache = new HostBlockCache(process_capacity(), size_t{16} << 20);
  return *cache;
}

}  // namespace duet

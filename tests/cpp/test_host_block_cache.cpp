// HostBlockCache (src/backends/host_block_cache.h): the freed-block reuse behind Backend::alloc.
// A reused block is the same memory and zeroed again; only the exact size is reused; large blocks
// and blocks beyond the capacity go back to the allocator; concurrent take/give never hands one
// block to two owners.
#include "backends/host_block_cache.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "backends/backend.h"

namespace duet {
namespace {

bool all_zero(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != 0) return false;
  return true;
}

TEST(HostBlockCache, ReusedBlockIsTheSameMemoryZeroedAgain) {
  HostBlockCache cache(1 << 20, 1 << 16);
  void* a = cache.take(1000);  // rounded to 1024
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
  EXPECT_TRUE(all_zero(a, 1024));
  std::memset(a, 0xab, 1024);
  cache.give(a, 1000);
  EXPECT_EQ(cache.stats().kept_blocks, 1u);
  EXPECT_EQ(cache.stats().kept_bytes, 1024u);
  void* b = cache.take(1000);
  EXPECT_EQ(b, a);
  EXPECT_TRUE(all_zero(b, 1024));
  const HostBlockCache::Stats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.kept_blocks, 0u);
  cache.give(b, 1000);
}

TEST(HostBlockCache, OnlyTheExactRoundedSizeIsReused) {
  HostBlockCache cache(1 << 20, 1 << 16);
  void* a = cache.take(1024);
  cache.give(a, 1024);
  void* b = cache.take(1025);  // rounds to 1088: not the 1024 block
  EXPECT_NE(b, a);
  void* c = cache.take(1020);  // rounds to 1024: the kept block
  EXPECT_EQ(c, a);
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 2u);
  cache.give(b, 1025);
  cache.give(c, 1020);
  EXPECT_EQ(HostBlockCache::rounded(0), 64u);
  EXPECT_EQ(HostBlockCache::rounded(64), 64u);
  EXPECT_EQ(HostBlockCache::rounded(65), 128u);
}

TEST(HostBlockCache, LargeBlocksAndBlocksBeyondCapacityAreFreed) {
  HostBlockCache cache(8192, 4096);
  void* big = cache.take(8192);
  cache.give(big, 8192);  // > max_block
  EXPECT_EQ(cache.stats().kept_blocks, 0u);
  void* b[3] = {cache.take(4096), cache.take(4096), cache.take(4096)};
  for (void* p : b) cache.give(p, 4096);
  EXPECT_EQ(cache.stats().kept_blocks, 2u);  // the third would exceed 8192 bytes
  EXPECT_EQ(cache.stats().kept_bytes, 8192u);
  HostBlockCache off(0, 4096);  // capacity 0: a plain allocator
  void* p = off.take(64);
  off.give(p, 64);
  EXPECT_EQ(off.stats().kept_blocks, 0u);
}

TEST(HostBlockCache, ConcurrentTakeAndGiveNeverShareABlock) {
  HostBlockCache cache(1 << 20, 1 << 16);
  constexpr int kThreads = 4, kRounds = 2000;
  std::vector<std::thread> threads;
  std::vector<int> bad(kThreads, 0);
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        const size_t n = 64 * (1 + (r % 3));
        auto* p = static_cast<unsigned char*>(cache.take(n));
        if (!p || !all_zero(p, n)) ++bad[t];
        std::memset(p, t + 1, n);
        std::this_thread::yield();
        for (size_t i = 0; i < n; ++i)
          if (p[i] != t + 1) {  // another owner wrote it
            ++bad[t];
            break;
          }
        cache.give(p, n);
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
  const HostBlockCache::Stats s = cache.stats();
  EXPECT_EQ(s.hits + s.misses, size_t{kThreads} * kRounds);
  EXPECT_LE(s.kept_blocks, size_t{kThreads} * 3);
}

TEST(HostBlockCache, BackendAllocReusesFreedBuffersZeroed) {
  if (HostBlockCache::process().capacity() == 0)
    GTEST_SKIP() << "process cache disabled (AddressSanitizer or DUET_HOST_BLOCK_CACHE_MB=0)";
  const Backend& be = reference_backend();
  void* first = nullptr;
  {
    auto buf = be.alloc(3000);
    ASSERT_TRUE(buf.is_ok());
    first = buf.value()->data();
    std::memset(first, 0x5a, 3000);
  }
  auto again = be.alloc(3000);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again.value()->data(), first);
  EXPECT_EQ(again.value()->bytes(), 3000u);
  EXPECT_TRUE(all_zero(again.value()->data(), 3000));
}

}  // namespace
}  // namespace duet

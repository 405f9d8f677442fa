// Freed host blocks kept for reuse by Backend::alloc (the cpu and reference backends' memory).
//
// Why: the prompt state and the per-encode temporaries are backend buffers. Freed straight back
// to glibc, their pages are returned to the kernel (trim / mmap thresholds) and every prompt
// encode faults them in again: measured on the demo model, 174 k page faults per 200 encodes
// against 78 k before buffers were backend-owned, and 1.22-1.33x slower encodes
// (docs/benchmarks.md, "Backends own the tensors"). Keeping freed blocks by exact size makes the
// next encode reuse warm pages.
//
// Invariants: a block is kept under its exact size (a multiple of 64 bytes) and only handed out
// for that size; take() always returns zeroed memory (Backend::alloc's contract); at most
// `capacity` bytes are kept, and no block larger than `max_block` (those go back to the
// allocator at once); thread-safe. Disabled (capacity 0) under AddressSanitizer so that a
// use-after-free of a backend buffer is still caught, and by DUET_HOST_BLOCK_CACHE_MB=0.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <vector>

namespace duet {

class HostBlockCache {
 public:
  HostBlockCache(size_t capacity_bytes, size_t max_block_bytes)
      : capacity_(capacity_bytes), max_block_(max_block_bytes) {}
  ~HostBlockCache();
  HostBlockCache(const HostBlockCache&) = delete;
  HostBlockCache& operator=(const HostBlockCache&) = delete;

  // A zeroed, 64-byte aligned block of `bytes` (rounded up to a multiple of 64, at least 64);
  // nullptr when the memory cannot be had.
  void* take(size_t bytes);
  // Returns a block from take(bytes) (the same `bytes`): kept for reuse, or freed when it is
  // larger than max_block or the cache is full.
  void give(void* block, size_t bytes);

  struct Stats {
    size_t hits = 0, misses = 0;  // take() served from the cache / from the allocator
    size_t kept_bytes = 0, kept_blocks = 0;
  };
  Stats stats() const;
  size_t capacity() const { return capacity_; }

  // The cache Backend::alloc uses: 64 MiB, blocks up to 16 MiB (DUET_HOST_BLOCK_CACHE_MB sets
  // the capacity; 0 disables it). Never destroyed, so buffers freed during static destruction
  // are safe.
  static HostBlockCache& process();

  static size_t rounded(size_t bytes) { return bytes == 0 ? 64 : (bytes + 63) / 64 * 64; }

 private:
  const size_t capacity_, max_block_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // exact rounded size -> kept blocks
  Stats stats_;
};

}  // namespace duet

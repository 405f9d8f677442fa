#include "core/workspace.h"

#include <cstdio>
#include <cstdlib>

namespace duet {

namespace {
size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }
}  // namespace

float* Workspace::alloc(int64_t n) {
  const size_t bytes = round64(static_cast<size_t>(n > 0 ? n : 1) * sizeof(float));
  const size_t at = offset_;
  offset_ += bytes;
  if (offset_ > peak_) peak_ = offset_;
  if (committed_) {
    if (offset_ > capacity_) {
      std::fprintf(stderr, "duet: internal error: workspace overflow (%zu > %zu bytes)\n", offset_,
                   capacity_);
      std::abort();
    }
    return base_.get() + at / sizeof(float);
  }
  void* p = std::aligned_alloc(64, bytes);
  if (!p) {
    std::fprintf(stderr, "duet: out of memory allocating %zu bytes of workspace\n", bytes);
    std::abort();
  }
  blocks_.push_back({at, std::unique_ptr<float, void (*)(void*)>(static_cast<float*>(p), std::free)});
  return blocks_.back().mem.get();
}

void Workspace::release(size_t mark) {
  offset_ = mark;
  while (!blocks_.empty() && blocks_.back().offset >= mark) blocks_.pop_back();
}

bool Workspace::commit() {
  blocks_.clear();
  capacity_ = peak_ > 0 ? peak_ : 64;
  void* p = std::aligned_alloc(64, capacity_);
  if (!p) return false;  // caller reports kResourceExhausted; the workspace stays uncommitted
  base_ = std::unique_ptr<float, void (*)(void*)>(static_cast<float*>(p), std::free);
  offset_ = 0;
  committed_ = true;
  return true;
}

}  // namespace duet

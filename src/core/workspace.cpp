#include "core/workspace.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace duet {

namespace {
// A measuring workspace can never exceed physical memory: such requests are refused without
// calling the allocator (which, under ASan, aborts on absurd sizes instead of returning null).
size_t physical_memory_bytes() {
  static const size_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page)
                                 : size_t{1} << 40;
  }();
  return bytes;
}
}  // namespace

std::shared_ptr<void> Workspace::allocate(size_t bytes) const {
  if (allocator_) return allocator_(bytes);
  void *p = std::aligned_alloc(64, bytes);
  return p ? std::shared_ptr<void>(p, std::free) : nullptr;
}

float *Workspace::alloc(int64_t n) {
  const size_t bytes = alloc_bytes(n);
  const size_t at = offset_;
  if (committed_) {
    if (at + bytes > capacity_) {
      std::fprintf(stderr, "duet: internal error: workspace overflow (%zu > %zu bytes)\n",
                   at + bytes, capacity_);
      std::abort();
    }
    offset_ += bytes;
    if (offset_ > peak_) peak_ = offset_;
    return static_cast<float *>(base_.get()) + at / sizeof(float);
  }
  if (limit_ > 0 && at + bytes > limit_) throw WorkspaceExhausted(bytes, at + bytes, true);
  if (bytes > physical_memory_bytes() || at + bytes > physical_memory_bytes())
    throw WorkspaceExhausted(bytes, at + bytes, false);
  std::shared_ptr<void> p = allocate(bytes);
  if (!p) throw WorkspaceExhausted(bytes, at + bytes, false);
  offset_ += bytes;
  if (offset_ > peak_) peak_ = offset_;
  blocks_.push_back({at, std::move(p)});
  return static_cast<float *>(blocks_.back().mem.get());
}

void Workspace::release(size_t mark) {
  offset_ = mark;
  while (!blocks_.empty() && blocks_.back().offset >= mark) blocks_.pop_back();
}

bool Workspace::commit() {
  blocks_.clear();
  offset_ = 0;
  capacity_ = peak_ > 0 ? peak_ : 64;
  std::shared_ptr<void> p = allocate(capacity_);
  if (!p)
    return false;  // caller reports kResourceExhausted; the workspace stays
                   // uncommitted
  base_ = std::move(p);
  committed_ = true;
  return true;
}

}  // namespace duet

// duet::Workspace — a stack (bump) allocator for per-request scratch floats.
//
// Lifecycle: a Context runs one warm-up evaluation in measuring mode (every alloc is its own
// heap block; the peak of the stack discipline is recorded), then commit() allocates one
// 64-byte-aligned block of exactly that peak and every later evaluation bumps inside it:
// no heap allocation on the hot path. Scratch is released in LIFO order via WorkspaceScope.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace duet {

class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // Returns n floats (64-byte aligned, contents unspecified). Aborts if a committed workspace is
  // too small: that is an engine bug (the measured evaluation covers every shape allowed).
  float* alloc(int64_t n);
  size_t mark() const { return offset_; }
  void release(size_t mark);
  // Switches from measuring to the committed single block (size = measured peak).
  // Returns false (and stays in measuring mode) if the block cannot be allocated.
  [[nodiscard]] bool commit();
  bool committed() const { return committed_; }
  size_t capacity_bytes() const { return capacity_; }
  size_t peak_bytes() const { return peak_; }

 private:
  struct Block {
    size_t offset;
    std::unique_ptr<float, void (*)(void*)> mem;
  };
  bool committed_ = false;
  size_t offset_ = 0, peak_ = 0, capacity_ = 0;  // bytes
  std::vector<Block> blocks_;                    // measuring mode only
  std::unique_ptr<float, void (*)(void*)> base_{nullptr, nullptr};
};

// Releases everything allocated after its construction when it goes out of scope.
class WorkspaceScope {
 public:
  explicit WorkspaceScope(Workspace& ws) : ws_(ws), mark_(ws.mark()) {}
  ~WorkspaceScope() { ws_.release(mark_); }
  WorkspaceScope(const WorkspaceScope&) = delete;
  WorkspaceScope& operator=(const WorkspaceScope&) = delete;

 private:
  Workspace& ws_;
  size_t mark_;
};

}  // namespace duet

// duet::Workspace — a stack (bump) allocator for per-request scratch floats.
//
// Lifecycle: a Context runs one warm-up evaluation in measuring mode (every
// alloc is its own heap block; the peak of the stack discipline is recorded),
// then commit() allocates one 64-byte-aligned block of exactly that peak and
// every later evaluation bumps inside it: no heap allocation on the hot path.
// Scratch is released in LIFO order via WorkspaceScope.
//
// Measuring mode never aborts: when a block cannot be allocated, or the running
// total would pass set_limit(), alloc() throws WorkspaceExhausted (before
// allocating); Context::create catches it and returns kResourceExhausted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <vector>

namespace duet {

// Thrown by Workspace::alloc in measuring mode (see above).
class WorkspaceExhausted : public std::bad_alloc {
 public:
  WorkspaceExhausted(size_t requested, size_t total, bool over_limit)
      : requested_bytes(requested), total_bytes(total), over_limit(over_limit) {}
  const char *what() const noexcept override {
    return over_limit ? "workspace over its limit" : "out of memory allocating workspace";
  }
  size_t requested_bytes;  // this allocation
  size_t total_bytes;      // the stack's size including it
  bool over_limit;         // true: set_limit() was exceeded; false: the allocation
                           // failed
};

class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace &) = delete;
  Workspace &operator=(const Workspace &) = delete;

  // Returns n floats (64-byte aligned, contents unspecified). Measuring mode:
  // throws WorkspaceExhausted (see above). Committed: aborts if the block is
  // too small — that is an engine bug (the measured evaluation covers every
  // shape allowed).
  float *alloc(int64_t n);
  size_t mark() const { return offset_; }
  void release(size_t mark);
  // Where the memory comes from (default: 64-byte aligned host memory). A Context passes its
  // backend's alloc(), so the workspace lives in backend memory. Returns null when it cannot
  // allocate; the pointer must be 64-byte aligned. Set before the first alloc().
  using Allocator = std::function<std::shared_ptr<void>(size_t bytes)>;
  void set_allocator(Allocator a) { allocator_ = std::move(a); }
  // Measuring mode: the most bytes the stack may reach (0 = unlimited).
  void set_limit(size_t bytes) { limit_ = bytes; }
  // Switches from measuring to the committed single block (size = measured
  // peak). Returns false (and stays in measuring mode) if the block cannot be
  // allocated.
  [[nodiscard]] bool commit();
  bool committed() const { return committed_; }
  size_t capacity_bytes() const { return capacity_; }
  size_t peak_bytes() const { return peak_; }

  // The bytes one alloc(n) takes from the stack (for planning without
  // allocating).
  static size_t alloc_bytes(int64_t n) {
    return (static_cast<size_t>(n > 0 ? n : 1) * sizeof(float) + 63) / 64 * 64;
  }

 private:
  struct Block {
    size_t offset;
    std::shared_ptr<void> mem;
  };
  std::shared_ptr<void> allocate(size_t bytes) const;
  Allocator allocator_;
  bool committed_ = false;
  size_t offset_ = 0, peak_ = 0, capacity_ = 0, limit_ = 0;  // bytes
  std::vector<Block> blocks_;                                // measuring mode only
  std::shared_ptr<void> base_;
};

// Releases everything allocated after its construction when it goes out of
// scope.
class WorkspaceScope {
 public:
  explicit WorkspaceScope(Workspace &ws) : ws_(ws), mark_(ws.mark()) {}
  ~WorkspaceScope() { ws_.release(mark_); }
  WorkspaceScope(const WorkspaceScope &) = delete;
  WorkspaceScope &operator=(const WorkspaceScope &) = delete;

 private:
  Workspace &ws_;
  size_t mark_;
};

}  // namespace duet

// Shared oneDNN plumbing of the cpu backend (dnnl_ops.cpp: fp32 matmul / conv; dnnl_lowp.cpp:
// bf16 / int8): the process-wide engine, thread-local streams, per-thread scratch buffers,
// activation post-ops and weight reorders.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>

#include "backends/backend.h"

namespace duet::cpu {

dnnl::engine& engine();
dnnl::stream& stream();
// Appends the fused activation (kNone: nothing).
void append_activation(dnnl::post_ops& po, Activation act);
// User-managed scratchpad + the activation post-op.
dnnl::primitive_attr make_attr(Activation act);
// Per-calling-thread buffers that only grow (during a Context's warm-up) and are then reused:
// slot 0 is oneDNN's scratchpad, slot 1 the converted (bf16 / s8) activations, slot 2 the int8
// activation scale handed to oneDNN, slot 3 the patch-embedding patches (patch_conv.h), slots
// 4 and 5 a convolution's source and destination in the primitive's layout (dnnl_conv.h).
// 64-byte aligned.
enum class ThreadBuffer {
  kScratchpad = 0,
  kActivations = 1,
  kScales = 2,
  kPatches = 3,
  kConvSrc = 4,
  kConvDst = 5
};
void* thread_buffer(ThreadBuffer slot, size_t bytes);
inline void* thread_scratchpad(size_t bytes) {
  return thread_buffer(ThreadBuffer::kScratchpad, bytes);
}
dnnl::memory reorder_to(const dnnl::memory& from, const dnnl::memory::desc& to_md);

// Liveness of one cached primitive entry (a member of it): the per-thread handle caches below
// hold a weak reference, so the handles of entries that died with their Model are found and
// destroyed (otherwise every Model loaded and freed in a process leaks them on every thread
// that ran it). Created once per entry; copying / moving keeps the same identity.
struct BoundToken {
  std::shared_ptr<char> alive = std::make_shared<char>(0);
};

// C memory handles (no data) for the descriptors `mds` of one cached primitive entry, per
// calling thread: created on the entry's first execution and afterwards only re-pointed with
// dnnl_memory_set_data_handle, so a warm execution creates nothing. An entry address reused by
// a later Model is told apart by its token; handles of dead entries are destroyed whenever the
// thread's cache has doubled since its last sweep (amortised, never in the steady state).
// Returns mds.size() (<= kMaxBoundHandles) handles in the order given.
constexpr int kMaxBoundHandles = 6;
dnnl_memory_t* bound_handles(const void* entry, const BoundToken& token,
                             std::initializer_list<dnnl::memory::desc> mds);
// dnnl_primitive_execute; a failure here is an engine bug, reported loudly.
void execute_or_die(const dnnl::primitive& p, int nargs, const dnnl_exec_arg_t* args);

// Primitive creation for a new shape cannot fail for shapes the prepare step accepted; if
// oneDNN disagrees that is an engine bug, reported loudly.
template <typename F>
decltype(auto) checked(F&& f) {
  try {
    return f();
  } catch (const dnnl::error& e) {
    std::fprintf(stderr, "duet: internal error: oneDNN primitive creation failed: %s\n", e.what());
    std::abort();
  }
}

}  // namespace duet::cpu

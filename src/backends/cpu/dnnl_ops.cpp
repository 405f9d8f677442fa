#include "backends/cpu/dnnl_ops.h"
#include "backends/cpu/activations.h"
#include "backends/cpu/dnnl_common.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "duet/cpu_features.h"

namespace duet::cpu {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

dnnl::engine &engine() {
  // The ISA cap (DUET_MAX_ISA) must reach oneDNN before its first primitive; a malformed cap is
  // reported by Model::load (and every cpu_info() caller), not here.
  static const bool capped = (static_cast<void>(cpu_info()), true);
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  (void)capped;
  return eng;
}
dnnl::stream &stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

void append_activation(dnnl::post_ops &po, Activation act) {
  switch (act) {
    case Activation::kNone:
      break;
    case Activation::kGeluTanh:
      po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_tanh, 0.f, 0.f);
      break;
    case Activation::kSilu:
      po.append_eltwise(1.f, dnnl::algorithm::eltwise_swish, 1.f, 0.f);
      break;
    case Activation::kSigmoid:
      po.append_eltwise(1.f, dnnl::algorithm::eltwise_logistic, 0.f, 0.f);
      break;
  }
}

dnnl::primitive_attr make_attr(Activation act) {
  dnnl::primitive_attr attr;
  // User-managed scratchpad: oneDNN's library-managed one is shared between
  // primitives and makes concurrent execution from two threads (two Contexts on
  // one Model) unsafe.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::post_ops po;
  append_activation(po, act);
  attr.set_post_ops(po);
  return attr;
}

// Per-calling-thread buffers; grow during a Context's warm-up, then are only
// reused.
void *thread_buffer(ThreadBuffer slot, size_t bytes) {
  struct Slot {
    std::unique_ptr<void, void (*)(void *)> buf{nullptr, std::free};
    size_t cap = 0;
  };
  thread_local Slot slots[6];
  Slot &s = slots[static_cast<int>(slot)];
  if (bytes > s.cap) {
    const size_t cap = (bytes + 4095) / 4096 * 4096;
    s.buf.reset(std::aligned_alloc(64, cap));
    if (!s.buf) {
      std::fprintf(stderr, "duet: out of memory allocating a %zu-byte oneDNN buffer\n", cap);
      std::abort();
    }
    s.cap = cap;
  }
  return s.buf.get();
}

memory reorder_to(const memory &from, const memory::desc &to_md) {
  memory to(to_md, engine());
  dnnl::reorder(from, to).execute(stream(), const_cast<memory &>(from), to);
  stream().wait();
  return to;
}

namespace {

struct BoundSet {
  int n = 0;
  dnnl_memory_desc_t md[kMaxBoundHandles]{};
  dnnl_memory_t mem[kMaxBoundHandles]{};
  std::weak_ptr<char> alive;  // the entry's BoundToken
  void destroy() {
    for (int i = 0; i < n; ++i) dnnl_memory_destroy(mem[i]);
  }
};

struct BoundCache {
  std::unordered_map<const void *, BoundSet> by_entry;
  size_t sweep_at = 64;  // sweep dead entries when the map reaches this size
  ~BoundCache() {
    for (auto &[key, b] : by_entry) b.destroy();
  }
  void sweep() {
    for (auto it = by_entry.begin(); it != by_entry.end();) {
      if (it->second.alive.expired()) {
        it->second.destroy();
        it = by_entry.erase(it);
      } else {
        ++it;
      }
    }
    sweep_at = std::max<size_t>(64, 2 * by_entry.size());
  }
};

bool same_owner(const std::weak_ptr<char> &a, const std::shared_ptr<char> &b) {
  return !a.owner_before(b) && !b.owner_before(a);
}

}  // namespace

dnnl_memory_t *bound_handles(const void *entry, const BoundToken &token,
                             std::initializer_list<memory::desc> mds) {
  thread_local BoundCache cache;
  const int n = static_cast<int>(mds.size());
  auto it = cache.by_entry.find(entry);
  if (it != cache.by_entry.end()) {
    bool same = it->second.n == n && same_owner(it->second.alive, token.alive);
    int i = 0;
    for (const memory::desc &md : mds)
      same = same && dnnl_memory_desc_equal(&it->second.md[i++], &md.data);
    if (same) return it->second.mem;
    it->second.destroy();
    cache.by_entry.erase(it);
  }
  if (n > kMaxBoundHandles) {
    std::fprintf(stderr, "duet: internal error: %d bound memories (max %d)\n", n, kMaxBoundHandles);
    std::abort();
  }
  if (cache.by_entry.size() + 1 >= cache.sweep_at) cache.sweep();
  BoundSet b;
  b.n = n;
  b.alive = token.alive;
  int i = 0;
  for (const memory::desc &md : mds) {
    b.md[i] = md.data;
    dnnl_memory_create(&b.mem[i], &md.data, engine().get(), DNNL_MEMORY_NONE);
    ++i;
  }
  return cache.by_entry.emplace(entry, b).first->second.mem;
}

void execute_or_die(const dnnl::primitive &p, int nargs, const dnnl_exec_arg_t *args) {
  const dnnl_status_t st = dnnl_primitive_execute(p.get(), stream().get(), nargs, args);
  if (st != dnnl_success) {
    std::fprintf(stderr, "duet: internal error: oneDNN execute failed (status %d)\n",
                 static_cast<int>(st));
    std::abort();
  }
}

namespace {

// Executes with the C API (an args array on the stack: no std::unordered_map
// per call on our side).
void execute(const void *entry, const BoundToken &token, const dnnl::primitive &p,
             const memory::desc &src_md,
             const float *src, const memory &weights, const memory &bias,
             const memory::desc &dst_md, float *dst, const memory::desc &scratch_md) {
  dnnl_memory_t *m = bound_handles(entry, token, {src_md, dst_md, scratch_md});  // src, dst, scratch
  dnnl_memory_set_data_handle(m[0], const_cast<float *>(src));
  dnnl_memory_set_data_handle(m[1], dst);
  dnnl_memory_set_data_handle(m[2], thread_scratchpad(scratch_md.get_size()));
  const dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, m[0]},
                                   {DNNL_ARG_WEIGHTS, weights.get()},
                                   {DNNL_ARG_BIAS, bias.get()},
                                   {DNNL_ARG_DST, m[1]},
                                   {DNNL_ARG_SCRATCHPAD, m[2]}};
  execute_or_die(p, 5, args);
}

struct Entry {
  dnnl::primitive prim;
  memory::desc src_md, dst_md, scratch_md;
  memory weights;  // packed for this primitive (may share the op's buffer)
  BoundToken token;
};

// ---- linear
// ----------------------------------------------------------------------------------

class DnnlLinear final : public PreparedLinear {
 public:
  memory packed;  // weights [K, N] logical (W^T) in the representative
                  // primitive's layout
  memory bias;    // [1, N]
  // act = GELU: where it runs for a call of m rows (dnnl_ops.h, ActPlacement).
  ActPlacement place = ActPlacement::kAuto;
  bool onednn_avx512 = false;
  // Below AVX-512 oneDNN 2.6 runs f32 matmul as gemm:jit with the eltwise post-op as a slow
  // extra pass: for the demo's mlp_fc1 (98×512×128) post-op 233 us, plain matmul + Highway GELU
  // 194 us, plain matmul alone 136 us. Once the output outgrows the L2 cache the separate pass
  // pays for a second trip through memory and the post-op wins (seed-scale 512×5120×1280: 66 vs
  // 75 ms). AVX-512 (brgemm) fuses it well at every size (bench/kernels.cpp BM_linear_gelu).
  static constexpr int64_t kSeparateGeluMaxOutputs = 1 << 18;  // 1 MiB of fp32
  bool separate_gelu(int64_t m) const {
    if (act != Activation::kGeluTanh || place == ActPlacement::kPostOp) return false;
    return place == ActPlacement::kSeparate ||
           (!onednn_avx512 && m * out <= kSeparateGeluMaxOutputs);
  }
  mutable std::mutex mu;
  mutable std::map<int64_t, Entry> cache;  // by M

  dnnl::matmul::primitive_desc make_pd(int64_t m) const {
    memory::desc src({m, in}, dt::f32, tag::ab), dst({m, out}, dt::f32, tag::ab);
    memory::desc wei({in, out}, dt::f32, tag::any), b({1, out}, dt::f32, tag::ab);
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, b, dst),
                                        make_attr(separate_gelu(m) ? Activation::kNone : act),
                                        engine());
  }
  const Entry &entry(int64_t m) const {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(m);
    if (it != cache.end()) return it->second;
    auto pd = make_pd(m);
    Entry e;
    e.prim = dnnl::matmul(pd);
    e.src_md = pd.src_desc();
    e.dst_md = pd.dst_desc();
    e.scratch_md = pd.scratchpad_desc();
    e.weights =
        pd.weights_desc() == packed.get_desc() ? packed : reorder_to(packed, pd.weights_desc());
    return cache.emplace(m, std::move(e)).first->second;
  }
};

constexpr int64_t kRepresentativeRows = 256;

}  // namespace

Result<std::unique_ptr<PreparedLinear>> dnnl_prepare_linear(const float *w, const float *b,
                                                            int64_t out, int64_t in, Activation act,
                                                            ActPlacement place) {
  try {
    auto op = std::make_unique<DnnlLinear>();
    op->out = out;
    op->in = in;
    op->act = act;
    op->place = place;
    auto cpu = cpu_info();
    op->onednn_avx512 = cpu.is_ok() && (*cpu)->onednn_isa.rfind("avx512", 0) == 0;
    // W [N, K] row-major is W^T [K, N] in "ba" order.
    memory user(memory::desc({in, out}, dt::f32, tag::ba), engine(), const_cast<float *>(w));
    op->packed = reorder_to(user, op->make_pd(kRepresentativeRows).weights_desc());
    op->bias = memory(memory::desc({1, out}, dt::f32, tag::ab), engine());
    float *bp = static_cast<float *>(op->bias.get_data_handle());
    for (int64_t i = 0; i < out; ++i) bp[i] = b ? b[i] : 0.f;
    return std::unique_ptr<PreparedLinear>(std::move(op));
  } catch (const dnnl::error &e) {
    return internal_error(std::string("oneDNN matmul setup failed: ") + e.what());
  }
}

void dnnl_linear(const PreparedLinear &p, const float *x, int64_t m, float *y) {
  const auto &op = static_cast<const DnnlLinear &>(p);
  const Entry &e = checked([&]() -> const Entry & { return op.entry(m); });
  execute(&e, e.token, e.prim, e.src_md, x, e.weights, op.bias, e.dst_md, y, e.scratch_md);
  if (op.separate_gelu(m)) gelu_tanh_inplace(y, m * op.out);
}

}  // namespace duet::cpu

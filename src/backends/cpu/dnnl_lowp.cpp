// bf16 / int8 oneDNN matmul (see dnnl_lowp.h).
#include "backends/cpu/dnnl_lowp.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backends/cpu/dnnl_common.h"
#include "backends/cpu/lowp_convert.h"
#include "duet/cpu_features.h"
#include "ops/lowp.h"

namespace duet::cpu {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

struct LowpEntry {
  dnnl::primitive prim;
  memory::desc src_md, dst_md, scratch_md;
  memory weights;  // packed for this primitive
  BoundToken token;
};

// Executes e on converted activations `src`. bf16 (sx == null): bias is the primitive's bias.
// int8: *sx is the activation scale (post-op 0, binary mul by a [1, 1] tensor) and bias the
// operand of post-op 1 (binary add).
void execute(const LowpEntry& e, const void* src, float* dst, const memory& bias, const float* sx) {
  static const memory::desc sx_md({1, 1}, dt::f32, tag::ab);
  dnnl_memory_t* m = sx ? bound_handles(&e, e.token, {e.src_md, e.dst_md, e.scratch_md, sx_md})
                        : bound_handles(&e, e.token, {e.src_md, e.dst_md, e.scratch_md});
  dnnl_memory_set_data_handle(m[0], const_cast<void*>(src));
  dnnl_memory_set_data_handle(m[1], dst);
  dnnl_memory_set_data_handle(m[2], thread_scratchpad(e.scratch_md.get_size()));
  dnnl_exec_arg_t args[6];
  int n = 0;
  args[n++] = {DNNL_ARG_SRC, m[0]};
  args[n++] = {DNNL_ARG_WEIGHTS, e.weights.get()};
  args[n++] = {DNNL_ARG_DST, m[1]};
  args[n++] = {DNNL_ARG_SCRATCHPAD, m[2]};
  if (sx) {
    dnnl_memory_set_data_handle(m[3], const_cast<float*>(sx));
    args[n++] = {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, m[3]};
    args[n++] = {DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, bias.get()};
  } else {
    args[n++] = {DNNL_ARG_BIAS, bias.get()};
  }
  execute_or_die(e.prim, n, args);
}

memory bias_memory(const float* b, const memory::dims& dims, int64_t n) {
  memory m(memory::desc(dims, dt::f32, dims.size() == 1 ? tag::x : tag::ab), engine());
  float* p = static_cast<float*>(m.get_data_handle());
  for (int64_t i = 0; i < n; ++i) p[i] = b ? b[i] : 0.f;
  return m;
}

constexpr int64_t kRepresentativeRows = 256;

// ---- linear ------------------------------------------------------------------------------------

class LowpLinear final : public PreparedLinear {
 public:
  memory plain;   // W^T [K, N] in "ba" order, bf16 or s8 (an owned copy: the reorder source)
  memory packed;  // the representative primitive's layout
  memory bias;    // [1, N] f32: matmul bias (bf16) or binary post-op operand (int8)
  std::vector<float> w_scale;  // int8: [N]
  mutable std::mutex mu;
  mutable std::map<int64_t, LowpEntry> cache;  // by M

  // int8 without VNNI: u8 activations q + 128 with that constant src zero point (oneDNN
  // subtracts it exactly in int32) and 7-bit weights (ops::halve_int8_rows), ops/lowp.h.
  bool u8 = false;

  bool int8() const { return precision == Precision::kInt8; }

  dnnl::matmul::primitive_desc make_pd(int64_t m) const {
    const dt wdt = int8() ? dt::s8 : dt::bf16;
    memory::desc src({m, in}, u8 ? dt::u8 : wdt, tag::ab), dst({m, out}, dt::f32, tag::ab);
    memory::desc wei({in, out}, wdt, tag::any), b({1, out}, dt::f32, tag::ab);
    dnnl::primitive_attr attr = make_attr(Activation::kNone);
    dnnl::post_ops po;
    if (int8()) {
      // Constant per-N output scales s_w, then × s_x and + bias as binary post-ops whose
      // operands are passed at execution: oneDNN 2.6 picks the brgemm VNNI kernel only with
      // constant output scales (runtime ones fall back to gemm:jit with unpacked weights).
      attr.set_output_scales(1 << 1, w_scale);
      if (u8) attr.set_zero_points(DNNL_ARG_SRC, 0, {ops::kInt8U8Offset});
      po.append_binary(dnnl::algorithm::binary_mul, memory::desc({1, 1}, dt::f32, tag::ab));
      po.append_binary(dnnl::algorithm::binary_add, b);
    }
    append_activation(po, act);
    attr.set_post_ops(po);
    if (int8())
      return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), attr, engine());
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, b, dst), attr, engine());
  }
  const LowpEntry& entry(int64_t m) const {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(m);
    if (it != cache.end()) return it->second;
    auto pd = make_pd(m);
    LowpEntry e;
    e.prim = dnnl::matmul(pd);
    e.src_md = pd.src_desc();
    e.dst_md = pd.dst_desc();
    e.scratch_md = pd.scratchpad_desc();
    e.weights =
        pd.weights_desc() == packed.get_desc() ? packed : reorder_to(plain, pd.weights_desc());
    return cache.emplace(m, std::move(e)).first->second;
  }
};

}  // namespace

Result<std::unique_ptr<PreparedLinear>> dnnl_prepare_linear_lowp(const LayerWeights& lw,
                                                                 const float* b, int64_t out,
                                                                 int64_t in, Activation act) {
  if (lw.precision != Precision::kBF16 && lw.precision != Precision::kInt8)
    return internal_error("dnnl_prepare_linear_lowp: precision must be bf16 or int8");
  try {
    auto op = std::make_unique<LowpLinear>();
    op->out = out;
    op->in = in;
    op->act = act;
    op->precision = lw.precision;
    const bool q8 = lw.precision == Precision::kInt8;
    // W [N, K] row-major is W^T [K, N] in "ba" order; copied so the caller's array may go away.
    op->plain = memory(memory::desc({in, out}, q8 ? dt::s8 : dt::bf16, tag::ba), engine());
    const size_t bytes = static_cast<size_t>(in * out) * (q8 ? 1 : 2);
    std::memcpy(op->plain.get_data_handle(), q8 ? static_cast<const void*>(lw.s8) : lw.bf16, bytes);
    if (q8) {
      op->w_scale.assign(lw.scale, lw.scale + out);
      DUET_ASSIGN_OR_RETURN(const CpuInfo* cpu, cpu_info());
      op->u8 = !cpu->int8_vnni;
      if (op->u8) {  // W [N, K] row-major in "ba" order: the rows are output channels
        auto* w = static_cast<int8_t*>(op->plain.get_data_handle());
        ops::halve_int8_rows(w, op->w_scale.data(), out, in, w, op->w_scale.data());
      }
    }
    op->packed = reorder_to(op->plain, op->make_pd(kRepresentativeRows).weights_desc());
    op->bias = bias_memory(b, {1, out}, out);
    return std::unique_ptr<PreparedLinear>(std::move(op));
  } catch (const dnnl::error& e) {
    return internal_error(std::string("oneDNN ") + precision_name(lw.precision) +
                          " matmul setup failed: " + e.what());
  }
}

void dnnl_linear_lowp(const PreparedLinear& p, const float* x, int64_t m, float* y) {
  const auto& op = static_cast<const LowpLinear&>(p);
  const LowpEntry& e = checked([&]() -> const LowpEntry& { return op.entry(m); });
  const int64_t n = m * op.in;
  if (op.int8()) {
    void* q = thread_buffer(ThreadBuffer::kActivations, n);
    const float sx = op.u8 ? quantize_activations_u8(x, n, static_cast<uint8_t*>(q))
                           : quantize_activations(x, n, static_cast<int8_t*>(q));
    auto* sc = static_cast<float*>(thread_buffer(ThreadBuffer::kScales, sizeof(float)));
    *sc = sx;
    execute(e, q, y, op.bias, sc);
  } else {
    auto* xb = static_cast<uint16_t*>(thread_buffer(ThreadBuffer::kActivations, n * 2));
    convert_bf16(x, n, xb);
    execute(e, xb, y, op.bias, nullptr);
  }
}

}  // namespace duet::cpu

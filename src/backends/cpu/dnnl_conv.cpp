#include "backends/cpu/dnnl_conv.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include "backends/cpu/dnnl_common.h"

namespace duet::cpu {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// One (B, H, W) shape: the convolution and the reorders around it (empty primitives when the
// primitive's layout is already the caller's).
struct ConvEntry {
  dnnl::primitive conv, src_reorder, dst_reorder;
  memory::desc user_src_md, src_md, dst_md, user_dst_md;
  size_t scratch_bytes = 0;  // max over the three primitives (they run one after another)
  memory::desc scratch_md;   // [scratch_bytes] u8
  memory weights;
  BoundToken token;
};

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

class DnnlConv final : public PreparedConv {
 public:
  dt wdt = dt::f32;
  memory packed, bias;
  mutable std::mutex mu;
  mutable std::map<std::tuple<int64_t, int64_t, int64_t>, ConvEntry> cache;  // by (B, H, W)

  memory::desc user_dst_md(int64_t b, int64_t h, int64_t w) const {
    const ConvDesc& d = desc;
    const int64_t ho = (h + 2 * d.pad - d.k) / d.stride + 1,
                  wo = (w + 2 * d.pad - d.k) / d.stride + 1;
    return memory::desc({b, d.cout, ho, wo}, dt::f32, d.tokens_out ? tag::nhwc : tag::nchw);
  }
  dnnl::convolution_forward::primitive_desc make_pd(int64_t b, int64_t h, int64_t w) const {
    const ConvDesc& d = desc;
    const memory::desc udst = user_dst_md(b, h, w);
    memory::desc src({b, d.cin, h, w}, wdt, tag::any);
    memory::desc dst(udst.dims(), dt::f32, tag::any);
    memory::desc wei({d.cout, d.cin, d.k, d.k}, wdt, tag::any);
    memory::desc bias_md({d.cout}, dt::f32, tag::x);
    dnnl::convolution_forward::desc cd(dnnl::prop_kind::forward_inference,
                                       dnnl::algorithm::convolution_direct, src, wei, bias_md, dst,
                                       {d.stride, d.stride}, {d.pad, d.pad}, {d.pad, d.pad});
    return dnnl::convolution_forward::primitive_desc(cd, make_attr(d.act), engine());
  }
  const ConvEntry& entry(int64_t b, int64_t h, int64_t w) const {
    std::lock_guard<std::mutex> lock(mu);
    const auto key = std::make_tuple(b, h, w);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    auto pd = make_pd(b, h, w);
    ConvEntry e;
    e.conv = dnnl::convolution_forward(pd);
    e.user_src_md = memory::desc({b, desc.cin, h, w}, dt::f32, tag::nchw);
    e.src_md = pd.src_desc();
    e.dst_md = pd.dst_desc();
    e.user_dst_md = user_dst_md(b, h, w);
    e.scratch_bytes = pd.scratchpad_desc().get_size();
    if (e.src_md != e.user_src_md) {
      dnnl::reorder::primitive_desc rpd(engine(), e.user_src_md, engine(), e.src_md,
                                        user_scratchpad());
      e.src_reorder = dnnl::reorder(rpd);
      e.scratch_bytes = std::max(e.scratch_bytes, rpd.scratchpad_desc().get_size());
    }
    if (e.dst_md != e.user_dst_md) {
      dnnl::reorder::primitive_desc rpd(engine(), e.dst_md, engine(), e.user_dst_md,
                                        user_scratchpad());
      e.dst_reorder = dnnl::reorder(rpd);
      e.scratch_bytes = std::max(e.scratch_bytes, rpd.scratchpad_desc().get_size());
    }
    e.scratch_md = memory::desc({static_cast<int64_t>(e.scratch_bytes)}, dt::u8, tag::x);
    e.weights =
        pd.weights_desc() == packed.get_desc() ? packed : reorder_to(packed, pd.weights_desc());
    return cache.emplace(key, std::move(e)).first->second;
  }
};

}  // namespace

Result<std::unique_ptr<PreparedConv>> dnnl_prepare_conv(const LayerWeights& lw, const float* b,
                                                        const ConvDesc& d) {
  if (lw.precision != Precision::kF32 && lw.precision != Precision::kBF16)
    return unimplemented(std::string("convolution at precision ") + precision_name(lw.precision) +
                         " (supported: f32, bf16)");
  try {
    auto op = std::make_unique<DnnlConv>();
    op->desc = d;
    op->precision = lw.precision;
    op->wdt = lw.precision == Precision::kBF16 ? dt::bf16 : dt::f32;
    const void* w = lw.precision == Precision::kBF16 ? static_cast<const void*>(lw.bf16) : lw.f32;
    memory user(memory::desc({d.cout, d.cin, d.k, d.k}, op->wdt, tag::oihw), engine(),
                const_cast<void*>(w));
    const int64_t rep = 16 * d.stride;  // representative image side for the packed layout
    op->packed = reorder_to(user, op->make_pd(1, rep, rep).weights_desc());
    op->bias = memory(memory::desc({d.cout}, dt::f32, tag::x), engine());
    float* bp = static_cast<float*>(op->bias.get_data_handle());
    for (int64_t i = 0; i < d.cout; ++i) bp[i] = b ? b[i] : 0.f;
    return std::unique_ptr<PreparedConv>(std::move(op));
  } catch (const dnnl::error& e) {
    return internal_error(std::string("oneDNN convolution setup failed: ") + e.what());
  }
}

void dnnl_conv2d(const PreparedConv& p, const float* x, int64_t b, int64_t h, int64_t w, float* y) {
  const auto& op = static_cast<const DnnlConv&>(p);
  const ConvEntry& e = checked([&]() -> const ConvEntry& { return op.entry(b, h, w); });
  // user_src, src, dst, user_dst, scratch
  dnnl_memory_t* m =
      bound_handles(&e, e.token, {e.user_src_md, e.src_md, e.dst_md, e.user_dst_md, e.scratch_md});
  dnnl_memory_set_data_handle(m[4], thread_scratchpad(e.scratch_bytes));
  if (e.src_reorder) {
    dnnl_memory_set_data_handle(m[0], const_cast<float*>(x));
    dnnl_memory_set_data_handle(m[1], thread_buffer(ThreadBuffer::kConvSrc, e.src_md.get_size()));
    const dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_FROM, m[0]}, {DNNL_ARG_TO, m[1]}, {DNNL_ARG_SCRATCHPAD, m[4]}};
    execute_or_die(e.src_reorder, 3, args);
  } else {
    dnnl_memory_set_data_handle(m[1], const_cast<float*>(x));
  }
  dnnl_memory_set_data_handle(
      m[2], e.dst_reorder ? thread_buffer(ThreadBuffer::kConvDst, e.dst_md.get_size()) : y);
  const dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, m[1]},
                                   {DNNL_ARG_WEIGHTS, e.weights.get()},
                                   {DNNL_ARG_BIAS, op.bias.get()},
                                   {DNNL_ARG_DST, m[2]},
                                   {DNNL_ARG_SCRATCHPAD, m[4]}};
  execute_or_die(e.conv, 5, args);
  if (e.dst_reorder) {
    dnnl_memory_set_data_handle(m[3], y);
    const dnnl_exec_arg_t rargs[3] = {
        {DNNL_ARG_FROM, m[2]}, {DNNL_ARG_TO, m[3]}, {DNNL_ARG_SCRATCHPAD, m[4]}};
    execute_or_die(e.dst_reorder, 3, rargs);
  }
}

}  // namespace duet::cpu

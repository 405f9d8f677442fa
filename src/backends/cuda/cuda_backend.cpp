// The CUDA backend: device memory (cudaMalloc, zeroed), upload / download / copy on the backend's
// one stream, cuBLASLt linear layers (cuda_linear.cpp), the direct convolution, cuFFT high-pass,
// and the own kernels of this folder for everything else. host_visible() is false: the model
// crosses the boundary only through upload / download (exactly what reference-device checks on
// CPU machines). Ops enqueue and return; errors are reported once (cuda_common.h: report).
// See docs/gpu.md for what has and has not run on a GPU.
#include <cuda_runtime.h>
#include <cufft.h>

#include <map>
#include <mutex>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/cuda_common.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_linear.h"
#include "backends/cuda/cuda_logic.h"

namespace duet {
namespace {

using cuda::DeviceMem;
using cuda::shared;

int act_code(Activation a) {
  switch (a) {
    case Activation::kGeluTanh:
      return 1;
    case Activation::kSilu:
      return 2;
    case Activation::kSigmoid:
      return 3;
    case Activation::kNone:
      break;
  }
  return 0;
}

class CudaConv final : public PreparedConv {
 public:
  DeviceMem w, b;  // OIHW fp32 (bf16: values rounded to bf16), [cout]
};

// cuFFT R2C -> half-spectrum mask (with 1/(HW)) -> C2R, plans per image count.
class CudaSpectral final : public SpectralPlan {
 public:
  DeviceMem mask_half;  // [H, W/2+1]
  DeviceMem spec;       // [n, H, W/2+1] complex, grown on demand
  std::map<int64_t, std::pair<cufftHandle, cufftHandle>> plans;  // n -> (R2C, C2R)
  ~CudaSpectral() override {
    for (auto& [n, p] : plans) {
      cufftDestroy(p.first);
      cufftDestroy(p.second);
    }
  }
  void highpass(const float* x, int64_t n, float* y) override {
    if (n <= 0) return;
    const int64_t per = h * (w / 2 + 1);
    auto& st = shared();
    const size_t need = static_cast<size_t>(n * per) * sizeof(cufftComplex);
    if (spec.bytes() < need) {
      cudaStreamSynchronize(st.stream);
      auto m = DeviceMem::make(need, nullptr, "high-pass spectrum");
      if (!m.is_ok()) return cuda::report("highpass", m.status().message());
      spec = std::move(m.value());
    }
    auto it = plans.find(n);
    if (it == plans.end()) {
      int dims[2] = {static_cast<int>(h), static_cast<int>(w)};
      cufftHandle r2c = 0, c2r = 0;
      if (cufftPlanMany(&r2c, 2, dims, nullptr, 1, static_cast<int>(h * w), nullptr, 1,
                        static_cast<int>(per), CUFFT_R2C, static_cast<int>(n)) != CUFFT_SUCCESS ||
          cufftPlanMany(&c2r, 2, dims, nullptr, 1, static_cast<int>(per), nullptr, 1,
                        static_cast<int>(h * w), CUFFT_C2R, static_cast<int>(n)) != CUFFT_SUCCESS)
        return cuda::report("highpass", "cufftPlanMany failed");
      cufftSetStream(r2c, st.stream);
      cufftSetStream(c2r, st.stream);
      it = plans.emplace(n, std::make_pair(r2c, c2r)).first;
    }
    // out-of-place R2C keeps x; C2R may then overwrite spec (it does), and x == y is fine
    if (cufftExecR2C(it->second.first, const_cast<cufftReal*>(x), spec.as<cufftComplex>()) !=
        CUFFT_SUCCESS)
      return cuda::report("highpass", "cufftExecR2C failed");
    cuda::launch_spectrum_mask(spec.get(), mask_half.as<float>(), n, per, st.stream);
    if (cufftExecC2R(it->second.second, spec.as<cufftComplex>(), y) != CUFFT_SUCCESS)
      cuda::report("highpass", "cufftExecC2R failed");
  }
};

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  bool host_visible() const override { return false; }

  Result<std::shared_ptr<BackendBuffer>> alloc(size_t bytes) const override {
    DUET_RETURN_IF_ERROR(shared().init);
    void* p = nullptr;
    const size_t n = bytes > 0 ? bytes : 256;
    const cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess)
      return resource_exhausted("cuda backend: cannot allocate " + std::to_string(bytes) +
                                " bytes (" + cudaGetErrorString(e) + ")");
    if (!cuda::ok(cudaMemsetAsync(p, 0, n, shared().stream), "alloc: memset") ||
        !cuda::ok(cudaStreamSynchronize(shared().stream), "alloc: sync")) {
      cudaFree(p);
      return internal_error("cuda backend: cannot zero a new buffer");
    }
    return std::make_shared<BackendBuffer>(*this, p, bytes, [](void* q) { cudaFree(q); });
  }
  void upload(void* dst, const void* host_src, size_t bytes) const override {
    if (!bytes) return;
    cuda::ok(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, shared().stream),
             "upload");
    cuda::ok(cudaStreamSynchronize(shared().stream), "upload: sync");  // host_src may go away
  }
  void download(void* host_dst, const void* src, size_t bytes) const override {
    if (!bytes) return;
    cuda::ok(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, shared().stream),
             "download");
    cuda::ok(cudaStreamSynchronize(shared().stream), "download: sync");
  }
  void copy(void* dst, const void* src, size_t bytes) const override {
    if (bytes)
      cuda::ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, shared().stream), "copy");
  }

  Result<std::unique_ptr<PreparedLinear>> prepare_linear(const float* w, const float* b,
                                                         int64_t out, int64_t in,
                                                         Activation act) const override {
    LayerWeights lw;
    lw.f32 = w;
    return cuda::prepare_linear(lw, b, out, in, act);
  }
  void linear(const PreparedLinear& op, const float* x, int64_t m, float* y) const override {
    cuda::run_linear(op, x, m, y);
  }
  Result<std::unique_ptr<PreparedLinear>> prepare_linear_weights(const LayerWeights& w,
                                                                 const float* b, int64_t out,
                                                                 int64_t in,
                                                                 Activation act) const override {
    return cuda::prepare_linear(w, b, out, in, act);
  }

  Result<std::unique_ptr<PreparedConv>> prepare_conv(const float* w, const float* b,
                                                     const ConvDesc& d) const override {
    DUET_RETURN_IF_ERROR(shared().init);
    auto op = std::make_unique<CudaConv>();
    op->desc = d;
    const size_t n = static_cast<size_t>(d.cout * d.cin * d.k * d.k);
    DUET_ASSIGN_OR_RETURN(op->w, DeviceMem::make(n * 4, w, "conv weights"));
    if (b) {
      DUET_ASSIGN_OR_RETURN(op->b, DeviceMem::make(static_cast<size_t>(d.cout) * 4, b, "bias"));
    }
    return std::unique_ptr<PreparedConv>(std::move(op));
  }
  Result<std::unique_ptr<PreparedConv>> prepare_conv_weights(const LayerWeights& lw, const float* b,
                                                             const ConvDesc& d) const override {
    if (lw.precision == Precision::kF32) return prepare_conv(lw.f32, b, d);
    if (lw.precision != Precision::kBF16)
      return unimplemented(std::string("convolution at precision ") + precision_name(lw.precision) +
                           " (supported: f32, bf16)");
    std::vector<float> w(static_cast<size_t>(d.cout * d.cin * d.k * d.k));
    for (size_t i = 0; i < w.size(); ++i) w[i] = cuda_logic::bf16_value(lw.bf16[i]);
    auto r = prepare_conv(w.data(), b, d);
    if (r.is_ok()) r.value()->precision = Precision::kBF16;
    return r;
  }
  void conv2d(const PreparedConv& p, const float* x, int64_t b, int64_t h, int64_t w,
              float* y) const override {
    const auto& op = static_cast<const CudaConv&>(p);
    const ConvDesc& d = op.desc;
    cuda::launch_conv2d(x, op.w.as<float>(), op.b.as<float>(), b, d.cin, h, w, d.cout, d.k,
                        d.stride, d.pad, d.tokens_out, act_code(d.act),
                        op.precision == Precision::kBF16, y, shared().stream);
  }

  void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                  float eps, float* y) const override {
    cuda::launch_layer_norm(x, m, d, gamma, beta, eps, y, shared().stream);
  }
  void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                           const float* shift, const float* scale, int64_t mod_stride,
                           float* y) const override {
    cuda::launch_layer_norm_modulate(x, b, n, d, eps, shift, scale, mod_stride, y, shared().stream);
  }
  void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                  const float* gamma, const float* beta, float eps, bool silu,
                  float* y) const override {
    cuda::launch_group_norm(x, b, c, hw, groups, gamma, beta, eps, silu, y, shared().stream);
  }
  void attention(const ops::AttentionArgs& a) const override {
    auto& sh = shared();
    const int splits = cuda::attention_splits(a, sh.sms);
    if (splits <= 1) return cuda::launch_attention(a, 1, nullptr, sh.stream);
    std::lock_guard<std::mutex> lock(sh.scratch_mu);  // held until the kernels are enqueued
    const int64_t n = cuda::attention_scratch_floats(a, splits);
    auto* s = static_cast<float*>(cuda::scratch(static_cast<size_t>(n) * sizeof(float)));
    if (s) cuda::launch_attention(a, splits, s, sh.stream);
  }
  void slab_attention(const ops::SlabAttentionArgs& a) const override {
    cuda::launch_slab_attention(a, shared().stream);
  }
  void cswin_attention(const ops::CswinAttentionArgs& a) const override {
    for (int which = 0; which < 2; ++which) {
      const ops::AttentionArgs at = cuda::launch_cswin_gather(a, which, shared().stream);
      if (at.heads == 0) continue;
      attention(at);
      cuda::launch_cswin_scatter(a, which, shared().stream);
    }
  }
  void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
              int64_t k, int64_t s, float* scratch, float* y) const override {
    cuda::launch_carafe(x, enc, b, c, h, w, k, s, scratch, y, shared().stream);
  }
  Result<std::unique_ptr<SpectralPlan>> plan_spectral(int64_t h, int64_t w,
                                                      const float* mask) const override {
    DUET_RETURN_IF_ERROR(shared().init);
    auto p = std::make_unique<CudaSpectral>();
    p->h = h;
    p->w = w;
    std::vector<float> half(static_cast<size_t>(h * (w / 2 + 1)));
    cuda_logic::half_spectrum_mask(mask, h, w, half.data());
    DUET_ASSIGN_OR_RETURN(p->mask_half,
                          DeviceMem::make(half.size() * 4, half.data(), "high-pass mask"));
    return std::unique_ptr<SpectralPlan>(std::move(p));
  }

  void add(float* x, const float* y, int64_t outer, int64_t n) const override {
    cuda::launch_add(x, y, outer, n, shared().stream);
  }
  void add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b,
                      int64_t n, int64_t d) const override {
    cuda::launch_add_gated_rows(x, y, g, gstride, b, n, d, shared().stream);
  }
  void silu(const float* x, float* y, int64_t n) const override {
    cuda::launch_silu(x, y, n, shared().stream);
  }
  void modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
                const float* scale, int64_t mod_stride, float* y) const override {
    cuda::launch_modulate(x, b, n, d, shift, scale, mod_stride, y, shared().stream);
  }
  void film(float* h, const float* scale, const float* shift, int64_t mstride, int64_t b, int64_t c,
            int64_t hw) const override {
    cuda::launch_film(h, scale, shift, nullptr, mstride, b, c, hw, shared().stream);
  }
  void gated_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                  int64_t b, int64_t c, int64_t hw) const override {
    cuda::launch_film(h, scale, shift, g, mstride, b, c, hw, shared().stream);
  }
  void concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb, int64_t batch,
                       int64_t hw, float* y) const override {
    cuda::launch_concat_channels(a, ca, bsrc, cb, batch, hw, y, shared().stream);
  }
  void concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                        int64_t hw, float* y) const override {
    cuda::launch_concat_broadcast(a, ca, m, cm, batch, hw, y, shared().stream);
  }
  void dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c,
                      int64_t hw) const override {
    cuda::launch_dual_attention(h, ac, as, b, c, hw, shared().stream);
  }
  void fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha,
            int64_t b, int64_t per, float* eps) const override {
    cuda::launch_fuse(eps_s, hp_s, eps_d, alpha, b, per, eps, shared().stream);
  }
  void global_avg_pool(const float* x, int64_t b, int64_t c, int64_t hw, float* y) const override {
    cuda::launch_global_avg_pool(x, b, c, hw, y, shared().stream);
  }
  void timestep_sinusoid(const float* t, int64_t b, int64_t dim, double max_period,
                         float* y) const override {
    cuda::launch_timestep_sinusoid(t, b, dim, max_period, y, shared().stream);
  }
  void unpatchify(const float* y, int64_t b, int64_t gh, int64_t gw, int64_t p, int64_t c,
                  float* out) const override {
    cuda::launch_unpatchify(y, b, gh, gw, p, c, out, shared().stream);
  }
  void embed_tokens(const int64_t* ids, const float* tok, const float* pos, int64_t b, int64_t l,
                    int64_t d, float* x) const override {
    cuda::launch_embed_tokens(ids, tok, pos, b, l, d, x, shared().stream);
  }
  void masked_mean(const float* e, const uint8_t* mask, int64_t b, int64_t l, int64_t d,
                   float* p) const override {
    cuda::launch_masked_mean(e, mask, b, l, d, p, shared().stream);
  }
};

}  // namespace

const Backend& cuda_backend() {
  static const CudaBackend backend;
  return backend;
}

}  // namespace duet

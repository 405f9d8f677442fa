// High-pass projection HP(x) = Re(IFFT2(M ⊙ FFT2(x))) with FFTW. M is symmetric under
// (u, v) -> (-u, -v), so the real-to-complex half spectrum [H, W/2 + 1] carries everything:
// r2c, multiply by M[:, :W/2+1], c2r, scale by 1/(H W). Plans are made once per Context
// (FFTW's planner is not thread-safe: a global mutex guards it); execution uses per-thread
// buffers allocated with the plan, OpenMP over images.
#include <fftw3.h>
#include <omp.h>

#include <cstring>
#include <mutex>
#include <vector>

#include "backends/cpu/fft_highpass.h"

namespace duet::cpu {

namespace {
std::mutex& planner_mutex() {
  static std::mutex mu;
  return mu;
}
}  // namespace

FftwHighpass::~FftwHighpass() {
  std::lock_guard<std::mutex> lock(planner_mutex());
  if (r2c_) fftwf_destroy_plan(static_cast<fftwf_plan>(r2c_));
  if (c2r_) fftwf_destroy_plan(static_cast<fftwf_plan>(c2r_));
  for (float* p : real_) fftwf_free(p);
  for (void* p : spec_) fftwf_free(p);
}

Result<std::unique_ptr<SpectralPlan>> FftwHighpass::create(int64_t h, int64_t w,
                                                           const float* mask) {
  std::unique_ptr<FftwHighpass> p(new FftwHighpass());
  p->h = h;
  p->w = w;
  const int64_t wc = w / 2 + 1;
  p->half_mask_.resize(static_cast<size_t>(h * wc));
  for (int64_t u = 0; u < h; ++u)
    for (int64_t v = 0; v < wc; ++v) p->half_mask_[u * wc + v] = mask[u * w + v];
  const int threads = omp_get_max_threads();
  for (int t = 0; t < threads; ++t) {
    p->real_.push_back(static_cast<float*>(fftwf_malloc(sizeof(float) * h * w)));
    p->spec_.push_back(fftwf_malloc(sizeof(fftwf_complex) * h * wc));
    if (!p->real_.back() || !p->spec_.back())
      return resource_exhausted("FFTW buffer allocation failed");
  }
  std::lock_guard<std::mutex> lock(planner_mutex());
  auto* spec = static_cast<fftwf_complex*>(p->spec_[0]);
  p->r2c_ = fftwf_plan_dft_r2c_2d(static_cast<int>(h), static_cast<int>(w), p->real_[0], spec,
                                  FFTW_ESTIMATE | FFTW_DESTROY_INPUT);
  p->c2r_ = fftwf_plan_dft_c2r_2d(static_cast<int>(h), static_cast<int>(w), spec, p->real_[0],
                                  FFTW_ESTIMATE | FFTW_DESTROY_INPUT);
  if (!p->r2c_ || !p->c2r_) return internal_error("FFTW planning failed");
  return std::unique_ptr<SpectralPlan>(std::move(p));
}

void FftwHighpass::highpass(const float* x, int64_t n, float* y) {
  const int64_t hw = h * w, wc = w / 2 + 1, nthreads = static_cast<int64_t>(real_.size());
  const float inv = 1.0f / static_cast<float>(hw);
  const auto r2c = static_cast<fftwf_plan>(r2c_);
  const auto c2r = static_cast<fftwf_plan>(c2r_);
#pragma omp parallel for schedule(static) num_threads(nthreads) if (n > 1)
  for (int64_t img = 0; img < n; ++img) {
    const int t = omp_get_thread_num();
    float* re = real_[t];
    auto* sp = static_cast<fftwf_complex*>(spec_[t]);
    std::memcpy(re, x + img * hw, sizeof(float) * hw);
    fftwf_execute_dft_r2c(r2c, re, sp);
    for (int64_t i = 0; i < h * wc; ++i) {
      sp[i][0] *= half_mask_[i];
      sp[i][1] *= half_mask_[i];
    }
    fftwf_execute_dft_c2r(c2r, sp, re);
    float* out = y + img * hw;
    for (int64_t i = 0; i < hw; ++i) out[i] = re[i] * inv;
  }
}

}  // namespace duet::cpu

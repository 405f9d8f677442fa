// FFTW-based SpectralPlan of the cpu backend (see fft_highpass.cpp).
#pragma once

#include <memory>
#include <vector>

#include "backends/backend.h"

namespace duet::cpu {

class FftwHighpass final : public SpectralPlan {
 public:
  static Result<std::unique_ptr<SpectralPlan>> create(int64_t h, int64_t w, const float* mask);
  ~FftwHighpass() override;
  void highpass(const float* x, int64_t n_images, float* y) override;

 private:
  FftwHighpass() = default;
  void* r2c_ = nullptr;  // fftwf_plan
  void* c2r_ = nullptr;
  std::vector<float> half_mask_;  // [H, W/2 + 1]
  std::vector<float*> real_;      // per thread [H, W]
  std::vector<void*> spec_;       // per thread fftwf_complex [H, W/2 + 1]
};

}  // namespace duet::cpu

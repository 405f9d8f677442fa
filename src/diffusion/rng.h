// Random sources for samplers.
//   TorchGenerator: reproduces torch.manual_seed(seed); torch.randn(n) (CPU, float32) bit-for-bit,
//                   including the generator state carried across successive randn calls.
//   PhiloxGenerator: counter-based Philox4x32-10 normal generator (seed, offset), order-free.
//   NoiseSource:    what stochastic samplers draw from (real RNG or replayed fixture tensors).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "duet/status.h"

namespace duet::diffusion {

class TorchGenerator {
 public:
  // torch's CPU normal_ for float tensors with >= 16 elements uses a vectorised Box-Muller whose
  // log/sin/cos depend on the CPU kernel torch dispatches to: kAvx2 = avx_mathfun polynomials as
  // built in x86-64 AVX2 wheels/distro builds (e.g. Debian torch 1.13); kDefault = the scalar
  // normal_fill with libm log/cos/sin (non-AVX2 builds, AVX-512 capability).
  enum class Kernel { kAvx2, kDefault };

  explicit TorchGenerator(uint64_t seed = 67280421310721ull, Kernel kernel = Kernel::kAvx2) {
    manual_seed(seed);
    kernel_ = kernel;
  }
  void manual_seed(uint64_t seed);
  void set_kernel(Kernel k) { kernel_ = k; }
  // torch.randn(n) into out (float32, contiguous). No allocation.
  void randn(float* out, size_t n);
  // Raw engine outputs (for tests).
  uint32_t random() { return static_cast<uint32_t>(engine_()); }
  uint64_t random64();

 private:
  void normal_fill(float* data, size_t n);
  void normal_scalar(float* data, size_t n);
  std::mt19937 engine_;
  std::optional<double> next_double_normal_;
  Kernel kernel_ = Kernel::kAvx2;
};

// Convenience: torch.manual_seed(seed); torch.randn(n).
std::vector<float> torch_randn(uint64_t seed, size_t n,
                               TorchGenerator::Kernel kernel = TorchGenerator::Kernel::kAvx2);

class PhiloxGenerator {
 public:
  explicit PhiloxGenerator(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  // Fills out[i] with the standard normal number at stream position offset + i (Box-Muller on
  // two 32-bit draws per pair), then advances offset by n rounded up to even. No allocation.
  void randn(float* out, size_t n);
  uint64_t offset() const { return offset_; }

 private:
  uint64_t seed_, offset_;
};

class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  // Fills out[0..n) with standard normal noise (one draw = one diffusers randn_tensor call).
  virtual Status next(float* out, size_t n) = 0;
};

class TorchNoiseSource : public NoiseSource {
 public:
  explicit TorchNoiseSource(uint64_t seed, TorchGenerator::Kernel k = TorchGenerator::Kernel::kAvx2)
      : gen_(seed, k) {}
  Status next(float* out, size_t n) override {
    gen_.randn(out, n);
    return Status::ok();
  }
  TorchGenerator& generator() { return gen_; }

 private:
  TorchGenerator gen_;
};

class PhiloxNoiseSource : public NoiseSource {
 public:
  explicit PhiloxNoiseSource(uint64_t seed, uint64_t offset = 0) : gen_(seed, offset) {}
  Status next(float* out, size_t n) override {
    gen_.randn(out, n);
    return Status::ok();
  }

 private:
  PhiloxGenerator gen_;
};

// Replays stored tensors in order (fixtures). Fails if asked for more draws or a different size.
class ReplayNoiseSource : public NoiseSource {
 public:
  explicit ReplayNoiseSource(std::vector<std::vector<float>> draws) : draws_(std::move(draws)) {}
  Status next(float* out, size_t n) override;
  size_t used() const { return pos_; }
  size_t size() const { return draws_.size(); }

 private:
  std::vector<std::vector<float>> draws_;
  size_t pos_ = 0;
};

// For deterministic samplers: any draw is an error.
class NoNoiseSource : public NoiseSource {
 public:
  Status next(float*, size_t) override {
    return invalid_argument("this sampler configuration drew noise but no noise source was given");
  }
};

}  // namespace duet::diffusion

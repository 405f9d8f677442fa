// duet::Tensor — a dense, row-major (C-order) n-d array: owning (64-byte aligned heap buffer)
// or a non-owning view (e.g. into an mmap'd checkpoint). Compute is fp32 throughout the engine;
// other dtypes exist for I/O and are converted explicitly (never silently).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "duet/status.h"

namespace duet {

enum class DType { kF32, kF16, kBF16, kI64, kI32, kU8, kI8 };

const char* dtype_name(DType t);  // safetensors spelling: "F32", "F16", "BF16", "I64", ...
size_t dtype_size(DType t);

using Shape = std::vector<int64_t>;
std::string shape_string(const Shape& s);  // "[2, 3, 4]"
// Product of dims; nullopt-like failure (returns false) on negative dims or int64 overflow.
bool checked_numel(const Shape& s, int64_t* out);

class Tensor {
 public:
  Tensor() = default;
  // Owning, zero-initialised.
  static Tensor zeros(Shape shape, DType dtype = DType::kF32);
  // Non-owning view of memory that must outlive the tensor.
  static Tensor view(void* data, Shape shape, DType dtype = DType::kF32);
  static Tensor view(const void* data, Shape shape, DType dtype = DType::kF32) {
    return view(const_cast<void*>(data), std::move(shape), dtype);
  }
  // Owning tensor over memory that `owner` keeps alive (e.g. a backend buffer).
  static Tensor adopt(std::shared_ptr<void> owner, void* data, Shape shape,
                      DType dtype = DType::kF32);

  bool empty() const { return data_ == nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + rank() : i]; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool owns_data() const { return static_cast<bool>(storage_); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  float* f32() { return static_cast<float*>(data_); }
  const float* f32() const { return static_cast<const float*>(data_); }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }

  // Same data, new shape with equal numel (a view; shares ownership when owning).
  Tensor reshaped(Shape shape) const;
  // Deep copy into an owning tensor.
  Tensor clone() const;

 private:
  std::shared_ptr<void> storage_;  // null for views
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::kF32;
  int64_t numel_ = 0;
};

// fp16 / bf16 <-> fp32 conversions (round-to-nearest-even on the way down).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);
// Explicit conversion of an F32/F16/BF16 tensor to an owning F32 tensor.
Result<Tensor> to_f32(const Tensor& t);

}  // namespace duet

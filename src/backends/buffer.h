// Memory a backend owns: host memory for the cpu and reference backends, device-style memory
// behind an upload/download boundary for reference-device (and a GPU backend). Every tensor a
// forward pass touches lives in such a buffer: weights (prepared ops, Model::Impl::store), the
// prompt state, the Context's workspace, its inputs and outputs.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "duet/status.h"
#include "duet/tensor.h"

namespace duet {

class Backend;

class BackendBuffer {
 public:
  // `release(data)` frees the memory (called once, by the destructor).
  BackendBuffer(const Backend& be, void* data, size_t bytes, std::function<void(void*)> release)
      : be_(&be), data_(data), bytes_(bytes), release_(std::move(release)) {}
  ~BackendBuffer() {
    if (release_) release_(data_);
  }
  BackendBuffer(const BackendBuffer&) = delete;
  BackendBuffer& operator=(const BackendBuffer&) = delete;

  // A backend address: dereference it on the host only where backend().host_visible().
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  const Backend& backend() const { return *be_; }

 private:
  const Backend* be_;
  void* data_;
  size_t bytes_;
  std::function<void(void*)> release_;
};

// A zeroed tensor of `shape` in a new buffer of `be` (the tensor owns the buffer).
Result<Tensor> backend_tensor(const Backend& be, Shape shape, DType dtype = DType::kF32);
// A backend tensor with `host`'s shape, dtype and contents (uploaded).
Result<Tensor> upload_tensor(const Backend& be, const Tensor& host);
// An owning host tensor with `t`'s contents (downloaded from `be`).
Tensor download_tensor(const Backend& be, const Tensor& t);

}  // namespace duet

// The default (host) memory of a backend, and backend tensors.
#include <cstdlib>
#include <cstring>

#include "backends/backend.h"
#include "backends/host_block_cache.h"

namespace duet {

Result<std::shared_ptr<BackendBuffer>> Backend::alloc(size_t bytes) const {
  // Freed blocks are kept by size for the next alloc (host_block_cache.h: warm pages instead of
  // fresh page faults on every prompt encode).
  HostBlockCache& cache = HostBlockCache::process();
  void* p = cache.take(bytes);
  if (!p)
    return resource_exhausted(std::string(name()) + " backend: cannot allocate " +
                              std::to_string(bytes) + " bytes");
  return std::make_shared<BackendBuffer>(*this, p, bytes,
                                         [&cache, bytes](void* q) { cache.give(q, bytes); });
}

void Backend::upload(void* dst, const void* host_src, size_t bytes) const {
  if (bytes) std::memcpy(dst, host_src, bytes);
}
void Backend::download(void* host_dst, const void* src, size_t bytes) const {
  if (bytes) std::memcpy(host_dst, src, bytes);
}
void Backend::copy(void* dst, const void* src, size_t bytes) const {
  if (bytes) std::memmove(dst, src, bytes);
}

Result<Tensor> backend_tensor(const Backend& be, Shape shape, DType dtype) {
  int64_t n = 0;
  if (!checked_numel(shape, &n)) return invalid_argument("backend_tensor: bad shape");
  DUET_ASSIGN_OR_RETURN(std::shared_ptr<BackendBuffer> buf,
                        be.alloc(static_cast<size_t>(n) * dtype_size(dtype)));
  void* data = buf->data();
  return Tensor::adopt(std::move(buf), data, std::move(shape), dtype);
}

Result<Tensor> upload_tensor(const Backend& be, const Tensor& host) {
  DUET_ASSIGN_OR_RETURN(Tensor t, backend_tensor(be, host.shape(), host.dtype()));
  be.upload(t.raw(), host.raw(), host.nbytes());
  return t;
}

Tensor download_tensor(const Backend& be, const Tensor& t) {
  Tensor h = Tensor::zeros(t.shape(), t.dtype());
  be.download(h.raw(), t.raw(), t.nbytes());
  return h;
}

}  // namespace duet

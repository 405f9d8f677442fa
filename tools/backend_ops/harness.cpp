#include "harness.h"

#include <cmath>
#include <cstring>

namespace duet::backend_ops {

Result<std::unique_ptr<Guarded>> Guarded::make(const Backend& be, int64_t n, const float* init) {
  auto g = std::make_unique<Guarded>();
  g->be_ = &be;
  g->n_ = n;
  const int64_t total = n + 2 * kGuard;
  DUET_ASSIGN_OR_RETURN(g->buf_, be.alloc(sizeof(float) * static_cast<size_t>(total)));
  g->base_ = static_cast<float*>(g->buf_->data());
  std::vector<uint32_t> host(static_cast<size_t>(total), kSentinel);
  if (init) {
    std::memcpy(host.data() + kGuard, init, sizeof(float) * n);
  } else {
    std::memset(host.data() + kGuard, 0, sizeof(float) * n);
  }
  be.upload(g->base_, host.data(), sizeof(float) * host.size());
  return g;
}

Status Guarded::check(std::vector<float>* out) const {
  std::vector<uint32_t> host(static_cast<size_t>(n_ + 2 * kGuard));
  be_->download(host.data(), base_, sizeof(uint32_t) * host.size());
  for (int64_t i = 0; i < kGuard; ++i) {
    if (host[i] != kSentinel)
      return internal_error("wrote " + std::to_string(kGuard - i) +
                            " floats before the start of its output (guard bytes changed)");
    if (host[kGuard + n_ + i] != kSentinel)
      return internal_error("wrote past the end of its output (guard float " + std::to_string(i) +
                            " after element " + std::to_string(n_ - 1) + " changed)");
  }
  out->resize(static_cast<size_t>(n_));
  std::memcpy(out->data(), host.data() + kGuard, sizeof(float) * n_);
  for (int64_t i = 0; i < n_; ++i)
    if (!std::isfinite((*out)[i]))
      return internal_error("output element " + std::to_string(i) + " is " +
                            std::to_string((*out)[i]));
  return Status::ok();
}

const float* Arena::in(const std::vector<float>& host) { return inout(host); }

float* Arena::inout(const std::vector<float>& host) {
  auto g = Guarded::make(be, static_cast<int64_t>(host.size()), host.data());
  if (!g.is_ok()) {
    if (status.is_ok()) status = g.status();
    return nullptr;
  }
  float* p = g.value()->ptr();
  bound.own.push_back(std::move(g).value());
  return p;
}

float* Arena::out(int64_t n) {
  auto g = Guarded::make(be, n);
  if (!g.is_ok()) {
    if (status.is_ok()) status = g.status();
    return nullptr;
  }
  float* p = g.value()->ptr();
  bound.outputs.push_back(g.value().get());
  bound.own.push_back(std::move(g).value());
  return p;
}

const void* Arena::bytes(const void* host, size_t n) {
  auto buf = be.alloc(n);
  if (!buf.is_ok()) {
    if (status.is_ok()) status = buf.status();
    return nullptr;
  }
  be.upload(buf.value()->data(), host, n);
  const void* p = buf.value()->data();
  bound.keep.push_back(std::move(buf).value());
  return p;
}

std::vector<float> randu(int64_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

double nmse(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(y[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  if (num == 0) return 0;
  return num / (den > 1e-30 ? den : 1e-30);
}

}  // namespace duet::backend_ops

// reference-device: the device-style memory boundary that proves the model keeps every tensor in
// backend memory. These tests make sure the checker itself can fail: host pointers, freed
// buffers and overruns are reported with the op and argument named.
#include <gtest/gtest.h>

#include <vector>

#include "backends/backend.h"

namespace duet {
namespace {

TEST(BackendBoundary, HostPointerIsCaughtAndNamed) {
  const Backend& be = reference_device_backend();
  EXPECT_FALSE(be.host_visible());
  EXPECT_TRUE(reference_backend().host_visible());
  std::vector<float> x(8, 1.f), y(8, 2.f);
  reset_reference_device_violations();
  be.add(x.data(), y.data(), 1, 8);
  const BoundaryViolations v = reference_device_violations();
  EXPECT_EQ(v.count, 2);  // x and y
  EXPECT_NE(v.first.find("add: x"), std::string::npos) << v.first;
  EXPECT_NE(v.first.find("not inside a reference-device buffer"), std::string::npos) << v.first;
}

TEST(BackendBoundary, BuffersPassOverrunsAndFreedBuffersDoNot) {
  const Backend& be = reference_device_backend();
  auto xb = be.alloc(8 * sizeof(float));
  auto yb = be.alloc(8 * sizeof(float));
  ASSERT_TRUE(xb.is_ok() && yb.is_ok());
  float* x = static_cast<float*>(xb.value()->data());
  const float* y = static_cast<const float*>(yb.value()->data());
  const std::vector<float> ones(8, 1.f);
  be.upload(x, ones.data(), 8 * sizeof(float));
  reset_reference_device_violations();
  be.add(x, y, 1, 8);
  EXPECT_EQ(reference_device_violations().count, 0) << reference_device_violations().first;
  std::vector<float> back(8);
  be.download(back.data(), x, 8 * sizeof(float));
  EXPECT_EQ(back, ones);  // + zeros (buffers start zeroed)

  be.add(x + 4, y, 1, 8);  // 4 floats past the end of x's buffer
  EXPECT_EQ(reference_device_violations().count, 1);
  EXPECT_NE(reference_device_violations().first.find("add: x"), std::string::npos);

#if !defined(__SANITIZE_ADDRESS__)  // the op really writes the freed memory: ASan stops there
  reset_reference_device_violations();
  xb.value().reset();  // freed: its range leaves the registry
  be.silu(y, x, 8);
  EXPECT_EQ(reference_device_violations().count, 1);
  EXPECT_NE(reference_device_violations().first.find("silu: y"), std::string::npos)
      << reference_device_violations().first;
#endif
}

TEST(BackendBoundary, BackendTensorsRoundTrip) {
  const Backend& be = reference_device_backend();
  Tensor host = Tensor::zeros({2, 3});
  for (int i = 0; i < 6; ++i) host.f32()[i] = static_cast<float>(i) * 0.5f;
  auto dev = upload_tensor(be, host);
  ASSERT_TRUE(dev.is_ok());
  EXPECT_NE(dev->raw(), host.raw());
  EXPECT_EQ(dev->shape(), host.shape());
  Tensor back = download_tensor(be, *dev);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back.f32()[i], host.f32()[i]);
  auto bad = backend_tensor(be, {-1, 3});
  EXPECT_FALSE(bad.is_ok());
}

}  // namespace
}  // namespace duet

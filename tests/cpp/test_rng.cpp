// torch_randn parity with torch 1.13 (reference file written by tests/cpp/gen_rng_reference.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "diffusion/fixture_file.h"
#include "diffusion/rng.h"

using namespace duet::diffusion;

namespace {
const char* kRef = DUET_SOURCE_DIR "/tests/fixtures/rng/torch_randn.safetensors";

size_t bit_mismatches(const std::vector<float>& a, const std::vector<float>& b) {
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += std::memcmp(&a[i], &b[i], 4) != 0;
  return bad;
}
}  // namespace

TEST(RngTorch, RandnMatchesTorchBitForBit) {
  auto f = FixtureFile::load(kRef);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  int checked = 0;
  for (uint64_t seed : {0ull, 42ull, (1ull << 40) + 3}) {
    for (size_t n : {1, 7, 16, 17, 100, 1000, 4 * 28 * 28}) {
      const std::string name = "randn_s" + std::to_string(seed) + "_n" + std::to_string(n);
      auto t = f->tensor(name);
      ASSERT_TRUE(t.is_ok()) << t.status().to_string();
      const std::vector<float> mine = torch_randn(seed, n);
      ASSERT_EQ(mine.size(), (*t)->data.size()) << name;
      EXPECT_EQ(bit_mismatches(mine, (*t)->data), 0u) << name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 21);
}

TEST(RngTorch, SuccessiveDrawsContinueTheStream) {
  auto f = FixtureFile::load(kRef);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  const size_t seq[] = {7, 7, 1, 16, 17, 3};
  for (uint64_t seed : {0ull, 42ull, (1ull << 40) + 3}) {
    TorchGenerator g(seed);
    for (size_t k = 0; k < 6; ++k) {
      const std::string name =
          "seq_s" + std::to_string(seed) + "_k" + std::to_string(k) + "_n" + std::to_string(seq[k]);
      auto t = f->tensor(name);
      ASSERT_TRUE(t.is_ok()) << t.status().to_string();
      std::vector<float> mine(seq[k]);
      g.randn(mine.data(), mine.size());
      EXPECT_EQ(bit_mismatches(mine, (*t)->data), 0u) << name;
    }
  }
}

TEST(RngTorch, ManualSeedResetsState) {
  TorchGenerator g(5);
  std::vector<float> a(3), b(3);
  g.randn(a.data(), 3);  // leaves a cached normal behind
  g.manual_seed(5);
  g.randn(b.data(), 3);
  EXPECT_EQ(bit_mismatches(a, b), 0u);
}

TEST(RngPhilox, DeterministicOffsetsAndRoughlyNormal) {
  PhiloxGenerator g(1234);
  std::vector<float> all(4096);
  g.randn(all.data(), all.size());
  // Drawing in pieces gives the same stream (counter-based).
  PhiloxGenerator h(1234);
  std::vector<float> part(4096);
  h.randn(part.data(), 1000);
  h.randn(part.data() + 1000, 3096);
  EXPECT_EQ(bit_mismatches(all, part), 0u);
  double mean = 0, var = 0;
  for (float v : all) mean += v;
  mean /= all.size();
  for (float v : all) var += (v - mean) * (v - mean);
  var /= all.size();
  EXPECT_NEAR(mean, 0.0, 0.06);
  EXPECT_NEAR(var, 1.0, 0.08);
  PhiloxGenerator other(1235);
  std::vector<float> o(16);
  other.randn(o.data(), 16);
  EXPECT_NE(std::memcmp(o.data(), all.data(), 64), 0);
}

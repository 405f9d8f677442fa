// Determinism of `duet generate`: the same request and seed gives byte-identical PNGs across
// runs and across thread counts (--threads 1 vs 2). Uses the tiny-demo fixture model, few steps.
// When outputs differ, the test reports the largest per-sample difference (16-bit output so
// sub-8-bit differences are visible) instead of hiding it; see docs/robustness.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "duet/png.h"
#include "test_util.h"

using duet::testing::run_command;
using duet::testing::shell_quote;
using duet::testing::TempDir;

namespace {

// Runs generate with a fixed request; returns the PNG bytes ("" on failure, with a test failure).
std::string generate(const TempDir& dir, const std::string& name, int threads,
                     const std::string& extra = "") {
  const std::string out = dir.file(name);
  const std::string cmd = std::string(DUET_CLI_PATH) +
                          " generate -q --model " DUET_SOURCE_DIR
                          "/tests/fixtures/tiny-demo"
                          " -p 'a small boot' --negative-prompt blurry -n 2 --steps 3"
                          " --sampler dpmpp_2m --seed 1234 --bit-depth 16 --grid --threads " +
                          std::to_string(threads) + " " + extra + " -o " + shell_quote(out);
  const auto r = run_command(cmd);
  EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.err;
  return r.exit_code == 0 ? duet::testing::read_file_bytes(out) : std::string();
}

// Largest absolute sample difference between two PNGs (-1 when they do not decode alike).
int max_sample_diff(const std::string& a, const std::string& b) {
  auto da = duet::decode_png(reinterpret_cast<const uint8_t*>(a.data()), a.size());
  auto db = duet::decode_png(reinterpret_cast<const uint8_t*>(b.data()), b.size());
  if (!da.is_ok() || !db.is_ok() || da->samples.size() != db->samples.size()) return -1;
  int m = 0;
  for (size_t i = 0; i < da->samples.size(); ++i)
    m = std::max(m, std::abs(static_cast<int>(da->samples[i]) - static_cast<int>(db->samples[i])));
  return m;
}

}  // namespace

// (Named *EndToEnd* so the ASan ctest run, which excludes 'EndToEnd', skips these model runs.)
TEST(HardeningEndToEndDeterminism, SameSeedSameBytesAcrossRuns) {
  TempDir dir;
  const std::string a = generate(dir, "a.png", 2);
  const std::string b = generate(dir, "b.png", 2);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b) << "two runs differ; max 16-bit sample diff " << max_sample_diff(a, b);
  // img2img (a different path through the sampler) from a synthetic 28x28 gradient.
  duet::PngImage init;
  init.width = init.height = 28;
  init.channels = 1;
  for (int i = 0; i < 28 * 28; ++i) init.samples.push_back(static_cast<uint16_t>((i * 7) % 256));
  ASSERT_TRUE(duet::write_png_file(dir.file("init.png"), init).is_ok());
  const std::string extra = "--init-image " + shell_quote(dir.file("init.png")) + " --strength 0.5";
  const std::string c = generate(dir, "c.png", 2, extra);
  const std::string d = generate(dir, "d.png", 2, extra);
  ASSERT_FALSE(c.empty());
  EXPECT_EQ(c, d) << "img2img runs differ; max 16-bit sample diff " << max_sample_diff(c, d);
}

TEST(HardeningEndToEndDeterminism, ThreadCountDoesNotChangeTheImage) {
  TempDir dir;
  const std::string one = generate(dir, "t1.png", 1);
  const std::string two = generate(dir, "t2.png", 2);
  ASSERT_FALSE(one.empty());
  ASSERT_FALSE(two.empty());
  const int diff = max_sample_diff(one, two);
  RecordProperty("max_16bit_sample_diff_threads_1_vs_2", diff);
  std::printf("[ determinism ] --threads 1 vs 2: %s, max 16-bit sample diff %d\n",
              one == two ? "byte-identical" : "DIFFERENT", diff);
  EXPECT_EQ(one, two) << "--threads 1 vs --threads 2 differ: max 16-bit sample diff " << diff
                      << " (of 65535)";
}

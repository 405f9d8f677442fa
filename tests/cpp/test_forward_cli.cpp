// `duet forward` end to end against `python -m duet_ref.forward`: a fresh random checkpoint of a
// config that is not among the fixtures (fashion-duet), the same x file, both refine modes.
// Skipped (with the reason) when python3 + torch or the exporter are unavailable.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "duet/safetensors.h"

namespace duet {
namespace {

const std::string kPython = "/usr/bin/python3";

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string python_dir() { return std::string(DUET_SOURCE_DIR) + "/python"; }

class ForwardCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/duet_fwd_XXXXXX";
    if (!mkdtemp(tmpl)) return;
    dir_ = tmpl;
    if (sh("cd " + python_dir() + " && " + kPython +
           " -c 'import torch, duet_ref.export, duet_ref.forward' > /dev/null 2>&1") != 0) {
      skip_ = "python3 with torch and duet_ref.export/forward is not available";
      return;
    }
    if (sh("cd " + python_dir() + " && " + kPython +
           " -m duet_ref.export --random --config ../configs/fashion-duet.json --seed 7 --out " +
           dir_ + "/model > " + dir_ + "/export.log 2>&1") != 0) {
      skip_ = "duet_ref.export failed (see " + dir_ + "/export.log)";
      return;
    }
    // x [2, 1, 28, 28] ~ N(0, 1), fixed seed
    Tensor x = Tensor::zeros({2, 1, 28, 28});
    std::mt19937 rng(1234);
    std::normal_distribution<float> nd;
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = nd(rng);
    Status st = write_safetensors(dir_ + "/x.safetensors", {{"x", x}});
    if (!st.is_ok()) skip_ = st.to_string();
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Runs both implementations and compares every output.
  void compare(bool refine, const std::string& backend) {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    const std::string common = " --model " + dir_ + "/model --prompt 'a Red  dress' --x " + dir_ +
                               "/x.safetensors --t 537.25" + (refine ? " --refine" : "");
    const std::string cpp_out = dir_ + "/cpp_" + backend + (refine ? "_r" : "") + ".safetensors";
    const std::string py_out = dir_ + "/py" + (refine ? "_r" : "") + ".safetensors";
    ASSERT_EQ(sh(std::string(DUET_CLI_PATH) + " forward" + common + " --backend " + backend +
                 " --out " + cpp_out + " > /dev/null"),
              0);
    ASSERT_EQ(sh("cd " + python_dir() + " && " + kPython + " -m duet_ref.forward" + common +
                 " --out " + py_out + " > /dev/null"),
              0);
    auto a = SafetensorsFile::open(cpp_out);
    auto b = SafetensorsFile::open(py_out);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    ASSERT_TRUE(b.is_ok()) << b.status().to_string();
    for (const char* key : {"eps_s", "r", "eps_d", "alpha", "eps"}) {
      auto ta = a->load_f32(key);
      auto tb = b->load_f32(key);
      ASSERT_TRUE(ta.is_ok() && tb.is_ok()) << key;
      ASSERT_EQ(ta->shape(), tb->shape()) << key;
      double worst = 0;
      for (int64_t i = 0; i < tb->numel(); ++i) {
        const double va = ta->f32()[i], vb = tb->f32()[i];
        ASSERT_FALSE(std::isnan(va)) << key << "[" << i << "]";
        worst = std::max(worst, std::fabs(va - vb) / (1 + std::fabs(vb)));
      }
      EXPECT_LE(worst, 1e-4) << key;
      std::printf("[forward-cli %s refine=%d] %s max rel err %.2e\n", backend.c_str(), refine, key,
                  worst);
    }
  }

  static std::string dir_, skip_;
};
std::string ForwardCli::dir_, ForwardCli::skip_;

TEST_F(ForwardCli, RefineMatchesPythonCpu) { compare(true, "cpu"); }
TEST_F(ForwardCli, NoRefineMatchesPythonCpu) { compare(false, "cpu"); }
TEST_F(ForwardCli, RefineMatchesPythonReference) { compare(true, "reference"); }

TEST_F(ForwardCli, BadModelDirFailsWithOneLine) {
  const std::string err = (dir_.empty() ? std::string("/tmp") : dir_) + "/err.txt";
  const int rc = sh(std::string(DUET_CLI_PATH) +
                    " forward --model /nonexistent/model --prompt x --x /nonexistent/x.safetensors"
                    " --t 1 --out /tmp/never.safetensors 2> " +
                    err);
  EXPECT_NE(rc, 0);
  FILE* f = std::fopen(err.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[4096] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  const std::string text(buf, n);
  EXPECT_NE(text.find("duet forward:"), std::string::npos) << text;
  EXPECT_NE(text.find("/nonexistent/model"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
}

}  // namespace
}  // namespace duet

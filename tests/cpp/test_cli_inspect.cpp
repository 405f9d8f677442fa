// `duet inspect` end to end: runs the built CLI (DUET_CLI_PATH) on good and malformed model dirs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "duet/checkpoint.h"
#include "duet/config.h"
#include "duet/safetensors.h"
#include "test_util.h"

using duet::testing::CommandResult;
using duet::testing::run_command;
using duet::testing::shell_quote;
using duet::testing::TempDir;

namespace {

CommandResult inspect(const std::string& dir, const std::string& flags = "") {
  return run_command(std::string(DUET_CLI_PATH) + " inspect " + shell_quote(dir) + " " + flags);
}

void copy_fixture(const TempDir& dir, const char* name) {
  const std::string src = std::string(DUET_SOURCE_DIR "/tests/fixtures/") + name + "/";
  for (const char* f : {"config.json", "model.safetensors"})
    duet::testing::write_file(dir.file(f), duet::testing::read_file_bytes(src + f));
}

void expect_contains(const std::string& hay, const std::string& needle) {
  EXPECT_NE(hay.find(needle), std::string::npos) << "expected '" << needle << "' in:\n" << hay;
}

}  // namespace

TEST(CliInspect, FixtureModelPasses) {
  const auto r = inspect(DUET_SOURCE_DIR "/tests/fixtures/awkward", "--check");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  expect_contains(r.out, "model awkward");
  expect_contains(r.out, "refiner.enc.1.skip.weight");
  expect_contains(r.out, "checkpoint matches config: 184 tensors");
  expect_contains(r.out, "check: all weights finite");
  expect_contains(r.out, "  total");
}

TEST(CliInspect, NotADirectory) {
  TempDir dir;
  const auto r = inspect(dir.file("nope"));
  EXPECT_EQ(r.exit_code, 1);
  expect_contains(r.err, "not a model directory");
}

TEST(CliInspect, BadConfig) {
  TempDir dir;
  copy_fixture(dir, "awkward");
  duet::testing::write_file(dir.file("config.json"), R"({"backbone": {"heads": 5}})");
  const auto r = inspect(dir.path());
  EXPECT_EQ(r.exit_code, 1);
  expect_contains(r.err, "config.json: field backbone.heads: must divide backbone.width");
}

TEST(CliInspect, TruncatedSafetensors) {
  TempDir dir;
  copy_fixture(dir, "awkward");
  std::string bytes = duet::testing::read_file_bytes(dir.file("model.safetensors"));
  bytes.resize(bytes.size() - 10);
  duet::testing::write_file(dir.file("model.safetensors"), bytes);
  const auto r = inspect(dir.path());
  EXPECT_EQ(r.exit_code, 1);
  expect_contains(r.err, dir.file("model.safetensors") + ": tensor '");
  expect_contains(r.err, "out of bounds");
}

TEST(CliInspect, MissingTensorAndNaN) {
  TempDir dir;
  copy_fixture(dir, "awkward");
  auto cfg = duet::load_config(dir.file("config.json"));
  ASSERT_TRUE(cfg.is_ok());
  std::vector<std::pair<std::string, duet::Tensor>> ts;
  for (const auto& e : duet::expected_tensors(*cfg)) {
    if (e.name == "refiner.mid.t_mix.weight") continue;
    ts.emplace_back(e.name, duet::Tensor::zeros(e.shape));
  }
  for (auto& [name, t] : ts) {
    if (name == "backbone.final.linear.bias") t.f32()[0] = std::numeric_limits<float>::quiet_NaN();
    if (name == "gate.mlp.fc2.weight") t.f32()[1] = std::numeric_limits<float>::infinity();
  }
  ASSERT_TRUE(duet::write_safetensors(dir.file("model.safetensors"), ts).is_ok());
  const auto r = inspect(dir.path(), "--check -q");
  EXPECT_EQ(r.exit_code, 1);
  expect_contains(r.err,
                  "model.safetensors: missing tensor 'refiner.mid.t_mix.weight' (expected "
                  "[24, 29, 1, 1] F32)");
  expect_contains(r.err, "tensor 'backbone.final.linear.bias' has 1 non-finite values");
  expect_contains(r.err, "tensor 'gate.mlp.fc2.weight' has 1 non-finite values");
  expect_contains(r.err, "2 tensors contain NaN/Inf");
}

TEST(CliInspect, UsageErrors) {
  const auto r = run_command(std::string(DUET_CLI_PATH) + " inspect");
  EXPECT_NE(r.exit_code, 0);
  expect_contains(r.err + r.out, "model_dir");
}

// A fresh random export from the python reference (skipped when python/torch are unavailable).
TEST(CliInspect, PythonRandomExport) {
  const std::string py = "cd " DUET_SOURCE_DIR "/python && /usr/bin/python3";
  if (run_command(py + " -c 'import torch, duet_ref.export'").exit_code != 0)
    GTEST_SKIP() << "python3 with torch and duet_ref.export unavailable; cannot create a random "
                    "checkpoint";
  TempDir dir;
  const auto e = run_command(py +
                             " -m duet_ref.export --random --config " DUET_SOURCE_DIR
                             "/configs/fashion-duet.json --seed 0 --out " +
                             shell_quote(dir.path()));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const auto r = inspect(dir.path(), "--check");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  expect_contains(r.out, "checkpoint matches config: 286 tensors");
  expect_contains(r.out, "  backbone       2315152");
  expect_contains(r.out, "  total          3159394");
  expect_contains(r.out, "F32     286 tensors       12637576 bytes");
}

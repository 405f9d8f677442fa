// Expected tensor table (vs. python-written checkpoints and python counts) and check_checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "duet/checkpoint.h"
#include "duet/config.h"
#include "duet/safetensors.h"
#include "test_util.h"

using duet::DType;
using duet::ModelConfig;
using duet::SafetensorsFile;
using duet::Tensor;
using duet::testing::TempDir;

namespace {

ModelConfig load(const std::string& rel) {
  auto c = duet::load_config(DUET_SOURCE_DIR "/" + rel);
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  return c.is_ok() ? *c : ModelConfig{};
}

const duet::ExpectedTensor* find(const std::vector<duet::ExpectedTensor>& t, const std::string& n) {
  for (const auto& e : t)
    if (e.name == n) return &e;
  return nullptr;
}

// A zero-filled checkpoint matching `cfg`, optionally edited, written to dir/model.safetensors.
using Edit = std::function<void(std::vector<std::pair<std::string, Tensor>>&)>;
std::string write_checkpoint(const TempDir& dir, const ModelConfig& cfg, const Edit& edit = {},
                             DType dtype = DType::kF32) {
  std::vector<std::pair<std::string, Tensor>> ts;
  for (const auto& e : duet::expected_tensors(cfg))
    ts.emplace_back(e.name, Tensor::zeros(e.shape, dtype));
  if (edit) edit(ts);
  const std::string path = dir.file("model.safetensors");
  EXPECT_TRUE(duet::write_safetensors(path, ts).is_ok());
  return path;
}

ModelConfig small_config() {
  auto c = duet::parse_config(R"({"text": {"width": 16, "heads": 2, "layers": 1},
      "backbone": {"width": 16, "heads": 2, "depth": 1},
      "refiner": {"base_channels": 8, "groups": 4, "time_channels": 4}, "gate": {"hidden": 8}})");
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  return *c;
}

}  // namespace

// The python exporter writes state_dict() in order: names, order and shapes must all agree.
TEST(Checkpoint, ExpectedTableMatchesPythonExports) {
  for (const char* dir : {"tiny-demo", "awkward"}) {
    const ModelConfig cfg = load(std::string("tests/fixtures/") + dir + "/config.json");
    auto f = SafetensorsFile::open(std::string(DUET_SOURCE_DIR "/tests/fixtures/") + dir +
                                   "/model.safetensors");
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    const auto want = duet::expected_tensors(cfg);
    ASSERT_EQ(want.size(), f->tensors().size()) << dir;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(want[i].name, f->tensors()[i].name) << dir << " #" << i;
      EXPECT_EQ(want[i].shape, f->tensors()[i].shape) << dir << " " << want[i].name;
    }
    EXPECT_TRUE(duet::check_checkpoint(*f, cfg).is_ok()) << dir;
  }
}

TEST(Checkpoint, FashionParameterCountsMatchPython) {
  const ModelConfig cfg = load("configs/fashion-duet.json");
  const auto want = duet::expected_tensors(cfg);
  EXPECT_EQ(want.size(), 286u);
  // DuetModel.branch_parameters() of python/duet_ref for configs/fashion-duet.json.
  const duet::BranchCounts n = duet::count_parameters(want);
  EXPECT_EQ(n.text, 434048);
  EXPECT_EQ(n.cond, 65920);
  EXPECT_EQ(n.backbone, 2315152);
  EXPECT_EQ(n.refiner, 327761);
  EXPECT_EQ(n.gate, 16513);
  EXPECT_EQ(n.other, 0);
  EXPECT_EQ(n.total(), 3159394);
  EXPECT_EQ(find(want, "refiner.mid.t_mix.weight")->shape, (duet::Shape{48, 64, 1, 1}));
  EXPECT_EQ(find(want, "backbone.blocks.5.ada.weight")->shape, (duet::Shape{768, 128}));
  EXPECT_EQ(find(want, "refiner.up.0.enc.weight")->shape, (duet::Shape{100, 16, 3, 3}));
}

// Counts produced by python/duet_ref for the same overrides of DEFAULTS.
TEST(Checkpoint, SkipConvsAndDecoderOrderForOtherConfigs) {
  auto a = duet::parse_config(R"({"refiner": {"base_channels": 16, "channel_mult": [1,1,2,4],
      "groups": 4}, "image": {"height": 32, "width": 32, "channels": 3}})");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  auto ta = duet::expected_tensors(*a);
  EXPECT_EQ(ta.size(), 324u);
  const auto na = duet::count_parameters(ta);
  EXPECT_EQ(na.cond, 111168);
  EXPECT_EQ(na.backbone, 4984176);
  EXPECT_EQ(na.refiner, 370687);
  EXPECT_EQ(na.total(), 5916592);
  EXPECT_EQ(find(ta, "refiner.enc.0.skip.weight"), nullptr);  // 16 -> 16
  EXPECT_EQ(find(ta, "refiner.enc.1.skip.weight"), nullptr);
  EXPECT_EQ(find(ta, "refiner.enc.2.skip.weight")->shape, (duet::Shape{32, 16, 1, 1}));
  EXPECT_EQ(find(ta, "refiner.enc.3.skip.weight")->shape, (duet::Shape{64, 32, 1, 1}));
  EXPECT_EQ(find(ta, "refiner.up.0.comp.weight")->shape, (duet::Shape{16, 64, 1, 1}));
  EXPECT_EQ(find(ta, "refiner.up.2.comp.weight")->shape, (duet::Shape{16, 16, 1, 1}));
  EXPECT_EQ(find(ta, "refiner.fuse.0.weight")->shape, (duet::Shape{32, 96, 1, 1}));
  EXPECT_EQ(find(ta, "refiner.fuse.2.weight")->shape, (duet::Shape{16, 32, 1, 1}));

  auto b = duet::parse_config(
      R"({"refiner": {"channel_mult": [2]}, "backbone": {"depth": 1}, "text": {"layers": 1}})");
  ASSERT_TRUE(b.is_ok());
  auto tb = duet::expected_tensors(*b);
  EXPECT_EQ(tb.size(), 92u);
  const auto nb = duet::count_parameters(tb);
  EXPECT_EQ(nb.text, 235776);
  EXPECT_EQ(nb.refiner, 186881);
  EXPECT_EQ(nb.total(), 1446034);
  EXPECT_EQ(find(tb, "refiner.enc.0.skip.weight")->shape, (duet::Shape{64, 32, 1, 1}));
  EXPECT_EQ(find(tb, "refiner.down.0.weight"), nullptr);  // one level: no down/up/fuse/dec
  EXPECT_EQ(find(tb, "refiner.dec.0.norm1.weight"), nullptr);
}

TEST(Checkpoint, BranchOf) {
  EXPECT_EQ(duet::branch_of("text.pos_emb"), "text");
  EXPECT_EQ(duet::branch_of("gate.mlp.fc1.weight"), "gate");
  EXPECT_EQ(duet::branch_of("textual.x"), "other");
  EXPECT_EQ(duet::branch_of("refiner"), "other");
}

TEST(Checkpoint, AcceptsF32F16Bf16) {
  const ModelConfig cfg = small_config();
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    TempDir dir;
    auto f = SafetensorsFile::open(write_checkpoint(dir, cfg, {}, t));
    ASSERT_TRUE(f.is_ok());
    EXPECT_TRUE(duet::check_checkpoint(*f, cfg).is_ok()) << duet::dtype_name(t);
  }
}

TEST(Checkpoint, MissingTensor) {
  const ModelConfig cfg = load("configs/fashion-duet.json");
  TempDir dir;
  const std::string path = write_checkpoint(dir, cfg, [](auto& ts) {
    ts.erase(std::find_if(ts.begin(), ts.end(),
                          [](auto& p) { return p.first == "refiner.mid.t_mix.weight"; }));
  });
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok());
  auto s = duet::check_checkpoint(*f, cfg);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find(path + ": missing tensor 'refiner.mid.t_mix.weight' (expected [48, "
                                    "64, 1, 1] F32)"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("1 missing, 0 unexpected, 0 wrong shape, 0 wrong dtype"),
            std::string::npos);
}

TEST(Checkpoint, ExtraWrongShapeWrongDtypeAndCounts) {
  const ModelConfig cfg = small_config();
  TempDir dir;
  const std::string path = write_checkpoint(dir, cfg, [](auto& ts) {
    ts.emplace_back("backbone.blocks.7.ada.weight", Tensor::zeros({3}));
    ts.emplace_back("ema.step", Tensor::zeros({1}, DType::kI64));
    for (auto& [name, t] : ts) {
      if (name == "gate.mlp.fc1.weight") t = Tensor::zeros({8, 255});
      if (name == "text.pos_emb") t = Tensor::zeros({32, 16}, DType::kI32);
    }
    // Drop all 12 text.blocks.0.* tensors (> 5: the summary elides the rest).
    ts.erase(std::remove_if(ts.begin(), ts.end(),
                            [](auto& p) { return p.first.rfind("text.blocks.0.", 0) == 0; }),
             ts.end());
  });
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok());
  const auto rep = duet::compare_checkpoint(*f, cfg);
  EXPECT_EQ(rep.missing.size(), 12u);
  EXPECT_EQ(rep.extra.size(), 2u);
  EXPECT_EQ(rep.mis_shaped.size(), 1u);
  EXPECT_EQ(rep.mis_typed.size(), 1u);
  auto s = duet::check_checkpoint(*f, cfg);
  ASSERT_FALSE(s.is_ok());
  const std::string& m = s.message();
  for (const std::string& sub : std::vector<std::string>{
           path +
               ": checkpoint does not match the config: 12 missing, 2 unexpected, 1 wrong shape, "
               "1 wrong dtype",
           path + ": missing tensor 'text.blocks.0.ln1.weight' (expected [16] F32)",
           std::string("... and 7 more like this"),
           path + ": unexpected tensor 'backbone.blocks.7.ada.weight' [3] F32",
           "unexpected tensor 'ema.step' [1] I64",
           path + ": tensor 'gate.mlp.fc1.weight': shape [8, 255] but the config needs [8, 256]",
           path + ": tensor 'text.pos_emb': dtype I32; weights must be F32, F16 or BF16"})
    EXPECT_NE(m.find(sub), std::string::npos) << "expected '" << sub << "' in:\n" << m;
}

TEST(Checkpoint, WrongConfigForCheckpoint) {
  // A tiny-demo checkpoint checked against the fashion config (depth 6 vs 2).
  const ModelConfig cfg = load("configs/fashion-duet.json");
  auto f = SafetensorsFile::open(DUET_SOURCE_DIR "/tests/fixtures/tiny-demo/model.safetensors");
  ASSERT_TRUE(f.is_ok());
  auto s = duet::check_checkpoint(*f, cfg);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("88 missing"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("missing tensor 'backbone.blocks.2.ada.weight'"), std::string::npos);
}

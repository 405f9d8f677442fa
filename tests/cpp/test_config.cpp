// ModelConfig: defaults + merge + validation, mirroring python/duet_ref/config.py.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "duet/config.h"
#include "test_util.h"

using duet::ModelConfig;

TEST(Config, LoadsFashionDuet) {
  auto c = duet::load_config(DUET_SOURCE_DIR "/configs/fashion-duet.json");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->name, "fashion-duet");
  EXPECT_EQ(c->image.channels, 1);
  EXPECT_EQ(c->image.height, 28);
  EXPECT_EQ(c->text.max_length, 32);
  EXPECT_EQ(c->text.width, 128);
  EXPECT_EQ(c->backbone.width, 128);
  EXPECT_EQ(c->backbone.depth, 6);
  EXPECT_EQ(c->backbone.heads, 4);
  EXPECT_EQ(c->refiner.base_channels, 24);
  EXPECT_EQ(c->refiner.time_channels, 16);
  EXPECT_EQ(c->refiner.carafe.k_up, 5);
  EXPECT_DOUBLE_EQ(c->highpass.rho_c, 0.25);
  EXPECT_DOUBLE_EQ(c->highpass.tau, 0.04);
  EXPECT_EQ(c->diffusion.beta_schedule, "linear");
  EXPECT_EQ(c->inference.refine_every, 3);
  EXPECT_DOUBLE_EQ(c->inference.cfg_scale, 3.0);  // configs/fashion-duet.json sets it
  EXPECT_TRUE(c->unknown_fields.empty());
  // Derived sizes.
  EXPECT_EQ(c->grid_h(), 7);
  EXPECT_EQ(c->tokens(), 49);
  EXPECT_EQ(c->patch_dim(), 16);
  EXPECT_EQ(c->time_embed_dim(), 256);
  EXPECT_EQ(c->refiner_levels(), 3);
  EXPECT_EQ(c->level_channels(), (std::vector<int64_t>{24, 48, 48}));
  EXPECT_EQ(c->level_channels(1), 48);
  EXPECT_EQ(c->refiner_stride(), 4);
  EXPECT_EQ(c->backbone_head_dim(), 32);
}

TEST(Config, AllShippedConfigsLoad) {
  for (const char* name : {"fashion-duet", "tiny-demo", "awkward", "seed-scale"}) {
    auto c = duet::load_config(std::string(DUET_SOURCE_DIR "/configs/") + name + ".json");
    EXPECT_TRUE(c.is_ok()) << name << ": " << c.status().to_string();
  }
}

TEST(Config, EmptyObjectGivesPythonDefaults) {
  auto c = duet::parse_config("{}");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->name, "duet");
  EXPECT_EQ(c->backbone.width, 192);
  EXPECT_EQ(c->backbone.heads, 6);
  EXPECT_EQ(c->refiner.base_channels, 32);
  EXPECT_EQ(c->refiner.channel_mult, (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(c->refiner.time_channels, 32);
  EXPECT_EQ(c->refiner.carafe.compress, 16);
  EXPECT_EQ(c->gate.hidden, 64);
  EXPECT_EQ(c->diffusion.num_train_timesteps, 1000);
  EXPECT_EQ(c->diffusion.prediction_type, "epsilon");
}

TEST(Config, NestedMergeKeepsUnmentionedDefaults) {
  auto c = duet::parse_config(
      R"({"backbone": {"width": 256, "heads": 8}, "refiner": {"carafe": {"k_up": 3}}})");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->backbone.width, 256);
  EXPECT_EQ(c->backbone.depth, 6);  // default kept
  EXPECT_EQ(c->refiner.carafe.k_up, 3);
  EXPECT_EQ(c->refiner.carafe.k_enc, 3);
  EXPECT_EQ(c->refiner.carafe.compress, 16);
  EXPECT_EQ(c->refiner.base_channels, 32);
}

TEST(Config, UnknownFieldsAreListedNotRejected) {
  auto c =
      duet::parse_config(R"({"backbone": {"hieght": 3}, "extra": 1, "text": {"bos_id": 256}})");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->unknown_fields, (std::vector<std::string>{"backbone.hieght", "extra"}));
}

TEST(Config, JsonRoundTrip) {
  auto c = duet::load_config(DUET_SOURCE_DIR "/configs/awkward.json");
  ASSERT_TRUE(c.is_ok());
  auto d = duet::parse_config(duet::config_to_json(*c));
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(duet::config_to_json(*c), duet::config_to_json(*d));
  EXPECT_EQ(d->refiner.channel_mult, (std::vector<int64_t>{1, 2}));
}

// backbone.attention: one name for all blocks or a list per block; it round-trips as given.
TEST(Config, AttentionKindPerBlock) {
  auto one = duet::parse_config(R"({"backbone": {"depth": 3, "attention": "slab_linear"}})");
  ASSERT_TRUE(one.is_ok()) << one.status().to_string();
  EXPECT_TRUE(one->backbone.slab(0) && one->backbone.slab(2));
  auto mix = duet::parse_config(
      R"({"backbone": {"depth": 3, "attention": ["slab_linear", "softmax", "slab_linear"]}})");
  ASSERT_TRUE(mix.is_ok()) << mix.status().to_string();
  EXPECT_TRUE(mix->backbone.slab(0) && !mix->backbone.slab(1) && mix->backbone.slab(2));
  auto back = duet::parse_config(duet::config_to_json(*mix));
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->backbone.attention, mix->backbone.attention);
  auto dflt = duet::parse_config("{}");
  ASSERT_TRUE(dflt.is_ok());
  EXPECT_FALSE(dflt->backbone.slab(0));
  EXPECT_EQ(dflt->backbone.slab_kernel, 5);
  EXPECT_FALSE(dflt->backbone.cswin(0) || dflt->backbone.repbn(0));
  EXPECT_EQ(dflt->backbone.cswin_stripe, 1);
  EXPECT_EQ(dflt->backbone.cswin_kernel, 3);
  auto cs = duet::parse_config(
      R"({"backbone": {"depth": 3, "heads": 4, "width": 64, "attention": ["cswin", "softmax", "slab_linear"],
          "norm": ["repbn", "layernorm", "repbn"], "cswin_stripe": 4, "cswin_kernel": 5}})");
  ASSERT_TRUE(cs.is_ok()) << cs.status().to_string();
  EXPECT_TRUE(cs->backbone.cswin(0) && !cs->backbone.cswin(1) && cs->backbone.slab(2));
  EXPECT_TRUE(cs->backbone.repbn(0) && !cs->backbone.repbn(1) && cs->backbone.repbn(2));
  EXPECT_EQ(cs->backbone.cswin_stripe, 4);
  auto cs_back = duet::parse_config(duet::config_to_json(*cs));
  ASSERT_TRUE(cs_back.is_ok());
  EXPECT_EQ(cs_back->backbone.norm, cs->backbone.norm);
  EXPECT_EQ(cs_back->backbone.cswin_kernel, 5);
}

TEST(Config, BadValuesNameFileAndField) {
  struct Case {
    std::string json;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"[1]", {"expected a JSON object at the top level"}},
      {"{", {"not valid JSON"}},
      {"{\"name\": \"\xff\"}", {"not valid JSON"}},
      {R"({"backbone": {"width": 1, "width": 2}})", {"duplicate key 'width'"}},
      {R"({"image": 5})", {"field image: expected an object"}},
      {R"({"refiner": {"carafe": [1]}})", {"field refiner.carafe: expected an object"}},
      {R"({"name": 7})", {"field name: expected a string"}},
      {R"({"backbone": {"heads": 5}})",
       {"field backbone.heads: must divide backbone.width (192 % 5 != 0)"}},
      {R"({"backbone": {"width": "192"}})",
       {"field backbone.width: expected a positive integer, got \"192\""}},
      {R"({"backbone": {"width": 192.0}})", {"field backbone.width: expected a positive integer"}},
      {R"({"backbone": {"width": true}})", {"field backbone.width: expected a positive integer"}},
      {R"({"backbone": {"width": null}})", {"field backbone.width: expected a positive integer"}},
      {R"({"backbone": {"width": -4}})",
       {"field backbone.width: expected a positive integer, got -4"}},
      {R"({"backbone": {"depth": 0}})",
       {"field backbone.depth: expected a positive integer, got 0"}},
      {R"({"backbone": {"width": 1099511627776}})", {"field backbone.width", "<= 16777216"}},
      {R"({"backbone": {"width": 18446744073709551615}})", {"field backbone.width"}},
      {R"({"backbone": {"width": 1e30}})", {"field backbone.width"}},
      {R"({"image": {"channels": -1}})", {"field image.channels"}},
      {R"({"text": {"tokenizer": "bpe"}})", {"field text.tokenizer: only 'byte' is supported"}},
      {R"({"text": {"tokenizer": 3}})", {"field text.tokenizer"}},
      {R"({"text": {"vocab_size": 300}})", {"field text.vocab_size: the byte tokenizer needs 259"}},
      {R"({"text": {"max_length": 1}})", {"field text.max_length: must be >= 2"}},
      {R"({"text": {"heads": 3}})", {"field text.heads: must divide text.width (128 % 3 != 0)"}},
      {R"({"text": {"bos_id": 1}})", {"field text.bos_id"}},
      {R"({"backbone": {"width": 190, "heads": 5}})",
       {"field backbone.width: must be a multiple of 4"}},
      {R"({"backbone": {"patch": 5}})", {"field backbone.patch: must divide image.height"}},
      {R"({"refiner": {"channel_mult": []}})",
       {"field refiner.channel_mult: expected a non-empty"}},
      {R"({"refiner": {"channel_mult": [1, 0]}})", {"field refiner.channel_mult"}},
      {R"({"refiner": {"channel_mult": [1.5]}})", {"field refiner.channel_mult"}},
      {R"({"refiner": {"channel_mult": "122"}})", {"field refiner.channel_mult"}},
      {R"({"refiner": {"channel_mult": [1, 2, 2, 2]}})",
       {"field refiner.channel_mult: image size must be divisible by 8"}},
      {R"({"refiner": {"channel_mult": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}})",
       {"field refiner.channel_mult", "2^69"}},
      {R"({"refiner": {"groups": 7}})", {"field refiner.groups: must divide every level"}},
      {R"({"refiner": {"carafe": {"scale": 3}}})", {"field refiner.carafe.scale: only 2"}},
      {R"({"refiner": {"carafe": {"k_up": 4}}})", {"field refiner.carafe.k_up: must be odd"}},
      {R"({"refiner": {"carafe": {"k_enc": 0}}})",
       {"field refiner.carafe.k_enc: expected a positive"}},
      {R"({"refiner": {"carafe": {"compress": "x"}}})", {"field refiner.carafe.compress"}},
      {R"({"highpass": {"rho_c": 1.5}})", {"field highpass.rho_c: expected a number in [0, 1]"}},
      {R"({"highpass": {"rho_c": "0.2"}})", {"field highpass.rho_c"}},
      {R"({"highpass": {"tau": -1}})", {"field highpass.tau: expected a number >= 0"}},
      {R"({"diffusion": {"beta_schedule": "quadratic"}})", {"field diffusion.beta_schedule"}},
      {R"({"diffusion": {"prediction_type": "sample"}})", {"field diffusion.prediction_type"}},
      {R"({"diffusion": {"num_train_timesteps": 0}})", {"field diffusion.num_train_timesteps"}},
      {R"({"inference": {"refine_every": 0}})", {"field inference.refine_every"}},
      {R"({"inference": {"cfg_scale": 0.5}})",
       {"field inference.cfg_scale: expected a number in [1, 100]"}},
      {R"({"inference": {"cfg_scale": "3"}})", {"field inference.cfg_scale"}},
      {R"({"gate": {"hidden": 2.5}})", {"field gate.hidden"}},
      {R"({"backbone": {"attention": "flash"}})",
       {"field backbone.attention: expected softmax|slab_linear"}},
      {R"({"backbone": {"depth": 2, "attention": ["slab_linear"]}})",
       {"field backbone.attention", "backbone.depth (2)"}},
      {R"({"backbone": {"depth": 2, "attention": ["slab_linear", 3]}})",
       {"field backbone.attention"}},
      {R"({"backbone": {"slab_kernel": 4}})",
       {"field backbone.slab_kernel: expected a positive odd"}},
      {R"({"backbone": {"slab_kernel": 0}})", {"field backbone.slab_kernel"}},
      {R"({"backbone": {"slab_kernel": 65}})", {"field backbone.slab_kernel"}},
      {R"({"backbone": {"attention": "cswin", "heads": 3, "width": 24}})",
       {"field backbone.heads: cswin blocks split the heads"}},
      {R"({"backbone": {"cswin_stripe": 0}})", {"field backbone.cswin_stripe"}},
      {R"({"backbone": {"cswin_kernel": 2}})",
       {"field backbone.cswin_kernel: expected a positive odd"}},
      {R"({"backbone": {"norm": "batchnorm"}})", {"field backbone.norm: expected layernorm|repbn"}},
      {R"({"backbone": {"depth": 2, "norm": ["repbn"]}})",
       {"field backbone.norm", "backbone.depth (2)"}},
  };
  for (const Case& c : cases) {
    auto r = duet::parse_config(c.json, "my/config.json");
    ASSERT_FALSE(r.is_ok()) << "accepted: " << c.json;
    EXPECT_EQ(r.status().code(), duet::StatusCode::kInvalidArgument);
    const std::string& m = r.status().message();
    EXPECT_EQ(m.rfind("my/config.json: ", 0), 0u) << m;
    for (const auto& sub : c.expect)
      EXPECT_NE(m.find(sub), std::string::npos)
          << c.json << "\n  expected '" << sub << "' in: " << m;
  }
}

TEST(Config, ValidateProgrammaticConfig) {
  ModelConfig c;
  EXPECT_TRUE(duet::validate_config(c).is_ok());
  c.backbone.heads = 5;
  auto s = duet::validate_config(c, "x.json");
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("x.json: field backbone.heads"), std::string::npos);
  c = ModelConfig{};
  c.refiner.channel_mult.clear();
  EXPECT_FALSE(duet::validate_config(c).is_ok());
  c = ModelConfig{};
  c.highpass.rho_c = std::nan("");
  EXPECT_FALSE(duet::validate_config(c).is_ok());
}

TEST(Config, FileErrors) {
  duet::testing::TempDir dir;
  auto missing = duet::load_config(dir.file("config.json"));
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), duet::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("config.json"), std::string::npos);
  duet::testing::write_file(dir.file("bad.json"), R"({"backbone": {"heads": 5}})");
  auto bad = duet::load_config(dir.file("bad.json"));
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find(dir.file("bad.json") + ": field backbone.heads"),
            std::string::npos);
  auto d = duet::load_config(dir.path());
  EXPECT_FALSE(d.is_ok());
}

// ByteTokenizer: unit cases and the python-generated tests/fixtures/tokenizer_cases.json.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "duet/config.h"
#include "duet/tokenizer.h"
#include "test_util.h"

using duet::ByteTokenizer;

namespace {
std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}
}  // namespace

TEST(Tokenizer, Normalize) {
  EXPECT_EQ(ByteTokenizer::normalize("  A Photo of a  BRIGHT\tSneaker \n"),
            "a photo of a bright sneaker");
  EXPECT_EQ(ByteTokenizer::normalize("\v\f\r\n\t "), "");
  EXPECT_EQ(ByteTokenizer::normalize("\xc3\x89T\xc3\x89"), "\xc3\x89t\xc3\x89");  // only ASCII
  EXPECT_EQ(ByteTokenizer::normalize("a\xc2\xa0"
                                     "b"),
            "a\xc2\xa0"
            "b");  // NBSP is not ASCII whitespace
  EXPECT_EQ(ByteTokenizer::normalize(std::string("nul\0byte", 8)), std::string("nul\0byte", 8));
  EXPECT_EQ(ByteTokenizer::normalize("[@Z`]"), "[@z`]");  // bytes next to A-Z untouched
}

TEST(Tokenizer, EncodeLayout) {
  ByteTokenizer t(8);
  auto e = t.encode("Hi");
  EXPECT_EQ(e.ids, (std::vector<int64_t>{256, 'h', 'i', 257, 258, 258, 258, 258}));
  EXPECT_EQ(e.mask, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(e.length(), 4);
  auto full = t.encode("abcdefghij");  // body truncated to max_length - 2
  EXPECT_EQ(full.ids, (std::vector<int64_t>{256, 'a', 'b', 'c', 'd', 'e', 'f', 257}));
  EXPECT_EQ(full.length(), 8);
  EXPECT_EQ(t.decode(full.ids), "abcdef");
  ByteTokenizer two(2);
  EXPECT_EQ(two.encode("abc").ids, (std::vector<int64_t>{256, 257}));
  ByteTokenizer clamped(0);  // raised to the minimum of 2
  EXPECT_EQ(clamped.max_length(), 2);
  auto hi = t.encode("\xff");
  EXPECT_EQ(hi.ids[1], 255);
}

TEST(Tokenizer, FactoryFromConfig) {
  duet::ModelConfig cfg;
  cfg.text.max_length = 13;
  auto tok = duet::make_tokenizer(cfg);
  ASSERT_TRUE(tok.is_ok());
  EXPECT_EQ((*tok)->kind(), "byte");
  EXPECT_EQ((*tok)->max_length(), 13);
  EXPECT_EQ((*tok)->vocab_size(), 259);
  EXPECT_EQ((*tok)->encode("x").ids.size(), 13u);
  cfg.text.tokenizer = "clip";
  auto bad = duet::make_tokenizer(cfg);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), duet::StatusCode::kUnimplemented);
}

// Cases written by python/duet_ref (the reference tokenizer); input bytes come from utf8_hex.
TEST(Tokenizer, MatchesPythonFixture) {
  const std::string path = DUET_SOURCE_DIR "/tests/fixtures/tokenizer_cases.json";
  const std::string text = duet::testing::read_file_bytes(path);
  ASSERT_FALSE(text.empty()) << "missing " << path;
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j.at("bos").get<int64_t>(), ByteTokenizer::kBos);
  EXPECT_EQ(j.at("eos").get<int64_t>(), ByteTokenizer::kEos);
  EXPECT_EQ(j.at("pad").get<int64_t>(), ByteTokenizer::kPad);
  int n = 0;
  for (const auto& c : j.at("cases")) {
    ByteTokenizer t(c.at("max_length").get<int64_t>());
    const std::string input = from_hex(c.at("utf8_hex").get<std::string>());
    const auto e = t.encode(input);
    EXPECT_EQ(e.ids, c.at("ids").get<std::vector<int64_t>>())
        << "case " << n << ": " << c.at("text");
    std::vector<uint8_t> mask;
    for (const auto& m : c.at("mask")) mask.push_back(static_cast<uint8_t>(m.get<int>()));
    EXPECT_EQ(e.mask, mask) << "case " << n;
    ++n;
  }
  EXPECT_GE(n, 10);
}

// Safetensors reader: a malformed-file matrix (each case both from a memory buffer and from a file
// on disk), round trips through the writer, alignment handling, fp16/bf16 conversion.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "duet/safetensors.h"
#include "test_util.h"

using duet::DType;
using duet::SafetensorsFile;
using duet::Tensor;
using duet::testing::raw_safetensors;
using duet::testing::TempDir;

namespace {

struct BadCase {
  const char* label;
  std::string bytes;
  std::vector<std::string> expect;  // substrings of the error message (besides the file name)
};

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

std::vector<BadCase> bad_cases() {
  const std::string w = "backbone.blocks.0.ada.weight";
  std::vector<BadCase> c;
  c.push_back({"empty file", "", {"0 bytes", "at least 8"}});
  c.push_back({"shorter than 8", "abc", {"3 bytes", "at least 8"}});
  c.push_back({"header length 0", duet::testing::le64(0) + "{}", {"header length is 0"}});
  c.push_back({"header length > 100 MiB",
               duet::testing::le64((100ull << 20) + 1) + "{}",
               {"header length 104857601", "exceeds the limit"}});
  c.push_back({"header length > file",
               duet::testing::le64(1000) + "{}",
               {"header length 1000", "exceeds the file", "2 bytes follow"}});
  c.push_back({"header length 2^64-1", duet::testing::le64(~0ull) + "{}", {"exceeds the limit"}});
  c.push_back({"truncated JSON", raw_safetensors("{\"a\": ", 0), {"not valid JSON"}});
  c.push_back({"garbage JSON", raw_safetensors("hello!!!", 0), {"not valid JSON"}});
  c.push_back({"invalid UTF-8 in key", raw_safetensors("{\"\xff\xfe\":1}", 0), {"UTF-8"}});
  c.push_back({"overlong UTF-8", raw_safetensors("{\"\xc0\xaf\":1}", 0), {"UTF-8"}});
  c.push_back(
      {"header is an array", raw_safetensors("[1, 2]", 0), {"must be a JSON object", "array"}});
  c.push_back(
      {"duplicate tensor key",
       raw_safetensors(
           "{" + entry(w, "F32", "[1]", "[0,4]") + "," + entry(w, "F32", "[1]", "[4,8]") + "}", 8),
       {"duplicate key '" + w + "'"}});
  c.push_back({"duplicate key inside entry",
               raw_safetensors("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],"
                               "\"data_offsets\":[0,4]}}",
                               4),
               {"duplicate key 'dtype'"}});
  c.push_back(
      {"deep nesting",
       raw_safetensors("{\"__metadata__\":" + std::string(40, '[') + std::string(40, ']') + "}", 0),
       {"nests deeper"}});
  c.push_back({"unknown dtype F64",
               raw_safetensors("{" + entry(w, "F64", "[1]", "[0,8]") + "}", 8),
               {"tensor '" + w + "'", "unknown/unsupported dtype 'F64'"}});
  c.push_back({"unknown dtype BOOL",
               raw_safetensors("{" + entry("mask", "BOOL", "[4]", "[0,4]") + "}", 4),
               {"tensor 'mask'", "unknown/unsupported dtype 'BOOL'"}});
  c.push_back({"dtype not a string",
               raw_safetensors("{\"t\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
               {"tensor 't'", "dtype must be a string"}});
  c.push_back({"missing shape",
               raw_safetensors("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4),
               {"tensor 't'", "missing field 'shape'"}});
  c.push_back({"extra field",
               raw_safetensors("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
                               "\"stride\":[1]}}",
                               4),
               {"tensor 't'", "unexpected field 'stride'"}});
  c.push_back({"entry not an object",
               raw_safetensors("{\"t\":[1,2]}", 0),
               {"tensor 't'", "entry must be an object"}});
  c.push_back({"metadata not strings",
               raw_safetensors("{\"__metadata__\":{\"epoch\":3}}", 0),
               {"__metadata__ value 'epoch'", "must be a string"}});
  c.push_back({"metadata not an object",
               raw_safetensors("{\"__metadata__\":\"x\"}", 0),
               {"__metadata__ must be an object"}});
  c.push_back({"begin > end",
               raw_safetensors("{" + entry(w, "F32", "[1]", "[8,4]") + "}", 8),
               {"tensor '" + w + "'", "data_offsets [8, 4]", "begin > end"}});
  c.push_back({"negative offset",
               raw_safetensors("{" + entry("t", "F32", "[1]", "[-4,0]") + "}", 4),
               {"tensor 't'", "data_offsets[0]", "-4 (negative)"}});
  c.push_back({"float offset",
               raw_safetensors("{" + entry("t", "F32", "[1]", "[0,4.0]") + "}", 4),
               {"tensor 't'", "data_offsets[1]", "not an integer"}});
  c.push_back({"huge offset (1e30)",
               raw_safetensors("{" + entry("t", "F32", "[1]", "[0,1e30]") + "}", 4),
               {"tensor 't'", "data_offsets[1]", "not an integer"}});
  c.push_back({"huge offset (2^64-1)",
               raw_safetensors("{" + entry("t", "F32", "[1]", "[0,18446744073709551615]") + "}", 4),
               {"tensor 't'", "out of bounds", "data section has 4 bytes"}});
  c.push_back({"offsets wrong arity",
               raw_safetensors("{" + entry("t", "F32", "[1]", "[0]") + "}", 4),
               {"tensor 't'", "data_offsets must be an array [begin, end]"}});
  c.push_back({"offset past end",
               raw_safetensors("{" + entry("t", "F32", "[2]", "[0,8]") + "}", 4),
               {"tensor 't'", "data_offsets [0, 8] out of bounds", "4 bytes"}});
  c.push_back({"negative shape",
               raw_safetensors("{" + entry("t", "F32", "[2,-1]", "[0,0]") + "}", 0),
               {"tensor 't'", "shape[1]", "-1 (negative)"}});
  c.push_back({"float shape",
               raw_safetensors("{" + entry("t", "F32", "[2.5]", "[0,10]") + "}", 10),
               {"tensor 't'", "shape[0]", "not an integer"}});
  c.push_back({"string shape",
               raw_safetensors("{" + entry("t", "F32", "[\"2\"]", "[0,8]") + "}", 8),
               {"tensor 't'", "shape[0]", "string"}});
  c.push_back({"shape not array",
               raw_safetensors("{" + entry("t", "F32", "7", "[0,28]") + "}", 28),
               {"tensor 't'", "shape must be an array"}});
  c.push_back(
      {"shape product overflow",
       raw_safetensors("{" + entry("t", "F32", "[4294967296,4294967296]", "[0,4]") + "}", 4),
       {"tensor 't'", "overflows int64"}});
  c.push_back({"shape bytes overflow",
               raw_safetensors("{" + entry("t", "F32", "[4611686018427387904]", "[0,4]") + "}", 4),
               {"tensor 't'", "overflows int64"}});
  c.push_back({"dim > int64",
               raw_safetensors("{" + entry("t", "U8", "[9223372036854775808]", "[0,4]") + "}", 4),
               {"tensor 't'", "shape[0]", "exceeds int64"}});
  c.push_back({"span != shape x dtype",
               raw_safetensors("{" + entry(w, "F32", "[768,128]", "[0,100]") + "}", 100),
               {"tensor '" + w + "': data_offsets [0, 100] span 100 bytes but shape [768, 128]",
                "F32 needs 393216"}});
  c.push_back({"gap between tensors",
               raw_safetensors("{" + entry("a", "F32", "[1]", "[0,4]") + "," +
                                   entry("b", "F32", "[1]", "[8,12]") + "}",
                               12),
               {"tensor 'b'", "gap of 4 unused bytes at offset 4", "after tensor 'a'"}});
  c.push_back({"gap at start",
               raw_safetensors("{" + entry("a", "F32", "[1]", "[4,8]") + "}", 8),
               {"tensor 'a'", "gap of 4 unused bytes at offset 0"}});
  c.push_back({"overlapping tensors",
               raw_safetensors("{" + entry("a", "F32", "[2]", "[0,8]") + "," +
                                   entry("b", "F32", "[2]", "[4,12]") + "}",
                               12),
               {"tensor 'b'", "overlap tensor 'a'"}});
  c.push_back({"aliased tensors",
               raw_safetensors("{" + entry("a", "F32", "[2]", "[0,8]") + "," +
                                   entry("b", "F32", "[2]", "[0,8]") + "}",
                               8),
               {"overlap tensor 'a'"}});
  c.push_back({"trailing bytes",
               raw_safetensors("{" + entry("a", "F32", "[1]", "[0,4]") + "}", 9),
               {"5 trailing bytes after the last tensor 'a'"}});
  c.push_back({"data but no tensors", raw_safetensors("{}", 3), {"3 trailing bytes"}});
  return c;
}

void expect_all(const duet::Status& s, const std::string& file, const BadCase& c) {
  ASSERT_FALSE(s.is_ok()) << c.label << ": accepted";
  EXPECT_NE(s.message().find(file), std::string::npos) << c.label << ": " << s.message();
  for (const auto& sub : c.expect)
    EXPECT_NE(s.message().find(sub), std::string::npos)
        << c.label << ": expected '" << sub << "' in: " << s.message();
}

}  // namespace

TEST(Safetensors, MalformedMatrixFromBuffer) {
  for (const BadCase& c : bad_cases()) {
    auto r = duet::parse_safetensors(reinterpret_cast<const uint8_t*>(c.bytes.data()),
                                     c.bytes.size(), "buffer.safetensors");
    expect_all(r.status(), "buffer.safetensors", c);
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().code(), duet::StatusCode::kDataLoss) << c.label;
    }
  }
}

TEST(Safetensors, MalformedMatrixFromFile) {
  TempDir dir;
  int i = 0;
  for (const BadCase& c : bad_cases()) {
    const std::string path = dir.file("bad" + std::to_string(i++) + ".safetensors");
    duet::testing::write_file(path, c.bytes);
    auto r = SafetensorsFile::open(path);
    expect_all(r.status(), path, c);
  }
}

TEST(Safetensors, MissingFileAndDirectory) {
  TempDir dir;
  auto r = SafetensorsFile::open(dir.file("nope.safetensors"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), duet::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("nope.safetensors"), std::string::npos);
  auto d = SafetensorsFile::open(dir.path());
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("not a regular file"), std::string::npos);
}

TEST(Safetensors, EmptyHeaderObjectIsValid) {
  const std::string img = raw_safetensors("{}      ", 0);
  auto r = duet::parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "e");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->tensors().empty());
}

TEST(Safetensors, TensorsOrderedByOffsetNotHeaderOrder) {
  const std::string img = raw_safetensors("{" + entry("z", "U8", "[2]", "[0,2]") + "," +
                                              entry("a", "U8", "[3]", "[2,5]") + "," +
                                              entry("empty", "F32", "[0,4]", "[5,5]") + "}",
                                          5);
  auto r = duet::parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "o");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors().size(), 3u);
  EXPECT_EQ(r->tensors()[0].name, "z");
  EXPECT_EQ(r->tensors()[1].name, "a");
  EXPECT_EQ(r->tensors()[2].name, "empty");
  EXPECT_EQ(r->find("empty")->numel, 0);
  EXPECT_EQ(r->find("missing"), nullptr);
}

TEST(Safetensors, RoundTripAllDtypes) {
  TempDir dir;
  Tensor f = Tensor::zeros({2, 3});
  for (int i = 0; i < 6; ++i) f.f32()[i] = 0.5f * i - 1.0f;
  Tensor h = Tensor::zeros({3}, DType::kF16);
  Tensor b = Tensor::zeros({3}, DType::kBF16);
  const float hv[3] = {1.0f, -2.5f, 1024.0f};  // exact in both F16 and BF16
  for (int i = 0; i < 3; ++i) {
    h.as<uint16_t>()[i] = duet::f32_to_f16(hv[i]);
    b.as<uint16_t>()[i] = duet::f32_to_bf16(hv[i]);
  }
  Tensor i64 = Tensor::zeros({2}, DType::kI64);
  i64.as<int64_t>()[0] = -7;
  i64.as<int64_t>()[1] = int64_t{1} << 40;
  Tensor u8 = Tensor::zeros({1}, DType::kU8);  // 1 byte: the next tensor is misaligned
  u8.as<uint8_t>()[0] = 200;
  Tensor after = Tensor::zeros({2});
  after.f32()[0] = 3.0f;
  after.f32()[1] = -4.0f;
  Tensor scalar = Tensor::zeros({});
  scalar.f32()[0] = 42.0f;
  Tensor empty = Tensor::zeros({0, 5});
  const std::vector<std::pair<std::string, Tensor>> ts = {
      {"w.f32", f}, {"w.f16", h},          {"w.bf16", b},      {"ids", i64},
      {"flag", u8}, {"misaligned", after}, {"scalar", scalar}, {"empty", empty}};
  const std::string path = dir.file("rt.safetensors");
  ASSERT_TRUE(duet::write_safetensors(path, ts, {{"format", "duet"}, {"k", "v \xc3\xa9"}}).is_ok());

  auto r = SafetensorsFile::open(path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((8 + r->header_size()) % 8, 0u);
  EXPECT_EQ(r->metadata().at("format"), "duet");
  EXPECT_EQ(r->metadata().at("k"), "v \xc3\xa9");
  ASSERT_EQ(r->tensors().size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {  // written in the given order
    const auto& e = r->tensors()[i];
    EXPECT_EQ(e.name, ts[i].first);
    EXPECT_EQ(e.dtype, ts[i].second.dtype());
    EXPECT_EQ(e.shape, ts[i].second.shape());
    ASSERT_EQ(e.nbytes, ts[i].second.nbytes());
    if (e.nbytes) {
      EXPECT_EQ(std::memcmp(e.data, ts[i].second.raw(), e.nbytes), 0) << e.name;
    }
  }
  Tensor v = r->view("w.f32");
  ASSERT_FALSE(v.empty());
  EXPECT_FALSE(v.owns_data());
  EXPECT_EQ(v.shape(), (duet::Shape{2, 3}));
  EXPECT_EQ(v.f32()[5], 1.5f);
  auto sc = r->load_f32("scalar");  // after the misaligned tensor: also at an odd offset
  ASSERT_TRUE(sc.is_ok());
  EXPECT_EQ(sc->shape(), duet::Shape{});
  EXPECT_EQ(sc->f32()[0], 42.0f);
  EXPECT_TRUE(r->view("nope").empty());
  // The F32 tensor after the 1-byte U8 is at an odd address: no view, but load_f32 works.
  EXPECT_FALSE(r->find("misaligned")->aligned());
  EXPECT_TRUE(r->view("misaligned").empty());
  auto g = r->get("misaligned");
  ASSERT_FALSE(g.is_ok());
  EXPECT_NE(g.status().message().find("not aligned"), std::string::npos);
  auto m = r->load_f32("misaligned");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(m->f32()[1], -4.0f);
  for (const char* name : {"w.f16", "w.bf16"}) {
    auto c = r->load_f32(name);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(c->f32()[i], hv[i]) << name;
  }
  auto bad = r->load_f32("ids");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("dtype I64"), std::string::npos);
  auto nf = r->get("nope");
  EXPECT_EQ(nf.status().code(), duet::StatusCode::kNotFound);
  EXPECT_NE(nf.status().message().find("rt.safetensors: no tensor 'nope'"), std::string::npos);
}

TEST(Safetensors, SerializeMatchesParseFromBuffer) {
  Tensor t = Tensor::zeros({4});
  auto img = duet::serialize_safetensors({{"t", t}});
  ASSERT_TRUE(img.is_ok());
  auto r = duet::parse_safetensors(reinterpret_cast<const uint8_t*>(img->data()), img->size(), "m");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->tensors()[0].nbytes, 16u);
}

TEST(Safetensors, FileOutlivesMoves) {
  TempDir dir;
  const std::string path = dir.file("mv.safetensors");
  Tensor t = Tensor::zeros({3});
  t.f32()[2] = 9.0f;
  ASSERT_TRUE(duet::write_safetensors(path, {{"t", t}}).is_ok());
  SafetensorsFile keep;
  {
    auto r = SafetensorsFile::open(path);
    ASSERT_TRUE(r.is_ok());
    keep = std::move(r).value();
  }
  SafetensorsFile copy = keep;
  keep = SafetensorsFile();
  EXPECT_EQ(copy.view("t").f32()[2], 9.0f);  // mapping still alive through `copy`
}

// release_pages drops the pages of a tensor that was packed elsewhere; the mapping stays valid
// and a later read faults the same bytes back in from the file.
TEST(Safetensors, ReleasedPagesReadBackUnchanged) {
  TempDir dir;
  const std::string path = dir.file("big.safetensors");
  Tensor a = Tensor::zeros({3, 5000}), b = Tensor::zeros({7});  // a spans several pages
  for (int64_t i = 0; i < a.numel(); ++i) a.f32()[i] = static_cast<float>(i % 977) - 3.5f;
  for (int64_t i = 0; i < b.numel(); ++i) b.f32()[i] = static_cast<float>(i) * 0.25f;
  ASSERT_TRUE(duet::write_safetensors(path, {{"a", a}, {"b", b}}).is_ok());
  auto r = SafetensorsFile::open(path);
  ASSERT_TRUE(r.is_ok());
  const SafetensorsFile& f = r.value();
  const Tensor va = f.view("a");
  ASSERT_EQ(va.f32()[4321], a.f32()[4321]);  // pages resident now
  f.release_pages("a");
  f.release_pages("b");
  f.release_pages("absent");  // no-op
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(va.f32()[i], a.f32()[i]) << i;
  for (int64_t i = 0; i < b.numel(); ++i) ASSERT_EQ(f.view("b").f32()[i], b.f32()[i]) << i;
  SafetensorsFile().release_pages("a");  // not opened from a file: no-op
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  Tensor t = Tensor::zeros({1});
  auto dup = duet::write_safetensors(dir.file("d.safetensors"), {{"a", t}, {"a", t}});
  ASSERT_FALSE(dup.is_ok());
  EXPECT_NE(dup.message().find("duplicate tensor name 'a'"), std::string::npos);
  auto meta = duet::write_safetensors(dir.file("m.safetensors"), {{"__metadata__", t}});
  EXPECT_FALSE(meta.is_ok());
  auto utf = duet::write_safetensors(dir.file("u.safetensors"), {{"bad\xff", t}});
  ASSERT_FALSE(utf.is_ok());
  EXPECT_NE(utf.message().find("u.safetensors"), std::string::npos);
  auto nodir = duet::write_safetensors(dir.file("no/such/dir.safetensors"), {{"a", t}});
  ASSERT_FALSE(nodir.is_ok());
  EXPECT_EQ(nodir.code(), duet::StatusCode::kIoError);
}

TEST(Safetensors, ParsesPythonWrittenFixture) {
  auto r = SafetensorsFile::open(DUET_SOURCE_DIR "/tests/fixtures/awkward/model.safetensors");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_GT(r->tensors().size(), 100u);
  EXPECT_EQ(r->metadata().count("format"), 1u);
}

TEST(Fp16Bf16, Conversions) {
  // Exactly representable values round-trip.
  for (float v : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f /* min normal */,
                  5.960464477539063e-08f /* min subnormal */, 0.333251953125f}) {
    EXPECT_EQ(duet::f16_to_f32(duet::f32_to_f16(v)), v) << v;
  }
  for (float v : {0.0f, 1.0f, -2.5f, 3.0e38f, 1.0e-38f})
    EXPECT_EQ(duet::bf16_to_f32(duet::f32_to_bf16(v)), duet::bf16_to_f32(duet::f32_to_bf16(v)));
  EXPECT_EQ(duet::f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(duet::f32_to_f16(65520.0f), 0x7c00);               // rounds to +inf
  EXPECT_EQ(duet::f32_to_f16(1.0f + 0.00048828125f), 0x3c00);  // tie -> even
  EXPECT_EQ(duet::f32_to_f16(1.0f + 3 * 0.00048828125f), 0x3c02);
  EXPECT_EQ(duet::f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(duet::f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  // tie -> even
  EXPECT_EQ(duet::f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(duet::f16_to_f32(duet::f32_to_f16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(duet::bf16_to_f32(duet::f32_to_bf16(std::nanf("")))));
  EXPECT_EQ(duet::f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(duet::f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(duet::bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(duet::f16_to_f32(0x0001), 5.960464477539063e-08f);
}

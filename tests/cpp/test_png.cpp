// PNG encode/decode, hardening against malformed input, value mapping, channel conversion and
// the `parameters` (infotext) chunk.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "duet/png.h"

namespace duet {
namespace {

PngImage make_image(int w, int h, int c, int depth) {
  PngImage img;
  img.width = w;
  img.height = h;
  img.channels = c;
  img.bit_depth = depth;
  img.samples.resize(static_cast<size_t>(w) * h * c);
  for (size_t i = 0; i < img.samples.size(); ++i)
    img.samples[i] = static_cast<uint16_t>((i * 37 + 11) % (img.max_value() + 1));
  return img;
}

std::vector<uint8_t> encode_or_die(const PngImage& img) {
  auto r = encode_png(img);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? r.value() : std::vector<uint8_t>{};
}

TEST(Png, RoundTripAllFormats) {
  for (int c = 1; c <= 4; ++c) {
    for (int depth : {8, 16}) {
      PngImage img = make_image(13, 7, c, depth);
      img.text = {{"parameters", "a photo\nSteps: 20, Sampler: ddim"}, {"Comment", "x"}};
      auto bytes = encode_or_die(img);
      auto back = decode_png(bytes.data(), bytes.size());
      ASSERT_TRUE(back.is_ok()) << back.status().to_string();
      EXPECT_EQ(back->width, 13);
      EXPECT_EQ(back->height, 7);
      EXPECT_EQ(back->channels, c);
      EXPECT_EQ(back->bit_depth, depth);
      EXPECT_EQ(back->samples, img.samples);
      ASSERT_NE(back->find_text("parameters"), nullptr);
      EXPECT_EQ(*back->find_text("parameters"), "a photo\nSteps: 20, Sampler: ddim");
      EXPECT_EQ(*back->find_text("Comment"), "x");
    }
  }
}

TEST(Png, NonAsciiTextUsesItxtAndRoundTrips) {
  PngImage img = make_image(4, 4, 1, 8);
  const std::string text =
      "ein Stiefel \xC3\xBC\xE2\x9C\x93 \xF0\x9F\x91\xA2\nSteps: 1, Seed: 2, Size: 4x4";
  img.text = {{"parameters", text}};
  auto bytes = encode_or_die(img);
  const std::string raw(bytes.begin(), bytes.end());
  EXPECT_NE(raw.find("iTXt"), std::string::npos);
  auto back = decode_png(bytes.data(), bytes.size());
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back->find_text("parameters"), text);
}

TEST(Png, FileRoundTrip) {
  const auto dir = std::filesystem::temp_directory_path() / "duet_test_png";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "rt.png").string();
  PngImage img = make_image(28, 28, 1, 8);
  img.text = {{"parameters", "p\nSteps: 3, CFG scale: 4, Seed: 5"}};
  ASSERT_TRUE(write_png_file(path, img).is_ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto back = read_png_file(path);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->samples, img.samples);
  auto missing = read_png_file((dir / "nope.png").string());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.png"), std::string::npos);
  EXPECT_FALSE(write_png_file((dir / "no/such/dir/x.png").string(), img).is_ok());
}

TEST(Png, RejectsGarbageAndTruncation) {
  const std::vector<uint8_t> junk = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
  auto r = decode_png(junk.data(), junk.size());
  EXPECT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("not a PNG"), std::string::npos);
  EXPECT_FALSE(decode_png(nullptr, 0).is_ok());

  PngImage img = make_image(16, 9, 3, 8);
  img.text = {{"parameters", "x\nSteps: 1, Sampler: a, Seed: 1"}};
  auto bytes = encode_or_die(img);
  // Every strict prefix is an error, never a crash (the IEND chunk is optional for pixels,
  // but the final 12 bytes are IEND: prefixes cut inside the image data must fail).
  for (size_t len = 0; len + 12 < bytes.size(); ++len) {
    auto t = decode_png(bytes.data(), len);
    EXPECT_FALSE(t.is_ok()) << "prefix of " << len << " bytes decoded";
  }
}

TEST(Png, CorruptedBytesNeverCrash) {
  PngImage img = make_image(16, 16, 1, 8);
  img.text = {{"parameters", "x\nSteps: 1, Sampler: a, Seed: 1"}};
  auto bytes = encode_or_die(img);
  uint32_t state = 12345;
  int errors = 0;
  PngLimits lim;
  lim.max_width = lim.max_height = 256;
  for (int trial = 0; trial < 400; ++trial) {
    auto b = bytes;
    for (int k = 0; k < 3; ++k) {
      state = state * 1664525u + 1013904223u;
      b[8 + state % (b.size() - 8)] ^= static_cast<uint8_t>(1u << (state >> 29));
    }
    auto r = decode_png(b.data(), b.size(), lim);
    if (!r.is_ok()) {
      ++errors;
      EXPECT_FALSE(r.status().message().empty());
    } else {
      EXPECT_EQ(r->samples.size(), static_cast<size_t>(r->width) * r->height * r->channels);
    }
  }
  EXPECT_GT(errors, 300);  // CRCs catch nearly every flip
}

TEST(Png, RejectsGiganticDimensionsBeforeAllocating) {
  auto bytes = encode_or_die(make_image(8, 8, 1, 8));
  // Patch IHDR width/height to 1,000,000 x 1,000,000 (CRC now wrong, but the size check is first).
  for (int k = 0; k < 2; ++k) {
    const uint32_t v = 1000000;
    uint8_t* p = bytes.data() + 16 + 4 * k;
    p[0] = v >> 24;
    p[1] = (v >> 16) & 0xFF;
    p[2] = (v >> 8) & 0xFF;
    p[3] = v & 0xFF;
  }
  auto r = decode_png(bytes.data(), bytes.size());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("1000000x1000000"), std::string::npos);

  auto small = encode_or_die(make_image(40, 8, 1, 8));
  PngLimits lim;
  lim.max_width = 32;
  auto r2 = decode_png(small.data(), small.size(), lim);
  ASSERT_FALSE(r2.is_ok());
  EXPECT_EQ(r2.status().code(), StatusCode::kResourceExhausted);
  lim.max_width = 64;
  lim.max_pixels = 100;
  EXPECT_FALSE(decode_png(small.data(), small.size(), lim).is_ok());
}

TEST(Png, ValueMappingMatchesPython) {
  // round(clip((x + 1) / 2, 0, 1) * 255), numpy rounding (half to even).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {-1.0f, 1.0f, 0.0f, -2.0f, 3.0f, nan, -0.99215686f, 0.5f};
  auto img = image_from_chw(x.data(), 1, 1, static_cast<int>(x.size()));
  ASSERT_TRUE(img.is_ok());
  std::vector<uint16_t> expect;
  for (float v : x) {
    double y = (static_cast<double>(v) + 1) / 2;
    if (!(y >= 0)) y = 0;
    if (y > 1) y = 1;
    expect.push_back(static_cast<uint16_t>(std::nearbyint(static_cast<float>(y) * 255.0f)));
  }
  EXPECT_EQ(img->samples, expect);
  EXPECT_EQ(img->samples[0], 0);
  EXPECT_EQ(img->samples[1], 255);
  EXPECT_EQ(img->samples[2], 128);  // 127.5 rounds to even
  EXPECT_EQ(img->samples[5], 0);    // NaN
  EXPECT_EQ(img->samples[6], 1);
  auto img16 = image_from_chw(x.data(), 1, 1, static_cast<int>(x.size()), 16);
  ASSERT_TRUE(img16.is_ok());
  EXPECT_EQ(img16->samples[1], 65535);
  EXPECT_EQ(img16->samples[2], 32768);  // 32767.5 -> even

  // CHW planes are interleaved into HWC samples, and image_to_chw inverts the mapping.
  std::vector<float> rgb(3 * 2 * 2);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = -1.0f + 2.0f * static_cast<float>(i) / 11.0f;
  auto im = image_from_chw(rgb.data(), 3, 2, 2);
  ASSERT_TRUE(im.is_ok());
  EXPECT_EQ(im->samples[1], static_cast<uint16_t>(std::nearbyint((rgb[4] + 1) / 2 * 255)));
  std::vector<float> back(rgb.size());
  ASSERT_TRUE(image_to_chw(*im, back.data(), back.size()).is_ok());
  for (size_t i = 0; i < rgb.size(); ++i) EXPECT_NEAR(back[i], rgb[i], 1.0 / 255.0 + 1e-6);
  EXPECT_FALSE(image_to_chw(*im, back.data(), back.size() - 1).is_ok());
  // Other channel counts: planes side by side in one grayscale image (python reference).
  auto strip = image_from_chw(rgb.data(), 2, 2, 3);
  ASSERT_TRUE(strip.is_ok());
  EXPECT_EQ(strip->channels, 1);
  EXPECT_EQ(strip->width, 6);
  EXPECT_EQ(strip->height, 2);
  auto q = [](float v) { return static_cast<uint16_t>(std::nearbyint((v + 1) / 2 * 255)); };
  EXPECT_EQ(strip->samples[0], q(rgb[0]));  // row 0: c0 (x0..2), c1 (x0..2)
  EXPECT_EQ(strip->samples[3], q(rgb[6]));
  EXPECT_EQ(strip->samples[6], q(rgb[3]));  // row 1 starts with c0 row 1
  EXPECT_FALSE(image_from_chw(rgb.data(), 0, 1, 1).is_ok());
}

TEST(Png, ChannelConversionIsExplicit) {
  PngImage rgb;
  rgb.width = 2;
  rgb.height = 1;
  rgb.channels = 3;
  rgb.samples = {255, 0, 0, 10, 200, 30};
  std::string note;
  auto g = convert_channels(rgb, 1, &note);
  ASSERT_TRUE(g.is_ok());
  EXPECT_EQ(g->channels, 1);
  EXPECT_EQ(g->samples[0], (255u * 19595u + 0x8000u) >> 16);  // PIL convert("L"): 76
  EXPECT_EQ(g->samples[0], 76);
  EXPECT_EQ(g->samples[1], (10u * 19595u + 200u * 38470u + 30u * 7471u + 0x8000u) >> 16);
  EXPECT_NE(note.find("grayscale"), std::string::npos);

  auto back = convert_channels(*g, 3, &note);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->samples,
            (std::vector<uint16_t>{76, 76, 76, g->samples[1], g->samples[1], g->samples[1]}));

  PngImage rgba = rgb;
  rgba.channels = 4;
  rgba.samples = {1, 2, 3, 4, 5, 6, 7, 8};
  auto r3 = convert_channels(rgba, 3, &note);
  ASSERT_TRUE(r3.is_ok());
  EXPECT_EQ(r3->samples, (std::vector<uint16_t>{1, 2, 3, 5, 6, 7}));
  EXPECT_NE(note.find("alpha"), std::string::npos);

  auto same = convert_channels(*r3, 3, &note);
  ASSERT_TRUE(same.is_ok());
  EXPECT_TRUE(note.empty());
  EXPECT_FALSE(convert_channels(rgb, 2).is_ok());
}

TEST(Png, Grid) {
  std::vector<float> imgs(3 * 1 * 2 * 2);
  for (size_t i = 0; i < imgs.size(); ++i) imgs[i] = static_cast<float>(i);
  int gh = 0, gw = 0;
  auto grid = make_grid(imgs.data(), 3, 1, 2, 2, 0, &gh, &gw);
  EXPECT_EQ(gh, 4);
  EXPECT_EQ(gw, 4);
  const std::vector<float> expect = {0, 1, 4, 5, 2, 3, 6, 7, 8, 9, -1, -1, 10, 11, -1, -1};
  EXPECT_EQ(grid, expect);
}

// ---------------------------------------------------------------------------------------------
// parameters chunk

TEST(PngParameters, FormatMatchesWebui) {
  ImageParameters p;
  p.prompt = "a photo of an ankle boot";
  p.negative_prompt = "blurry";
  p.set("Steps", "20");
  p.set("Sampler", "dpmpp_2m");
  p.set("CFG scale", "4");
  p.set("Seed", "123");
  p.set("Size", "28x28");
  p.set("Model", "fashion-duet");
  p.set("Refine", "every 3");
  EXPECT_EQ(format_parameters(p),
            "a photo of an ankle boot\nNegative prompt: blurry\nSteps: 20, Sampler: dpmpp_2m, "
            "CFG scale: 4, Seed: 123, Size: 28x28, Model: fashion-duet, Refine: every 3");
  p.negative_prompt.clear();
  p.set("Refine", "steps 3,6,9");
  EXPECT_EQ(format_parameters(p),
            "a photo of an ankle boot\nSteps: 20, Sampler: dpmpp_2m, CFG scale: 4, Seed: 123, "
            "Size: 28x28, Model: fashion-duet, Refine: \"steps 3,6,9\"");
}

TEST(PngParameters, RoundTripTrickyText) {
  const std::vector<std::pair<std::string, std::string>> prompts = {
      {"plain", ""},
      {"a, b: c \"quoted\"", "neg, with: colon"},
      {"multi\nline\nprompt", "neg line 1\nneg line 2"},
      {"", ""},
      {"", "only negative"},
      {"Steps: 5, Sampler: fake, Seed: 1", ""},  // a prompt that looks like a parameter line
      {"unicode \xC3\xA9\xE2\x9C\x93", "\xF0\x9F\x91\xA2"},
      {"trailing space ", " leading space"},
      {"back\\slash \\\" and tab\t", ""},
  };
  for (const auto& [prompt, neg] : prompts) {
    ImageParameters p;
    p.prompt = prompt;
    p.negative_prompt = neg;
    p.set("Steps", "20");
    p.set("Sampler", "dpmpp_2m");
    p.set("Seed", "42");
    p.set("Note", "has, comma");
    p.set("Quote", "\"starts with quote");
    p.set("Path", "C:\\x\ny");
    p.set("Empty", "");
    p.set("Blank quote", " \"");  // a leading blank before a quote once read back as quoted
    p.set("Blanks", "\t around ");
    const std::string text = format_parameters(p);
    auto back = parse_parameters(text);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string() << "\n" << text;
    EXPECT_EQ(back->prompt, prompt) << text;
    EXPECT_EQ(back->negative_prompt, neg) << text;
    EXPECT_EQ(back->fields, p.fields) << text;
  }
}

TEST(PngParameters, ParsesWebuiText) {
  const std::string text =
      "masterpiece, (best quality:1.2), a cat\r\nNegative prompt: lowres, bad anatomy\r\n"
      "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 3405691582, Size: 512x768, "
      "Model hash: 6ce0161689, Model: v1-5, Lora hashes: \"a: 1234, b: 5678\", Version: v1.6.0\n";
  auto p = parse_parameters(text);
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->prompt, "masterpiece, (best quality:1.2), a cat");
  EXPECT_EQ(p->negative_prompt, "lowres, bad anatomy");
  ASSERT_NE(p->get("Sampler"), nullptr);
  EXPECT_EQ(*p->get("Sampler"), "DPM++ 2M Karras");
  EXPECT_EQ(*p->get("CFG scale"), "7.5");
  EXPECT_EQ(*p->get("Lora hashes"), "a: 1234, b: 5678");
  EXPECT_EQ(*p->get("Version"), "v1.6.0");
  EXPECT_EQ(p->get("Missing"), nullptr);
  EXPECT_EQ(p->fields.size(), 9u);
}

TEST(PngParameters, NonParameterLastLineIsPrompt) {
  auto p = parse_parameters("just a prompt: with a colon");
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->prompt, "just a prompt: with a colon");
  EXPECT_TRUE(p->fields.empty());
  auto q = parse_parameters("line one\nKey: value");  // one entry, no Steps: prompt text
  ASSERT_TRUE(q.is_ok());
  EXPECT_EQ(q->prompt, "line one\nKey: value");
  auto e = parse_parameters("");
  ASSERT_TRUE(e.is_ok());
  EXPECT_TRUE(e->prompt.empty());
}

TEST(PngParameters, MalformedParameterLineIsAnError) {
  auto p = parse_parameters("prompt\nSteps: 20, Sampler: \"unterminated, Seed: 1");
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("malformed parameters line"), std::string::npos);
  auto q = parse_parameters("prompt\nSteps: 20, Bad: \"\\x\", Seed: 1");
  EXPECT_FALSE(q.is_ok());
}

// Inputs the parameters fuzzer found whose parse → format → parse did not round-trip.
TEST(PngParameters, FuzzFoundRoundTrips) {
  const std::vector<std::string> cases = {
      std::string("\n\nNegative prompt:"),
      std::string("Steps:\xb8=\xdb\xdb\xdbx\nNegative prompt:"),
      std::string("a\xd7\x0fh\r\rNegamr\xb4ry\nSteps: 2:\r\xff\xff\xff\xda+%%%\n\r\r"),
      std::string("a sneaker\n\nNegative prompt: blur\n\n"),
      // "Seed" parses to ` "` (quoted); it was written unquoted and read back as the start of a
      // quoted value running into the next field.
      std::string("\0\x81"
                  "b\xff\xffx0_r: y\nSteps:el^: ^\\^99999999: \"\x7fverm 0\", "
                  "Seed: \" \\\"\", B:\x04\", C: \xc3\xa9",
                  72),
  };
  for (const std::string& text : cases) {
    auto p = parse_parameters(text);
    if (!p.is_ok()) {
      EXPECT_NE(p.status().message().find("malformed parameters line"), std::string::npos);
      continue;
    }
    auto back = parse_parameters(format_parameters(*p));
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    if (text.find('\r') != std::string::npos) continue;  // as the fuzzer: CRs and invalid UTF-8
    EXPECT_EQ(back->prompt, p->prompt);
    EXPECT_EQ(back->negative_prompt, p->negative_prompt);
    EXPECT_EQ(back->fields, p->fields);
  }
  auto p = parse_parameters("a sneaker\n\nNegative prompt: blur\n\n");
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->prompt, "a sneaker");
  EXPECT_EQ(p->negative_prompt, "blur");
}

}  // namespace
}  // namespace duet

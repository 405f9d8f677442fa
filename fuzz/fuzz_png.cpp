// Fuzzes the PNG decoder (img2img input, `duet png-info`) with small limits, then the channel
// conversion, CHW conversion, the `parameters` chunk parser and a re-encode round trip.
// Invariants: errors name the source; accepted images have exactly width*height*channels samples
// within the limits and in [0, max_value]; encode(decode(x)) decodes to the same samples.
#include <vector>

#include "duet/png.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  duet::PngLimits lim;
  lim.max_width = 1024;
  lim.max_height = 1024;
  lim.max_pixels = 1 << 18;
  lim.max_text_bytes = 1 << 16;
  const std::string name = "fuzz.png";
  auto r = duet::decode_png(data, size, lim, name);
  if (!r.is_ok()) {
    FUZZ_CHECK(duet::fuzz::names_source(r.status().message(), name), "%s",
               r.status().message().c_str());
    return 0;
  }
  const duet::PngImage& img = *r;
  FUZZ_CHECK(img.width > 0 && img.height > 0 && img.width <= lim.max_width &&
             img.height <= lim.max_height);
  FUZZ_CHECK(static_cast<int64_t>(img.width) * img.height <= lim.max_pixels);
  FUZZ_CHECK(img.channels >= 1 && img.channels <= 4);
  FUZZ_CHECK(img.bit_depth == 8 || img.bit_depth == 16);
  FUZZ_CHECK(img.samples.size() == static_cast<size_t>(img.width) * img.height * img.channels);
  for (uint16_t s : img.samples) FUZZ_CHECK(s <= img.max_value());
  for (const auto& [k, v] : img.text) FUZZ_CHECK(v.size() <= lim.max_text_bytes);
  for (int c : {1, 3}) {
    auto conv = duet::convert_channels(img, c);
    FUZZ_CHECK(conv.is_ok(), "%s", conv.status().message().c_str());
    std::vector<float> chw(static_cast<size_t>(c) * img.width * img.height);
    FUZZ_CHECK(duet::image_to_chw(*conv, chw.data(), chw.size()).is_ok());
    for (float v : chw) FUZZ_CHECK(v >= -1.0f && v <= 1.0f);
  }
  if (const std::string* t = img.find_text("parameters")) (void)duet::parse_parameters(*t);
  auto enc = duet::encode_png(img);
  if (enc.is_ok()) {  // (text that cannot be encoded is an error, not a crash)
    auto back = duet::decode_png(enc->data(), enc->size(), lim, "re-encoded");
    FUZZ_CHECK(back.is_ok(), "%s", back.status().message().c_str());
    FUZZ_CHECK(back->samples == img.samples && back->channels == img.channels &&
               back->bit_depth == img.bit_depth);
  }
  return 0;
}

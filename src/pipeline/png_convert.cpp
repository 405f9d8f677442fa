// Conversions between PngImage samples and [-1, 1] float tensors; channel conversion; grids.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "duet/png.h"

namespace duet {

Result<PngImage> image_from_chw(const float* x, int channels, int height, int width,
                                int bit_depth) {
  if (channels < 1 || channels > 64)
    return invalid_argument("cannot store " + std::to_string(channels) + "-channel images as PNG");
  if (bit_depth != 8 && bit_depth != 16)
    return invalid_argument("PNG bit depth must be 8 or 16, got " + std::to_string(bit_depth));
  if (height <= 0 || width <= 0 || width > (1 << 20) / channels || height > (1 << 20))
    return invalid_argument("invalid image size " + std::to_string(width) + "x" +
                            std::to_string(height));
  // C = 1: gray, C = 3: RGB, other C: the channel planes side by side as one gray strip.
  const bool strip = channels != 1 && channels != 3;
  PngImage img;
  img.width = strip ? width * channels : width;
  img.height = height;
  img.channels = strip ? 1 : channels;
  img.bit_depth = bit_depth;
  const float maxval = bit_depth == 16 ? 65535.0f : 255.0f;
  const size_t plane = static_cast<size_t>(height) * width;
  img.samples.resize(plane * channels);
  for (int c = 0; c < channels; ++c) {
    const float* src = x + c * plane;
    for (size_t p = 0; p < plane; ++p) {
      // round(clip((x + 1) / 2, 0, 1) * maxval), as numpy: round-half-to-even (nearbyint).
      float v = (src[p] + 1.0f) / 2.0f;
      if (!(v >= 0.0f)) v = 0.0f;  // also NaN
      if (v > 1.0f) v = 1.0f;
      const auto q = static_cast<uint16_t>(std::nearbyint(v * maxval));
      if (strip) {
        const size_t y = p / width, xx = p % width;
        img.samples[y * img.width + static_cast<size_t>(c) * width + xx] = q;
      } else {
        img.samples[p * channels + c] = q;
      }
    }
  }
  return img;
}

Result<PngImage> convert_channels(const PngImage& img, int channels, std::string* note) {
  if (note) note->clear();
  if (channels != 1 && channels != 3)
    return unimplemented("cannot convert images to " + std::to_string(channels) +
                         " channels (only 1 = grayscale and 3 = RGB)");
  if (img.channels < 1 || img.channels > 4)
    return invalid_argument("image has an unsupported channel count " +
                            std::to_string(img.channels));
  if (img.channels == channels) return img;
  const size_t plane = static_cast<size_t>(img.width) * img.height;
  if (img.samples.size() != plane * img.channels)
    return invalid_argument("image sample count does not match its size");
  PngImage out;
  out.width = img.width;
  out.height = img.height;
  out.bit_depth = img.bit_depth;
  out.channels = channels;
  out.text = img.text;
  out.samples.resize(plane * channels);
  const int src_c = img.channels;
  const bool src_color = src_c >= 3;
  const bool src_alpha = src_c == 2 || src_c == 4;
  std::string what;
  if (channels == 1) {
    if (src_color) {
      what = std::string("converted ") + png_color_name(src_c) + " to grayscale (ITU-R 601-2 luma)";
      for (size_t p = 0; p < plane; ++p) {
        const uint16_t* s = &img.samples[p * src_c];
        if (img.bit_depth == 8) {
          out.samples[p] =
              static_cast<uint16_t>((uint32_t{s[0]} * 19595u + uint32_t{s[1]} * 38470u +
                                     uint32_t{s[2]} * 7471u + 0x8000u) >>
                                    16);
        } else {
          const double l = (s[0] * 19595.0 + s[1] * 38470.0 + s[2] * 7471.0) / 65536.0;
          out.samples[p] = static_cast<uint16_t>(std::min(65535.0, std::nearbyint(l)));
        }
      }
    } else {  // gray + alpha
      what = "dropped the alpha channel of a grayscale+alpha image";
      for (size_t p = 0; p < plane; ++p) out.samples[p] = img.samples[p * src_c];
    }
  } else {  // channels == 3
    if (src_color) {
      what = "dropped the alpha channel of an RGBA image";
      for (size_t p = 0; p < plane; ++p)
        for (int c = 0; c < 3; ++c) out.samples[p * 3 + c] = img.samples[p * src_c + c];
    } else {
      what = std::string("converted ") + png_color_name(src_c) + " to RGB (replicated gray)";
      if (src_alpha) what += ", dropped the alpha channel";
      for (size_t p = 0; p < plane; ++p)
        for (int c = 0; c < 3; ++c) out.samples[p * 3 + c] = img.samples[p * src_c];
    }
  }
  if (src_alpha && src_color && channels == 1) what += ", dropped the alpha channel";
  if (note) *note = what;
  return out;
}

Status image_to_chw(const PngImage& img, float* out, size_t out_size) {
  const size_t plane = static_cast<size_t>(img.width) * img.height;
  const size_t n = plane * img.channels;
  if (img.samples.size() != n)
    return invalid_argument("image sample count does not match its size");
  if (out_size != n)
    return invalid_argument("image_to_chw: output holds " + std::to_string(out_size) +
                            " values, image has " + std::to_string(n));
  const float maxval = static_cast<float>(img.max_value());
  for (int c = 0; c < img.channels; ++c)
    for (size_t p = 0; p < plane; ++p)
      out[c * plane + p] =
          static_cast<float>(img.samples[p * img.channels + c]) / maxval * 2.0f - 1.0f;
  return Status::ok();
}

std::vector<float> make_grid(const float* images, int n, int channels, int height, int width,
                             int cols, int* grid_height, int* grid_width) {
  if (n <= 0) n = 1;
  if (cols <= 0) cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  cols = std::min(cols, n);
  const int rows = (n + cols - 1) / cols;
  const int gh = rows * height, gw = cols * width;
  std::vector<float> grid(static_cast<size_t>(channels) * gh * gw, -1.0f);
  const size_t plane = static_cast<size_t>(height) * width;
  for (int i = 0; i < n; ++i) {
    const int r = i / cols, col = i % cols;
    for (int c = 0; c < channels; ++c) {
      const float* src = images + (static_cast<size_t>(i) * channels + c) * plane;
      float* dst = grid.data() + static_cast<size_t>(c) * gh * gw;
      for (int y = 0; y < height; ++y)
        std::copy(
            src + static_cast<size_t>(y) * width, src + static_cast<size_t>(y + 1) * width,
            dst + static_cast<size_t>(r * height + y) * gw + static_cast<size_t>(col) * width);
    }
  }
  if (grid_height) *grid_height = gh;
  if (grid_width) *grid_width = gw;
  return grid;
}

}  // namespace duet

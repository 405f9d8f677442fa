// PNG reading/writing (libpng) and the stable-diffusion-webui style `parameters` text chunk.
//
//   PngImage img = image_from_chw(x, C, H, W);          // [-1,1] floats -> 8-bit samples
//   img.text.push_back({"parameters", format_parameters(params)});
//   DUET_RETURN_IF_ERROR(write_png_file("out.png", img));
//   DUET_ASSIGN_OR_RETURN(PngImage back, read_png_file("out.png"));
//   DUET_ASSIGN_OR_RETURN(ImageParameters p, parse_parameters(*back.find_text("parameters")));
//
// Everything works on memory buffers too (decode_png / encode_png), and decoding is hardened for
// untrusted input: dimensions are checked against PngLimits before any pixel buffer is allocated,
// truncated or corrupt data is an error (never a crash), text chunks are size-capped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "duet/status.h"

namespace duet {

// An 8- or 16-bit image with interleaved samples (row-major, HWC).
// channels: 1 = gray, 2 = gray + alpha, 3 = RGB, 4 = RGBA.
struct PngImage {
  int width = 0;
  int height = 0;
  int channels = 0;
  int bit_depth = 8;              // 8 or 16
  std::vector<uint16_t> samples;  // width * height * channels values in [0, 2^bit_depth - 1]
  // Text chunks (tEXt / zTXt / iTXt) in file order: keyword -> UTF-8 text.
  std::vector<std::pair<std::string, std::string>> text;

  int max_value() const { return bit_depth == 16 ? 65535 : 255; }
  // First text chunk with this keyword.
  const std::string* find_text(const std::string& keyword) const;
};

struct PngLimits {
  int max_width = 16384;
  int max_height = 16384;
  int64_t max_pixels = int64_t{1} << 26;    // 64 Mpixel
  size_t max_text_bytes = size_t{1} << 20;  // per decompressed text chunk
};

const char* png_color_name(int channels);  // "grayscale", "grayscale+alpha", "RGB", "RGBA"

// Decodes any PNG (palette, 1/2/4-bit gray, tRNS and interlaced images are expanded) into 8-bit
// or 16-bit samples; 16-bit files stay 16-bit. `what` names the source in error messages.
Result<PngImage> decode_png(const uint8_t* data, size_t size, const PngLimits& limits = {},
                            const std::string& what = "PNG data");
Result<PngImage> read_png_file(const std::string& path, const PngLimits& limits = {});

// Encodes `img` (channels 1-4, bit depth 8 or 16) with its text chunks: pure-ASCII text as tEXt,
// anything else as uncompressed UTF-8 iTXt (as PIL writes them).
Result<std::vector<uint8_t>> encode_png(const PngImage& img);
// Writes via a temporary file in the same directory and renames it into place.
Status write_png_file(const std::string& path, const PngImage& img);

// --- Conversion between images and [-1, 1] float tensors -------------------------------------

// x [C, H, W] in [-1, 1] -> samples round(clip((x + 1) / 2, 0, 1) * maxval), NaN -> 0.
// C = 1: grayscale, C = 3: RGB, any other C: the C planes side by side as one grayscale image
// of width C*W (as the python reference saves them).
Result<PngImage> image_from_chw(const float* x, int channels, int height, int width,
                                int bit_depth = 8);
// Converts to exactly `channels` (1 or 3) explicitly: RGB -> gray uses ITU-R 601-2 luma as PIL's
// convert("L") (L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 for 8 bit); gray -> RGB
// replicates; an alpha channel is dropped (not composited). `note`, if given, receives a
// description of the conversion done ("" when none).
Result<PngImage> convert_channels(const PngImage& img, int channels, std::string* note = nullptr);
// Image (already `channels`) -> out[C, H, W] = v / maxval * 2 - 1.
Status image_to_chw(const PngImage& img, float* out, size_t out_size);
// Tiles images [n, C, H, W] into one [C, rows*H, cols*W] image (row-major order, cols =
// ceil(sqrt(n)) when cols <= 0); empty cells are -1 (black).
std::vector<float> make_grid(const float* images, int n, int channels, int height, int width,
                             int cols, int* grid_height, int* grid_width);

// --- `parameters` text chunk (stable-diffusion-webui "infotext") -----------------------------
//
//   a photo of an ankle boot
//   Negative prompt: blurry
//   Steps: 20, Sampler: dpmpp_2m, CFG scale: 4, Seed: 123, Size: 28x28, Model: fashion-duet
//
// The prompt may span several lines; the negative prompt line is omitted when empty; the last
// line is a comma-separated "Key: value" list. Values containing ',', ':', '"' or a newline are
// written as JSON strings (webui's quote()).
struct ImageParameters {
  std::string prompt;
  std::string negative_prompt;
  std::vector<std::pair<std::string, std::string>> fields;  // in order, values unquoted

  const std::string* get(const std::string& key) const;
  void set(const std::string& key, std::string value);  // replaces or appends
};

std::string format_parameters(const ImageParameters& p);
// Parses infotext. A last line that is not a complete "Key: value, ..." list with at least
// three entries (or with a "Steps" entry) is treated as part of the prompt, as webui does.
// Errors only on malformed quoting inside the parameter line.
Result<ImageParameters> parse_parameters(const std::string& text);

}  // namespace duet

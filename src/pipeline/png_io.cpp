// libpng encode/decode from memory. libpng reports errors by longjmp; all C++ objects that must
// survive an error live in a Codec struct owned by the caller of the setjmp function, and the
// setjmp functions themselves only hold trivially destructible locals.
#include <png.h>

#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "duet/png.h"

namespace duet {
namespace {

struct Codec {
  // decode input
  const uint8_t* in = nullptr;
  size_t in_size = 0;
  size_t in_pos = 0;
  // encode output
  std::vector<uint8_t> out;
  char error[256] = {0};
  char warning[256] = {0};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* c = static_cast<Codec*>(png_get_error_ptr(png));
  std::snprintf(c->error, sizeof(c->error), "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

void on_warning(png_structp png, png_const_charp msg) {
  auto* c = static_cast<Codec*>(png_get_error_ptr(png));
  if (c->warning[0] == 0) std::snprintf(c->warning, sizeof(c->warning), "%s", msg ? msg : "");
}

void read_fn(png_structp png, png_bytep dst, png_size_t n) {
  auto* c = static_cast<Codec*>(png_get_io_ptr(png));
  if (n > c->in_size - c->in_pos) png_error(png, "truncated file (unexpected end of data)");
  std::memcpy(dst, c->in + c->in_pos, n);
  c->in_pos += n;
}

void write_fn(png_structp png, png_bytep src, png_size_t n) {
  auto* c = static_cast<Codec*>(png_get_io_ptr(png));
  c->out.insert(c->out.end(), src, src + n);
}

void flush_fn(png_structp) {}

// Latin-1 (tEXt / zTXt) -> UTF-8.
std::string latin1_to_utf8(const char* s, size_t n) {
  std::string out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto ch = static_cast<unsigned char>(s[i]);
    if (ch < 0x80) {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back(static_cast<char>(0xC0 | (ch >> 6)));
      out.push_back(static_cast<char>(0x80 | (ch & 0x3F)));
    }
  }
  return out;
}

// Header info gathered before pixel allocation.
struct Header {
  png_uint_32 width, height;
  int bit_depth, color_type, interlace, channels;
  size_t rowbytes;
};

// Phase 1: signature, IHDR (+ everything up to IDAT), transforms. Returns false on libpng error.
bool decode_header(png_structp png, png_infop info, Header* h, const PngLimits* lim) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, static_cast<png_uint_32>(lim->max_width),
                      static_cast<png_uint_32>(lim->max_height));
  png_set_chunk_malloc_max(png, lim->max_text_bytes + 1024);
  png_read_info(png, info);
  h->width = png_get_image_width(png, info);
  h->height = png_get_image_height(png, info);
  h->bit_depth = png_get_bit_depth(png, info);
  h->color_type = png_get_color_type(png, info);
  if (h->color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (h->color_type == PNG_COLOR_TYPE_GRAY && h->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  h->interlace = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  h->bit_depth = png_get_bit_depth(png, info);
  h->channels = png_get_channels(png, info);
  h->rowbytes = png_get_rowbytes(png, info);
  return true;
}

// Phase 2: pixels + trailing chunks into caller-owned buffers.
bool decode_pixels(png_structp png, png_infop end_info, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, end_info);
  return true;
}

void collect_text(png_structp png, png_infop info, PngImage* img, const PngLimits& lim) {
  png_textp text = nullptr;
  int num = 0;
  if (png_get_text(png, info, &text, &num) <= 0 || !text) return;
  for (int i = 0; i < num; ++i) {
    const char* key = text[i].key ? text[i].key : "";
    const bool itxt = text[i].compression == PNG_ITXT_COMPRESSION_NONE ||
                      text[i].compression == PNG_ITXT_COMPRESSION_zTXt;
    size_t len = itxt ? text[i].itxt_length : text[i].text_length;
    const char* s = text[i].text ? text[i].text : "";
    if (len > lim.max_text_bytes) len = lim.max_text_bytes;
    img->text.emplace_back(key, itxt ? std::string(s, len) : latin1_to_utf8(s, len));
  }
}

struct ReadGuard {
  png_structp png = nullptr;
  png_infop info = nullptr, end_info = nullptr;
  ~ReadGuard() {
    png_destroy_read_struct(&png, info ? &info : nullptr, end_info ? &end_info : nullptr);
  }
};

struct WriteGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~WriteGuard() { png_destroy_write_struct(&png, info ? &info : nullptr); }
};

bool encode_impl(png_structp png, png_infop info, const PngImage* img, png_bytep* rows,
                 png_textp texts, int num_texts) {
  if (setjmp(png_jmpbuf(png))) return false;
  static const int kColor[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_IHDR(png, info, static_cast<png_uint_32>(img->width),
               static_cast<png_uint_32>(img->height), img->bit_depth, kColor[img->channels],
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (num_texts > 0) png_set_text(png, info, texts, num_texts);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

}  // namespace

const std::string* PngImage::find_text(const std::string& keyword) const {
  for (const auto& [k, v] : text)
    if (k == keyword) return &v;
  return nullptr;
}

const char* png_color_name(int channels) {
  switch (channels) {
    case 1:
      return "grayscale";
    case 2:
      return "grayscale+alpha";
    case 3:
      return "RGB";
    case 4:
      return "RGBA";
  }
  return "unsupported";
}

Result<PngImage> decode_png(const uint8_t* data, size_t size, const PngLimits& limits,
                            const std::string& what) {
  if (!data || size < 8)
    return data_loss(what + ": not a PNG (too short: " + std::to_string(size) + " bytes)");
  if (png_sig_cmp(data, 0, 8) != 0) return invalid_argument(what + ": not a PNG (bad signature)");
  // Check the IHDR dimensions before libpng allocates anything for them.
  if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t o) {
      return (uint32_t{data[o]} << 24) | (uint32_t{data[o + 1]} << 16) |
             (uint32_t{data[o + 2]} << 8) | uint32_t{data[o + 3]};
    };
    const uint64_t w = be32(16), hh = be32(20);
    if (w > static_cast<uint64_t>(limits.max_width) ||
        hh > static_cast<uint64_t>(limits.max_height) ||
        w * hh > static_cast<uint64_t>(limits.max_pixels))
      return resource_exhausted(what + ": image " + std::to_string(w) + "x" + std::to_string(hh) +
                                " exceeds the size limit (" + std::to_string(limits.max_width) +
                                "x" + std::to_string(limits.max_height) + ", " +
                                std::to_string(limits.max_pixels) + " pixels)");
  }
  // Walk the chunk list first: every declared length must fit in the data (libpng would
  // otherwise try to allocate and skip absurd lengths before noticing the truncation).
  for (size_t off = 8;;) {
    if (size - off < 12)
      return data_loss(what + ": truncated PNG (chunk header at byte " + std::to_string(off) +
                       " is cut off; missing IEND)");
    const uint32_t len = (uint32_t{data[off]} << 24) | (uint32_t{data[off + 1]} << 16) |
                         (uint32_t{data[off + 2]} << 8) | uint32_t{data[off + 3]};
    if (len > 0x7FFFFFFFu || len > size - off - 12) {
      std::string name(reinterpret_cast<const char*>(data + off + 4), 4);
      for (char& ch : name)
        if (!std::isalpha(static_cast<unsigned char>(ch))) ch = '?';
      return data_loss(what + ": truncated or corrupt PNG (chunk '" + name + "' at byte " +
                       std::to_string(off) + " declares " + std::to_string(len) + " bytes, " +
                       std::to_string(size - off - 12) + " remain)");
    }
    if (std::memcmp(data + off + 4, "IEND", 4) == 0) break;
    off += 12 + static_cast<size_t>(len);
  }
  Codec codec;
  codec.in = data;
  codec.in_size = size;
  ReadGuard g;
  g.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &codec, on_error, on_warning);
  if (!g.png) return internal_error("libpng: cannot create read struct");
  g.info = png_create_info_struct(g.png);
  g.end_info = png_create_info_struct(g.png);
  if (!g.info || !g.end_info) return internal_error("libpng: cannot create info struct");
  png_set_read_fn(g.png, &codec, read_fn);
  // Do not let an unknown-critical or CRC error in ancillary chunks pass silently for IDAT.
  png_set_crc_action(g.png, PNG_CRC_DEFAULT, PNG_CRC_DEFAULT);

  Header h{};
  if (!decode_header(g.png, g.info, &h, &limits))
    return data_loss(what + ": invalid PNG: " + codec.error);
  const int64_t pixels = static_cast<int64_t>(h.width) * static_cast<int64_t>(h.height);
  if (h.width == 0 || h.height == 0) return data_loss(what + ": invalid PNG: zero size");
  if (static_cast<int64_t>(h.width) > limits.max_width ||
      static_cast<int64_t>(h.height) > limits.max_height || pixels > limits.max_pixels)
    return resource_exhausted(
        what + ": image " + std::to_string(h.width) + "x" + std::to_string(h.height) +
        " exceeds the size limit (" + std::to_string(limits.max_width) + "x" +
        std::to_string(limits.max_height) + ", " + std::to_string(limits.max_pixels) + " pixels)");
  if (h.bit_depth != 8 && h.bit_depth != 16)
    return unimplemented(what + ": unsupported bit depth " + std::to_string(h.bit_depth));
  if (h.channels < 1 || h.channels > 4)
    return unimplemented(what + ": unsupported channel count " + std::to_string(h.channels));
  const size_t bps = static_cast<size_t>(h.bit_depth / 8);
  if (h.rowbytes != static_cast<size_t>(h.width) * h.channels * bps)
    return internal_error(what + ": unexpected PNG row size");

  std::vector<uint8_t> raw(h.rowbytes * h.height);
  std::vector<png_bytep> rows(h.height);
  for (png_uint_32 y = 0; y < h.height; ++y) rows[y] = raw.data() + y * h.rowbytes;
  if (!decode_pixels(g.png, g.end_info, rows.data()))
    return data_loss(what + ": invalid PNG: " + codec.error);

  PngImage img;
  img.width = static_cast<int>(h.width);
  img.height = static_cast<int>(h.height);
  img.channels = h.channels;
  img.bit_depth = h.bit_depth;
  const size_t n = static_cast<size_t>(pixels) * h.channels;
  img.samples.resize(n);
  if (bps == 1) {
    for (size_t i = 0; i < n; ++i) img.samples[i] = raw[i];
  } else {
    for (size_t i = 0; i < n; ++i)
      img.samples[i] = static_cast<uint16_t>((raw[2 * i] << 8) | raw[2 * i + 1]);
  }
  collect_text(g.png, g.info, &img, limits);
  collect_text(g.png, g.end_info, &img, limits);
  return img;
}

Result<PngImage> read_png_file(const std::string& path, const PngLimits& limits) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return not_found(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) return invalid_argument(path + ": is a directory");
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return io_error(path + ": cannot open for reading: " + std::strerror(errno));
  const std::streamoff len = f.tellg();
  if (len < 0) return io_error(path + ": cannot determine the file size");
  // A PNG within the pixel limits cannot reasonably exceed ~8 bytes/sample uncompressed.
  const uint64_t cap = static_cast<uint64_t>(limits.max_pixels) * 8 * 2 + (64u << 20);
  if (static_cast<uint64_t>(len) > cap)
    return resource_exhausted(path + ": file too large (" + std::to_string(len) + " bytes)");
  std::vector<uint8_t> buf(static_cast<size_t>(len));
  f.seekg(0);
  if (len > 0 && !f.read(reinterpret_cast<char*>(buf.data()), len))
    return io_error(path + ": read failed");
  return decode_png(buf.data(), buf.size(), limits, path);
}

Result<std::vector<uint8_t>> encode_png(const PngImage& img) {
  if (img.channels < 1 || img.channels > 4)
    return invalid_argument("PNG encode: channels must be 1-4, got " +
                            std::to_string(img.channels));
  if (img.bit_depth != 8 && img.bit_depth != 16)
    return invalid_argument("PNG encode: bit depth must be 8 or 16, got " +
                            std::to_string(img.bit_depth));
  if (img.width <= 0 || img.height <= 0 || img.width > 1000000 || img.height > 1000000)
    return invalid_argument("PNG encode: invalid size " + std::to_string(img.width) + "x" +
                            std::to_string(img.height));
  const size_t n = static_cast<size_t>(img.width) * img.height * img.channels;
  if (img.samples.size() != n)
    return invalid_argument("PNG encode: expected " + std::to_string(n) + " samples, got " +
                            std::to_string(img.samples.size()));
  const size_t bps = static_cast<size_t>(img.bit_depth / 8);
  const size_t rowbytes = static_cast<size_t>(img.width) * img.channels * bps;
  std::vector<uint8_t> raw(rowbytes * img.height);
  for (size_t i = 0; i < n; ++i) {
    const uint16_t v = img.samples[i];
    if (bps == 1) {
      raw[i] = static_cast<uint8_t>(v > 255 ? 255 : v);
    } else {
      raw[2 * i] = static_cast<uint8_t>(v >> 8);
      raw[2 * i + 1] = static_cast<uint8_t>(v & 0xFF);
    }
  }
  std::vector<png_bytep> rows(img.height);
  for (int y = 0; y < img.height; ++y) rows[y] = raw.data() + y * rowbytes;

  std::vector<png_text> texts(img.text.size());
  for (size_t i = 0; i < img.text.size(); ++i) {
    const auto& [k, v] = img.text[i];
    if (k.empty() || k.size() > 79)
      return invalid_argument("PNG encode: text keyword must be 1-79 characters: '" + k + "'");
    bool ascii = true;
    for (unsigned char ch : v) ascii &= ch < 0x80 && ch != 0;
    std::memset(&texts[i], 0, sizeof(png_text));
    texts[i].compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
    texts[i].key = const_cast<char*>(k.c_str());
    texts[i].text = const_cast<char*>(v.c_str());
    if (ascii)
      texts[i].text_length = v.size();
    else
      texts[i].itxt_length = v.size();
  }

  Codec codec;
  codec.out.reserve(raw.size() / 2 + 1024);
  WriteGuard g;
  g.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &codec, on_error, on_warning);
  if (!g.png) return internal_error("libpng: cannot create write struct");
  g.info = png_create_info_struct(g.png);
  if (!g.info) return internal_error("libpng: cannot create info struct");
  png_set_write_fn(g.png, &codec, write_fn, flush_fn);
  if (!encode_impl(g.png, g.info, &img, rows.data(), texts.data(), static_cast<int>(texts.size())))
    return internal_error(std::string("PNG encode failed: ") + codec.error);
  return std::move(codec.out);
}

Status write_png_file(const std::string& path, const PngImage& img) {
  DUET_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, encode_png(img));
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path tmp = target.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return io_error(path + ": cannot open for writing: " + std::strerror(errno));
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
    f.flush();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return io_error(path + ": write failed: " + std::strerror(errno));
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return io_error(path + ": cannot rename temporary file into place: " + ec.message());
  }
  return Status::ok();
}

}  // namespace duet

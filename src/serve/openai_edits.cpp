#include "serve/openai_edits.h"

#include <nlohmann/json.hpp>
#include <set>

#include "serve/image_input.h"

namespace duet::serve {
namespace {

using nlohmann::json;

// A text form field as the JSON value the generation parser expects: numbers and booleans for
// the fields that are numbers or booleans when they read as such, else the string itself (so
// that the parser's error names the field and shows the value).
json form_value(const std::string& name, const std::string& value) {
  static const std::set<std::string> numeric = {"n",     "steps",  "cfg_scale", "seed",
                                                "width", "height", "strength",  "refine_every"};
  if (name == "karras") {
    if (value == "true" || value == "1") return true;
    if (value == "false" || value == "0") return false;
    return value;
  }
  if (numeric.count(name)) {
    json v = json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (!v.is_discarded() && v.is_number()) return v;
  }
  return value;
}

// Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). Form parts are raw
// bytes, unlike JSON bodies (whose parser already refuses bad UTF-8); a name or value that is not
// UTF-8 could not be echoed in a JSON error or stored in a job's JSON.
bool valid_utf8(const std::string& s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = b[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + len > n || b[i + 1] < lo || b[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k)
      if ((b[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

}  // namespace

std::variant<ParsedGeneration, ApiError> parse_img2img(const json& j, const Img2ImgInput& in,
                                                       const ImageEngine& engine) {
  const EngineInfo& info = engine.info();
  auto img = decode_upload(*in.image, in.image_field, info);
  if (auto* e = std::get_if<ApiError>(&img)) return *e;
  const PngImage& image = std::get<PngImage>(img);
  ParseOptions o;
  o.img2img = true;
  o.defer_engine_check = true;
  o.default_width = image.width;
  o.default_height = image.height;
  auto parsed = parse_generation_object(j, engine, o);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    const bool sized = j.contains("size") || j.contains("width") || j.contains("height");
    if (!sized && (e->param == "size" || e->param == "width" || e->param == "height")) {
      e->param = in.image_field;  // the size came from the image
      e->message = "'" + in.image_field + "' is " + std::to_string(image.width) + "x" +
                   std::to_string(image.height) + ": " + e->message;
    }
    return *e;
  }
  ParsedGeneration& out = std::get<ParsedGeneration>(parsed);
  if (auto e = attach_init_image(image, in.image_field, info, &out.request)) return *e;
  if (in.mask) {
    auto m = decode_upload(*in.mask, in.mask_field, info);
    if (auto* e = std::get_if<ApiError>(&m)) return *e;
    if (auto e = attach_mask(std::get<PngImage>(m), in.mask_field, in.mask_rule, in.invert_mask,
                             &out.request))
      return *e;
  }
  if (auto e = engine_check(engine, out.request)) return *e;
  return parsed;
}

std::variant<ParsedGeneration, ApiError> parse_edit_form(const std::vector<FormPart>& parts,
                                                         const ImageEngine& engine) {
  json j = json::object();
  const std::string* image = nullptr;
  const std::string* mask = nullptr;
  std::string image_field = "image";
  for (const FormPart& p : parts) {
    if (!valid_utf8(p.name)) return bad("multipart", "a form part's name is not valid UTF-8");
    const bool is_image = p.name == "image" || p.name == "image[]";
    if (is_image || p.name == "mask") {
      const std::string*& slot = is_image ? image : mask;
      if (slot)
        return bad(p.name, "'" + p.name + "' is given more than once (duet edits one image)");
      slot = &p.content;
      if (is_image) image_field = p.name;
      continue;
    }
    if (p.name.empty()) return bad("", "a form part has no name");
    if (j.contains(p.name)) return bad(p.name, "'" + p.name + "' is given more than once");
    if (!p.filename.empty())
      return bad(p.name, "'" + p.name + "' must be a text field, not a file");
    if (!valid_utf8(p.content)) return bad(p.name, "'" + p.name + "' is not valid UTF-8 text");
    j[p.name] = form_value(p.name, p.content);
  }
  if (!image) return bad("image", "'image' (a PNG file) is required");
  Img2ImgInput in;
  in.image = image;
  in.image_field = image_field;
  in.mask = mask;
  return parse_img2img(j, in, engine);
}

std::variant<ParsedGeneration, ApiError> parse_job_json(const std::string& body,
                                                        const ImageEngine& engine) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("", "the request body is not valid JSON");
  if (!j.is_object()) return bad("", "the request body must be a JSON object");
  if (!j.contains("image") || j["image"].is_null()) {
    if (j.contains("mask") && !j["mask"].is_null())
      return bad("mask", "'mask' needs an 'image' to inpaint");
    if (j.contains("strength") && !j["strength"].is_null())
      return bad("strength", "'strength' applies to img2img only (give an 'image')");
    return parse_generation_object(j, engine);
  }
  std::string png[2];
  int k = 0;
  for (const char* field : {"image", "mask"}) {
    const json& v = j.contains(field) ? j[field] : json();
    if (!v.is_null() && (!v.is_string() || !base64_decode(v.get<std::string>(), &png[k])))
      return bad(field, std::string("'") + field + "' must be a base64-encoded PNG (a string)");
    ++k;
  }
  const bool has_mask = j.contains("mask") && !j["mask"].is_null();
  json fields = j;
  fields.erase("image");
  fields.erase("mask");
  Img2ImgInput in;
  in.image = &png[0];
  in.mask = has_mask ? &png[1] : nullptr;
  return parse_img2img(fields, in, engine);
}

}  // namespace duet::serve

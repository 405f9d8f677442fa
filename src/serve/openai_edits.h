// img2img requests: OpenAI's `POST /v1/images/edits` (multipart/form-data: an `image` PNG file,
// an optional `mask` PNG, text fields as in generations plus `strength`) and the job API's
// img2img bodies (the same form, or JSON with base64 `image` / `mask`). The HTTP library stays
// out: the server hands the form over as FormParts.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "duet/serve_engine.h"
#include "serve/api.h"
#include "serve/image_input.h"

namespace duet::serve {

struct FormPart {
  std::string name;
  std::string filename;  // "" for a plain text field
  std::string content_type;
  std::string content;
};

// A multipart form as /v1/images/edits and POST /v1/jobs take it. `image` (or `image[]`, one
// file) is required; the size defaults to the image's.
std::variant<ParsedGeneration, ApiError> parse_edit_form(const std::vector<FormPart>& parts,
                                                         const ImageEngine& engine);

// A JSON body of POST /v1/jobs: generation fields, and optionally `image` / `mask` (base64 PNG,
// data URLs accepted) with `strength`.
std::variant<ParsedGeneration, ApiError> parse_job_json(const std::string& body,
                                                        const ImageEngine& engine);

// The uploaded images of an img2img request (raw PNG bytes) and the fields they came in.
struct Img2ImgInput {
  const std::string* image = nullptr;  // required
  std::string image_field = "image";
  const std::string* mask = nullptr;  // optional
  std::string mask_field = "mask";
  MaskRule mask_rule = MaskRule::kOpenAI;
  bool invert_mask = false;
};

// Completes an img2img request whose other fields are in `j`: decodes the PNGs, defaults the
// size to the image's, validates, attaches image and mask. Every front end that takes an init
// image uses it.
std::variant<ParsedGeneration, ApiError> parse_img2img(const nlohmann::json& j,
                                                       const Img2ImgInput& in,
                                                       const ImageEngine& engine);

}  // namespace duet::serve

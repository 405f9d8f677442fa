// duet png-info FILE [--json] — prints the generation parameters stored in a PNG's `parameters`
// text chunk (as written by duet generate or stable-diffusion-webui).
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "command.h"
#include "duet/png.h"

namespace {

int run_png_info(const std::string& path, bool json) {
  auto img = duet::read_png_file(path);
  if (!img) {
    std::fprintf(stderr, "error: %s\n", img.status().message().c_str());
    return 1;
  }
  const std::string* text = img->find_text("parameters");
  if (!text) {
    std::fprintf(stderr, "error: %s: no 'parameters' text chunk (%dx%d %s, %d-bit)\n", path.c_str(),
                 img->width, img->height, duet::png_color_name(img->channels), img->bit_depth);
    return 1;
  }
  if (!json) {
    std::printf("%s\n", text->c_str());
    return 0;
  }
  auto p = duet::parse_parameters(*text);
  if (!p) {
    std::fprintf(stderr, "error: %s: %s\n", path.c_str(), p.status().message().c_str());
    return 1;
  }
  nlohmann::ordered_json j;
  j["file"] = path;
  j["width"] = img->width;
  j["height"] = img->height;
  j["color"] = duet::png_color_name(img->channels);
  j["bit_depth"] = img->bit_depth;
  j["prompt"] = p->prompt;
  j["negative_prompt"] = p->negative_prompt;
  nlohmann::ordered_json fields = nlohmann::ordered_json::object();
  for (const auto& [k, v] : p->fields) fields[k] = v;
  j["parameters"] = fields;
  j["raw"] = *text;
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

static duet::cli::CommandRegistrar registrar(
    "png-info", "Print the generation parameters stored in a PNG",
    [](CLI::App& sub) -> std::function<int()> {
      auto file = std::make_shared<std::string>();
      auto json = std::make_shared<bool>(false);
      sub.add_option("file", *file, "PNG file")->required();
      sub.add_flag("--json", *json, "parsed parameters as JSON");
      return [file, json]() { return run_png_info(*file, *json); };
    });

}  // namespace

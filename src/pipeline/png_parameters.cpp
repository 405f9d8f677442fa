// stable-diffusion-webui "infotext" (`parameters` PNG text chunk): formatting and parsing.
#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "duet/png.h"

namespace duet {
namespace {

// Unquoted values are read up to the next ',' with surrounding blanks dropped, and a value whose
// first non-blank character is '"' is read as quoted: anything else is written JSON-quoted.
bool needs_quote(const std::string& v) {
  if (v.empty()) return false;
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  return v.find_first_of(",:\n\r") != std::string::npos || v.front() == '"' || blank(v.front()) ||
         blank(v.back());
}

std::string quote(const std::string& v) {
  if (!needs_quote(v)) return v;
  return nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_key_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || c == ' ' || c == '-' || c == '/' || u >= 0x80;
}

// Parses "Key: value, Key: "quoted, value", ..." completely; nullopt if the line is not such a
// list. `bad_quote` is set when a quoted value could not be decoded.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_field_line(
    const std::string& line, bool* bad_quote) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  const size_t n = line.size();
  auto skip_ws = [&] {
    while (i < n && (line[i] == ' ' || line[i] == '\t')) ++i;
  };
  skip_ws();
  if (i == n) return std::nullopt;
  while (i < n) {
    skip_ws();
    const size_t k0 = i;
    while (i < n && line[i] != ':' && is_key_char(line[i])) ++i;
    if (i == n || line[i] != ':') return std::nullopt;
    std::string key = line.substr(k0, i - k0);
    while (!key.empty() && key.back() == ' ') key.pop_back();
    if (key.empty()) return std::nullopt;
    ++i;  // ':'
    skip_ws();
    std::string value;
    if (i < n && line[i] == '"') {
      const size_t q0 = i++;
      while (i < n && line[i] != '"') i += (line[i] == '\\' && i + 1 < n) ? 2 : 1;
      if (i >= n) {
        *bad_quote = true;
        return std::nullopt;
      }
      ++i;  // closing quote
      const std::string quoted = line.substr(q0, i - q0);
      try {
        value = nlohmann::json::parse(quoted).get<std::string>();
      } catch (const std::exception&) {
        *bad_quote = true;
        return std::nullopt;
      }
      skip_ws();
      if (i < n && line[i] != ',') return std::nullopt;
    } else {
      const size_t v0 = i;
      while (i < n && line[i] != ',') ++i;
      value = line.substr(v0, i - v0);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    }
    out.emplace_back(std::move(key), std::move(value));
    if (i < n) ++i;  // ','
  }
  return out;
}

}  // namespace

const std::string* ImageParameters::get(const std::string& key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

void ImageParameters::set(const std::string& key, std::string value) {
  for (auto& [k, v] : fields) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  fields.emplace_back(key, std::move(value));
}

// Would parse_parameters take this line for the generation-settings line?
bool reads_as_field_line(const std::string& line) {
  bool bad_quote = false;
  auto fields = parse_field_line(line, &bad_quote);
  bool has_steps = false;
  if (fields)
    for (const auto& kv : *fields) has_steps |= kv.first == "Steps";
  return line.rfind("Steps:", 0) == 0 || (fields && (fields->size() >= 3 || has_steps));
}

std::string format_parameters(const ImageParameters& p) {
  std::string s = p.prompt;
  const size_t last_nl = p.prompt.rfind('\n');
  const std::string last_line =
      last_nl == std::string::npos ? p.prompt : p.prompt.substr(last_nl + 1);
  // An empty negative-prompt line is written when it keeps the prompt's last line from being
  // read back as the settings line.
  if (!p.negative_prompt.empty() || reads_as_field_line(last_line))
    s += "\nNegative prompt: " + p.negative_prompt;
  if (!p.fields.empty()) {
    s += "\n";
    for (size_t i = 0; i < p.fields.size(); ++i) {
      if (i) s += ", ";
      s += p.fields[i].first + ": " + quote(p.fields[i].second);
    }
  }
  return s;
}

Result<ImageParameters> parse_parameters(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (true) {
    const size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    while (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF (and stray CRs)
    lines.push_back(std::move(line));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  // Trailing empty lines carry nothing.
  while (lines.size() > 1 && lines.back().empty()) lines.pop_back();

  ImageParameters p;
  bool bad_quote = false;
  auto fields = parse_field_line(lines.back(), &bad_quote);
  const bool starts_steps = lines.back().rfind("Steps:", 0) == 0;
  bool has_steps = false;
  if (fields)
    for (const auto& kv : *fields) has_steps |= kv.first == "Steps";
  if (fields && (fields->size() >= 3 || has_steps)) {
    p.fields = std::move(*fields);
    lines.pop_back();
  } else if (starts_steps && lines.size() > 1) {
    return data_loss("malformed parameters line" +
                     std::string(bad_quote ? " (unterminated or invalid quoted value)" : "") +
                     ": '" + lines.back().substr(0, 200) + "'");
  }

  static const std::string kNeg = "Negative prompt:";
  bool in_negative = false;
  bool first_prompt_line = true, first_neg_line = true;
  for (const auto& line : lines) {
    if (!in_negative && line.rfind(kNeg, 0) == 0) {
      in_negative = true;
      std::string rest = line.substr(kNeg.size());
      if (!rest.empty() && rest.front() == ' ') rest.erase(0, 1);
      p.negative_prompt = rest;
      first_neg_line = false;
      continue;
    }
    std::string& dst = in_negative ? p.negative_prompt : p.prompt;
    bool& first = in_negative ? first_neg_line : first_prompt_line;
    if (!first) dst += "\n";
    dst += line;
    first = false;
  }
  // Like trailing empty lines of the text, trailing newlines of either prompt carry nothing (and
  // could not survive format_parameters → parse_parameters).
  for (std::string* s : {&p.prompt, &p.negative_prompt})
    while (!s->empty() && s->back() == '\n') s->pop_back();
  return p;
}

}  // namespace duet

// Byte-level tokenizer; the spec is python/duet_ref/tokenizer.py (see tokenizer.h).
#include "duet/tokenizer.h"

#include <algorithm>

namespace duet {
namespace {

bool is_ascii_space(unsigned char b) {
  return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r';
}

}  // namespace

int64_t TokenizedText::length() const {
  int64_t n = 0;
  for (uint8_t m : mask) n += m ? 1 : 0;
  return n;
}

std::string ByteTokenizer::normalize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;  // a whitespace run seen after some output
  for (char ch : text) {
    const unsigned char b = static_cast<unsigned char>(ch);
    if (is_ascii_space(b)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) {
      out.push_back(' ');
      pending_space = false;
    }
    out.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
  }
  return out;
}

TokenizedText ByteTokenizer::encode(std::string_view text) const {
  const std::string body = normalize(text);
  const size_t keep = std::min(body.size(), static_cast<size_t>(max_length_ - 2));
  TokenizedText t;
  t.ids.assign(static_cast<size_t>(max_length_), kPad);
  t.mask.assign(static_cast<size_t>(max_length_), 0);
  // Invariant: 1 + keep + 1 <= max_length.
  t.ids[0] = kBos;
  for (size_t i = 0; i < keep; ++i) t.ids[1 + i] = static_cast<unsigned char>(body[i]);
  t.ids[1 + keep] = kEos;
  for (size_t i = 0; i < keep + 2; ++i) t.mask[i] = 1;
  return t;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));
  }
  return out;
}

Result<std::unique_ptr<Tokenizer>> make_tokenizer(const ModelConfig& cfg) {
  if (cfg.text.tokenizer != "byte")
    return unimplemented("tokenizer '" + cfg.text.tokenizer + "' is not supported (only 'byte')");
  return std::unique_ptr<Tokenizer>(std::make_unique<ByteTokenizer>(cfg.text.max_length));
}

}  // namespace duet

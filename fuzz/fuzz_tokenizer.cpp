// Fuzzes the byte-level tokenizer: the first byte picks max_length (2..257), the rest is the
// text. Invariants: fixed-length output, [bos] body [eos] pad* layout, mask = real tokens, ids
// in the vocabulary, normalize() idempotent, decode(encode(x)) == truncated normalize(x).
#include "duet/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int64_t max_length = 2 + data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  duet::ByteTokenizer tok(max_length);
  const duet::TokenizedText t = tok.encode(text);
  FUZZ_CHECK(static_cast<int64_t>(t.ids.size()) == max_length);
  FUZZ_CHECK(t.mask.size() == t.ids.size());
  const std::string norm = duet::ByteTokenizer::normalize(text);
  FUZZ_CHECK(duet::ByteTokenizer::normalize(norm) == norm);
  const int64_t body = std::min<int64_t>(static_cast<int64_t>(norm.size()), max_length - 2);
  FUZZ_CHECK(t.length() == body + 2);
  FUZZ_CHECK(t.ids[0] == duet::ByteTokenizer::kBos);
  FUZZ_CHECK(t.ids[body + 1] == duet::ByteTokenizer::kEos);
  for (int64_t i = 0; i < max_length; ++i) {
    FUZZ_CHECK(t.ids[i] >= 0 && t.ids[i] < tok.vocab_size());
    FUZZ_CHECK(t.mask[i] == (i < body + 2 ? 1 : 0));
    if (i >= body + 2) FUZZ_CHECK(t.ids[i] == duet::ByteTokenizer::kPad);
    if (i >= 1 && i <= body) {
      FUZZ_CHECK(t.ids[i] == static_cast<unsigned char>(norm[i - 1]));
      FUZZ_CHECK(!(t.ids[i] >= 'A' && t.ids[i] <= 'Z'));
    }
  }
  FUZZ_CHECK(tok.decode(t.ids) == norm.substr(0, static_cast<size_t>(body)));
  // decode() of arbitrary ids (out-of-range included) must not crash.
  std::vector<int64_t> ids;
  for (size_t i = 1; i + 1 < size && ids.size() < 64; i += 2)
    ids.push_back(static_cast<int64_t>(static_cast<int8_t>(data[i])) * 300 + data[i + 1]);
  (void)tok.decode(ids);
  return 0;
}

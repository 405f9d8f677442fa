// Tokenizers: text -> fixed-length token ids + attention mask.
//
// ByteTokenizer is bit-exact with python/duet_ref/tokenizer.py:
//   1. ASCII A-Z lower-cased (every other byte unchanged; no Unicode case folding);
//   2. runs of ASCII whitespace (space \t \n \v \f \r) -> one space; leading/trailing removed;
//   3. ids = [<bos>=256] + bytes[: max_length - 2] + [<eos>=257], then <pad>=258 to max_length.
//      (Truncation is by bytes and may cut a UTF-8 sequence, exactly like the reference.)
// mask[i] = 1 for bos/body/eos positions, 0 for padding.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "duet/config.h"
#include "duet/status.h"

namespace duet {

struct TokenizedText {
  std::vector<int64_t> ids;   // [max_length]
  std::vector<uint8_t> mask;  // [max_length], 1 = real token (incl. bos/eos), 0 = pad
  int64_t length() const;     // number of real tokens (sum of mask)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string_view kind() const = 0;  // "byte", later "clip-bpe"
  virtual int64_t max_length() const = 0;
  virtual int64_t vocab_size() const = 0;
  // `text` is UTF-8 (bytes are taken as given; invalid UTF-8 is not an error).
  virtual TokenizedText encode(std::string_view text) const = 0;
  // Ids back to text (special tokens dropped); for diagnostics.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int64_t kBos = 256, kEos = 257, kPad = 258, kVocabSize = 259;
  // max_length >= 2 (validated configs guarantee it; smaller values are raised to 2).
  explicit ByteTokenizer(int64_t max_length) : max_length_(max_length < 2 ? 2 : max_length) {}

  std::string_view kind() const override { return "byte"; }
  int64_t max_length() const override { return max_length_; }
  int64_t vocab_size() const override { return kVocabSize; }
  TokenizedText encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;

  // Steps 1-2 above.
  static std::string normalize(std::string_view text);

 private:
  int64_t max_length_;
};

// The tokenizer named by cfg.text.tokenizer (only "byte" today).
Result<std::unique_ptr<Tokenizer>> make_tokenizer(const ModelConfig& cfg);

}  // namespace duet

#include "diffusion/fixture_file.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace duet::diffusion {

namespace {
constexpr uint64_t kMaxHeader = 100u << 20;  // 100 MiB
constexpr uint64_t kMaxFile = 1ull << 32;    // 4 GiB: these files are small
}  // namespace

Result<FixtureFile> FixtureFile::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return not_found(path + ": cannot open file");
  const std::streamoff size = in.tellg();
  if (size < 0) return io_error(path + ": cannot determine file size");
  if (static_cast<uint64_t>(size) > kMaxFile) return invalid_argument(path + ": file too large");
  if (size < 8)
    return data_loss(path + ": file too short for a safetensors header (" + std::to_string(size) +
                     " bytes)");
  std::vector<char> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (!in.read(bytes.data(), size)) return io_error(path + ": read failed");

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > kMaxHeader || header_len > static_cast<uint64_t>(size) - 8)
    return data_loss(path + ": header length " + std::to_string(header_len) +
                     " exceeds file size " + std::to_string(size));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_len);
  } catch (const std::exception& e) {
    return data_loss(path + ": header is not valid JSON (" + e.what() + ")");
  }
  if (!header.is_object()) return data_loss(path + ": header is not a JSON object");

  FixtureFile f;
  f.path_ = path;
  const uint64_t data_begin = 8 + header_len;
  const uint64_t data_size = static_cast<uint64_t>(size) - data_begin;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return data_loss(path + ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return data_loss(path + ": metadata '" + m.key() + "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets"))
      return data_loss(path + ": tensor '" + name + "' lacks dtype/shape/data_offsets");
    if (!v["dtype"].is_string() || v["dtype"].get<std::string>() != "F32")
      return invalid_argument(path + ": tensor '" + name + "' has dtype " + v["dtype"].dump() +
                              ", only F32 is supported");
    const auto& shape = v["shape"];
    const auto& offs = v["data_offsets"];
    if (!shape.is_array() || !offs.is_array() || offs.size() != 2)
      return data_loss(path + ": tensor '" + name + "' has malformed shape/data_offsets");
    F32Tensor t;
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        return data_loss(path + ": tensor '" + name + "' has a bad dimension");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > (1ull << 40) / dim)
        return data_loss(path + ": tensor '" + name + "' is too large");
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      return data_loss(path + ": tensor '" + name + "' has non-integer data_offsets");
    const uint64_t b = offs[0].get<uint64_t>(), e = offs[1].get<uint64_t>();
    if (b > e || e > data_size)
      return data_loss(path + ": tensor '" + name + "' data_offsets [" + std::to_string(b) + ", " +
                       std::to_string(e) + ") outside the data section (" +
                       std::to_string(data_size) + " bytes)");
    if (e - b != numel * 4)
      return data_loss(path + ": tensor '" + name + "' byte size " + std::to_string(e - b) +
                       " does not match its shape (" + std::to_string(numel) + " floats)");
    t.data.resize(numel);
    if (numel) std::memcpy(t.data.data(), bytes.data() + data_begin + b, numel * 4);
    f.tensors_.emplace(name, std::move(t));
  }
  return f;
}

Result<const F32Tensor*> FixtureFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return not_found(path_ + ": missing tensor '" + name + "'");
  return &it->second;
}

Result<std::string> FixtureFile::meta(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return not_found(path_ + ": missing metadata key '" + key + "'");
  return it->second;
}

}  // namespace duet::diffusion

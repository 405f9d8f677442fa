// Safetensors reader / writer. See include/duet/safetensors.h for the format and the invariants
// every accepted file satisfies; docs/robustness.md lists the malformed inputs that are rejected.
#include "duet/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "io/io_util.h"

namespace duet {
namespace {

using json = nlohmann::json;

constexpr int kMaxHeaderDepth = 16;  // entries are at depth 2-3; anything deeper is malformed
constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// Parses the header JSON, rejecting duplicate keys at any level and absurd nesting.
Result<json> parse_header_json(std::string_view text, const std::string& file) {
  std::vector<std::set<std::string>> keys;  // one key set per open object
  std::string duplicate, too_deep;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxHeaderDepth && too_deep.empty()) too_deep = "nested";
        if (ev == json::parse_event_t::object_start) keys.emplace_back();
        return depth < kMaxHeaderDepth;  // false: the parser discards (does not store) it
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        return true;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string()) {
          const auto& k = parsed.get_ref<const std::string&>();
          if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
        }
        return true;
      default:
        return true;
    }
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    return data_loss(file + ": header is not valid JSON / UTF-8: " + ascii_escaped(e.what()));
  }
  if (!duplicate.empty())
    return data_loss(file + ": header has duplicate key " + quote_name(duplicate));
  if (!too_deep.empty())
    return data_loss(file + ": header JSON nests deeper than " + std::to_string(kMaxHeaderDepth) +
                     " levels");
  return j;
}

// A non-negative JSON integer as uint64, or a message describing what was found instead.
bool json_uint(const json& v, uint64_t* out, std::string* found) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    *found = std::to_string(v.get<int64_t>()) + " (negative)";
  } else if (v.is_number_float()) {
    *found = v.dump() + " (not an integer, or too large)";
  } else {
    *found = std::string(v.type_name()) + " " + truncated(v.dump(), 40);
  }
  return false;
}

std::string offsets_string(uint64_t b, uint64_t e) {
  char buf[48];  // (snprintf, not string +: avoids a GCC 12 -Wrestrict false positive)
  std::snprintf(buf, sizeof buf, "[%llu, %llu]", static_cast<unsigned long long>(b),
                static_cast<unsigned long long>(e));
  return buf;
}

}  // namespace

bool parse_dtype(std::string_view s, DType* out) {
  static constexpr std::pair<std::string_view, DType> kTable[] = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"I64", DType::kI64},
      {"I32", DType::kI32}, {"U8", DType::kU8},   {"I8", DType::kI8}};
  for (const auto& [name, t] : kTable) {
    if (s == name) {
      *out = t;
      return true;
    }
  }
  return false;
}

Result<SafetensorsFile> parse_safetensors(const uint8_t* data, size_t size, std::string file) {
  if (size < 8)  // (checked first: open() passes no buffer for short files)
    return data_loss(file + ": file is " + std::to_string(size) +
                     " bytes; a safetensors file needs at least 8 (the header length)");
  if (data == nullptr) return invalid_argument(file + ": null buffer");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little-endian u64
  if (n == 0) return data_loss(file + ": header length is 0; expected a JSON object");
  if (n > kMaxSafetensorsHeaderBytes)
    return data_loss(file + ": header length " + std::to_string(n) + " exceeds the limit of " +
                     std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  if (n > size - 8)
    return data_loss(file + ": header length " + std::to_string(n) + " exceeds the file (" +
                     std::to_string(size - 8) + " bytes follow the length field)");
  // Invariant from here on: 8 + n <= size, so the data section [8 + n, size) is in bounds.
  const uint64_t data_size = size - 8 - n;
  const uint8_t* data_start = data + 8 + n;

  DUET_ASSIGN_OR_RETURN(
      json header,
      parse_header_json(std::string_view(reinterpret_cast<const char*>(data + 8), n), file));
  if (!header.is_object())
    return data_loss(file + ": header must be a JSON object, found " + header.type_name());

  SafetensorsFile out;
  out.name_ = file;
  out.size_ = size;
  out.header_size_ = n;
  for (const auto& [key, val] : header.items()) {
    if (key == "__metadata__") {
      if (!val.is_object())
        return data_loss(file + ": __metadata__ must be an object of strings, found " +
                         val.type_name());
      for (const auto& [mk, mv] : val.items()) {
        if (!mv.is_string())
          return data_loss(file + ": __metadata__ value " + quote_name(mk) +
                           " must be a string, found " + mv.type_name());
        out.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = file + ": tensor " + quote_name(key) + ": ";
    if (!val.is_object())
      return data_loss(where + "entry must be an object, found " + val.type_name());
    for (const auto& [field, unused] : val.items()) {
      (void)unused;
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        return data_loss(where + "unexpected field " + quote_name(field) +
                         " (expected exactly dtype, shape, data_offsets)");
    }
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!val.contains(field)) return data_loss(where + "missing field '" + field + "'");
    }
    TensorEntry e;
    e.name = key;
    // dtype
    const json& dt = val["dtype"];
    if (!dt.is_string())
      return data_loss(where + "dtype must be a string, found " + dt.type_name());
    if (!parse_dtype(dt.get<std::string>(), &e.dtype))
      return data_loss(where + "unknown/unsupported dtype " +
                       quote_name(truncated(dt.get<std::string>(), 40)) +
                       " (supported: F32, F16, BF16, I64, I32, U8, I8)");
    // shape: non-negative integers whose product (and byte size) fits in int64.
    const json& sh = val["shape"];
    if (!sh.is_array()) return data_loss(where + "shape must be an array, found " + sh.type_name());
    for (size_t i = 0; i < sh.size(); ++i) {
      uint64_t d = 0;
      std::string found;
      if (!json_uint(sh[i], &d, &found))
        return data_loss(where + "shape[" + std::to_string(i) +
                         "] must be a non-negative integer, found " + found);
      if (d > kInt64Max)
        return data_loss(where + "shape[" + std::to_string(i) + "] = " + std::to_string(d) +
                         " exceeds int64");
      e.shape.push_back(static_cast<int64_t>(d));
    }
    const size_t esize = dtype_size(e.dtype);
    if (!checked_numel(e.shape, &e.numel) ||
        e.numel > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(esize))
      return data_loss(where + "shape " + shape_string(e.shape) + " x " + dtype_name(e.dtype) +
                       " overflows int64 bytes");
    const uint64_t need = static_cast<uint64_t>(e.numel) * esize;
    // data_offsets: [begin, end], begin <= end <= data_size, end - begin == need.
    const json& off = val["data_offsets"];
    if (!off.is_array() || off.size() != 2)
      return data_loss(where + "data_offsets must be an array [begin, end], found " +
                       truncated(off.dump(), 60));
    uint64_t ob[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
      std::string found;
      if (!json_uint(off[i], &ob[i], &found))
        return data_loss(where + "data_offsets[" + std::to_string(i) +
                         "] must be a non-negative integer, found " + found);
    }
    if (ob[0] > ob[1])
      return data_loss(where + "data_offsets " + offsets_string(ob[0], ob[1]) + ": begin > end");
    if (ob[1] > data_size)
      return data_loss(where + "data_offsets " + offsets_string(ob[0], ob[1]) +
                       " out of bounds: the data section has " + std::to_string(data_size) +
                       " bytes");
    if (ob[1] - ob[0] != need)
      return data_loss(where + "data_offsets " + offsets_string(ob[0], ob[1]) + " span " +
                       std::to_string(ob[1] - ob[0]) + " bytes but shape " + shape_string(e.shape) +
                       " \xc3\x97 " + dtype_name(e.dtype) + " needs " + std::to_string(need));
    e.begin = ob[0];
    e.nbytes = need;
    e.data = data_start + ob[0];
    out.tensors_.push_back(std::move(e));
  }

  // The tensors, sorted by offset, must tile [0, data_size) exactly.
  // std::sort with a total order (names are unique): deterministic without std::stable_sort,
  // whose temporary buffer trips an ASan alloc/dealloc-mismatch false positive in libstdc++ 12.
  std::sort(out.tensors_.begin(), out.tensors_.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              if (a.begin != b.begin) return a.begin < b.begin;
              if (a.nbytes != b.nbytes) return a.nbytes < b.nbytes;
              return a.name < b.name;
            });
  uint64_t expected = 0;
  const TensorEntry* prev = nullptr;
  for (const TensorEntry& e : out.tensors_) {
    if (e.begin < expected)
      return data_loss(file + ": tensor " + quote_name(e.name) + ": data_offsets " +
                       offsets_string(e.begin, e.begin + e.nbytes) + " overlap tensor " +
                       quote_name(prev->name) + " " +
                       offsets_string(prev->begin, prev->begin + prev->nbytes));
    if (e.begin > expected)
      return data_loss(file + ": tensor " + quote_name(e.name) + ": data_offsets " +
                       offsets_string(e.begin, e.begin + e.nbytes) + " leave a gap of " +
                       std::to_string(e.begin - expected) + " unused bytes at offset " +
                       std::to_string(expected) +
                       (prev ? " after tensor " + quote_name(prev->name) : std::string()));
    expected = e.begin + e.nbytes;
    prev = &e;
  }
  if (expected != data_size)
    return data_loss(file + ": " + std::to_string(data_size - expected) +
                     " trailing bytes after the last tensor" +
                     (prev ? " " + quote_name(prev->name) : std::string()) + " (tensors cover " +
                     std::to_string(expected) + " of " + std::to_string(data_size) +
                     " data bytes)");
  for (size_t i = 0; i < out.tensors_.size(); ++i) out.index_[out.tensors_[i].name] = i;
  return out;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = path + ": cannot open: " + std::strerror(err);
    return err == ENOENT ? not_found(msg) : io_error(msg);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return io_error(path + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return parse_safetensors(nullptr, size, path);  // reports the too-short file
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping stays valid after close
  if (p == MAP_FAILED) return io_error(path + ": mmap failed: " + std::strerror(err));
  std::shared_ptr<const void> mapping(
      p, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
  DUET_ASSIGN_OR_RETURN(SafetensorsFile f,
                        parse_safetensors(static_cast<const uint8_t*>(p), size, path));
  f.mapping_ = std::move(mapping);  // entries point into it; moving f keeps them valid
  return f;
}

void SafetensorsFile::release_pages(std::string_view name) const {
  const TensorEntry* e = find(name);
  if (!mapping_ || !e || e->nbytes == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(e->data);
  const uintptr_t first = (lo + page - 1) / page * page, last = (lo + e->nbytes) / page * page;
  if (last > first)  // advisory: a failure only means the pages stay resident
    ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

const TensorEntry* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::view(std::string_view name) const {
  const TensorEntry* e = find(name);
  if (!e || !e->aligned()) return Tensor{};
  return Tensor::view(static_cast<const void*>(e->data), e->shape, e->dtype);
}

Result<Tensor> SafetensorsFile::get(std::string_view name) const {
  const TensorEntry* e = find(name);
  if (!e) return not_found(name_ + ": no tensor " + quote_name(name));
  if (!e->aligned())
    return invalid_argument(name_ + ": tensor " + quote_name(name) + ": data at offset " +
                            std::to_string(e->begin) + " is not aligned for " +
                            dtype_name(e->dtype) + "; use load_f32()");
  return Tensor::view(static_cast<const void*>(e->data), e->shape, e->dtype);
}

Result<Tensor> SafetensorsFile::load_f32(std::string_view name) const {
  const TensorEntry* e = find(name);
  if (!e) return not_found(name_ + ": no tensor " + quote_name(name));
  if (e->dtype != DType::kF32 && e->dtype != DType::kF16 && e->dtype != DType::kBF16)
    return invalid_argument(name_ + ": tensor " + quote_name(name) + " has dtype " +
                            dtype_name(e->dtype) + "; expected F32, F16 or BF16");
  Tensor t = Tensor::zeros(e->shape, DType::kF32);
  if (t.empty()) return resource_exhausted(name_ + ": cannot allocate " + quote_name(name));
  float* dst = t.f32();
  if (e->dtype == DType::kF32) {
    if (e->nbytes) std::memcpy(dst, e->data, e->nbytes);
    return t;
  }
  const bool half = e->dtype == DType::kF16;
  for (int64_t i = 0; i < e->numel; ++i) {
    uint16_t h;
    std::memcpy(&h, e->data + 2 * i, 2);  // data may be unaligned
    dst[i] = half ? f16_to_f32(h) : bf16_to_f32(h);
  }
  return t;
}

Result<std::string> serialize_safetensors(
    const std::vector<std::pair<std::string, Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string_view> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__")
      return invalid_argument("write_safetensors: '__metadata__' is not a valid tensor name");
    if (!seen.insert(name).second)
      return invalid_argument("write_safetensors: duplicate tensor name " + quote_name(name));
    if (t.empty() && t.numel() != 0)
      return invalid_argument("write_safetensors: tensor " + quote_name(name) + " has no data");
    const uint64_t nb = t.nbytes();
    header[name] = {{"dtype", dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + nb}}};
    offset += nb;
  }
  std::string text;
  try {
    text = header.dump();  // strict: throws on names / metadata that are not valid UTF-8
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(std::string("write_safetensors: cannot encode header: ") +
                            ascii_escaped(e.what()));
  }
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // data section starts 8-byte aligned
  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const auto& [name, t] : tensors) {
    if (t.nbytes()) out.append(static_cast<const char*>(t.raw()), t.nbytes());
  }
  return out;
}

Status write_safetensors(const std::string& path,
                         const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  auto image = serialize_safetensors(tensors, metadata);
  if (!image) return invalid_argument(path + ": " + image.status().message());
  return write_file_atomic(path, *image);
}

}  // namespace duet

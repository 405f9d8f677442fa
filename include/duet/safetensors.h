// Safetensors reader (mmap'd, zero-copy, fully validated) and writer.
//
// File layout: [u64 little-endian header length N][N bytes of JSON header][data section].
// The header maps tensor name -> {"dtype", "shape", "data_offsets": [begin, end]} (offsets are
// relative to the start of the data section) plus an optional "__metadata__" string->string map.
//
// Everything is validated before a single tensor byte is exposed (see docs/robustness.md):
// header length sane and in bounds, JSON well-formed UTF-8 with no duplicate keys, every entry
// has exactly dtype/shape/data_offsets with known dtype and non-negative integer values, shape
// products do not overflow, `end - begin == numel * dtype_size`, and the tensors (sorted by
// offset) tile the data section exactly: no overlap, no gap, no trailing bytes.
// Every error message starts with the file name and names the tensor / field at fault.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "duet/status.h"
#include "duet/tensor.h"

namespace duet {

// Largest header accepted (the JSON part), in bytes.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull
                                                       << 20;  // 100 MiB, as the python reader

// Parses the safetensors dtype spelling ("F32", "BF16", ...). False for unknown/unsupported ones.
bool parse_dtype(std::string_view s, DType* out);

struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  int64_t numel = 0;
  // Points into the mapping / buffer. NOT necessarily aligned to dtype_size(dtype) (safetensors
  // does not require it): read through memcpy, or use SafetensorsFile::load_f32 / view().
  const uint8_t* data = nullptr;
  size_t nbytes = 0;  // == numel * dtype_size(dtype)
  size_t begin = 0;   // data_offsets[0], relative to the data section
  bool aligned() const { return reinterpret_cast<uintptr_t>(data) % dtype_size(dtype) == 0; }
};

class SafetensorsFile {
 public:
  SafetensorsFile() = default;

  // Maps `path` read-only (MAP_PRIVATE, PROT_READ) and validates it. The mapping is shared by
  // copies of this object and unmapped when the last one is destroyed.
  static Result<SafetensorsFile> open(const std::string& path);

  // The file name used in error messages (the path given to open()).
  const std::string& name() const { return name_; }
  size_t file_size() const { return size_; }
  size_t header_size() const { return header_size_; }  // JSON bytes (N)

  // Tensors ordered by data offset (= storage order in the file).
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorEntry* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Zero-copy, read-only view into the mapping (writing through it faults). Empty Tensor when the
  // tensor is absent or its data is not aligned to its dtype size (use get() for the reason).
  // The view does not keep the mapping alive: keep this SafetensorsFile alive while using it.
  Tensor view(std::string_view name) const;
  // Same as view() but with an error naming the file and tensor when absent / misaligned.
  Result<Tensor> get(std::string_view name) const;
  // Owning F32 copy of an F32/F16/BF16 tensor (explicit conversion; any alignment).
  Result<Tensor> load_f32(std::string_view name) const;
  // Hint that the tensor's bytes are no longer needed (once copied / packed): the whole pages
  // inside its byte range are dropped from memory (madvise MADV_DONTNEED on the read-only
  // private file mapping; a later read faults them back in from the file, so views stay
  // correct). Lowers the peak resident memory of a model load. No-op for an absent tensor or a
  // file not from open().
  void release_pages(std::string_view name) const;

 private:
  friend Result<SafetensorsFile> parse_safetensors(const uint8_t*, size_t, std::string);
  std::shared_ptr<const void> mapping_;  // RAII owner of the mmap (null for parse_safetensors)
  std::string name_;
  size_t size_ = 0;
  size_t header_size_ = 0;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// Validates a complete safetensors image held in memory (not copied: `data` must outlive the
// result). `name_for_errors` prefixes every error message. Used by open() and by fuzzers.
Result<SafetensorsFile> parse_safetensors(const uint8_t* data, size_t size,
                                          std::string name_for_errors);

// Writes tensors in the given order, contiguously; the header is padded with spaces so the data
// section starts at a multiple of 8. Tensor names must be unique and not "__metadata__".
// Written to `path + ".tmp"` and renamed, so a crash never leaves a half-written file.
Status write_safetensors(const std::string& path,
                         const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::map<std::string, std::string>& metadata = {});
// The same image in memory.
Result<std::string> serialize_safetensors(
    const std::vector<std::pair<std::string, Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata = {});

}  // namespace duet

// Minimal, validated reader for small F32 safetensors files (sampler fixtures, RNG references).
// Reads the whole file into memory; every offset/shape is bounds-checked against the file size.
// This is deliberately self-contained; the mmap'd model loader lives in src/io/.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "duet/status.h"

namespace duet::diffusion {

struct F32Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  size_t numel() const { return data.size(); }
};

class FixtureFile {
 public:
  // Parses `path`. Errors name the file and what is wrong with it.
  static Result<FixtureFile> load(const std::string& path);

  const std::string& path() const { return path_; }
  bool has_tensor(const std::string& name) const { return tensors_.count(name) != 0; }
  // Tensor by name, or kNotFound naming the file and tensor.
  Result<const F32Tensor*> tensor(const std::string& name) const;
  const std::map<std::string, F32Tensor>& tensors() const { return tensors_; }
  bool has_meta(const std::string& key) const { return metadata_.count(key) != 0; }
  Result<std::string> meta(const std::string& key) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::map<std::string, F32Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace duet::diffusion

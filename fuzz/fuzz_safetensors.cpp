// Fuzzes the safetensors parser (header length, JSON header, tensor table, tiling of the data
// section) from a memory buffer, then exercises every accessor of an accepted file and the
// checkpoint-vs-config comparison. Invariants: errors name the file; accepted tensors lie inside
// the buffer, tile the data section in order, and have nbytes == numel * dtype_size.
#include <cstring>

#include "duet/checkpoint.h"
#include "duet/config.h"
#include "duet/safetensors.h"
#include "fuzz_util.h"

namespace {
const duet::ModelConfig& tiny_config() {
  static const duet::ModelConfig cfg = [] {
    duet::ModelConfig c;
    c.backbone.width = 32;
    c.backbone.heads = 4;
    c.backbone.depth = 1;
    c.text.width = 32;
    c.text.layers = 1;
    return c;
  }();
  return cfg;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string name = "fuzz.safetensors";
  auto r = duet::parse_safetensors(data, size, name);
  if (!r.is_ok()) {
    FUZZ_CHECK(duet::fuzz::names_source(r.status().message(), name), "%s",
               r.status().message().c_str());
    return 0;
  }
  const duet::SafetensorsFile& f = *r;
  FUZZ_CHECK(f.file_size() == size);
  FUZZ_CHECK(8 + f.header_size() <= size);
  const uint8_t* section = data + 8 + f.header_size();
  size_t expected = 0;
  for (const auto& e : f.tensors()) {
    FUZZ_CHECK(e.begin == expected);
    FUZZ_CHECK(e.nbytes == static_cast<size_t>(e.numel) * duet::dtype_size(e.dtype));
    FUZZ_CHECK(e.data == section + e.begin);
    FUZZ_CHECK(e.data + e.nbytes <= data + size);
    expected += e.nbytes;
    FUZZ_CHECK(f.find(e.name) == &e);
    // Touch every byte through the accessors (ASan catches any out-of-bounds read).
    auto t = f.load_f32(e.name);
    if (t.is_ok()) {
      FUZZ_CHECK(t->numel() == e.numel);
      volatile float sink = 0;
      for (int64_t i = 0; i < t->numel(); ++i) sink = sink + t->f32()[i];
    }
    auto v = f.get(e.name);
    if (v.is_ok() && e.nbytes) {
      volatile uint8_t b = static_cast<const uint8_t*>(v->raw())[e.nbytes - 1];
      (void)b;
    }
  }
  FUZZ_CHECK(8 + f.header_size() + expected == size);
  auto report = duet::compare_checkpoint(f, tiny_config());
  (void)report.summary(name);
  (void)duet::check_checkpoint(f, tiny_config());
  (void)duet::count_parameters(f.tensors()).total();
  return 0;
}

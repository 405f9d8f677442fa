// config.json loading and validation; the spec is python/duet_ref/config.py (see config.h).
#include "duet/config.h"

#include <nlohmann/json.hpp>
#include <set>

#include "io/io_util.h"

namespace duet {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxConfigFileBytes = 1 << 20;

std::string num(int64_t v) { return std::to_string(v); }

// Compact JSON of a found value for messages (python prints repr(v); this is the JSON spelling).
std::string show(const json& v) { return truncated(v.dump(), 60); }

Status field_error(std::string_view file, const std::string& field, const std::string& msg) {
  return invalid_argument(std::string(file) + ": field " + field + ": " + msg);
}

// config.py `_merge`: nested objects merge key by key; any other value replaces.
json merge(const json& base, const json& over) {
  json out = base;
  for (const auto& [k, v] : over.items()) {
    if (v.is_object() && out.contains(k) && out[k].is_object()) {
      out[k] = merge(out[k], v);
    } else {
      out[k] = v;
    }
  }
  return out;
}

// One name when every block has the same kind (the common case and the default), else the list.
json per_block_json(const std::vector<std::string>& kinds, const char* dflt) {
  if (kinds.empty()) return dflt;
  for (const std::string& a : kinds)
    if (a != kinds.front()) return kinds;
  return kinds.front();
}

json to_json_value(const ModelConfig& c) {
  const auto& r = c.refiner;
  return json{
      {"name", c.name},
      {"image",
       {{"channels", c.image.channels}, {"height", c.image.height}, {"width", c.image.width}}},
      {"text",
       {{"tokenizer", c.text.tokenizer},
        {"max_length", c.text.max_length},
        {"vocab_size", c.text.vocab_size},
        {"width", c.text.width},
        {"layers", c.text.layers},
        {"heads", c.text.heads},
        {"mlp_ratio", c.text.mlp_ratio},
        {"bos_id", c.text.bos_id},
        {"eos_id", c.text.eos_id},
        {"pad_id", c.text.pad_id}}},
      {"backbone",
       {{"patch", c.backbone.patch},
        {"width", c.backbone.width},
        {"depth", c.backbone.depth},
        {"heads", c.backbone.heads},
        {"mlp_ratio", c.backbone.mlp_ratio},
        {"attention", per_block_json(c.backbone.attention, "softmax")},
        {"slab_kernel", c.backbone.slab_kernel},
        {"cswin_stripe", c.backbone.cswin_stripe},
        {"cswin_kernel", c.backbone.cswin_kernel},
        {"norm", per_block_json(c.backbone.norm, "layernorm")}}},
      {"refiner",
       {{"base_channels", r.base_channels},
        {"channel_mult", r.channel_mult},
        {"groups", r.groups},
        {"time_channels", r.time_channels},
        {"carafe",
         {{"k_up", r.carafe.k_up},
          {"k_enc", r.carafe.k_enc},
          {"scale", r.carafe.scale},
          {"compress", r.carafe.compress}}}}},
      {"highpass", {{"rho_c", c.highpass.rho_c}, {"tau", c.highpass.tau}}},
      {"gate", {{"hidden", c.gate.hidden}}},
      {"diffusion",
       {{"num_train_timesteps", c.diffusion.num_train_timesteps},
        {"beta_schedule", c.diffusion.beta_schedule},
        {"prediction_type", c.diffusion.prediction_type}}},
      {"inference",
       {{"refine_every", c.inference.refine_every}, {"cfg_scale", c.inference.cfg_scale}}},
  };
}

// Records keys of `file_json` that the defaults do not have ("backbone.hieght").
void collect_unknown(const json& defaults, const json& given, const std::string& prefix,
                     std::vector<std::string>* out) {
  for (const auto& [k, v] : given.items()) {
    const std::string path = prefix.empty() ? k : prefix + "." + k;
    if (!defaults.contains(k)) {
      out->push_back(path);
    } else if (v.is_object() && defaults[k].is_object()) {
      collect_unknown(defaults[k], v, path, out);
    }
  }
}

// Reads an integer that fits int64 (bool and float rejected). On failure returns `msg` + value.
Status read_int(std::string_view file, const json& sect, const std::string& sname, const char* key,
                const std::string& msg, int64_t* out) {
  const json& v = sect[key];
  const std::string field = sname + "." + key;
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
    return field_error(file, field, msg + ", got " + show(v));
  *out = v.get<int64_t>();
  return Status::ok();
}

Status read_string(std::string_view file, const json& sect, const std::string& sname,
                   const char* key, const std::string& msg, std::string* out) {
  const json& v = sect[key];
  if (!v.is_string()) return field_error(file, sname + "." + key, msg + " (got " + show(v) + ")");
  *out = v.get<std::string>();
  return Status::ok();
}

Status read_number(std::string_view file, const json& sect, const std::string& sname,
                   const char* key, const std::string& msg, double* out) {
  const json& v = sect[key];
  if (!v.is_number()) return field_error(file, sname + "." + key, msg + " (got " + show(v) + ")");
  *out = v.get<double>();
  return Status::ok();
}

Status check_pos_int(std::string_view file, const std::string& field, int64_t v) {
  if (v <= 0) return field_error(file, field, "expected a positive integer, got " + num(v));
  if (v > kMaxConfigInt)
    return field_error(file, field,
                       "expected a positive integer <= " + num(kMaxConfigInt) + ", got " + num(v));
  return Status::ok();
}

}  // namespace

int64_t ModelConfig::level_channels(int64_t i) const {
  return refiner.base_channels * refiner.channel_mult[static_cast<size_t>(i)];
}

std::vector<int64_t> ModelConfig::level_channels() const {
  std::vector<int64_t> out;
  for (int64_t m : refiner.channel_mult) out.push_back(refiner.base_channels * m);
  return out;
}

Status validate_config(const ModelConfig& c, std::string_view file) {
  // Same order as config.py validate().
  const std::pair<const char*, int64_t> pos_ints[] = {
      {"image.channels", c.image.channels},
      {"image.height", c.image.height},
      {"image.width", c.image.width},
      {"text.max_length", c.text.max_length},
      {"text.width", c.text.width},
      {"text.layers", c.text.layers},
      {"text.heads", c.text.heads},
      {"text.mlp_ratio", c.text.mlp_ratio},
      {"backbone.patch", c.backbone.patch},
      {"backbone.width", c.backbone.width},
      {"backbone.depth", c.backbone.depth},
      {"backbone.heads", c.backbone.heads},
      {"backbone.mlp_ratio", c.backbone.mlp_ratio},
      {"refiner.base_channels", c.refiner.base_channels},
      {"refiner.groups", c.refiner.groups},
      {"refiner.time_channels", c.refiner.time_channels},
      {"gate.hidden", c.gate.hidden},
      {"diffusion.num_train_timesteps", c.diffusion.num_train_timesteps},
  };
  for (const auto& [field, v] : pos_ints) DUET_RETURN_IF_ERROR(check_pos_int(file, field, v));
  // Structural cap: every checkpoint check materialises ~13 tensors per block, so an absurd
  // depth must be an error naming the field, not an out-of-memory (found by fuzz_config).
  for (const auto& [field, v] : {std::pair<const char*, int64_t>{"text.layers", c.text.layers},
                                 {"backbone.depth", c.backbone.depth}})
    if (v > 1024) return field_error(file, field, "must be <= 1024 (got " + num(v) + ")");
  const auto& t = c.text;
  const auto& b = c.backbone;
  const auto& r = c.refiner;
  if (t.tokenizer != "byte")
    return field_error(file, "text.tokenizer",
                       "only 'byte' is supported, got " + quote_name(t.tokenizer));
  if (t.vocab_size != 259)
    return field_error(file, "text.vocab_size",
                       "the byte tokenizer needs 259 (got " + num(t.vocab_size) + ")");
  if (t.max_length < 2)
    return field_error(file, "text.max_length",
                       "must be >= 2 (<bos> and <eos>) (got " + num(t.max_length) + ")");
  if (t.width % t.heads)
    return field_error(file, "text.heads",
                       "must divide text.width (" + num(t.width) + " % " + num(t.heads) + " != 0)");
  if (b.width % b.heads)
    return field_error(
        file, "backbone.heads",
        "must divide backbone.width (" + num(b.width) + " % " + num(b.heads) + " != 0)");
  if (b.width % 4)
    return field_error(
        file, "backbone.width",
        "must be a multiple of 4 (2-D sin-cos embedding) (got " + num(b.width) + ")");
  if (b.slab_kernel <= 0 || b.slab_kernel % 2 == 0 || b.slab_kernel > 63)
    return field_error(file, "backbone.slab_kernel",
                       "expected a positive odd integer <= 63, got " + num(b.slab_kernel));
  if (b.cswin_kernel <= 0 || b.cswin_kernel % 2 == 0 || b.cswin_kernel > 63)
    return field_error(file, "backbone.cswin_kernel",
                       "expected a positive odd integer <= 63, got " + num(b.cswin_kernel));
  if (b.cswin_stripe <= 0)
    return field_error(file, "backbone.cswin_stripe",
                       "expected a positive integer, got " + num(b.cswin_stripe));
  for (const auto* kinds : {&b.attention, &b.norm})
    if (!kinds->empty() && static_cast<int64_t>(kinds->size()) != b.depth)
      return field_error(file, kinds == &b.norm ? "backbone.norm" : "backbone.attention",
                         "expected one name per block (" + num(b.depth) + "), got " +
                             num(static_cast<int64_t>(kinds->size())));
  for (int64_t i = 0; i < static_cast<int64_t>(b.attention.size()); ++i)
    if (b.cswin(i) && b.heads % 2)
      return field_error(file, "backbone.heads",
                         "cswin blocks split the heads in halves (horizontal / vertical stripes), "
                         "so heads must be even, got " +
                             num(b.heads));
  const int64_t H = c.image.height, W = c.image.width;
  if (H % b.patch || W % b.patch)
    return field_error(file, "backbone.patch",
                       "must divide image.height and image.width (" + num(b.patch) + " vs image " +
                           num(H) + "x" + num(W) + ")");
  bool mult_ok = !r.channel_mult.empty();
  for (int64_t m : r.channel_mult) mult_ok = mult_ok && m > 0 && m <= kMaxConfigInt;
  if (!mult_ok)
    return field_error(
        file, "refiner.channel_mult",
        "expected a non-empty list of positive integers (each <= " + num(kMaxConfigInt) + ")");
  // stride = 2^(levels-1); H, W <= kMaxConfigInt = 2^24, so more than 25 levels never divides.
  const size_t shift = r.channel_mult.size() - 1;
  if (shift > 24)
    return field_error(file, "refiner.channel_mult",
                       "image size must be divisible by 2^" + std::to_string(shift) + " (" +
                           std::to_string(shift + 1) + " levels)");
  const int64_t stride = int64_t{1} << shift;
  if (H % stride || W % stride)
    return field_error(file, "refiner.channel_mult",
                       "image size must be divisible by " + num(stride) + " (image " + num(H) +
                           "x" + num(W) + ")");
  for (size_t i = 0; i < r.channel_mult.size(); ++i) {
    const int64_t ch = r.base_channels * r.channel_mult[i];  // <= 2^48, no overflow
    if (ch % r.groups)
      return field_error(file, "refiner.groups",
                         "must divide every level's channel count (level " + std::to_string(i) +
                             ": " + num(ch) + " % " + num(r.groups) + " != 0)");
  }
  const std::pair<const char*, int64_t> carafe_ints[] = {
      {"refiner.carafe.k_up", r.carafe.k_up},
      {"refiner.carafe.k_enc", r.carafe.k_enc},
      {"refiner.carafe.compress", r.carafe.compress}};
  for (const auto& [field, v] : carafe_ints) DUET_RETURN_IF_ERROR(check_pos_int(file, field, v));
  if (r.carafe.scale != 2)
    return field_error(file, "refiner.carafe.scale",
                       "only 2 is supported (matches the stride-2 downsampling) (got " +
                           num(r.carafe.scale) + ")");
  if (r.carafe.k_up % 2 == 0)
    return field_error(file, "refiner.carafe.k_up",
                       "must be odd (k_up/k_enc; got " + num(r.carafe.k_up) + ")");
  if (r.carafe.k_enc % 2 == 0)
    return field_error(file, "refiner.carafe.k_enc",
                       "must be odd (k_up/k_enc; got " + num(r.carafe.k_enc) + ")");
  const auto& hp = c.highpass;
  if (!(hp.rho_c >= 0 && hp.rho_c <= 1))  // also rejects NaN
    return field_error(file, "highpass.rho_c",
                       "expected a number in [0, 1] (got " + json(hp.rho_c).dump() + ")");
  if (!(hp.tau >= 0))
    return field_error(file, "highpass.tau",
                       "expected a number >= 0 (got " + json(hp.tau).dump() + ")");
  const auto& d = c.diffusion;
  if (d.beta_schedule != "linear" && d.beta_schedule != "scaled_linear" &&
      d.beta_schedule != "cosine")
    return field_error(
        file, "diffusion.beta_schedule",
        "expected linear|scaled_linear|cosine (got " + quote_name(d.beta_schedule) + ")");
  if (d.prediction_type != "epsilon" && d.prediction_type != "v_prediction")
    return field_error(file, "diffusion.prediction_type",
                       "expected epsilon|v_prediction (got " + quote_name(d.prediction_type) + ")");
  // C++-only rules (config.py does not check them).
  const std::pair<const char*, std::pair<int64_t, int64_t>> special[] = {
      {"text.bos_id", {t.bos_id, 256}},
      {"text.eos_id", {t.eos_id, 257}},
      {"text.pad_id", {t.pad_id, 258}}};
  for (const auto& [field, v] : special) {
    if (v.first != v.second)
      return field_error(
          file, field,
          "the byte tokenizer's id is " + num(v.second) + " (got " + num(v.first) + ")");
  }
  // The refiner runs every k-th step, k >= 1.
  DUET_RETURN_IF_ERROR(check_pos_int(file, "inference.refine_every", c.inference.refine_every));
  if (!(c.inference.cfg_scale >= 1.0 && c.inference.cfg_scale <= 100.0))
    return field_error(
        file, "inference.cfg_scale",
        "expected a number in [1, 100], got " + std::to_string(c.inference.cfg_scale));
  return Status::ok();
}

// backbone.<field>: one of `names` for every block, or a list of `depth` of them -> *out (one
// entry per block; left empty when depth is out of range, which validation reports).
static Status read_block_kinds(std::string_view file, const json& v, const char* field,
                               std::initializer_list<const char*> names, int64_t depth,
                               std::vector<std::string>* out) {
  std::string alts;
  for (const char* n : names) alts += (alts.empty() ? "" : "|") + std::string(n);
  const std::string key = std::string("backbone.") + field;
  const std::string msg = "expected " + alts + " or a list of backbone.depth (" + num(depth) +
                          ") such names (got " + show(v) + ")";
  auto known = [&](const json& e) {
    if (!e.is_string()) return false;
    for (const char* n : names)
      if (e.get<std::string>() == n) return true;
    return false;
  };
  if (v.is_array()) {
    if (static_cast<int64_t>(v.size()) != depth) return field_error(file, key, msg);
    for (const json& e : v) {
      if (!known(e)) return field_error(file, key, msg);
      out->push_back(e.get<std::string>());
    }
  } else if (known(v)) {
    if (depth > 0 && depth <= 1024) out->assign(static_cast<size_t>(depth), v.get<std::string>());
  } else {
    return field_error(file, key, msg);
  }
  return Status::ok();
}

Result<ModelConfig> parse_config(std::string_view text, std::string_view file) {
  const std::string f(file);
  // Reject duplicate keys (json.load would silently keep the last one; a duplicate is a typo).
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto cb = [&](int, json::parse_event_t ev, json& parsed) -> bool {
    if (ev == json::parse_event_t::object_start) keys.emplace_back();
    if (ev == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (ev == json::parse_event_t::key && !keys.empty() && parsed.is_string() &&
        !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json given;
  try {
    given = json::parse(text.begin(), text.end(), cb, true);
  } catch (const json::exception& e) {
    return invalid_argument(f + ": not valid JSON: " + ascii_escaped(e.what()));
  }
  if (!duplicate.empty()) return invalid_argument(f + ": duplicate key " + quote_name(duplicate));
  if (!given.is_object())
    return invalid_argument(f + ": expected a JSON object at the top level, found " +
                            given.type_name());
  const json defaults = to_json_value(ModelConfig{});
  const json m = merge(defaults, given);

  ModelConfig c;
  collect_unknown(defaults, given, "", &c.unknown_fields);
  for (const char* sect :
       {"image", "text", "backbone", "refiner", "highpass", "gate", "diffusion", "inference"}) {
    if (!m[sect].is_object())
      return field_error(file, sect, std::string("expected an object, found ") + show(m[sect]));
  }
  if (!m["refiner"]["carafe"].is_object())
    return field_error(file, "refiner.carafe",
                       "expected an object, found " + show(m["refiner"]["carafe"]));
  if (!m["name"].is_string())
    return field_error(file, "name", "expected a string, got " + show(m["name"]));
  c.name = m["name"].get<std::string>();

  // Integer fields, in config.py validate() order (type errors use its message).
  const std::string pos = "expected a positive integer";
  struct IntField {
    const char* sect;
    const char* key;
    int64_t* dst;
  };
  const IntField ints[] = {
      {"image", "channels", &c.image.channels},
      {"image", "height", &c.image.height},
      {"image", "width", &c.image.width},
      {"text", "max_length", &c.text.max_length},
      {"text", "width", &c.text.width},
      {"text", "layers", &c.text.layers},
      {"text", "heads", &c.text.heads},
      {"text", "mlp_ratio", &c.text.mlp_ratio},
      {"backbone", "patch", &c.backbone.patch},
      {"backbone", "width", &c.backbone.width},
      {"backbone", "depth", &c.backbone.depth},
      {"backbone", "heads", &c.backbone.heads},
      {"backbone", "mlp_ratio", &c.backbone.mlp_ratio},
      {"refiner", "base_channels", &c.refiner.base_channels},
      {"refiner", "groups", &c.refiner.groups},
      {"refiner", "time_channels", &c.refiner.time_channels},
      {"gate", "hidden", &c.gate.hidden},
      {"diffusion", "num_train_timesteps", &c.diffusion.num_train_timesteps},
  };
  for (const auto& fi : ints)
    DUET_RETURN_IF_ERROR(read_int(file, m[fi.sect], fi.sect, fi.key, pos, fi.dst));
  DUET_RETURN_IF_ERROR(read_string(file, m["text"], "text", "tokenizer", "only 'byte' is supported",
                                   &c.text.tokenizer));
  DUET_RETURN_IF_ERROR(read_int(file, m["text"], "text", "vocab_size",
                                "the byte tokenizer needs 259", &c.text.vocab_size));
  for (const char* key : {"bos_id", "eos_id", "pad_id"}) {
    int64_t* dst = key[0] == 'b' ? &c.text.bos_id : key[0] == 'e' ? &c.text.eos_id : &c.text.pad_id;
    DUET_RETURN_IF_ERROR(read_int(file, m["text"], "text", key, "expected an integer", dst));
  }
  DUET_RETURN_IF_ERROR(read_int(file, m["backbone"], "backbone", "slab_kernel",
                                "expected a positive odd integer", &c.backbone.slab_kernel));
  DUET_RETURN_IF_ERROR(read_int(file, m["backbone"], "backbone", "cswin_stripe",
                                "expected a positive integer", &c.backbone.cswin_stripe));
  DUET_RETURN_IF_ERROR(read_int(file, m["backbone"], "backbone", "cswin_kernel",
                                "expected a positive odd integer", &c.backbone.cswin_kernel));
  DUET_RETURN_IF_ERROR(read_block_kinds(file, m["backbone"]["attention"], "attention",
                                        {"softmax", "slab_linear", "cswin"}, c.backbone.depth,
                                        &c.backbone.attention));
  DUET_RETURN_IF_ERROR(read_block_kinds(file, m["backbone"]["norm"], "norm", {"layernorm", "repbn"},
                                        c.backbone.depth, &c.backbone.norm));
  const json& mult = m["refiner"]["channel_mult"];
  const std::string mult_msg = "expected a non-empty list of positive integers";
  if (!mult.is_array())
    return field_error(file, "refiner.channel_mult", mult_msg + " (got " + show(mult) + ")");
  c.refiner.channel_mult.clear();
  for (const json& v : mult) {
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
      return field_error(file, "refiner.channel_mult", mult_msg + " (got " + show(mult) + ")");
    c.refiner.channel_mult.push_back(v.get<int64_t>());
  }
  const json& cf = m["refiner"]["carafe"];
  DUET_RETURN_IF_ERROR(read_int(file, cf, "refiner.carafe", "k_up", pos, &c.refiner.carafe.k_up));
  DUET_RETURN_IF_ERROR(read_int(file, cf, "refiner.carafe", "k_enc", pos, &c.refiner.carafe.k_enc));
  DUET_RETURN_IF_ERROR(read_int(file, cf, "refiner.carafe", "scale",
                                "only 2 is supported (matches the stride-2 downsampling)",
                                &c.refiner.carafe.scale));
  DUET_RETURN_IF_ERROR(
      read_int(file, cf, "refiner.carafe", "compress", pos, &c.refiner.carafe.compress));
  DUET_RETURN_IF_ERROR(read_number(file, m["highpass"], "highpass", "rho_c",
                                   "expected a number in [0, 1]", &c.highpass.rho_c));
  DUET_RETURN_IF_ERROR(read_number(file, m["highpass"], "highpass", "tau", "expected a number >= 0",
                                   &c.highpass.tau));
  DUET_RETURN_IF_ERROR(read_string(file, m["diffusion"], "diffusion", "beta_schedule",
                                   "expected linear|scaled_linear|cosine",
                                   &c.diffusion.beta_schedule));
  DUET_RETURN_IF_ERROR(read_string(file, m["diffusion"], "diffusion", "prediction_type",
                                   "expected epsilon|v_prediction", &c.diffusion.prediction_type));
  DUET_RETURN_IF_ERROR(
      read_int(file, m["inference"], "inference", "refine_every", pos, &c.inference.refine_every));
  DUET_RETURN_IF_ERROR(read_number(file, m["inference"], "inference", "cfg_scale",
                                   "expected a number in [1, 100]", &c.inference.cfg_scale));
  DUET_RETURN_IF_ERROR(validate_config(c, file));
  return c;
}

Result<ModelConfig> load_config(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(std::string text, read_file(path, kMaxConfigFileBytes));
  return parse_config(text, path);
}

std::string config_to_json(const ModelConfig& cfg, int indent) {
  return to_json_value(cfg).dump(indent);
}

}  // namespace duet

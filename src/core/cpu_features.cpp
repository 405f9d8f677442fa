// CPU detection and the process-wide ISA cap (include/duet/cpu_features.h).
#include "duet/cpu_features.h"

#include <cpuid.h>
#include <sched.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>

#include "backends/cpu/hwy_target.h"

namespace duet {
namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
Regs cpuid(unsigned leaf, unsigned sub = 0) {
  Regs r;
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) r = Regs{};
  return r;
}
bool bit(unsigned v, int i) { return (v >> i) & 1u; }

unsigned long long xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

std::string trim(std::string s) {
  const auto not_space = [](unsigned char ch) { return !std::isspace(ch); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

void detect_hardware(CpuInfo& c) {
  const Regs r0 = cpuid(0);
  char vendor[13] = {};
  std::memcpy(vendor + 0, &r0.b, 4);
  std::memcpy(vendor + 4, &r0.d, 4);
  std::memcpy(vendor + 8, &r0.c, 4);
  c.vendor = vendor;
  const unsigned max_leaf = r0.a;

  const Regs r1 = cpuid(1);
  const unsigned base_family = (r1.a >> 8) & 0xf, base_model = (r1.a >> 4) & 0xf;
  c.family =
      static_cast<int>(base_family == 0xf ? base_family + ((r1.a >> 20) & 0xff) : base_family);
  c.model = static_cast<int>((base_family == 0x6 || base_family == 0xf)
                                 ? base_model + (((r1.a >> 16) & 0xf) << 4)
                                 : base_model);
  c.stepping = static_cast<int>(r1.a & 0xf);

  char brand[49] = {};
  if (cpuid(0x80000000).a >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i) {
      const Regs r = cpuid(0x80000002 + i);
      std::memcpy(brand + 16 * i + 0, &r.a, 4);
      std::memcpy(brand + 16 * i + 4, &r.b, 4);
      std::memcpy(brand + 16 * i + 8, &r.c, 4);
      std::memcpy(brand + 16 * i + 12, &r.d, 4);
    }
  }
  c.model_name = trim(brand);

  cpu_set_t set;
  CPU_ZERO(&set);
  c.logical_cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;

  // Register state the OS saves (XCR0): YMM = SSE|AVX (bits 1-2), ZMM adds opmask + both ZMM
  // halves (bits 5-7), AMX adds XTILECFG + XTILEDATA (bits 17-18).
  const bool osxsave = bit(r1.c, 27);
  const unsigned long long x = osxsave ? xcr0() : 0;
  const bool ymm = (x & 0x6) == 0x6, zmm = ymm && (x & 0xe0) == 0xe0;
  const bool tiles = (x & 0x60000) == 0x60000;

  CpuIsa& h = c.hardware;
  h.sse41 = bit(r1.c, 19);
  h.avx = ymm && bit(r1.c, 28);
  h.fma = h.avx && bit(r1.c, 12);
  h.f16c = h.avx && bit(r1.c, 29);
  if (max_leaf >= 7) {
    const Regs r7 = cpuid(7, 0), r71 = cpuid(7, 1);
    h.avx2 = h.avx && bit(r7.b, 5);
    h.avx512f = zmm && bit(r7.b, 16);
    h.avx512dq = h.avx512f && bit(r7.b, 17);
    h.avx512bw = h.avx512f && bit(r7.b, 30);
    h.avx512vl = h.avx512f && bit(r7.b, 31);
    h.avx512_vnni = h.avx512f && bit(r7.c, 11);
    h.avx512_fp16 = h.avx512f && bit(r7.d, 23);
    h.avx512_bf16 = h.avx512f && r7.a >= 1 && bit(r71.a, 5);
    h.avx_vnni = h.avx2 && r7.a >= 1 && bit(r71.a, 4);
    h.amx_tile = tiles && bit(r7.d, 24);
    h.amx_bf16 = h.amx_tile && bit(r7.d, 22);
    h.amx_int8 = h.amx_tile && bit(r7.d, 25);
  }
}

CpuIsa apply_cap(CpuIsa u, IsaCap cap) {
  if (cap < IsaCap::kAll) {  // the caps below AMX / AVX512-FP16 (oneDNN's levels)
    u.amx_tile = u.amx_bf16 = u.amx_int8 = false;
    u.avx512_fp16 = false;
  }
  if (cap < IsaCap::kAvx512Bf16) u.avx512_bf16 = false;
  if (cap < IsaCap::kAvx512Vnni) u.avx512_vnni = false;
  if (cap < IsaCap::kAvx512) {
    u.avx512f = u.avx512bw = u.avx512vl = u.avx512dq = false;
    u.avx_vnni = false;  // oneDNN's avx2 level excludes AVX-VNNI (that is avx2_vnni)
  }
  if (cap < IsaCap::kAvx2) u.avx = u.avx2 = u.fma = u.f16c = false;
  return u;
}

dnnl::cpu_isa onednn_cap(IsaCap c) {
  switch (c) {
    case IsaCap::kSse41:
      return dnnl::cpu_isa::sse41;
    case IsaCap::kAvx2:
      return dnnl::cpu_isa::avx2;
    case IsaCap::kAvx512:
      return dnnl::cpu_isa::avx512_core;
    case IsaCap::kAvx512Vnni:
      return dnnl::cpu_isa::avx512_core_vnni;
    case IsaCap::kAvx512Bf16:
      return dnnl::cpu_isa::avx512_core_bf16;
    case IsaCap::kAll:
      break;
  }
  return dnnl::cpu_isa::all;
}

const char* onednn_isa_name(dnnl::cpu_isa i) {
  switch (i) {
    case dnnl::cpu_isa::all:
      return "all";
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic:
      return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
  }
  return "unknown";
}

// Whether oneDNN can create the reduced-precision primitives duet uses, at the effective ISA:
// a bf16 matmul and a bf16 convolution (kBF16, and int8 mode's convolutions), a u8/s8 matmul.
bool probe_bf16() {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::memory::desc src({16, 32}, dt::bf16, tag::ab), wei({32, 16}, dt::bf16, tag::any),
        dst({16, 16}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc mm(dnnl::matmul::desc(src, wei, dst), eng);
    dnnl::memory::desc cs({1, 16, 8, 8}, dt::bf16, tag::any),
        cw({16, 16, 3, 3}, dt::bf16, tag::any), cd({1, 16, 8, 8}, dt::f32, tag::any);
    dnnl::convolution_forward::primitive_desc cv(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                        dnnl::algorithm::convolution_direct, cs, cw, cd, {1, 1},
                                        {1, 1}, {1, 1}),
        eng);
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}
bool probe_int8() {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::memory::desc src({16, 32}, dt::u8, tag::ab), wei({32, 16}, dt::s8, tag::any),
        dst({16, 16}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc mm(dnnl::matmul::desc(src, wei, dst), eng);
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

Result<CpuInfo> detect() {
  CpuInfo c;
  detect_hardware(c);
  const char* cap_env = std::getenv("DUET_MAX_ISA");
  DUET_ASSIGN_OR_RETURN(c.cap, parse_isa_cap(cap_env ? cap_env : ""));
  c.usable = apply_cap(c.hardware, c.cap);
  const char* dnnl_env = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (!dnnl_env) dnnl_env = std::getenv("DNNL_MAX_CPU_ISA");
  c.onednn_cap = dnnl_env ? dnnl_env : "";
  // oneDNN's own variable wins when both are set (it is read on oneDNN's first ISA query); the
  // report shows the effective ISA either way.
  if (c.cap != IsaCap::kAll && c.onednn_cap.empty()) {
    if (dnnl::set_max_cpu_isa(onednn_cap(c.cap)) != dnnl::status::success)
      return internal_error(
          "DUET_MAX_ISA: oneDNN was used before the cap could be applied (cpu_info() must run "
          "before the first oneDNN primitive)");
  }
  cpu::cap_highway_targets(c.cap >= IsaCap::kAvx512, c.cap >= IsaCap::kAvx512Vnni,
                           c.cap >= IsaCap::kAvx2);
  const dnnl::cpu_isa eff = dnnl::get_effective_cpu_isa();
  c.onednn_isa = onednn_isa_name(eff);
  c.hwy_target = cpu::highway_dispatched_target();
  c.bf16_compute = probe_bf16();
  c.int8_compute = probe_int8();
  c.bf16_native = c.usable.avx512_bf16 || c.usable.amx_bf16;
  c.int8_vnni = eff == dnnl::cpu_isa::avx512_core_vnni || eff == dnnl::cpu_isa::avx512_core_bf16 ||
                eff == dnnl::cpu_isa::avx512_core_amx || eff == dnnl::cpu_isa::avx2_vnni;
  return c;
}

}  // namespace

std::string CpuIsa::summary() const {
  if (!avx2) return sse41 ? (avx ? "sse4.1+avx" : "sse4.1") : "baseline x86-64";
  std::string s = fma ? "avx2+fma" : "avx2";
  if (avx_vnni) s += " + avx-vnni";
  if (avx512f) {
    s += avx512_core() ? " + avx512 (f, bw, vl, dq)" : " + avx512f";
    if (avx512_vnni) s += " + avx512-vnni";
    if (avx512_bf16) s += " + avx512-bf16";
    if (avx512_fp16) s += " + avx512-fp16";
  }
  if (amx_tile)
    s += std::string(" + amx (") + (amx_bf16 ? "bf16" : "") + (amx_bf16 && amx_int8 ? ", " : "") +
         (amx_int8 ? "int8" : "") + ")";
  return s;
}

const char* isa_cap_name(IsaCap c) {
  switch (c) {
    case IsaCap::kSse41:
      return "sse41";
    case IsaCap::kAvx2:
      return "avx2";
    case IsaCap::kAvx512:
      return "avx512";
    case IsaCap::kAvx512Vnni:
      return "avx512_vnni";
    case IsaCap::kAvx512Bf16:
      return "avx512_bf16";
    case IsaCap::kAll:
      return "all";
  }
  return "?";
}

Result<IsaCap> parse_isa_cap(const std::string& s, const std::string& what) {
  std::string v;
  for (char ch : s) v += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (v.empty() || v == "all" || v == "none") return IsaCap::kAll;
  for (IsaCap c :
       {IsaCap::kSse41, IsaCap::kAvx2, IsaCap::kAvx512, IsaCap::kAvx512Vnni, IsaCap::kAvx512Bf16})
    if (v == isa_cap_name(c)) return c;
  if (v == "sse4" || v == "sse4.1") return IsaCap::kSse41;
  if (v == "avx512_core" || v == "avx512f") return IsaCap::kAvx512;
  return invalid_argument(what + ": unknown ISA cap '" + s +
                          "' (expected sse41, avx2, avx512, avx512_vnni, avx512_bf16 or all)");
}

Result<const CpuInfo*> cpu_info() {
  static std::once_flag once;
  static Result<CpuInfo>* result = nullptr;  // leaked on purpose: used until exit
  std::call_once(once, [] { result = new Result<CpuInfo>(detect()); });
  if (!result->is_ok()) return result->status();
  return &result->value();
}

std::string cpu_info_line(const CpuInfo& c) {
  std::string s = (c.model_name.empty() ? c.vendor : c.model_name) + " (" +
                  std::to_string(c.logical_cpus) + " cpus) | hw " + c.hardware.summary();
  if (c.cap != IsaCap::kAll) s += std::string(" | DUET_MAX_ISA ") + isa_cap_name(c.cap);
  if (!c.onednn_cap.empty()) s += " | ONEDNN_MAX_CPU_ISA " + c.onednn_cap;
  s += " | oneDNN " + c.onednn_isa + " | Highway " + c.hwy_target;
  s += std::string(" | bf16 ") + (c.bf16_compute ? (c.bf16_native ? "yes" : "emulated") : "no");
  s += std::string(" | int8 ") +
       (c.int8_compute ? (c.int8_vnni ? "yes (vnni)" : "yes (no vnni: 7-bit weights)") : "no");
  return s;
}

nlohmann::json cpu_info_json(const CpuInfo& c) {
  auto isa = [](const CpuIsa& i) {
    return nlohmann::json{{"sse41", i.sse41},
                          {"avx2", i.avx2},
                          {"fma", i.fma},
                          {"f16c", i.f16c},
                          {"avx512f", i.avx512f},
                          {"avx512bw", i.avx512bw},
                          {"avx512vl", i.avx512vl},
                          {"avx512dq", i.avx512dq},
                          {"avx512_vnni", i.avx512_vnni},
                          {"avx512_bf16", i.avx512_bf16},
                          {"avx512_fp16", i.avx512_fp16},
                          {"avx_vnni", i.avx_vnni},
                          {"amx_tile", i.amx_tile},
                          {"amx_bf16", i.amx_bf16},
                          {"amx_int8", i.amx_int8},
                          {"summary", i.summary()}};
  };
  return nlohmann::json{{"vendor", c.vendor},
                        {"model_name", c.model_name},
                        {"family", c.family},
                        {"model", c.model},
                        {"stepping", c.stepping},
                        {"logical_cpus", c.logical_cpus},
                        {"hardware", isa(c.hardware)},
                        {"isa_cap", isa_cap_name(c.cap)},
                        {"usable", isa(c.usable)},
                        {"onednn_max_cpu_isa", c.onednn_cap},
                        {"onednn_isa", c.onednn_isa},
                        {"highway_target", c.hwy_target},
                        {"bf16_compute", c.bf16_compute},
                        {"bf16_native", c.bf16_native},
                        {"int8_compute", c.int8_compute},
                        {"int8_vnni", c.int8_vnni},
                        {"int8_weight_bits", c.int8_vnni ? 8 : 7}};
}

Status cpu_precision_support(Precision p, const CpuInfo& c) {
  const std::string here =
      "this CPU: " + c.usable.summary() +
      (c.cap != IsaCap::kAll ? std::string(" with DUET_MAX_ISA=") + isa_cap_name(c.cap) : "") +
      ", oneDNN " + c.onednn_isa;
  if (p == Precision::kBF16 && !c.bf16_compute)
    return unimplemented(
        "precision bf16 is not available on this CPU: oneDNN's bf16 kernels need AVX-512 "
        "(AVX512-BF16 or AMX-BF16 for full speed; " +
        here + "); use --precision int8, f32 or auto");
  if (p == Precision::kInt8 && !c.int8_compute)
    return unimplemented(
        "precision int8 is not available on this CPU: oneDNN has no int8 "
        "matmul here (" +
        here + "); use --precision f32");
  return Status::ok();
}

Precision cpu_auto_precision(const CpuInfo& c, std::string* why) {
  if (c.int8_compute && c.usable.avx2) {
    if (why)
      *why = std::string("int8: oneDNN int8 GEMMs ") +
             (c.int8_vnni ? "with VNNI" : "without VNNI (u8 activations, 7-bit weights)") +
             (c.bf16_compute ? ", convolutions bf16" : ", convolutions fp32");
    return Precision::kInt8;
  }
  if (why) *why = "f32: no int8 GEMMs at AVX2 or above on this CPU";
  return Precision::kF32;
}

}  // namespace duet

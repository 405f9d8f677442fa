// The one place that knows the CPU: what the hardware has (cpuid + the OS's register-state
// support via xgetbv), what duet lets itself use (the hardware capped by DUET_MAX_ISA), and what
// the two SIMD libraries actually dispatch to (oneDNN's effective ISA, Highway's chosen target).
//
// DUET_MAX_ISA caps both libraries for the whole process, so the AVX2 paths can be run on an
// AVX-512 machine (CI does): sse41 | avx2 | avx512 | avx512_vnni | avx512_bf16 | all (default).
// It is applied once, before the first oneDNN primitive and the first Highway dispatch (the cpu
// backend asks for it on construction). ONEDNN_MAX_CPU_ISA, when set, is oneDNN's own cap and is
// honoured by oneDNN; duet reports it.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "duet/precision.h"
#include "duet/status.h"

namespace duet {

// Instruction-set extensions that duet or its libraries dispatch on. Each flag is true only when
// the CPU reports it and the OS saves the register state it needs (YMM / ZMM / AMX tiles).
struct CpuIsa {
  bool sse41 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx512_bf16 = false, avx512_fp16 = false;
  bool avx_vnni = false;  // VEX-encoded VNNI (Alder Lake+, Zen 5)
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;

  bool avx512_core() const { return avx512f && avx512bw && avx512vl && avx512dq; }
  // "avx2+fma", "avx512 (bw, vl, dq) + vnni + bf16", ...: the levels present, most capable last.
  std::string summary() const;
};

// Levels of DUET_MAX_ISA, in increasing order.
enum class IsaCap { kSse41, kAvx2, kAvx512, kAvx512Vnni, kAvx512Bf16, kAll };
const char* isa_cap_name(IsaCap c);  // "sse41" | "avx2" | ... | "all"
// Parses a DUET_MAX_ISA value (case-insensitive; "" = all); otherwise kInvalidArgument naming
// `what` and the accepted values.
Result<IsaCap> parse_isa_cap(const std::string& s, const std::string& what = "DUET_MAX_ISA");

struct CpuInfo {
  std::string vendor;      // "GenuineIntel" | "AuthenticAMD" | ...
  std::string model_name;  // the cpuid brand string, e.g. "AMD EPYC 7B13 64-Core Processor"
  int family = 0, model = 0, stepping = 0;  // display family / model (extended fields folded in)
  int logical_cpus = 0;                     // CPUs this process may run on (affinity mask)
  CpuIsa hardware;                          // what the CPU + OS offer
  IsaCap cap = IsaCap::kAll;                // DUET_MAX_ISA
  CpuIsa usable;                            // hardware limited by cap: what duet's own code uses
  std::string onednn_isa;  // oneDNN's effective ISA after both caps, e.g. "avx512_core_bf16"
  std::string onednn_cap;  // ONEDNN_MAX_CPU_ISA as set in the environment ("" when unset)
  std::string hwy_target;  // the target Highway's dynamic dispatch picked, e.g. "AVX3"
  // Reduced-precision compute that oneDNN can create primitives for here (probed with tiny
  // primitives, not inferred from flags): bf16 matmul + convolution, u8/s8 int8 matmul.
  bool bf16_compute = false;
  bool int8_compute = false;
  bool bf16_native = false;  // bf16 dot-product instructions (AVX512-BF16 / AMX-BF16) usable
  // oneDNN's effective ISA has VNNI int8 dot products (avx512_core_vnni and up, avx2_vnni).
  // Without them the int8 GEMMs take u8 activations and 7-bit weights (ops/lowp.h).
  bool int8_vnni = false;
};

// Detects the CPU and applies DUET_MAX_ISA once (thread-safe); later calls return the same
// object. A malformed DUET_MAX_ISA is an error here and in every backend constructor.
Result<const CpuInfo*> cpu_info();

// One line for logs and test output: "Intel(R) Xeon(R) ... | hw avx512 ... | cap avx2 | oneDNN
// avx2 | Highway AVX2 | bf16 no | int8 yes (no VNNI)".
std::string cpu_info_line(const CpuInfo& c);
// The same as JSON (duet info --json, duet bench --json, /v1/models).
nlohmann::json cpu_info_json(const CpuInfo& c);

// Whether the cpu backend can run `p` here: ok, or kUnimplemented with one line naming the
// missing instruction set, what this CPU has and the precisions that do run ("precision bf16 is
// not available on this CPU: ...; use --precision int8, f32 or auto").
Status cpu_precision_support(Precision p, const CpuInfo& c);
// `--precision auto`: the fastest precision this CPU runs whose demo image stays within the
// quality guard (PSNR >= 35 dB vs f32; PrecisionCli.Int8AndAutoKeepTheDemoImageWithinTheGuard
// checks it on every ISA CI runs): int8 wherever oneDNN has int8 GEMMs at AVX2 or above (demo
// image 39.8 dB with VNNI, 37.5 dB without; seed-scale denoise 2.0-2.35x f32), else f32. bf16 is
// slower than int8 wherever both run. `why` gets the reason.
Precision cpu_auto_precision(const CpuInfo& c, std::string* why = nullptr);

}  // namespace duet

// Highway's side of the process-wide ISA cap (src/core/cpu_features.cpp): which of the compiled
// x86 targets dynamic dispatch may choose, and which one it chose.
#pragma once

namespace duet::cpu {

// Disables the Highway targets above the cap: AVX3 (AVX-512 F/BW/DQ/VL) unless allow_avx3,
// AVX3_DL (+ VNNI, VBMI2, ...) unless allow_avx3_dl, AVX2 unless allow_avx2. Call before the
// first dispatch of a kernel that should honour the cap.
void cap_highway_targets(bool allow_avx3, bool allow_avx3_dl, bool allow_avx2);

// The target HWY_DYNAMIC_DISPATCH runs now ("AVX3", "AVX2", ...).
const char* highway_dispatched_target();

}  // namespace duet::cpu

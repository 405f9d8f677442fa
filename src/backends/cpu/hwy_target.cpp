// Highway target cap and report (hwy_target.h).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/hwy_target.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; the includes below follow it.
#include <hwy/highway.h>
#include <hwy/targets.h>

#include "backends/cpu/hwy_target.h"

HWY_BEFORE_NAMESPACE();
namespace duet::cpu {
namespace HWY_NAMESPACE {
const char* TargetNameHere() { return hwy::TargetName(HWY_TARGET); }
}  // namespace HWY_NAMESPACE
}  // namespace duet::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace duet::cpu {

HWY_EXPORT(TargetNameHere);

void cap_highway_targets(bool allow_avx3, bool allow_avx3_dl, bool allow_avx2) {
  int64_t off = 0;
  // Targets newer than AVX3_DL that a later Highway may compile are above every cap but "all".
#ifdef HWY_AVX3_ZEN4
  if (!allow_avx3_dl) off |= HWY_AVX3_ZEN4;
#endif
#ifdef HWY_AVX3_SPR
  if (!allow_avx3_dl) off |= HWY_AVX3_SPR;
#endif
  if (!allow_avx3_dl) off |= HWY_AVX3_DL;
  if (!allow_avx3) off |= HWY_AVX3;
  if (!allow_avx2) off |= HWY_AVX2;
  if (off != 0) hwy::DisableTargets(off);
}

const char* highway_dispatched_target() { return HWY_DYNAMIC_DISPATCH(TargetNameHere)(); }

}  // namespace duet::cpu
#endif  // HWY_ONCE

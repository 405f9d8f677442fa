# CPU check shared by the scripts. Source it (bash):   . scripts/cpu-env.sh
#
# OPENBLAS_CORETYPE: Debian 12's OpenBLAS (0.3.21) mis-detects Intel CPUs with AVX-512 (e.g. Xeons
# reporting a model it does not know) and falls back to slower kernels; forcing SKYLAKEX there makes
# PyTorch about 2x faster. On a CPU without AVX-512 the SKYLAKEX kernels die with SIGILL, and on AMD
# Zen OpenBLAS detects the core by itself, so the variable is exported ONLY on a GenuineIntel CPU
# with avx512f, avx512bw, avx512vl and avx512dq. A value the caller already set (even empty) is kept,
# except an AVX-512 core type (SKYLAKEX, COOPERLAKE, SAPPHIRERAPIDS) on a CPU without AVX-512: that
# one is removed (it would SIGILL). With DUET_MAX_ISA=avx2 on an AVX-512 CPU (the AVX2 paths tested
# or benchmarked there) the peers are capped too: OPENBLAS_CORETYPE=HASWELL and ONEDNN_MAX_CPU_ISA /
# DNNL_MAX_CPU_ISA=AVX2 (unless set), and a caller's AVX-512 core type is replaced by HASWELL.
#
# Also sets (not exported) CPU_ENV_AVX512=1 when the CPU has AVX-512 F/BW/VL/DQ (the level at which
# oneDNN's avx512_core and Highway's AVX3 targets dispatch), else 0.
# Prints one line on stderr saying what it decided and why. CPU_ENV_CPUINFO=FILE reads FILE instead
# of /proc/cpuinfo (scripts/test-cpu-env.sh uses it).

cpu_env_decide() {
  local info="${CPU_ENV_CPUINFO:-/proc/cpuinfo}" vendor="" flags="" f missing=""
  if [ -r "$info" ]; then
    vendor=$(sed -n 's/^vendor_id[[:space:]]*:[[:space:]]*//p' "$info" | head -n 1)
    flags=" $(sed -n 's/^flags[[:space:]]*:[[:space:]]*//p' "$info" | head -n 1) "
  fi
  for f in avx512f avx512bw avx512vl avx512dq; do
    case "$flags" in *" $f "*) ;; *) missing="$missing $f" ;; esac
  done
  if [ -z "$missing" ]; then CPU_ENV_AVX512=1; else CPU_ENV_AVX512=0; fi
  case "${DUET_MAX_ISA:-}" in avx2 | AVX2) CPU_ENV_CAP_AVX2=1 ;; *) CPU_ENV_CAP_AVX2=0 ;; esac

  # AVX-512 core types are allowed only where AVX-512 is both present and not capped away.
  local use512=0
  [ "$CPU_ENV_AVX512" = 1 ] && [ "$CPU_ENV_CAP_AVX2" = 0 ] && use512=1

  if [ -n "${OPENBLAS_CORETYPE+set}" ] && [ "$use512" = 0 ] &&
    case "$OPENBLAS_CORETYPE" in
      SKYLAKEX | COOPERLAKE | SAPPHIRERAPIDS | skylakex | cooperlake | sapphirerapids) true ;;
      *) false ;;
    esac; then
    if [ "$CPU_ENV_AVX512" = 0 ]; then
      # An AVX-512 core type on a CPU without AVX-512 kills PyTorch with SIGILL: never keep it.
      echo "cpu-env: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE removed (this CPU lacks${missing}; its kernels would die with SIGILL)" >&2
      unset OPENBLAS_CORETYPE
    else
      # Capped to AVX2 (DUET_MAX_ISA=avx2): the peers must not run AVX-512 kernels either.
      echo "cpu-env: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE replaced by HASWELL (DUET_MAX_ISA=$DUET_MAX_ISA caps this CPU to AVX2)" >&2
      export OPENBLAS_CORETYPE=HASWELL
    fi
  elif [ -n "${OPENBLAS_CORETYPE+set}" ]; then
    echo "cpu-env: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(empty)} kept (set by the caller)" >&2
  elif [ "$CPU_ENV_AVX512" = 1 ] && [ "$CPU_ENV_CAP_AVX2" = 1 ]; then
    # duet capped to AVX2 (DUET_MAX_ISA=avx2) on an AVX-512 CPU: cap the peers the same way, so
    # that a comparison stays AVX2 against AVX2 (ONNX Runtime's MLAS cannot be capped).
    export OPENBLAS_CORETYPE=HASWELL
    echo "cpu-env: OPENBLAS_CORETYPE=HASWELL (DUET_MAX_ISA=$DUET_MAX_ISA caps this AVX-512 CPU to AVX2)" >&2
  elif [ -z "$vendor" ]; then
    echo "cpu-env: OPENBLAS_CORETYPE not set (no /proc/cpuinfo vendor: OpenBLAS detects the core)" >&2
  elif [ "$vendor" = GenuineIntel ] && [ "$use512" = 1 ]; then
    # use512 = avx512f, avx512bw, avx512vl and avx512dq all in /proc/cpuinfo's flags, no cap
    export OPENBLAS_CORETYPE=SKYLAKEX
    echo "cpu-env: OPENBLAS_CORETYPE=SKYLAKEX (Intel CPU with AVX-512F/BW/VL/DQ, which Debian's OpenBLAS mis-detects)" >&2
  elif [ "$CPU_ENV_AVX512" = 0 ]; then
    echo "cpu-env: OPENBLAS_CORETYPE not set ($vendor CPU without${missing}: SKYLAKEX kernels would die with SIGILL)" >&2
  else
    echo "cpu-env: OPENBLAS_CORETYPE not set ($vendor CPU with AVX-512: OpenBLAS detects this core itself)" >&2
  fi
}
cpu_env_decide
unset -f cpu_env_decide
if [ "$CPU_ENV_CAP_AVX2" = 1 ]; then  # oneDNN inside the peers (PyTorch) capped like duet's
  export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2} DNNL_MAX_CPU_ISA=${DNNL_MAX_CPU_ISA:-AVX2}
fi

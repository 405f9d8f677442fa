// Linear layers on cuBLASLt. Row-major y [M, out] = x [M, in] · Wᵀ is, in cuBLASLt's column-major
// terms, D [out, M] = op(A) · B with A = W seen as [in, out] (ld in, transposed), B = x seen as
// [in, M] (ld in), D ld out. Bias and GELU (tanh form) run in the epilogue (BIAS / GELU_BIAS /
// GELU); SiLU and sigmoid have no cuBLASLt epilogue and run as one kernel afterwards.
//   fp32: CUBLAS_COMPUTE_32F (TF32 off) unless DUET_CUDA_TF32=1 (or -DDUET_CUDA_TF32=ON).
//   bf16: W stored bf16 on the device; x converted per call into the backend scratch; fp32
//         accumulation and output (bf16 tensor cores).
//   int8: not built yet (kUnimplemented at prepare; docs/gpu.md).
// Per row count M (and pointer alignment) the matmul descriptor, layouts and the heuristic's
// algorithm are created once and cached in the prepared op (mutex-protected).
#include "backends/cuda/cuda_linear.h"

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "backends/cuda/cuda_common.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_logic.h"

namespace duet::cuda {
namespace {

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

class CudaLinear final : public PreparedLinear {
 public:
  DeviceMem w, bias;  // [out, in] f32 or bf16 bits; [out] f32 (empty: none)
  mutable std::mutex mu;
  mutable std::map<std::tuple<int64_t, int, int>, std::unique_ptr<Plan>> plans;
};

int alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && a % al) al >>= 1;
  return al;
}

// The plan for M rows with x / y at the given alignments (created on first use).
const Plan* plan_for(const CudaLinear& op, int64_t m, int ax, int ay) {
  std::lock_guard<std::mutex> lock(op.mu);
  auto& slot = op.plans[{m, ax, ay}];
  if (slot) return slot->ok ? slot.get() : nullptr;
  slot = std::make_unique<Plan>();
  Plan& p = *slot;
  Shared& sh = shared();
  const bool bf16 = op.precision == Precision::kBF16;
  const cudaDataType_t in_t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t ct =
      (!bf16 && sh.tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  if (!ok(cublasLtMatmulDescCreate(&p.desc, ct, CUDA_R_32F), "linear: matmul desc")) return nullptr;
  const cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr);
  cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt);
  const bool has_bias = op.bias.get() != nullptr, gelu = op.act == Activation::kGeluTanh;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (has_bias) epi = gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  if (!has_bias && gelu) epi = CUBLASLT_EPILOGUE_GELU;
  cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
  if (has_bias) {
    const void* bp = op.bias.get();
    cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp);
    const cudaDataType_t bt = CUDA_R_32F;
    cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
  }
  if (!ok(cublasLtMatrixLayoutCreate(&p.a, in_t, op.in, op.out, op.in), "linear: layout A") ||
      !ok(cublasLtMatrixLayoutCreate(&p.b, in_t, op.in, m, op.in), "linear: layout B") ||
      !ok(cublasLtMatrixLayoutCreate(&p.d, CUDA_R_32F, op.out, m, op.out), "linear: layout D"))
    return nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  if (!ok(cublasLtMatmulPreferenceCreate(&pref), "linear: preference")) return nullptr;
  const uint64_t ws = sh.lt_workspace.bytes();
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof ws);
  const uint32_t a_al = 256, b_al = static_cast<uint32_t>(bf16 ? 256 : ax),
                 d_al = static_cast<uint32_t>(ay);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a_al,
                                       sizeof a_al);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b_al,
                                       sizeof b_al);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &d_al,
                                       sizeof d_al);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &d_al,
                                       sizeof d_al);
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t hs =
      cublasLtMatmulAlgoGetHeuristic(sh.lt, p.desc, p.a, p.b, p.d, p.d, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (!ok(hs, "linear: heuristic")) return nullptr;
  if (found < 1) {
    report("linear", "cuBLASLt found no algorithm for m=" + std::to_string(m) +
                         " in=" + std::to_string(op.in) + " out=" + std::to_string(op.out));
    return nullptr;
  }
  p.algo = res.algo;
  p.ok = true;
  return &p;
}

}  // namespace

Result<std::unique_ptr<PreparedLinear>> prepare_linear(const LayerWeights& lw, const float* b,
                                                       int64_t out, int64_t in, Activation act) {
  if (lw.precision == Precision::kInt8)
    return unimplemented("cuda backend: int8 linear layers are not built yet (use f32 or bf16)");
  DUET_RETURN_IF_ERROR(shared().init);
  auto op = std::make_unique<CudaLinear>();
  op->out = out;
  op->in = in;
  op->act = act;
  op->precision = lw.precision;
  const size_t n = static_cast<size_t>(out * in);
  if (lw.precision == Precision::kBF16) {
    DUET_ASSIGN_OR_RETURN(op->w, DeviceMem::make(n * 2, lw.bf16, "linear bf16 weights"));
  } else {
    DUET_ASSIGN_OR_RETURN(op->w, DeviceMem::make(n * 4, lw.f32, "linear weights"));
  }
  if (b) {
    DUET_ASSIGN_OR_RETURN(op->bias, DeviceMem::make(static_cast<size_t>(out) * 4, b, "bias"));
  }
  return std::unique_ptr<PreparedLinear>(std::move(op));
}

void run_linear(const PreparedLinear& p, const float* x, int64_t m, float* y) {
  if (m <= 0) return;
  const auto& op = static_cast<const CudaLinear&>(p);
  Shared& sh = shared();
  const Plan* plan = plan_for(op, m, alignment(x), alignment(y));
  if (!plan) return;
  const float alpha = 1.0f, beta = 0.0f;
  const void* xb = x;
  std::unique_lock<std::mutex> lock(sh.scratch_mu, std::defer_lock);
  if (op.precision == Precision::kBF16) {  // x -> bf16 in the scratch, held until enqueued
    lock.lock();
    void* s = scratch(static_cast<size_t>(m * op.in) * 2);
    if (!s) return;
    launch_to_bf16(x, m * op.in, static_cast<uint16_t*>(s), sh.stream);
    xb = s;
  }
  ok(cublasLtMatmul(sh.lt, plan->desc, &alpha, op.w.get(), plan->a, xb, plan->b, &beta, y, plan->d,
                    y, plan->d, &plan->algo, sh.lt_workspace.get(), sh.lt_workspace.bytes(),
                    sh.stream),
     "linear: cublasLtMatmul");
  if (op.act == Activation::kSilu) launch_activation(2, y, m * op.out, sh.stream);
  if (op.act == Activation::kSigmoid) launch_activation(3, y, m * op.out, sh.stream);
}

}  // namespace duet::cuda

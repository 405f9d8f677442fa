// Golden tests: the whole model (prompt side + one denoise with the refiner) against the PyTorch
// reference, for every fixture config and both backends. Every intermediate the fixture holds is
// compared within |a - b| <= tol * (1 + |ref|); token ids exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/gpu_devices.h"
#include "duet/model.h"
#include "duet/safetensors.h"
#include "ops/ops.h"

namespace duet {
namespace {

constexpr double kTol = 1e-4;  // the bound: |a - b| <= 1e-4 (1 + |ref|)

std::string fixture_dir(const std::string& name) {
  return std::string(DUET_SOURCE_DIR) + "/tests/fixtures/" + name;
}

// max over elements of |a - b| / (1 + |ref|); +inf if any NaN or a size mismatch.
double rel_err(const float* a, const float* ref, int64_t n) {
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) || std::isnan(ref[i])) return INFINITY;
    worst =
        std::max(worst, std::fabs(static_cast<double>(a[i]) - ref[i]) / (1.0 + std::fabs(ref[i])));
  }
  return worst;
}

struct GoldenCase {
  std::string fixture;
  BackendKind backend;
};

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, EveryIntermediateMatchesPyTorch) {
  const GoldenCase gc = GetParam();
  const std::string dir = fixture_dir(gc.fixture);
  if (!std::filesystem::exists(dir + "/golden.safetensors"))
    GTEST_SKIP() << "fixture " << dir << " not present";
  if (gc.backend == BackendKind::kCuda && !cuda_backend_status().is_ok())
    GTEST_SKIP() << cuda_backend_status().message();  // a CUDA build on a machine without GPU
  LoadOptions lo;
  lo.backend = gc.backend;
  const Backend& be = get_backend(gc.backend);
  reset_reference_device_violations();
  auto model = Model::load(dir, lo);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  auto gf = SafetensorsFile::open(dir + "/golden.safetensors");
  ASSERT_TRUE(gf.is_ok()) << gf.status().to_string();
  std::map<std::string, Tensor> gold;
  for (const TensorEntry& e : gf->tensors()) {
    if (e.dtype == DType::kI64) {
      Tensor t = Tensor::zeros(e.shape, DType::kI64);
      std::memcpy(t.raw(), e.data, e.nbytes);
      gold[e.name] = t;
    } else {
      auto t = gf->load_f32(e.name);
      ASSERT_TRUE(t.is_ok());
      gold[e.name] = *t;
    }
  }
  const auto& meta = gf->metadata();
  ASSERT_TRUE(meta.count("prompt0") && meta.count("prompt1"));
  std::map<std::string, double> errs;
  std::map<std::string, Tensor> got;
  auto capture = [&](std::string_view name, const Tensor& v) {
    got[std::string(name)] = v.clone();
  };

  // tokenizer: exact
  Tensor ids, mask;
  ASSERT_TRUE((*model)->tokenize({meta.at("prompt0"), meta.at("prompt1")}, &ids, &mask).is_ok());
  ASSERT_EQ(ids.shape(), gold["ids"].shape());
  for (int64_t i = 0; i < ids.numel(); ++i) {
    ASSERT_EQ(ids.as<int64_t>()[i], gold["ids"].as<int64_t>()[i]) << "token " << i;
    ASSERT_EQ(mask.as<int64_t>()[i], gold["mask"].as<int64_t>()[i]) << "mask " << i;
  }
  auto ps = (*model)->encode_ids(ids, mask, capture);
  ASSERT_TRUE(ps.is_ok()) << ps.status().to_string();
  // The prompt state lives in backend memory: read it the way a device backend requires.
  auto host = [&](const Tensor& t) { return be.host_visible() ? t : download_tensor(be, t); };
  got["E"] = host(ps->E);
  got["p"] = host(ps->p);
  for (size_t i = 0; i < ps->k.size(); ++i) {
    got["kv." + std::to_string(i) + ".k"] = host(ps->k[i]);
    got["kv." + std::to_string(i) + ".v"] = host(ps->v[i]);
  }
  const ModelConfig& cfg = (*model)->config();
  const Tensor& x = gold["x_t"];
  ContextOptions co;
  co.max_batch = x.dim(0);
  co.height = x.dim(2);
  co.width = x.dim(3);
  auto ctx = Context::create(*model, co);
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  (*ctx)->set_hook(capture);
  Status st = (*ctx)->denoise(x, gold["t"], *ps, true);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  // fixed tables computed on the C++ side
  const int64_t p = cfg.backbone.patch;
  std::vector<float> pos = ops::pos_embed_2d(cfg.backbone.width, x.dim(2) / p, x.dim(3) / p);
  got["pos_embed"] =
      Tensor::view(pos.data(), {x.dim(2) / p * (x.dim(3) / p), cfg.backbone.width}).clone();
  std::vector<float> hm =
      ops::highpass_mask(x.dim(2), x.dim(3), cfg.highpass.rho_c, cfg.highpass.tau);
  got["hp_mask"] = Tensor::view(hm.data(), {x.dim(2), x.dim(3)}).clone();

  int compared = 0;
  for (const auto& [name, ref] : gold) {
    if (ref.dtype() != DType::kF32 || name == "x_t" || name == "t") continue;
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << "golden key '" << name << "' was not produced";
    ASSERT_EQ(it->second.shape(), ref.shape()) << name;
    const double e = rel_err(it->second.f32(), ref.f32(), ref.numel());
    errs[name] = e;
    EXPECT_LE(e, kTol) << name;
    ++compared;
  }
  EXPECT_GE(compared, 20);
  // reference-device: no op received a pointer outside its buffers (host memory never crossed
  // the boundary except by upload / download).
  const BoundaryViolations bv = reference_device_violations();
  EXPECT_EQ(bv.count, 0) << bv.first;
  double worst = 0;
  std::string line;
  for (const auto& [k, e] : errs) {
    worst = std::max(worst, e);
    char buf[96];
    std::snprintf(buf, sizeof(buf), " %s=%.1e", k.c_str(), e);
    line += buf;
  }
  std::printf("[golden %s/%s] max rel err %.2e over %d keys:%s\n", gc.fixture.c_str(),
              backend_kind_name(gc.backend), worst, compared, line.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, Golden,
    ::testing::Values(GoldenCase{"tiny-demo", BackendKind::kReference},
                      GoldenCase{"tiny-demo", BackendKind::kCpu},
                      GoldenCase{"awkward", BackendKind::kReference},
                      GoldenCase{"awkward", BackendKind::kCpu},
                      GoldenCase{"tiny-demo", BackendKind::kReferenceDevice},
                      GoldenCase{"awkward", BackendKind::kReferenceDevice},
                      // SLAB linear attention (issue 20)
                      GoldenCase{"tiny-slab", BackendKind::kReference},
                      GoldenCase{"tiny-slab", BackendKind::kCpu},
                      GoldenCase{"tiny-slab", BackendKind::kReferenceDevice},
                      GoldenCase{"awkward-hybrid", BackendKind::kReference},
                      GoldenCase{"awkward-hybrid", BackendKind::kCpu},
                      GoldenCase{"awkward-hybrid", BackendKind::kReferenceDevice},
                      // CSWin stripe attention + folded RepBN (issue 20)
                      GoldenCase{"tiny-cswin", BackendKind::kReference},
                      GoldenCase{"tiny-cswin", BackendKind::kCpu},
                      GoldenCase{"tiny-cswin", BackendKind::kReferenceDevice},
                      GoldenCase{"awkward-cswin", BackendKind::kReference},
                      GoldenCase{"awkward-cswin", BackendKind::kCpu},
                      GoldenCase{"awkward-cswin", BackendKind::kReferenceDevice}
#ifdef DUET_HAVE_CUDA
                      ,
                      GoldenCase{"tiny-demo", BackendKind::kCuda},
                      GoldenCase{"awkward", BackendKind::kCuda},
                      GoldenCase{"tiny-slab", BackendKind::kCuda},
                      GoldenCase{"awkward-hybrid", BackendKind::kCuda},
                      GoldenCase{"tiny-cswin", BackendKind::kCuda},
                      GoldenCase{"awkward-cswin", BackendKind::kCuda}
#endif
                      ),
    [](const ::testing::TestParamInfo<GoldenCase>& i) {
      std::string n = i.param.fixture + "_" + backend_kind_name(i.param.backend);
      for (char& ch : n)
        if (ch == '-') ch = '_';
      return n;
    });

}  // namespace
}  // namespace duet

// Reduced precision, model level (tiny-demo fixture): bf16 / int8 eps stay close to fp32, the cpu
// backend agrees with the reference backend at the same precision, a `duet quantize` checkpoint
// reproduces load-time quantisation exactly, steady-state denoise does not allocate, and bad
// quantised checkpoints / precision names give errors naming the file and field.
//
// Tolerances (relative L2 of eps = the fused prediction, refine = true, t = 500, batch 2):
//   bf16 vs fp32 : <= 2e-2        int8 vs fp32 : <= 5e-2
//   cpu vs reference backend at the same precision : <= 5e-3. Each op agrees to ~1e-6
//   (test_precision.cpp), but the next layer re-rounds its input to bf16 / int8, so an
//   accumulation-order difference that moves a value across a rounding boundary becomes a
//   full bf16 ulp (2^-8 relative) or int8 step there; over the network this measures ~1.7e-3.
//   quantised checkpoint vs load-time quantisation : bit-identical
#include <gtest/gtest.h>
#include <malloc.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "duet/cpu_features.h"
#include "duet/model.h"
#include "duet/quantize.h"
#include "test_util.h"

namespace duet {
namespace {

const std::string kTiny = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";

std::shared_ptr<const Model> load(const std::string& dir, Precision p,
                                  BackendKind k = BackendKind::kCpu, bool int8_bf16_convs = true) {
  LoadOptions lo;
  lo.backend = k;
  lo.precision = p;
  lo.int8_bf16_convs = int8_bf16_convs;
  auto m = Model::load(dir, lo);
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  return m.is_ok() ? *m : nullptr;
}

// eps of one refine = true denoise at t = 500 on a fixed x, prompts "a boot", "a coat".
std::vector<float> eps_of(const std::shared_ptr<const Model>& model) {
  if (!model) return {};
  const ModelConfig& cfg = model->config();
  Tensor x = Tensor::zeros({2, cfg.image.channels, cfg.image.height, cfg.image.width});
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = nd(rng);
  Tensor t = Tensor::zeros({2});
  t.f32()[0] = t.f32()[1] = 500.f;
  auto ps = model->encode_prompt({"a boot", "a coat"});
  EXPECT_TRUE(ps.is_ok());
  ContextOptions co;
  co.max_batch = 2;
  auto ctx = Context::create(model, co);
  EXPECT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  if (!ctx.is_ok() || !ps.is_ok()) return {};
  EXPECT_TRUE((*ctx)->denoise(x, t, *ps, true).is_ok());
  const Tensor e = (*ctx)->eps();
  return std::vector<float>(e.f32(), e.f32() + e.numel());
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  EXPECT_EQ(a.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// bf16 where this CPU has it (the cpu backend refuses it by name otherwise: checked in
// Bf16WithoutHardwareIsOneClearLine), int8 everywhere.
std::vector<Precision> reduced_precisions_here() {
  std::vector<Precision> ps;
  for (Precision p : {Precision::kBF16, Precision::kInt8}) {
    const std::string why = testing::precision_unavailable(p);
    if (why.empty())
      ps.push_back(p);
    else
      std::printf("[ precision ] %s skipped: %s\n", precision_name(p), why.c_str());
  }
  return ps;
}
bool cpu_has_bf16() { return testing::precision_unavailable(Precision::kBF16).empty(); }

TEST(PrecisionModel, ReducedPrecisionStaysCloseToFp32) {
  const auto f32 = eps_of(load(kTiny, Precision::kF32));
  ASSERT_FALSE(f32.empty());
  const auto int8 = eps_of(load(kTiny, Precision::kInt8));
  const double e_int8 = rel_l2(int8, f32);
  EXPECT_LE(e_int8, 5e-2);
  EXPECT_GT(e_int8, 0.0);  // really ran at reduced precision
  std::printf("[ precision ] tiny-demo eps rel-L2 vs fp32: int8 %.3e%s\n", e_int8,
              cpu_has_bf16() ? "" : " (convolutions fp32: no bf16 compute)");
  if (!cpu_has_bf16()) return;
  const auto bf16 = eps_of(load(kTiny, Precision::kBF16));
  const double e_bf16 = rel_l2(bf16, f32);
  std::printf("[ precision ] tiny-demo eps rel-L2 vs fp32: bf16 %.3e\n", e_bf16);
  EXPECT_LE(e_bf16, 2e-2);
  EXPECT_GT(e_bf16, 0.0);
  EXPECT_GT(e_int8, e_bf16 * 0.5);
}

// The reference twin runs the configuration the cpu backend chose: int8 convolutions at bf16
// only where the CPU has bf16 compute.
TEST(PrecisionModel, CpuMatchesReferenceBackendAtSamePrecision) {
  for (Precision p : reduced_precisions_here()) {
    const auto cpu = eps_of(load(kTiny, p, BackendKind::kCpu));
    const auto ref = eps_of(load(kTiny, p, BackendKind::kReference, cpu_has_bf16()));
    const double e = rel_l2(cpu, ref);
    std::printf("[ precision ] tiny-demo %s cpu vs reference rel-L2 %.3e\n", precision_name(p), e);
    EXPECT_LE(e, 5e-3) << precision_name(p);
  }
}

// int8 with fp32 convolutions (what CPUs without AVX-512 run) on every machine, against its twin.
TEST(PrecisionModel, Int8WithFp32ConvolutionsMatchesItsTwin) {
  const auto cpu = eps_of(load(kTiny, Precision::kInt8, BackendKind::kCpu, false));
  const auto ref = eps_of(load(kTiny, Precision::kInt8, BackendKind::kReference, false));
  const auto f32 = eps_of(load(kTiny, Precision::kF32));
  const double e = rel_l2(cpu, ref), q = rel_l2(cpu, f32);
  std::printf("[ precision ] tiny-demo int8 (fp32 convs) cpu vs reference %.3e, vs fp32 %.3e\n", e,
              q);
  EXPECT_LE(e, 5e-3);
  EXPECT_LE(q, 5e-2);
  EXPECT_GT(q, 0.0);
  auto m = load(kTiny, Precision::kInt8, BackendKind::kCpu, false);
  ASSERT_TRUE(m);
  bool noted = false;
  for (const auto& n : m->info().notes) noted = noted || n.find("convolutions run fp32") != n.npos;
  EXPECT_TRUE(noted);
}

TEST(PrecisionModel, Bf16WithoutHardwareIsOneClearLine) {
  const std::string why = testing::precision_unavailable(Precision::kBF16);
  if (why.empty()) GTEST_SKIP() << "this CPU has bf16 compute (run with DUET_MAX_ISA=avx2)";
  LoadOptions lo;
  lo.precision = Precision::kBF16;
  auto m = Model::load(kTiny, lo);
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(m.status().message(), why);  // the CPU's fault, not the file's: no path prefix
  EXPECT_EQ(why.find('\n'), std::string::npos);
  // the CLI: one line naming the problem and the choices, exit != 0
  const std::string cli = DUET_CLI_PATH;
  testing::TempDir tmp;
  auto r = testing::run_command(cli + " generate --model " + testing::shell_quote(kTiny) +
                                " -p a --steps 2 --precision bf16 -o " +
                                testing::shell_quote(tmp.file("x.png")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("precision bf16 is not available on this CPU"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("use --precision int8, f32 or auto"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("oneDNN bf16"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("primitive descriptor"), std::string::npos) << r.err;
}

TEST(PrecisionModel, InfoNotesThePrecision) {
  auto m = load(kTiny, Precision::kInt8);
  ASSERT_TRUE(m);
  bool found = false;
  for (const auto& n : m->info().notes) found |= n.find("precision int8") != std::string::npos;
  EXPECT_TRUE(found);
}

TEST(PrecisionModel, QuantizedCheckpointReproducesLoadTimeQuantisation) {
  testing::TempDir tmp;
  for (Precision p : reduced_precisions_here()) {
    const std::string out = tmp.file(std::string("q-") + precision_name(p));
    auto rep = quantize_checkpoint(kTiny, p, out);
    ASSERT_TRUE(rep.is_ok()) << rep.status().to_string();
    EXPECT_GT(rep->layers[static_cast<int>(p)], 0);
    auto stored = checkpoint_precision(out);
    ASSERT_TRUE(stored.is_ok());
    ASSERT_TRUE(stored->has_value());
    EXPECT_EQ(**stored, p);
    const auto direct = eps_of(load(kTiny, p));
    const auto from_file = eps_of(load(out, p));
    ASSERT_EQ(direct.size(), from_file.size());
    for (size_t i = 0; i < direct.size(); ++i)
      ASSERT_EQ(direct[i], from_file[i]) << precision_name(p) << " element " << i;
    // a quantised checkpoint also loads at fp32 (dequantised) and stays close
    const auto deq = eps_of(load(out, Precision::kF32));
    EXPECT_LE(rel_l2(deq, eps_of(load(kTiny, Precision::kF32))), 5e-2);
    // quantising a quantised model is refused
    auto again = quantize_checkpoint(out, p, tmp.file("again"));
    ASSERT_FALSE(again.is_ok());
    EXPECT_NE(again.status().message().find("already quantised"), std::string::npos);
  }
}

TEST(PrecisionModel, DenoiseDoesNotGrowTheHeap) {
  for (Precision p : reduced_precisions_here()) {
    auto model = load(kTiny, p);
    ASSERT_TRUE(model);
    ContextOptions co;
    co.max_batch = 2;
    auto ctx = Context::create(model, co);
    ASSERT_TRUE(ctx.is_ok());
    auto ps = model->encode_prompt({"a", "b"});
    Tensor x = Tensor::zeros({2, 1, 28, 28}), t = Tensor::zeros({2});
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = std::sin(0.37f * i);
    t.f32()[0] = t.f32()[1] = 321.f;
    for (int i = 0; i < 8; ++i) ASSERT_TRUE((*ctx)->denoise(x, t, *ps, i % 2 == 0).is_ok());
    const size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE((*ctx)->denoise(x, t, *ps, i % 2 == 0).is_ok());
      EXPECT_EQ(mallinfo2().uordblks, before) << precision_name(p) << " after call " << i;
    }
  }
}

TEST(PrecisionModel, BadQuantizedCheckpointsAreClearErrors) {
  testing::TempDir tmp;
  const std::string q = tmp.file("q");
  ASSERT_TRUE(quantize_checkpoint(kTiny, Precision::kInt8, q).is_ok());
  // 1. unknown precision in config.json
  {
    std::string cfg = testing::read_file_bytes(q + "/config.json");
    const std::string bad = tmp.file("badprec");
    std::filesystem::create_directories(bad);
    std::filesystem::copy_file(q + "/model.safetensors", bad + "/model.safetensors");
    const std::string key = "\"precision\": \"int8\"";
    const size_t at = cfg.find(key);
    ASSERT_NE(at, std::string::npos) << cfg;
    cfg.replace(at, key.size(), "\"precision\": \"int4\"");
    testing::write_file(bad + "/config.json", cfg);
    auto m = Model::load(bad);
    ASSERT_FALSE(m.is_ok());
    EXPECT_NE(m.status().message().find("quantization.precision"), std::string::npos)
        << m.status().message();
    EXPECT_NE(m.status().message().find("int4"), std::string::npos);
  }
  // 2. a scale tensor missing
  {
    auto f = SafetensorsFile::open(q + "/model.safetensors");
    ASSERT_TRUE(f.is_ok());
    std::vector<std::pair<std::string, Tensor>> kept;
    std::string dropped;
    for (const TensorEntry& e : f->tensors()) {
      if (dropped.empty() && is_scale_tensor(e.name)) {
        dropped = e.name;
        continue;
      }
      kept.emplace_back(e.name, f->view(e.name).clone());
    }
    const std::string bad = tmp.file("noscale");
    std::filesystem::create_directories(bad);
    std::filesystem::copy_file(q + "/config.json", bad + "/config.json");
    ASSERT_TRUE(write_safetensors(bad + "/model.safetensors", kept).is_ok());
    auto m = Model::load(bad, {});
    ASSERT_FALSE(m.is_ok());
    EXPECT_NE(m.status().message().find("model.safetensors"), std::string::npos);
    EXPECT_NE(m.status().message().find(dropped), std::string::npos) << m.status().message();
  }
  // 3. quantize into the source directory / to f32
  EXPECT_FALSE(quantize_checkpoint(kTiny, Precision::kInt8, kTiny).is_ok());
  EXPECT_FALSE(quantize_checkpoint(kTiny, Precision::kF32, tmp.file("f32")).is_ok());
}

TEST(PrecisionCli, QuantizeBenchAndBadPrecision) {
  testing::TempDir tmp;
  const std::string cli = DUET_CLI_PATH, q = tmp.file("q");
  auto r = testing::run_command(cli + " quantize --model " + testing::shell_quote(kTiny) +
                                " --precision int8 --out " + testing::shell_quote(q));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("int8"), std::string::npos) << r.out;
  // the quantised checkpoint runs at its own precision by default; quality vs the original
  r = testing::run_command(cli + " bench --model " + testing::shell_quote(q) +
                           " --reps 1 --steps 2 --gen-reps 1 --no-gemm --peak-seconds 0.01"
                           " --threads 1 --json --quality-model " +
                           testing::shell_quote(kTiny));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j.value("precision", ""), "int8");
  ASSERT_TRUE(j.contains("quality")) << r.out;
  EXPECT_LE(j["quality"].value("eps_rel_l2", 1.0), 5e-2);
  EXPECT_GT(j["quality"].value("image_psnr_db", 0.0), 10.0);
  // unknown precision names: clear errors naming the option
  r = testing::run_command(cli + " quantize --model " + testing::shell_quote(kTiny) +
                           " --precision fp16 --out " + testing::shell_quote(tmp.file("x")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--precision: unknown precision 'fp16'"), std::string::npos) << r.err;
  r = testing::run_command(cli + " forward --model " + testing::shell_quote(kTiny) +
                           " --prompt a --x /nonexistent.safetensors --t 1 --out " +
                           testing::shell_quote(tmp.file("o.safetensors")) + " --precision int4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--precision"), std::string::npos) << r.err;
}

// The demo image (models/fashion-duet, duet bench's quality guard: 20 dpmpp_2m steps, seed 0)
// at int8 and at --precision auto, against fp32, on whatever ISA this run has (CI runs it again
// with DUET_MAX_ISA=avx2): int8 with VNNI (8-bit weights) and auto must keep >= 35 dB (auto
// picks int8 on every CPU with AVX2 int8 GEMMs; f32 otherwise). Without VNNI (u8 activations,
// 7-bit weights) the bound is 30 dB: the demo model v2 (2026-12-04) measures 32.9 dB there
// (41.6 dB with VNNI; v1 kept >= 35 dB on both) — a known loss of the 7-bit path with these
// weights, written in docs/training.md, not a kernel error (PrecisionOps checks the kernels).
TEST(PrecisionCli, Int8AndAutoKeepTheDemoImageWithinTheGuard) {
  const std::string cli = DUET_CLI_PATH,
                    demo = std::string(DUET_SOURCE_DIR) + "/models/fashion-duet";
  auto cpu = cpu_info();
  ASSERT_TRUE(cpu.is_ok());
  for (const char* p : {"int8", "auto"}) {
    auto r = testing::run_command(cli + " bench --model " + testing::shell_quote(demo) +
                                  " --precision " + p +
                                  " --reps 1 --steps 20 --gen-reps 1 --no-gemm --peak-seconds 0.01"
                                  " --threads 2 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out;
    const std::string chosen = j.value("precision", "");
    if (chosen == "f32") {
      EXPECT_STREQ(p, "auto");
      EXPECT_FALSE((*cpu)->int8_compute && (*cpu)->usable.avx2);
      continue;
    }
    ASSERT_EQ(chosen, "int8") << p;
    const double psnr = j["quality"].value("image_psnr_db", 0.0);
    std::printf("[ precision ] demo image --precision %s (%s): PSNR %.2f dB vs fp32 on %s\n", p,
                chosen.c_str(), psnr, (*cpu)->onednn_isa.c_str());
    EXPECT_GE(psnr, (*cpu)->int8_vnni ? 35.0 : 30.0);
  }
}

}  // namespace
}  // namespace duet

// CPU detection, the DUET_MAX_ISA cap and the default thread choice.
//   * detected flags agree with the kernel's /proc/cpuinfo (an independent reading);
//   * usable ⊆ hardware, and the cap reaches oneDNN and Highway (checked in a child process with
//     DUET_MAX_ISA=avx2, so it runs on every machine; the capped CI stage also checks in-process);
//   * bad caps are errors naming the variable, in the library and at the CLI;
//   * a busy core elsewhere lowers the default thread count; --threads / OMP_NUM_THREADS win.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "duet/cpu_features.h"
#include "duet/cpu_load.h"
#include "test_util.h"

namespace duet {
namespace {

std::set<std::string> proc_cpuinfo_flags() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

const CpuInfo& info() {
  auto c = cpu_info();
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  static const CpuInfo empty;
  return c.is_ok() ? **c : empty;
}

TEST(CpuFeatures, ReportAndAgreementWithProcCpuinfo) {
  const CpuInfo& c = info();
  std::printf("[ cpu ] %s\n", cpu_info_line(c).c_str());
  EXPECT_FALSE(c.vendor.empty());
  EXPECT_GE(c.logical_cpus, 1);
  EXPECT_NE(c.onednn_isa, "unknown");
  EXPECT_FALSE(c.hwy_target.empty());
  const auto flags = proc_cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags line";
  const std::pair<const char*, bool> pairs[] = {
      {"avx2", c.hardware.avx2},
      {"fma", c.hardware.fma},
      {"avx512f", c.hardware.avx512f},
      {"avx512bw", c.hardware.avx512bw},
      {"avx512vl", c.hardware.avx512vl},
      {"avx512_vnni", c.hardware.avx512_vnni},
      {"avx512_bf16", c.hardware.avx512_bf16},
      {"avx_vnni", c.hardware.avx_vnni},
      {"amx_tile", c.hardware.amx_tile},
  };
  for (const auto& [name, detected] : pairs)  // the kernel hides what the OS does not save
    EXPECT_EQ(detected, flags.count(name) == 1) << name;
}

TEST(CpuFeatures, UsableIsHardwareCappedAndReachesBothLibraries) {
  const CpuInfo& c = info();
  EXPECT_TRUE(!c.usable.avx512f || c.hardware.avx512f);
  EXPECT_TRUE(!c.usable.avx512_bf16 || c.hardware.avx512_bf16);
  EXPECT_TRUE(!c.usable.avx2 || c.hardware.avx2);
  if (c.cap == IsaCap::kAvx2) {  // the capped CI stage
    EXPECT_FALSE(c.usable.avx512f);
    EXPECT_FALSE(c.bf16_compute);
    EXPECT_EQ(c.hwy_target, "AVX2");
    if (c.onednn_cap.empty() || c.onednn_cap == "AVX2" || c.onednn_cap == "avx2") {
      EXPECT_EQ(c.onednn_isa, "avx2");
    }
  } else if (c.cap == IsaCap::kAll && c.onednn_cap.empty() && c.hardware.avx512_core()) {
    EXPECT_EQ(c.onednn_isa.rfind("avx512_core", 0), 0u) << c.onednn_isa;
    EXPECT_EQ(c.hwy_target.rfind("AVX3", 0), 0u) << c.hwy_target;
  }
}

TEST(CpuFeatures, CapInAChildProcess) {
  const CpuInfo& c = info();
  if (!c.hardware.avx2) GTEST_SKIP() << "no AVX2 on this CPU";
  const std::string cli = DUET_CLI_PATH;
  auto r = testing::run_command("env -u ONEDNN_MAX_CPU_ISA DUET_MAX_ISA=avx2 " + cli +
                                " info --json --no-peak");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  const auto& cpu = j["cpu"];
  EXPECT_EQ(cpu["isa_cap"], "avx2");
  EXPECT_EQ(cpu["onednn_isa"], "avx2");
  EXPECT_EQ(cpu["highway_target"], "AVX2");
  EXPECT_EQ(cpu["usable"]["avx512f"], false);
  EXPECT_EQ(cpu["hardware"]["avx512f"], c.hardware.avx512f);  // the hardware is still reported
  EXPECT_EQ(cpu["bf16_compute"], false);
  EXPECT_EQ(j["precisions"]["auto"], "int8");
  EXPECT_EQ(cpu["int8_vnni"], false);
  EXPECT_EQ(cpu["int8_weight_bits"], 7);
  EXPECT_NE(j["precisions"]["bf16"].get<std::string>().find("AVX-512"), std::string::npos);
}

TEST(CpuFeatures, BadCapIsAnErrorNamingTheVariable) {
  EXPECT_EQ(*parse_isa_cap("AVX2"), IsaCap::kAvx2);
  EXPECT_EQ(*parse_isa_cap(""), IsaCap::kAll);
  EXPECT_EQ(*parse_isa_cap("avx512_bf16"), IsaCap::kAvx512Bf16);
  auto bad = parse_isa_cap("avx3");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("DUET_MAX_ISA: unknown ISA cap 'avx3'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("avx2"), std::string::npos);
  const std::string cli = DUET_CLI_PATH;
  const std::string model = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";
  testing::TempDir tmp;
  for (const std::string& cmd :
       {cli + " info --no-peak", cli + " generate --model " + testing::shell_quote(model) +
                                     " -p a --steps 2 -o " +
                                     testing::shell_quote(tmp.file("x.png"))}) {
    auto r = testing::run_command("DUET_MAX_ISA=avx3 " + cmd);
    EXPECT_NE(r.exit_code, 0) << cmd;
    EXPECT_NE(r.err.find("DUET_MAX_ISA: unknown ISA cap 'avx3'"), std::string::npos) << r.err;
  }
}

TEST(CpuLoad, ExplicitThreadsWin) {
  const ThreadChoice c = choose_threads(3);
  EXPECT_EQ(c.threads, 3);
  EXPECT_TRUE(c.user_set);
  const ThreadChoice d = choose_threads(0);
  EXPECT_GE(d.threads, 1);
  EXPECT_LE(d.threads, d.cpus);
  std::printf("[ threads ] default now: %s\n", d.reason.c_str());
}

// A child process spinning on one core: a fresh process (the choice is made once per process)
// leaves that core to it. `duet info` reports the default it would use.
TEST(CpuLoad, ABusyCoreElsewhereLowersTheDefault) {
  const ThreadChoice here = choose_threads(0);
  if (here.cpus < 2) GTEST_SKIP() << "one cpu: nothing to give up";
  if (std::getenv("OMP_NUM_THREADS")) GTEST_SKIP() << "OMP_NUM_THREADS is set: it wins";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    for (;;) __asm__ volatile("" ::: "memory");  // spin until killed
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string cli = DUET_CLI_PATH;
  auto r = testing::run_command(cli + " info --json --no-peak");
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  std::printf("[ threads ] one busy core: %s\n", j["threads"]["reason"].get<std::string>().c_str());
  EXPECT_LE(j["threads"]["default"].get<int>(), here.cpus - 1);
  EXPECT_GE(j["threads"]["busy_elsewhere"].get<double>(), 1.0);
  // an explicit count is not measured
  r = testing::run_command("OMP_NUM_THREADS=3 " + cli + " info --json --no-peak");
  const auto k = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(k.is_discarded()) << r.out;
  EXPECT_EQ(k["threads"]["default"].get<int>(), 3);
}

}  // namespace
}  // namespace duet

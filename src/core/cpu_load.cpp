// Default thread count from the machine's load (include/duet/cpu_load.h).
#include "duet/cpu_load.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

namespace duet {
namespace {

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return sched_getaffinity(0, sizeof(set), &set) == 0 ? std::max(1, CPU_COUNT(&set)) : 1;
}

bool read_file(const char* path, char* buf, size_t cap) {
  FILE* f = std::fopen(path, "re");
  if (!f) return false;
  const size_t n = std::fread(buf, 1, cap - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  return n > 0;
}

struct ProcStat {
  int procs_running = -1;  // runnable threads on the machine, the reader included
  uint64_t busy = 0;       // ticks: user + system + irq + softirq + steal (not nice, not idle)
  bool ok = false;
};
ProcStat read_proc_stat() {
  char buf[16384];
  ProcStat p;
  if (!read_file("/proc/stat", buf, sizeof(buf)) || std::strncmp(buf, "cpu ", 4) != 0) return p;
  unsigned long long v[8] = {};
  if (std::sscanf(buf + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                  &v[4], &v[5], &v[6], &v[7]) < 4)
    return p;
  p.busy = v[0] + v[2] + v[5] + v[6] + v[7];  // user, system, irq, softirq, steal
  if (const char* r = std::strstr(buf, "\nprocs_running ")) p.procs_running = std::atoi(r + 15);
  p.ok = true;
  return p;
}

int64_t self_cpu_ns() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ns = [](const timeval& t) {
    return int64_t{t.tv_sec} * 1000000000 + int64_t{t.tv_usec} * 1000;
  };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// OMP_NUM_THREADS's first value (nested lists: "4,2"), or 0 when unset / malformed.
int env_threads() {
  const char* e = std::getenv("OMP_NUM_THREADS");
  if (!e || !*e) return 0;
  const int n = std::atoi(e);
  return n > 0 ? n : 0;
}

ThreadChoice user_choice(int n, const char* source) {
  ThreadChoice c;
  c.threads = n;
  c.cpus = affinity_cpus();
  c.user_set = true;
  c.reason = std::to_string(n) + " (" + source + ")";
  return c;
}

std::mutex g_mu;
std::optional<ThreadChoice> g_choice;  // the process's measured choice, once made

}  // namespace

CpuLoadProbe::CpuLoadProbe() {
  const ProcStat p = read_proc_stat();
  ok_ = p.ok;
  busy_ticks_ = p.busy;
  wall_ns_ = wall_ns();
  self_ns_ = self_cpu_ns();
}

ThreadChoice CpuLoadProbe::finish(int requested, int min_window_ms) {
  if (requested > 0) return user_choice(requested, "--threads");
  if (const int e = env_threads()) return user_choice(e, "OMP_NUM_THREADS");
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_choice) return *g_choice;
  const int64_t waited = wall_ns() - wall_ns_, min_ns = int64_t{min_window_ms} * 1000000;
  if (waited < min_ns) std::this_thread::sleep_for(std::chrono::nanoseconds(min_ns - waited));
  ThreadChoice c;
  c.cpus = affinity_cpus();
  const ProcStat p = read_proc_stat();
  if (!ok_ || !p.ok) {
    c.threads = c.cpus;
    c.reason = std::to_string(c.cpus) + " of " + std::to_string(c.cpus) + " cpus (no /proc/stat)";
    g_choice = c;
    return c;
  }
  const double dt = static_cast<double>(wall_ns() - wall_ns_);
  const double tick_ns = 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
  const double others_time = (static_cast<double>(p.busy - busy_ticks_) * tick_ns -
                              static_cast<double>(self_cpu_ns() - self_ns_)) /
                             dt;
  // the reader is this process's only running thread at start-up (no OpenMP team exists yet)
  const int others_now = std::max(0, p.procs_running - 1);
  c.busy_other = std::max(0.0, std::min(others_time, static_cast<double>(others_now)));
  // A CPU counts as taken once others keep it at least ~2/3 busy: a team member sharing it
  // would run at well under its teammates' speed.
  const int taken = static_cast<int>(std::floor(c.busy_other + 1.0 / 3.0));
  c.threads = std::clamp(c.cpus - taken, 1, c.cpus);
  char line[160];
  std::snprintf(line, sizeof(line),
                "%d of %d cpus (%.2f cpus busy elsewhere: %.2f over %.0f ms, %d runnable now)",
                c.threads, c.cpus, c.busy_other, std::max(0.0, others_time), dt * 1e-6, others_now);
  c.reason = line;
  g_choice = c;
  return c;
}

ThreadChoice choose_threads(int requested) { return CpuLoadProbe().finish(requested); }

}  // namespace duet

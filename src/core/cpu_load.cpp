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
#include <thread>

namespace duet {
namespace {

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return sched_getaffinity(0, sizeof(set), &set) == 0 ? std::max(1, CPU_COUNT(&set)) : 1;
}

// Reads /proc/stat into a fixed buffer (no allocation; called between server batches).
bool read_proc_stat(char* buf, size_t cap) {
  FILE* f = std::fopen("/proc/stat", "re");
  if (!f) return false;
  const size_t n = std::fread(buf, 1, cap - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  return n > 0;
}

// "procs_running N": runnable threads on the whole machine, this one included. -1: unknown.
int procs_running() {
  char buf[16384];
  if (!read_proc_stat(buf, sizeof(buf))) return -1;
  const char* p = std::strstr(buf, "\nprocs_running ");
  return p ? std::atoi(p + 15) : -1;
}

// OMP_NUM_THREADS's first value (nested lists: "4,2"), or 0 when unset / malformed.
int env_threads() {
  const char* e = std::getenv("OMP_NUM_THREADS");
  if (!e || !*e) return 0;
  const int n = std::atoi(e);
  return n > 0 ? n : 0;
}

ThreadChoice from_busy(int cpus, double busy_other, const char* how) {
  ThreadChoice c;
  c.cpus = cpus;
  c.busy_other = busy_other;
  // A CPU counts as taken once others keep it at least ~2/3 busy: a team member sharing it
  // would run at well under the others' speed.
  const int taken = static_cast<int>(std::floor(busy_other + 1.0 / 3.0));
  c.threads = std::clamp(cpus - taken, 1, cpus);
  char line[128];
  std::snprintf(line, sizeof(line), "%d of %d cpus (%s: %.2f cpus busy elsewhere)", c.threads, cpus,
                how, busy_other);
  c.reason = line;
  return c;
}

ThreadChoice user_setchoice(int n, const char* source) {
  ThreadChoice c;
  c.threads = n;
  c.cpus = affinity_cpus();
  c.user_set = true;
  c.reason = std::to_string(n) + " (" + source + ")";
  return c;
}

ThreadChoice measure_threads() {
  const int cpus = affinity_cpus();
  int others = -1;
  for (int i = 0; i < 3; ++i) {
    if (i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const int r = procs_running();
    if (r < 0) break;
    const int o = std::max(0, r - 1);  // this thread is running while it reads
    others = others < 0 ? o : std::min(others, o);
  }
  if (others < 0) {
    ThreadChoice c = from_busy(cpus, 0, "no /proc/stat");
    return c;
  }
  return from_busy(cpus, others, "runnable now");
}

}  // namespace

ThreadChoice choose_threads(int requested) {
  if (requested > 0) return user_setchoice(requested, "--threads");
  if (const int e = env_threads()) return user_setchoice(e, "OMP_NUM_THREADS");
  static const ThreadChoice first = measure_threads();
  return first;
}

}  // namespace duet

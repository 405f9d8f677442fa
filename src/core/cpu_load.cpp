// Default thread count from the machine's load (include/duet/cpu_load.h).
#include "duet/cpu_load.h"

#include <dirent.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
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

// "procs_running N" of /proc/stat: runnable threads on the machine, the reader included; -1 when
// unknown.
int procs_running() {
  char buf[16384];
  if (!read_file("/proc/stat", buf, sizeof(buf))) return -1;
  const char* r = std::strstr(buf, "\nprocs_running ");
  return r ? std::atoi(r + 15) : -1;
}

// Runnable (state R) threads of other processes at nice <= 0, from /proc/PID/task/TID/stat.
// Only walked when procs_running says someone else is runnable (an idle machine costs one read).
int other_runnable_threads() {
  const int all = procs_running();
  if (all < 0) return 0;
  if (all <= 1) return 0;  // only the reader
  const pid_t self = getpid();
  int n = 0;
  DIR* procs = opendir("/proc");
  if (!procs) return all - 1;
  char path[600], buf[1024];
  while (dirent* p = readdir(procs)) {
    if (p->d_name[0] < '0' || p->d_name[0] > '9') continue;
    if (std::atoi(p->d_name) == self) continue;
    std::snprintf(path, sizeof(path), "/proc/%s/task", p->d_name);
    DIR* tasks = opendir(path);
    if (!tasks) continue;
    while (dirent* t = readdir(tasks)) {
      if (t->d_name[0] < '0' || t->d_name[0] > '9') continue;
      std::snprintf(path, sizeof(path), "/proc/%s/task/%s/stat", p->d_name, t->d_name);
      if (!read_file(path, buf, sizeof(buf))) continue;
      // "tid (comm) S ppid ...": the comm may hold blanks and parentheses, so parse after the
      // last ')'; nice is field 19, the 16th after the state (field 3).
      const char* c = std::strrchr(buf, ')');
      if (!c || c[1] != ' ' || c[2] != 'R') continue;
      const char* f = c + 3;
      for (int i = 0; i < 15 && f; ++i) f = std::strchr(f + 1, ' ');  // f: before field 4 + i + 1
      if (f && std::atoi(f + 1) <= 0) ++n;
    }
    closedir(tasks);
  }
  closedir(procs);
  return n;
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

CpuLoadProbe::CpuLoadProbe() : first_(other_runnable_threads()) {}

ThreadChoice CpuLoadProbe::finish(int requested) {
  if (requested > 0) return user_choice(requested, "--threads");
  if (const int e = env_threads()) return user_choice(e, "OMP_NUM_THREADS");
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_choice) return *g_choice;
  // the minimum of three samples (the probe's start, now, 1 ms later): a momentary blip in one
  // of them does not halve the team; a process that keeps a core busy is runnable in all three
  int others = std::min(first_, other_runnable_threads());
  if (others > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    others = std::min(others, other_runnable_threads());
  }
  ThreadChoice c;
  c.cpus = affinity_cpus();
  c.busy_other = others;
  c.threads = std::clamp(c.cpus - others, 1, c.cpus);
  c.reason = std::to_string(c.threads) + " of " + std::to_string(c.cpus) + " cpus (" +
             std::to_string(others) + " runnable threads of other processes at nice <= 0)";
  g_choice = c;
  return c;
}

ThreadChoice choose_threads(int requested) { return CpuLoadProbe().finish(requested); }

}  // namespace duet
